# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What guests' kernels do with a disk taken away while they use it, and a qcow2 disk hot-plugged
to a PV guest that no QEMU serves: measured on the real host (docs/REAL-XEN-TESTS.md)."""

from __future__ import annotations

import time

import pytest

from ansible_collections.xen.disks.tests.xenvm.conftest import IMAGES_DIR

MiB = 1024 * 1024
# what Linux, QEMU or xl themselves do (the module's own path is proven by the other tests):
# measured by `run-all.sh --real-xen`, not by the default run
measurement = pytest.mark.measurement
XEN_DISK = "xen.disks.xen_disk"
TIMEOUT = 300
# a detach without force waits this long for the guest to let go (5.10 refuses at once: wait it
# out quickly); a disk nothing serves is waited for this long (libxl's own 10 s)
REFUSED_DETACH_TIMEOUT = 20
UNSERVED_TIMEOUT = 10


def mounted_disk(controller, guest, vdev, image):
    """Attach a raw disk, make a file system on it in the guest, mount it, write a file."""
    disk = {"target": image, "format": "raw", "vdev": vdev, "access": "rw", "size": "64M"}
    run = controller.module(XEN_DISK, {"domain": guest.name, "disks": [disk], "timeout": TIMEOUT})
    assert run.rc == 0 and run.status == "changed", run
    assert guest.wait_disk(vdev, 64 * MiB), guest.disks()
    guest.run(f"mke2fs -q /dev/{vdev} && mount -t ext2 /dev/{vdev} /mnt && echo kept > /mnt/before && sync")
    return disk


def detach(controller, guest, vdev, timeout, force=False):
    return controller.module(XEN_DISK, {"domain": guest.name, "disks": [vdev], "state": "absent",
                                        "timeout": timeout, "force": force})


def test_5_10_refuses_to_let_go_of_a_mounted_disk(xen_host, controller, g510):
    """Linux 5.10's blkfront refuses to close a disk in use: a detach without force fails naming
    the disk, and the disk keeps working in the guest; with force it goes."""
    assert g510.kernel.startswith("5.10.")
    mounted_disk(controller, g510, "xvdb", f"{IMAGES_DIR}/g510-data.img")

    refused = detach(controller, g510, "xvdb", REFUSED_DETACH_TIMEOUT)
    assert refused.rc != 0 and refused.status == "failed", refused
    assert "xvdb" in refused.result["msg"], refused.result["msg"]
    assert "Traceback" not in str(refused.result), refused
    # nothing lost: still mounted, the file is there, and the disk takes writes
    _status, out = g510.run("cat /mnt/before && echo after > /mnt/after && sync && cat /mnt/after && "
                            "grep -c ' /mnt ' /proc/mounts")
    assert out.split() == ["kept", "after", "1"]
    domid = xen_host.domid("g510")
    state = xen_host.ssh(f"xenstore-read /local/domain/0/backend/vbd/{domid}/51728/state").stdout.strip()
    print(f"MEASURE 5.10 mounted, detach without force: failed ({refused.result['msg']!r}); "
          f"backend state {state}; the guest still reads and writes the disk")

    forced = detach(controller, g510, "xvdb", TIMEOUT, force=True)
    assert forced.rc == 0 and forced.status == "changed", forced
    assert 51728 not in [int(line.split()[0]) for line in
                         xen_host.ssh("xl block-list g510").stdout.splitlines()[1:] if line.strip()]
    assert xen_host.ssh(f"losetup -j {IMAGES_DIR}/g510-data.img").stdout == ""
    print(f"MEASURE 5.10 mounted, detach with force: changed; in the guest afterwards: {probe(g510)!r}")


def probe(guest):
    """What the guest's file system on the vanished disk does: a read, a write, a sync and a lazy
    unmount, all in the background: on 5.10 the sync blocks for good and the unmount behind it
    waits in D state, and the agent must stay free for the tests after this one."""
    guest.run("(cat /mnt/before; echo x > /mnt/x; echo wrote; sync; echo synced; umount -l /mnt; echo unmounted)"
              " > /tmp/probe 2>&1 &")
    time.sleep(10)
    _status, out = guest.run("cat /tmp/probe; dmesg | tail -n 2")
    return out


@measurement
def test_6_1_lets_go_of_a_mounted_disk(xen_host, controller, g61):
    """Linux 6.1's blkfront closes a mounted disk when the backend asks: measured, not judged."""
    mounted_disk(controller, g61, "xvde", f"{IMAGES_DIR}/g61-mounted.img")
    start = time.monotonic()
    run = detach(controller, g61, "xvde", TIMEOUT)
    seconds = time.monotonic() - start
    gone = g61.wait_disk("xvde", present=False, timeout=60)
    print(f"MEASURE 6.1 mounted, detach without force: {run.status} in {seconds:.0f} s "
          f"({run.result.get('msg', '')!r}); disk gone from the guest: {gone}; "
          f"then in the guest: {probe(g61)!r}")
    assert "Traceback" not in str(run.result), run
    # what Debian 12's kernel does (docs/REAL-XEN-TESTS.md): the detach goes through, the guest
    # loses the disk under its mount and gets I/O errors
    assert run.status == "changed", run
    assert gone


