"""Long polling: a polling GET waits in the server until its session has packets to send.

The engine decides whether a poll may wait (one at a time, only on polling) and which
packets answer it; this keeps the waiting GET's future (`SessionIO.poll`, whose only
writer this is) and settles it.
"""

from __future__ import annotations

import asyncio

from kernels_service.socketio.eio_codec import Packet
from kernels_service.socketio.engine import EngineEvent
from kernels_service.socketio.session_io import SessionIO


class LongPolls:
    """The waiting polls of every session of one server."""

    async def wait(self, session: SessionIO) -> list[Packet] | None:
        """The packets that answer a polling GET, once there are some; None means 400
        (the engine refused the poll: it may have closed the session for it)."""
        engine = session.engine
        if not engine.poll_requested():
            return None
        if engine.poll_answered_at_once():
            return engine.poll_answered()
        session.poll = asyncio.get_running_loop().create_future()
        return await session.poll

    def waiting(self, session: SessionIO) -> bool:
        return session.poll is not None and not session.poll.done()

    def answer(self, session: SessionIO) -> None:
        """Answer the waiting poll with what the engine has for it (the rest of the queue
        too, once the session is closed)."""
        if self.waiting(session):
            assert session.poll is not None
            session.poll.set_result(session.engine.poll_answered())
            session.poll = None

    def abandoned(self, session: SessionIO) -> list[EngineEvent]:
        """The client closed the connection of its waiting poll: that ends the session."""
        if not self.waiting(session):
            return []
        assert session.poll is not None
        session.poll.set_result(None)
        session.poll = None
        return session.engine.poll_abandoned()
