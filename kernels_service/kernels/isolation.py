"""What keeps each kernelspec's kernels apart from the service and from each other, said
at start (`--kernel-isolation`).

The people typing into kernels do not trust each other. Each kernelspec's kernels get
the strongest of what the service can give:
- a container of their own (a kernelspec whose provisioner launches one);
- a bubblewrap sandbox (`--kernel-sandbox=bubblewrap`);
- a uid of their own (`kernel_uids`), where the service holds CAP_SETUID and CAP_SETGID
  and a process of another uid may run the kernel's program;
- a Landlock room of their own (`confinement`), where the service runs unprivileged on a
  Linux with Landlock: kept apart with its signal scoping (ABI 6, Linux 6.12); on an
  earlier ABI a kernel can still do what `LANDLOCK_WITHOUT_SCOPES_CAN` says;
- nothing: the service's own uid, and then a kernel can do to the service and to every
  other kernel what `SHARED_UID_CAN` says.
`--kernel-isolation=required` refuses to start unless every kernelspec's kernels are
kept apart; `none` gives every local kernel the service's uid, as Jupyter Server does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernels_service.kernels.confinement.landlock import SIGNAL_SCOPING_ABI
from kernels_service.kernels.confinement.rooms import LandlockRooms, landlock_rooms
from kernels_service.kernels.errors import ConfigError
from kernels_service.kernels.kernel_uids import (
    DEFAULT_ROOTS,
    KernelUids,
    effective_capabilities,
    parse_uid_range,
    read_uid_map,
    why_no_uids,
)
from kernels_service.kernels.provisioners.bubblewrap import PROVISIONER_NAME as SANDBOX_PROVISIONER
from kernels_service.kernels.separation import Separation

log = logging.getLogger("kernels_service.kernels")

POLICIES = ("auto", "required", "none")
LOCAL_PROVISIONERS = ("local-provisioner", SANDBOX_PROVISIONER, "confined-provisioner")

#: What code in a kernel that shares the service's uid can do.
SHARED_UID_CAN = (
    "kill or stop the service and every other kernel, read every kernel's connection file (its keys) and "
    "its /proc files, and with the keys run code in other kernels"
)
#: What code in a kernel confined by Landlock without its scopes (ABI < 6) can still do.
LANDLOCK_WITHOUT_SCOPES_CAN = (
    "kill or stop the service and every other kernel (Landlock's signal scoping needs Linux 6.12)"
)


@dataclass(frozen=True)
class KernelspecIsolation:
    """How one kernelspec's kernels are kept apart; `apart` False: they are not (`why`)."""

    kernelspec: str
    mechanism: str  # "own container", "sandbox", "own uid", "landlock", or "service's uid"
    apart: bool
    why: str = ""
    exposure: str = SHARED_UID_CAN  # what one of its kernels can do where they are not apart

    def __str__(self) -> str:
        return f"{self.kernelspec}: {self.mechanism}" + (f" ({self.why})" if self.why else "")


def plan_isolation(
    kernelspecs: Mapping[str, Mapping[str, Any]],
    *,
    policy: str,
    sandbox: str,
    transport: str,
    separation: Separation | None,
    why_not_apart: str | None,
) -> list[KernelspecIsolation]:
    """Each kernelspec's isolation (`kernelspecs`: jupyter_client's `get_all_specs()`)."""
    plan = []
    for name, found in sorted(kernelspecs.items()):
        spec = found["spec"]
        provisioner = spec.get("metadata", {}).get("kernel_provisioner", {}).get("provisioner_name", "")
        if provisioner and provisioner not in LOCAL_PROVISIONERS:
            plan.append(KernelspecIsolation(name, "own container", True, f"{provisioner}"))
        elif provisioner == "local-provisioner":
            plan.append(KernelspecIsolation(name, "service's uid", False, "its kernelspec names local-provisioner"))
        elif sandbox or provisioner == SANDBOX_PROVISIONER:
            plan.append(KernelspecIsolation(name, "sandbox", True, "bubblewrap"))
        elif policy == "none":
            plan.append(KernelspecIsolation(name, "service's uid", False, "--kernel-isolation=none"))
        elif separation is None:
            plan.append(KernelspecIsolation(name, "service's uid", False, why_not_apart or "no kernel uids"))
        elif isinstance(separation, LandlockRooms):
            plan.append(landlock_isolation(name, separation, transport))
        else:
            plan.append(own_uid_isolation(name, spec.get("argv", []), separation, transport))
    return plan


