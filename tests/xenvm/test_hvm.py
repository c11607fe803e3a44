# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An HVM guest on the real host: QEMU (qemu-xen, Debian's qemu-system-xen in dom0) emulates its
IDE cdrom, and a cdrom's media change goes to that QEMU over QMP. Checked from inside the guest
(its sr driver reads the medium) and against QEMU's own view (query-block on libxl's QMP socket).

Booting an HVM guest inside the emulated host takes minutes under TCG (86 s idle), so these tests
are marked `hvm` and run with `./tests/run-all.sh --real-xen`, not in the default run.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.xen.disks.tests.xenvm.conftest import IMAGES_DIR

pytestmark = pytest.mark.hvm

XEN_DISK = "xen.disks.xen_disk"
TIMEOUT = 300
HVM_BOOT_TIMEOUT = 900
MEDIA = {"one": f"{IMAGES_DIR}/cd-one.img", "two": f"{IMAGES_DIR}/cd-two.img"}


def cdrom(target=None):
    """The guest's cdrom as declared: `hdc`, read-only, with `target`'s medium or empty."""
    return "format=raw,vdev=hdc,devtype=cdrom,access=ro" + (f",target={target}" if target else "")


# query-block on libxl's QMP socket of the guest, from dom0 (QEMU's own view of its drives)
QUERY_BLOCK = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/var/run/xen/qmp-libxl-%s" % sys.argv[1])
f = s.makefile("rw")
f.readline()
def command(name):
    f.write(json.dumps({"execute": name}) + "\n")
    f.flush()
    while True:
        answer = json.loads(f.readline())
        if "return" in answer or "error" in answer:
            return answer
command("qmp_capabilities")
print(json.dumps(command("query-block")["return"]))
"""


@pytest.fixture(scope="module")
def hvm_guest(xen_host):
    for name, label in (("one", "MEDIUM-ONE"), ("two", "MEDIUM-TWO")):
        xen_host.ssh(f"rm -f {MEDIA[name]} && truncate -s 2M {MEDIA[name]} && "
                     f"printf {label} | dd of={MEDIA[name]} conv=notrunc 2>/dev/null")
    xen_host.put("/root/query-block.py", QUERY_BLOCK)
    guest = xen_host.create_guest("h1", hvm=True, memory=256, disks=[cdrom(MEDIA["one"])],
                                  timeout=HVM_BOOT_TIMEOUT)
    yield guest
    xen_host.destroy_guest("h1")


def medium(guest, expected):
    """What the guest reads at the start of its cdrom ("" when the read fails: no medium),
    polled for up to 30 s until it is `expected`: the guest's sr driver takes the change in at
    a later open (the first read after a change fails with "medium may have changed")."""
    _status, out = guest.run(
        "for i in $(seq 30); do "
        "if dd if=/dev/sr0 of=/tmp/medium bs=2048 count=1 2>/dev/null; then v=$(head -c 10 /tmp/medium); "
        f"else v=; fi; [ \"$v\" = \"{expected}\" ] && break; sleep 1; done; printf %s \"$v\"", timeout=120)
    return out


def ide_drive(xen_host):
    """QEMU's view of the guest's emulated cdrom: its query-block entry for the IDE drive."""
    out = xen_host.ssh(f"python3 /root/query-block.py {xen_host.domid('h1')}").stdout
    (drive,) = [d for d in json.loads(out) if d["device"].startswith("ide-")]
    return drive


def test_the_hvm_guest_reads_its_cdrom(xen_host, hvm_guest):
    assert hvm_guest.wait_disk("sr0"), hvm_guest.disks()
    assert medium(hvm_guest, "MEDIUM-ONE") == "MEDIUM-ONE"
    assert ide_drive(xen_host)["inserted"]["file"] == MEDIA["one"]


def test_media_change_over_qmp_seen_by_the_guest(xen_host, controller, hvm_guest):
    run = controller.module(XEN_DISK, {"domain": "h1", "disks": [cdrom(MEDIA["two"])], "timeout": TIMEOUT})
    assert run.rc == 0 and run.status == "changed", run
    (disk,) = run.result["disks"]
    assert disk["action"] == "media_change", disk
    assert any(c.startswith("blockdev-change-medium") for c in disk["qmp"]), disk["qmp"]
    assert medium(hvm_guest, "MEDIUM-TWO") == "MEDIUM-TWO"
    drive = ide_drive(xen_host)
    assert drive["tray_open"] is False and drive["inserted"]["file"].startswith("/dev/fdset/"), drive
    backend = f"/local/domain/0/backend/qdisk/{xen_host.domid('h1')}/5632/params"
    assert xen_host.ssh(f"xenstore-read {backend}").stdout.strip() == "aio:" + MEDIA["two"]
    again = controller.module(XEN_DISK, {"domain": "h1", "disks": [cdrom(MEDIA["two"])], "timeout": TIMEOUT})
    assert again.rc == 0 and again.status == "ok", again


def test_eject_and_insert_seen_by_the_guest(xen_host, controller, hvm_guest):
    eject = controller.module(XEN_DISK, {"domain": "h1", "disks": [cdrom()], "timeout": TIMEOUT})
    assert eject.rc == 0 and eject.status == "changed", eject
    assert medium(hvm_guest, "") == ""  # no medium: the read fails
    assert "inserted" not in ide_drive(xen_host)
    insert = controller.module(XEN_DISK, {"domain": "h1", "disks": [cdrom(MEDIA["one"])], "timeout": TIMEOUT})
    assert insert.rc == 0 and insert.status == "changed", insert
    assert medium(hvm_guest, "MEDIUM-ONE") == "MEDIUM-ONE"
