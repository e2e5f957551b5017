"""The private parts of our dependencies that the service relies on, checked against the
installed versions: each test names the attribute, so that an upgrade that removes or
changes one fails here, loudly, rather than changing the service's behaviour silently.

jupyter_client's are all behind `kernels/jupyter_client_internals.py`; tornado's websocket
stream behind `websocket_writer.open_stream`; traitlets' command-line loader hooks in
`app.py` (KernelsService._create_loader, StrictArgumentLoader)."""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import os

import pytest
import tornado.web
import tornado.websocket
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import bind_sockets
from traitlets.config.application import Application
from traitlets.config.loader import KVArgParseConfigLoader

from kernels_service.app import KernelsService, StrictArgumentLoader
from kernels_service.kernels.jupyter_client_internals import (
    PRIVATE_ATTRIBUTES,
    channel_url,
    mark_started,
    own_connection_file,
    record_random_ports,
    register_kernel,
)
from kernels_service.kernels.manager import ServiceKernelManager
from kernels_service.websocket_writer import open_stream


def owner(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    "dotted, attribute", [(cls, attr) for cls, attrs in PRIVATE_ATTRIBUTES.items() for attr in attrs]
)
def test_each_private_jupyter_client_attribute_is_still_read_by_jupyter_client(dotted, attribute):
    """Setting a private attribute has an effect only while jupyter_client's own code reads it."""
    source = inspect.getsource(owner(dotted))
    assert f"self.{attribute}" in source, (
        f"{dotted}.{attribute} is no longer used by jupyter_client: kernels/jupyter_client_internals.py relies on it"
    )


def a_tcp_manager() -> KernelManager:
    manager = KernelManager(transport="tcp", ip="127.0.0.1")
    manager.shell_port, manager.iopub_port, manager.stdin_port, manager.control_port, manager.hb_port = range(
        41001, 41006
    )
    return manager


def test_ports_recorded_as_random_are_the_ones_a_restart_on_new_ports_forgets():
    """jupyter_client's `_random_port_names`: `cleanup_random_ports` (a restart with new
    ports) zeroes exactly the ports it lists, and records its own list only if it has none."""
    manager = a_tcp_manager()
    record_random_ports(manager, ["shell_port", "stdin_port"])
    record_random_ports(manager, ["hb_port"])  # already known: unchanged
    manager._record_random_port_names()  # jupyter_client's own, at every write of the connection file
    manager.cleanup_random_ports()
    assert (manager.shell_port, manager.stdin_port) == (0, 0), (
        "jupyter_client's KernelManager._random_port_names changed meaning: cleanup_random_ports ignores it"
    )
    assert (manager.iopub_port, manager.control_port, manager.hb_port) == (41002, 41004, 41005)


def test_a_channel_url_is_what_jupyter_client_connects_to():
    """jupyter_client's `_make_url(channel)` gives the transport, address and port of a channel."""
    manager = a_tcp_manager()
    assert channel_url(manager, "stdin") == "tcp://127.0.0.1:41003", "jupyter_client's _make_url changed"
    ipc = KernelManager(transport="ipc", ip="/tmp/kernel-x-ipc")
    ipc.stdin_port = 3
    assert channel_url(ipc, "stdin") == "ipc:///tmp/kernel-x-ipc-3", "jupyter_client's _make_url changed for ipc"


def test_a_manager_marked_started_restarts_with_its_launch_arguments():
    """jupyter_client's `_launch_args` are what a restart launches with, and
    `_attempted_start` is what makes a manager count as started."""
    manager = KernelManager()
    assert manager._attempted_start is False, "jupyter_client's KernelManager._attempted_start is gone"
    mark_started(manager, {"env": {"A": "1"}, "independent": True})
    assert manager._attempted_start is True
    assert manager._launch_args == {"env": {"A": "1"}, "independent": True}
    restart = inspect.getsource(AsyncKernelManager._async_restart_kernel)
    assert "self._launch_args" in restart, "jupyter_client no longer restarts with KernelManager._launch_args"


def test_a_registered_kernel_is_known_to_the_multi_kernel_manager():
    """jupyter_client's `MultiKernelManager._kernels` is what `get_kernel`, `list_kernel_ids`
    and `remove_kernel` read."""
    multi = AsyncMultiKernelManager()
    manager = AsyncKernelManager()
    register_kernel(multi, "k1", manager)
    assert multi.get_kernel("k1") is manager, "jupyter_client's MultiKernelManager._kernels changed"
    assert multi.list_kernel_ids() == ["k1"]
    assert multi.remove_kernel("k1") is manager


