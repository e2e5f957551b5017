"""The iopub reader's pacing: floods are read in bursts, round trips are never held."""

from __future__ import annotations

from kernels_service.relay.iopub import ReadPacer


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


def test_a_flood_is_held_within_a_few_dozen_messages_and_released_when_it_stops():
    clock = Clock()
    pacer = ReadPacer(clock)
    holds = []
    for _ in range(200):  # 1500 messages a second, one a read
        holds.append(pacer.hold())
        pacer.read(1)
        clock.now += 1 / 1500
    assert holds[:10] == [0] * 10
    assert set(holds[50:]) == {ReadPacer.HOLD}
    clock.now += 0.05
    assert pacer.hold() == 0


def test_a_cells_few_messages_at_once_are_not_held():
    clock = Clock()
    pacer = ReadPacer(clock)
    for _ in range(6):  # busy, execute_input, stream, display_data, execute_result, idle
        assert pacer.hold() == 0
        pacer.read(1)
        clock.now += 0.0001


def test_a_burst_read_at_once_counts_every_message():
    clock = Clock()
    pacer = ReadPacer(clock)
    pacer.read(64)
    assert pacer.hold() == ReadPacer.HOLD
    clock.now += 0.1
    assert pacer.hold() == 0
