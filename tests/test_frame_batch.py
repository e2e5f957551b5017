"""The websocket frame headers the batch writer builds (exact bytes, RFC 6455 5.2)."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from kernels_service.web.frame_batch import frame_header


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
