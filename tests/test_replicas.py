"""Replicas over a shared PostgreSQL store (DESIGN.md, decision 21): three services on
loopback, one database; a kernel started through any of them is served by every one
(REST, both websocket protocols, socket.io), and its lifecycle requests reach its owner
and act on it once, whichever replica they come to."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kernels_service.processes import process_start
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, descendants, identified, kill_left
from tests.support.kernel_code import run_code as run
from tests.support.replicas import Replicas
from tests.support.socketio_code import run_over_socketio
from tests.support.waiting import wait_until

OUT_OF_REACH = "The kernel store (the service's database) is out of reach; try again"


def test_a_kernel_started_through_one_replica_is_served_by_every_other(replicas: list[Service]):
    first, second, third = replicas
    kernel = first.start_kernel()
    for replica in replicas:  # at once: no replica waits for a refresh to know it
        assert [k["id"] for k in replica.request("GET", "api/kernels")[2]] == [kernel]
        status, _, model = replica.request("GET", f"api/kernels/{kernel}")
        assert status == 200 and model["id"] == kernel and model["name"] == "python3"
    assert run(second, kernel, "x = 41; print('set')", "v1") == "set\n"
    assert run(third, kernel, "x += 1; print(x)", "legacy") == "42\n"
    assert asyncio.run(run_over_socketio(second, kernel, "print(x + 1)")) == "43\n"
    assert run(first, kernel, "print(x)") == "42\n"


def test_each_replica_lists_every_replicas_kernels_with_their_state(replicas: list[Service]):
    kernels = [replica.start_kernel() for replica in replicas]
    for replica in replicas:
        listed = replica.request("GET", "api/kernels")[2]
        assert sorted(k["id"] for k in listed) == sorted(kernels)
    run(replicas[0], kernels[1], "pass")
    for replica in replicas:  # the owner writes what it sees within REFRESH (0.5 s)
        wait_until(
            lambda replica=replica: (
                {k["execution_state"] for k in replica.request("GET", "api/kernels")[2]} == {"idle"}
            ),
            30,  # a kernel still starting on a busy machine is listed starting meanwhile
            "every kernel listed idle",
        )


def owner_log_count(owner: Service, text: str) -> int:
    return owner.output().count(text)


def test_a_non_owners_interrupt_restart_and_delete_reach_the_owner_and_act_once(replicas: list[Service]):
    owner, second, third = replicas
    kernel = owner.start_kernel()
    pid = int(run(second, kernel, "import os; print(os.getpid())"))
    sleeper = ChannelsClient(third, kernel, "v1")
    try:
        msg_id = sleeper.send("shell", "execute_request", {"code": "import time; time.sleep(60)"})
        sleeper.recv_until(lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "busy")
        assert second.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204
        reply, _ = sleeper.wait_for(msg_id, timeout=30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        sleeper.close()
    status, _, model = third.request("POST", f"api/kernels/{kernel}/restart")
    assert status == 200 and model["id"] == kernel
    assert owner_log_count(owner, f"Kernel restarted: {kernel}") == 1
    new_pid = int(run(second, kernel, "import os; print(os.getpid())"))
    assert new_pid != pid and process_start(pid) is None, "the restart did not replace the process"
    assert third.request("DELETE", f"api/kernels/{kernel}")[0] == 204
    wait_until(lambda: process_start(new_pid) is None, 15, "the deleted kernel's process gone")
    for replica in replicas:
        wait_until(lambda replica=replica: replica.request("GET", "api/kernels")[2] == [], 5, "unlisted")
        assert replica.request("GET", f"api/kernels/{kernel}")[0] == 404
    assert second.request("DELETE", f"api/kernels/{kernel}")[0] == 404


def test_a_forwarded_request_is_never_forwarded_again(replicas: list[Service]):
    owner, second, _ = replicas
    kernel = owner.start_kernel()
    forwarded = {"X-Kernels-Forwarded-By": "replica-9", "Content-Type": "application/json"}
    status, _, body = second.request("POST", f"api/kernels/{kernel}/interrupt", {}, headers=forwarded)
    assert status == 503 and "try again" in body["message"], body
    assert second.request("DELETE", "api/kernels/no-such-kernel")[0] == 404


def test_a_websocket_on_a_non_owner_is_told_when_the_owner_deletes_the_kernel(replicas: list[Service]):
    owner, second, _ = replicas
    kernel = owner.start_kernel()
    client = ChannelsClient(second, kernel, "v1")
    try:
        client.execute("pass", timeout=60)
        assert owner.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        with pytest.raises(ConnectionError, match="kernel shut down"):  # within the non-owner's REFRESH
            client.recv_until(lambda message: False, timeout=10)
    finally:
        client.close()


def test_kernel_relay_shutdown_through_a_non_owner(replicas: list[Service]):
    owner, second, _ = replicas
    kernel = owner.start_kernel()
    status, _, body = second.request("GET", f"shutdown/{kernel}")
    assert (status, body) == (200, {"id": kernel, "kernelId": kernel}), json.dumps(body)
    assert owner.request("GET", f"api/kernels/{kernel}")[0] == 404


def test_max_kernels_holds_across_replicas_under_a_burst_spread_over_them(replica_runs: Replicas):
    replicas = [replica_runs.start("--max-kernels=3") for _ in range(3)]
    with ThreadPoolExecutor(9) as burst:
        answers = list(burst.map(lambda i: replicas[i % 3].request("POST", "api/kernels", {}), range(9)))
    started = [body["id"] for status, _, body in answers if status == 201]
    refused = [body["message"] for status, _, body in answers if status != 201]
    assert len(started) == 3 and len(refused) == 6, answers
    assert all(message.startswith("Maximum number of kernels (3) reached") for message in refused), refused
    for replica in replicas:
        assert sorted(k["id"] for k in replica.request("GET", "api/kernels")[2]) == sorted(started)
    kernels = lambda: sum(len(descendants(replica.pid)) for replica in replicas)  # noqa: E731
    wait_until(lambda: kernels() == 3, 30, "the refused kernels' processes ended")
    assert replicas[0].request("DELETE", f"api/kernels/{started[0]}")[0] == 204
    assert replicas[1].request("POST", "api/kernels", {})[0] == 201  # a slot freed on any replica is everyone's


def test_a_kernel_used_through_other_replicas_is_not_culled_and_is_culled_once_by_its_owner(replica_runs: Replicas):
    culling = ("--cull-idle-timeout=4", "--cull-interval=1")
    owner, second, third = (replica_runs.start(*culling) for _ in range(3))
    kernel = owner.start_kernel()
    client = ChannelsClient(second, kernel, "v1")
    try:
        for _ in range(6):  # activity on another replica only, for longer than the idle timeout
            client.execute("pass", timeout=30)
            time.sleep(1)
        assert owner.request("GET", f"api/kernels/{kernel}")[0] == 200, "culled while used through a replica"
    finally:
        client.close()
    wait_until(lambda: owner.request("GET", f"api/kernels/{kernel}")[0] == 404, 30, "the idle kernel culled")
    culled = [replica.output().count(f"Culling kernel {kernel}") for replica in (owner, second, third)]
    assert culled == [1, 0, 0], culled


def test_a_database_stopped_for_10_s_stops_no_kernel_on_any_replica_and_everything_resumes():
    from tests.support.postgres import postgres_cluster  # a server of its own: this test stops it

    with postgres_cluster() as cluster:
        runs = Replicas(cluster, "postgres")
        try:
            owner, second, third = (runs.start() for _ in range(3))
            kernel = owner.start_kernel()
            assert run(second, kernel, "x = 1; print(x)") == "1\n"
            watcher = ChannelsClient(third, kernel, "legacy")  # a client of a non-owner, open throughout
            try:
                watcher.execute("pass", timeout=60)
                cluster.stop()
                stopped = time.monotonic()
                for replica in (owner, second):
                    assert run(replica, kernel, "x += 1; print(x)") in ("2\n", "3\n")
                assert stream_text(watcher.execute("print(x)", timeout=60)[1]) == "3\n"
                for replica in (owner, second, third):
                    status, _, body = replica.request("POST", "api/kernels", {})
                    assert (status, body["message"]) == (503, OUT_OF_REACH), body
                time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
                cluster.start()
                for replica in (owner, second, third):
                    wait_until(lambda r=replica: r.request("POST", "api/kernels", {})[0] == 201, 30, "starts again")
                for replica in (owner, second, third):
                    assert len(replica.request("GET", "api/kernels")[2]) == 4
                assert stream_text(watcher.execute("print(x)", timeout=60)[1]) == "3\n"
            finally:
                watcher.close()
        finally:
            runs.end()


def test_a_client_going_to_another_replica_right_after_a_restart_gets_all_its_output(replicas: list[Service]):
    """The restart is answered once the store has the new process, and a replica checks
    the store as each client comes: its relay follows the new process (holding the
    client's messages until the kernel's iopub reaches it) before the first cell."""
    owner, second, third = replicas
    kernel = owner.start_kernel()
    assert run(second, kernel, "print('before')") == "before\n"
    assert run(third, kernel, "print('before')", "legacy") == "before\n"
    for i in range(6):
        asked, then = replicas[i % 3], (second, third)[i % 2]
        assert asked.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert run(then, kernel, f"print({i})", ("v1", "legacy")[i % 2]) == f"{i}\n", f"restart {i + 1}"


def test_a_lifecycle_request_for_a_dead_owners_kernel_is_a_503_that_says_so(replica_runs: Replicas):
    owner, other = replica_runs.start("--lease-time=120"), replica_runs.start("--lease-time=120")
    kernel = owner.start_kernel()
    kernel_processes = identified(descendants(owner.pid))
    owner.process.kill()  # its lease runs on (2 minutes): nobody takes the kernel over yet
    owner.process.wait(30)
    try:
        for method, path in (("POST", "interrupt"), ("POST", "restart"), ("DELETE", "")):
            status, _, body = other.request(method, f"api/kernels/{kernel}/{path}".rstrip("/"))
            assert status == 503, body
            assert body["message"].startswith(f"Kernel {kernel}'s replica, replica-0, does not answer"), body
        assert other.request("GET", f"api/kernels/{kernel}")[0] == 200  # still listed: it runs
    finally:
        kill_left(kernel_processes)
