"""The iopub reader's pacing: floods are read in bursts, round trips are never held."""

from __future__ import annotations

from kernels_service.relay.sockets import ReadPacer


class Clock:
    """A clock the test moves by hand (the pacer's only input besides the counts)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_round_trips_back_to_back_are_never_held():
    clock = Clock()
    pacer = ReadPacer(clock)
    for _ in range(200):  # busy, execute_input, idle 0.3 ms apart; the next request 5 ms on
        for _ in range(3):
            assert pacer.hold() == 0
            pacer.read(1)
            clock.now += 0.0003
        clock.now += 0.005


def test_a_flood_is_held_within_a_few_messages_and_released_when_it_stops():
    clock = Clock()
    pacer = ReadPacer(clock)
    holds = []
    for _ in range(100):  # 2500 messages a second, one a read
        holds.append(pacer.hold())
        pacer.read(1)
        clock.now += 0.0004
    assert holds[:3] == [0, 0, 0]
    assert set(holds[20:]) == {ReadPacer.HOLD}
    clock.now += 0.02
    assert pacer.hold() == 0


def test_a_burst_read_at_once_counts_every_message():
    clock = Clock()
    pacer = ReadPacer(clock)
    pacer.read(64)
    assert pacer.hold() == ReadPacer.HOLD
    clock.now += 0.1
    assert pacer.hold() == 0
