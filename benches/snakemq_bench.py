#!/usr/bin/env python3
"""snakeMQ 1.6's side of weft-bench's messaging comparison.

One process per peer, each running its own snakeMQ Link, Packeter and
Messaging over loopback TCP (two processes, so the two peers do not share
Python's GIL, as two weft peers share nothing):

  --role recv --count N       listens on 127.0.0.1 (an ephemeral port),
                              prints {"event": "ready", "port": P}, counts
                              N messages and prints {"event": "end",
                              "at": T, "count": N, "bytes": B}, then stops.
  --role send --port P --count N --size S
                              connects to P as "bench-send"; once the
                              receiver has identified itself, prints
                              {"event": "start", "at": T} and queues N
                              messages of S bytes for "bench-recv" (snakeMQ
                              writes one per loop pass); stops when the
                              receiver disconnects.

T is time.monotonic() (CLOCK_MONOTONIC, shared by every process on the
machine), so the rate is N / (end - start): from the first send to the
last receive, as weft-bench times weft.

weft-bench embeds this file and runs it with `python -c`.
"""

import argparse
import json
import sys
import time

import snakemq.link
import snakemq.message
import snakemq.messaging
import snakemq.packeter

RECEIVER = "bench-recv"
SENDER = "bench-send"


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def receive(count):
    link = snakemq.link.Link()
    address = link.add_listener(("127.0.0.1", 0))
    packeter = snakemq.packeter.Packeter(link)
    messaging = snakemq.messaging.Messaging(RECEIVER, "", packeter)
    got = [0, 0]

    def on_message(conn_id, ident, message):
        got[0] += 1
        got[1] += len(message.data)
        if got[0] == count:
            emit(event="end", at=time.monotonic(), count=got[0], bytes=got[1])
            link.stop()

    messaging.on_message_recv.add(on_message)
    emit(event="ready", port=address[1])
    link.loop()
    link.cleanup()


def send(port, count, size):
    link = snakemq.link.Link()
    link.add_connector(("127.0.0.1", port), reconnect_interval=0.1)
    packeter = snakemq.packeter.Packeter(link)
    messaging = snakemq.messaging.Messaging(SENDER, "", packeter)
    payload = b"\xa5" * size

    def on_connect(conn_id, ident):
        if ident != RECEIVER:
            return
        emit(event="start", at=time.monotonic())
        for _ in range(count):
            # No TTL: the message waits in the queue until it is written.
            messaging.send_message(ident, snakemq.message.Message(payload, ttl=None))

    def on_disconnect(conn_id, ident):
        link.stop()

    messaging.on_connect.add(on_connect)
    messaging.on_disconnect.add(on_disconnect)
    link.loop()
    link.cleanup()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=["send", "recv"], required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    if args.role == "recv":
        receive(args.count)
    else:
        send(args.port, args.count, args.size)


if __name__ == "__main__":
    main()
