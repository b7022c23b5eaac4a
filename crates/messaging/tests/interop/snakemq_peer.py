#!/usr/bin/env python3
"""A snakeMQ 1.6 peer for weft's interop tests.

Prints one JSON line per event on stdout:
  {"event": "ready"}
  {"event": "connect", "ident": ...}
  {"event": "disconnect", "ident": ...}
  {"event": "message", "from": ..., "uuid": hex, "ttl": n|null, "flags": n, "data": text}
and sends each stdin line "IDENT<TAB>TEXT" as a message (with --ttl and
--persistent). Exits when stdin closes.
"""

import argparse
import json
import sys
import threading

import snakemq.link
import snakemq.message
import snakemq.messaging
import snakemq.packeter

out_lock = threading.Lock()


def emit(**event):
    with out_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ident", required=True)
    p.add_argument("--listen", type=int, help="port on 127.0.0.1")
    p.add_argument("--connect", type=int, help="port on 127.0.0.1")
    p.add_argument("--ttl", type=int, default=600)
    p.add_argument("--persistent", action="store_true")
    p.add_argument("--keepalive", type=float, help="ping after this many idle seconds")
    args = p.parse_args()

    link = snakemq.link.Link()
    if args.listen is not None:
        link.add_listener(("127.0.0.1", args.listen))
    if args.connect is not None:
        link.add_connector(("127.0.0.1", args.connect), reconnect_interval=0.1)
    packeter = snakemq.packeter.Packeter(link)
    messaging = snakemq.messaging.Messaging(args.ident, "", packeter)
    if args.keepalive:
        messaging.keepalive_interval = args.keepalive
        messaging.keepalive_wait = args.keepalive

    messaging.on_connect.add(lambda conn, ident: emit(event="connect", ident=ident))
    messaging.on_disconnect.add(lambda conn, ident: emit(event="disconnect", ident=ident))

    def on_message(conn, ident, message):
        emit(
            event="message",
            **{"from": ident},
            uuid=message.uuid.hex(),
            ttl=None if message.ttl is None else int(message.ttl),
            flags=message.flags,
            data=message.data.decode("utf-8", "replace"),
        )

    messaging.on_message_recv.add(on_message)

    def read_stdin():
        flags = snakemq.message.FLAG_PERSISTENT if args.persistent else 0
        for line in sys.stdin:
            line = line.rstrip("\n")
            if "\t" not in line:
                continue
            to, text = line.split("\t", 1)
            msg = snakemq.message.Message(text.encode("utf-8"), ttl=args.ttl, flags=flags)
            messaging.send_message(to, msg)
        link.stop()

    threading.Thread(target=read_stdin, daemon=True).start()
    emit(event="ready")
    link.loop()
    link.cleanup()


if __name__ == "__main__":
    main()
