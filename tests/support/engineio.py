"""Small helpers for raw Engine.IO websocket clients in tests."""

from __future__ import annotations

import websocket


def recv_non_ping(sock: websocket.WebSocket) -> str | bytes:
    """The next frame that is not a server ping (pings are answered, as clients do)."""
    while True:
        data = sock.recv()
        if data != "2":
            return data
        sock.send("3")


def wait_closed(sock: websocket.WebSocket, timeout: float = 3.0) -> bool:
    """True once the server closes the connection within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            frame = sock.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
        return True
    except websocket.WebSocketTimeoutException:
        return False
