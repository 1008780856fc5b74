"""A minimal WebSocket client (RFC 6455) for tests of the stage: handshake, masked frames out,
frames in, JSON helpers. Standard library only."""

import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeRefused(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class WS:
    def __init__(self, port, path, timeout=5.0, wrap=None):
        """<wrap>: a function from the connected socket to the one to use (TLS: an
        ssl.SSLContext's wrap_socket)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if wrap:
            self.sock = wrap(self.sock)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise HandshakeRefused(0, buf)
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            body = self.buf
            try:
                while True:
                    c = self.sock.recv(4096)
                    if not c:
                        break
                    body += c
            except OSError:
                pass
            self.sock.close()
            raise HandshakeRefused(status, body)
        want = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert want in head, "bad Sec-WebSocket-Accept"
        self.closed = None  # (code, reason) once the server closed
        self.messages = []  # decoded JSON text messages, in order
        self.binary = 0

    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def send_json(self, obj):
        self.send_frame(1, json.dumps(obj).encode())

    def send_raw(self, data):
        self.sock.sendall(data)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def read_frame(self, timeout=5.0):
        """One frame: (opcode, payload). Raises socket.timeout or EOFError."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        op = b0 & 0x0F
        if op == 8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
            self.closed = (code, payload[2:].decode("utf-8", "replace"))
        elif op == 1:
            self.messages.append(json.loads(payload))
        elif op == 2:
            self.binary += 1
        return op, payload

    def wait_for(self, pred, timeout=5.0, what="a message"):
        """Reads until a JSON message satisfies <pred>; returns it."""
        deadline = time.monotonic() + timeout
        for m in self.messages:
            if pred(m):
                return m
        while time.monotonic() < deadline:
            try:
                op, _ = self.read_frame(deadline - time.monotonic())
            except (socket.timeout, TimeoutError):
                break
            if op == 1 and pred(self.messages[-1]):
                return self.messages[-1]
            if op == 8:
                break
        raise AssertionError(f"no {what} within {timeout} s (closed: {self.closed}; "
                             f"last messages: {self.messages[-3:]})")

    def wait_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            try:
                self.read_frame(deadline - time.monotonic())
            except (socket.timeout, TimeoutError):
                break
            except (EOFError, ConnectionError):
                return self.closed or (0, "eof")
        return self.closed

    def close(self):
        try:
            self.send_frame(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
