"""One Engine.IO session as a state machine: packets and the clock in, packets out.

Sans-IO, like h11 and wsproto: no sockets, no timers inside. The transport layer feeds
it received packets and the current time, asks when it next needs the clock
(`deadline`), sends whatever `take_outgoing` returns on the session's current transport,
and hands the messages from `next_message` to the layer above. Every rule of the
protocol lives here: heartbeats, the probe/upgrade dance, one poll at a time, the
payload limit and a bounded inbox.

Heartbeats differ by generation: in protocol 3 the client pings and the server answers;
in protocol 4 the server pings every `ping_interval` and expects a pong within
`ping_timeout`. Either way a silent client is closed, so its session cannot leak.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass

from kernels_service.socketio.eio_codec import CLOSE, MESSAGE, NOOP, OPEN, PING, PONG, UPGRADE, Packet

#: Packets in one polling answer at most. python-engineio's client (python-socketio's)
#: refuses a payload of more than 16 ("Too many packets in payload") and drops the
#: connection; the rest goes in the next poll, which is answered at once.
MAX_POLL_PACKETS = 16


@dataclass(frozen=True)
class EngineConfig:
    """Protocol settings of every session of one server."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    #: Largest polling body or websocket message, in bytes (socket.io's maxHttpBufferSize).
    max_payload: int = 1_000_000
    #: Client messages that may wait for the Socket.IO layer, by count and by bytes.
    max_pending_messages: int = 1000
    max_pending_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Closed:
    """The session ended; `reason` says why (for logs and the socket.io layer)."""

    reason: str
    by_client: bool = False  # the client asked for it (a CLOSE packet)