def landlock_isolation(name: str, rooms: LandlockRooms, transport: str) -> KernelspecIsolation:
    if rooms.abi < SIGNAL_SCOPING_ABI:
        why = f"Landlock ABI {rooms.abi}, without signal scoping"
        return KernelspecIsolation(name, "landlock", False, why, LANDLOCK_WITHOUT_SCOPES_CAN)
    if transport == "tcp":
        why = "but --kernel-transport=tcp: any process of the machine can read its output"
        return KernelspecIsolation(name, "landlock", False, why, "read every other kernel's output")
    return KernelspecIsolation(name, "landlock", True, f"ABI {rooms.abi}")


def own_uid_isolation(name: str, argv: list[str], uids: Separation, transport: str) -> KernelspecIsolation:
    why_not = uids.why_not_run(argv)
    if why_not is not None:
        return KernelspecIsolation(name, "service's uid", False, why_not)
    if transport == "tcp":
        why = "but --kernel-transport=tcp: any process of the machine can read its output"
        return KernelspecIsolation(name, "own uid", False, why, "read every other kernel's output")
    return KernelspecIsolation(name, "own uid", True, f"from {uids.first}-{uids.last}")


def describe(plan: list[KernelspecIsolation]) -> str:
    """One line: each kernelspec's isolation."""
    return "Kernel isolation: " + "; ".join(str(entry) for entry in plan)


def exposure(plan: list[KernelspecIsolation]) -> str | None:
    """What kernels not kept apart can do, naming their kernelspecs (None: all are apart)."""
    exposures: dict[str, list[str]] = {}
    for entry in plan:
        if not entry.apart:
            exposures.setdefault(entry.exposure, []).append(entry.kernelspec)
    if not exposures:
        return None
    return "; ".join(
        f"Kernels of {', '.join(names)} are not kept apart: code in one can {can}" for can, names in exposures.items()
    )


def check_required(plan: list[KernelspecIsolation]) -> None:
    """ConfigError naming each kernelspec not kept apart, and what to change."""
    shared = [entry for entry in plan if not entry.apart]
    if shared:
        raise ConfigError(
            "--kernel-isolation=required, but kernels are not kept apart: "
            + "; ".join(str(entry) for entry in shared)
            + ". Run the service as root (or with CAP_SETUID and CAP_SETGID), with the kernels' programs where "
            "any uid may run them, or unprivileged on Linux 6.12 or later (Landlock), or use "
            "--kernel-sandbox=bubblewrap or container kernels"
        )


def kernel_uids(
    policy: str, sandbox: str, uid_range: str, roots: tuple[str, ...] = DEFAULT_ROOTS, *, prepare: bool = True
) -> tuple[KernelUids | None, str]:
    """The kernel uids the service hands out, their root directory the first of `roots`
    that can be made (unless not to `prepare` it: --show-config), or None and why not.
    None without a reason where they are not wanted (`none`, or a sandbox instead)."""
    if policy == "none" or sandbox:
        return None, ""
    first_last = parse_uid_range(uid_range)
    why = why_no_uids(effective_capabilities(), read_uid_map(), first_last)
    if why is not None:
        return None, why
    if not prepare:
        return KernelUids(first_last, roots[0]), ""
    failures = []
    for root in roots:
        uids = KernelUids(first_last, root)
        try:
            uids.prepare()
            return uids, ""
        except ConfigError as error:
            failures.append(str(error))
    return None, "; ".join(failures)


def kernel_separation(
    policy: str, sandbox: str, uid_range: str, hidden: tuple[str, ...] = (), *, prepare: bool = True, processes: int = 0
) -> tuple[Separation | None, str]:
    """How local kernels are kept apart: uids of their own where the service may hand
    them out, else Landlock rooms (`hidden`: the service's paths no kernel may read;
    `processes`: each room's kernel's bound, where Linux allows it), or None and why
    neither. None without a reason where neither is wanted."""
    uids, why_no_uids = kernel_uids(policy, sandbox, uid_range, prepare=prepare)
    if uids is not None or not why_no_uids:
        return uids, why_no_uids
    rooms, why_no_rooms = landlock_rooms(hidden, prepare=prepare, processes=processes)
    if rooms is not None:
        return rooms, ""
    return None, f"{why_no_uids}, and {why_no_rooms}"


def report(plan: list[KernelspecIsolation], policy: str) -> None:
    """Log each kernelspec's isolation (one line) and what kernels not kept apart can do;
    ConfigError if isolation is required and some kernels are not kept apart."""
    log.info("%s", describe(plan))
    if policy == "required":
        check_required(plan)
    warning = exposure(plan)
    if warning is not None:
        log.warning("%s. See --kernel-isolation in docs/security.md", warning)
