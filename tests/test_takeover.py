"""Losing a replica loses no kernel (issue 28): the leases of a replica that dies run out
and another takes its kernels over (same process, every variable); a replica paused past
its lease acts on nothing it lost; a replica drained by SIGTERM hands its kernels over at
once. Real replicas over a real PostgreSQL store, HAProxy before them where clients move."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from kernels_service.testing.channels import ChannelsClient, close_of, stream_text
from kernels_service.testing.service import Service, identified, kill_left, still_running
from tests.support.balancer import Balancer
from tests.support.kernel_code import run_code as run
from tests.support.moving_client import MovingClient
from tests.support.node import NODE_DIR, TESTS, read_until_ready
from tests.support.replicas import Replicas
from tests.support.socketio_code import run_over_socketio
from tests.support.waiting import wait_until

LEASE = 5.0  # the default --lease-time
TAKEN_OVER = re.compile(r"Kernel (\S+) taken over from replica (\S+),")


def taken_over(replica: Service) -> list[tuple[str, str]]:
    """The kernels the replica took over, and from whom (its log)."""
    return TAKEN_OVER.findall(replica.output())


def kernel_pid(service: Service | Balancer, kernel: str) -> int:
    return int(run(service, kernel, "import os; print(os.getpid())"))


def connections_on(replica: Service, kernel: str) -> int:
    """How many websockets of the kernel the replica serves itself."""
    status, _, model = replica.request("GET", f"api/kernels/{kernel}")
    assert status == 200, model
    return model["connections"]


def start_jupyterlab(front: Balancer, kernel: str) -> subprocess.Popen:
    """JupyterLab's own client (tests/node/jupyterlab_reconnect.js) on the kernel through
    the balancer: it sets x = 42, says "ready", then must come back by itself."""
    node = shutil.which("node")
    assert node, "node is not installed (see .ci/run)"
    script = [node, str(NODE_DIR / "jupyterlab_reconnect.js"), front.http_url(""), front.token, kernel]
    client = subprocess.Popen(script, cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not read_until_ready(client):
        client.kill()
        raise AssertionError(f"JupyterLab's client did not get ready: {client.communicate()}")
    return client


def test_kill_9_of_an_owner_and_another_replica_loses_no_kernel_no_variable_no_jupyterlab_client(
    replica_runs: Replicas,
):
    replicas = [replica_runs.start() for _ in range(3)]
    front = Balancer(replicas)
    jupyterlab = None
    try:
        owner = replicas[0]
        kernel = owner.start_kernel()
        pid = kernel_pid(front, kernel)
        jupyterlab = start_jupyterlab(front, kernel)
        wait_until(lambda: sum(connections_on(r, kernel) for r in replicas) == 1, 30, "JupyterLab's websocket")
        with_client = next(r for r in replicas if connections_on(r, kernel) == 1)
        # the owner dies, and so does JupyterLab's replica (or, if that is the owner, one more)
        dying = {owner, with_client if with_client is not owner else replicas[1]}
        survivor = next(r for r in replicas if r not in dying)
        for replica in dying:
            replica.process.kill()
        killed = time.monotonic()
        for replica in dying:
            replica.process.wait(30)
        assert wait_for_an_answer(front, kernel, deadline=LEASE + 15) == "42\n"  # relayed by any replica at once
        interrupted = lambda: front.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204  # noqa: E731
        wait_until(interrupted, LEASE + 15, "an interrupt: the kernel's new owner")
        assert time.monotonic() - killed < LEASE + 15
        assert taken_over(survivor) == [(kernel, "replica-0")]
        assert asyncio.run(run_over_socketio(survivor, kernel, "print(x)")) == "42\n"
        assert kernel_pid(front, kernel) == pid  # the same process: never launched again
        outcome, errors = jupyterlab.communicate(timeout=180)
        assert jupyterlab.returncode == 0, errors
        assert '"ok":true' in outcome and '"text":"42\\n"' in outcome, (outcome, errors)
        assert [k["id"] for k in survivor.request("GET", "api/kernels")[2]] == [kernel]
    finally:
        if jupyterlab is not None and jupyterlab.poll() is None:
            jupyterlab.kill()
        front.stop()


def wait_for_an_answer(front: Balancer, kernel: str, deadline: float) -> str:
    """`print(x)` through the balancer, tried until it answers (the kernel is taken over)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return run(front, kernel, "print(x)")
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_a_replica_paused_past_its_lease_culls_and_acts_on_nothing_it_lost(replica_runs: Replicas):
    """SIGSTOP of the owner past its lease; another takes the kernel over; SIGCONT: the
    woken replica's culler (whose idle timeout passed while it slept) and its lifecycle
    requests act on nothing; the kernel runs on, the other's, with its variable."""
    paused = replica_runs.start("--lease-time=2", "--cull-idle-timeout=2", "--cull-interval=1")
    other = replica_runs.start("--lease-time=2")
    kernel = paused.start_kernel()
    pid = kernel_pid(other, kernel)
    client = ChannelsClient(other, kernel)  # a cell keeps the kernel busy (not culled) until the stop
    try:
        client.send("shell", "execute_request", {"code": "x = 42; import time; time.sleep(1)", "silent": False})
        paused.process.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: taken_over(other) == [(kernel, "replica-0")], 30, "the takeover")
            time.sleep(3)  # idle past the paused one's cull timeout
        finally:
            paused.process.send_signal(signal.SIGCONT)
        for method, path in (("POST", "interrupt"), ("GET", "")):  # right away: fenced, or sent to the owner
            status, _, body = paused.request(method, f"api/kernels/{kernel}/{path}".rstrip("/"))
            assert status in (200, 204, 409), body
        wait_until(lambda: "is another replica's now" in paused.output(), 30, "the woken replica to give it up")
        time.sleep(2)  # two more cull rounds
        assert "Kernel shut down" not in paused.output() and "culled" not in paused.output().lower().replace(
            "not culled", ""
        ), paused.output()[-3000:]
        assert run(paused, kernel, "print(x)") == "42\n"  # served by the woken one, as the other's
        assert kernel_pid(other, kernel) == pid
        assert other.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204
    finally:
        client.close()


