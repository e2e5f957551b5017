"""When to ping a kernel websocket client, and when to give it up for dead.

tornado's own keepalive closes any client that has not answered a ping within the
interval. A client that is reading but behind (a slow link, a laptop that slept) sees
the ping only after the output queued before it, so tornado dropped it, silently, and
its output with it. Here a ping counts as unanswered only for the time in which nothing
was on its way to the client: while output waits in the outbox or in the socket's send
queue, the client is slow, and the outbox's byte limit bounds it instead.
"""

from __future__ import annotations

import array
import enum
import fcntl
import socket
import termios


class Verdict(enum.Enum):
    WAIT = "wait"
    PING = "ping"
    DEAD = "dead"


class Keepalive:
    """A sans-IO clock of one client's pings; `tick` is called a few times an interval."""

    def __init__(self, interval: float, now: float):
        self.interval = interval
        self._last_ping = now
        self._unanswered_since: float | None = None  # when the ping still unanswered went out
        self._output_pending_at = now  # the last time output was seen on its way to the client

    def heard(self) -> None:
        """A pong, or any frame: the client is there."""
        self._unanswered_since = None

    def tick(self, now: float, output_pending: bool) -> Verdict:
        if output_pending:
            self._output_pending_at = now
        if self._unanswered_since is None:
            if now - self._last_ping >= self.interval:
                self._last_ping = self._unanswered_since = now
                return Verdict.PING
            return Verdict.WAIT
        if now - max(self._unanswered_since, self._output_pending_at) >= self.interval:
            return Verdict.DEAD
        return Verdict.WAIT


def unsent_bytes(sock: socket.socket | None) -> int:
    """Bytes in a TCP socket's send queue that the peer has not acknowledged (Linux);
    0 where that cannot be known."""
    if sock is None:
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, count)
    except (OSError, ValueError, AttributeError):
        return 0
    return count[0]
