"""What code in a kernel tries against the service, the other kernels and the machine.

Each attack is a cell a client could send; it prints one JSON line of what it reached,
so the tests run it through the real service in a real kernel (local or in the image)
and assert on what came back. The tests, not the attacker, know the token: they put it
in the cell as the needles to look for.
"""

from __future__ import annotations

import json

from kernels_service.testing.channels import ChannelsClient, stream_text

#: The service's /proc files a same-uid process must not read (`mem` is refused at open).
SERVICE_FILES = ("environ", "mem", "maps", "fd", "auxv")

READ_THE_SERVICE = r"""
import json, os
service = os.getppid()
tried = {}
for name in %(files)r:
    path = f"/proc/{service}/{name}"
    try:
        if os.path.isdir(path):  # what the service has open: the names, then where they lead
            [os.readlink(f"{path}/{fd}") for fd in os.listdir(path)]
        else:
            with open(path, "rb") as file:
                file.read(64)
        tried[name] = "read"
    except PermissionError:
        tried[name] = "denied"
    except OSError as error:  # opened, then refused (mem at offset 0): it was reachable
        tried[name] = f"opened ({error.strerror})"
def who(pid):  # for the failure message: what the holder was, and its parent
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            command = file.read().replace(b"\0", b" ").decode(errors="replace")[:200]
        with open(f"/proc/{pid}/stat") as file:
            parent = int(file.read().rsplit(")", 1)[1].split()[1])
        return {"command": command, "parent": parent}
    except (OSError, ValueError, IndexError):
        return {}
holding, holders = [], {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    for name in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as file:
                content = file.read()
            if any(needle.encode() in content for needle in %(needles)r):
                holding.append(f"/proc/{pid}/{name}")
                holders[pid] = who(pid)
        except OSError:
            pass
found = {"service": service, "tried": tried, "holding_a_secret": holding, "holders": holders, "uid": os.getuid()}
print(json.dumps(found))
"""

#: The kernel's channels, and the loopback port ipykernel itself listens on for output of
#: forked subprocesses (its IOPub pipe: PULL only, and each message must start with a
#: 16-byte secret that never leaves the kernel; not configurable in ipykernel 7).
MY_ADDRESSES = r"""
import json, ipykernel.connect
info = ipykernel.connect.get_connection_info(unpack=True)
channels = ("shell", "iopub", "stdin", "control", "hb")
pipe = get_ipython().kernel.iopub_thread._pipe_port
print(json.dumps({"transport": info["transport"], "ip": info["ip"], "ports": [info[f"{c}_port"] for c in channels],
                  "pipe_port": pipe}))
"""

#: The TCP ports this kernel process listens on (its own /proc, any address).
MY_LISTENING_PORTS = r"""
import json, os
inodes = set()
for fd in os.listdir("/proc/self/fd"):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:["):
        inodes.add(target[8:-1])
ports = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            ports.append(int(fields[1].rsplit(":", 1)[1], 16))
print(json.dumps(sorted(ports)))
"""

#: Stdlib only, as another user or in another kernel: what each channel of a kernel
#: (`info`: MY_ADDRESSES' JSON) gives a peer that holds no key of it. Over ipc, the
#: connect's error, or "connected". Over tcp, the peer greets in ZMTP 3 with the NULL
#: mechanism (no key): it reads the mechanism the kernel's greeting names, and sees
#: whether the kernel goes on (its READY: "talked") or hangs up ("closed").
KNOCK_ON_EACH = r"""
import json, socket
info = json.loads(%(info)r)
NULL_GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + bytes(32)
def receive(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
def knock(port):
    if info["transport"] == "ipc":  # a path, or (`@`) an abstract socket's name
        sock, address = socket.socket(socket.AF_UNIX), f"{info['ip']}-{port}".replace("@", "\0", 1)
    else:
        sock, address = socket.socket(), (info["ip"], port)
    sock.settimeout(10)
    try:
        sock.connect(address)
        if info["transport"] == "ipc":
            return "connected"
        sock.sendall(NULL_GREETING[:11])  # signature and major version: the kernel greets back
        greeting = receive(sock, 64)
        mechanism = greeting[12:32].rstrip(b"\0").decode("ascii", "replace")
        sock.sendall(NULL_GREETING[11:])
        try:
            answer = "talked" if receive(sock, 1) else "closed"
        except ConnectionResetError:
            answer = "closed"
        return f"{mechanism}: {answer}"
    except OSError as error:
        return type(error).__name__
    finally:
        sock.close()
print(json.dumps([knock(port) for port in info["ports"]]))
"""


def knock_on_each(info: dict) -> str:
    """The cell (or `python -c` program) that knocks on each channel of `info`."""
    return KNOCK_ON_EACH % {"info": json.dumps(info)}


