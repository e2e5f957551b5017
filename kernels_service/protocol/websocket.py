"""Frame formats of the Jupyter kernel websocket (`/api/kernels/<id>/channels`).

Two protocols, chosen by subprotocol negotiation as in Jupyter Server:

* legacy (no subprotocol): a text frame holds one JSON message plus its ``channel``;
  a message with buffers travels as a binary frame: ``nbufs`` then ``nbufs`` offsets
  (big-endian uint32), the JSON message, then the buffers.
* ``v1.kernel.websocket.jupyter.org``: every message is a binary frame: the number of
  offsets, the offsets (little-endian uint64), the channel name, then the raw parts
  (header, parent_header, metadata, content, buffers...). No JSON is touched.
"""

from __future__ import annotations

import struct
from itertools import pairwise
from typing import Any

from kernels_service.protocol import strict_json
from kernels_service.protocol.errors import ProtocolError
from kernels_service.protocol.message import KernelMessage, decode_json_part, encode_json, message_from_dict

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"
_JSON_PART_NAMES = ("header", "parent_header", "metadata", "content")


# --- v1.kernel.websocket.jupyter.org ---------------------------------------------------


def encode_v1(message: KernelMessage) -> bytes:
    """One v1 binary frame for a message (parts are copied verbatim)."""
    return b"".join(v1_pieces(message))


def v1_pieces(message: KernelMessage) -> list[bytes]:
    """The v1 frame of a message as the pieces it is made of, in order: the offset table,
    the channel, then the message's own parts and buffers, the same objects (so that a
    big output is written to clients as it came, never copied into a frame)."""
    channel = message.channel.encode()
    chunks = [channel, *message.parts, *message.buffers]
    count = len(chunks) + 1
    offsets = [8 * (count + 1)]
    for chunk in chunks:
        offsets.append(offsets[-1] + len(chunk))
    return [struct.pack(f"<{count + 1}Q", count, *offsets), *chunks]


def decode_v1(frame: bytes) -> KernelMessage:
    """Parse a v1 binary frame, checking every offset; ProtocolError if it is malformed."""
    if len(frame) < 8:
        raise ProtocolError("v1 frame shorter than its offset count")
    (count,) = struct.unpack_from("<Q", frame)
    if count < 2 + len(_JSON_PART_NAMES) or 8 * (count + 1) > len(frame):
        raise ProtocolError(f"v1 frame has an impossible offset count {count}")
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    if offsets[0] != 8 * (count + 1):
        raise ProtocolError("v1 frame's first offset does not follow the offset table")
    if any(b < a for a, b in pairwise(offsets)) or offsets[-1] != len(frame):
        raise ProtocolError("v1 frame offsets are out of order or do not end at the frame's end")
    view = memoryview(frame)
    chunks = [bytes(view[a:b]) for a, b in pairwise(offsets)]
    channel = _decode_channel(chunks[0])
    # the parts go to the kernel as they are: each must be plain JSON (the header is kept)
    header, *_ = [decode_json_part(part, name) for name, part in zip(_JSON_PART_NAMES, chunks[1:5], strict=True)]
    return KernelMessage(channel, chunks[1:5], chunks[5:], header=header)


def _decode_channel(raw: bytes) -> str:
    try:
        channel = raw.decode()
    except UnicodeDecodeError:
        raise ProtocolError("channel name is not UTF-8") from None
    return channel


# --- legacy JSON / binary ----------------------------------------------------------------


def encode_legacy(message: KernelMessage) -> tuple[bytes, bool]:
    """The legacy frame for a message and whether it is binary."""
    pieces, binary = legacy_pieces(message)
    return b"".join(pieces), binary


def legacy_pieces(message: KernelMessage) -> tuple[list[bytes], bool]:
    """The legacy frame of a message as the pieces it is made of (see `v1_pieces`), and
    whether it is binary.

    The JSON envelope is spliced from the raw parts; only the header is decoded, for
    the top-level ``msg_id`` and ``msg_type`` that legacy clients read.
    """
    header = message.header
    fields = [
        b'{"header":', message.parts[0],
        b',"msg_id":', encode_json(header.get("msg_id", "")),
        b',"msg_type":', encode_json(header.get("msg_type", "")),
        b',"parent_header":', message.parts[1],
        b',"metadata":', message.parts[2],
        b',"content":', message.parts[3],
        b',"channel":', encode_json(message.channel),
    ]  # fmt: skip
    if not message.buffers:
        return [*fields, b',"buffers":[]}'], False
    return _legacy_binary_pieces([*fields, b"}"], message.buffers), True


def _legacy_binary_pieces(envelope: list[bytes], buffers: list[bytes]) -> list[bytes]:
    """Offset count, offsets (of the envelope and each buffer), envelope, buffers."""
    count = len(buffers) + 1
    offsets = [4 * (count + 1)]
    offsets.append(offsets[0] + sum(map(len, envelope)))
    for buffer in buffers[:-1]:
        offsets.append(offsets[-1] + len(buffer))
    return [struct.pack(f"!{count + 1}I", count, *offsets), *envelope, *buffers]


def decode_legacy_text(text: str | bytes) -> KernelMessage:
    """Parse a legacy text frame (one JSON message with its channel)."""
    return _message_from_json(_load_object(text), [])


def decode_legacy_binary(frame: bytes) -> KernelMessage:
    """Parse a legacy binary frame (offsets, JSON message, buffers)."""
    if len(frame) < 4:
        raise ProtocolError("binary frame shorter than its buffer count")
    (count,) = struct.unpack_from("!I", frame)
    if count < 1 or 4 * (count + 1) > len(frame):
        raise ProtocolError(f"binary frame has an impossible buffer count {count}")
    offsets = list(struct.unpack_from(f"!{count}I", frame, 4))
    if offsets[0] != 4 * (count + 1):
        raise ProtocolError("binary frame's first offset does not follow the offset table")
    offsets.append(len(frame))
    if any(b < a for a, b in pairwise(offsets)):
        raise ProtocolError("binary frame offsets are out of order or past the end")
    chunks = [frame[a:b] for a, b in pairwise(offsets)]
    return _message_from_json(_load_object(chunks[0]), chunks[1:])


def _load_object(raw: str | bytes) -> dict[str, Any]:
    try:
        value = strict_json.loads(raw)
    except strict_json.JSONRejected as error:
        raise ProtocolError(f"message is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolError("message must be a JSON object")
    return value


def _message_from_json(msg: dict[str, Any], buffers: list[bytes]) -> KernelMessage:
    channel = msg.get("channel")
    if not isinstance(channel, str):
        raise ProtocolError("message has no channel")
    return message_from_dict(channel, msg, buffers)
