"""One Engine.IO session as a state machine: bytes and events in, packets and events out.

Sans-IO, like h11 and wsproto: no sockets, no timers inside. The transport layer feeds it
received packets and the current time, asks when it next needs the clock (`deadline`),
and sends whatever `take_outgoing` returns on the session's current transport.

Heartbeats differ by generation: in protocol 3 the client pings and the server answers;
in protocol 4 the server pings every `ping_interval` and expects a pong within
`ping_timeout`. Either way a silent client is closed, so its session cannot leak.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kernels_service.socketio.eio_codec import (
    CLOSE,
    MESSAGE,
    NOOP,
    OPEN,
    PING,
    PONG,
    UPGRADE,
    Packet,
)


@dataclass(frozen=True)
class EngineConfig:
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_payload: int = 1_000_000


@dataclass(frozen=True)
class Closed:
    """The session ended; `reason` says why (for logs and the socket.io layer)."""

    reason: str


class EngineSession:
    """State of one Engine.IO session, for either protocol generation."""

    def __init__(self, sid: str, version: int, config: EngineConfig, now: float, transport: str, b64: bool = False):
        self.sid = sid
        self.version = version
        self.config = config
        self.transport = transport
        self.b64 = b64
        self.closed: Closed | None = None
        self.probed = False  # a websocket answered the probe; waiting for UPGRADE
        self._outgoing: list[Packet] = [self._open_packet()]
        self._outgoing_bytes = 0
        self._messages: list[str | bytes] = []
        self._last_heard = now
        self._next_ping = now + config.ping_interval
        self._pong_due: float | None = None

    def _open_packet(self) -> Packet:
        handshake = {
            "sid": self.sid,
            "upgrades": ["websocket"] if self.transport == "polling" else [],
            "pingInterval": int(self.config.ping_interval * 1000),
            "pingTimeout": int(self.config.ping_timeout * 1000),
        }
        if self.version == 4:
            handshake["maxPayload"] = self.config.max_payload
        return Packet(OPEN, json.dumps(handshake, separators=(",", ":")))

    # --- inputs -----------------------------------------------------------------------

    def receive(self, packet: Packet, now: float, over: str) -> list[Packet]:
        """Take one packet from the client; return probe replies for the websocket `over`.

        Messages are collected for `take_messages`; anything to send goes to the queue.
        """
        if self.closed:
            return []
        self._last_heard = now
        if packet.type == PING:
            if packet.data == "probe" and over == "websocket" and self.transport == "polling":
                self.probed = True  # a pending poll must now return (NOOP) so the client can pause
                return [Packet(PONG, "probe")]
            if self.version == 3:
                self._outgoing.append(Packet(PONG, packet.data))
        elif packet.type == PONG:
            self._pong_due = None
        elif packet.type == MESSAGE:
            self._messages.append(packet.data)
        elif packet.type == UPGRADE and self.probed and over == "websocket":
            self.transport, self.probed = "websocket", False
        elif packet.type == CLOSE:
            self._outgoing.append(Packet(NOOP))
            self.close("client closed the session", notify=False)
        elif packet.type != NOOP:
            self.close(f"unexpected packet type {packet.type}")
        return []

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

    def close(self, reason: str, notify: bool = True) -> None:
        """End the session; `notify` queues a CLOSE packet for the client."""
        if self.closed:
            return
        if notify:
            self._outgoing.append(Packet(CLOSE))
        self.closed = Closed(reason)

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

    def take_messages(self) -> list[str | bytes]:
        messages, self._messages = self._messages, []
        return messages