@measurement
def test_xl_block_attach_of_a_qcow2_where_no_qemu_serves(xen_host, g510):
    """A PV guest created without a QEMU-served disk has no QEMU: xl block-attach of a qcow2
    returns 0, leaves the backend in state 1 (nothing serves it) and the guest sees nothing."""
    image = f"{IMAGES_DIR}/noqemu-xl.qcow2"
    xen_host.ssh(f"qemu-img create -q -f qcow2 {image} 48M")
    domid = xen_host.domid("g510")
    dm = xen_host.ssh(f"xenstore-read /local/domain/0/device-model/{domid}/state", check=False)
    assert dm.returncode != 0, "the guest has a device model after all"
    start = time.monotonic()
    attach = xen_host.ssh(f"xl block-attach g510 format=qcow2,vdev=xvdf,access=rw,target={image}", check=False)
    seconds = time.monotonic() - start
    state = f"/local/domain/0/backend/qdisk/{domid}/51792/state"
    time.sleep(15)
    backend_state = xen_host.ssh(f"xenstore-read {state}").stdout.strip()
    seen = g510.disks()
    print(f"MEASURE xl block-attach qcow2 to a guest without QEMU: status {attach.returncode} after "
          f"{seconds:.0f} s, backend state {backend_state} 15 s later, guest sees xvdf: {'xvdf' in seen}")
    assert attach.returncode == 0, attach.stdout + attach.stderr  # xl says nothing is wrong...
    assert backend_state == "1" and "xvdf" not in seen           # ...but nothing serves the disk
    xen_host.ssh("xl block-detach -f g510 xvdf", check=False, timeout=300)


def test_xen_disk_names_a_qcow2_that_no_qemu_serves(xen_host, controller, g510):
    """The same disk declared to xen_disk: it waits for the backend, then fails naming the disk
    and saying why; xen_disk_info reports it as an unfinished attach; a rerun fails again."""
    image = f"{IMAGES_DIR}/noqemu.qcow2"
    xen_host.ssh(f"qemu-img create -q -f qcow2 {image} 48M")
    dm = xen_host.ssh(f"xenstore-read /local/domain/0/device-model/{xen_host.domid('g510')}/state", check=False)
    assert dm.returncode != 0, "the guest has a device model after all"
    # xen_disk: waits for the backend, then fails naming the disk and saying why
    disk = {"target": image, "format": "qcow2", "vdev": "xvdg", "access": "rw"}
    run = controller.module(XEN_DISK, {"domain": "g510", "disks": [disk], "timeout": UNSERVED_TIMEOUT})
    print(f"MEASURE xen_disk qcow2 to a guest without QEMU: {run.status}: {run.result.get('msg')!r}")
    assert run.rc != 0 and run.status == "failed", run
    assert "xvdg" in run.result["msg"] and "nothing serves this disk" in run.result["msg"], run.result["msg"]
    assert "xvdg" not in g510.disks()
    info = controller.module("xen.disks.xen_disk_info", {"domain": "g510"})
    xvdg = next(d for d in info.result["guests"][0]["disks"] if d["vdev"] == "xvdg")
    assert xvdg["attach_unfinished"] is True and xvdg["backend_state"]["number"] == 1, xvdg
    again = controller.module(XEN_DISK, {"domain": "g510", "disks": [disk], "timeout": UNSERVED_TIMEOUT})
    assert again.status == "failed" and "nothing serves this disk" in again.result["msg"], again
    gone = controller.module(XEN_DISK, {"domain": "g510", "disks": ["xvdg"], "state": "absent", "force": True,
                                        "timeout": 30})
    assert gone.rc == 0 and gone.status == "changed", gone


@measurement
def test_read_only_qcow2_on_qdisk_is_refused_by_qemu_7_2(xen_host, controller, g61):
    """Debian 12's QEMU 7.2 cannot serve a read-only qdisk: its xen-block device fails with
    "Block node is read-only", the backend stays in state 1. Measured with xl block-attach."""
    image = f"{IMAGES_DIR}/ro.qcow2"
    xen_host.ssh(f"qemu-img create -q -f qcow2 {image} 40M")
    domid = xen_host.domid("g61")
    start = time.monotonic()
    attach = xen_host.ssh(f"xl block-attach g61 format=qcow2,vdev=xvdg,access=ro,target={image}", check=False)
    # QEMU logs its refusal as it handles the backend; wait for that line (at most 60 s)
    log = xen_host.ssh("for i in $(seq 120); do n=$(grep -c \"'51808': failed to create drive: Block node is "
                       "read-only\" /var/log/xen/qemu-dm-g61.log); [ \"$n\" -ge 1 ] && break; sleep 0.5; done; "
                       "echo $n", check=False).stdout.strip()
    seconds = time.monotonic() - start
    backend_state = xen_host.ssh(f"xenstore-read /local/domain/0/backend/qdisk/{domid}/51808/state").stdout.strip()
    print(f"MEASURE xl block-attach read-only qcow2 (qdisk, QEMU 7.2): status {attach.returncode}, "
          f"backend state {backend_state} {seconds:.0f} s later, QEMU log lines 'Block node is read-only': {log}")
    assert attach.returncode == 0 and backend_state == "1" and int(log or 0) >= 1
    assert "xvdg" not in g61.disks()
    xen_host.ssh("xl block-detach -f g61 xvdg", check=False, timeout=300)

    disk = {"target": image, "format": "qcow2", "vdev": "xvdh", "access": "ro"}
    run = controller.module(XEN_DISK, {"domain": "g61", "disks": [disk], "timeout": UNSERVED_TIMEOUT})
    assert run.rc != 0 and "xvdh" in run.result["msg"] and "nothing serves this disk" in run.result["msg"], run
    gone = controller.module(XEN_DISK, {"domain": "g61", "disks": ["xvdh"], "state": "absent", "force": True,
                                        "timeout": 30})
    assert gone.rc == 0, gone
