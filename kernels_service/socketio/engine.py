"""One Engine.IO session as a state machine: packets and the clock in, events and packets out.

Sans-IO, like h11 and wsproto: no sockets, no timers inside. The transport layer feeds
it received packets (saying which transport they came `over`), transport events and
the current time; each input returns what happened that the I/O layer must act on
(`ProbeAnswered`, `Upgraded`, `Closed`), and `take_outgoing` gives the packets to send
on the session's transport. Messages for the layer above come from `next_message`.
Every rule of the protocol lives here: heartbeats, the probe/upgrade dance, one poll at
a time, the payload limit and a bounded inbox.

The transport's state is explicit (`EngineState`), and every change of it is one row
of `TRANSITIONS`: polling, upgrading (a websocket answered the probe), websocket,
closed. Anything that closes the session leads to CLOSED from any state.

Heartbeats differ by generation: in protocol 3 the client pings and the server answers;
in protocol 4 the server pings every `ping_interval` and expects a pong within
`ping_timeout`. Either way a silent client is closed, so its session cannot leak.
"""

from __future__ import annotations

import enum
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
    #: Bytes of messages that may wait for a client; past it the client is too slow and
    #: its session is closed with that reason: output is never dropped silently.
    max_outgoing_bytes: int = 128 * 1024 * 1024


class EngineState(enum.Enum):
    """Where a session's transport stands."""

    POLLING = "polling"  # long polling carries the session
    PROBING = "probing"  # a websocket of the session opened (its probe); polling carries on
    UPGRADING = "upgrading"  # the probe was answered; polling carries on until UPGRADE
    WEBSOCKET = "websocket"  # the websocket carries the session
    CLOSED = "closed"


#: What moves a session's transport, besides a close (which leads to CLOSED from anywhere).
PROBE_OPENED = "a websocket of the polling session opened"
PROBED = "ping probe on that websocket"
PROBE_CLOSED = "that websocket closed"
UPGRADED = "upgrade on that websocket"

#: Every change of transport state: (state, what happened) -> the next state. Nothing
#: else changes it; an event that has no row here leaves the state as it is.
TRANSITIONS: dict[tuple[EngineState, str], EngineState] = {
    (EngineState.POLLING, PROBE_OPENED): EngineState.PROBING,
    (EngineState.PROBING, PROBED): EngineState.UPGRADING,
    (EngineState.PROBING, PROBE_CLOSED): EngineState.POLLING,
    (EngineState.UPGRADING, PROBE_CLOSED): EngineState.POLLING,
    (EngineState.UPGRADING, UPGRADED): EngineState.WEBSOCKET,
}

#: The transports a packet can come over: polling, the probing websocket (before the
#: upgrade), or the session's websocket.
OVER_POLLING, OVER_PROBE, OVER_WEBSOCKET = "polling", "probe", "websocket"


@dataclass(frozen=True)
class Closed:
    """The session ended; `reason` says why (for logs and the socket.io layer)."""

    reason: str
    by_client: bool = False  # the client asked for it (a CLOSE packet)


@dataclass(frozen=True)
class ProbeAnswered:
    """Send these packets on the probing websocket (the PONG of its probe)."""

    packets: list[Packet]


@dataclass(frozen=True)
class Upgraded:
    """The probing websocket is now the session's transport."""


EngineEvent = Closed | ProbeAnswered | Upgraded


