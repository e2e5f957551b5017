"""What one kernel may take of the machine, so that it cannot take what the service and
the other kernels need (`--kernel-memory-limit`, `--kernel-process-limit`,
`--kernel-open-files`).

Each bound is a Linux resource limit that util-linux's `prlimit` sets on itself, soft and
hard alike, before it executes the kernel in its place: the kernel cannot raise it, and
what the kernel starts inherits it. (Setting them from the service after the launch
needs CAP_SYS_RESOURCE for a kernel of another uid, which a container's root lacks.)
A kernel past a bound gets an error in itself, not a dead service:
- memory (`RLIMIT_DATA`: the heap and private writable mappings, what allocations take;
  not the address space merely reserved, which libraries reserve by gigabytes): a
  `MemoryError`. It bounds one process: a kernel that forks may take it once per child.
  By default half the memory the service may use (the machine's, or its container's
  limit). The kernel is also the first Linux's out-of-memory killer picks
  (`oom_score_adj` 1000), before the service.
- processes (`RLIMIT_NPROC`, which Linux counts per uid and user namespace): a failed
  `fork` or thread start. It bounds one kernel where the kernel has a uid of its own
  (`kernels.kernel_uids`: set here) or a user namespace of its own (a Landlock room's
  kernel, where Linux allows it: set by `confinement.launch`); where kernels share the
  service's uid and namespace it would count them all and the service's threads too, so
  it is not set there.
- open files (`RLIMIT_NOFILE`): `OSError: Too many open files`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

from kernels_service.kernels.errors import ConfigError

log = logging.getLogger("kernels_service.kernels")

DEFAULT_PROCESSES = 512
DEFAULT_OPEN_FILES = 4096
OOM_SCORE_ADJ = 1000  # the first the out-of-memory killer picks

#: Where a cgroup's memory limit is read: cgroup v2, then v1.
CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str, option: str) -> int:
    """`1073741824`, `512M`, `4G` (binary units, case-insensitive) as bytes; ConfigError else."""
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    if not value.isalnum():  # no sign, point or space
        value = "?"
    number, unit = (value[:-1], value[-1]) if value[-1:] in UNITS and value[-1:] else (value, "")
    try:
        size = int(number) * UNITS[unit]
    except ValueError:
        size = -1
    if size < 0:
        raise ConfigError(f"{option} must be a size in bytes (4294967296, 4096M, 4G) or 0 for none, not {text!r}")
    return size


def memory_available(meminfo: str, cgroup_limits: list[str]) -> int:
    """The memory the service may use: the machine's (`MemTotal` of /proc/meminfo, in kB),
    or less where a cgroup (a container) sets a lower limit."""
    total = next((int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    limits = [int(text) for text in (limit.strip() for limit in cgroup_limits) if text.isdigit()]
    return min([total, *limits]) if total else min(limits, default=0)


def read_memory_available() -> int:
    texts = []
    for path in ("/proc/meminfo", *CGROUP_MEMORY_LIMITS):
        try:
            with open(path) as file:
                texts.append(file.read())
        except OSError:
            texts.append("")
    return memory_available(texts[0], texts[1:])


@dataclass(frozen=True)
class KernelLimits:
    """The bounds of one kernel (0: none), set by util-linux's `prlimit` (its path)."""

    memory: int = 0
    processes: int = 0
    open_files: int = 0
    prlimit: str = ""  # "": not found, and no bound can be set

    def describe(self) -> str:
        if not self.prlimit:
            return "anything (util-linux's prlimit is not on PATH: no bound is set)"
        parts = [
            f"memory {self.memory // 2**20} MiB" if self.memory else "memory unbounded",
            f"{self.processes} processes (kernels of their own uid or user namespace)"
            if self.processes
            else "processes unbounded",
            f"{self.open_files} open files" if self.open_files else "open files unbounded",
        ]
        return ", ".join(parts)

    def command(self, command: list[str], own_uid: bool, path: str | None = None) -> list[str]:
        """The kernel's command, run under its bounds (processes only if `own_uid`):
        `prlimit` sets them on itself, soft and hard, and executes the kernel in its place
        (the same process: signals reach the kernel as before). A program not found on
        `path` (the kernel's PATH) is left to fail its launch as it would unbounded (a 503
        with the reason), not once prlimit runs (a kernel that dies)."""
        bounds = [("data", self.memory), ("nofile", self.open_files), ("nproc", self.processes if own_uid else 0)]
        options = [f"--{name}={value}:{value}" for name, value in bounds if value]
        if not options or not self.prlimit or not command or shutil.which(command[0], path=path) is None:
            return command
        return [self.prlimit, *options, "--", *command]

    @staticmethod
    def first_to_go(pid: int) -> None:
        """Make the kernel's process the out-of-memory killer's first choice, before the
        service (what it starts inherits it)."""
        try:
            with open(f"/proc/{pid}/oom_score_adj", "w") as adj:
                adj.write(str(OOM_SCORE_ADJ))
        except OSError as error:
            log.warning("Cannot make kernel process %d the out-of-memory killer's first choice: %s", pid, error)


def kernel_limits(memory: str, processes: int, open_files: int) -> KernelLimits:
    """The bounds of the options: `memory` a size, `auto` (half of what the service may
    use) or 0; counts >= 0 (0: none). ConfigError for anything else."""
    if processes < 0 or open_files < 0:
        raise ConfigError("--kernel-process-limit and --kernel-open-files must not be negative (0: none)")
    if memory.strip().lower() == "auto":
        size = read_memory_available() // 2
    else:
        size = parse_size(memory, "--kernel-memory-limit")
    return KernelLimits(size, processes, open_files, shutil.which("prlimit") or "")
