"""A stand-alone server with the reference configuration of the Socket.IO protocol test suite.

    python -m kernels_service.socketio.conformance --port 3000 [--path /socket.io/]
    python -m kernels_service.socketio.conformance --port 3000 --engine-only --path /engine.io/

pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000, connectTimeout 1000 ms,
CORS `*`. The main namespace and `/custom` emit `auth` with the handshake auth, echo
`message` as `message-back` and ack `message-with-ack` with its arguments. With
`--engine-only`, every Engine.IO message is echoed as it came. It lets anyone check
this package's Engine.IO/Socket.IO layer against the specifications of both generations.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from tornado.web import Application

from kernels_service.access import AccessPolicy
from kernels_service.socketio.engine import EngineConfig
from kernels_service.socketio.handlers import engineio_routes
from kernels_service.socketio.namespaces import Socket
from kernels_service.socketio.server import EngineServer

REFERENCE = EngineConfig(ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000)
CONNECT_TIMEOUT = 1.0


class EchoNamespace:
    """The reference test-suite namespace behaviour."""

    async def on_connect(self, socket: Socket, auth: dict[str, Any]) -> None:
        return None

    def on_connected(self, socket: Socket, auth: dict[str, Any]) -> None:
        socket.emit("auth", auth)

    def on_event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None:
        if event == "message":
            socket.emit("message-back", *args)
        elif event == "message-with-ack" and ack_id is not None:
            socket.ack(ack_id, args)

    def on_disconnect(self, socket: Socket) -> None:
        return None


class ReferenceNamespaces:
    """`/` and `/custom`; every other namespace is refused as invalid."""

    def __init__(self) -> None:
        self._echo = EchoNamespace()

    def resolve(self, namespace: str) -> EchoNamespace | None:
        return self._echo if namespace in ("/", "/custom") else None


def make_app(path: str, engine_only: bool) -> Application:
    access = AccessPolicy(token="", allow_origin="*")
    server = EngineServer(ReferenceNamespaces(), access, REFERENCE, CONNECT_TIMEOUT, engine_only=engine_only)
    return Application(engineio_routes(server, [path]))


async def serve(port: int, path: str, engine_only: bool) -> None:
    """Serve until Ctrl-C (SIGINT) or SIGTERM; then return, so the process exits 0."""
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    server = make_app(path, engine_only).listen(port, address="127.0.0.1")
    log = logging.getLogger("kernels_service")
    log.info("Conformance server at http://127.0.0.1:%s%s (Ctrl-C stops it)", port, path)
    await stop.wait()
    server.stop()
    log.info("Conformance server stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--path", default=None, help="Engine.IO path (default /socket.io/, or /engine.io/)")
    parser.add_argument("--engine-only", action="store_true", help="Engine.IO echo server, no Socket.IO")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    path = args.path or ("/engine.io/" if args.engine_only else "/socket.io/")
    asyncio.run(serve(args.port, path, args.engine_only))


if __name__ == "__main__":
    main()
