# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The trees of docs/XENSTORE-LAYOUT.md §1.5 (A-F), node for node with permissions, and the ops.

The expected trees below are typed from the document (its notation: `path (perms)` then
`name="value"` entries; where the document writes "the same entries" the entries are spelt out
from §1.3). Each example goes through the whole pure pipeline: the xl spec of the document ->
`validate_declaration` (parser, backend choice) -> `desired_disk` -> `attach_ops` applied to a
host in its domain-creation state (§1.4).
"""

from __future__ import annotations

import re

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.declaration import (
    GuestDeclaration,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._core.layout import (
    CREATE_ONLY,
    FOREIGN,
    LENIENT,
    OWNED,
    DiskPlacement,
    LayoutError,
    attach_ops,
    cleanup_ops,
    close_ops,
    media_change_ops,
    ownership,
    parse_backend_path,
    path_cleanup_ops,
    script_name,
    script_path,
    virtio_mmio_slot,
)
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsOp, XsTree

_HEADER = re.compile(r"^(/\S+)\s+\(([^)]*)\)\s*$")
_ENTRY = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"')


def doc_tree(text):
    """{path: (value, perms)} from the document's notation. Nodes inherit their directory's perms,
    except that every frontend node but `backend` carries them explicitly (same list)."""
    out = {}
    current = None
    for line in text.strip().splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line:
            continue
        header = _HEADER.match(line.strip())
        if header:
            current = header.group(1)
            perms = tuple(p.strip() for p in header.group(2).split(","))
            out[current] = ("", perms)
            continue
        for name, value in _ENTRY.findall(line):
            out[current + "/" + name] = (value, out[current][1])
    return out


def added(before, after):
    return {p: (after.values[p], after.perms[p]) for p in after.values if p not in before.values}


# -- §1.5 Example A ---------------------------------------------------------------------------
EXAMPLE_A = """
/local/domain/5/device/vbd/51712  (n5,r0)
    backend        = "/local/domain/0/backend/vbd/5/51712"
    backend-id     = "0"
    state          = "1"
    virtual-device = "51712"
    device-type    = "disk"
    trusted        = "1"
    protocol       = "x86_64-abi"          # PV only
/local/domain/0/backend/vbd/5/51712  (n0,r5)
    frontend       = "/local/domain/5/device/vbd/51712"
    params         = "/dev/vg0/guest5"
    script         = "/etc/xen/scripts/block"
    frontend-id    = "5"
    online         = "1"
    removable      = "0"
    bootable       = "1"
    state          = "1"
    dev            = "xvda"
    type           = "phy"
    mode           = "w"
    device-type    = "disk"
    discard-enable = "1"
    specification  = "xen"
/libxl/5/device/vbd/51712  (n0)
    frontend       = "/local/domain/5/device/vbd/51712"
    backend        = "/local/domain/0/backend/vbd/5/51712"
    params         = "/dev/vg0/guest5"
    script         = "/etc/xen/scripts/block"
    frontend-id    = "5"
    online         = "1"
    removable      = "0"
    bootable       = "1"
    state          = "1"
    dev            = "xvda"
    type           = "phy"
    mode           = "w"
    device-type    = "disk"
    discard-enable = "1"
    specification  = "xen"
"""

EXAMPLE_B = """
/local/domain/5/device/vbd/51728  (n5,r0)
    backend="/local/domain/0/backend/vbd/5/51728" backend-id="0" state="1"
    virtual-device="51728" device-type="disk" trusted="0" protocol="x86_64-abi"
/local/domain/0/backend/vbd/5/51728  (n0,r5)
    frontend="/local/domain/5/device/vbd/51728" params="/srv/img/data.img"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0"
    bootable="1" state="1" dev="xvdb" type="phy" mode="r" device-type="disk"
    direct-io-safe="1" discard-enable="0" specification="xen"
/libxl/5/device/vbd/51728  (n0)
    frontend="/local/domain/5/device/vbd/51728" backend="/local/domain/0/backend/vbd/5/51728"
    params="/srv/img/data.img"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0"
    bootable="1" state="1" dev="xvdb" type="phy" mode="r" device-type="disk"
    direct-io-safe="1" discard-enable="0" specification="xen"
