# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen_disk keeps libxl's domain configuration file in step, under libxl's locks: run for real
(AnsibleModule in-process) against the real xenstored, real files, and real flock contention
from other processes that take libxl's lock files as libxl does (open O_CREAT, flock, then
unlink and close)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    value,
    xen_disk_info_run,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.qemu import device_model
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher

pytestmark = pytest.mark.xenstored

# A lock holder in its own process, driven line by line: lock / unlink / close.
HOLDER = r"""
import fcntl, os, sys
fd = None
for line in sys.stdin:
    cmd, _, path = line.strip().partition(" ")
    if cmd == "lock":
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
    elif cmd == "unlink":
        os.unlink(path)
    elif cmd == "close":
        os.close(fd)
    print("ok", flush=True)
"""


class Holder:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def do(self, cmd, path=""):
        self.proc.stdin.write("%s %s\n" % (cmd, path))
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def release(self, path):
        """libxl__unlock_file: unlink, then close."""
        self.do("unlink", path)
        self.do("close")

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest7", 7, "hvm")
    xenstored.add_guest("bare6", 6, "pv", libxl_config=False)
    for name in ("a.img", "b.img", "d.iso", "e.iso"):
        with open(tmp_path / name, "wb") as handle:
            handle.truncate(1 << 20)
    xenstored.images = tmp_path
    with backend_sim.running(xenstored.socket, "connect"):
        yield xenstored


def img(host, name):
    return str(host.images / name)


@pytest.fixture
def qemu7(host, tmp_path):
    """Guest 7's device model (launcher: dm-version qemu_xen): a real QEMU with libxl's options
    for cdrom hdc holding d.iso, so media changes speak QMP as libxl's cd-insert does."""
    if not device_model.available():
        pytest.skip("qemu-system-x86_64 is not installed")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    qemu = device_model.DeviceModel(7, run_dir, cdroms=[(5632, img(host, "d.iso"))]).start()
    try:
        yield qemu
    finally:
        qemu.stop()


def medium_files(qemu):
    """The files QEMU's cdrom hdc reads: its own file, or the files of the fd sets it uses."""
    medium = qemu.medium(5632)
    if medium is None:
        return []
    if not medium[0].startswith("/dev/fdset/"):
        return [medium[0]]
    return [target for _opaque, target in qemu.fdset_files()[int(medium[0].rsplit("/", 1)[1])]]


def config_path(host, domid):
    return os.path.join(host.libxl_dir, "userdata-d.%d.%s.libxl-json" % (domid, uuid(host, domid)))


def lock_path(host, domid, userid):
    return os.path.join(host.libxl_dir, "userdata-l.%d.%s.%s" % (domid, uuid(host, domid), userid))


def uuid(host, domid):
    return launcher.read_guests(host.rundir)[domid]["uuid"]


def raw(host, domid):
    with open(config_path(host, domid), "rb") as handle:
        return handle.read()


