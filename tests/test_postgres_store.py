"""The PostgreSQL kernel store (kernels/postgres_store.py) on a real server: what it keeps,
the schema it makes once and the versions it refuses (the database left as it was), every
bad URL or credential a clear exit 1, a password never on the command line or in a log,
and a database that stops while the service runs: kernels keep running and relaying,
starts are refused with the reason, and everything resumes by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels_service.kernels.postgres_store import PostgresKernelStore
from kernels_service.kernels.store import LeaseLost, Replica, StoredKernel, StoreError
from kernels_service.kernels.stores import make_store
from kernels_service.testing.service import Service, running_service, tracebacks
from tests.support.kernel_code import run_code as run
from tests.support.paths import ROOT
from tests.support.postgres import Cluster
from tests.support.waiting import wait_until

QUIET = ("--initial-kernels=0", "--pool-size=0")
OUT_OF_REACH = "The kernel store (the service's database) is out of reach; try again"


def entry(kernel_id: str, **changes) -> StoredKernel:
    fields = dict(
        id=kernel_id, kernelspec="python3", connection_info={"key": "k", "shell_port": 1}, provisioner="p",
        provisioner_info={"pid": 1}, client_env={"KERNEL_USERNAME": "ann"}, host="h", uid=1, process_start=7,
    )  # fmt: skip
    fields.update(changes)
    return StoredKernel(**fields)


@pytest.fixture
def database(postgres: Cluster) -> str:
    """The URL of a fresh database; the password is in the test process's PGPASSWORD."""
    os.environ.update(postgres.environment())
    return postgres.url(postgres.new_database())


REPLICA = Replica("test-replica", "http://127.0.0.1:9/")


async def opened(url: str, replica: Replica = REPLICA) -> PostgresKernelStore:
    store = PostgresKernelStore(url, replica)
    await store.open()
    return store


def test_entries_are_kept_across_openings_replaced_in_place_and_removed(database: str):
    async def scenario():
        store = await opened(database)
        await store.save(entry("k1"))
        await store.save(entry("k2"))
        await store.save(entry("k1", process_start=9))
        await store.close()
        store = await opened(database)
        assert await store.entries() == [entry("k1", process_start=9), entry("k2")]
        await store.remove("k1")
        await store.remove("no-such-kernel")
        assert await store.entries() == [entry("k2")]
        await store.close()

    asyncio.run(scenario())


def test_services_starting_at_once_make_the_schema_once_and_one_of_them_runs(database: str, postgres: Cluster):
    async def three_at_once() -> list:
        results = await asyncio.gather(*(opened(database) for _ in range(3)), return_exceptions=True)
        for store in results:
            if isinstance(store, PostgresKernelStore):
                await store.close()
        return results

    results = asyncio.run(three_at_once())
    refusals = [str(r) for r in results if not isinstance(r, PostgresKernelStore)]
    assert len(refusals) == 2, results
    assert all("is in use by another service" in refusal for refusal in refusals), refusals
    name = database.rsplit("/", 1)[1]
    assert postgres.sql("SELECT version, oldest_reader FROM kernels_service_schema", name) == "2|1"


HOLDER = """
import asyncio, sys
from kernels_service.kernels.postgres_store import PostgresKernelStore
from kernels_service.kernels.store import Replica
async def hold():
    store = PostgresKernelStore(sys.argv[1], Replica("test-replica", "http://127.0.0.1:9/"))
    await store.open()
    print("held", flush=True)
    await asyncio.sleep(120)
asyncio.run(hold())
"""


def test_the_store_of_a_killed_service_is_free_again(database: str):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StoreError, match="in use by another service"):
            asyncio.run(opened(database))
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        wait_until(lambda: free(database), 15, "the store free again once its service was killed")
    finally:
        holder.kill()
        holder.wait(30)


def free(url: str) -> bool:
    async def try_open() -> bool:
        try:
            await (await opened(url)).close()
            return True
        except StoreError:
            return False

    return asyncio.run(try_open())


async def save_one_entry(database: str) -> None:
    """A store made in `database` (the current schema), with one kernel, k1, in it."""
    store = await opened(database)
    await store.save(entry("k1"))
    await store.close()


