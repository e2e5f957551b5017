"""One fan-out client of bench_relay.py, in a process of its own: a v1 kernel websocket
that prints `ready` once connected, reads the kernel's stream output until it has seen
`lines` lines, then prints the monotonic time (system-wide on Linux) and exits.

    python benchmarks/fanout_watcher.py <channels url> <token> <lines>
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

import websocket

V1 = "v1.kernel.websocket.jupyter.org"


def main(url: str, token: str, lines: int) -> None:
    ws = websocket.create_connection(url, header=[f"Authorization: token {token}"], subprotocols=[V1], timeout=300)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("ready", flush=True)
    seen = 0
    while seen < lines:
        frame = ws.recv()
        (count,) = struct.unpack_from("<Q", frame)
        offsets = struct.unpack_from(f"<{count}Q", frame, 8)
        if frame[offsets[0] : offsets[1]] != b"iopub":
            continue
        header = json.loads(frame[offsets[1] : offsets[2]])
        if header["msg_type"] == "stream":
            seen += json.loads(frame[offsets[4] : offsets[5]])["text"].count("\n")
    print(time.monotonic(), flush=True)
    ws.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
