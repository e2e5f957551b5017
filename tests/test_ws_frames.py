"""The websocket frames both doors write (exact bytes, RFC 6455 5.2), and how the writer
splits a batch into writes."""

from __future__ import annotations

import struct
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from kernels_service.protocol.ws_frames import BIG_PIECE, coalesced, frame_header, wire_frame, writes_of


def test_frame_headers_for_each_length_encoding():
    assert frame_header(0, binary=False) == b"\x81\x00"
    assert frame_header(125, binary=True) == b"\x82\x7d"
    assert frame_header(126, binary=True) == b"\x82\x7e\x00\x7e"
    assert frame_header(65535, binary=False) == b"\x81\x7e\xff\xff"
    assert frame_header(65536, binary=True) == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"


def parse_header(header: bytes) -> tuple[bool, int, int]:
    """(binary, payload length, header length), as a client reads them."""
    first, second = header[0], header[1]
    assert first & 0x80 and not second & 0x80  # final, unmasked
    length, size = second & 0x7F, 2
    if length == 126:
        (length,), size = struct.unpack("!H", header[2:4]), 4
    elif length == 127:
        (length,), size = struct.unpack("!Q", header[2:10]), 10
    return first & 0x0F == 2, length, size


@given(st.integers(min_value=0, max_value=2**40), st.booleans())
def test_any_length_reads_back(length, binary):
    header = frame_header(length, binary)
    assert parse_header(header) == (binary, length, len(header))


def test_small_pieces_are_joined_and_big_ones_kept_as_they_are():
    big = b"b" * BIG_PIECE
    bigger = b"c" * (BIG_PIECE + 1)
    writes = coalesced([b"\x82\x7f", b"ab", big, b"c", b"", b"d", bigger])
    assert writes == [b"\x82\x7fab", big, b"cd", bigger]
    assert writes[1] is big and writes[3] is bigger  # not copied
    assert coalesced([b"x" * (BIG_PIECE - 1), b"y"]) == [b"x" * (BIG_PIECE - 1) + b"y"]
    assert coalesced([b"", big, b""]) == [big]


pieces = st.lists(
    st.one_of(st.binary(max_size=64), st.integers(0, 3).map(lambda n: bytes([n]) * (BIG_PIECE + n))),
    max_size=12,
)


@given(pieces)
def test_coalesced_writes_are_the_same_bytes_with_no_small_neighbours(chunks):
    writes = coalesced(chunks)
    assert b"".join(writes) == b"".join(chunks)
    for before, after in pairwise(writes):
        assert len(before) >= BIG_PIECE or len(after) >= BIG_PIECE  # two small writes would be one
    assert all(writes)  # no empty write


@given(st.lists(st.binary(max_size=40), max_size=6), st.booleans())
def test_a_frame_is_its_header_and_its_pieces(chunks, binary):
    frame = wire_frame(chunks, binary)
    assert frame.length == len(b"".join(chunks))
    assert parse_header(frame.header) == (binary, frame.length, len(frame.header))
    assert frame.pieces is chunks


def test_frames_become_their_headers_and_pieces_in_order():
    big = b"z" * BIG_PIECE
    frames = [wire_frame([b"ab", big, b"c"], binary=True), wire_frame([b"\xc3\xa9"], binary=False)]
    writes = writes_of(frames)
    assert writes == [b"\x82\x7e" + (BIG_PIECE + 3).to_bytes(2, "big") + b"ab", big, b"c\x81\x02\xc3\xa9"]
    assert writes[1] is big