def database_dump(postgres: Cluster, name: str) -> str:
    tables = "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables"
    tables += " WHERE table_schema = 'public'"
    rows = "SELECT version || '|' || oldest_reader FROM kernels_service_schema"
    kernels = "SELECT coalesce(string_agg(row_to_json(k)::text, ';'), '') FROM kernels_service_kernels k"
    return "\n".join(postgres.sql(query, name) for query in (tables, rows, kernels))


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ("UPDATE kernels_service_schema SET version = 3, oldest_reader = 3", "needs a service of schema version 3"),
        ("INSERT INTO kernels_service_schema VALUES (1, 1)", "has 2 schema versions"),
        ("ALTER TABLE kernels_service_kernels RENAME COLUMN entry TO other", 'column "entry" does not exist'),
    ],
    ids=["newer-version", "two-versions", "other-table"],
)
def test_a_store_it_cannot_use_stops_the_start_and_is_left_as_it_was(database, postgres, change, refusal):
    name = database.rsplit("/", 1)[1]
    asyncio.run(save_one_entry(database))
    postgres.sql(change, name)
    before = database_dump(postgres, name)
    argv = (*QUIET, "--keep-kernels", f"--kernel-store={database}")
    for _ in range(2):  # the second time too: a refused start lets go of the store
        with pytest.raises(RuntimeError, match="service exited with 1") as refused:
            Service(*argv, env=postgres.environment())
        assert refusal in str(refused.value) and "Traceback" not in str(refused.value)
    assert database_dump(postgres, name) == before, "the database was changed"


def refused_start(*argv: str, env: dict[str, str]) -> str:
    """The output of a service that refused to start (exit 1), with no traceback."""
    with pytest.raises(RuntimeError, match="service exited with 1") as refused:
        Service(*QUIET, "--keep-kernels", *argv, env=env)
    output = str(refused.value)
    assert "Traceback" not in output and tracebacks(output) == [], output
    return output


def test_bad_urls_and_credentials_are_a_clear_exit_1(postgres: Cluster):
    good = postgres.environment()
    closed_port = postgres.url().replace(f":{postgres.port}/", ":1/")
    cases = [
        (f"--kernel-store={postgres.url()}", {"PGPASSWORD": "wrong"}, "password authentication failed"),
        (f"--kernel-store={postgres.url(user='nobody_here')}", good, 'failed for user "nobody_here"'),
        (f"--kernel-store={postgres.url('no_such_database')}", good, 'database "no_such_database" does not exist'),
        (f"--kernel-store={closed_port}", good, "cannot reach the kernel store postgresql postgres@127.0.0.1:1/"),
        ("--kernel-store=postgresql://127.0.0.1:notaport/db", good, "cannot reach the kernel store"),
        ("--kernel-store=postgresql://host/db?nosuchparameter=1", good, "not a PostgreSQL URL libpq can read"),
        ("--kernel-store=mysql://root@127.0.0.1/db", good, "no store of scheme 'mysql'"),
    ]  # fmt: skip
    for option, env, said in cases:
        output = refused_start(option, env=env)
        assert said in output, (option, output)


def test_a_password_in_the_url_is_refused_and_never_repeated(postgres: Cluster):
    secret = "s3cr3t-in-the-url"
    for url in (
        f"postgresql://postgres:{secret}@127.0.0.1:{postgres.port}/postgres",
        f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres?password={secret}",
    ):
        output = refused_start(f"--kernel-store={url}", env=postgres.environment())
        assert "the URL carries a password" in output and secret not in output, output


@given(st.text(max_size=80))
def test_any_location_makes_a_store_or_is_a_store_error(location: str):
    try:
        store = make_store("postgresql://" + location, REPLICA)
    except StoreError:
        return
    assert isinstance(store, PostgresKernelStore)


def test_the_database_password_never_reaches_a_kernel(database: str, postgres: Cluster):
    argv = (*QUIET, "--keep-kernels", f"--kernel-store={database}")
    with running_service(*argv, env=postgres.environment()) as service:
        kernel = service.start_kernel()
        code = "import os; print(sorted(k for k in os.environ if k.startswith('PG')))"
        assert run(service, kernel, code) == "[]\n"
        assert postgres.password not in service.output()
        service.stop_and_check_no_leak(signal.SIGINT)  # SIGTERM would leave the kept kernel running


