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

Takeover: a kernel whose owner's lease ran out (the owner died, or drained and let go of
it) is claimed by the first replica that looks (each claim raises the kernel's epoch; the
store lets one claim win) and taken up as `--keep-kernels` takes kernels up at a start:
same process, same variables. A remote kernel this replica served becomes its own in
place: its relay and clients stay. A replica can take up a local kernel only on the same
machine and uid (keeper.why_not_take_up); one that no replica can take up is dropped from
the store `ORPHAN_LEASES` lease times after its lease ran out, with a log line. A replica
that finds, as it renews, that another claimed one of its kernels (it was paused or cut
off past its lease) gives it up unsignalled and serves it as the other's from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from kernels_service.kernels.errors import HandingOver, KernelsError, NoSuchKernel, StoreUnavailable
from kernels_service.kernels.observers import Observers
from kernels_service.kernels.record import KernelRecord
from kernels_service.kernels.store import StoredKernel, StoredRow

log = logging.getLogger("kernels_service.kernels")

#: Seconds between two writes of this replica's kernels' state, and two looks at the
#: remote kernels it serves: how stale another replica's listing may be.
REFRESH = 0.5

#: Lease times after which a kernel whose lease ran out and that no replica could take up
#: (another machine's local kernel, say) is dropped from the store.
ORPHAN_LEASES = 12


class OwnedElsewhere(KernelsError):
    """The kernel is another replica's: its lifecycle requests go to `address`."""

    def __init__(self, kernel_id: str, owner: str, address: str):
        super().__init__(f"Kernel {kernel_id} is served by replica {owner}")
        self.kernel_id = kernel_id
        self.owner = owner
        self.address = address


class Members(Protocol):
    """What the fleet needs of this replica's registry (kernels/registry.py)."""

    def held(self) -> list[KernelRecord]: ...

    async def take_up(
        self, entry: StoredKernel, served: KernelRecord | None = None, missed: bool = True
    ) -> KernelRecord: ...

    def give_up(self, kernel_id: str) -> KernelRecord | None: ...

    async def stop(self, record: KernelRecord, reason: str, fenced: bool = True) -> None: ...


class Keeper(Protocol):
    """What the fleet needs of the keeper (kernels/keeper.py)."""

    def why_not_take_up(self, entry: StoredKernel) -> tuple[str, bool] | None: ...

    async def take_over(self, entry: StoredKernel, take_up: Callable[[StoredKernel], Awaitable[Any]]) -> bool: ...


@dataclass
class RemoteKernel:
    """A kernel of another replica, as this one serves it."""

    record: KernelRecord
    row: StoredRow
    reported: datetime  # the last activity this replica wrote for it


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def missed_since(row: StoredRow) -> datetime | None:
    """When the kernel was taken over after its owner died (its clients may have missed
    output until then: relay/replay.restart_notice tells them), or None: never, or after
    a drain that handed its clients over."""
    return parse_time(row.claimed) if row.claimed and not row.handed_over else None


