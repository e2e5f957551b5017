"""A relay session sends nothing to the kernel before its stdin socket has finished its
handshake: over real ZeroMQ sockets, with the kernel's side played by ROUTER sockets the
test binds when it chooses (the stdin one last), so no timing decides the outcome.

Why: a request that calls input() makes the kernel send an input_request to the
session's identity on stdin, and a ROUTER drops a message to an identity whose
connection is not established yet: the kernel then waits for an answer forever. The
service's own tests met it once in CI (python-socketio on /shell and /stdin at once)."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from kernels_service.kernels.manager import ServiceKernelManager
from kernels_service.protocol import KernelMessage
from kernels_service.protocol.message import make_message
from kernels_service.protocol.wire import Signer, from_frames, to_frames
from kernels_service.relay.session import RelaySession
from kernels_service.relay.sockets import stop_watching

KEY = b"relay-session-test-key"


class Collector:
    channels = frozenset({"shell", "stdin", "control"})

    def __init__(self) -> None:
        self.messages: list[KernelMessage] = []

    def deliver(self, message: KernelMessage) -> None:
        self.messages.append(message)

    def relay_closed(self, reason: str) -> None: ...


def kernel_side(tmp_path) -> ServiceKernelManager:
    """A manager holding an ipc connection, with no kernel launched: the test binds the
    kernel's sockets itself."""
    manager = ServiceKernelManager(transport="ipc", ip=str(tmp_path / "k"))
    manager.session.key = KEY
    manager.shell_port, manager.iopub_port, manager.stdin_port, manager.control_port, manager.hb_port = 1, 2, 3, 4, 5
    manager.context = zmq.asyncio.Context()
    return manager


def kernel_router(context: zmq.asyncio.Context, tmp_path, channel_port: int) -> zmq.asyncio.Socket:
    """The kernel's side of one channel: a ROUTER bound where the manager connects."""
    socket = context.socket(zmq.ROUTER)
    socket.bind(f"ipc://{tmp_path}/k-{channel_port}")
    return socket


def close_all(context: zmq.asyncio.Context, *sockets: zmq.asyncio.Socket) -> None:
    for socket in sockets:
        socket.close(linger=0)
    context.term()


async def held_until_stdin_is_up(tmp_path) -> None:
    manager = kernel_side(tmp_path)
    context = manager.context
    shell = kernel_router(context, tmp_path, 1)
    ready = asyncio.Event()
    ready.set()
    session = RelaySession("k", b"client-1", Signer(KEY), ready, lambda: None)
    collector = Collector()
    session.attach(collector)
    session.open(manager)
    request = make_message("shell", "execute_request", {"code": "input()"}, "s")
    session.send(request)
    assert not await shell.poll(500), "sent before the stdin socket was connected"
    stdin = kernel_router(context, tmp_path, 3)  # the stdin connection now completes, and only then
    assert await shell.poll(10_000), "never sent once the stdin socket was connected"
    identity, *frames = await shell.recv_multipart()
    assert identity == b"client-1" and from_frames("shell", frames, Signer(KEY)).msg_type == "execute_request"
    # the kernel's input_request reaches the session: its identity was known to stdin
    input_request = make_message("stdin", "input_request", {"prompt": "? "}, "s")
    await stdin.send_multipart([b"client-1", *to_frames(input_request, Signer(KEY))])
    for _ in range(200):
        if collector.messages:
            break
        await asyncio.sleep(0.05)
    assert [m.msg_type for m in collector.messages] == ["input_request"]
    session.close()
    close_all(context, shell, stdin)


def test_a_session_holds_requests_until_its_stdin_socket_is_connected(tmp_path):
    asyncio.run(held_until_stdin_is_up(tmp_path))


async def closed_before_stdin_is_up(tmp_path) -> None:
    """A client that leaves before its session's stdin handshake (a bad first frame, a
    closed tab): the kernel's stdin comes up after the session closed. The context must
    still connect a new session to the kernel afterwards."""
    manager = kernel_side(tmp_path)
    context = manager.context
    ready = asyncio.Event()
    ready.set()
    leaving = RelaySession("k", b"client-1", Signer(KEY), ready, lambda: None)
    leaving.open(manager)  # its sockets connect to a kernel whose stdin is not there yet
    leaving.close()
    stdin = kernel_router(context, tmp_path, 3)
    shell = kernel_router(context, tmp_path, 1)
    staying = RelaySession("k", b"client-2", Signer(KEY), ready, lambda: None)
    staying.open(manager)
    staying.send(make_message("shell", "execute_request", {"code": "1"}, "s"))
    assert await shell.poll(10_000), "the next session never reached the kernel"
    staying.close()
    close_all(context, shell, stdin)


def test_a_session_closed_before_its_stdin_handshake_leaves_the_next_one_working(tmp_path):
    asyncio.run(closed_before_stdin_is_up(tmp_path))


def test_a_monitor_stopped_before_its_sockets_handshake_never_blocks_zeromq(tmp_path):
    """libzmq reports a handshake to a socket's monitor from its I/O thread with a
    blocking send: a monitor closed while its socket lives would stop that thread, and
    every socket of the context with it, at the socket's next handshake. stop_watching
    detaches first, so the handshake that completes afterwards reports to nobody."""
    context = zmq.Context()
    try:
        watched = context.socket(zmq.DEALER)
        monitor = watched.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        watched.connect(f"ipc://{tmp_path}/peer")
        stop_watching(watched, monitor)
        peer = context.socket(zmq.ROUTER)
        peer.bind(f"ipc://{tmp_path}/peer")  # the watched socket's handshake completes now
        watched.send(b"hello")
        assert peer.poll(10_000), "the watched socket's message never arrived"
        first, second = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
        first.bind(f"ipc://{tmp_path}/pair")
        second.connect(f"ipc://{tmp_path}/pair")  # needs the I/O thread
        second.send(b"still working")
        assert first.poll(10_000) and first.recv() == b"still working"
        for socket in (watched, peer, first, second):
            socket.close(linger=0)
    finally:
        context.term()
