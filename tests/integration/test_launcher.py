# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real-xenstored launcher: CLI and module API, simulated guests, no daemon left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.xen.disks.tests.xenstored import launcher

pytestmark = pytest.mark.xenstored
CLI = [sys.executable, launcher.__file__]


def run_cli(*args, check=True):
    result = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError("launcher %s failed (%d): %s" % (args, result.returncode, result.stderr))
    return result


def xenstored_pids(under):
    """Pids of the xenstored processes whose run directory is below `under` (other tests of
    the machine may run daemons of their own meanwhile); zombies excluded."""
    marker = ("XENSTORED_RUNDIR=%s" % os.path.abspath(str(under))).encode()
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.path.basename(os.readlink("/proc/%s/exe" % entry)) != "xenstored":
                    continue
                with open("/proc/%s/environ" % entry, "rb") as f:
                    if any(v.startswith(marker) for v in f.read().split(b"\0")):
                        pids.add(int(entry))
            except OSError:
                pass
    return pids


def test_cli_start_status_stop(tmp_path):
    rundir = str(tmp_path / "host")
    try:
        started = run_cli("start", "--rundir", rundir)
        assert started.stdout == rundir + "/socket\n"
        pid = int(open(rundir + "/pid").read())
        assert xenstored_pids(tmp_path) == {pid}
        status = run_cli("status", "--rundir", rundir)
        assert status.stdout == "running pid %d socket %s/socket\n" % (pid, rundir)
        # A real answer, from the xenstore tools of the distribution.
        env = dict(os.environ, XENSTORED_PATH=rundir + "/socket")
        read = subprocess.run(["xenstore-read", "/local/domain/0/name"], env=env,
                              capture_output=True, text=True, check=True)
        assert read.stdout == "Domain-0\n"
        again = run_cli("start", "--rundir", rundir, check=False)
        assert again.returncode == 1
        assert again.stderr == "launcher: xenstored already running for %s (pid %d)\n" % (rundir, pid)
    finally:
        run_cli("stop", "--rundir", rundir)
    assert xenstored_pids(tmp_path) == set()
    assert not os.path.exists(rundir + "/socket") and not os.path.exists(rundir + "/pid")
    stopped = run_cli("status", "--rundir", rundir, check=False)
    assert (stopped.returncode, stopped.stdout) == (3, "stopped\n")


def test_cli_many_daemons_one_per_host(tmp_path):
    base = str(tmp_path / "fleet")
    try:
        out = run_cli("start-many", "--base", base, "--count", "5").stdout.splitlines()
        assert out == ["host-%03d %s/host-%03d/socket" % (i, base, i) for i in range(1, 6)]
        assert len(xenstored_pids(tmp_path)) == 5
        # Each daemon is its own store: a write to one is not seen by another.
        env1 = dict(os.environ, XENSTORED_PATH=base + "/host-001/socket")
        env2 = dict(os.environ, XENSTORED_PATH=base + "/host-002/socket")
        subprocess.run(["xenstore-write", "/mark", "one"], env=env1, check=True)
        missing = subprocess.run(["xenstore-read", "/mark"], env=env2, capture_output=True, check=False)
        assert missing.returncode != 0
    finally:
        stopped = run_cli("stop-many", "--base", base)
    assert stopped.stdout == "stopped 5\n"
    assert xenstored_pids(tmp_path) == set()


def test_stop_kills_by_pid_even_without_the_socket(tmp_path):
    daemon = launcher.start(str(tmp_path / "h"))
    os.unlink(daemon.socket)
    assert launcher.stop(daemon.rundir) is True
    assert daemon.pid not in xenstored_pids(tmp_path)
    assert launcher.stop(daemon.rundir) is False