def test_every_replica_killed_and_new_ones_started_take_the_kernels_from_the_store(replica_runs: Replicas):
    first, second = replica_runs.start(), replica_runs.start()
    kernels = [first.start_kernel(), second.start_kernel()]
    for kernel in kernels:
        run(first, kernel, f"x = {kernels.index(kernel) + 41}")
    for replica in (first, second):
        replica.process.kill()
        replica.process.wait(30)
    started = time.monotonic()
    newcomers = [replica_runs.start(), replica_runs.start()]  # other names: nothing is theirs until leases run out
    for index, kernel in enumerate(kernels):
        interrupted = lambda: newcomers[index % 2].request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204  # noqa: E731, B023
        wait_until(interrupted, LEASE + 15, "an interrupt: the kernel's new owner")
        assert run(newcomers[index % 2], kernel, "print(x)") == f"{index + 41}\n"
    assert time.monotonic() - started < LEASE + 30
    owners = [owner for replica in newcomers for _, owner in taken_over(replica)]
    assert sorted(owners) == ["replica-0", "replica-1"]  # each kernel taken over once


def test_sigterm_hands_the_kernels_over_at_once_and_asks_clients_to_come_back(replica_runs: Replicas):
    """A drained replica's leases are released as it stops: another replica owns its
    kernels well within a lease time; its websocket clients are closed with 1012."""
    draining = replica_runs.start("--lease-time=30")  # a takeover by expiry would take 30 s
    other = replica_runs.start("--lease-time=30")
    kernel = draining.start_kernel()
    run(draining, kernel, "x = 42")
    client = ChannelsClient(draining, kernel)
    draining.process.send_signal(signal.SIGTERM)
    assert close_of(client) == (1012, "service restarting")
    client.close()  # it does not come back: the drain waits for it, at most 15 s, but nobody waits on that
    # Its log, not an interrupt's 204: until the release, the other forwards an interrupt
    # to the draining replica, which still owns the kernel and answers 204 itself.
    owned = lambda: taken_over(other) == [(kernel, "replica-0")]  # noqa: E731
    wait_until(owned, 15, "the other replica to own the kernel")  # half the lease: handed over, not expired
    assert other.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204
    assert run(other, kernel, "print(x)") == "42\n"
    assert draining.process.wait(60) == 0
    assert "Kernels handed over to the other replicas" in draining.output()