class EngineIOSession:
    """State of one Engine.IO session, for either protocol generation."""

    __slots__ = (
        "sid", "version", "config", "state", "b64", "closed", "poll_open", "_outgoing", "_outgoing_bytes",
        "_inbox", "_inbox_bytes", "_last_heard", "_next_ping", "_pong_due",
    )  # fmt: skip

    def __init__(self, sid: str, version: int, config: EngineConfig, now: float, transport: str, b64: bool = False):
        """`transport`: the one the session opens on, polling or websocket."""
        self.sid = sid
        self.version = version
        self.config = config
        self.state = EngineState.WEBSOCKET if transport == "websocket" else EngineState.POLLING
        self.b64 = b64
        self.closed: Closed | None = None
        self.poll_open = False  # a polling GET is waiting for packets
        self._outgoing: list[Packet] = [self._open_packet()]
        self._outgoing_bytes = 0
        self._inbox: deque[str | bytes] | None = None  # made on the first message
        self._inbox_bytes = 0
        self._last_heard = now
        self._next_ping = now + config.ping_interval
        self._pong_due: float | None = None

    @property
    def on_polling(self) -> bool:
        """Polling carries the session (upgrading or not): polls and POSTs are its transport."""
        return self.state in (EngineState.POLLING, EngineState.PROBING, EngineState.UPGRADING)

    def _move(self, happened: str) -> bool:
        """Apply the transition of `happened` from the current state; False if none applies."""
        following = TRANSITIONS.get((self.state, happened))
        if following is None:
            return False
        self.state = following
        return True

    def _open_packet(self) -> Packet:
        handshake = {
            "sid": self.sid,
            "upgrades": ["websocket"] if self.state is EngineState.POLLING else [],
            "pingInterval": int(self.config.ping_interval * 1000),
            "pingTimeout": int(self.config.ping_timeout * 1000),
            "maxPayload": self.config.max_payload,  # socket.io 4 sends it to Engine.IO 3 clients too
        }
        return Packet(OPEN, json.dumps(handshake, separators=(",", ":")))

    # --- inputs -----------------------------------------------------------------------

    def receive(self, packet: Packet, now: float, over: str) -> list[EngineEvent]:
        """Take one packet from the client, come `over` polling, the probing websocket or
        the session's websocket. Messages go to the inbox for `next_message`; anything
        else to send is queued. A packet that breaks the protocol closes the session."""
        if self.closed:
            return []
        self._last_heard = now
        if packet.type == PING and packet.data == "probe" and over == OVER_PROBE and self._move(PROBED):
            self._outgoing.append(Packet(NOOP))  # ends the pending (or next) poll; else goes out on the websocket
            return [ProbeAnswered([Packet(PONG, "probe")])]
        if packet.type == UPGRADE and over == OVER_PROBE and self._move(UPGRADED):
            return [Upgraded()]
        if packet.type == PING and self.version == 3:
            self._outgoing.append(Packet(PONG, packet.data))
        elif packet.type == PONG:
            self._pong_due = None
        elif packet.type == MESSAGE:
            return self._take_in(packet.data)
        elif packet.type == CLOSE:
            self._outgoing.append(Packet(NOOP))
            return self.close("client closed the session", notify=False, by_client=True)
        elif packet.type not in (NOOP, PING):
            return self.close(f"unexpected packet type {packet.type} over {over}")
        return []

    def _take_in(self, data: str | bytes) -> list[EngineEvent]:
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append(data)
        self._inbox_bytes += len(data)
        if len(self._inbox) > self.config.max_pending_messages or self._inbox_bytes > self.config.max_pending_bytes:
            return self.close("too many messages waiting")
        return []

    def payload_allowed(self, size: int) -> list[EngineEvent]:
        """Whether a polling body or websocket message of `size` bytes may be decoded: []
        if it may; a larger one closes the session (the `Closed` event)."""
        if size <= self.config.max_payload:
            return []
        return self.close(f"payload of {size} bytes is larger than maxPayload ({self.config.max_payload})")

    def poll_requested(self) -> bool:
        """A polling GET arrived. False means answer 400: the session is not on polling,
        or another poll is already waiting (a broken client: that closes the session)."""
        if self.closed or not self.on_polling:
            return False
        if self.poll_open:
            self.close("overlapping polls")
            return False
        self.poll_open = True
        return True

    def poll_answered_at_once(self) -> bool:
        """Whether a poll that arrives now is answered at once rather than waiting: when
        packets are queued, the session is closed, or an upgrade is under way. During the
        upgrade the client pauses polling once its probe is answered, and waits for its
        last poll to end; the NOOP queued with the probe's answer may already have ended
        an earlier poll (the polling answer and the websocket's travel apart), so every
        poll until the upgrade ends gets a NOOP at least (engine.io's server sends one to
        a waiting poll every 100 ms for the same reason)."""
        return self.closed or self.has_outgoing() or self.state is EngineState.UPGRADING

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

    def poll_abandoned(self) -> list[EngineEvent]:
        """The client went away while its poll waited: the session is over (as engine.io does)."""
        self.poll_open = False
        return self.close("poll request cancelled", notify=False)

    def probe_opened(self) -> bool:
        """A websocket of this polling session opened: it is the session's probe. False
        when the session has a probe or a websocket already (or is not on polling): that
        websocket is refused."""
        return not self.closed and self._move(PROBE_OPENED)

    def transport_closed(self, which: str) -> list[EngineEvent]:
        """A websocket of this session closed (`which`: the probe or the session's own);
        only the session's own transport ends it."""
        if which == OVER_PROBE:
            self._move(PROBE_CLOSED)
            return []
        return self.close("transport closed", notify=False)

    def tick(self, now: float) -> list[EngineEvent]:
        """Let time pass: send a due ping (protocol 4) or close a silent session."""
        if self.closed:
            return []
        if self.version == 3:
            if now >= self._last_heard + self.config.ping_interval + self.config.ping_timeout:
                return self.close("ping timeout")
            return []
        if self._pong_due is not None and now >= self._pong_due:
            return self.close("ping timeout")
        if self._pong_due is None and now >= self._next_ping:
            self._outgoing.append(Packet(PING))
            self._pong_due = now + self.config.ping_timeout
            self._next_ping = now + self.config.ping_interval
        return []

    def send(self, data: str | bytes) -> None:
        """Queue a message for the client; a client that lets more than
        `max_outgoing_bytes` pile up is too slow, and its session is closed."""
        if self.closed:
            return
        self._outgoing.append(Packet(MESSAGE, data))
        self._outgoing_bytes += len(data)
        if self._outgoing_bytes > self.config.max_outgoing_bytes:
            self.take_outgoing()
            self.close(f"client too slow: more than {self.config.max_outgoing_bytes // (1024 * 1024)} MiB waiting")

    def send_all(self, messages: list[str | bytes]) -> None:
        """Queue messages for the client, in order (what the Socket.IO layer returned)."""
        for message in messages:
            self.send(message)

    def close(self, reason: str, notify: bool = True, by_client: bool = False) -> list[EngineEvent]:
        """End the session; `notify` queues a CLOSE packet for the client. Returns the
        `Closed` event the first time, nothing after."""
        if self.closed:
            return []
        if notify:
            self._outgoing.append(Packet(CLOSE))
        self.closed = Closed(reason, by_client)
        self.state = EngineState.CLOSED
        self._inbox, self._inbox_bytes = None, 0
        return [self.closed]

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
