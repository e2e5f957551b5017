"""Websocket frames as the service writes them (RFC 6455, 5.2), and how a run of them
becomes writes to a socket.

tornado's `write_message` wraps each frame in a task of its own and sends it at once: a
system call, a future and a callback per frame. Both websocket doors (the kernel
websocket and socket.io) instead write what one connection has for a turn of the event
loop straight to its stream, framed here. The frames are the same as tornado's for a
server without compression (the service never negotiates permessage-deflate): final,
unmasked, text or binary.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple


def frame_header(length: int, binary: bool) -> bytes:
    """The header of a final, unmasked websocket frame of `length` payload bytes."""
    first = 0x82 if binary else 0x81
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


class WireFrame(NamedTuple):
    """One websocket frame as written: its header, and its payload as pieces (built once
    per message and protocol, and written to every client of that protocol as it is)."""

    header: bytes
    pieces: list[bytes]
    length: int  # of the payload


def wire_frame(pieces: list[bytes], binary: bool) -> WireFrame:
    """The frame whose payload is the pieces joined (a text payload must be UTF-8)."""
    length = sum(map(len, pieces))
    return WireFrame(frame_header(length, binary), pieces, length)


#: Pieces from this size on are written as they are, not joined with their neighbours
#: (a copy of that size costs more than the extra write).
BIG_PIECE = 32 * 1024


def coalesced(pieces: list[bytes]) -> list[bytes]:
    """The same bytes in as few writes as copying allows: runs of small pieces joined,
    each big piece (BIG_PIECE or more) left as it is; no empty write."""
    writes: list[bytes] = []
    small: list[bytes] = []
    for piece in pieces:
        if not piece:
            continue
        if len(piece) < BIG_PIECE:
            small.append(piece)
            continue
        if small:
            writes.append(b"".join(small))
            small = []
        writes.append(piece)
    if small:
        writes.append(b"".join(small))
    return writes


def writes_of(frames: Iterable[WireFrame]) -> list[bytes]:
    """The writes that send these frames in order (headers and pieces `coalesced`)."""
    pieces: list[bytes] = []
    for frame in frames:
        pieces.append(frame.header)
        pieces += frame.pieces
    return coalesced(pieces)
