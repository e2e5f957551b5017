"""The websocket keepalive's clock: a slow client is not a dead one."""

from kernels_service.web.keepalive import Keepalive, Verdict, unsent_bytes


def run(keepalive: Keepalive, times: list[float], pending: bool = False) -> list[Verdict]:
    return [keepalive.tick(t, pending) for t in times]


def test_pings_once_an_interval_while_the_client_answers():
    keepalive = Keepalive(10, now=0)
    verdicts = []
    for t in range(1, 41):
        verdicts.append(keepalive.tick(t, output_pending=False))
        if verdicts[-1] is Verdict.PING:
            keepalive.heard()
    assert [t for t, v in zip(range(1, 41), verdicts, strict=True) if v is Verdict.PING] == [10, 20, 30, 40]
    assert Verdict.DEAD not in verdicts


def test_an_unanswered_ping_with_nothing_on_its_way_is_dead_after_one_interval():
    keepalive = Keepalive(10, now=0)
    assert keepalive.tick(10, False) is Verdict.PING
    assert run(keepalive, [12.5, 15, 19.9]) == [Verdict.WAIT] * 3
    assert keepalive.tick(20, False) is Verdict.DEAD


def test_a_client_with_output_on_its_way_is_waited_for_however_long():
    keepalive = Keepalive(10, now=0)
    assert keepalive.tick(10, False) is Verdict.PING
    assert set(run(keepalive, [t / 2 for t in range(21, 2000)], pending=True)) == {Verdict.WAIT}
    # last seen pending at 999.5: the ping behind the output gets one more interval
    assert run(keepalive, [1002.5, 1009.4], pending=False) == [Verdict.WAIT] * 2
    assert keepalive.tick(1009.5, False) is Verdict.DEAD


def test_any_answer_resets_the_clock():
    keepalive = Keepalive(10, now=0)
    assert keepalive.tick(10, False) is Verdict.PING
    keepalive.heard()
    assert run(keepalive, [12.5, 15, 19.9]) == [Verdict.WAIT] * 3
    assert keepalive.tick(20, False) is Verdict.PING


def test_unsent_bytes_of_no_socket_or_a_closed_one_is_zero():
    import socket

    assert unsent_bytes(None) == 0
    closed = socket.socket()
    closed.close()
    assert unsent_bytes(closed) == 0


def test_unsent_bytes_counts_what_a_peer_has_not_read():
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        client.setblocking(False)
        assert unsent_bytes(client) == 0
        sent = 0
        for _ in range(10_000):  # fill both buffers: the peer reads nothing
            try:
                sent += client.send(b"x" * 65536)
            except BlockingIOError:
                break
        assert unsent_bytes(client) > 0
    finally:
        for s in (client, peer, server):
            s.close()
