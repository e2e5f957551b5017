"""Engine.IO packets and polling payloads, protocol 3 and 4. Pure functions, exact bytes.

Protocol 3 (socket.io 1.x/2.x clients):
* a packet is ``<type digit><data>``; over websocket a binary packet is its type byte
  then the data;
* a polling payload is either *binary* (``application/octet-stream``): per packet
  ``0x00`` (string) or ``0x01`` (binary), the length as one byte per decimal digit,
  ``0xFF``, then the packet; or *text*: ``<length>:<packet>`` repeated, binary packets
  as ``b4<base64>``. socket.io-client 1.x UTF-8-encodes each text packet of a text
  payload once more and counts that form (it only sends text payloads with ``b64=1``);
  2.x counts UTF-16 code units and encodes nothing extra.

Protocol 4 (socket.io-client 3.x/4.x, python-socketio 5):
* over websocket a binary frame is the raw data of a message packet;
* a polling payload is the text packets joined by ``\\x1e``, binary ones as ``b<base64>``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

from kernels_service.socketio.errors import RemoteProtocolError

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = range(7)
SEPARATOR = "\x1e"
TEXT_CONTENT_TYPE = "text/plain; charset=UTF-8"
BINARY_CONTENT_TYPE = "application/octet-stream"


class TextBytes(bytes):
    """Text already encoded as UTF-8: a text message, never a binary one.

    Large kernel output travels this way from the relay's raw JSON parts to the socket,
    so no layer decodes it to a `str` and encodes it back.
    """


@dataclass(frozen=True)
class Packet:
    """One Engine.IO packet; `data` is text (`str` or TextBytes), binary data, or empty."""

    type: int
    data: str | bytes = ""

    @property
    def binary(self) -> bool:
        return is_binary(self.data)


def is_binary(data: str | bytes) -> bool:
    """Binary data, as opposed to text (`str` or TextBytes)."""
    return isinstance(data, bytes) and not isinstance(data, TextBytes)


# --- single packets (websocket frames) ---------------------------------------------------


def encode_ws(packet: Packet, version: int) -> str | bytes:
    """A websocket frame for a packet: text (`str` or TextBytes), or bytes for binary messages."""
    if packet.binary:
        return bytes([packet.type]) + packet.data if version == 3 else packet.data  # type: ignore[operator]
    if isinstance(packet.data, TextBytes):
        return TextBytes(b"%d%b" % (packet.type, packet.data))
    return f"{packet.type}{packet.data}"


def decode_ws(frame: str | bytes, version: int) -> Packet:
    """Parse one websocket frame."""
    if isinstance(frame, bytes):
        if version == 4:
            return Packet(MESSAGE, frame)
        if not frame or frame[0] > NOOP:
            raise RemoteProtocolError("binary frame without a valid packet type")
        return Packet(frame[0], frame[1:])
    return decode_text_packet(frame, version)


def decode_text_packet(text: str, version: int) -> Packet:
    """Parse a text packet; `b…` carries base64 binary (polling only)."""
    if not text:
        raise RemoteProtocolError("empty packet")
    if text[0] == "b":
        encoded = text[2:] if version == 3 else text[1:]
        if version == 3 and text[1:2] != str(MESSAGE):
            raise RemoteProtocolError("base64 packet is not a message")
        try:
            return Packet(MESSAGE, base64.b64decode(encoded, validate=True))
        except ValueError:  # binascii.Error, or non-ASCII text
            raise RemoteProtocolError("invalid base64 in binary packet") from None
    if not "0" <= text[0] <= "6":
        raise RemoteProtocolError(f"unknown packet type {text[0]!r}")
    return Packet(int(text[0]), text[1:])


def _text_form(packet: Packet, version: int) -> bytes:
    """The packet as UTF-8 text: `<type><data>`, binary data as `b<base64>` (`b4<base64>` in v3)."""
    if packet.binary:
        prefix = b"b" if version == 4 else b"b%d" % MESSAGE
        return prefix + base64.b64encode(packet.data)  # type: ignore[arg-type]
    data = packet.data if isinstance(packet.data, bytes) else packet.data.encode()
    return b"%d%b" % (packet.type, data)


def _utf16_length(text: bytes) -> int:
    """How many UTF-16 code units (JavaScript's string length) this UTF-8 text has."""
    return len(text) if text.isascii() else len(text.decode().encode("utf-16-le")) // 2


# --- polling payloads ---------------------------------------------------------------------


def encode_payload(packets: list[Packet], version: int, b64: bool = False) -> tuple[bytes, str]:
    """The body and content type of a polling response carrying these packets.

    Protocol 3 answers as engine.io 3 did: a text payload (`len:packet`, lengths in
    UTF-16 code units) unless a packet is binary and the client reads binary payloads;
    clients in base64 mode (`b64=1`) always get text, in socket.io-client 1.x's form.
    """
    if version == 4:
        return SEPARATOR.encode().join(_text_form(p, 4) for p in packets), TEXT_CONTENT_TYPE
    if b64:
        return b"".join(_v3_text_entry(p) for p in packets), TEXT_CONTENT_TYPE
    if any(p.binary for p in packets):
        return b"".join(_binary_payload_entry(p) for p in packets), BINARY_CONTENT_TYPE
    return b"".join(_v3_plain_text_entry(p) for p in packets), TEXT_CONTENT_TYPE


def _binary_payload_entry(packet: Packet) -> bytes:
    if packet.binary:
        body, kind = bytes([packet.type]) + packet.data, b"\x01"  # type: ignore[operator]
    else:
        body, kind = _text_form(packet, 3), b"\x00"
    return kind + bytes(int(digit) for digit in str(len(body))) + b"\xff" + body


def _v3_text_entry(packet: Packet) -> bytes:
    """`len:packet` with the packet UTF-8-encoded once more, as socket.io-client 1.x reads it:
    each byte of its UTF-8 form is one character."""
    form = _text_form(packet, 3)
    return b"%d:%b" % (len(form), form if form.isascii() else form.decode("latin-1").encode())


def _v3_plain_text_entry(packet: Packet) -> bytes:
    """`len:packet` with the length in UTF-16 code units, as engine.io 3 writes it."""
    form = _text_form(packet, 3)
    return b"%d:%b" % (_utf16_length(form), form)


def decode_payload(body: bytes, version: int, utf8_twice: bool = False) -> list[Packet]:
    """All packets of a polling request body; RemoteProtocolError if it is malformed."""
    return list(iter_payload(body, version, utf8_twice))


def iter_payload(body: bytes, version: int, utf8_twice: bool = False) -> Iterator[Packet]:
    """The packets of a polling request body, one at a time (the caller may stop early).

    `utf8_twice`: text packets of a v3 text payload may carry one extra UTF-8 encoding
    (socket.io-client 1.x in base64 mode); undo it where it is present.
    """
    if version == 4:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise RemoteProtocolError("payload is not UTF-8") from None
        return (decode_text_packet(part, 4) for part in text.split(SEPARATOR))
    if body[:1] in (b"\x00", b"\x01"):
        return _decode_binary_payload(body)
    return _decode_v3_text_payload(body, utf8_twice)


def _decode_binary_payload(body: bytes) -> Iterator[Packet]:
    """`<0|1><length digits as bytes 0-9>\\xff<packet>` repeated."""
    i = 0
    while i < len(body):
        kind, end = body[i], body.find(b"\xff", i + 1)
        digits = body[i + 1 : end]
        if kind not in (0, 1) or end < 0 or not 0 < len(digits) <= 10 or any(d > 9 for d in digits):
            raise RemoteProtocolError("malformed binary payload header")
        length = int("".join(str(d) for d in digits))
        chunk = body[end + 1 : end + 1 + length]
        if len(chunk) != length or length == 0:
            raise RemoteProtocolError("binary payload shorter than its length")
        if kind == 1:
            if chunk[0] > NOOP:
                raise RemoteProtocolError("binary packet without a valid packet type")
            yield Packet(chunk[0], chunk[1:])
        else:
            try:
                text = chunk.decode()
            except UnicodeDecodeError:
                raise RemoteProtocolError("text packet is not UTF-8") from None
            yield decode_text_packet(text, 3)
        i = end + 1 + length


def _decode_v3_text_payload(body: bytes, utf8_twice: bool) -> Iterator[Packet]:
    """`len:packet…`, lengths counted in UTF-16 code units as JavaScript counts them."""
    try:
        units = body.decode().encode("utf-16-le")
    except UnicodeDecodeError:
        raise RemoteProtocolError("payload is not UTF-8") from None
    i = 0
    while i < len(units):
        colon = units.find(b":\x00", i)
        while colon >= 0 and (colon - i) % 2:
            colon = units.find(b":\x00", colon + 1)
        digits = units[i:colon].decode("utf-16-le") if colon >= 0 else ""
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 10:
            raise RemoteProtocolError("malformed payload length")
        start, end = colon + 2, colon + 2 + 2 * int(digits)
        if end > len(units) or end == start:
            raise RemoteProtocolError("payload shorter than its length")
        try:
            text = units[start:end].decode("utf-16-le")
        except UnicodeDecodeError:
            raise RemoteProtocolError("payload length splits a character") from None
        yield decode_text_packet(_undo_extra_utf8(text) if utf8_twice else text, 3)
        i = end


def _undo_extra_utf8(text: str) -> str:
    """Decode a string whose characters are UTF-8 bytes; leave it if it is not such a string."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