def test_stop_ignores_a_recycled_pid(tmp_path):
    rundir = tmp_path / "h"
    rundir.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (rundir / "pid").write_text("%d\n" % sleeper.pid)
        assert launcher.status(str(rundir)) is None
        assert launcher.stop(str(rundir)) is False
        assert sleeper.poll() is None  # not ours: never killed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_daemon_dies_with_the_test_process(tmp_path):
    # A child python starts a daemon tied to it, then is SIGKILLed: the daemon must follow.
    code = ("import sys; sys.path.insert(0, %r); import launcher; "
            "d = launcher.start(%r, die_with_parent=True); print(d.pid, flush=True); "
            "import time; time.sleep(60)" % (os.path.dirname(launcher.__file__), str(tmp_path / "h")))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(child.stdout.readline())
    assert pid in xenstored_pids(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while pid in xenstored_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pid not in xenstored_pids(tmp_path)
    launcher.stop(str(tmp_path / "h"))


def test_fixture_daemon_answers_and_dom0_is_set_up(xenstored, xs_client, tmp_path):
    assert xs_client.read(b"/local/domain/0/name") == b"Domain-0"
    assert xs_client.read(b"/local/domain/0/domid") == b"0"
    assert xenstored_pids(tmp_path) == {xenstored.pid}


def test_factory_starts_a_fleet(xenstored_factory, tmp_path):
    hosts = xenstored_factory(3)
    assert [os.path.basename(h.rundir) for h in hosts] == ["host-001", "host-002", "host-003"]
    assert {h.pid for h in hosts} == xenstored_pids(tmp_path)


def test_add_guest_writes_what_libxl_writes(xenstored):
    xenstored.add_guest("web1", 5, "pv")
    tree = xenstored.dump("/local/domain/5")
    assert tree["/local/domain/5"] == ("", ("n0", "r5"))
    assert tree["/local/domain/5/name"] == ("web1", ("n0", "r5"))
    assert tree["/local/domain/5/domid"] == ("5", ("n0", "r5"))
    assert tree["/local/domain/5/device"] == ("", ("n0", "r5"))
    assert tree["/local/domain/5/control/shutdown"] == ("", ("n5",))
    assert tree["/local/domain/5/data"] == ("", ("n5",))
    assert "/local/domain/5/hvmloader" not in tree
    vm = tree["/local/domain/5/vm"][0]
    assert xenstored.dump(vm)[vm + "/name"] == ("web1", ("n0", "r5"))
    assert xenstored.dump("/libxl/5") == {
        "/libxl/5": ("", ("n0",)),
        "/libxl/5/device": ("", ("n0",)),
        "/libxl/5/type": ("pv", ("n0",)),
        "/libxl/5/dm-version": ("qemu_xen", ("n0",)),
    }
    assert "/local/domain/5/image" not in tree  # no device model for a PV guest
    assert tree["/local/domain/5/memory/static-max"] == tree["/local/domain/5/memory/target"] == ("131072", ("n0", "r5"))
    uuid = vm[len("/vm/"):]
    path = os.path.join(xenstored.libxl_dir, "userdata-d.5.%s.libxl-json" % uuid)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path, "rb") as f:
        data = f.read()
    # what `xl -N create` prints for guest_xl_cfg() (checked against Debian's xl 4.17), then libxl's NUL
    assert launcher.guest_xl_cfg("web1", "pv") == 'name = "web1"\ntype = "pv"\nmemory = 128\nkernel = "/boot/vmlinuz"\n'
    assert data == ("{\n"
                    '    "c_info": {\n        "type": "pv",\n        "name": "web1",\n'
                    '        "uuid": "%s",\n        "run_hotplug_scripts": "True"\n    },\n'
                    '    "b_info": {\n        "max_memkb": 131072,\n        "target_memkb": 131072,\n'
                    '        "sched_params": {\n\n        },\n        "claim_mode": "True",\n'
                    '        "kernel": "/boot/vmlinuz",\n        "type.pv": {\n\n        },\n'
                    '        "arch_arm": {\n\n        },\n        "arch_x86": {\n\n        }\n    },\n'
                    '    "on_reboot": "restart",\n    "on_soft_reset": "soft_reset"\n}\n\0' % uuid).encode()
    assert xenstored.domain_config(5)["c_info"]["uuid"] == uuid


def test_guest_without_libxl_config(xenstored):
    xenstored.add_guest("bare", 6, "pv", libxl_config=False)
    assert xenstored.domain_config(6) is None
    names = os.listdir(xenstored.libxl_dir) if os.path.isdir(xenstored.libxl_dir) else []
    assert not [n for n in names if ".6." in n]


def test_hvm_and_driver_domain_guests(xenstored):
    xenstored.add_guest("win", 7, "hvm")
    xenstored.add_guest("stor2", 2, "pvh", driver_domain=True)
    hvm = xenstored.dump("/local/domain/7")
    assert hvm["/local/domain/7/hvmloader"] == ("", ("n0", "r7"))
    # libxl_dm.c: the device model's pid, under the guest's dom0-owned directory
    assert hvm["/local/domain/7/image/device-model-pid"] == (str(xenstored.pid), ("n0", "r7"))
    config = xenstored.domain_config(7)
    assert config["c_info"]["type"] == "hvm" and "kernel" not in config["b_info"]
    assert list(config["b_info"]["type.hvm"]) == ["vga", "vnc", "sdl", "spice", "rdm"]
    assert hvm["/local/domain/7/control/feature-s3"] == ("", ("n7",))
    driver = xenstored.dump("/local/domain/2")
    assert driver["/local/domain/2/libxl"] == ("", ("n2",))
    assert driver["/local/domain/2/device-model"] == ("", ("n2",))
    assert xenstored.dump("/libxl/2/type")["/libxl/2/type"] == ("pvh", ("n0",))


