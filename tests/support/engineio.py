"""Small helpers for raw Engine.IO clients in tests."""

from __future__ import annotations

import http.client
import socket

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


def frames_until_closed(sock: websocket.WebSocket, timeout: float = 3.0) -> list[str | bytes] | None:
    """The data frames the server sends until it closes the connection, or None if it
    does not close it within `timeout` seconds."""
    sock.settimeout(timeout)
    frames: list[str | bytes] = []
    try:
        while True:
            frame = sock.recv_frame()
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                return frames
            if frame.opcode == websocket.ABNF.OPCODE_TEXT:
                frames.append(frame.data.decode())
            elif frame.opcode == websocket.ABNF.OPCODE_BINARY:
                frames.append(frame.data)
    except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
        return frames
    except websocket.WebSocketTimeoutException:
        return None


def post_headers_only(port: int, path: str, content_length: int) -> tuple[int, bytes]:
    """Send a POST's headers, no body, and read the answer: the status and body of a refusal."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {content_length}\r\n\r\n"
        sock.sendall(head.encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