def test_a_kernel_no_replica_can_take_over_is_dropped_after_the_bound(replica_runs: Replicas, postgres):
    """Another machine's local kernel whose replica died: reported, then dropped from the
    store (12 lease times), never left forever; its process is nobody's to signal here."""
    replica = replica_runs.start("--lease-time=1")
    database = replica_runs.url.rsplit("/", 1)[1]
    kernel = replica.start_kernel()
    pid = kernel_pid(replica, kernel)
    process = identified([pid])
    assert replica_runs.kernel_processes() == process  # as the store has it: what end() kills if left
    # as if it were another machine's: its entry names another host, and its owner is dead
    postgres.sql(
        "UPDATE kernels_service_kernels SET owner = 'elsewhere', lease_until = now(),"
        " entry = jsonb_set(entry, '{host}', '\"another-host\"') WHERE id = " + f"'{kernel}'",
        database,
    )
    replica.request("GET", "api/kernels")
    try:
        wait_until(lambda: "it cannot be taken over here" in replica.output(), 20, "the report")
        wait_until(lambda: replica.request("GET", f"api/kernels/{kernel}")[0] == 404, 40, "the drop")
        assert f"Kernel {kernel} dropped from the kernel store" in replica.output()
        assert still_running(process) == [pid]  # not signalled: it is not this replica's
    finally:
        kill_left(process)


def test_a_stream_of_output_is_followed_across_a_takeover(replica_runs: Replicas):
    """A client of a non-owner keeps its websocket while the owner is killed and the
    kernel taken over in place: no reconnection, every line of a running loop arrives."""
    owner, other = replica_runs.start("--lease-time=2"), replica_runs.start("--lease-time=2")
    kernel = owner.start_kernel()
    client = ChannelsClient(other, kernel)
    try:
        msg_id = client.send(
            "shell", "execute_request", {"code": "import time\nfor i in range(40):\n print(i); time.sleep(0.1)"}
        )
        time.sleep(0.5)
        owner.process.kill()
        owner.process.wait(30)
        reply, outputs = client.wait_for(msg_id, timeout=60)
        assert reply["content"]["status"] == "ok"
        assert stream_text(outputs) == "".join(f"{i}\n" for i in range(40))
        wait_until(lambda: taken_over(other) == [(kernel, "replica-0")], 20, "the takeover")
        reply, outputs = client.execute("print(i)")
        assert stream_text(outputs) == "39\n"
        # restarted by its new owner, on new ports: the relay it served the kernel with follows
        assert other.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        reply, outputs = client.execute("print('after the restart')", timeout=60)
        assert stream_text(outputs) == "after the restart\n"
    finally:
        client.close()


def clients_on(replica: Service, kernel: str, count: int, front: Balancer) -> list[MovingClient]:
    """Clients of the kernel through the balancer, until at least one is on `replica`
    (round robin: a few tries); all of them."""
    run(replica, kernel, "pass")  # the kernel answers: a client's session is attached as it connects
    clients: list[MovingClient] = []
    everywhere = lambda: sum(connections_on(r, kernel) for r in front.replicas)  # noqa: E731
    before, here = everywhere(), connections_on(replica, kernel)
    for _ in range(12):
        clients.append(MovingClient(front, kernel))
        wait_until(lambda: everywhere() == before + len(clients), 30, "the clients")  # noqa: B023
        if len(clients) >= count and connections_on(replica, kernel) > here:
            return clients
    raise AssertionError("no client reached the replica through the balancer")


