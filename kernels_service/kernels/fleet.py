"""The replicas of one service over a shared kernel store (DESIGN.md, decision 21): this
replica's leases kept alive, its kernels' state written for the others to list, and the
kernels other replicas own served here too.

A kernel another replica owns is a *remote* kernel here: a record whose manager holds only
the kernel's stored connection information (no process, no provisioner), made the first
time a client asks for it. The relay connects to the kernel itself with it, exactly as
for a kernel of this replica; its lifecycle (interrupt, restart, shutdown) belongs to the
owner, which `OwnedElsewhere` names. Every `REFRESH` seconds the fleet writes the state
and activity of this replica's kernels and the activity its clients made on remote ones,
and follows the remote kernels it serves: one whose row is gone is stopping (its clients
are closed), one whose entry changed was restarted (the relay follows its new ports or
key). Every third of the lease time it renews this replica's leases.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernels_service.kernels.errors import KernelsError, NoSuchKernel, StoreUnavailable
from kernels_service.kernels.observers import Observers
from kernels_service.kernels.record import KernelRecord
from kernels_service.kernels.store import StoredKernel, StoredRow

log = logging.getLogger("kernels_service.kernels")

#: Seconds between two writes of this replica's kernels' state, and two looks at the
#: remote kernels it serves: how stale another replica's listing may be.
REFRESH = 0.5


class OwnedElsewhere(KernelsError):
    """The kernel is another replica's: its lifecycle requests go to `address`."""

    def __init__(self, kernel_id: str, owner: str, address: str):
        super().__init__(f"Kernel {kernel_id} is served by replica {owner}")
        self.kernel_id = kernel_id
        self.owner = owner
        self.address = address


