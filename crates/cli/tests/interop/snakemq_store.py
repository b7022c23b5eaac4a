#!/usr/bin/env python3
"""Writes a snakeMQ 1.6 queue store the way a snakeMQ peer does, for
`weft import-snakemq`'s tests.

    snakemq_store.py FILE

A snakeMQ peer with an SqliteQueuesStorage on FILE queues messages for
identities that are not connected: the persistent ones are what snakeMQ
stores. Prints one JSON line per message sent:
  {"to": ident, "uuid": hex, "data": hex, "ttl": seconds|null,
   "flags": n, "persistent": bool}
"""

import json
import sys

import snakemq.link
import snakemq.message
import snakemq.messaging
import snakemq.packeter
from snakemq.storage.sqlite import SqliteQueuesStorage

PERSISTENT = snakemq.message.FLAG_PERSISTENT

# (destination, data, ttl, flags): alice and bob, with and without a TTL,
# one message that is not persistent (never stored, so never imported).
MESSAGES = [
    ("alice", b"alice one, forever", None, PERSISTENT),
    ("bob", b"bob one, a minute", 60, PERSISTENT),
    ("alice", b"alice two, ten minutes", 600, PERSISTENT),
    ("alice", b"alice, not persistent", 600, 0),
    ("bob", b"bob two \x00\xff binary, forever", None, PERSISTENT),
]


def main():
    storage = SqliteQueuesStorage(sys.argv[1])
    link = snakemq.link.Link()
    packeter = snakemq.packeter.Packeter(link)
    messaging = snakemq.messaging.Messaging("snake", "", packeter, storage)
    for to, data, ttl, flags in MESSAGES:
        message = snakemq.message.Message(data, ttl=ttl, flags=flags)
        messaging.send_message(to, message)
        print(json.dumps({
            "to": to,
            "uuid": message.uuid.hex(),
            "data": data.hex(),
            "ttl": ttl,
            "flags": flags,
            "persistent": bool(flags & PERSISTENT),
        }))
    storage.close()
    link.cleanup()


if __name__ == "__main__":
    main()
