"""A real websocket client of `/api/kernels/<id>/channels`, in both protocols (blocking:
websocket-client), for tests and benchmarks; it needs the test extras.

Frames are built and read with Jupyter Server's own codec functions, so the service's
codecs are checked against an independent implementation.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import websocket
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

V1 = "v1.kernel.websocket.jupyter.org"


class ChannelsClient:
    """Send requests and collect replies/outputs over one kernel websocket connection."""

    def __init__(
        self,
        service: Any,
        kernel_id: str,
        protocol: str = "legacy",
        token: str | None = None,
        receive_buffer: int | None = None,
        session: str | None = None,
    ):
        """`receive_buffer`: a small SO_RCVBUF makes loopback behave like a network, where
        what a client has not read waits on the server's side, not in the client's buffer."""
        self.protocol = protocol
        self.session = session or uuid.uuid4().hex
        self.backlog: list[dict[str, Any]] = []
        url = service.ws_url(f"api/kernels/{kernel_id}/channels?session_id={self.session}")
        self.ws = websocket.create_connection(
            url,
            timeout=30,
            subprotocols=[V1] if protocol == "v1" else None,
            header=[f"Authorization: token {service.token if token is None else token}"],
            sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer),) if receive_buffer else (),
        )
        if protocol == "v1":
            assert self.ws.getsubprotocol() == V1

    def close(self) -> None:
        self.ws.close()

    def send(self, channel: str, msg_type: str, content: dict, buffers: list[bytes] | None = None) -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "test",
            "version": "5.3",
            "date": "2026-01-01T00:00:00Z",
        }
        message = {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": buffers or [],
        }
        if self.protocol == "v1":
            parts = [json.dumps(message[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
            self.ws.send_binary(serialize_msg_to_ws_v1([*parts, *(buffers or [])], channel))
        elif buffers:
            self.ws.send_binary(serialize_binary_message(message))
        else:
            message.pop("buffers")
            self.ws.send(json.dumps(message))
        return msg_id

    def recv(self, timeout: float = 30) -> dict[str, Any]:
        """The next message from the kernel, decoded as a dict with channel and buffers."""
        if self.backlog:
            return self.backlog.pop(0)
        opcode, data = self._recv_data_frame(timeout)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError(f"closed by the server: {data[:2].hex()} {data[2:].decode(errors='replace')}")
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(data)
        if self.protocol == "v1":
            channel, parts = deserialize_msg_from_ws_v1(data)
            names = ("header", "parent_header", "metadata", "content")
            message = {name: json.loads(part) for name, part in zip(names, parts[:4], strict=True)}
            return {**message, "channel": channel, "buffers": parts[4:]}
        return deserialize_binary_message(data)

    def _recv_data_frame(self, timeout: float) -> tuple[int, bytes]:
        """The next data or close frame within `timeout` seconds in all, answering pings.

        websocket-client's own timeout is per read of the socket, so the service's pings
        would stretch a plain `recv_data` past any deadline."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.ws.settimeout(remaining)
            opcode, frame = self.ws.recv_data(control_frame=True)
            if opcode not in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                return opcode, frame
        raise TimeoutError(f"no frame in {timeout}s")

    def recv_until(self, predicate: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """Messages up to and including the first for which predicate is true."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message in {timeout}s; saw {[m['header']['msg_type'] for m in seen]}")
            message = self.recv(remaining)
            seen.append(message)
            if predicate(message):
                return seen

    def execute(self, code: str, timeout: float = 30, **content: Any) -> tuple[dict, list[dict]]:
        """Run code; return the execute_reply and the iopub messages of that request until idle."""
        msg_id = self.send("shell", "execute_request", execute_content(code, **content))
        return self.wait_for(msg_id, timeout)

    def wait_for(self, msg_id: str, timeout: float = 30) -> tuple[dict, list[dict]]:
        """The shell reply to msg_id and the iopub output of that request until idle."""
        return reply_and_output(self.recv, msg_id, timeout)


def execute_content(code: str, **content: Any) -> dict[str, Any]:
    """An execute_request's content: `code`, not silent, no history, no stdin (or as given)."""
    defaults = {"silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    return {"code": code, **defaults, **content}


def reply_and_output(recv: Callable[[float], dict[str, Any]], msg_id: str, timeout: float) -> tuple[dict, list[dict]]:
    """Read messages with `recv(seconds)` until the shell reply to msg_id and its iopub
    status idle came, within `timeout` seconds; the reply and the request's other iopub
    messages. A second reply to the same request is an AssertionError."""
    reply, outputs, idle = None, [], False
    deadline = time.monotonic() + timeout
    while reply is None or not idle:
        message = recv(max(deadline - time.monotonic(), 0.01))
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["channel"] == "shell":
            assert reply is None, f"a second reply to {msg_id}"
            reply = message
        elif message["channel"] == "iopub":
            if message["header"]["msg_type"] == "status":
                idle = idle or message["content"]["execution_state"] == "idle"
            else:
                outputs.append(message)
    return reply, outputs


def stream_text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(
        m["content"]["text"] for m in outputs if m["header"]["msg_type"] == "stream" and m["content"]["name"] == name
    )


def close_of(client: ChannelsClient, timeout: float = 30) -> tuple[int, str]:
    """The code and reason of the close frame the service sent (the client reads past
    anything before it, answering pings as it goes, within `timeout` seconds in all)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        opcode, data = client._recv_data_frame(remaining)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0], data[2:].decode()
    raise AssertionError("not closed")