"""

EXAMPLE_C = """
/local/domain/7/device/vbd/768   (n7,r0)
    backend="/local/domain/0/backend/qdisk/7/768" backend-id="0" state="1"
    virtual-device="768" device-type="disk" trusted="1"          # no protocol (HVM)
/local/domain/0/backend/qdisk/7/768   (n0,r7)
    frontend="/local/domain/7/device/vbd/768"
    params="qcow2:/var/lib/xen/g7.qcow2" frontend-id="7" online="1"
    removable="0" bootable="1" state="1" dev="hda" type="qdisk" mode="w"
    device-type="disk" discard-enable="1" specification="xen"    # no script for qdisk
/libxl/7/device/vbd/768 (n0)
    frontend="/local/domain/7/device/vbd/768" backend="/local/domain/0/backend/qdisk/7/768"
    params="qcow2:/var/lib/xen/g7.qcow2" frontend-id="7" online="1"
    removable="0" bootable="1" state="1" dev="hda" type="qdisk" mode="w"
    device-type="disk" discard-enable="1" specification="xen"

/local/domain/7/device/vbd/5632  (n7,r0)
    backend="/local/domain/0/backend/qdisk/7/5632" backend-id="0" state="1"
    virtual-device="5632" device-type="cdrom" trusted="1"
/local/domain/0/backend/qdisk/7/5632  (n0,r7)
    frontend="/local/domain/7/device/vbd/5632" params="aio:" frontend-id="7"
    online="1" removable="1" bootable="1" state="1" dev="hdc" type="qdisk"
    mode="r" device-type="cdrom" discard-enable="0" specification="xen"
/libxl/7/device/vbd/5632 (n0)
    frontend="/local/domain/7/device/vbd/5632" backend="/local/domain/0/backend/qdisk/7/5632"
    params="aio:" frontend-id="7"
    online="1" removable="1" bootable="1" state="1" dev="hdc" type="qdisk"
    mode="r" device-type="cdrom" discard-enable="0" specification="xen"
"""

EXAMPLE_D = """
/local/domain/5/device/vbd/51744  (n5,r2)
    backend="/local/domain/2/backend/vbd/5/51744" backend-id="2" state="1"
    virtual-device="51744" device-type="disk" trusted="1" protocol="x86_64-abi"
/local/domain/2/backend/vbd/5/51744  (n2,r5)
    frontend="/local/domain/5/device/vbd/51744" params="/dev/vg1/g5data"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0"
    bootable="1" state="1" dev="xvdc" type="phy" mode="w" device-type="disk"
    discard-enable="1" specification="xen"
/libxl/5/device/vbd/51744 (n0)
    frontend="/local/domain/5/device/vbd/51744" backend="/local/domain/2/backend/vbd/5/51744"
    params="/dev/vg1/g5data"
    script="/etc/xen/scripts/block" frontend-id="5" online="1" removable="0"
    bootable="1" state="1" dev="xvdc" type="phy" mode="w" device-type="disk"
    discard-enable="1" specification="xen"
"""

EXAMPLE_E = """
/local/domain/3/device/virtio_disk/51712  (n3,r0)
    backend="/local/domain/0/backend/virtio_disk/3/51712" backend-id="0"
    state="1" virtual-device="51712" device-type="disk" trusted="1"
/local/domain/0/backend/virtio_disk/3/51712  (n0,r3)
    frontend="/local/domain/3/device/virtio_disk/51712"
    params="/dev/mmcblk0p3" frontend-id="3" online="1" removable="0"
    bootable="1" state="1" dev="xvda" type="standalone" mode="w"
    device-type="disk" discard-enable="1" specification="virtio"
    transport="mmio" base="33554432" irq="33"
/libxl/3/device/virtio_disk/51712 (n0)
    frontend="/local/domain/3/device/virtio_disk/51712"
    backend="/local/domain/0/backend/virtio_disk/3/51712"
    params="/dev/mmcblk0p3" frontend-id="3" online="1" removable="0"
    bootable="1" state="1" dev="xvda" type="standalone" mode="w"
    device-type="disk" discard-enable="1" specification="virtio"
    transport="mmio" base="33554432" irq="33"
