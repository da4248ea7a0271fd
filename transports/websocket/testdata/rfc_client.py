#!/usr/bin/python3
# An independent RFC 6455 client for interop_test.go, built on the Python
# "websockets" library as Debian packages it (python3-websockets). Run it with
# /usr/bin/python3: another python3 on PATH may lack the module.
#
# Usage: rfc_client.py ws://HOST:PORT/PATH MODE
# Reads one message per line on standard input, "text HEX" or "binary HEX",
# and sends each as a WebSocket message of that type.
#   MODE echo          first send an unsolicited pong, then a ping, and wait
#                      for its pong; after each message, wait for its echo (a
#                      text message); then close with 1000 and wait for the
#                      closing handshake
#   MODE expect-close  send every message, then read until the server closes
# Prints, one per line:
#   extensions LIST    the extensions the server accepted (comma-separated;
#                      the client offers permessage-deflate)
#   pong HEX           the payload of the pong that answered the ping (echo mode)
#   echo HEX           each text message received, hex-encoded
#   closed CODE        the code of the server's close frame (1006 if none came)
# Exits non-zero, with the reason on standard error, on any failure.
import asyncio
import sys

import websockets


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


async def run(url, mode, messages):
    # close_timeout bounds each step of the closing handshake; the Go test
    # bounds the whole run.
    async with websockets.connect(url, close_timeout=10, max_size=1 << 20) as ws:
        print("extensions " + ",".join(e.name for e in ws.extensions), flush=True)
        if mode == "echo":
            # An unsolicited pong, which the server must ignore, then a ping
            # with a 125-byte binary payload (the most a control frame
            # holds); the waiter is resolved only by a pong with that payload.
            await ws.pong(b"unsolicited pong")
            payload = bytes(range(125))
            waiter = await ws.ping(payload)
            await waiter
            print("pong " + payload.hex(), flush=True)
            for kind, data in messages:
                await ws.send(data.decode("utf-8") if kind == "text" else data)
                got = await ws.recv()
                if not isinstance(got, str):
                    fail("waiting for an echo, got a binary message")
                print("echo " + got.encode("utf-8").hex(), flush=True)
            await ws.close(code=1000)
        elif mode == "expect-close":
            for kind, data in messages:
                await ws.send(data.decode("utf-8") if kind == "text" else data)
            try:
                while True:
                    got = await ws.recv()
                    if not isinstance(got, str):
                        fail("got a binary message")
                    print("echo " + got.encode("utf-8").hex(), flush=True)
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
        else:
            fail("unknown mode " + mode)
        print("closed %d" % ws.close_code, flush=True)


def main():
    if len(sys.argv) != 3:
        fail("usage: rfc_client.py URL MODE")
    url, mode = sys.argv[1], sys.argv[2]
    messages = []
    for line in sys.stdin.read().splitlines():
        kind, _, hexdata = line.partition(" ")
        if kind not in ("text", "binary"):
            fail("bad input line %r" % line[:40])
        messages.append((kind, bytes.fromhex(hexdata)))
    try:
        asyncio.run(asyncio.wait_for(run(url, mode, messages), 30))
    except asyncio.TimeoutError:
        fail("timed out")
    except Exception as e:  # the reason goes to the Go test
        fail("%s: %s" % (type(e).__name__, e))


main()
