"""What a relay session's clients missed while none was connected, replayed on return.

Jupyter Server buffers a websocket session's output while it is gone and replays it to
the same session key, with no bound. Here the buffer is bounded in time (the relay
closes the session after the window) and in bytes: past the limit, output is counted,
not kept, and the returning client is told how much it missed with a `stream` on
stderr, never a silent gap. Stream output is merged while it waits, as in the outbox.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from kernels_service.kernels.record import KernelRecord, isoformat, utcnow
from kernels_service.protocol import KernelMessage
from kernels_service.protocol.message import make_message
from kernels_service.relay.outbox import MergingQueue, size_of

NOTICE_SESSION = "kernels-service-replay"


@dataclass(frozen=True)
class ReplayPolicy:
    window: float = 120.0  # seconds a session waits for its clients to come back (0: no replay)
    limit: int = 16 * 1024 * 1024  # bytes kept for them


class ReplayBuffer:
    """Messages for a session's clients while they are away, up to `limit` bytes."""

    def __init__(self, limit: int, merge: bool = True):
        """`merge=False` for a session handed over to another replica: that replica tells
        what it already has by each message's msg_id (a merged run has only its first)."""
        self.limit = limit
        self._merge = merge
        self._kept = MergingQueue(merge)
        self.kept_messages = 0
        self.dropped_messages = 0
        self.dropped_bytes = 0
        self._gap_parent = b"{}"  # the parent header of the first message not kept

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, message: KernelMessage) -> None:
        size = size_of(message)
        if self.dropped_messages or self._kept.bytes + size > self.limit:
            if not self.dropped_messages:
                self._gap_parent = message.parts[1]
            self.dropped_messages += 1
            self.dropped_bytes += size
            return
        self._kept.append(message)
        self.kept_messages += 1

    def stop_merging(self) -> None:
        """Keep each message from now on as it comes (the session is handed over)."""
        self._merge = False
        self._kept.stop_merging()

    @property
    def kept_bytes(self) -> int:
        return self._kept.bytes

    def take(self, channels: Collection[str]) -> list[KernelMessage]:
        """The kept messages of these channels, in order (then, with iopub, the notice of
        what was dropped, at the gap); the others stay for clients of other channels."""
        taken, others = [], MergingQueue(self._merge)
        while self._kept:
            message = self._kept.popleft()
            (taken if message.channel in channels else others).append(message)
        self._kept = others
        if "iopub" in channels and self.dropped_messages:
            why = f"more than the {size_of_text(self.limit)} kept for it"
            taken.append(dropped_notice(self.dropped_messages, self.dropped_bytes, why, self._gap_parent))
            self.dropped_messages = self.dropped_bytes = 0
        return taken


def dropped_notice(messages: int, size: int, why: str, parent: bytes = b"{}") -> KernelMessage:
    """An iopub `stream` on stderr that tells a returning client what it missed; its parent
    is that of the first message missed, so a notebook shows it under that cell."""
    text = (
        f"[kernels-service] {messages} message(s) of output ({size_of_text(size)}) were dropped "
        f"while this client was away: {why}.\n"
    )
    notice = make_message("iopub", "stream", {"name": "stderr", "text": text}, NOTICE_SESSION)
    return KernelMessage("iopub", [notice.parts[0], parent, *notice.parts[2:]])


def restart_notice(record: KernelRecord, window: float) -> KernelMessage | None:
    """For a kernel taken up from an earlier service (--keep-kernels), within the replay
    window after that: an iopub `stream` on stderr telling a client that its output while
    no service ran may be missing (nothing kept it); None otherwise."""
    if record.taken_up is None or (utcnow() - record.taken_up).total_seconds() > window:
        return None
    back = isoformat(record.taken_up)
    since = f"between {isoformat(record.left)} and {back}" if record.left is not None else f"until {back}"
    text = f"[kernels-service] The service restarted: output of this kernel {since} may be missing.\n"
    return make_message("iopub", "stream", {"name": "stderr", "text": text}, NOTICE_SESSION)


def handover_lost_notice(why: str) -> KernelMessage:
    """An iopub `stream` on stderr telling a client that came back from a drained replica
    that what it missed there may be missing: `why`."""
    text = f"[kernels-service] This client moved to another replica: output it missed may be missing ({why}).\n"
    return make_message("iopub", "stream", {"name": "stderr", "text": text}, NOTICE_SESSION)


def replies_lost_notice(count: int) -> KernelMessage:
    """An iopub `stream` on stderr telling a client handed over by a draining replica that
    the replies to its requests still running there will not reach it."""
    text = (
        f"[kernels-service] This client moved to another replica while {count} of its requests still ran: "
        "their replies will not arrive (their output does).\n"
    )
    return make_message("iopub", "stream", {"name": "stderr", "text": text}, NOTICE_SESSION)


def size_of_text(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size} bytes"
