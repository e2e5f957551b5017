"""The websocket writer both doors use, over a real tornado stream on a socket pair: one
write per turn, exact frames, and the bytes on their way counted until they have left."""

from __future__ import annotations

import asyncio
import socket

from tornado.iostream import IOStream

from kernels_service.protocol.ws_frames import wire_frame
from kernels_service.websocket_writer import FrameWriter


async def read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        data += await loop.sock_recv(sock, size - len(data))
    return data


async def a_batch_goes_out_whole_and_is_counted_until_it_left() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    stream = IOStream(ours)
    flushed = []
    writer = FrameWriter(lambda: stream, on_flushed=lambda: flushed.append(writer.in_flight), high_water=10)
    frames = [wire_frame([b"hello"], binary=False), wire_frame([b"\x00" * 40_000], binary=True)]
    done = [writer.write(frame, item) for frame, item in zip(frames, ("a", "b"), strict=True)]
    size = sum(len(frame.header) + frame.length for frame in frames)
    assert done[0] is done[1], "one future for the batch of a turn"
    assert writer.in_flight == size and not writer.below_high_water
    received = await read_exactly(theirs, size)
    await asyncio.wait_for(done[0], 10)
    assert received == b"\x81\x05hello" + b"\x82\x7e\x9c\x40" + b"\x00" * 40_000
    assert writer.in_flight == 0 and writer.below_high_water and flushed == [0]
    stream.close()
    theirs.close()


async def what_could_not_be_written_goes_back_to_its_owner() -> None:
    ours, theirs = socket.socketpair()
    stream = IOStream(ours)
    unsent: list = []
    writer = FrameWriter(lambda: None if stream.closed() else stream, on_unsent=unsent.extend)
    pending = writer.write(wire_frame([b"x"], binary=False), "kept")
    assert writer.take_pending() == ["kept"] and writer.in_flight == 0 and pending.done()
    writer.write(wire_frame([b"y"], binary=False), "lost")
    stream.close()
    writer.flush_now()  # what the end of the turn does: the batch meets a closed stream
    assert unsent == ["lost"] and writer.in_flight == 0
    theirs.close()


def test_a_batch_goes_out_whole_and_is_counted_until_it_left():
    asyncio.run(a_batch_goes_out_whole_and_is_counted_until_it_left())


def test_what_could_not_be_written_goes_back_to_its_owner():
    asyncio.run(what_could_not_be_written_goes_back_to_its_owner())
