# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/XENSTORE-LAYOUT.md §1.5: the trees xen_disk writes into the REAL xenstored equal the
document's examples A-F node for node, permissions and creation order included.

The expected trees are typed from the document (not computed by the collection). Where the
document abbreviates ("frontend, backend + the same entries"), the libxl directory is built
from the typed backend entries exactly as that sentence says. `stat` of the targets is the only
host fact injected (these block devices and images do not exist on a test machine); every
xenstore write is real and read back with the launcher's wire client.
"""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._runs.live import run_xen_disk
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import children, subtree

pytestmark = pytest.mark.xenstored


def entries(text):
    """'a="1" b="x y"' -> [("a", "1"), ("b", "x y")] (the document's compact notation)."""
    out = []
    rest = text.strip()
    while rest:
        name, rest = rest.split("=", 1)
        assert rest[0] == '"'
        value, rest = rest[1:].split('"', 1)
        out.append((name.strip(), value))
        rest = rest.strip()
    return out


# -- typed from §1.5 ------------------------------------------------------------------------
A_FRONT = ("/local/domain/5/device/vbd/51712", ("n5", "r0"), entries('''
    backend="/local/domain/0/backend/vbd/5/51712" backend-id="0" state="1" virtual-device="51712"
    device-type="disk" trusted="1" protocol="x86_64-abi"'''))
A_BACK = ("/local/domain/0/backend/vbd/5/51712", ("n0", "r5"), entries('''
    frontend="/local/domain/5/device/vbd/51712" params="/dev/vg0/guest5"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0" bootable="1"
    state="1" dev="xvda" type="phy" mode="w" device-type="disk" discard-enable="1"
    specification="xen"'''))
A_LIBXL = ("/libxl/5/device/vbd/51712", ("n0",), entries('''
    frontend="/local/domain/5/device/vbd/51712" backend="/local/domain/0/backend/vbd/5/51712"
    params="/dev/vg0/guest5" script="/etc/xen/scripts/block" frontend-id="5" online="1"
    removable="0" bootable="1" state="1" dev="xvda" type="phy" mode="w" device-type="disk"
    discard-enable="1" specification="xen"'''))

B_FRONT = ("/local/domain/5/device/vbd/51728", ("n5", "r0"), entries('''
    backend="/local/domain/0/backend/vbd/5/51728" backend-id="0" state="1"
    virtual-device="51728" device-type="disk" trusted="0" protocol="x86_64-abi"'''))
B_BACK = ("/local/domain/0/backend/vbd/5/51728", ("n0", "r5"), entries('''
    frontend="/local/domain/5/device/vbd/51728" params="/srv/img/data.img"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0"
    bootable="1" state="1" dev="xvdb" type="phy" mode="r" device-type="disk"
    direct-io-safe="1" discard-enable="0" specification="xen"'''))

C_HDA_FRONT = ("/local/domain/7/device/vbd/768", ("n7", "r0"), entries('''
    backend="/local/domain/0/backend/qdisk/7/768" backend-id="0" state="1"
    virtual-device="768" device-type="disk" trusted="1"'''))
C_HDA_BACK = ("/local/domain/0/backend/qdisk/7/768", ("n0", "r7"), entries('''
    frontend="/local/domain/7/device/vbd/768"
    params="qcow2:/var/lib/xen/g7.qcow2" frontend-id="7" online="1"
    removable="0" bootable="1" state="1" dev="hda" type="qdisk" mode="w"
    device-type="disk" discard-enable="1" specification="xen"'''))
C_HDC_FRONT = ("/local/domain/7/device/vbd/5632", ("n7", "r0"), entries('''
    backend="/local/domain/0/backend/qdisk/7/5632" backend-id="0" state="1"
    virtual-device="5632" device-type="cdrom" trusted="1"'''))
C_HDC_BACK = ("/local/domain/0/backend/qdisk/7/5632", ("n0", "r7"), entries('''
    frontend="/local/domain/7/device/vbd/5632" params="aio:" frontend-id="7"
    online="1" removable="1" bootable="1" state="1" dev="hdc" type="qdisk"
    mode="r" device-type="cdrom" discard-enable="0" specification="xen"'''))

D_FRONT = ("/local/domain/5/device/vbd/51744", ("n5", "r2"), entries('''
    backend="/local/domain/2/backend/vbd/5/51744" backend-id="2" state="1"
    virtual-device="51744" device-type="disk" trusted="1" protocol="x86_64-abi"'''))
D_BACK = ("/local/domain/2/backend/vbd/5/51744", ("n2", "r5"), entries('''
    frontend="/local/domain/5/device/vbd/51744" params="/dev/vg1/g5data"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0"
    bootable="1" state="1" dev="xvdc" type="phy" mode="w" device-type="disk"
    discard-enable="1" specification="xen"'''))

E_FRONT = ("/local/domain/3/device/virtio_disk/51712", ("n3", "r0"), entries('''
    backend="/local/domain/0/backend/virtio_disk/3/51712" backend-id="0"
    state="1" virtual-device="51712" device-type="disk" trusted="1"'''))
E_BACK = ("/local/domain/0/backend/virtio_disk/3/51712", ("n0", "r3"), entries('''
    frontend="/local/domain/3/device/virtio_disk/51712"
    params="/dev/mmcblk0p3" frontend-id="3" online="1" removable="0"
    bootable="1" state="1" dev="xvda" type="standalone" mode="w"
    device-type="disk" discard-enable="1" specification="virtio"
    transport="mmio" base="33554432" irq="33"'''))

F_BACK = ("/local/domain/0/backend/qdisk/9/51712", ("n0", "r9"), entries('''
    frontend="/local/domain/9/device/vbd/51712" params="aio:/colo/g9.img" colo-host="10.0.0.2"
    colo-port="9000" colo-export="g9disk" active-disk="/colo/active.img"
    hidden-disk="/colo/hidden.img" frontend-id="9" online="1" removable="0"
    bootable="1" state="1" dev="xvda" type="qdisk" mode="w" device-type="disk"
    discard-enable="1" specification="xen"'''))


def libxl_of(front, back):
    """'frontend, backend + the same entries' (the document's libxl directories)."""
    domid_kind_devid = front[0].split("/")[3], front[0].split("/")[5], front[0].split("/")[6]
    path = "/libxl/%s/device/%s/%s" % domid_kind_devid
    return (path, ("n0",), [("frontend", front[0]), ("backend", back[0])] + back[2][1:])


EXAMPLES = [
    # name, guest (domid, name, type), disks, extra args, stat answers, directories
    ("A", (5, "pv"), ["/dev/vg0/guest5,raw,xvda,rw"], {}, {"/dev/vg0/guest5": "block"},
     [A_FRONT, A_BACK, A_LIBXL]),
    ("A-minimal", (5, "pv"), ["/dev/vg0/guest5,,xvda"], {}, {"/dev/vg0/guest5": "block"},
     [A_FRONT, A_BACK, A_LIBXL]),
    ("B", (5, "pv"), ["/srv/img/data.img,raw,xvdb,ro,direct-io-safe,untrusted"], {},
     {"/srv/img/data.img": "file"}, [B_FRONT, B_BACK, libxl_of(B_FRONT, B_BACK)]),
    ("C", (7, "hvm"), ["/var/lib/xen/g7.qcow2,qcow2,hda", ",raw,hdc,cdrom"], {},
     {"/var/lib/xen/g7.qcow2": "file"},
     [C_HDA_FRONT, C_HDA_BACK, libxl_of(C_HDA_FRONT, C_HDA_BACK),
      C_HDC_FRONT, C_HDC_BACK, libxl_of(C_HDC_FRONT, C_HDC_BACK)]),
    ("C-devtype", (7, "hvm"), ["/var/lib/xen/g7.qcow2,qcow2,hda", "vdev=hdc,devtype=cdrom"], {},
     {"/var/lib/xen/g7.qcow2": "file"},
     [C_HDA_FRONT, C_HDA_BACK, C_HDC_FRONT, C_HDC_BACK, libxl_of(C_HDC_FRONT, C_HDC_BACK)]),
    ("D", (5, "pv"), ["backend=stor2,/dev/vg1/g5data,,xvdc"], {}, {},
     [D_FRONT, D_BACK, libxl_of(D_FRONT, D_BACK)]),
    ("E", (3, "pvh"), ["/dev/mmcblk0p3,raw,xvda,w,specification=virtio"], {"creating": True, "arch": "arm"},
     {"/dev/mmcblk0p3": "block"}, [E_FRONT, E_BACK, libxl_of(E_FRONT, E_BACK)]),
    ("F", (9, "pv"), ["/colo/g9.img,raw,xvda,colo,colo-host=10.0.0.2,colo-port=9000,colo-export=g9disk,"
                      "active-disk=/colo/active.img,hidden-disk=/colo/hidden.img"], {},
     {"/colo/g9.img": "block"}, [F_BACK]),
]


@pytest.fixture
def layout_host(xenstored):
    xenstored.add_guest("stor2", 2, "pv", driver_domain=True)
    xenstored.add_guest("guest3", 3, "pvh")
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest7", 7, "hvm")
    xenstored.add_guest("guest9", 9, "pv")
    return xenstored


def _params(host, domain, disks, extra):
    params = {"domain": str(domain), "disks": disks, "state": "present", "exclusive": False, "keep": [],
              "recreate": False, "force": False, "creating": False, "backend": None, "width": 64,
              "domains": None, "wait": False, "timeout": None, "hotplug_scripts": "skip",
              "script_dir": "/etc/xen/scripts", "arch": "x86", "xenstore_socket": host.socket}
    params.update(extra)
    return params


@pytest.mark.parametrize("name, guest, disks, extra, stats, directories", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_written_tree_equals_the_document(layout_host, name, guest, disks, extra, stats, directories):
    domid = guest[0]
    result = run_xen_disk(_params(layout_host, domid, disks, extra), stat=lambda p: stats.get(p, "missing"))
    assert result["changed"] is True
    for path, perms, nodes in directories:
        expected = {path: ("", perms)}
        expected.update({path + "/" + n: (v, perms) for n, v in nodes})
        assert subtree(layout_host, path) == expected, path
        assert children(layout_host, path) == [name for name, _value in nodes], "creation order of %s" % path
    # intermediate directories inherit as §1.4 says
    for path, perms, _nodes in directories:
        parent = path.rsplit("/", 1)[0]
        if parent.startswith("/libxl/"):
            want = ("n0",)
        elif "/backend/" in parent:
            backend_domid = int(parent.split("/")[3])
            want = ("n0",) if backend_domid == 0 else ("n0", "r%d" % backend_domid)
        else:
            want = ("n0", "r%d" % domid)  # ~/device/<kind> inherits ~/device
        assert subtree(layout_host, parent)[parent][1] == want, parent
    again = run_xen_disk(_params(layout_host, domid, disks, extra), stat=lambda p: stats.get(p, "missing"))
    assert again["changed"] is False
    assert [d["action"] for d in again["disks"]] == ["unchanged"] * len(disks)


def test_second_virtio_disk_on_arm_takes_the_next_slot(layout_host):
    disks = ["/dev/mmcblk0p3,raw,xvda,w,specification=virtio", "/dev/mmcblk0p4,raw,xvdb,w,specification=virtio"]
    run_xen_disk(_params(layout_host, 3, disks, {"creating": True, "arch": "arm"}), stat=lambda p: "block")
    second = subtree(layout_host, "/local/domain/0/backend/virtio_disk/3/51728")
    assert second["/local/domain/0/backend/virtio_disk/3/51728/base"][0] == "33554944"
    assert second["/local/domain/0/backend/virtio_disk/3/51728/irq"][0] == "34"
