"""A Jupyter message as the relay moves it: raw JSON parts plus buffers, parsed lazily.

The relay copies bytes. A message keeps its four JSON parts (header, parent_header,
metadata, content) exactly as they arrived; the header is decoded only when a decision
needs it (routing, status, the legacy JSON envelope) and then only once.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from kernels_service.protocol import strict_json
from kernels_service.protocol.errors import ProtocolError

CHANNELS = ("shell", "control", "stdin", "iopub")
CLIENT_CHANNELS = ("shell", "control", "stdin")
PROTOCOL_VERSION = "5.3"


class KernelMessage:
    """One Jupyter message: its channel, the four raw JSON parts and any binary buffers."""

    __slots__ = ("channel", "parts", "buffers", "_header")

    def __init__(
        self,
        channel: str,
        parts: list[bytes],
        buffers: list[bytes] | None = None,
        header: dict[str, Any] | None = None,
    ):
        """`header`: the first part already decoded, if a codec had to decode it anyway."""
        if len(parts) != 4:
            raise ProtocolError(f"a message has 4 JSON parts, got {len(parts)}")
        self.channel = channel
        self.parts = parts
        self.buffers = buffers or []
        self._header: dict[str, Any] | None = header

    @property
    def header(self) -> dict[str, Any]:
        """The decoded header (decoded on first use)."""
        if self._header is None:
            self._header = decode_json_part(self.parts[0], "header")
        return self._header

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))

    def parent_msg_id(self) -> str:
        """The msg_id of the message this one answers ("" if none); ProtocolError if the
        parent header is not a JSON object."""
        msg_id = decode_json_part(self.parts[1], "parent_header").get("msg_id", "")
        return msg_id if isinstance(msg_id, str) else ""

    def content(self) -> dict[str, Any]:
        """Decode the content part; only for the few messages whose content matters to us."""
        return decode_json_part(self.parts[3], "content")


def message_from_dict(channel: str, msg: dict[str, Any], buffers: list[bytes]) -> KernelMessage:
    """A client's decoded message (header, parent_header, metadata, content) as wire parts."""
    parts = []
    for name in ("header", "parent_header", "metadata", "content"):
        value = msg.get(name, {})
        if not isinstance(value, dict):
            raise ProtocolError(f"{name} must be a JSON object")
        parts.append(encode_json(value))
    if not msg.get("header"):
        raise ProtocolError("message has no header")
    return KernelMessage(channel, parts, buffers)


def decode_json_part(raw: bytes, what: str) -> dict[str, Any]:
    """Decode one JSON part that must be an object (plain JSON: no NaN, no lone
    surrogate, no absurd nesting; see strict_json)."""
    try:
        value = strict_json.loads(raw)
    except strict_json.JSONRejected as error:
        raise ProtocolError(f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


#: Built once (`json.dumps` with options builds an encoder per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode_json(value: Any) -> bytes:
    """Encode a JSON part the way jupyter_client's Session packs it."""
    return _ENCODER.encode(value).encode()


def make_message(
    channel: str,
    msg_type: str,
    content: dict[str, Any],
    session: str,
    parent: dict[str, Any] | None = None,
) -> KernelMessage:
    """Build a new message (for the service's own requests and synthetic statuses)."""
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": "kernels-service",
        "session": session,
        "date": datetime.now(timezone.utc).isoformat(),
        "version": PROTOCOL_VERSION,
    }
    parts = [encode_json(header), encode_json(parent or {}), b"{}", encode_json(content)]
    return KernelMessage(channel, parts)


def status_message(execution_state: str, session: str) -> KernelMessage:
    """A synthetic iopub `status` message, as Jupyter Server sends on restart and death."""
    return make_message("iopub", "status", {"execution_state": execution_state}, session)