class Fleet:
    """This replica among the others: leases, state written, remote kernels served,
    kernels taken over."""

    def __init__(
        self,
        store: Any,  # postgres_store.PostgresKernelStore (rows, renew, report, claim, drop)
        members: Members,
        keeper: Keeper,
        make_manager: Callable[[StoredKernel], Any],
        observers: Observers,
    ):
        self.store = store
        self._members = members
        self._keeper = keeper
        self._make_manager = make_manager
        self._observers = observers
        self._remote: dict[str, RemoteKernel] = {}
        self._written: dict[str, tuple[str, datetime]] = {}  # what was last written of each local kernel
        self._taking: dict[str, asyncio.Task[bool]] = {}  # takeovers in flight
        self._unclaimable: set[str] = set()  # kernels whose takeover this replica said it cannot do
        self.handing_over = False  # this replica drains: it takes nothing over

    @property
    def me(self) -> str:
        return self.store.replica.name

    async def find(self, kernel_id: str) -> KernelRecord:
        """The record of another replica's kernel (made on first use); NoSuchKernel if no
        replica has it (now: the store is asked)."""
        try:
            rows = await self.store.rows(kernel_id)  # asked each time: REST agrees with the store at once
        except StoreUnavailable:
            if kernel_id in self._remote:  # served here already: it goes on as it was
                return self._remote[kernel_id].record
            raise
        if not rows:
            gone = self._remote.pop(kernel_id, None)
            if gone is not None:
                await self._observers.stopping(gone.record, "kernel shut down")
            raise NoSuchKernel(kernel_id)
        remote = self._remote.get(kernel_id)
        if rows[0].owner == self.me:  # being taken up here, or let go of by this draining replica
            if remote is not None:
                return remote.record
            raise HandingOver(f"Kernel {kernel_id} is being handed over between replicas; try again")
        if remote is None:
            remote = self._remote[kernel_id] = self._remote_kernel(rows[0])
            await self._observers.started(remote.record)
        else:
            self._follow(remote, rows[0])  # restarted or taken over: followed before a new client is let in
        return remote.record

    async def owner_of(self, kernel_id: str) -> OwnedElsewhere | None:
        """Who owns a kernel this replica does not hold (for its lifecycle requests); None
        if its owner's lease had run out and this replica took it over just now;
        NoSuchKernel if no replica has it, HandingOver while it changes hands."""
        rows = await self.store.rows(kernel_id)
        if not rows:
            raise NoSuchKernel(kernel_id)
        row = rows[0]
        ended = row.lease_ended is not None and row.owner != self.me
        if ended and not self.handing_over and await self._take_over(row):
            return None
        if row.owner == self.me or ended and self._keeper.why_not_take_up(row.entry) is None:
            raise HandingOver(f"Kernel {kernel_id} is being handed over between replicas; try again")
        return OwnedElsewhere(kernel_id, row.owner, row.owner_address)

    async def handover_of(self, kernel_id: str, key: str) -> str | None:
        """The address of a draining replica that holds what the websocket session `key`
        missed (its client came back here), if one does; None if the store is out of reach."""
        try:
            return await self.store.handover_of(kernel_id, key)
        except StoreUnavailable:
            return None

    def _remote_kernel(self, row: StoredRow) -> RemoteKernel:
        entry = row.entry
        record = KernelRecord(entry.id, entry.kernelspec, self._make_manager(entry), client_env=dict(entry.client_env))
        record.execution_state = row.execution_state
        record.last_activity = parse_time(row.last_activity)
        record.taken_up = missed_since(row)
        return RemoteKernel(record, row, record.last_activity)

    async def models(self) -> list[dict[str, Any]]:
        """The REST models of every other replica's kernels (from the store, or fresher
        from this replica's relay of them)."""
        try:
            rows = await self.store.rows()
        except StoreUnavailable:  # the remote kernels this replica serves, as it last saw them
            return [remote.record.model() for remote in self._remote.values()]
        held = {record.id for record in self._members.held()}
        models = []
        for row in rows:
            if row.entry.id in held:
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
        """Renew leases, write state, take over kernels whose lease ran out, follow remote
        kernels, until cancelled; a store out of reach is tried again at the next turn
        (running kernels keep relaying)."""
        renew_every = max(1, round(self.store.replica.lease_time / 3 / REFRESH))
        turn = 0
        while True:
            try:
                await self._turn(renew=turn % renew_every == 0)
            except StoreUnavailable:
                pass  # said in the log by the store; the next turn tries again
            except Exception as error:  # noqa: BLE001 - the fleet must go on: its leases depend on it
                log.error("The replicas' refresh failed (%s: %s); trying again", type(error).__name__, error)
            turn += 1
            await asyncio.sleep(REFRESH)

    async def _turn(self, renew: bool) -> None:
        lost = await self.store.renew() if renew else []
        await self._write_state()
        rows = {row.entry.id: row for row in await self.store.rows()}
        for kernel_id in lost:
            await self._give_up(kernel_id, rows.get(kernel_id))
        if not self.handing_over:
            for row in rows.values():
                if row.lease_ended is not None and row.owner != self.me:
                    self._taking_over(row)  # not awaited: a slow take-up must not hold up the renewals
        await self._follow_remote(rows)

    async def settle(self, timeout: float = 10.0) -> None:
        """Take nothing over from now on, and let the takeovers under way finish (the
        service stops: what they take up is then stopped or let go of with the rest)."""
        self.handing_over = True
        if self._taking:
            await asyncio.wait(list(self._taking.values()), timeout=timeout)

    async def _take_over(self, row: StoredRow) -> bool:
        """Claim and take up a kernel whose owner's lease ran out; whether it is this
        replica's now."""
        return await asyncio.shield(self._taking_over(row))

    def _taking_over(self, row: StoredRow) -> asyncio.Task[bool]:
        """The takeover of the kernel of `row`, begun now unless one is under way here."""
        kernel_id = row.entry.id
        if kernel_id not in self._taking:
            self._taking[kernel_id] = asyncio.ensure_future(self._claim_and_take_up(row))
            self._taking[kernel_id].add_done_callback(lambda _: self._taking.pop(kernel_id, None))
        return self._taking[kernel_id]

    async def _claim_and_take_up(self, row: StoredRow) -> bool:
        """`_take_over`'s work; a store out of reach or any failure is False (said in the
        log: the next look tries again)."""
        try:
            return await self._claim_and_take_up_now(row)
        except StoreUnavailable:
            return False
        except Exception as error:  # noqa: BLE001 - a takeover that fails must not end the fleet's turns
            log.error("Kernel %s not taken over (%s: %s)", row.entry.id, type(error).__name__, error)
            return False

    async def _claim_and_take_up_now(self, row: StoredRow) -> bool:
        kernel_id = row.entry.id
        refusal = self._keeper.why_not_take_up(row.entry)
        if refusal is not None and not refusal[1]:  # another machine's or user's: it cannot be taken up here
            await self._drop_if_orphaned(row, refusal[0])
            return False
        remote = self._remote.get(kernel_id)
        served = remote.record if remote is not None else None
        taken = await self._keeper.take_over(  # after a drain, its clients were handed over: nothing missed
            row.entry, lambda entry: self._members.take_up(entry, served, missed=not row.released)
        )
        if taken:
            self._remote.pop(kernel_id, None)
            log.warning(
                "Kernel %s taken over from replica %s, whose lease on it ran out %.1f s ago",
                kernel_id, row.owner, row.lease_ended,
            )  # fmt: skip
        return taken

    async def _drop_if_orphaned(self, row: StoredRow, why: str) -> None:
        """Say once that a kernel whose lease ran out cannot be taken over here; drop it
        from the store once it has been so for ORPHAN_LEASES lease times."""
        kernel_id, after = row.entry.id, ORPHAN_LEASES * self.store.replica.lease_time
        if kernel_id not in self._unclaimable:
            self._unclaimable.add(kernel_id)
            log.warning("Kernel %s: replica %s's lease on it ran out; it cannot be taken over here: %s",
                        kernel_id, row.owner, why)  # fmt: skip
        if row.lease_ended is not None and row.lease_ended > after and await self.store.drop(row, after):
            self._unclaimable.discard(kernel_id)
            log.warning("Kernel %s dropped from the kernel store: no replica took it over in %.0f s since "
                        "replica %s's lease on it ran out", kernel_id, after, row.owner)  # fmt: skip

    async def _give_up(self, kernel_id: str, row: StoredRow | None) -> None:
        """This replica's lease on a kernel was claimed by another: from now on the kernel
        is served here as the other's (its clients stay), never acted on. If its row is
        gone (dropped while this replica was cut off), nobody else knows the kernel: it
        is stopped."""
        record = next((r for r in self._members.held() if r.id == kernel_id), None)
        if record is None:
            return
        if row is None:
            log.warning("Kernel %s is no longer in the kernel store; stopping it", kernel_id)
            await self._members.stop(record, "kernel shut down", fenced=False)
            return
        if self._members.give_up(kernel_id) is None:
            return
        record.manager = self._make_manager(row.entry)
        self._remote[kernel_id] = RemoteKernel(record, row, record.last_activity)

    async def _write_state(self) -> None:
        states = []
        for record in self._members.held():
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
        held = {record.id for record in self._members.held()}
        for kernel_id in [k for k in self._written if k not in held]:
            del self._written[kernel_id]

    async def _follow_remote(self, rows: dict[str, StoredRow]) -> None:
        self._absorb_activity(rows)
        for kernel_id, remote in list(self._remote.items()):
            row = rows.get(kernel_id)
            if row is None:
                del self._remote[kernel_id]
                await self._observers.stopping(remote.record, "kernel shut down")
            elif row.owner != self.me:  # (one owned here is being taken up: its record becomes this replica's)
                self._follow(remote, row)
                if parse_time(row.last_activity) > remote.record.last_activity:
                    remote.record.last_activity = parse_time(row.last_activity)

    def _follow(self, remote: RemoteKernel, row: StoredRow) -> None:
        """Bring a remote kernel up to its row: a new process (restarted), a new owner
        (taken over: after a death, clients that come back are told output may be missing)."""
        if row.entry != remote.row.entry:
            self._follow_restart(remote, row)
        elif row.epoch != remote.row.epoch:
            remote.record.taken_up = missed_since(row)
        remote.row = row

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
        for record in self._members.held():
            row = rows.get(record.id)
            if row is not None and row.owner == self.me:
                seen = parse_time(row.last_activity)
                if seen > record.last_activity:
                    record.last_activity = seen