@dataclass
class RemoteKernel:
    """A kernel of another replica, as this one serves it."""

    record: KernelRecord
    row: StoredRow
    reported: datetime  # the last activity this replica wrote for it


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Fleet:
    """This replica among the others: leases, state written, remote kernels served."""

    def __init__(
        self,
        store: Any,  # postgres_store.PostgresKernelStore (rows, renew, report)
        local: Callable[[], list[KernelRecord]],
        make_manager: Callable[[StoredKernel], Any],
        observers: Observers,
    ):
        self.store = store
        self._local = local
        self._make_manager = make_manager
        self._observers = observers
        self._remote: dict[str, RemoteKernel] = {}
        self._written: dict[str, tuple[str, datetime]] = {}  # what was last written of each local kernel

    async def find(self, kernel_id: str) -> KernelRecord:
        """The record of another replica's kernel (made on first use); NoSuchKernel if no
        replica has it (now: the store is asked)."""
        try:
            rows = await self.store.rows(kernel_id)  # asked each time: REST agrees with the store at once
        except StoreUnavailable:
            if kernel_id in self._remote:  # served here already: it goes on as it was
                return self._remote[kernel_id].record
            raise
        if not rows or rows[0].owner == self.store.replica.name:
            gone = self._remote.pop(kernel_id, None)
            if gone is not None:
                await self._observers.stopping(gone.record, "kernel shut down")
            raise NoSuchKernel(kernel_id)
        remote = self._remote.get(kernel_id)
        if remote is None:
            remote = self._remote[kernel_id] = self._remote_kernel(rows[0])
            await self._observers.started(remote.record)
        elif rows[0].entry != remote.row.entry:  # restarted: followed before a new client is let in
            self._follow_restart(remote, rows[0])
        return remote.record

    async def owner_of(self, kernel_id: str) -> OwnedElsewhere:
        """Who owns a kernel this replica does not hold (for its lifecycle requests);
        NoSuchKernel if no replica does."""
        rows = await self.store.rows(kernel_id)
        if not rows or rows[0].owner == self.store.replica.name:
            raise NoSuchKernel(kernel_id)
        return OwnedElsewhere(kernel_id, rows[0].owner, rows[0].owner_address)

    def _remote_kernel(self, row: StoredRow) -> RemoteKernel:
        entry = row.entry
        record = KernelRecord(entry.id, entry.kernelspec, self._make_manager(entry), client_env=dict(entry.client_env))
        record.execution_state = row.execution_state
        record.last_activity = parse_time(row.last_activity)
        return RemoteKernel(record, row, record.last_activity)

    async def models(self) -> list[dict[str, Any]]:
        """The REST models of every other replica's kernels (from the store, or fresher
        from this replica's relay of them)."""
        try:
            rows = await self.store.rows()
        except StoreUnavailable:  # the remote kernels this replica serves, as it last saw them
            return [remote.record.model() for remote in self._remote.values()]
        models = []
        for row in rows:
            if row.owner == self.store.replica.name:
                continue
            remote = self._remote.get(row.entry.id)
            if remote is not None:
                models.append(remote.record.model())
            else:
                models.append(
                    {
                        "id": row.entry.id,
                        "name": row.entry.kernelspec,
                        "last_activity": row.last_activity,
                        "execution_state": row.execution_state,
                        "connections": 0,
                    }
                )
        return models

    async def run(self) -> None:
        """Renew leases, write state, follow remote kernels, until cancelled; a store out
        of reach is tried again at the next turn (running kernels keep relaying)."""
        renew_every = max(1, round(self.store.replica.lease_time / 3 / REFRESH))
        turn = 0
        while True:
            try:
                if turn % renew_every == 0:
                    await self.store.renew()
                await self._write_state()
                await self._follow_remote()
            except StoreUnavailable:
                pass  # said in the log by the store; the next turn tries again
            except Exception as error:  # noqa: BLE001 - the fleet must go on: its leases depend on it
                log.error("The replicas' refresh failed (%s: %s); trying again", type(error).__name__, error)
            turn += 1
            await asyncio.sleep(REFRESH)

    async def _write_state(self) -> None:
        states = []
        for record in self._local():
            if record.pooled:
                continue
            now = (record.execution_state, record.last_activity)
            if self._written.get(record.id) != now:
                states.append((record.id, *now))
        seen = [(k, r.record.last_activity) for k, r in self._remote.items() if r.record.last_activity > r.reported]
        await self.store.report(states, seen)
        for kernel_id, state, activity in states:
            self._written[kernel_id] = (state, activity)
        for kernel_id, activity in seen:
            if kernel_id in self._remote:
                self._remote[kernel_id].reported = activity
        held = {record.id for record in self._local()}
        for kernel_id in [k for k in self._written if k not in held]:
            del self._written[kernel_id]

    async def _follow_remote(self) -> None:
        rows = {row.entry.id: row for row in await self.store.rows()}
        self._absorb_activity(rows)
        for kernel_id, remote in list(self._remote.items()):
            row = rows.get(kernel_id)
            if row is None or row.owner == self.store.replica.name:
                del self._remote[kernel_id]
                reason = "kernel shut down" if row is None else "kernel taken over by this replica"
                await self._observers.stopping(remote.record, reason)
            elif row.entry != remote.row.entry:
                self._follow_restart(remote, row)
            else:
                remote.row = row
                if parse_time(row.last_activity) > remote.record.last_activity:
                    remote.record.last_activity = parse_time(row.last_activity)

    def _follow_restart(self, remote: RemoteKernel, row: StoredRow) -> None:
        """The owner restarted the kernel (a new process, perhaps new ports or key): its
        relay here holds its clients' messages until the new process's iopub reaches it
        (the readiness probe, as after a restart of this replica's own kernels)."""
        log.info("Kernel %s was restarted by replica %s; following it", row.entry.id, row.owner)
        self._observers.restarting(remote.record, False)
        remote.record.manager = self._make_manager(row.entry)
        remote.row = row
        self._observers.restarted(remote.record)

    def _absorb_activity(self, rows: dict[str, StoredRow]) -> None:
        """This replica's kernels were active when another replica's clients used them:
        the culler (the owner's alone) counts that activity too."""
        for record in self._local():
            row = rows.get(record.id)
            if row is not None and row.owner == self.store.replica.name:
                seen = parse_time(row.last_activity)
                if seen > record.last_activity:
                    record.last_activity = seen
