# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage behind the disks, for real: xen_disk creates, grows and inspects images with Debian's
qemu-img, a real xenstored and the simulated backend; loop devices are real (`losetup`); every
size, format and backing file is read back with `qemu-img info`, never through the collection."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time

import pytest

from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    xen_disk_info_run,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.xenstored import backend_sim

pytestmark = [pytest.mark.xenstored,
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) is not installed")]

GiB = 1 << 30
MiB = 1 << 20


def qemu_info(path):
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", path], check=True, capture_output=True)
    return json.loads(out.stdout)


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest6", 6, "pv")
    xenstored.images = tmp_path
    return xenstored


@pytest.fixture
def sim(host):
    with backend_sim.running(host.socket, "connect"):
        yield host


def disk(path, vdev="xvdb", fmt="raw", **storage):
    out = {"vdev": vdev, "target": str(path), "format": fmt}
    out.update(storage)
    return out


def test_create_raw_then_idempotent_check_mode_predicts(sim):
    path = sim.images / "a.img"
    args = dict(domain="guest5", disks=[disk(path, size="20M", mode="0640")])
    checked = xen_disk_run(sim, check=True, diff=True, **args)
    assert checked["changed"] is True, checked
    assert not path.exists()
    assert checked["images"][0]["action"] == "create"
    assert "create raw image %s of 20 MiB" % path in checked["diff"][0]["after"]
    applied = xen_disk_run(sim, **args)
    assert applied["changed"] is True, applied
    assert [(i["action"], i["size_after"]) for i in applied["images"]] == \
        [(i["action"], i["size_after"]) for i in checked["images"]]
    info = qemu_info(path)
    assert (info["format"], info["virtual-size"]) == ("raw", 20 * MiB)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert not [n for n in os.listdir(sim.images) if n.endswith(".tmp")]
    again = xen_disk_run(sim, **args)
    assert again["changed"] is False, again
    assert again["images"][0]["action"] == "unchanged"


@pytest.mark.parametrize("preallocation", ["off", "metadata", "falloc", "full"])
def test_create_qcow2_with_preallocation(sim, preallocation):
    path = sim.images / "q.qcow2"
    args = dict(domain="guest5", disks=[disk(path, fmt="qcow2", size="16MiB", preallocation=preallocation)])
    checked = xen_disk_run(sim, check=True, **args)
    applied = xen_disk_run(sim, **args)
    assert applied["changed"] and checked["images"][0]["action"] == applied["images"][0]["action"] == "create"
    info = qemu_info(path)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 16 * MiB)
    # what preallocation does is seen in the space the file takes
    allocated = os.stat(path).st_blocks * 512
    if preallocation in ("falloc", "full"):
        assert allocated >= 16 * MiB
    else:
        assert allocated < 16 * MiB
    assert xen_disk_run(sim, **args)["changed"] is False


def test_overlay_over_a_backing_file(sim):
    base = sim.images / "base.qcow2"
    top = sim.images / "top.qcow2"
    result = xen_disk_run(sim, domains=[
        {"domain": "guest5", "disks": [disk(base, vdev="xvdb", fmt="qcow2", size="64M", access="ro")]},
        {"domain": "guest6", "disks": [disk(top, vdev="xvdb", fmt="qcow2", backing_file=str(base),
                                            backing_format="qcow2")]}])
    assert result["changed"], result
    info = qemu_info(top)
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 64 * MiB

    # declared over another backing file now: said, and the overlay is left as it is
    other = sim.images / "other.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(other), "64M"], check=True)
    again = xen_disk_run(sim, domain="guest6", disks=[disk(top, vdev="xvdb", fmt="qcow2", backing_file=str(other),
                                                           backing_format="qcow2")])
    assert again["changed"] is False, again
    assert any(w.startswith("disks[0].backing_file: %s has the backing file '%s', not the declared '%s'"
                            % (top, base, other)) for w in again["warnings"]), again["warnings"]
    assert qemu_info(top)["backing-filename"] == str(base)


