"""Socket.IO packets, protocol 4 (with Engine.IO 3) and 5 (with Engine.IO 4). Pure functions.

A packet is ``<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]``; binary data
travels as placeholders ``{"_placeholder":true,"num":n}`` followed by that many binary
Engine.IO messages. Protocol 4 writes the namespace comma only when something follows
and auto-joins ``/``; protocol 5 always writes it and joins ``/`` only on request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kernels_service.protocol import strict_json
from kernels_service.socketio.eio_codec import TextBytes
from kernels_service.socketio.errors import RemoteProtocolError

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)
MAX_ATTACHMENTS = 1000
MAX_ACK_ID_DIGITS = 15  # acks ids are counters; JavaScript numbers are exact to 2**53


@dataclass
class SioPacket:
    """A Socket.IO packet; `data` holds bytes objects where the wire has placeholders."""

    type: int
    namespace: str = "/"
    data: Any = None
    ack_id: int | None = None
    attachments: list[bytes] = field(default_factory=list)


def encode(packet: SioPacket, protocol: int, raw_data: list[bytes] | None = None) -> list[str | bytes]:
    """Engine.IO messages for a packet: its text, then its binary attachments.

    `raw_data` is the packet's JSON data already made, as UTF-8 pieces (the relay splices
    it from raw message parts); then the text is one TextBytes joined once from the
    pieces, and `packet.attachments` are the buffers its placeholders refer to.
    """
    attachments = list(packet.attachments)
    json_data = ""
    if raw_data is None and packet.data is not None:
        data, attachments = deconstruct(packet.data)
        json_data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    kind = packet.type
    if attachments and kind in (EVENT, ACK):
        kind += BINARY_EVENT - EVENT
    head = str(kind) + (f"{len(attachments)}-" if kind in (BINARY_EVENT, BINARY_ACK) else "")
    ack = "" if packet.ack_id is None else str(packet.ack_id)
    has_tail = bool(ack or json_data or raw_data)
    if packet.namespace != "/" and (has_tail or protocol == 5):
        head += packet.namespace + ","
    elif packet.namespace != "/":
        head += packet.namespace
    if raw_data is not None:
        return [TextBytes(b"".join([(head + ack).encode(), *raw_data])), *attachments]
    return [head + ack + json_data, *attachments]


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NON_ASCII_BYTES = re.compile(rb"[\x80-\xff]+")


def _escape_char(match: re.Match[str]) -> str:
    return _escape_char_code(ord(match.group()))


def ascii_only(text: str | TextBytes) -> str | TextBytes:
    """The packet with every non-ASCII character as a JSON `\\uXXXX` escape.

    Non-ASCII can only stand inside JSON strings, so this keeps the packet's meaning.
    Engine.IO 3 clients disagree on text payloads (1.x UTF-8-encodes each packet once
    more, 2.x does not); an ASCII packet reads the same to both.
    """
    if text.isascii():
        return text
    if isinstance(text, bytes):
        return TextBytes(_NON_ASCII_BYTES.sub(lambda run: _escape_run(run.group().decode()).encode(), text))
    return _NON_ASCII.sub(_escape_char, text)


def _escape_run(run: str) -> str:
    return "".join(_escape_char_code(ord(char)) for char in run)


def _escape_char_code(code: int) -> str:
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def deconstruct(value: Any) -> tuple[Any, list[bytes]]:
    """Replace bytes in a JSON-like value by placeholders; return it and the buffers."""
    buffers: list[bytes] = []

    def walk(item: Any) -> Any:
        if isinstance(item, (bytes, bytearray, memoryview)):
            buffers.append(bytes(item))
            return {"_placeholder": True, "num": len(buffers) - 1}
        if isinstance(item, list | tuple):
            return [walk(x) for x in item]
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        return item

    return walk(value), buffers


def decode(text: str) -> tuple[SioPacket, int]:
    """Parse a packet's text; return it and how many binary attachments must follow.

    Raises RemoteProtocolError, and nothing else, for any text that is not a packet.
    """
    if not text or not "0" <= text[0] <= "6":
        raise RemoteProtocolError("unknown Socket.IO packet type")
    packet, i, expected = SioPacket(int(text[0])), 1, 0
    if packet.type in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", i)
        if dash < 0 or not _is_number(text[i:dash], 4) or int(text[i:dash]) > MAX_ATTACHMENTS:
            raise RemoteProtocolError("bad attachment count")
        expected, i = int(text[i:dash]), dash + 1
    if text[i : i + 1] == "/":
        comma = text.find(",", i)
        end = len(text) if comma < 0 else comma
        packet.namespace = text[i:end].split("?", 1)[0]
        i = end + 1 if comma >= 0 else end
    j = i
    while j < len(text) and "0" <= text[j] <= "9":
        j += 1
    if j - i > MAX_ACK_ID_DIGITS:
        raise RemoteProtocolError("ack id too long")
    if j > i:
        packet.ack_id = int(text[i:j])
    if j < len(text):
        try:
            packet.data = strict_json.loads(text[j:])
        except strict_json.JSONRejected as error:
            raise RemoteProtocolError(f"packet data: {error}") from None
    _check_shape(packet)
    return packet, expected


def _is_number(text: str, max_digits: int) -> bool:
    """ASCII digits only (`str.isdigit` also takes `²` and other digits `int` refuses)."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


def _check_shape(packet: SioPacket) -> None:
    data = packet.data
    if packet.type in (EVENT, BINARY_EVENT):
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise RemoteProtocolError("an event is a non-empty array starting with its name")
    elif packet.type in (ACK, BINARY_ACK):
        if not isinstance(data, list) or packet.ack_id is None:
            raise RemoteProtocolError("an ack needs an id and an array")
    elif packet.type == CONNECT and data is not None and not isinstance(data, dict):
        raise RemoteProtocolError("connect data must be an object")
    elif packet.type == CONNECT_ERROR:
        raise RemoteProtocolError("clients do not send connect errors")


def reconstruct(value: Any, buffers: list[bytes]) -> Any:
    """Put the binary attachments back in place of their placeholders."""
    if isinstance(value, list):
        return [reconstruct(x, buffers) for x in value]
    if isinstance(value, dict):
        if value.get("_placeholder") is True and isinstance(value.get("num"), int):
            if not 0 <= value["num"] < len(buffers):
                raise RemoteProtocolError("placeholder refers to a missing attachment")
            return buffers[value["num"]]
        return {k: reconstruct(v, buffers) for k, v in value.items()}
    return value