"""

# Example F shows the backend only; the frontend and libxl directories follow §1.3 (HVM is not
# said, so the guest is taken as PVH: no protocol).
EXAMPLE_F = """
/local/domain/9/device/vbd/51712  (n9,r0)
    backend="/local/domain/0/backend/qdisk/9/51712" backend-id="0" state="1"
    virtual-device="51712" device-type="disk" trusted="1"
/local/domain/0/backend/qdisk/9/51712 (n0,r9)
    frontend="/local/domain/9/device/vbd/51712"
    params="aio:/colo/g9.img" colo-host="10.0.0.2" colo-port="9000"
    colo-export="g9disk" active-disk="/colo/active.img"
    hidden-disk="/colo/hidden.img" frontend-id="9" online="1" removable="0"
    bootable="1" state="1" dev="xvda" type="qdisk" mode="w" device-type="disk"
    discard-enable="1" specification="xen"
/libxl/9/device/vbd/51712 (n0)
    frontend="/local/domain/9/device/vbd/51712" backend="/local/domain/0/backend/qdisk/9/51712"
    params="aio:/colo/g9.img" colo-host="10.0.0.2" colo-port="9000"
    colo-export="g9disk" active-disk="/colo/active.img"
    hidden-disk="/colo/hidden.img" frontend-id="9" online="1" removable="0"
    bootable="1" state="1" dev="xvda" type="qdisk" mode="w" device-type="disk"
    discard-enable="1" specification="xen"
"""


def intermediate(domid, kind, backend_domid, backend_kind):
    """The directories libxl's mkdirs create implicitly, with the inherited perms of §1.4."""
    back_perms = ("n0",) if backend_domid == 0 else ("n0", "r%d" % backend_domid)
    base = "/local/domain/%d/backend" % backend_domid
    return {
        base: ("", back_perms),
        base + "/" + backend_kind: ("", back_perms),
        "%s/%s/%d" % (base, backend_kind, domid): ("", back_perms),
        "/local/domain/%d/device/%s" % (domid, kind): ("", ("n0", "r%d" % domid)),
        "/libxl/%d/device/%s" % (domid, kind): ("", ("n0",)),
    }


STAT = {"/dev/vg0/guest5": "block", "/srv/img/data.img": "file", "/var/lib/xen/g7.qcow2": "file",
        "/dev/mmcblk0p3": "block", "/dev/mmcblk0p4": "block", "/colo/g9.img": "file"}

# (id, guest (domid, type), specs, arch, driver domains, expected document text, kinds)
EXAMPLES = [
    ("A", (5, "pv"), ["/dev/vg0/guest5,raw,xvda,rw"], "x86", (), EXAMPLE_A, [("vbd", 0, "vbd")]),
    ("A-minimal", (5, "pv"), ["/dev/vg0/guest5,,xvda"], "x86", (), EXAMPLE_A, [("vbd", 0, "vbd")]),
    ("B", (5, "pv"), ["/srv/img/data.img,raw,xvdb,ro,direct-io-safe,untrusted"], "x86", (), EXAMPLE_B,
     [("vbd", 0, "vbd")]),
    ("C", (7, "hvm"), ["/var/lib/xen/g7.qcow2,qcow2,hda", ",raw,hdc,cdrom"], "x86", (), EXAMPLE_C,
     [("vbd", 0, "qdisk")]),
    ("C-devtype", (7, "hvm"), ["/var/lib/xen/g7.qcow2,qcow2,hda", "vdev=hdc,devtype=cdrom"], "x86", (),
     EXAMPLE_C, [("vbd", 0, "qdisk")]),
    ("D", (5, "pv"), ["backend=stor2,/dev/vg1/g5data,,xvdc"], "x86", (2,), EXAMPLE_D, [("vbd", 2, "vbd")]),
    ("E", (3, "pvh"), ["/dev/mmcblk0p3,raw,xvda,w,specification=virtio"], "arm", (), EXAMPLE_E,
     [("virtio_disk", 0, "virtio_disk")]),
    ("F", (9, "pvh"), ["format=raw,vdev=xvda,access=rw,colo,colo-host=10.0.0.2,colo-port=9000,"
                       "colo-export=g9disk,active-disk=/colo/active.img,hidden-disk=/colo/hidden.img,"
                       "target=/colo/g9.img"], "x86", (), EXAMPLE_F, [("vbd", 0, "qdisk")]),
]