@pytest.mark.parametrize("fmt,initial,grown", [("raw", "8M", "24MiB"), ("qcow2", "1G", "1.5G")])
def test_grow_detached_then_nothing_more(host, fmt, initial, grown):
    path = host.images / "g.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), initial], check=True)
    args = dict(domain="guest5", disks=[disk(path, fmt=fmt, size=grown)], wait=False)
    checked = xen_disk_run(host, check=True, **args)
    assert checked["images"][0]["action"] == "grow"
    before = qemu_info(path)["virtual-size"]
    assert checked["images"][0]["size_before"] == before
    applied = xen_disk_run(host, **args)
    after = qemu_info(path)["virtual-size"]
    assert after > before and after == applied["images"][0]["size_after"] == checked["images"][0]["size_after"]
    assert xen_disk_run(host, **args)["images"][0]["action"] == "unchanged"


def _xenstore_and_files(host):
    return sorted(os.listdir(host.images)), host.dump("/local/domain/5"), host.dump("/libxl/5")


@pytest.mark.parametrize("storage,located", [
    ({"size": "99999999999E"}, "disks[0].size: "),
    ({"size": "-20G"}, "disks[0].size: '-20G': a size cannot be negative"),
    ({"size": "20Gb!"}, "disks[0].size: "),
    ({"size": "20X"}, "unknown unit 'X'"),
    ({"size": "1G", "target": "/nonexistent-dir-xen-disks/a.img"}, "its directory /nonexistent-dir-xen-disks does not exist"),
    ({"size": "1G", "target": "DIR"}, "is a directory, not an image file"),
    ({"size": "4M"}, "disks[0].size: "),     # a shrink of the 8 MiB image
    ({"size": "16M", "format": "qcow2"}, "disks[0].format: "),  # raw file declared qcow2? header says raw: shrink/grow of a raw-looking file
    ({"size": "8M", "target": "QCOW"}, "declared raw but the file is a qcow2 image"),
])
def test_bad_input_is_located_and_nothing_is_written(host, storage, located):
    existing = host.images / "e.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(existing), "8M"], check=True)
    qcow = host.images / "q.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "8M"], check=True)
    (host.images / "dir").mkdir()
    item = disk(existing, size=None)
    item.update(storage)
    item["target"] = {"DIR": str(host.images / "dir"), "QCOW": str(qcow)}.get(item["target"], item["target"])
    # a good disk beside the bad one: validation of the whole declaration comes first
    good = disk(host.images / "new.img", vdev="xvdc", size="1M")
    before = _xenstore_and_files(host)
    size_before = qemu_info(existing)["virtual-size"]
    result = xen_disk_run(host, domain="guest5", disks=[item, good])
    assert result.get("failed"), result
    assert located in result["msg"], result["msg"]
    assert _xenstore_and_files(host) == before
    assert qemu_info(existing)["virtual-size"] == size_before


def test_format_mismatch_without_storage_options(host):
    """A guest wrote a qcow2 header into its raw image: dom0 refuses to go on unless told."""
    path = host.images / "r.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "8M"], check=True)
    result = xen_disk_run(host, domain="guest5", disks=["vdev=xvdb,format=raw,target=%s" % path], wait=False)
    assert result.get("failed") and "disks[0].format: " in result["msg"] and "qcow2" in result["msg"]
    assert not [p for p in host.dump("/libxl/5") if p.startswith("/libxl/5/device/")]
    accepted = xen_disk_run(host, domain="guest5", wait=False,
                            disks=[disk(path, format_mismatch="ignore")])
    assert accepted["changed"] and not accepted.get("failed"), accepted
    assert any("format_mismatch: ignore" in w for w in accepted["warnings"])