def test_domids_file_decides_which_domains_exist(xenstored, xs_client):
    import pyxs

    xs_client.mkdir(b"/t")
    # Domain 9 does not exist: xenstored refuses it as an owner, as on a real host.
    with pytest.raises(pyxs.PyXSError) as refused:
        xs_client.set_perms(b"/t", [b"n9"])
    assert refused.value.args[0] == 2  # ENOENT
    xenstored.set_domids("0,9")  # re-read by the running daemon
    xs_client.set_perms(b"/t", [b"n9", b"r0"])
    assert xs_client.get_perms(b"/t") == [b"n9", b"r0"]


def test_remove_guest(xenstored):
    xenstored.add_guest("tmp", 6, "pv")
    xenstored.add_guest("other", 8, "pv")
    with launcher.WireClient(xenstored.socket) as client:
        # a disk of each guest, as libxl records them
        for domid in (6, 8):
            backend = "/local/domain/0/backend/vbd/%d/51712" % domid
            client.write(backend + "/state", "4")
            client.write("/libxl/%d/device/vbd/51712/backend" % domid, backend)
    lock = os.path.join(xenstored.libxl_dir, "userdata-l.6.%s.domain-userdata-lock"
                        % launcher.read_guests(xenstored.rundir)[6]["uuid"])
    open(lock, "w").close()
    xenstored.remove_guest(6)
    # libxl__userdata_destroyall: every file of the domain but the userdata lock
    assert [n for n in os.listdir(xenstored.libxl_dir) if ".6." in n] == [os.path.basename(lock)]
    assert xenstored.domain_config(8) is not None
    tree = xenstored.dump("/")
    assert not [p for p in tree if p.startswith(("/local/domain/6", "/libxl/6", "/local/domain/0/backend/vbd/6"))]
    assert not [p for p, (v, _perms) in tree.items() if p.startswith("/vm/") and v == "tmp"]
    assert "/local/domain/0/backend/vbd/8/51712/state" in tree  # the other guest's disk stays
    assert "/local/domain/8/name" in tree
    assert launcher.read_domids(xenstored.rundir) == {0, 8}
    xenstored.remove_guest(8)
    assert not [p for p in xenstored.dump("/") if p.startswith("/local/domain/0/backend")]  # empty parents too


@pytest.mark.parametrize(("args", "message"), [
    (("x", 0, "pv", 64), "bad domid 0: guests are 1-32751"),
    (("x", 5, "arm", 64), "bad guest type 'arm': one of pv, hvm, pvh"),
    (("x", 5, "pv", 16), "bad guest width 16: 32 or 64"),
    (("a/b", 5, "pv", 64), "bad guest name 'a/b'"),
])
def test_add_guest_refuses_bad_arguments(xenstored, args, message):
    with pytest.raises(launcher.LauncherError, match=r"^%s$" % message.replace("(", r"\(").replace(")", r"\)")):
        xenstored.add_guest(*args)


@pytest.mark.parametrize(("text", "domids"), [
    ("0", {0}), ("0-3,7", {0, 1, 2, 3, 7}), ("5 6\n9", {5, 6, 9}), ("", set()),
])
def test_parse_and_format_domids(text, domids):
    assert launcher.parse_domids(text) == domids
    assert launcher.parse_domids(launcher.format_domids(domids)) == domids


@pytest.mark.parametrize(("text", "message"), [
    ("a", "bad domid list 'a': use numbers and ranges like 0-40,55"),
    ("3-1", "bad domid range '3-1': domids are 0-32751"),
    ("0-40000", "bad domid range '0-40000': domids are 0-32751"),
])
def test_parse_domids_refuses(text, message):
    with pytest.raises(launcher.LauncherError, match=r"^%s$" % message):
        launcher.parse_domids(text)


def test_missing_xenstored_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("XEN_DISKS_XENSTORED", str(tmp_path / "nope"))
    monkeypatch.setenv("XEN_DISKS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(launcher.LauncherError, match=r"^xenstored not found .*: run tests/setup.sh$"):
        launcher.start(str(tmp_path / "h"))


def test_socket_path_too_long_for_a_unix_socket(tmp_path):
    rundir = str(tmp_path / ("d" * 120))
    with pytest.raises(launcher.LauncherError, match=r"^run directory %s is too deep: its socket path would be \d+ bytes, "
                       r"a unix socket allows 107; use a shorter --rundir$" % rundir):
        launcher.start(rundir)
    assert not os.path.exists(rundir)