def build(guest, specs, arch, driver_domains):
    domid, guest_type = guest
    [desired] = validate_declaration(
        [GuestDeclaration(domid, tuple(specs), guest_type=guest_type, guest_width=64)],
        stat_target=STAT, resolve_domain={"stor2": 2, "2": 2, "0": 0}, arch=arch)
    return desired


@pytest.mark.parametrize("name, guest, specs, arch, driver_domains, document, kinds", EXAMPLES,
                         ids=[e[0] for e in EXAMPLES])
def test_example_tree_equals_document(host, name, guest, specs, arch, driver_domains, document, kinds):
    before = host(guest, driver_domains=driver_domains)
    desired = build(guest, specs, arch, driver_domains)
    after = before.copy()
    for d in desired:
        after.apply_all(attach_ops(d))
    expected = doc_tree(document)
    for kind, backend_domid, backend_kind in kinds:
        expected.update(intermediate(guest[0], kind, backend_domid, backend_kind))
    assert added(before, after) == expected
    # nothing that existed before was touched
    assert {p: after.values[p] for p in before.values} == before.values
    assert {p: after.perms[p] for p in before.perms} == before.perms


def test_second_virtio_disk_on_arm_gets_next_slot():
    desired = build((3, "pvh"), ["/dev/mmcblk0p3,raw,xvda,w,specification=virtio",
                                 "/dev/mmcblk0p4,raw,xvdb,r,specification=virtio"], "arm", ())
    assert dict(desired[1].backend)["base"] == "33554944"
    assert dict(desired[1].backend)["irq"] == "34"


def test_virtio_on_x86_writes_zero_base_and_irq():
    [d] = build((3, "pvh"), ["/dev/mmcblk0p3,raw,xvda,w,specification=virtio"], "x86", ())
    assert dict(d.backend)["base"] == "0"
    assert dict(d.backend)["irq"] == "0"
    assert dict(d.backend)["transport"] == "mmio"


@pytest.mark.parametrize("index, expected", [(0, (0x02000000, 33)), (1, (0x02000200, 34)),
                                             (10, (0x02000000 + 10 * 0x200, 43))])
def test_virtio_mmio_slot_arm(index, expected):
    assert virtio_mmio_slot(index, "arm") == expected


@pytest.mark.parametrize("index, arch, message", [
    (11, "arm", r"^too many virtio disks: libxl on Arm allocates at most 11 virtio-mmio slots$"),
    (0, "riscv", r"^unknown architecture 'riscv': expected one of x86, arm$"),
])
def test_virtio_mmio_slot_errors(index, arch, message):
    with pytest.raises(LayoutError, match=message):
        virtio_mmio_slot(index, arch)


def test_32bit_pv_guest_protocol_and_unknown_width():
    [d32] = validate_declaration([GuestDeclaration(5, ("/dev/vg0/guest5,,xvda",), guest_type="pv",
                                                   guest_width=32)], stat_target=STAT)[0]
    assert dict(d32.frontend)["protocol"] == "x86_32-abi"
    [dnone] = validate_declaration([GuestDeclaration(5, ("/dev/vg0/guest5,,xvda",), guest_type="pv",
                                                     guest_width=None)], stat_target=STAT)[0]
    assert "protocol" not in dict(dnone.frontend)


@pytest.mark.parametrize("script, script_dir, expected", [
    (None, "/etc/xen/scripts", "/etc/xen/scripts/block"),
    ("block-iscsi", "/etc/xen/scripts", "/etc/xen/scripts/block-iscsi"),
    ("a/b", "/etc/xen/scripts", "/etc/xen/scripts/a/b"),
    ("/usr/local/bin/myblock", "/etc/xen/scripts", "/usr/local/bin/myblock"),
    (None, "/usr/lib/xen/scripts/", "/usr/lib/xen/scripts/block"),
])
def test_script_path_rules(script, script_dir, expected):
    assert script_path(script, script_dir) == expected
    assert script_name(expected, script_dir) == script


def test_script_dir_is_configurable_end_to_end():
    [[d]] = validate_declaration([GuestDeclaration(5, ("/dev/vg0/guest5,,xvda,script=block-x",))],
                                 stat_target={}, script_dir="/opt/xen/scripts")
    # a script set: libxl does not stat the target, picks phy, and runs the script in dom0
    assert dict(d.backend)["script"] == "/opt/xen/scripts/block-x"
    assert d.hotplug_script == "/opt/xen/scripts/block-x"


