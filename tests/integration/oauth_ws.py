#!/usr/bin/env python3
"""A phone on fleetkey-server's wss channel, written from RFC 6455 with python3's ssl and
socket only (no code shared with the server): mTLS + Authorization: Bearer at the upgrade,
masked text frames out, frames in, close codes read.

usage: oauth_ws.py PORT CA CERT KEY TOKEN_FILE STEP...
steps: hello | list | ping | wait-close | hold (prints "held", then waits for the close)
Prints each message received as one line; "status NNN" when the upgrade is refused;
"close CODE REASON" when the server closes. Exit 0, or 1 on a protocol error/time-out.
"""
import base64
import json
import os
import socket
import ssl
import struct
import sys


def frame(payload, opcode=1):
    mask = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed")
        out += chunk
    return out


def read_frame(s):
    b0, b1 = read_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", read_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(s, 8))[0]
    if b1 & 0x80:
        raise ValueError("server frames must not be masked")
    return b0 & 0x0F, read_exact(s, n)


def main():
    port, ca, cert, key, token_file = sys.argv[1:6]
    steps = sys.argv[6:]
    token = open(token_file).read().strip()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    wskey = base64.b64encode(os.urandom(16)).decode()
    req = (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: fleetkey.v1\r\n" % wskey
    )
    if token:
        req += "Authorization: Bearer %s\r\n" % token
    s.sendall((req + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            break
        head += c
    status = head.split(b" ", 2)[1].decode() if head else "none"
    if status != "101":
        print("status", status)
        return 0
    msgid = 0
    for step in steps:
        if step == "hello":
            msg = {"type": "hello", "client": "mobile", "app_version": "1.0.0"}
        elif step == "list":
            msgid += 1
            msg = {"type": "list_devices", "id": msgid}
        elif step == "ping":
            msg = {"type": "ping"}
        elif step in ("wait-close", "hold"):
            if step == "hold":
                print("held", flush=True)
            while True:
                op, data = read_frame(s)
                if op == 8:
                    code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
                    print("close", code, data[2:].decode(errors="replace"), flush=True)
                    return 0
                if op == 1:
                    print(data.decode(), flush=True)
        else:
            print("unknown step", step, file=sys.stderr)
            return 1
        s.sendall(frame(json.dumps(msg).encode()))
        op, data = read_frame(s)
        if op == 8:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
            print("close", code, data[2:].decode(errors="replace"), flush=True)
            return 0
        print(data.decode(), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, EOFError, ValueError) as e:
        print("error:", e, file=sys.stderr)
        sys.exit(1)
