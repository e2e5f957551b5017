"""Ports of local TCP kernels (kernels/ports.py): below the machine's ephemeral range,
where no connection's source port (the service's own retries included) can be one."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from kernels_service.kernels.errors import ConfigError, KernelsError
from kernels_service.kernels.ports import PortPicker, can_bind, default_port_range, ephemeral_range, parse_port_range
from kernels_service.testing.channels import ChannelsClient
from kernels_service.testing.service import running_service
from tests.support.attacks import MY_ADDRESSES, run_in_kernel
from tests.support.paths import ROOT


def test_the_default_range_is_the_band_below_the_ephemeral_one():
    assert default_port_range((32768, 60999)) == (20768, 32767)
    assert default_port_range((10000, 65535)) == (1024, 9999)
    assert default_port_range((1100, 65535)) is None  # no room below: jupyter_client picks


def test_the_ephemeral_range_is_read_from_the_machine(tmp_path):
    path = tmp_path / "range"
    path.write_text("40000\t50000\n")
    assert ephemeral_range(str(path)) == (40000, 50000)
    path.write_text("garbage")
    assert ephemeral_range(str(path)) == (32768, 60999)
    assert ephemeral_range(str(tmp_path / "missing")) == (32768, 60999)


@pytest.mark.parametrize("text", ["", "20000", "a-b", "30000-20000", "80-1000", "20000-70000", "1-2-3"])
def test_a_bad_port_range_is_refused_with_its_reason(text):
    with pytest.raises(ConfigError, match="--kernel-port-range"):
        parse_port_range(text)


def test_the_picker_hands_out_free_distinct_ports_and_none_twice_while_held():
    now = [0.0]
    taken = {20001}
    picker = PortPicker((20000, 20009), hold=60, clock=lambda: now[0], bindable=lambda ip, port: port not in taken)
    first = picker.pick("127.0.0.1", 5)
    assert len(set(first)) == 5 and all(20000 <= port <= 20009 for port in first) and 20001 not in first
    second = picker.pick("127.0.0.1", 4)
    assert not set(first) & set(second)
    with pytest.raises(KernelsError, match="no free port"):
        picker.pick("127.0.0.1", 1)  # 9 free ports, all held
    now[0] = 61
    assert len(picker.pick("127.0.0.1", 5)) == 5  # held no longer


def test_a_port_something_listens_on_is_not_bindable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not can_bind("127.0.0.1", listener.getsockname()[1])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert can_bind("127.0.0.1", free)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--kernel-transport=tcp",), default_port_range(ephemeral_range())),
        (("--kernel-transport=auto", "--kernel-port-range=23000-23999"), (23000, 23999)),
    ],
)
def test_a_local_tcp_kernel_listens_within_the_range_and_a_restart_keeps_it_there(options, expected):
    with running_service("--initial-kernels=1", "--pool-size=0", *options) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        before = run_in_kernel(client, MY_ADDRESSES)
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        after = run_in_kernel(client, MY_ADDRESSES)
        client.close()
    low, high = expected
    assert before["transport"] == "tcp" and all(low <= port <= high for port in before["ports"] + after["ports"])


def test_a_bad_port_range_stops_the_start_with_its_reason():
    command = [sys.executable, str(ROOT / "kernels.py"), "--port=0", "--kernel-port-range=30000-20000"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Cannot start: --kernel-port-range '30000-20000'" in output, output
    assert "Traceback" not in output