# -- ownership --------------------------------------------------------------------------------
@pytest.mark.parametrize("directory, name, klass", [
    ("frontend", "backend", OWNED), ("frontend", "virtual-device", OWNED), ("frontend", "state", CREATE_ONLY),
    ("frontend", "protocol", LENIENT), ("frontend", "ring-ref", FOREIGN), ("frontend", "event-channel", FOREIGN),
    ("backend", "params", OWNED), ("backend", "state", CREATE_ONLY), ("backend", "online", CREATE_ONLY),
    ("backend", "physical-device", FOREIGN), ("backend", "hotplug-status", FOREIGN),
    ("backend", "sectors", FOREIGN), ("backend", "feature-discard", FOREIGN), ("backend", "irq", OWNED),
    ("libxl", "state", OWNED), ("libxl", "online", OWNED), ("libxl", "frontend", OWNED),
])
def test_ownership_table(directory, name, klass):
    assert ownership(directory, name) == klass


# -- ops --------------------------------------------------------------------------------------
def test_attach_ops_follow_generic_add_order():
    [d] = build((5, "pv"), ["/dev/vg0/guest5,raw,xvda,rw"], "x86", ())
    ops = attach_ops(d)
    f, b, lx = ("/local/domain/5/device/vbd/51712", "/local/domain/0/backend/vbd/5/51712",
                "/libxl/5/device/vbd/51712")
    head = [XsOp("rm", lx), XsOp("write", lx + "/frontend", f), XsOp("write", lx + "/backend", b),
            XsOp("rm", f), XsOp("mkdir", f), XsOp("set_perms", f, perms=("n5", "r0")),
            XsOp("write", f + "/backend", b),
            XsOp("write", f + "/backend-id", "0"), XsOp("set_perms", f + "/backend-id", perms=("n5", "r0"))]
    assert ops[:len(head)] == head
    i = ops.index(XsOp("rm", b))
    assert ops[i:i + 4] == [XsOp("rm", b), XsOp("mkdir", b), XsOp("set_perms", b, perms=("n0", "r5")),
                            XsOp("write", b + "/frontend", f)]
    backend_writes = [op.path.rsplit("/", 1)[1] for op in ops[i + 4:] if op.path.startswith(b + "/")]
    libxl_writes = [op.path.rsplit("/", 1)[1] for op in ops[i + 4:] if op.path.startswith(lx + "/")]
    order = ["params", "script", "frontend-id", "online", "removable", "bootable", "state", "dev", "type",
             "mode", "device-type", "discard-enable", "specification"]
    assert backend_writes == order
    assert libxl_writes == order
    assert ops[-1].path.startswith(lx + "/")


def _attached_host(host):
    before = host((5, "pv"))
    [d] = build((5, "pv"), ["/dev/vg0/guest5,raw,xvda,rw"], "x86", ())
    return before, before.copy().apply_all(attach_ops(d)), d


@pytest.mark.parametrize("state, force, expected", [
    ("4", False, [("write", "online", "0"), ("write", "state", "5")]),
    ("6", False, [("write", "online", "0")]),
    (None, False, []),
])
def test_close_ops(host, state, force, expected):
    tree, d = _attached_host(host)[1:]
    b = d.placement.backend_path
    if state is None:
        tree.apply(XsOp("rm", b))
    else:
        tree.values[b + "/state"] = state
    ops = close_ops(tree, d.placement, force=force)
    assert [(op.action, op.path.rsplit("/", 1)[1], op.value) for op in ops] == expected


def test_close_ops_force_removes_frontend_first(host):
    tree, d = _attached_host(host)[1:]
    tree.values[d.placement.backend_path + "/state"] = "4"
    ops = close_ops(tree, d.placement, force=True)
    # path_cleanup of the frontend: the guest's only device, so the empty parents go too, up to
    # /local/domain/5, which keeps `name`
    assert ops == [XsOp("rm", d.placement.frontend_path), XsOp("rm", "/local/domain/5/device/vbd"),
                   XsOp("rm", "/local/domain/5/device"),
                   XsOp("write", d.placement.backend_path + "/online", "0"),
                   XsOp("write", d.placement.backend_path + "/state", "5")]


