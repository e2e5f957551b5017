"""What becomes of ZeroMQ sockets that connect to a loopback port before anything binds it.

    python benchmarks/early_connects.py [--sockets 300] [--wait 1.5] [--curve]

The service connects to a kernel right after launching it, before the kernel has bound
its ports (kernels/ports.py). This connects `--sockets` DEALERs to as many free
loopback ports, waits `--wait` seconds (a kernel's start), then binds a ROUTER on each
port and counts the DEALERs whose message arrives, the binds that failed ("Address
already in use": a retry took the port as its own source port), and the DEALERs that
never got through although their ROUTER bound (over CurveZMQ: a handshake with itself
failed, and ZeroMQ gave the connection up). Twice: with ports the way jupyter_client
picks them (binding port 0: the ephemeral range), and with ports below that range (the
service's way).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels_service.kernels.ports import PortPicker, default_port_range, ephemeral_range  # noqa: E402


def ephemeral_ports(count: int) -> list[int]:
    """Free ports as jupyter_client finds them: bind port 0, note it, close."""
    ports = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def below_ephemeral_ports(count: int) -> list[int]:
    band = default_port_range(ephemeral_range())
    if band is None:
        raise SystemExit("no room below the ephemeral range on this machine")
    return PortPicker(band).pick("127.0.0.1", count)


def run(ports: list[int], wait: float, curve: bool) -> dict[str, int]:
    """Connect early, bind late: how many got through, binds refused, sockets lost."""
    context = zmq.Context()
    public, secret = zmq.curve_keypair()
    dealers, routers = [], []
    for port in ports:
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        if curve:
            dealer.curve_secretkey, dealer.curve_publickey, dealer.curve_serverkey = secret, public, public
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealers.append(dealer)
    time.sleep(wait)
    refused = 0
    for port in ports:
        router = context.socket(zmq.ROUTER)
        router.linger = 0
        if curve:
            router.curve_server, router.curve_secretkey, router.curve_publickey = True, secret, public
        try:
            router.bind(f"tcp://127.0.0.1:{port}")
        except zmq.ZMQError:
            refused += 1
            router.close()
            router = None
        routers.append(router)
    for dealer in dealers:
        dealer.send(b"hello")
    time.sleep(2)
    through = sum(1 for router in routers if router is not None and router.poll(0))
    for sock in [*dealers, *(router for router in routers if router is not None)]:
        sock.close()
    context.term()
    return {"through": through, "bind refused": refused, "lost": len(ports) - through - refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--wait", type=float, default=1.5, help="seconds between the connects and the binds")
    parser.add_argument("--curve", action="store_true", help="CurveZMQ on both sides")
    args = parser.parse_args()
    print(f"{args.sockets} sockets, binds {args.wait} s after the connects, curve: {args.curve}")
    print(f"ephemeral range: {ephemeral_range()}")
    for name, ports in (
        ("ephemeral (jupyter_client)", ephemeral_ports(args.sockets)),
        ("below it (the service)", below_ephemeral_ports(args.sockets)),
    ):
        print(f"{name:28} {run(ports, args.wait, args.curve)}")


if __name__ == "__main__":
    main()