def test_a_connection_file_not_owned_is_left_where_it_is(tmp_path):
    """jupyter_client's `_connection_file_written` decides whether a manager's cleanup (and
    its garbage collection) removes the kernel's connection file."""
    manager = KernelManager(connection_file=str(tmp_path / "kernel-1.json"))
    manager.write_connection_file()
    own_connection_file(manager, False)
    manager.cleanup_connection_file()
    del manager
    gc.collect()
    assert (tmp_path / "kernel-1.json").exists(), "jupyter_client's _connection_file_written no longer decides"
    taker = KernelManager(connection_file=str(tmp_path / "kernel-1.json"))
    own_connection_file(taker, True)
    taker.cleanup_connection_file()
    assert not (tmp_path / "kernel-1.json").exists(), "jupyter_client's _connection_file_written changed meaning"


def test_our_kernel_manager_hands_out_asyncio_sockets():
    """ServiceKernelManager takes AsyncKernelManager's `connect_*` back from
    AsyncIOLoopKernelManager (which wraps them for ZMQStream): the relay awaits them."""
    manager = ServiceKernelManager(transport="tcp", ip="127.0.0.1")
    manager.load_connection_info({"shell_port": 41001, "iopub_port": 41002, "stdin_port": 41003,
                                  "control_port": 41004, "hb_port": 41005, "key": "k"})  # fmt: skip
    sockets = [manager.connect_shell(), manager.connect_iopub(), manager.connect_stdin(), manager.connect_control()]
    try:
        assert all(isinstance(socket, zmq.asyncio.Socket) for socket in sockets), (
            "jupyter_client's connect_* no longer give zmq.asyncio sockets to ServiceKernelManager"
        )
    finally:
        for socket in sockets:
            socket.close(linger=0)


def test_the_ipc_prefix_of_a_kernel_is_in_the_service_socket_directory(tmp_path):
    """Over ipc, a kernel's socket paths are `<ipc_dir>/<connection file's name>-ipc-N`."""
    manager = ServiceKernelManager(
        transport_policy="ipc", ipc_dir=str(tmp_path), connection_file=str(tmp_path / "runtime" / "kernel-a.json")
    )
    manager.kernel_name = "python3"
    manager._choose_transport()
    manager.stdin_port = 3
    assert manager.ip == os.path.join(str(tmp_path), "kernel-a-ipc")
    assert channel_url(manager, "stdin") == f"ipc://{tmp_path}/kernel-a-ipc-3"


class Probe(tornado.websocket.WebSocketHandler):
    """Tells the test what `open_stream` gives while the websocket is open, then after close."""

    seen: asyncio.Queue

    def open(self) -> None:
        self.seen.put_nowait(open_stream(self))
        self.close()

    def on_close(self) -> None:
        self.seen.put_nowait(open_stream(self))


async def open_stream_while_open_and_after_close() -> list[object]:
    Probe.seen = asyncio.Queue()
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(tornado.web.Application([("/ws", Probe)]))
    server.add_sockets(sockets)
    try:
        client = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{sockets[0].getsockname()[1]}/ws")
        seen = [await asyncio.wait_for(Probe.seen.get(), 10), await asyncio.wait_for(Probe.seen.get(), 10)]
        client.close()
        return seen
    finally:
        server.stop()


def test_the_stream_under_a_tornado_websocket_is_an_iostream_until_it_closes():
    """tornado's `WebSocketHandler.ws_connection.stream`: the frames both doors write go there."""
    while_open, after_close = asyncio.run(open_stream_while_open_and_after_close())
    assert isinstance(while_open, IOStream), "tornado's WebSocketHandler.ws_connection.stream is no IOStream"
    assert after_close is None


def test_traitlets_command_line_hooks_are_still_called(capsys):
    """traitlets' `Application._create_loader(argv, aliases, flags, classes)` makes the
    command-line loader, and `KVArgParseConfigLoader._handle_unrecognized_alias(arg)` is
    called for an unknown option: our strict loader refuses it (exit 2)."""
    signature = list(inspect.signature(Application._create_loader).parameters)
    assert signature == ["self", "argv", "aliases", "flags", "classes"], "traitlets' Application._create_loader changed"
    assert hasattr(KVArgParseConfigLoader, "_handle_unrecognized_alias"), (
        "traitlets' KVArgParseConfigLoader._handle_unrecognized_alias is gone"
    )
    assert issubclass(StrictArgumentLoader, KVArgParseConfigLoader)
    with pytest.raises(SystemExit) as exited:
        KernelsService().initialize(["--prot=1"])
    assert exited.value.code == 2
    assert "unrecognized option: --prot" in capsys.readouterr().err
