"""A kernel websocket client that moves between replicas as JupyterLab's does: closed by
the service with 1012 (a replica drains), or cut off, it connects again through the
balancer with the same `session_id`, retrying while replicas refuse it, and goes on
reading where it was."""

from __future__ import annotations

import time
import uuid
from typing import Any

import websocket

from kernels_service.testing.channels import ChannelsClient, execute_content, reply_and_output

#: What a connection that ends, or cannot be made, raises.
CUT = (ConnectionError, websocket.WebSocketException, OSError)


class MovingClient:
    def __init__(self, front: Any, kernel: str, protocol: str = "v1", reconnect_within: float = 60, first: Any = None):
        """`first`: where it connects the first time (a replica), if not through `front`."""
        self.front, self.kernel, self.protocol = front, kernel, protocol
        self.session = uuid.uuid4().hex
        self.reconnect_within = reconnect_within
        self.moves: list[str] = []  # why each connection ended
        self.client = self._connect(first or front)

    def _connect(self, where: Any = None) -> ChannelsClient:
        deadline = time.monotonic() + self.reconnect_within
        while True:
            try:
                return ChannelsClient(where or self.front, self.kernel, self.protocol, session=self.session)
            except CUT:  # a draining replica's 503, a replica that is down: the balancer's next one
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _moved(self, why: BaseException) -> None:
        self.moves.append(str(why))
        try:
            self.client.close()
        except CUT:
            pass
        self.client = self._connect()

    def send(self, channel: str, msg_type: str, content: dict) -> str:
        while True:
            try:
                return self.client.send(channel, msg_type, content)
            except CUT as why:  # not sent: sent again on the next connection
                self._moved(why)

    def recv(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.client.recv(max(deadline - time.monotonic(), 0.01))
            except (TimeoutError, websocket.WebSocketTimeoutException):
                raise TimeoutError(f"nothing from the kernel in {timeout} s (moves: {self.moves})") from None
            except CUT as why:
                self._moved(why)

    def execute(self, code: str, timeout: float = 60) -> tuple[dict, list[dict]]:
        """Run code; the execute_reply and the request's iopub output until idle (once
        each, across moves: a second reply is an AssertionError)."""
        msg_id = self.send("shell", "execute_request", execute_content(code))
        return reply_and_output(self.recv, msg_id, timeout)

    def close(self) -> None:
        try:
            self.client.close()
        except CUT:
            pass