def test_a_database_stopped_meanwhile_refuses_starts_with_the_reason_and_kernels_keep_running(tmp_path):
    from tests.support.postgres import postgres_cluster  # a server of its own: this test stops it

    with postgres_cluster() as cluster:
        argv = (*QUIET, "--keep-kernels", f"--kernel-store={cluster.url()}", "--lease-time=1")
        with running_service(*argv, env=cluster.environment()) as service:
            kernel = service.start_kernel()
            assert run(service, kernel, "x = 42") == ""
            cluster.stop()
            time.sleep(1)  # past half the lease: the replica cannot know it still owns its kernel
            status, _, body = service.request("POST", f"api/kernels/{kernel}/interrupt")
            assert (status, body["message"]) == (503, OUT_OF_REACH), "acted on a kernel it may not own"
            status, _, body = service.request("POST", "api/kernels", {})
            assert status == 503, body
            assert body["message"] == OUT_OF_REACH
            assert run(service, kernel, "print(x)") == "42\n", "a running kernel stopped relaying"
            assert [k["id"] for k in service.request("GET", "api/kernels")[2]] == [kernel]
            cluster.start()
            wait_until(lambda: service.request("POST", "api/kernels", {})[0] == 201, 30, "starts again")
            assert tracebacks(service.output()) == [], service.output()
            assert "did not answer" in service.output()
            service.stop_and_check_no_leak(signal.SIGINT)


def kernel_pid(service: Service, kernel: str) -> int:
    return int(run(service, kernel, "import os; print(os.getpid())"))


def test_restarts_and_deletes_while_the_database_is_down_are_in_the_store_once_it_is_back(tmp_path):
    from tests.support.postgres import postgres_cluster

    with postgres_cluster() as cluster:
        # a long lease: the owner acts meanwhile on the lease it surely still holds
        argv = (*QUIET, "--keep-kernels", f"--kernel-store={cluster.url()}", "--lease-time=120")
        first = Service(*argv, env=cluster.environment())
        try:
            deleted, restarted = first.start_kernel(), first.start_kernel()
            old_pid = kernel_pid(first, restarted)
            cluster.stop()
            assert first.request("POST", f"api/kernels/{restarted}/restart")[0] == 200
            new_pid = kernel_pid(first, restarted)
            assert new_pid != old_pid
            assert first.request("DELETE", f"api/kernels/{deleted}")[0] == 204
            cluster.start()
            stored_pid = (
                f"SELECT entry->'provisioner_info'->>'pid' FROM kernels_service_kernels WHERE id = '{restarted}'"
            )
            wait_until(lambda: cluster.sql(stored_pid) == str(new_pid), 30, "the restarted kernel's entry saved")
            assert first.stop(signal.SIGTERM) == 0, first.output()  # the restarted kernel is left running
            assert tracebacks(first.output()) == [], first.output()
            with running_service(*argv, env=cluster.environment()) as second:
                assert [k["id"] for k in second.request("GET", "api/kernels")[2]] == [restarted]
                assert f"Kernel {deleted} not taken up: its process is gone" in second.output()
                assert kernel_pid(second, restarted) == new_pid
                second.stop_and_check_no_leak(signal.SIGINT)
        finally:
            if first.process.poll() is None:
                first.stop(signal.SIGINT)


def test_two_replicas_racing_for_a_lease_exactly_one_wins(database: str, postgres: Cluster):
    """Both claims are in flight at once, held at a gate (a third session holds the kernel's
    row), then let go together: the database lets exactly one take the lease."""
    name = database.rsplit("/", 1)[1]

    async def race() -> list[bool]:
        first = await opened(database, Replica("first", "http://127.0.0.1:9/", lease_time=1))
        await first.save(entry("k1"))
        await first.close()
        postgres.sql("UPDATE kernels_service_kernels SET lease_until = now() - interval '1 second'", name)
        a = await opened(database, Replica("a", "http://127.0.0.1:9/"))
        b = await opened(database, Replica("b", "http://127.0.0.1:9/"))
        gate = await psycopg.AsyncConnection.connect(database)
        try:
            async with gate.transaction():
                await gate.execute("SELECT 1 FROM kernels_service_kernels WHERE id = 'k1' FOR UPDATE")
                claims = [asyncio.ensure_future(a.claim("k1")), asyncio.ensure_future(b.claim("k1"))]
                await wait_blocked(gate, 2)  # both claims wait at the gate
            return list(await asyncio.gather(*claims))
        finally:
            await gate.close()
            await a.close()
            await b.close()

    won = asyncio.run(race())
    assert sorted(won) == [False, True], won
    owner, epoch = postgres.sql("SELECT owner, epoch FROM kernels_service_kernels WHERE id = 'k1'", name).split("|")
    assert owner == ["a", "b"][won.index(True)] and epoch == "2"