def test_sigterm_mid_flood_moves_every_client_to_another_replica_with_every_line_in_order_once(
    replica_runs: Replicas,
):
    replicas = [replica_runs.start() for _ in range(3)]
    front = Balancer(replicas)
    draining = replicas[0]
    kernel = draining.start_kernel()  # the draining replica owns it: taken over as its clients move
    # the cell's sender on the draining replica (its reply is owed as it drains), two listeners through the balancer
    clients = [MovingClient(front, kernel, first=draining), *clients_on(draining, kernel, 2, front)]
    lines = 400
    expected = "".join(f"{i}\n" for i in range(lines))
    try:
        flood = f"import time\nfor i in range({lines}):\n    print(i, flush=True)\n    time.sleep(0.005)"
        msg_id = clients[0].send("shell", "execute_request", {"code": flood, "silent": False})
        with ThreadPoolExecutor(len(clients)) as pool:  # each client reads (and moves) on its own
            progress = [""] * len(clients)
            seen = [pool.submit(read_flood, clients, index, msg_id, lines, progress) for index in range(len(clients))]
            wait_until(lambda: "0\n" in progress[0], 30, "the flood's first line")
            draining.process.send_signal(signal.SIGTERM)
            results = [future.result(timeout=120) for future in seen]
        assert draining.process.wait(60) == 0
        for text, _ in results:
            assert text == expected  # every line, in order, once
        assert results[0][1]["content"]["status"] == "ok"  # the reply of the cell, sent before the drain
        moved = [client for client in clients if client.moves]
        assert moved and all("service restarting" in " ".join(c.moves) for c in moved), [c.moves for c in clients]
        taken = re.search(r"(\d+) of \1 connected websocket sessions taken", draining.output())
        assert taken and int(taken[1]) >= 1, draining.output()[-2000:]
        reply, outputs = clients[0].execute("print(i)")
        assert stream_text(outputs) == f"{lines - 1}\n"
    finally:
        for client in clients:
            client.close()
        front.stop()


def read_flood(
    clients: list[MovingClient], index: int, msg_id: str, lines: int, progress: list[str]
) -> tuple[str, dict | None]:
    """The flood's text as a client received it (kept in `progress[index]` as it comes),
    and for its sender (client 0) the cell's reply."""
    client, reply = clients[index], None
    while not progress[index].endswith(f"{lines - 1}\n") or (index == 0 and reply is None):
        message = client.recv(60)
        if message["header"]["msg_type"] == "stream" and "[kernels-service]" in message["content"]["text"]:
            raise AssertionError(f"a client handed over was told: {message['content']['text']}")
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["channel"] == "shell":
            assert reply is None, "a second reply"
            reply = message
        elif message["header"]["msg_type"] == "stream":
            progress[index] += message["content"]["text"]
    return progress[index], reply


def test_a_rolling_restart_of_every_replica_loses_no_kernel_variable_or_reply(replica_runs: Replicas):
    """Each replica in turn is stopped with SIGTERM and started again (same name, same
    port), while a client runs cells in a loop through the balancer: every cell's reply
    and output arrive, in order, and the kernel's count goes on."""
    replicas = [replica_runs.start() for _ in range(3)]
    front = Balancer(replicas)
    kernel = replicas[0].start_kernel()
    client = MovingClient(front, kernel)
    jupyterlab = start_jupyterlab(front, kernel)  # JupyterLab's own client, through the balancer too
    counted = [0]
    stop = threading.Event()
    failures: list[str] = []

    def loop() -> None:
        try:
            client.execute("n = 0")
            while not stop.is_set():
                reply, outputs = client.execute("n += 1; print(n)")
                assert reply["content"]["status"] == "ok", reply["content"]
                assert stream_text(outputs) == f"{counted[0] + 1}\n", (stream_text(outputs), counted[0])
                counted[0] += 1
        except Exception as error:  # noqa: BLE001 - the test's thread reports what failed
            failures.append(f"{type(error).__name__}: {error}")

    runner = threading.Thread(target=loop)
    runner.start()
    try:
        for index in range(3):
            before = counted[0]
            wait_until(lambda: counted[0] > before + 5 or failures, 60, "cells before the restart")  # noqa: B023
            old = replicas[index]
            assert old.stop(signal.SIGTERM) == 0
            replicas[index] = replica_runs.start(name=f"replica-{index}", port=old.port)
        before = counted[0]
        wait_until(lambda: counted[0] > before + 5 or failures, 60, "cells after the last restart")
        outcome, errors = jupyterlab.communicate(timeout=120)  # it came back by itself, saw idle, read x
        assert jupyterlab.returncode == 0 and '"text":"42\\n"' in outcome, (outcome, errors)
    finally:
        stop.set()
        runner.join(120)
        client.close()
        if jupyterlab.poll() is None:
            jupyterlab.kill()
        front.stop()
    assert not failures, failures
    assert run(replicas[1], kernel, "print(n)") == f"{counted[0]}\n"
    assert client.moves, "the client never moved"