class EngineIOSession:
    """State of one Engine.IO session, for either protocol generation."""

    __slots__ = (
        "sid", "version", "config", "transport", "b64", "closed", "upgrading", "poll_open", "_outgoing",
        "_outgoing_bytes", "_inbox", "_inbox_bytes", "_last_heard", "_next_ping", "_pong_due",
    )  # fmt: skip

    def __init__(self, sid: str, version: int, config: EngineConfig, now: float, transport: str, b64: bool = False):
        self.sid = sid
        self.version = version
        self.config = config
        self.transport = transport
        self.b64 = b64
        self.closed: Closed | None = None
        self.upgrading = False  # a websocket answered the probe; waiting for UPGRADE
        self.poll_open = False  # a polling GET is waiting for packets
        self._outgoing: list[Packet] = [self._open_packet()]
        self._outgoing_bytes = 0
        self._inbox: deque[str | bytes] | None = None  # made on the first message
        self._inbox_bytes = 0
        self._last_heard = now
        self._next_ping = now + config.ping_interval
        self._pong_due: float | None = None

    def _open_packet(self) -> Packet:
        handshake = {
            "sid": self.sid,
            "upgrades": ["websocket"] if self.transport == "polling" else [],
            "pingInterval": int(self.config.ping_interval * 1000),
            "pingTimeout": int(self.config.ping_timeout * 1000),
            "maxPayload": self.config.max_payload,  # socket.io 4 sends it to Engine.IO 3 clients too
        }
        return Packet(OPEN, json.dumps(handshake, separators=(",", ":")))

    # --- inputs -----------------------------------------------------------------------

    def receive(self, packet: Packet, now: float, over: str) -> list[Packet]:
        """Take one packet from the client; return the probe reply for the websocket `over`.

        Messages go to the inbox for `next_message`; anything else to send is queued.
        """
        if self.closed:
            return []
        self._last_heard = now
        if packet.type == PING and packet.data == "probe" and over == "websocket" and self.transport == "polling":
            self.upgrading = True
            self._outgoing.append(Packet(NOOP))  # ends the pending (or next) poll; else goes out on the websocket
            return [Packet(PONG, "probe")]
        if packet.type == PING and self.version == 3:
            self._outgoing.append(Packet(PONG, packet.data))
        elif packet.type == PONG:
            self._pong_due = None
        elif packet.type == MESSAGE:
            self._take_in(packet.data)
        elif packet.type == UPGRADE and self.upgrading and over == "websocket":
            self.transport, self.upgrading = "websocket", False
        elif packet.type == CLOSE:
            self._outgoing.append(Packet(NOOP))
            self.close("client closed the session", notify=False, by_client=True)
        elif packet.type not in (NOOP, PING):
            self.close(f"unexpected packet type {packet.type} over {over}")
        return []

    def _take_in(self, data: str | bytes) -> None:
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append(data)
        self._inbox_bytes += len(data)
        if len(self._inbox) > self.config.max_pending_messages or self._inbox_bytes > self.config.max_pending_bytes:
            self.close("too many messages waiting")

    def payload_allowed(self, size: int) -> bool:
        """Whether a polling body or websocket message of `size` bytes may be decoded;
        a larger one closes the session."""
        if size <= self.config.max_payload:
            return True
        self.close(f"payload of {size} bytes is larger than maxPayload ({self.config.max_payload})")
        return False

    def poll_requested(self) -> bool:
        """A polling GET arrived. False means answer 400: the session is not on polling,
        or another poll is already waiting (a broken client: that closes the session)."""
        if self.closed or self.transport != "polling":
            return False
        if self.poll_open:
            self.close("overlapping polls")
            return False
        self.poll_open = True
        return True

    def poll_answered(self) -> list[Packet]:
        """The packets that end the open poll: the oldest MAX_POLL_PACKETS of those queued
        (all of them once the session is closed: no poll follows), NOOP if none is."""
        self.poll_open = False
        if self.closed or len(self._outgoing) <= MAX_POLL_PACKETS:
            return self.take_outgoing() or [Packet(NOOP)]
        packets = self._outgoing[:MAX_POLL_PACKETS]
        del self._outgoing[:MAX_POLL_PACKETS]
        self._outgoing_bytes -= sum(len(packet.data) for packet in packets if packet.type == MESSAGE)
        return packets

    def poll_abandoned(self) -> None:
        """The client went away while its poll waited: the session is over (as engine.io does)."""
        self.poll_open = False
        self.close("poll request cancelled", notify=False)

    def websocket_closed(self, was_probe: bool) -> None:
        """A websocket of this session closed; only the session's own transport ends it."""
        if was_probe:
            self.upgrading = False
        else:
            self.close("transport closed", notify=False)

    def tick(self, now: float) -> None:
        """Let time pass: send a due ping (protocol 4) or close a silent session."""
        if self.closed:
            return
        if self.version == 3:
            if now >= self._last_heard + self.config.ping_interval + self.config.ping_timeout:
                self.close("ping timeout")
            return
        if self._pong_due is not None and now >= self._pong_due:
            self.close("ping timeout")
        elif self._pong_due is None and now >= self._next_ping:
            self._outgoing.append(Packet(PING))
            self._pong_due = now + self.config.ping_timeout
            self._next_ping = now + self.config.ping_interval

    def send(self, data: str | bytes) -> None:
        """Queue a message for the client."""
        if not self.closed:
            self._outgoing.append(Packet(MESSAGE, data))
            self._outgoing_bytes += len(data)

    def close(self, reason: str, notify: bool = True, by_client: bool = False) -> None:
        """End the session; `notify` queues a CLOSE packet for the client."""
        if self.closed:
            return
        if notify:
            self._outgoing.append(Packet(CLOSE))
        self.closed = Closed(reason, by_client)
        self._inbox, self._inbox_bytes = None, 0

    # --- outputs ----------------------------------------------------------------------

    def deadline(self) -> float:
        """When `tick` must next be called."""
        if self.version == 3:
            return self._last_heard + self.config.ping_interval + self.config.ping_timeout
        return self._pong_due if self._pong_due is not None else self._next_ping

    def take_outgoing(self) -> list[Packet]:
        packets, self._outgoing, self._outgoing_bytes = self._outgoing, [], 0
        return packets

    def outgoing_bytes(self) -> int:
        """Size of the messages waiting for the client (for flow control)."""
        return self._outgoing_bytes

    def has_outgoing(self) -> bool:
        return bool(self._outgoing)

    def has_messages(self) -> bool:
        """Whether messages wait for the layer above."""
        return bool(self._inbox)

    def next_message(self) -> str | bytes | None:
        """The oldest message not yet handed to the layer above, if any."""
        if not self._inbox:
            return None
        message = self._inbox.popleft()
        self._inbox_bytes -= len(message)
        if not self._inbox:
            self._inbox = None  # an idle session keeps no queue
        return message