async def wait_blocked(gate, count: int) -> None:
    """Until `count` sessions wait for a lock the gate's session holds (bounded)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    for _ in range(200):
        async with gate.cursor() as cursor:
            await cursor.execute(query)
            if (await cursor.fetchone())[0] >= count:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} claims never waited at the gate")


def test_a_replica_that_lost_its_lease_acts_on_nothing(database: str, postgres: Cluster):
    """Fencing: once another replica claimed the kernel (its lease had run out), the old
    owner's act and its save are refused, whatever it still believes."""
    name = database.rsplit("/", 1)[1]

    async def scenario() -> None:
        old = await opened(database, Replica("old", "http://127.0.0.1:9/"))
        await old.save(entry("k1"))
        async with old.acting("k1"):
            pass  # its own kernel: allowed
        postgres.sql("UPDATE kernels_service_kernels SET lease_until = now() - interval '1 second'", name)
        new = await opened(database, Replica("new", "http://127.0.0.1:9/"))
        assert await new.claim("k1")
        with pytest.raises(LeaseLost):
            async with old.acting("k1"):
                raise AssertionError("the old owner acted")
        with pytest.raises(LeaseLost):
            await old.save(entry("k1", process_start=99))
        await old.remove("k1")  # does nothing to another's entry
        assert [row.owner for row in await new.rows()] == ["new"]
        await old.close()
        await new.close()

    asyncio.run(scenario())


def test_a_paused_process_is_fenced_from_its_successor_of_the_same_name_by_the_epoch(database: str):
    """The same replica name, two processes: the first paused long enough to lose its
    session (its name free again), the second started under the name and claimed the
    kernel. Owner names match; only the epoch tells the woken first process it lost."""

    async def scenario() -> None:
        paused = await opened(database, Replica("x", "http://127.0.0.1:9/"))
        await paused.save(entry("k1"))
        await paused._lock_holder.close()  # its session ended while it was paused
        successor = await opened(database, Replica("x", "http://127.0.0.1:9/"))
        assert await successor.claim("k1")
        with pytest.raises(LeaseLost):
            async with paused.acting("k1"):
                raise AssertionError("the paused process acted on its successor's kernel")
        async with successor.acting("k1"):
            pass
        paused._lock_holder = None
        await paused.close()
        await successor.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("options", "said", "code"),
    [
        (("--lease-time=0",), "--lease-time must be between 1 and 300 seconds", 1),
        (("--lease-time=301",), "--lease-time must be between 1 and 300 seconds", 1),
        (("--lease-time=soon",), "trait of a KernelsService instance expected a float", 1),
        (("--replica-url=ftp://127.0.0.1/",), "--replica-url must be an http:// or https:// URL", 1),
        (("--keep-kernels", "--kernel-store=postgresql://u@127.0.0.1/db"), "needs --port (not 0) or --replica-url", 1),
    ],
    ids=["lease-0", "lease-301", "lease-text", "replica-url", "port-0"],
)
def test_bad_replica_options_stop_the_start_with_their_reason(options, said, code):
    command = [sys.executable, str(ROOT / "kernels.py"), "--port=0", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == code and said in output, output
    assert "Traceback" not in output


def test_a_version_1_store_gets_the_hand_over_table_and_keeps_its_kernels_and_its_readers(database, postgres):
    """Schema 2 adds a table only: a service of version 2 brings a version 1 database up
    in place (its kernels kept), and `oldest_reader` stays 1, so version 1 replicas go on
    using it during a rolling upgrade."""
    name = database.rsplit("/", 1)[1]
    asyncio.run(save_one_entry(database))
    version_1 = (  # the tables as a version 1 service made them
        "DROP TABLE kernels_service_handovers; UPDATE kernels_service_schema SET version = 1;"
        " ALTER TABLE kernels_service_kernels DROP COLUMN released, DROP COLUMN handed_over, DROP COLUMN claimed"
    )
    postgres.sql(version_1, name)
    assert postgres.sql("SELECT to_regclass('kernels_service_handovers') IS NULL", name) == "t"

    async def reopened() -> list[StoredKernel]:
        store = await opened(database)
        try:
            await store.offer_handovers([("k1", "a-session")], 5)
            assert await store.handover_of("k1", "a-session") == REPLICA.address
            assert await store.handover_of("k1", "a-session") is None  # taken once
            return await store.entries()
        finally:
            await store.close()

    assert asyncio.run(reopened()) == [entry("k1")]
    assert postgres.sql("SELECT version, oldest_reader FROM kernels_service_schema", name) == "2|1"