def in_thread(fn):
    out = {}

    def body():
        out["result"] = fn()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def opened_by_me(path):
    """Whether this process has `path` open (the module, in a thread, waiting for its lock)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd) == path:
                return True
        except OSError:
            pass
    return False


def wait_until(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# -- what is written ------------------------------------------------------------------------------
def test_attach_stores_the_entry_then_a_noop_only_reads(host):
    before = raw(host, 5)
    spec = "format=raw,vdev=xvdb,access=rw,target=%s" % img(host, "a.img")
    first = xen_disk_run(host, domain="guest5", disks=[spec])
    assert first["changed"] is True and not first["warnings"], first
    assert first["disks"][0]["libxl_config"] == "written"
    data = raw(host, 5)
    doc = _libxl_json.parse_config(data)
    # the file libxl's block-attach of the same specification leaves (test__libxl_json has the
    # byte-exact reference): the creation-time document, plus the entry at its IDL position
    assert doc["disks"] == [{"pdev_path": img(host, "a.img"), "vdev": "xvdb", "format": "raw", "readwrite": 1}]
    assert list(doc) == ["c_info", "b_info", "disks", "on_reboot", "on_soft_reset"]
    assert data == _libxl_json.render_config(doc) and data.endswith(b"}\n\0")
    assert {k: v for k, v in doc.items() if k != "disks"} == _libxl_json.parse_config(before)
    assert os.stat(config_path(host, 5)).st_mode & 0o777 == 0o600
    # libxl's locks are released (unlinked) and no temporary file is left
    assert sorted(n for n in os.listdir(host.libxl_dir) if ".5." in n) == [os.path.basename(config_path(host, 5))]
    inode = os.stat(config_path(host, 5)).st_ino
    again = xen_disk_run(host, domain="guest5", disks=[spec])
    assert again["changed"] is False and again["disks"][0]["libxl_config"] == "recorded"
    assert os.stat(config_path(host, 5)).st_ino == inode and raw(host, 5) == data  # read, never written


def test_check_mode_and_diff_show_the_entry_and_write_nothing(host):
    before = raw(host, 5)
    result = xen_disk_run(host, check=True, diff=True, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
    assert result["disks"][0]["libxl_config"] == "written"
    config_diff = result["diff"][2]
    assert config_diff["before"] == "[\n\n]\n"
    assert '"pdev_path": "%s"' % img(host, "a.img") in config_diff["after"]
    assert raw(host, 5) == before


def test_detach_leaves_the_entry_as_libxl_does(host):
    spec = "%s,,xvdb" % img(host, "a.img")
    xen_disk_run(host, domain="guest5", disks=[spec, "%s,,xvdc" % img(host, "b.img")])
    data = raw(host, 5)
    assert [d["vdev"] for d in _libxl_json.parse_config(data)["disks"]] == ["xvdb", "xvdc"]
    absent = xen_disk_run(host, domain="guest5", state="absent", disks=["xvdc"])
    assert absent["changed"] is True and absent["disks"][0]["action"] == "detach"
    assert value(host, "/libxl/5/device/vbd/51744") is None
    assert raw(host, 5) == data  # libxl 4.17's detach neither reads nor writes the file
    exclusive = xen_disk_run(host, domain="guest5", exclusive=True, disks=[])
    assert [d["action"] for d in exclusive["disks"]] == ["detach"]
    assert raw(host, 5) == data
    info = xen_disk_info_run(host, domain="guest5")["guests"][0]
    assert [e["vdev"] for e in info["libxl_only"]] == ["xvdb", "xvdc"]


def test_recreate_replaces_the_entry_in_place(host):
    xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img"), "%s,,xvdc" % img(host, "b.img")])
    result = xen_disk_run(host, domain="guest5", recreate=True,
                          disks=["%s,,xvdb,ro" % img(host, "a.img"), "%s,,xvdc" % img(host, "b.img")])
    assert [(d["action"], d["libxl_config"]) for d in result["disks"]] == [("recreate", "written"),
                                                                           ("unchanged", "recorded")]
    assert _libxl_json.parse_config(raw(host, 5))["disks"] == [
        {"pdev_path": img(host, "a.img"), "vdev": "xvdb", "format": "raw"},
        {"pdev_path": img(host, "b.img"), "vdev": "xvdc", "format": "raw", "readwrite": 1}]


def test_media_change_as_cd_insert_and_cd_eject(host, qemu7):
    run_dir = qemu7.run_dir
    xen_disk_run(host, domain="guest7", disks=["vdev=hdc,devtype=cdrom,target=%s" % img(host, "d.iso")])
    inserted = xen_disk_run(host, domain="guest7", disks=["vdev=hdc,devtype=cdrom,target=%s" % img(host, "e.iso")],
                            libxl_run_dir=run_dir)
    assert [(d["action"], d["libxl_config"]) for d in inserted["disks"]] == [("media_change", "written")]
    assert _libxl_json.parse_config(raw(host, 7))["disks"] == [
        {"pdev_path": img(host, "e.iso"), "vdev": "hdc", "format": "raw", "removable": 1, "is_cdrom": 1}]
    assert medium_files(qemu7) == [img(host, "e.iso")]
    ejected = xen_disk_run(host, domain="guest7", disks=["vdev=hdc,devtype=cdrom"], libxl_run_dir=run_dir)
    assert [d["action"] for d in ejected["disks"]] == ["media_change"]
    assert medium_files(qemu7) == []
    # what `xl cd-eject` stores (libxl_cdrom_insert with an empty target)
    assert _libxl_json.parse_config(raw(host, 7))["disks"] == [
        {"pdev_path": "", "vdev": "hdc", "format": "empty", "removable": 1, "is_cdrom": 1}]
    assert sorted(n for n in os.listdir(host.libxl_dir) if ".7." in n) == [os.path.basename(config_path(host, 7))]


def test_an_attached_disk_without_entry_gets_one(host):
    spec = "%s,,xvdb" % img(host, "a.img")
    xen_disk_run(host, domain="guest5", disks=[spec])
    launcher.write_domain_config(host.rundir, 5, launcher.guest_domain_config("guest5", "pv", uuid(host, 5)))
    info = xen_disk_info_run(host, domain="guest5")["guests"][0]
    assert [(d["vdev"], d["survives_xl_reboot"], d["libxl_config"]) for d in info["disks"]] == [("xvdb", False, None)]
    assert any("xl drops it" in w for w in info["disks"][0]["warnings"])
    check = xen_disk_run(host, check=True, domain="guest5", disks=[spec])
    assert check["changed"] is True
    assert [(d["action"], d["libxl_config"]) for d in check["disks"]] == [("unchanged", "written")]
    assert "disks" not in host.domain_config(5)
    fixed = xen_disk_run(host, domain="guest5", disks=[spec])
    assert fixed["changed"] is True
    assert [d["vdev"] for d in host.domain_config(5)["disks"]] == ["xvdb"]
    assert xen_disk_run(host, domain="guest5", disks=[spec])["changed"] is False
    info = xen_disk_info_run(host, domain="guest5")["guests"][0]
    assert [(d["vdev"], d["survives_xl_reboot"]) for d in info["disks"]] == [("xvdb", True)]
    assert info["disks"][0]["libxl_config"] == {"pdev_path": img(host, "a.img"), "vdev": "xvdb", "format": "raw",
                                                "readwrite": 1}
    assert info["libxl_only"] == [] and info["libxl_config_path"] == config_path(host, 5)


def test_a_guest_without_the_file_gets_xenstore_and_a_warning(host):
    result = xen_disk_run(host, domain="bare6", disks=["%s,,xvdb" % img(host, "a.img")])
    assert result["changed"] is True and result["disks"][0]["libxl_config"] == "no_file"
    assert value(host, "/libxl/6/device/vbd/51728/params") == img(host, "a.img")
    assert any("libxl's domain configuration" in w and "does not exist" in w for w in result["warnings"]), result
    assert not [n for n in os.listdir(host.libxl_dir) if ".6." in n]  # nothing invented
    info = xen_disk_info_run(host, domain="bare6")["guests"][0]
    # no file: nothing libxl could drop on an xl reboot, and no drift to report forever
    assert info["libxl_config_path"] is None and info["disks"][0]["survives_xl_reboot"] is None
    assert any("does not exist" in w for w in info["warnings"])


def test_an_unreadable_file_stops_before_any_write(host):
    with open(config_path(host, 5), "wb") as handle:
        handle.write(b"{ not json\0")
    result = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
    assert result.get("failed") and "libxl's domain configuration" in result["msg"], result
    assert value(host, "/libxl/5/device/vbd") is None


# -- the locks ---------------------------------------------------------------------------------------
def test_attach_waits_for_the_userdata_lock(host):
    lock = lock_path(host, 5, "domain-userdata-lock")
    holder = Holder()
    try:
        holder.do("lock", lock)
        before = raw(host, 5)
        thread, out = in_thread(lambda: xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")]))
        wait_until(lambda: opened_by_me(lock), "the module never opened the lock file")
        time.sleep(0.5)
        # libxl takes the lock before it reads the file and keeps it over the xenstore commit
        assert thread.is_alive()
        assert value(host, "/libxl/5/device/vbd/51728") is None and raw(host, 5) == before
        holder.release(lock)
        thread.join(60)
        assert not out["result"].get("failed"), out["result"]
        assert value(host, "/libxl/5/device/vbd/51728/params") == img(host, "a.img")
        assert [d["vdev"] for d in host.domain_config(5)["disks"]] == ["xvdb"]
        assert not os.path.exists(lock)  # unlinked by its last holder
    finally:
        holder.stop()


def test_a_lock_file_unlinked_meanwhile_is_taken_again(host):
    # libxl__lock_file's fstat/stat check: H1 holds the lock; the module opens the same file and
    # waits; H1 releases as libxl does (unlink, then close) while H2 has already created and locked
    # a new file at the path. The module's flock on the old file succeeds, but it must see that
    # the path names another file, and wait for H2.
    lock = lock_path(host, 5, "domain-userdata-lock")
    first, second = Holder(), Holder()
    try:
        first.do("lock", lock)
        thread, out = in_thread(lambda: xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")]))
        wait_until(lambda: opened_by_me(lock), "the module never opened the lock file")
        first.do("unlink", lock)
        second.do("lock", lock)
        first.do("close")
        time.sleep(0.5)
        assert thread.is_alive(), out
        assert value(host, "/libxl/5/device/vbd/51728") is None
        second.release(lock)
        thread.join(60)
        assert not out["result"].get("failed"), out["result"]
        assert [d["vdev"] for d in host.domain_config(5)["disks"]] == ["xvdb"]
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("lock_name", ["libxl-device-changes-lock", "qmp-socket-lock"])
def test_media_change_waits_for_the_device_lock(host, qemu7, lock_name):
    """libxl_cdrom_insert: the device lock over the whole change, the QMP lock from the QMP
    connection on: nothing reaches QEMU or xenstore while another holder has either."""
    xen_disk_run(host, domain="guest7", disks=["vdev=hdc,devtype=cdrom,target=%s" % img(host, "d.iso")])
    lock = lock_path(host, 7, lock_name)
    holder = Holder()
    try:
        holder.do("lock", lock)
        thread, out = in_thread(lambda: xen_disk_run(
            host, domain="guest7", disks=["vdev=hdc,devtype=cdrom,target=%s" % img(host, "e.iso")],
            libxl_run_dir=qemu7.run_dir))
        wait_until(lambda: opened_by_me(lock), "the module never opened the lock")
        time.sleep(0.5)
        assert thread.is_alive()
        assert value(host, "/libxl/7/device/vbd/5632/params") == "aio:" + img(host, "d.iso")
        assert medium_files(qemu7) == [img(host, "d.iso")]
        holder.release(lock)
        thread.join(60)
        assert not out["result"].get("failed"), out["result"]
        assert value(host, "/libxl/7/device/vbd/5632/params") == "aio:" + img(host, "e.iso")
        assert medium_files(qemu7) == [img(host, "e.iso")]
        assert host.domain_config(7)["disks"][0]["pdev_path"] == img(host, "e.iso")
    finally:
        holder.stop()


def test_detach_takes_no_lock(host):
    xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
    locks = [lock_path(host, 5, "domain-userdata-lock"), lock_path(host, 5, "libxl-device-changes-lock")]
    holders = [Holder(), Holder()]
    try:
        for holder, lock in zip(holders, locks):
            holder.do("lock", lock)
        result = xen_disk_run(host, domain="guest5", state="absent", disks=["xvdb"])
        assert result["changed"] is True and not result.get("failed"), result
        assert value(host, "/libxl/5/device/vbd/51728") is None
        for holder, lock in zip(holders, locks):
            holder.release(lock)
    finally:
        for holder in holders:
            holder.stop()
