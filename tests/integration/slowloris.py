#!/usr/bin/env python3
"""Slowloris against fleetkey-server (issue 15, "Reliability"): holds connections that never
finish what they started, checks that a normal client is served meanwhile, and that the server
drops every held connection after its handshake_timeout.

  slowloris.py --port P --ca CA --cert CHAIN --key KEY --count N --timeout T [--slack S] -- CMD...

Three kinds, N of each: "silent" opens TCP and sends nothing; "dribble" sends a real TLS
ClientHello one byte every 0.5 s (it never completes); "noupgrade" completes the mTLS
handshake with a valid device certificate and never sends the HTTP request. While they are
held CMD (a normal client) runs and must exit 0. Then every held connection must be closed by
the server within T + SLACK s of its opening (--slack, default 10) (T = the server's handshake_timeout). Every wait is
bounded. Exit 0 when all holds, 1 with a line per failure.
"""
import argparse
import select
import socket
import ssl
import subprocess
import sys
import time


def client_hello():
    """The first flight of a real TLS client, taken from an in-memory handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def closed(sock, kind):
    """True when the server closed (or reset) the connection; never blocks."""
    try:
        if kind == "noupgrade":
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            except (ssl.SSLError, OSError):
                return True
            return data == b""
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--timeout", type=int, required=True)
    ap.add_argument("--slack", type=int, default=10)
    ap.add_argument("cmd", nargs="+")
    a = ap.parse_args()

    hello = client_hello()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.load_verify_locations(a.ca)
    tls.load_cert_chain(a.cert, a.key)

    held = []  # (kind, socket, opened at, bytes sent)
    for i in range(a.count):
        for kind in ("silent", "dribble", "noupgrade"):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
            if kind == "noupgrade":
                s = tls.wrap_socket(s, server_hostname="localhost")  # bounded by the 10 s
            held.append([kind, s, time.monotonic(), 0])
    print("slowloris: holding %d connections (%d of each kind)" % (len(held), a.count))

    # The normal client, while every held connection is open (none was dropped yet: the
    # handshake timeout counts from their opening, and the client starts at once).
    rc = subprocess.run(a.cmd, timeout=60).returncode
    failures = []
    if rc != 0:
        failures.append("the normal client failed during the attack (exit %d)" % rc)
    else:
        print("slowloris: normal client served during the attack")

    deadline = time.monotonic() + a.timeout + a.slack
    open_ = list(held)
    while open_ and time.monotonic() < deadline:
        still = []
        for h in open_:
            kind, s = h[0], h[1]
            if kind == "dribble" and h[3] < len(hello):
                try:
                    s.send(hello[h[3]:h[3] + 1])
                    h[3] += 1
                except OSError:
                    pass
            if closed(s, kind):
                h.append(time.monotonic() - h[2])
                s.close()
            else:
                still.append(h)
        open_ = still
        time.sleep(0.5)
    for h in open_:
        failures.append("%s connection still open %.0f s after it was opened" %
                        (h[0], time.monotonic() - h[2]))
        h[1].close()
    for kind in ("silent", "dribble", "noupgrade"):
        t = [h[4] for h in held if h[0] == kind and len(h) > 4]
        if t:
            print("slowloris: %d %s connections dropped by the server, after %.1f to %.1f s" %
                  (len(t), kind, min(t), max(t)))
    for f in failures:
        print("slowloris: FAIL: " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
