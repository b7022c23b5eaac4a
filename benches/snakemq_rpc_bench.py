#!/usr/bin/env python3
"""snakeMQ 1.6's side of weft-bench's RPC comparison.

Two processes, each with its own snakeMQ Link, Packeter, Messaging and
ReceiveHook over loopback TCP (two processes, so that the two peers do not
share Python's GIL, as weft's two peers share nothing):

  --role server             listens on 127.0.0.1 (an ephemeral port) as
                            "bench-rpc-server", registers an object "bench"
                            whose echo(data) returns data with
                            snakemq.rpc.RpcServer (which runs every call in
                            a thread of its own, as snakeMQ does), prints
                            {"event": "ready", "port": P}, and serves until
                            the client disconnects (at most --runtime s).
  --role client --port P --calls N --warm W --threads K --size S
                            connects as "bench-rpc-client" and runs the
                            link loop in a background thread, as
                            snakemq.rpc.RpcClient needs (its calls block the
                            calling thread until the reply arrives). Once
                            the server has identified itself it makes W
                            untimed calls of echo(S bytes), then N timed
                            calls from K threads (each making its share one
                            after the other, so K calls are in flight), and
                            prints {"event": "end", "calls": N, "secs": T,
                            "bad": B} where T is the time from starting the
                            threads until the last one finished
                            (time.monotonic()) and B counts replies that
                            were not the payload sent.

weft-bench embeds this file and runs it with `python -c`. Every wait is
bounded: the client gives up after --runtime s, the server stops after it.
"""

import argparse
import json
import sys
import threading
import time

import snakemq.link
import snakemq.messaging
import snakemq.packeter
import snakemq.rpc

SERVER = "bench-rpc-server"
CLIENT = "bench-rpc-client"
OBJECT = "bench"


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Echo(object):
    """The served object: echo returns its argument."""

    def echo(self, data):
        return data


def serve(runtime):
    link = snakemq.link.Link()
    address = link.add_listener(("127.0.0.1", 0))
    packeter = snakemq.packeter.Packeter(link)
    messaging = snakemq.messaging.Messaging(SERVER, "", packeter)
    hook = snakemq.messaging.ReceiveHook(messaging)
    server = snakemq.rpc.RpcServer(hook)
    server.register_object(Echo(), OBJECT)

    def on_disconnect(conn_id, ident):
        link.stop()

    messaging.on_disconnect.add(on_disconnect)
    emit(event="ready", port=address[1])
    link.loop(runtime=runtime)
    link.cleanup()


def call(port, calls, warm, threads, size, runtime):
    link = snakemq.link.Link()
    link.add_connector(("127.0.0.1", port), reconnect_interval=0.1)
    packeter = snakemq.packeter.Packeter(link)
    messaging = snakemq.messaging.Messaging(CLIENT, "", packeter)
    hook = snakemq.messaging.ReceiveHook(messaging)
    client = snakemq.rpc.RpcClient(hook)
    up = threading.Event()

    def on_connect(conn_id, ident):
        if ident == SERVER:
            up.set()

    messaging.on_connect.add(on_connect)
    loop = threading.Thread(target=link.loop, kwargs={"runtime": runtime}, daemon=True)
    loop.start()
    try:
        if not up.wait(runtime):
            emit(event="error", reason="the server did not connect in time")
            return 1
        echo = client.get_proxy(SERVER, OBJECT).echo
        echo.set_timeout(runtime)
        payload = b"\xa5" * size
        bad = [0]
        failed = []

        def run(count):
            try:
                for _ in range(count):
                    if echo(payload) != payload:
                        bad[0] += 1
            except Exception as exc:  # reported, not raised: a thread
                failed.append(repr(exc))

        run(warm)
        if failed:
            emit(event="error", reason="warm-up: " + failed[0])
            return 1
        shares = [calls // threads + (1 if k < calls % threads else 0) for k in range(threads)]
        workers = [threading.Thread(target=run, args=(n,), daemon=True) for n in shares]
        start = time.monotonic()
        for w in workers:
            w.start()
        deadline = start + runtime
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        took = time.monotonic() - start
        if any(w.is_alive() for w in workers):
            emit(event="error", reason="calls did not finish in time")
            return 1
        if failed:
            emit(event="error", reason=failed[0])
            return 1
        emit(event="end", calls=calls, secs=took, bad=bad[0])
        return 0
    finally:
        link.stop()
        link.wakeup_poll()
        loop.join(5)
        if not loop.is_alive():
            link.cleanup()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=["server", "client"], required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--warm", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--runtime", type=float, default=60.0)
    args = p.parse_args()
    if args.role == "server":
        serve(args.runtime)
        return 0
    return call(args.port, args.calls, args.warm, max(1, args.threads), args.size, args.runtime)


if __name__ == "__main__":
    sys.exit(main())