def test_cleanup_ops_walk_up_and_restore_domain_created_state(host):
    before, tree, d = _attached_host(host)
    tree.values[d.placement.frontend_path + "/ring-ref"] = "8"       # foreign nodes go with their dir
    tree.values[d.placement.backend_path + "/physical-device"] = "fd:3"
    ops = cleanup_ops(tree, d.placement)
    assert ops == [
        XsOp("rm", "/local/domain/5/device/vbd/51712"), XsOp("rm", "/local/domain/5/device/vbd"),
        XsOp("rm", "/local/domain/5/device"),
        XsOp("rm", "/libxl/5/device/vbd/51712"), XsOp("rm", "/libxl/5/device/vbd"), XsOp("rm", "/libxl/5/device"),
        XsOp("rm", "/local/domain/0/backend/vbd/5/51712"), XsOp("rm", "/local/domain/0/backend/vbd/5"),
        XsOp("rm", "/local/domain/0/backend/vbd"), XsOp("rm", "/local/domain/0/backend"),
    ]
    after = tree.copy().apply_all(ops)
    assert set(after.values) == set(before.values) - {"/local/domain/5/device", "/libxl/5/device"}


def test_path_cleanup_stops_at_a_parent_with_a_value_or_children():
    tree = XsTree({"/a": "", "/a/b": "x", "/a/b/c": "", "/a/b/c/d": "1", "/a/e": ""}, {})
    assert path_cleanup_ops(tree, "/a/b/c/d") == [XsOp("rm", "/a/b/c/d"), XsOp("rm", "/a/b/c")]
    tree2 = XsTree({"/a": "", "/a/b": "", "/a/b/c": "1", "/a/e": ""}, {})
    assert path_cleanup_ops(tree2, "/a/b/c") == [XsOp("rm", "/a/b/c"), XsOp("rm", "/a/b")]
    # an ancestor the snapshot does not hold is never removed
    assert path_cleanup_ops(XsTree({"/x/y/z": "1"}, {}), "/x/y/z") == [XsOp("rm", "/x/y/z")]


def test_media_change_ops_write_type_and_params_in_both_directories():
    [hda, hdc] = build((7, "hvm"), ["/var/lib/xen/g7.qcow2,qcow2,hda", "/srv/iso/a.iso,raw,hdc,cdrom"], "x86", ())
    eject, insert = media_change_ops(hdc)
    b, lx = hdc.placement.backend_path, hdc.placement.libxl_path
    assert eject == [XsOp("write", b + "/type", "qdisk"), XsOp("write", b + "/params", ""),
                     XsOp("write", lx + "/type", "qdisk"), XsOp("write", lx + "/params", "")]
    assert insert == [XsOp("write", b + "/type", "qdisk"), XsOp("write", b + "/params", "aio:/srv/iso/a.iso"),
                      XsOp("write", lx + "/type", "qdisk"), XsOp("write", lx + "/params", "aio:/srv/iso/a.iso")]


@pytest.mark.parametrize("path, expected", [
    ("/local/domain/0/backend/vbd/5/51712", (0, "vbd", 5, 51712)),
    ("/local/domain/2/backend/qdisk/7/768", (2, "qdisk", 7, 768)),
    ("/local/domain/0/backend/vbd/5", None),
    ("/local/domain/x/backend/vbd/5/1", None),
    ("local/domain/0/backend/vbd/5/1", None),
    (None, None),
])
def test_parse_backend_path(path, expected):
    assert parse_backend_path(path) == expected


def test_placement_paths_and_roles():
    p = DiskPlacement(5, 2, 51744, "vbd", "vbd")
    assert (p.frontend_path, p.backend_path, p.libxl_path) == (
        "/local/domain/5/device/vbd/51744", "/local/domain/2/backend/vbd/5/51744", "/libxl/5/device/vbd/51744")
    assert (p.frontend_perms, p.backend_perms) == (("n5", "r2"), ("n2", "r5"))
    assert not p.runs_hotplug_script  # the driver domain's xl devd runs it
    assert p.waits_for_init
    assert not DiskPlacement(7, 0, 768, "vbd", "qdisk").waits_for_init