def test_shrink_allowed_only_detached(sim):
    path = sim.images / "s.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "16M"], check=True)
    shrunk = xen_disk_run(sim, domain="guest5", disks=[disk(path, size="8M", allow_shrink=True)], wait=False,
                          state="absent")
    assert shrunk.get("failed")  # only remove_storage applies to a disk declared absent
    assert xen_disk_run(sim, domain="guest5", disks=[disk(path)])["changed"]
    refused = xen_disk_run(sim, domain="guest5", disks=[disk(path, size="8M", allow_shrink=True)])
    assert refused.get("failed") and "attached to its guest" in refused["msg"], refused
    assert qemu_info(path)["virtual-size"] == 16 * MiB
    assert xen_disk_run(sim, domain="guest5", state="absent", disks=["xvdb"])["changed"]
    done = xen_disk_run(sim, domain="guest6", disks=[disk(path, size="8M", allow_shrink=True)])
    assert not done.get("failed") and done["images"][0]["action"] == "shrink", done
    assert qemu_info(path)["virtual-size"] == 8 * MiB


def test_absent_detaches_and_removes_only_when_asked(sim):
    path = sim.images / "x.img"
    shared = sim.images / "shared.img"
    assert xen_disk_run(sim, domains=[
        {"domain": "guest5", "disks": [disk(path, size="1M"), disk(shared, vdev="xvdc", size="1M", access="ro")]},
        {"domain": "guest6", "disks": [disk(shared, vdev="xvdc", access="ro")]}])["changed"]
    detached = xen_disk_run(sim, domain="guest5", state="absent", disks=["xvdb"])
    assert detached["changed"] and path.exists()
    refused = xen_disk_run(sim, domain="guest5", state="absent",
                           disks=[{"vdev": "xvdc", "remove_storage": True}])
    assert refused.get("failed") and "is used by xvdc (guest 6)" in refused["msg"], refused
    assert shared.exists()
    assert sim.dump("/libxl/5").get("/libxl/5/device/vbd/51744") is not None
    removed = xen_disk_run(sim, domain="guest5", state="absent",
                           disks=[{"vdev": "xvdb", "target": str(path), "remove_storage": True}])
    assert removed["changed"] and not path.exists(), removed
    assert removed["images"][0]["action"] == "remove"


@pytest.fixture
def loop_device():
    devices = []

    def attach(path):
        out = subprocess.run(["losetup", "-f", "--show", str(path)], check=True, capture_output=True, text=True)
        devices.append(out.stdout.strip())
        return devices[-1]

    yield attach
    for device in devices:
        subprocess.run(["losetup", "-d", device], check=False)


def _wait_node(host, path, deadline=20.0):
    """The node's value once it exists and the simulated guest has connected (bounded polling)."""
    end = time.monotonic() + deadline
    while True:
        tree = host.dump("/local/domain/0/backend")
        value = tree.get(path, (None,))[0]
        if (value is not None and not path.endswith("/state")) or value == "4" or time.monotonic() > end:
            return value
        time.sleep(0.05)


