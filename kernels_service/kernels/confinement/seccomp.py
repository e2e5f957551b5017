"""A seccomp filter for what Landlock leaves to a process of the same uid.

Landlock scopes signals, tracing and `/proc`, but Linux lets a process change some
things of any other process of its uid with no further check: its resource limits
(`prlimit`: a CPU-time limit of one second kills the service), its scheduling (the idle
policy, or a nice of 19, starves it beside a busy kernel), its CPU affinity, its I/O
priority. A confined kernel may still do each of these to itself (pid 0, as the C
library's `setrlimit`, `nice`, `sched_setaffinity(0, ...)` do), read another's limits,
and set the normal policy on any thread (what `pthread_setschedparam` does for a thread
of its own, by thread id: libzmq does it for each of its threads); anything else to
another process is refused (EPERM). The filter also
refuses every system call of another architecture's calling convention (32-bit
`int 0x80`, x32), through which the numbers below would not be recognised.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2

# Classic BPF, as seccomp runs it over `struct seccomp_data` (nr, arch, ip, args[6]).
LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
NR_OFFSET, ARCH_OFFSET = 0, 4
X32_SYSCALL_BIT = 0x40000000
JGE_K = 0x35


def arg_low(index: int) -> int:
    """Offset of the low 32 bits of argument `index` (little-endian machines)."""
    return 16 + 8 * index


def arg_high(index: int) -> int:
    return arg_low(index) + 4


#: A call is allowed where any one of its conditions holds; a condition is (offset, value)
#: pairs that must all be equal. Otherwise it fails with EPERM.
PID_IS_SELF = ((arg_low(0), 0),)
RULES = {
    "prlimit64": (PID_IS_SELF, ((arg_low(2), 0), (arg_high(2), 0))),  # its own, or only reading
    "setpriority": (((arg_low(0), 0), (arg_low(1), 0)),),  # PRIO_PROCESS of itself, not its group or uid
    "sched_setaffinity": (PID_IS_SELF,),
    "sched_setparam": (PID_IS_SELF,),
    "sched_setscheduler": (PID_IS_SELF, ((arg_low(1), 0),)),  # or SCHED_OTHER: harmless to anyone
    "sched_setattr": (PID_IS_SELF,),
    "ioprio_set": (((arg_low(0), 1), (arg_low(1), 0)),),  # IOPRIO_WHO_PROCESS of itself
}

#: Per architecture: its AUDIT_ARCH value, and the numbers of the calls of RULES.
ARCHITECTURES = {
    "x86_64": (0xC000003E, {"prlimit64": 302, "setpriority": 141, "sched_setaffinity": 203, "sched_setparam": 142,
                            "sched_setscheduler": 144, "sched_setattr": 314, "ioprio_set": 251}),
    "aarch64": (0xC00000B7, {"prlimit64": 261, "setpriority": 140, "sched_setaffinity": 122, "sched_setparam": 118,
                             "sched_setscheduler": 119, "sched_setattr": 274, "ioprio_set": 30}),
}  # fmt: skip


class SeccompError(OSError):
    """The running Linux refused the filter."""


def instruction(code: int, k: int, jump_true: int = 0, jump_false: int = 0) -> bytes:
    """One `struct sock_filter`: u16 code, u8 jt, u8 jf, u32 k."""
    return struct.pack("=HBBI", code, jump_true, jump_false, k)


def program(machine: str) -> bytes:
    """The filter for `machine` (platform.machine()'s name), as seccomp takes it. KeyError
    for a machine it has no numbers for."""
    audit_arch, numbers = ARCHITECTURES[machine]
    deny = instruction(RET_K, RET_ERRNO | errno.EPERM)
    code = [
        instruction(LD_W_ABS, ARCH_OFFSET),
        instruction(JEQ_K, audit_arch, 1, 0),
        deny,  # another calling convention
        instruction(LD_W_ABS, NR_OFFSET),
        instruction(JGE_K, X32_SYSCALL_BIT, 0, 1),
        deny,  # x32
    ]
    for name, conditions in RULES.items():
        code += call_block(numbers[name], conditions)
    code.append(instruction(RET_K, RET_ALLOW))
    return b"".join(code)


def call_block(number: int, conditions: tuple[tuple[tuple[int, int], ...], ...]) -> list[bytes]:
    """Instructions that decide call `number`: allow where a condition holds, else EPERM;
    any other call goes on past the block."""
    body: list[bytes] = []
    for condition in conditions:
        for position, (offset, value) in enumerate(condition):
            rest = 2 * (len(condition) - position - 1) + 1  # the condition's later pairs and its ALLOW
            body += [instruction(LD_W_ABS, offset), instruction(JEQ_K, value, 0, rest)]
        body.append(instruction(RET_K, RET_ALLOW))
    body.append(instruction(RET_K, RET_ERRNO | errno.EPERM))
    return [instruction(LD_W_ABS, NR_OFFSET), instruction(JEQ_K, number, 0, len(body)), *body]


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) in ARCHITECTURES


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install(machine: str | None = None) -> None:
    """Filter this process (and all it starts) for good. SeccompError if refused."""
    code = program(machine or platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fprog = _SockFprog(len(code) // 8, code)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise _error("prctl(PR_SET_SECCOMP)")


def _error(call: str) -> SeccompError:
    code = ctypes.get_errno() or errno.EINVAL
    return SeccompError(code, f"{call}: {os.strerror(code)}")
