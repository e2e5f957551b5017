"""The parts of kernel isolation that need no kernel: which uids are free, what a machine
without the capabilities or without the uids mapped is told, the plan of each kernelspec,
and the start refusing bad values (`kernels/kernel_uids.py`, `kernels/isolation.py`).
Machines this one is not (an unprivileged service, a user namespace that maps 65536
uids) are given to the functions as what they would read there."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels_service.kernels.errors import ConfigError, KernelNotStarted
from kernels_service.kernels.isolation import SHARED_UID_CAN, check_required, exposure, plan_isolation
from kernels_service.kernels.kernel_uids import (
    CAP_SETGID,
    CAP_SETUID,
    KernelAccount,
    KernelUids,
    mapped_uids,
    parse_uid_range,
    why_no_uids,
)
from tests.support.paths import ROOT

ALL_CAPS = (1 << 41) - 1
HOST_MAP = "         0          0 4294967295\n"
ROOTLESS_MAP = "         0       1000          1\n         1     100000      65536\n"


@pytest.mark.parametrize("text", ["", "60000", "1-", "-5", "a-b", "5-4", "0-10", "1-4294967295", "1--2", " - "])
def test_a_bad_uid_range_is_a_config_error(text):
    with pytest.raises(ConfigError, match="--kernel-uids must be LOW-HIGH"):
        parse_uid_range(text)


def test_a_uid_range_is_two_uids():
    assert parse_uid_range("60000-61183") == (60000, 61183)
    assert parse_uid_range(" 7-7 ") == (7, 7)


@given(st.text(max_size=40))
def test_any_text_is_a_range_or_the_range_error(text):
    try:
        first, last = parse_uid_range(text)
    except ConfigError:
        return
    assert 1 <= first <= last


@pytest.mark.parametrize(
    ("capabilities", "missing"),
    [
        (0, "CAP_SETUID and CAP_SETGID"),  # a non-root user, or root with its capabilities dropped
        (1 << CAP_SETUID, "CAP_SETGID"),
        (1 << CAP_SETGID, "CAP_SETUID"),
    ],
)
def test_a_service_without_the_capabilities_is_told_which_it_lacks(capabilities, missing):
    why = why_no_uids(capabilities, HOST_MAP, (60000, 61183))
    assert why is not None and f"lacks {missing}" in why


def test_uids_outside_the_user_namespace_are_refused_and_inside_accepted():
    assert mapped_uids(ROOTLESS_MAP) == [(0, 0), (1, 65536)]
    assert why_no_uids(ALL_CAPS, ROOTLESS_MAP, (60000, 61183)) is None
    why = why_no_uids(ALL_CAPS, ROOTLESS_MAP, (100000, 100010))
    assert why is not None and "not mapped in this user namespace" in why
    assert why_no_uids(ALL_CAPS, HOST_MAP, (100000, 100010)) is None


def uids(tmp_path, first=60100, last=60102, running=()) -> KernelUids:
    return KernelUids((first, last), str(tmp_path / "kernels"), in_use=lambda: set(running))


def test_each_kernel_takes_a_free_uid_with_private_directories(tmp_path):
    pool = uids(tmp_path, running={60101})
    pool.prepare()
    assert os.stat(pool.root).st_mode & 0o777 == 0o711
    taken = [pool.take(), pool.take()]
    assert sorted(account.uid for account in taken) == [60100, 60102], "a uid a process runs as is not given"
    for account in taken:
        for path in (account.directory, account.home, account.tmp):
            info = os.stat(path)
            assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (account.uid, account.uid, 0o700)
    with pytest.raises(KernelNotStarted, match="every kernel uid .60100-60102. is taken"):
        pool.take()
    KernelUids.give_back(taken[0])
    assert not os.path.exists(taken[0].directory)
    assert pool.take().uid == taken[0].uid


def test_a_uid_with_an_account_is_never_given(tmp_path):
    nobody = 65534  # an account on every Debian machine
    pool = uids(tmp_path, first=nobody, last=nobody)
    pool.prepare()
    with pytest.raises(KernelNotStarted):
        pool.take()


def test_two_services_on_one_root_never_give_one_uid_twice(tmp_path):
    first, second = uids(tmp_path, 60100, 60103), uids(tmp_path, 60100, 60103)
    first.prepare()
    taken = [service.take().uid for service in (first, second, first, second)]
    assert sorted(taken) == [60100, 60101, 60102, 60103]


def test_the_directories_of_kernels_gone_are_removed_at_start_and_others_kept(tmp_path):
    pool = uids(tmp_path, 60100, 60102, running={60101})
    pool.prepare()
    gone, running, young = (os.path.join(pool.root, str(uid)) for uid in (60100, 60101, 60102))
    for path in (gone, running, young):
        os.mkdir(path)
    old = time.time() - 3600
    os.utime(gone, (old, old))
    os.utime(running, (old, old))
    pool.prepare()
    assert not os.path.exists(gone), "a crashed service's kernel left its uid taken"
    assert os.path.exists(running), "a kept kernel's directory was removed"
    assert os.path.exists(young), "another service's kernel being launched lost its directory"


def test_a_link_in_a_kernels_directory_is_never_handed_over(tmp_path):
    pool = uids(tmp_path)
    pool.prepare()
    account = pool.take()
    target = tmp_path / "the services own file"
    target.write_text("")
    link = os.path.join(account.directory, "kernel-1.json")
    os.symlink(target, link)
    KernelUids.hand_over(link, account)
    assert os.stat(target).st_uid == os.getuid(), "the kernel's link made the service give away its file"
    real = os.path.join(account.directory, "kernel-2.json")
    open(real, "w").close()
    KernelUids.hand_over(real, account)
    assert os.stat(real).st_uid == account.uid


def spec(argv=("python",), provisioner=""):
    metadata = {"kernel_provisioner": {"provisioner_name": provisioner}} if provisioner else {}
    return {"spec": {"argv": list(argv), "metadata": metadata}}


class Runnable(KernelUids):
    """Kernel uids whose programs are judged without running anything."""

    def __init__(self, unrunnable: dict[str, str]):
        super().__init__((60000, 60009), "/nonexistent", in_use=set)
        self._unrunnable = dict(unrunnable)


def test_the_plan_names_each_kernelspecs_isolation():
    specs = {
        "python3": spec(["/usr/bin/python3"]),
        "closed": spec(["/root/venv/bin/python"]),
        "container": spec(provisioner="docker-provisioner"),
        "plain": spec(provisioner="local-provisioner"),
        "boxed": spec(provisioner="bubblewrap-provisioner"),
    }
    uids = Runnable({"/usr/bin/python3": None, "/root/venv/bin/python": "its program is closed"})
    plan = {entry.kernelspec: entry for entry in plan_isolation(
        specs, policy="auto", sandbox="", transport="auto", separation=uids, why_not_apart="")}  # fmt: skip
    assert (plan["python3"].mechanism, plan["python3"].apart) == ("own uid", True)
    assert (plan["closed"].mechanism, plan["closed"].apart, plan["closed"].why) == (
        "service's uid", False, "its program is closed")  # fmt: skip
    assert (plan["container"].mechanism, plan["container"].apart) == ("own container", True)
    assert (plan["plain"].apart, plan["plain"].why) == (False, "its kernelspec names local-provisioner")
    assert (plan["boxed"].mechanism, plan["boxed"].apart) == ("sandbox", True)
    said = exposure(list(plan.values()))
    assert said == f"Kernels of closed, plain are not kept apart: code in one can {SHARED_UID_CAN}"
    with pytest.raises(ConfigError, match="required, but kernels are not kept apart: closed: service's uid"):
        check_required(list(plan.values()))


def test_without_uids_or_over_plain_tcp_kernels_are_not_apart():
    specs = {"python3": spec(["/usr/bin/python3"])}
    why = "the service lacks CAP_SETUID"
    (unprivileged,) = plan_isolation(
        specs, policy="auto", sandbox="", transport="auto", separation=None, why_not_apart=why
    )
    assert (unprivileged.apart, unprivileged.why) == (False, "the service lacks CAP_SETUID")
    uids = Runnable({"/usr/bin/python3": None})
    (tcp,) = plan_isolation(specs, policy="auto", sandbox="", transport="tcp", separation=uids, why_not_apart="")
    assert tcp.mechanism == "own uid" and not tcp.apart and "any process of the machine" in tcp.why
    (boxed,) = plan_isolation(
        specs, policy="auto", sandbox="bubblewrap", transport="auto", separation=None, why_not_apart=""
    )
    assert boxed.apart and boxed.mechanism == "sandbox"
    (none,) = plan_isolation(specs, policy="none", sandbox="", transport="auto", separation=uids, why_not_apart="")
    assert not none.apart and none.why == "--kernel-isolation=none"
    check_required([boxed])  # nothing to refuse


def test_a_kept_kernels_account_goes_through_the_store_as_it_came():
    account = KernelAccount(60123, "/run/kernels-service/60123")
    assert KernelAccount.from_info(account.as_info()) == account
    assert account.home == "/run/kernels-service/60123/home" and account.tmp == "/run/kernels-service/60123/tmp"


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("--kernel-uids=61183-60000", "Cannot start: --kernel-uids must be LOW-HIGH"),
        ("--kernel-uids=many", "Cannot start: --kernel-uids must be LOW-HIGH"),
        ("--kernel-isolation=maybe", "The 'kernel_isolation' trait of a KernelsService instance expected any of"),
    ],
)
def test_bad_isolation_options_stop_the_start_with_a_reason(option, said):
    result = subprocess.run([sys.executable, str(ROOT / "kernels.py"), "--port=0", option],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2) and said in output, output
    assert "Traceback" not in output