def _block_size(device):
    with open(device, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


def test_grow_under_a_running_guest_on_a_loop_device(sim, loop_device):
    path = sim.images / "live.img"
    attached = xen_disk_run(sim, domain="guest5", disks=[disk(path, size="8M", backendtype="phy")])
    assert attached["changed"] and not attached.get("failed"), attached
    backend = "/local/domain/0/backend/vbd/5/51728"  # phy: blkback's vbd
    device = loop_device(path)
    # what Xen's block hotplug script leaves for a file target: the loop device blkback serves
    with __import__("ansible_collections.xen.disks.tests.xenstored.launcher", fromlist=["WireClient"]).WireClient(
            sim.socket) as client:
        client.write(backend + "/physical-device-path", device)
    assert _wait_node(sim, backend + "/state") == "4"  # libxl waits for InitWait only: the guest connects after
    assert _wait_node(sim, backend + "/sectors") == str(8 * MiB // 512)
    grown = xen_disk_run(sim, domain="guest5", disks=[disk(path, size="24M", backendtype="phy")])
    assert not grown.get("failed"), grown
    told = grown["images"][0]["backend"]
    assert told["told"] == "losetup -c %s" % device
    assert told["sectors_before"] == 8 * MiB // 512 and told["sectors_after"] == 24 * MiB // 512
    assert _block_size(device) == 24 * MiB == qemu_info(path)["virtual-size"]
    assert sim.dump(backend + "/sectors")[backend + "/sectors"][0] == str(24 * MiB // 512)


def test_info_reports_images(sim):
    base = sim.images / "base.qcow2"
    top = sim.images / "top.qcow2"
    xen_disk_run(sim, domain="guest5", disks=[
        disk(base, vdev="xvdb", fmt="qcow2", size="32M", access="ro"),
        disk(top, vdev="xvdc", fmt="qcow2", backing_file=str(base), backing_format="qcow2")])
    raw = sim.images / "liar.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(raw), "8M"], check=True)
    xen_disk_run(sim, domain="guest6", disks=[disk(raw, format_mismatch="ignore")])
    info = xen_disk_info_run(sim, domains=["guest5", "guest6"])
    by_vdev = {(g["domid"], d["vdev"]): d for g in info["guests"] for d in g["disks"]}
    top_image = by_vdev[(5, "xvdc")]["image"]
    assert top_image["format"] == "qcow2" and top_image["virtual_size"] == 32 * MiB
    assert [b["filename"] for b in top_image["backing_chain"]] == [str(base)]
    assert top_image["dirty"] is False and top_image["corrupt"] is False
    liar = by_vdev[(6, "xvdb")]
    assert liar["image"]["format"] == "qcow2" and liar["image"]["backing_chain"] == []
    assert any("declared raw but the file is a qcow2 image" in w for w in liar["warnings"])


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is not installed")
def test_grow_under_a_running_hvm_guest_tells_qemu(xenstored, tmp_path):
    """qdisk of a qemu-xen HVM guest: QMP block_resize of the drive libxl named (hdb: `if=ide,index=1`,
    QEMU's `ide0-hd1`), seen by QEMU's own query-block on a second monitor."""
    from ansible_collections.xen.disks.tests.qemu import device_model

    xenstored.add_guest("guest7", 7, "hvm")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = tmp_path / "hvm.img"
    item = disk(path, vdev="hdb", size="8M", backendtype="qdisk")
    with backend_sim.running(xenstored.socket, "connect"):
        attached = xen_disk_run(xenstored, domain="guest7", disks=[item], libxl_run_dir=str(run_dir))
        assert attached["changed"] and not attached.get("failed"), attached
        qemu = device_model.DeviceModel(7, run_dir)
        qemu.args += ["-drive", "file=%s,if=ide,index=1,media=disk,format=raw,cache=writeback" % path]
        qemu.start()
        try:
            with __import__("ansible_collections.xen.disks.tests.xenstored.launcher",
                            fromlist=["WireClient"]).WireClient(xenstored.socket) as client:
                client.write("/libxl/7/dm-version", "qemu_xen")

            def qemu_size():
                return {b["device"]: b for b in qemu.query("query-block")}["ide0-hd1"]["inserted"]["image"]["virtual-size"]

            assert qemu_size() == 8 * MiB
            grown = xen_disk_run(xenstored, domain="guest7", libxl_run_dir=str(run_dir),
                                 disks=[dict(item, size="12M")])
            assert not grown.get("failed"), grown
            assert grown["images"][0]["backend"]["told"] == "block_resize device=ide0-hd1 size=%d" % (12 * MiB)
            assert qemu_size() == 12 * MiB == qemu_info(path)["virtual-size"]
            with __import__("ansible_collections.xen.disks.tests.xenstored.launcher",
                            fromlist=["WireClient"]).WireClient(xenstored.socket) as client:
                client.write("/libxl/7/dm-version", "qemu_xen_traditional")
            old = xen_disk_run(xenstored, domain="guest7", libxl_run_dir=str(run_dir),
                               disks=[dict(item, size="16M")])
            assert "qemu-traditional" in old["images"][0]["backend"]["note"], old
            assert any("qemu-traditional" in w for w in old["warnings"])
            # qemu-img is tried instead, and QEMU's lock on the image refuses it: said, nothing grown
            assert old.get("failed") and "the device model holds the image" in old["msg"], old
            assert qemu_size() == 12 * MiB == qemu_info(path)["virtual-size"]
        finally:
            qemu.stop()


@pytest.mark.parametrize("size", ["1048576", "1024K", "1MiB", "3MB", "0.5M", "2m"])
def test_sizes_as_users_write_them_become_the_image_size(host, size):
    from ansible_collections.xen.disks.plugins.module_utils._core.storage import parse_size

    path = host.images / "u.img"
    result = xen_disk_run(host, domain="guest5", wait=False, disks=[disk(path, size=size)])
    assert not result.get("failed"), result
    assert qemu_info(path)["virtual-size"] == parse_size(size) == result["images"][0]["size_after"]
    assert xen_disk_run(host, domain="guest5", wait=False, disks=[disk(path, size=size)])["changed"] is False


def test_vhd_created_once_and_not_resized(host):
    path = host.images / "v.vhd"
    args = dict(domain="guest5", wait=False, disks=[disk(path, fmt="vhd", size="10M", backendtype="qdisk")])
    assert xen_disk_run(host, **args)["images"][0]["action"] == "create"
    info = qemu_info(path)
    assert info["format"] == "vpc" and info["virtual-size"] >= 10 * MiB  # rounded up to its CHS geometry
    again = xen_disk_run(host, **args)
    assert again["changed"] is False and again["images"][0]["action"] == "unchanged", again
    args["disks"] = [disk(path, fmt="vhd", size="20M", backendtype="qdisk")]
    bigger = xen_disk_run(host, **args)
    assert bigger.get("failed") and "qemu-img cannot resize vhd" in bigger["msg"]


def test_info_reports_a_block_target_size(host, loop_device):
    path = host.images / "blk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "6M"], check=True)
    device = loop_device(path)
    assert xen_disk_run(host, domain="guest5", wait=False, disks=["%s,raw,xvdb,w" % device])["changed"]
    info = xen_disk_info_run(host, domain="guest5")
    image = info["guests"][0]["disks"][0]["image"]
    assert image == {"path": device, "kind": "block", "size": 6 * MiB}
    refused = xen_disk_run(host, domain="guest6", wait=False, disks=[disk(device, size="8M")])
    assert refused.get("failed") and "is a block device" in refused["msg"] and "community.general.lvol" in refused["msg"]


def test_owner_and_group_of_a_new_image(host):
    import grp
    import pwd

    path = host.images / "o.img"
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    bad = xen_disk_run(host, domain="guest5", wait=False,
                       disks=[disk(path, size="1M", owner="no-such-user-xen-disks", group=group)])
    assert bad.get("failed") and "disks[0].owner: no user named 'no-such-user-xen-disks'" in bad["msg"]
    assert not path.exists()
    made = xen_disk_run(host, domain="guest5", wait=False, disks=[disk(path, size="1M", owner=user, group=group)])
    assert not made.get("failed"), made
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (os.getuid(), os.getgid())


def test_removal_refused_while_another_declared_disk_uses_the_file(sim):
    path = sim.images / "keep.img"
    assert xen_disk_run(sim, domain="guest5", disks=[disk(path, size="1M", access="ro")])["changed"]
    refused = xen_disk_run(sim, domains=[
        {"domain": "guest5", "state": "absent",
         "disks": [{"vdev": "xvdb", "target": str(path), "remove_storage": True}]},
        {"domain": "guest6", "disks": [disk(path, access="ro")]}])
    assert refused.get("failed") and "is used by" in refused["msg"] and "disks[0]" in refused["msg"], refused
    assert path.exists()


def test_removal_refused_while_a_backend_without_libxl_record_names_the_file(sim):
    """Another toolstack's backend (no libxl record) still serves the file: its params decide."""
    from ansible_collections.xen.disks.tests.xenstored import launcher

    path = sim.images / "foreign.img"
    assert xen_disk_run(sim, domain="guest5", disks=[disk(path, size="1M")])["changed"]
    with launcher.WireClient(sim.socket) as client:
        client.write("/local/domain/0/backend/qdisk/6/51760/params", "aio:%s" % path)
    refused = xen_disk_run(sim, domain="guest5", state="absent",
                           disks=[{"vdev": "xvdb", "target": str(path), "remove_storage": True}])
    assert refused.get("failed") and "still named by the backend /local/domain/0/backend/qdisk/6/51760" \
        in refused["msg"], refused
    assert path.exists()