def test_the_handover_door_answers_bad_requests_with_json_and_serves_on(replica_runs: Replicas):
    """`POST api/kernels/<id>/handover` is for replicas, with the token: without it 401;
    garbage bodies 400; a session nobody hands over 404; a flood of concurrent requests
    answered; then the service still serves, with no traceback (Replicas.end checks)."""
    replica = replica_runs.start()
    kernel = replica.start_kernel()
    path = f"api/kernels/{kernel}/handover"
    assert replica.request("POST", path, {"session": "s"}, token="")[0] == 401
    for body in (b"not json", b"[]", b"{}", {"session": 7}, {"session": ""}, {"session": ["s"]}):
        status, headers, answer = replica.request("POST", path, body)
        assert status == 400 and headers["content-type"].startswith("application/json"), (body, status, answer)
    for kernel_id in (kernel, "no-such-kernel"):
        status, _, answer = replica.request("POST", f"api/kernels/{kernel_id}/handover", {"session": "nobody"})
        assert status == 404 and "to hand over here" in answer["message"], answer
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: replica.request("POST", path, {"session": f"s{i}"})[0], range(200)))
    assert statuses == [404] * 200
    assert run(replica, kernel, "print('still here')") == "still here\n"


NOTICE = "[kernels-service] The service restarted: output of this kernel until"


def first_notice(replica: Service, kernel: str, session: str) -> str:
    """What a client coming back with `session` is told first, if anything (its first
    iopub stream on stderr before its own cell's output)."""
    client = ChannelsClient(replica, kernel, "v1", session=session)
    try:
        msg_id = client.send("shell", "execute_request", {"code": "print('back')", "silent": False})
        seen = client.recv_until(lambda m: m["channel"] == "shell" and m["parent_header"].get("msg_id") == msg_id)
        return "".join(m["content"]["text"] for m in seen if m["content"].get("name") == "stderr")
    finally:
        client.close()


def test_clients_that_come_back_after_a_crash_are_told_once_wherever_they_come_back(replica_runs: Replicas):
    """A replica killed with its clients: output between its death and the takeover may be
    missing, and a client that comes back is told so once, on the new owner or on a third
    replica; a client of a surviving replica missed nothing and is not told."""
    owner, second, third = (replica_runs.start("--lease-time=2") for _ in range(3))
    kernel = owner.start_kernel()
    run(owner, kernel, "pass")
    sessions = {"owner-client": owner, "other-client": second}
    clients = [ChannelsClient(replica, kernel, "v1", session=key) for key, replica in sessions.items()]
    wait_until(lambda: connections_on(second, kernel) == 1, 30, "the second replica's client")
    owner.process.kill()
    owner.process.wait(30)
    wait_until(lambda: taken_over(second) + taken_over(third), 30, "the takeover")
    new_owner = second if taken_over(second) else third
    other = third if new_owner is second else second
    try:
        reply, outputs = clients[1].execute("print('stayed')")  # never disconnected: nothing to tell
        assert stream_text(outputs, "stderr") == "" and stream_text(outputs) == "stayed\n"
        for replica in (new_owner, other):
            key = f"came-back-to-{replica.port}"
            told = first_notice(replica, kernel, key)
            assert told.startswith(NOTICE), told
            assert first_notice(replica, kernel, key) == ""  # once
    finally:
        for client in clients:
            client.close()
