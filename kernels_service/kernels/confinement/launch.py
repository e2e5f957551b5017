"""The start of a confined kernel's command: `python -I -S launch.py PLAN PROGRAM ARGS...`.

It bounds its processes (`PLAN`'s `processes`, in a user namespace of its own), confines
its own process by `PLAN` (JSON: what `plan_rules` takes), then executes the kernel's
program in its place: the same process, so the service signals and waits for the
kernel as before, and the kernel never runs a moment unconfined. If the confinement
fails, the kernel does not run (exit 126, the reason on stderr): the service said at its
start that kernels are kept apart, and a kernel that is not is one it must not start.

Run as a script, by the service's own Python in isolated mode, so it reads the two
modules beside it (standard library only) and nothing of the environment.
"""

from __future__ import annotations

import json
import os
import resource
import sys

CANNOT_CONFINE = 126
OOM_SCORE_ADJ = 1000  # the kernel goes first when memory runs out (kernels.limits)
CLONE_NEWUSER = 0x10000000
PROBE = "--probe-user-namespace"  # the service asks, at its start, whether bound_processes works


def plan_rules(plan: dict) -> list[tuple[str, int]]:
    """The Landlock rules of `plan`: everything readable but its `hidden` paths, its
    `readable` paths again (inside a hidden one: the kernel's own Python), its `own`
    directory for anything, and the machine's devices and shared memory."""
    import landlock

    rules = [(path, landlock.READ) for path in landlock.readable_around(plan["hidden"])]
    rules += [(path, landlock.READ) for path in plan.get("readable", [])]
    rules += [(plan["own"], landlock.EVERYTHING), ("/dev", landlock.DEVICES), ("/dev/shm", landlock.SHARED_MEMORY)]
    return rules


def first_to_go() -> None:
    """Make this process (the kernel-to-be) the out-of-memory killer's first choice: from
    inside, as the service may not write the /proc files of a process not yet executed."""
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write(str(OOM_SCORE_ADJ))
    except OSError as error:
        print(f"kernels-service: the kernel is not the out-of-memory killer's first choice: {error}", file=sys.stderr)


def own_user_namespace() -> None:
    """Move this process into a user namespace of its own, as the same uid and gid (each
    mapped to itself: files, signals and /proc see the same ids), without supplementary
    groups. OSError where this Linux or its policy (a container's seccomp profile,
    `user.max_user_namespaces`) does not allow it."""
    import ctypes

    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"no user namespace of its own: {os.strerror(error)}")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def bound_processes(processes: int) -> None:
    """At most `processes` processes and threads for the kernel, counted for it alone.

    Linux counts RLIMIT_NPROC per uid and user namespace: in a namespace of its own, the
    kernel's count starts at its own process, apart from the service's and the other
    kernels' of the same uid (which count in the parent namespace, under the service's
    own limit). A fork past it fails in the kernel (BlockingIOError). A lower hard limit
    the service already has stays (raising it would be refused)."""
    own_user_namespace()
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    bound = processes if hard == resource.RLIM_INFINITY else min(processes, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (bound, bound))


def main(argv: list[str]) -> None:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import landlock
    import seccomp

    if argv[1:] == [PROBE]:
        try:
            own_user_namespace()
        except OSError as error:
            sys.exit(error.strerror or str(error))
        return
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} PLAN PROGRAM [ARGS...]")
    plan = json.loads(argv[1])
    first_to_go()
    try:
        if plan.get("processes"):
            bound_processes(plan["processes"])
        landlock.confine(plan_rules(plan), plan["abi"])
        seccomp.install()
    except (OSError, KeyError) as error:
        print(f"kernels-service: cannot confine the kernel: {error}", file=sys.stderr, flush=True)
        sys.exit(CANNOT_CONFINE)
    try:
        os.execvp(argv[2], argv[2:])
    except OSError as error:
        print(f"kernels-service: cannot run {argv[2]}: {error}", file=sys.stderr, flush=True)
        sys.exit(CANNOT_CONFINE + 1)


if __name__ == "__main__":
    main(sys.argv)
