"""One fan-out client of bench_relay.py, in a process of its own: a v1 kernel websocket
that prints `ready` once connected, reads the kernel's stream output until it has seen
`lines` lines, then prints the monotonic time (system-wide on Linux) and exits; if
nothing comes for `timeout` seconds (300 by default), it prints how far it got and exits 1.

    python benchmarks/fanout_watcher.py <channels url> <token> <lines> [timeout]

Fifty of these share two cores with the service and the kernel, so each is as light as
a client can be: a plain socket, websocket frames and v1 offsets parsed with struct, and
lines counted in the raw content part (a JSON-escaped newline is the two bytes `\\n`).
Nothing is decoded; what is measured is the service.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import sys
import time
from urllib.parse import urlsplit

V1 = "v1.kernel.websocket.jupyter.org"
STREAM = b'"stream"'  # the header's msg_type (no other header field holds it)


def connect(url: str, token: str, timeout: float = 300) -> tuple[socket.socket, bytes]:
    """A websocket upgrade by hand, with the v1 subprotocol; the socket, and what came
    after the response's headers."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {V1}\r\nAuthorization: token {token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the upgrade")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace"))
    return sock, rest


def stream_lines(payload: bytes) -> int:
    """Lines of stream output in one v1 frame (0 for anything else)."""
    (count,) = struct.unpack_from("<Q", payload)
    offsets = struct.unpack_from(f"<{count}Q", payload, 8)
    if payload[offsets[0] : offsets[1]] != b"iopub" or STREAM not in payload[offsets[1] : offsets[2]]:
        return 0
    return payload.count(b"\\n", offsets[4], offsets[5])


def main(url: str, token: str, lines: int, timeout: float = 300) -> None:
    sock, rest = connect(url, token, timeout)
    print("ready", flush=True)
    buffer, seen = bytearray(rest), 0
    while seen < lines:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            print(f"stalled after {seen} of {lines} lines, {len(buffer)} bytes unparsed", flush=True)
            raise SystemExit(1) from None
        if not chunk:
            raise ConnectionError("the service closed the connection")
        buffer += chunk
        position = 0
        while len(buffer) - position >= 2:
            opcode, length, start = buffer[position] & 0x0F, buffer[position + 1] & 0x7F, position + 2
            if len(buffer) - start < {126: 2, 127: 8}.get(length, 0):
                break
            if length == 126:
                (length,), start = struct.unpack_from("!H", buffer, start), start + 2
            elif length == 127:
                (length,), start = struct.unpack_from("!Q", buffer, start), start + 8
            if len(buffer) - start < length:
                break
            if opcode == 2:
                seen += stream_lines(bytes(buffer[start : start + length]))
            position = start + length
        del buffer[:position]
    print(time.monotonic(), flush=True)
    sock.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *(float(arg) for arg in sys.argv[4:5]))