def run_in_kernel(client: ChannelsClient, code: str) -> dict:
    """Execute `code` (which prints one JSON line) in the client's kernel; that JSON."""
    reply, outputs = client.execute(code, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    return json.loads(stream_text(outputs))


def read_the_service(*secrets: str) -> str:
    """The cell that tries the service's /proc files and looks for the secrets (the token
    first) in every process's environment and command line it can read."""
    return READ_THE_SERVICE % {"files": SERVICE_FILES, "needles": secrets}


#: From one kernel: an execute_request to another kernel's shell, signed with `key` (the
#: other's, read from its connection file, or a wrong one), over the transport its
#: connection file sets up (its CurveZMQ keys too); the reply's status, if any comes
#: within `wait` seconds.
DRIVE_THE_OTHER = r"""
import json, zmq
from jupyter_client.session import Session
other = json.loads(%(other)r)
info = json.load(open(other["connection_file"]))
key = (info["key"] if %(key)r is None else %(key)r).encode()
if other["transport"] == "ipc":
    address = f"ipc://{other['ip']}-{other['ports'][0]}"
else:
    address = f"tcp://{other['ip']}:{other['ports'][0]}"
sock = zmq.Context.instance().socket(zmq.DEALER)
sock.linger = 10000  # close() waits until the request has left
if "curve_publickey" in info:
    sock.curve_secretkey = info["curve_secretkey"].encode()
    sock.curve_publickey = sock.curve_serverkey = info["curve_publickey"].encode()
sock.connect(address)
session = Session(key=key, signature_scheme="hmac-sha256")
session.send(sock, "execute_request", {"code": "stolen = True", "silent": False, "store_history": False,
                                       "user_expressions": {}, "allow_stdin": False})
status = None
if sock.poll(%(wait)d * 1000):
    status = session.recv(sock, mode=0)[1]["content"]["status"]
sock.close()
print(json.dumps({"reply": status}))
"""


#: Who a kernel is: its connection file, pid, uid, gid, groups, home, TMPDIR, cwd, umask.
WHO_AM_I = r"""
import json, os, ipykernel.connect
print(json.dumps({"connection_file": ipykernel.connect.get_connection_file(), "pid": os.getpid(),
                  "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "home": os.environ["HOME"],
                  "tmp": os.environ.get("TMPDIR", "/tmp"), "cwd": os.getcwd(), "umask": os.umask(0o077)}))
"""

#: From one kernel, against `other` (WHO_AM_I's JSON of another kernel) and the service:
#: each attempt's outcome, "done" or the error's name. With `harmless`, no signal, no
#: ptrace and nothing done to the service's limits or scheduling (they would stop or
#: starve the other kernel or the service where they succeed).
ATTACK = r"""
import ctypes, json, os, resource, signal
other, service, harmless = json.loads(%(other)r), %(service)d or os.getppid(), %(harmless)r
found = {}
def attempt(name, action):
    try:
        action()
        found[name] = "done"
    except OSError as error:
        found[name] = type(error).__name__
if not harmless:
    for target, pid in (("service", service), ("other", other["pid"])):
        for name in ("SIGSTOP", "SIGTERM", "SIGKILL"):
            attempt(f"{name} the {target}", lambda pid=pid, name=name: os.kill(pid, getattr(signal, name)))
    attempt("limit the service's CPU time", lambda: resource.prlimit(service, resource.RLIMIT_CPU, (1, 1)))
    attempt("make the service idle", lambda: os.sched_setscheduler(service, os.SCHED_IDLE, os.sched_param(0)))
    attempt("renice the service", lambda: os.setpriority(os.PRIO_PROCESS, service, 19))
    attempt("pin the service to one CPU", lambda: os.sched_setaffinity(service, {0}))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(16, other["pid"], None, None) == 0:  # PTRACE_ATTACH
        found["ptrace the other"] = "done"
        libc.ptrace(17, other["pid"], None, None)  # PTRACE_DETACH
    else:
        found["ptrace the other"] = os.strerror(ctypes.get_errno())
attempt("read its connection file", lambda: open(other["connection_file"]).read())
for name in ("environ", "mem", "maps"):
    attempt(f"read its /proc {name}", lambda name=name: open(f"/proc/{other['pid']}/{name}", "rb").read(64))
attempt("read its /proc fd", lambda: [os.readlink(f"/proc/{other['pid']}/fd/{fd}")
                                     for fd in os.listdir(f"/proc/{other['pid']}/fd")])
for place in ("home", "tmp"):
    attempt(f"list its {place}", lambda place=place: os.listdir(other[place]))
    attempt(f"write in its {place}", lambda place=place: open(os.path.join(other[place], "planted"), "w").close())
print(json.dumps(found))
"""


def attack(other: dict, service_pid: int, harmless: bool) -> str:
    return ATTACK % {"other": json.dumps(other), "service": service_pid, "harmless": harmless}


def who(client: ChannelsClient) -> dict:
    return run_in_kernel(client, WHO_AM_I)


#: Bombs: what one kernel tries to take from the others (kernels/limits.py bounds it).
MEMORY_BOMB = r"""
import json
chunks, error = [], None
try:
    while len(chunks) < 64:  # 4 GiB at most: past any bound these tests set
        chunks.append(bytearray(64 * 2**20))
except MemoryError as raised:
    error = type(raised).__name__
taken = len(chunks) * 64
chunks = None
print(json.dumps({"error": error, "taken_mib": taken}))
"""

_FORK_BOMB = r"""
import json, os, time
children, error = [], None
try:
    while len(children) < %(most)d:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError as raised:
    error = type(raised).__name__
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps({"error": error, "forked": len(children)}))
"""


def fork_bomb(most: int) -> str:
    """The cell (or `python -c` program) that forks up to `most` sleeping children, then
    kills them, and prints what stopped it (`error`, None if nothing) and how many it forked."""
    return _FORK_BOMB % {"most": most}


FORK_BOMB = fork_bomb(2000)
