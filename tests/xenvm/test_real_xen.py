# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection on a real Xen host: Xen 4.17, Debian's PV dom0 (kernel blkback, the real block
hotplug script and loop devices, QEMU's qdisk), PV guests whose blkfront sees the disks. The
controller is this machine; dom0 is reached over SSH. Every check reads the guest's own view (its
/sys/block, data it reads back), besides xenstore and xl.

The tests of a module share one guest and run in file order (each builds on the disks the one
before left); a failure prints the host's evidence (conftest.py).
"""

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.xen.disks.tests.xenvm.conftest import IMAGES_DIR

MiB = 1024 * 1024
XEN_DISK = "xen.disks.xen_disk"
XEN_DISK_INFO = "xen.disks.xen_disk_info"
TIMEOUT = 300  # the module's per-wait timeout: libxl's 10 s / 40 s are tight under TCG; 120 s was not enough under load

RAW = {"target": f"{IMAGES_DIR}/data.img", "format": "raw", "vdev": "xvdb", "access": "rw", "size": "96M"}
QCOW = {"target": f"{IMAGES_DIR}/data.qcow2", "format": "qcow2", "vdev": "xvdc", "access": "rw", "size": "80M"}
RAW_RO = {"target": f"{IMAGES_DIR}/ro.img", "format": "raw", "vdev": "xvdd", "access": "ro", "size": "48M"}
MARKER = "xen-disks-marker-4242"

both_xenstored = pytest.mark.both_xenstored


def xen_disk(controller, guest, disks, **options):
    return controller.module(XEN_DISK, {"domain": guest, "disks": disks, "timeout": TIMEOUT, **options})


def backend_dir(host, kind, domid, devid):
    return f"/local/domain/0/backend/{kind}/{domid}/{devid}"


def xs_read(host, path):
    proc = host.ssh(f"xenstore-read {path}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def block_list_devids(host, guest):
    out = host.ssh(f"xl block-list {guest}").stdout.splitlines()
    return sorted(int(line.split()[0]) for line in out[1:] if line.strip())


@pytest.fixture
def guest(g61):
    return g61


@both_xenstored
def test_guest_boots_and_sees_its_qdisk(xen_host, guest, xenstored_flavour):
    assert guest.kernel.startswith("6.1.")
    daemon = xen_host.ssh("cat /proc/$(cat /run/xenstore.pid)/comm").stdout.strip()
    assert daemon == xenstored_flavour
    assert guest.wait_disk("xvda", 32 * MiB), guest.disks()
    domid = xen_host.domid("g61")
    assert xs_read(xen_host, backend_dir(xen_host, "qdisk", domid, 51712) + "/state") == "4"


@both_xenstored
def test_attach_raw_on_blkback_and_qcow2_on_qdisk(xen_host, controller, guest):
    run = xen_disk(controller, "g61", [RAW, QCOW, RAW_RO])
    assert run.rc == 0 and run.status == "changed", run
    assert guest.wait_disk("xvdb", 96 * MiB), guest.disks()
    assert guest.wait_disk("xvdc", 80 * MiB), guest.disks()
    assert guest.wait_disk("xvdd", 48 * MiB), guest.disks()
    seen = guest.disks()
    assert seen["xvdb"] == {"bytes": 96 * MiB, "ro": False}
    assert seen["xvdc"] == {"bytes": 80 * MiB, "ro": False}
    assert seen["xvdd"] == {"bytes": 48 * MiB, "ro": True}
    status, out = guest.run("echo x | dd of=/dev/xvdd 2>&1", check=False)
    assert status != 0, out  # the guest cannot write a read-only disk
    domid = xen_host.domid("g61")
    # xvdb: kernel blkback on the loop device the block script set up; xvdc: QEMU's qdisk
    raw_be = backend_dir(xen_host, "vbd", domid, 51728)
    assert xs_read(xen_host, raw_be + "/state") == "4"
    assert xs_read(xen_host, raw_be + "/physical-device") is not None
    loops = xen_host.ssh(f"losetup -j {RAW['target']}").stdout
    assert "/dev/loop" in loops, loops
    assert xs_read(xen_host, backend_dir(xen_host, "qdisk", domid, 51744) + "/state") == "4"
    assert block_list_devids(xen_host, "g61") == [51712, 51728, 51744, 51760]

    again = xen_disk(controller, "g61", [RAW, QCOW, RAW_RO])
    assert again.rc == 0 and again.status == "ok", again
    assert again.recap["changed"] == 0


def test_data_survives_detach_and_reattach(xen_host, controller, guest):
    guest.run(f"printf {MARKER} | dd of=/dev/xvdb bs=512 count=1 conv=sync 2>/dev/null && sync && "
              "blockdev --flushbufs /dev/xvdb")
    detach = xen_disk(controller, "g61", ["xvdb"], state="absent")
    assert detach.rc == 0 and detach.status == "changed", detach
    assert guest.wait_disk("xvdb", present=False), guest.disks()
    assert xen_host.ssh(f"losetup -j {RAW['target']}").stdout == ""
    assert xen_host.ssh(f"head -c {len(MARKER)} {RAW['target']}").stdout == MARKER

    attach = xen_disk(controller, "g61", [RAW, QCOW, RAW_RO])
    assert attach.rc == 0 and attach.status == "changed", attach
    assert guest.wait_disk("xvdb", 96 * MiB), guest.disks()
    _status, data = guest.run(f"dd if=/dev/xvdb bs=512 count=1 2>/dev/null | head -c {len(MARKER)}")
    assert data == MARKER


def test_online_growth_seen_by_the_guest(xen_host, controller, guest):
    grown = dict(RAW, size="128M")
    run = xen_disk(controller, "g61", [grown, QCOW, RAW_RO])
    assert run.rc == 0 and run.status == "changed", run
    assert guest.wait_disk("xvdb", 128 * MiB), guest.disks()
    _status, data = guest.run(f"dd if=/dev/xvdb bs=512 count=1 2>/dev/null | head -c {len(MARKER)}")
    assert data == MARKER


@both_xenstored
def test_info_equals_what_the_guest_and_xl_see(xen_host, controller, guest):
    run = controller.module(XEN_DISK_INFO, {"domain": "g61"})
    assert run.rc == 0, run
    (info,) = run.result["guests"]
    seen = guest.disks()
    assert sorted(d["devid"] for d in info["disks"]) == block_list_devids(xen_host, "g61")
    assert sorted(d["vdev"] for d in info["disks"]) == sorted(seen)
    for disk in info["disks"]:
        assert disk["backend_state"]["number"] == 4 and disk["frontend_state"]["number"] == 4, disk
        assert disk["published"]["size_bytes"] == seen[disk["vdev"]]["bytes"], disk
        assert disk["published"]["info"]["readonly"] == seen[disk["vdev"]]["ro"], disk
        assert disk["survives_xl_reboot"] is True, disk
    by_vdev = {d["vdev"]: d for d in info["disks"]}
    assert by_vdev["xvdc"]["backend_kind"] == "qdisk"
    assert by_vdev["xvdc"]["settings"]["target"] == QCOW["target"]
    if "xvdb" in by_vdev:
        assert by_vdev["xvdb"]["backend_kind"] == "vbd"
        assert by_vdev["xvdb"]["image"]["virtual_size"] == seen["xvdb"]["bytes"]


def test_a_guest_rewriting_its_frontend_nodes_changes_nothing(xen_host, controller, guest):
    """The guest's own device/ nodes are observations: rewritten from inside the guest (a real
    xenstore client there), they neither crash a run nor make it detach anything; the nodes the
    toolstack wrote there are repaired."""
    before = block_list_devids(xen_host, "g61")
    fe = "device/vbd/51728"
    saved = {n: guest.run(f"xenstore-read {fe}/{n}")[1] for n in ("backend", "backend-id", "virtual-device")}
    # (device/vbd/ itself is dom0's: the guest cannot invent a device there, only rewrite its own)
    status, out = guest.run("xenstore-write device/vbd/52000/backend /local/domain/0/backend/vbd/0/1", check=False)
    assert status != 0, out
    try:
        guest.run(f"xenstore-write {fe}/backend /local/domain/0/backend/vbd/0/51712 {fe}/backend-id 7 "
                  f"{fe}/virtual-device 51999")
        # exclusive: the run that detaches what is not declared (the rewritten frontend must not count)
        run = xen_disk(controller, "g61", [dict(RAW, size="128M"), QCOW, RAW_RO], exclusive=True, keep=["xvda"])
        text = json.dumps(run.result)
        assert "Traceback" not in text and "exception" not in run.result, run
        assert block_list_devids(xen_host, "g61") == before
        seen = guest.disks()
        assert seen["xvdb"]["bytes"] == 128 * MiB and seen["xvdc"]["bytes"] == 80 * MiB
        assert seen["xvdd"] == {"bytes": 48 * MiB, "ro": True}
        # the toolstack's own nodes in the frontend directory are put back (a repair, measured
        # on this host), never read as the disk's truth; nothing is detached or re-created
        actions = {d["vdev"]: d["action"] for d in run.result["disks"]}
        assert actions == {"xvdb": "repair", "xvdc": "unchanged", "xvdd": "unchanged"}, run.result["disks"]
        domid = xen_host.domid("g61")
        assert xs_read(xen_host, f"/local/domain/{domid}/{fe}/backend") == \
            backend_dir(xen_host, "vbd", domid, 51728)
    finally:
        guest.run(f"xenstore-write {fe}/backend {saved['backend']} "
                  f"{fe}/backend-id {saved['backend-id']} {fe}/virtual-device {saved['virtual-device']}")


def test_xl_reboot_keeps_the_attached_disks(xen_host, controller, guest):
    old = xen_host.domid("g61")
    start = time.monotonic()
    xen_host.ssh("xl reboot g61")
    xen_host.wait_guest("g61", old_domid=old)
    print(f"TIMING xl reboot -> agent up: {time.monotonic() - start:.1f} s")
    assert guest.wait_disk("xvdb", 128 * MiB), guest.disks()
    assert guest.wait_disk("xvdc", 80 * MiB), guest.disks()
    assert guest.wait_disk("xvdd", 48 * MiB), guest.disks()
    assert guest.disks()["xvdd"]["ro"] is True
    _status, data = guest.run(f"dd if=/dev/xvdb bs=512 count=1 2>/dev/null | head -c {len(MARKER)}")
    assert data == MARKER
    again = xen_disk(controller, "g61", [dict(RAW, size="128M"), QCOW, RAW_RO])
    assert again.rc == 0 and again.status == "ok", again


def test_xl_save_and_restore_keep_the_attached_disks(xen_host, controller, guest):
    old = xen_host.domid("g61")
    start = time.monotonic()
    save = xen_host.ssh(f"xl save g61 {IMAGES_DIR}/g61.save", timeout=600, check=False)
    assert save.returncode == 0, save.stdout + save.stderr
    restore = xen_host.ssh(f"xl restore {IMAGES_DIR}/g61.save", timeout=600, check=False)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    print(f"TIMING xl save + xl restore: {time.monotonic() - start:.1f} s")
    assert xen_host.domid("g61") != old
    assert block_list_devids(xen_host, "g61") == [51712, 51728, 51744, 51760]
    # the agent carries on in the restored domain (its data/ directory is new)
    assert guest.wait_disk("xvdb", 128 * MiB), guest.disks()
    _status, data = guest.run(f"dd if=/dev/xvdb bs=512 count=1 2>/dev/null | head -c {len(MARKER)}")
    assert data == MARKER
    again = xen_disk(controller, "g61", [dict(RAW, size="128M"), QCOW, RAW_RO])
    assert again.rc == 0 and again.status == "ok", again
