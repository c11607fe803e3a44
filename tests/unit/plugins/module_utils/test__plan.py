# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-back, plan classification, phases, needs, read sets and plan invariants (idempotence)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.xen.disks.plugins.module_utils._core.declaration import (
    GuestDeclaration,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._core.layout import attach_ops, desired_nodes
from ansible_collections.xen.disks.plugins.module_utils._core.plan import (
    QMP_FDSET,
    PlanError,
    QmpCommand,
    current_to_disk,
    guest_roots,
    owned_node_count,
    owned_paths,
    plan_guest,
    read_disks,
    read_set,
    settled_disk,
    state_name,
)
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import parse_disk_spec, render_disk_spec
from ansible_collections.xen.disks.plugins.module_utils._core.xen_version import XenVersion
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsOp, XsTree

STAT = {"/dev/vg0/a": "block", "/dev/vg0/b": "block", "/dev/vg0/c": "block", "/srv/a.img": "file",
        "/srv/g.qcow2": "file", "/srv/iso/a.iso": "file", "/srv/iso/b.iso": "file", "/dev/mmc": "block",
        "/dev/vg0/d": "block"}


def desired(domid, guest_type, *specs, arch="x86", width=64):
    [out] = validate_declaration([GuestDeclaration(domid, specs, guest_type=guest_type, guest_width=width)],
                                 stat_target=STAT, resolve_domain={"stor2": 2, "2": 2, "0": 0}, arch=arch)
    return out


def attached(tree, *ds):
    """`tree` with `ds` attached as libxl's add transaction leaves them."""
    out = tree.copy()
    for d in ds:
        out.apply_all(attach_ops(d))
    return out


def connect(tree, d, frontend="4", backend="4"):
    """What blkback, the hotplug script and blkfront add once the device is connected (foreign nodes)."""
    out = tree.copy()
    p = d.placement
    out.values[p.backend_path + "/state"] = backend
    out.values[p.frontend_path + "/state"] = frontend
    for name, value in (("physical-device", "fd:3"), ("hotplug-status", "connected"), ("sectors", "2048"),
                        ("sector-size", "512"), ("info", "0"), ("feature-flush-cache", "1")):
        out.apply(XsOp("write", p.backend_path + "/" + name, value))
    for name, value in (("ring-ref", "8"), ("event-channel", "12")):
        out.apply(XsOp("write", p.frontend_path + "/" + name, value))
    return out


def actions(plan):
    return [(c.vdev, c.action) for c in plan.changes]


def assert_converged(tree, domid, ds, **kw):
    again = plan_guest(tree, domid, ds, **kw)
    assert not again, [(c.vdev, c.action, c.differences) for c in again.changes]
    assert again.ops == ()
    return again


# -- attach / unchanged / idempotence ----------------------------------------------------------
def test_attach_then_nothing(host):
    before = host((5, "pv"))
    ds = desired(5, "pv", "/dev/vg0/a,,xvda", "/srv/a.img,raw,xvdb,ro")
    plan = plan_guest(before, 5, ds)
    assert plan
    assert actions(plan) == [("xvda", "attach"), ("xvdb", "attach")]
    assert [c.needs for c in plan.changes] == ["nothing", "nothing"]
    after = plan.after(before)
    assert after == attached(before, *ds)
    assert before == host((5, "pv"))  # the snapshot itself is not changed
    again = assert_converged(after, 5, ds)
    # nothing to write; the backends have not reached InitWait yet: the attach would be resumed
    assert actions(again) == [("xvda", "resume"), ("xvdb", "resume")]
    assert [[ph.step for ph in c.phases] for c in again.changes] == [["wait", "hotplug"]] * 2
    # once connected, the foreign nodes of blkback, the script and the guest change nothing
    done = assert_converged(connect(connect(after, ds[0]), ds[1]), 5, ds)
    assert actions(done) == [("xvda", "unchanged"), ("xvdb", "unchanged")]
    assert not done.acts


@pytest.mark.parametrize("guest_type, specs, creating, steps", [
    ("pv", ["/dev/vg0/a,,xvda"], False, [("transaction", ""), ("wait", "2"), ("hotplug", "add")]),
    # QEMU: no script; on a running guest a wait (libxl has none: a disk nothing serves would look
    # attached), none while the guest is created (its QEMU starts after the disks)
    ("hvm", ["/srv/g.qcow2,qcow2,hda"], False, [("transaction", ""), ("wait", "2")]),
    ("pv", ["/srv/g.qcow2,qcow2,xvdb"], False, [("transaction", ""), ("wait", "2")]),
    ("hvm", ["/srv/g.qcow2,qcow2,hda"], True, [("transaction", "")]),
    ("pv", ["backend=stor2,/dev/vg1/x,,xvdc"], False, [("transaction", ""), ("wait", "2")]),  # devd runs it
])
def test_attach_phases(host, guest_type, specs, creating, steps):
    plan = plan_guest(host((5, guest_type), driver_domains=(2,)), 5, desired(5, guest_type, *specs),
                      creating=creating)
    [change] = plan.changes
    assert [(ph.step, ph.values[0] if ph.values else ph.action) for ph in change.phases] == steps
    assert change.phases[0].ops == change.ops
    if steps[-1] == ("hotplug", "add"):
        assert dict(change.phases[-1].env) == {
            "script": "/etc/xen/scripts/block", "XENBUS_TYPE": "vbd", "XENBUS_PATH": "backend/vbd/5/51712",
            "XENBUS_BASE_PATH": "backend"}
        assert change.phases[1].timeout == 10 and change.phases[2].timeout == 40


# -- changes that need a detach and an attach ----------------------------------------------------
RECREATE_TABLE = [
    ("/dev/vg0/b,,xvda",
     "^disks\\[0\\]: target differs from the attached disk \\(libxl record: params '/dev/vg0/a' -> '/dev/vg0/b'\\); "
     "changing it needs a detach and an attach: set recreate=true to do that$"),
    ("/dev/vg0/a,,xvda,ro",
     "^disks\\[0\\]: access, discard differ from the attached disk \\(libxl record: discard-enable '1' -> '0', "
     "mode 'w' -> 'r'\\); changing them needs a detach and an attach: set recreate=true to do that$"),
    ("/dev/vg0/a,,xvda,direct-io-safe",
     "^disks\\[0\\]: direct-io-safe differs from the attached disk \\(libxl record: direct-io-safe None -> '1'\\); "
     "changing it needs a detach and an attach: set recreate=true to do that$"),
]


@pytest.mark.parametrize("spec, message", RECREATE_TABLE)
def test_change_needs_recreate(host, spec, message):
    old = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = connect(attached(host((5, "pv")), *old), old[0])
    new = desired(5, "pv", spec)
    plan = plan_guest(tree, 5, new)
    assert not plan
    [change] = plan.changes
    assert (change.action, change.needs) == ("recreate", "recreate")
    with pytest.raises(PlanError, match=message):
        plan.check()

    forced = plan_guest(tree, 5, new, recreate=True)
    [change] = forced.changes
    assert change.action == "recreate" and not change.error and change.needs == "guest_cooperation"
    assert [ph.step for ph in change.phases] == ["transaction", "wait", "hotplug", "cleanup",
                                                 "transaction", "wait", "hotplug"]
    assert [ph.action for ph in change.phases if ph.step == "hotplug"] == ["remove", "add"]
    after = forced.after(tree)
    assert_converged(after, 5, new)
    # the foreign nodes of the old device went with it
    assert not any(p.endswith("/physical-device") for p in after.values)


def test_kind_change_xen_to_virtio_is_refused_while_running(host):
    old = desired(3, "pvh", "/dev/mmc,raw,xvda")
    tree = attached(host((3, "pvh")), *old)
    new = desired(3, "pvh", "/dev/mmc,raw,xvda,specification=virtio", arch="arm")
    [change] = plan_guest(tree, 3, new).changes
    assert change.error == ("disks[0]: the attached disk 51712 is a vbd device and the declared one a "
                            "virtio_disk device; changing that needs a detach and an attach: set recreate=true")
    assert change.needs == "restart"


def test_another_spelling_of_the_vdev_is_the_same_disk(host):
    old = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = connect(attached(host((5, "pv")), *old), old[0])
    plan = assert_converged(tree, 5, desired(5, "pv", "/dev/vg0/a,,d0p0"))
    assert plan.changes[0].notes == ("d0p0 is recorded as 'xvda', the same device (51712): the recorded "
                                     "spelling is kept",)


def test_trusted_lives_in_the_frontend_only_and_is_repaired_in_place(host):
    old = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = connect(attached(host((5, "pv")), *old), old[0])
    new = desired(5, "pv", "/dev/vg0/a,,xvda,untrusted")
    plan = plan_guest(tree, 5, new)
    [change] = plan.changes
    f = new[0].placement.frontend_path
    assert (change.action, change.fields, change.error) == ("repair", ("trusted",), "")
    assert change.ops == (XsOp("write", f + "/trusted", "0"), XsOp("set_perms", f + "/trusted", perms=("n5", "r0")))
    assert change.notes == (f + "/trusted: the frontend reads it when it connects: the new value applies from "
                            "the guest's next connection (a recreate applies it now)",)
    assert_converged(plan.after(tree), 5, new)


# -- cdrom media change ----------------------------------------------------------------------------
@pytest.mark.parametrize("xen_version, old_spec, new_spec, params_written", [
    ("4.17", ",raw,hdc,cdrom", "/srv/iso/a.iso,raw,hdc,cdrom", ["", "aio:/srv/iso/a.iso"]),        # insert
    ("4.17", "/srv/iso/a.iso,raw,hdc,cdrom", "/srv/iso/b.iso,raw,hdc,cdrom", ["", "aio:/srv/iso/b.iso"]),  # change
    ("4.17", "/srv/iso/a.iso,raw,hdc,cdrom", ",raw,hdc,cdrom", ["", ""]),                  # eject
    # 4.20's first (eject) transaction writes the new medium's bare path (XENSTORE-LAYOUT.md §9.1)
    ("4.20", ",raw,hdc,cdrom", "/srv/iso/a.iso,raw,hdc,cdrom", ["/srv/iso/a.iso", "aio:/srv/iso/a.iso"]),
    ("4.20", "/srv/iso/a.iso,raw,hdc,cdrom", "/srv/iso/b.iso,raw,hdc,cdrom", ["/srv/iso/b.iso", "aio:/srv/iso/b.iso"]),
    ("4.20", "/srv/iso/a.iso,raw,hdc,cdrom", ",raw,hdc,cdrom", ["", ""]),
    (None, "/srv/iso/a.iso,raw,hdc,cdrom", "/srv/iso/b.iso,raw,hdc,cdrom", ["", "aio:/srv/iso/b.iso"]),  # as 4.17
])
def test_media_change_in_place_on_hvm(host, xen_version, old_spec, new_spec, params_written):
    old = desired(7, "hvm", old_spec)
    tree = connect(attached(host((7, "hvm")), *old), old[0])
    new = desired(7, "hvm", new_spec)
    plan = plan_guest(tree, 7, new, xen=XenVersion(xen_version, "option") if xen_version else None)
    [change] = plan.changes
    assert (change.action, change.needs, change.fields) == ("media_change", "nothing", ("target",))
    assert [ph.step for ph in change.phases] == ["transaction"] * len(params_written)
    assert [[op.value for op in ph.ops if op.path.endswith("/params")] for ph in change.phases] == \
        [[v, v] for v in params_written]
    after = plan.after(tree)
    assert after.values[new[0].placement.backend_path + "/physical-device"] == "fd:3"  # foreign kept
    assert after.values[new[0].placement.backend_path + "/state"] == "4"                # still connected
    assert_converged(after, 7, new)


def test_media_change_needing_an_unknown_version_is_refused(host):
    old = desired(7, "hvm", ",raw,hdc,cdrom")
    tree = connect(attached(host((7, "hvm")), *old), old[0])
    new = desired(7, "hvm", "/srv/iso/a.iso,raw,hdc,cdrom")
    unknown = XenVersion("4.19", "hypervisor", "Xen 4.19 (hypervisor) is not a version xen.disks is tested with")
    plan = plan_guest(tree, 7, new, xen=unknown)
    [change] = plan.changes
    assert change.action == "media_change" and not change.ops
    assert change.error.startswith("disks[0]: a cdrom media change depends on the Xen version, and Xen 4.19 "
                                   "(hypervisor) is not a version xen.disks is tested with; set the option "
                                   "xen_version"), change.error
    # an eject writes the same in every version: no version needed
    back = desired(7, "hvm", ",raw,hdc,cdrom")
    tree = connect(attached(host((7, "hvm")), *new), new[0])
    [change] = plan_guest(tree, 7, back, xen=unknown).changes
    assert change.action == "media_change" and change.error == "" and change.ops


@pytest.mark.parametrize("new_spec, fmt, steps", [
    ("/srv/iso/b.iso,raw,hdc,cdrom", "raw", ["qmp", "transaction", "qmp", "transaction"]),
    ("/srv/iso/b.iso,qcow2,hdc,cdrom", "qcow2", ["qmp", "transaction", "qmp", "transaction"]),
    ("/srv/iso/b.iso,vhd,hdc,cdrom", "vpc", ["qmp", "transaction", "qmp", "transaction"]),
    (",raw,hdc,cdrom", None, ["qmp", "transaction", "transaction"]),  # xl cd-eject: two transactions too
])
def test_media_change_on_qemu_xen_plans_libxls_qmp(host, new_spec, fmt, steps):
    old = desired(7, "hvm", "/srv/iso/a.iso,raw,hdc,cdrom")
    tree = connect(attached(host((7, "hvm")), *old), old[0])
    tree.values["/libxl/7/dm-version"] = "qemu_xen"
    new = desired(7, "hvm", new_spec)
    [change] = plan_guest(tree, 7, new).changes
    assert change.action == "media_change" and not change.error
    assert [ph.step for ph in change.phases] == steps
    qmp = [[(c.execute, c.arguments, c.fd_path) for c in ph.qmp] for ph in change.phases if ph.step == "qmp"]
    assert qmp[0] == [("query-version", (), ""), ("eject", (("id", "ide-5632"),), "")]
    if fmt:
        declared = parse_disk_spec(new_spec).format
        assert qmp[1] == [
            ("add-fd", (("opaque", "%s:/srv/iso/b.iso" % declared),), "/srv/iso/b.iso"),
            ("blockdev-change-medium", (("id", "ide-5632"), ("filename", QMP_FDSET), ("format", fmt)), "")]
    assert_converged(plan_guest(tree, 7, new).after(tree), 7, new)


@pytest.mark.parametrize("dm_version", [None, "qemu_xen_traditional", "unknown"])
def test_media_change_without_qemu_xen_is_xenstore_only(host, dm_version):
    old = desired(7, "hvm", "/srv/iso/a.iso,raw,hdc,cdrom")
    tree = attached(host((7, "hvm")), *old)
    if dm_version:
        tree.values["/libxl/7/dm-version"] = dm_version
    [change] = plan_guest(tree, 7, desired(7, "hvm", "/srv/iso/b.iso,raw,hdc,cdrom")).changes
    assert [ph.step for ph in change.phases] == ["transaction", "transaction"]


@pytest.mark.parametrize("node, value, message", [
    ("/libxl/7/dm-version", "qemu-xen", "cannot determine the guest's device model version: /libxl/7/dm-version "
                                        "holds 'qemu-xen' (libxl knows unknown, qemu_xen_traditional, qemu_xen)"),
    ("/local/domain/7/image/device-model-domid", "8", "the guest's device model runs in a stub domain"),
])
def test_media_change_refused_like_libxl(host, node, value, message):
    old = desired(7, "hvm", "/srv/iso/a.iso,raw,hdc,cdrom")
    tree = attached(host((7, "hvm")), *old)
    tree.values[node] = value
    plan = plan_guest(tree, 7, desired(7, "hvm", "/srv/iso/b.iso,raw,hdc,cdrom"))
    [change] = plan.changes
    assert change.action == "media_change" and message in change.error and not plan
    with pytest.raises(PlanError):
        plan.check()


def test_read_set_of_an_hvm_cdrom_includes_the_device_model():
    hvm = read_set(XsTree(), 7, desired(7, "hvm", ",raw,hdc,cdrom"))
    assert {"/libxl/7/dm-version", "/local/domain/7/image/device-model-domid"} <= set(hvm.values)
    disk = read_set(XsTree(), 7, desired(7, "hvm", "/dev/vg0/a,,hda"))
    assert "/libxl/7/dm-version" not in disk.values


def test_qmp_commands_resolve_fdset_and_follow_old_qemu():
    bcm = QmpCommand("blockdev-change-medium", (("id", "ide-5632"), ("filename", QMP_FDSET), ("format", "raw")))
    assert bcm.resolved(3).arguments == (("id", "ide-5632"), ("filename", "/dev/fdset/3"), ("format", "raw"))
    assert bcm.resolved(3).for_qemu((7, 2, 0)) == bcm.resolved(3)
    assert bcm.resolved(3).for_qemu((2, 7, 1)) == QmpCommand(
        "change", (("device", "ide-5632"), ("target", "/dev/fdset/3"), ("arg", "raw")))
    assert QmpCommand("eject", (("id", "ide-5632"),)).for_qemu((2, 6, 0)).arguments == (("device", "ide-5632"),)
    assert QmpCommand("add-fd", (("opaque", "raw:/x"),), "/x").describe() == \
        "add-fd opaque=raw:/x (with the file descriptor of /x)"


def test_pv_cdrom_change_needs_recreate(host):
    old = desired(5, "pv", "/srv/iso/a.iso,raw,xvdc,cdrom")
    tree = attached(host((5, "pv")), *old)
    [change] = plan_guest(tree, 5, desired(5, "pv", "/srv/iso/b.iso,raw,xvdc,cdrom")).changes
    assert change.action == "recreate" and change.error


# -- exclusive, keep, absent -----------------------------------------------------------------------
def test_exclusive_detaches_undeclared_except_keep(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda", "/dev/vg0/b,,xvdb", "/dev/vg0/c,,xvdc")
    tree = attached(host((5, "pv")), *ds)
    for d in ds:
        tree = connect(tree, d)
    plan = plan_guest(tree, 5, ds[:1], exclusive=True, keep=["d1p0"])  # alias of xvdb
    assert actions(plan) == [("xvdc", "detach"), ("xvda", "unchanged")]
    after = plan.after(tree)
    assert [c.vdev for c in read_disks(after, 5)] == ["xvda", "xvdb"]
    assert_converged(after, 5, ds[:1], exclusive=True, keep=["xvdb"])
    # without exclusive, undeclared disks are left alone
    assert actions(plan_guest(tree, 5, ds[:1])) == [("xvda", "unchanged")]


def test_absent(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda", "/dev/vg0/b,,xvdb")
    tree = attached(host((5, "pv")), ds[0])
    plan = plan_guest(tree, 5, ds, state="absent")
    assert actions(plan) == [("xvda", "detach"), ("xvdb", "absent")]
    after = plan.after(tree)
    assert read_disks(after, 5) == []
    assert after == host((5, "pv")).copy().apply_all([XsOp("rm", "/local/domain/5/device"),
                                                      XsOp("rm", "/libxl/5/device")])
    assert_converged(after, 5, ds, state="absent")
    assert_converged(after, 5, ["xvda", "d1p0"], state="absent")  # plain vdevs work too


# -- detach: phases and needs ------------------------------------------------------------------------
@pytest.mark.parametrize("frontend_state, force, needs, on_timeout", [
    ("4", False, "guest_cooperation", "fail"),
    ("3", False, "guest_cooperation", "fail"),
    ("1", False, "force", "fail"),       # no frontend driver will answer the close
    ("4", True, "force", "continue"),
    ("6", False, "nothing", "fail"),
])
def test_detach_needs_and_phases(host, frontend_state, force, needs, on_timeout):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = connect(attached(host((5, "pv")), *ds), ds[0], frontend=frontend_state)
    [change] = plan_guest(tree, 5, ds, state="absent", force=force).changes
    assert change.needs == needs
    steps = [ph.step for ph in change.phases]
    assert steps == ["transaction", "wait", "hotplug", "cleanup"]
    close, wait = change.phases[0], change.phases[1]
    b = ds[0].placement.backend_path
    assert close.ops[-2:] == (XsOp("write", b + "/online", "0"), XsOp("write", b + "/state", "5"))
    assert (close.ops[0] == XsOp("rm", ds[0].placement.frontend_path)) == force
    assert (wait.path, wait.values, wait.timeout, wait.on_timeout) == (b + "/state", ("6",), 10, on_timeout)
    assert change.phases[3].placement == ds[0].placement and change.phases[3].ops == change.ops


def test_detach_from_driver_domain_waits_for_devd(host):
    ds = desired(5, "pv", "backend=stor2,/dev/vg1/x,,xvdc")
    tree = attached(host((5, "pv"), driver_domains=(2,)), *ds)
    [change] = plan_guest(tree, 5, ds, state="absent").changes
    assert [(ph.step, ph.path) for ph in change.phases[1:]] == [
        ("wait", "/local/domain/2/backend/vbd/5/51744/state"),
        ("wait_removed", "/local/domain/2/backend/vbd/5/51744"), ("cleanup", "")]


# -- stale entries -------------------------------------------------------------------------------
def _closed(tree, d):
    out = tree.copy()
    out.values[d.placement.backend_path + "/state"] = "6"
    return out


def _backend_gone(tree, d):
    return tree.copy().apply_all([XsOp("rm", d.placement.backend_path)])


def _frontend_gone(tree, d):
    return tree.copy().apply_all([XsOp("rm", d.placement.frontend_path)])


def _half_written(tree, d):
    return tree.copy().apply_all([XsOp("rm", d.placement.libxl_path + "/" + n) for n in ("dev", "mode")])


HANDSHAKE = ["transaction", "wait", "hotplug", "cleanup"]


@pytest.mark.parametrize("damage, reason, teardown", [
    (_closed, "backend Closed", HANDSHAKE),          # online=0, hotplug remove: nothing leaks
    (_backend_gone, "backend directory missing", ["cleanup"]),
    (_half_written, "half-written libxl record (no dev, mode)", HANDSHAKE),  # backend still live
])
def test_stale_entries_are_cleaned_before_attach(host, damage, reason, teardown):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = damage(connect(attached(host((5, "pv")), *ds), ds[0]), ds[0])
    [current] = read_disks(tree, 5)
    assert reason in current.stale
    plan = plan_guest(tree, 5, ds)
    [change] = plan.changes
    assert change.action == "attach" and change.needs == "nothing"
    assert change.stale == ("/libxl/5/device/vbd/51712: " + reason,)
    assert [ph.step for ph in change.phases] == teardown + ["transaction", "wait", "hotplug"]
    after = plan.after(tree)
    assert not any(p.endswith("/physical-device") for p in after.values)
    assert_converged(after, 5, ds)
    # declared elsewhere: reported, left alone
    other = desired(5, "pv", "/dev/vg0/b,,xvdb")
    plan = plan_guest(tree, 5, other)
    assert plan.stale == (("xvda" if reason != "half-written libxl record (no dev, mode)"
                           else "/libxl/5/device/vbd/51712", (reason,)),)


def test_directories_without_a_libxl_record_are_reported_and_replaced(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = host((5, "pv")).apply_all([XsOp("write", ds[0].placement.backend_path + "/params", "/old")])
    [change] = plan_guest(tree, 5, ds).changes
    assert change.stale == ("/local/domain/0/backend/vbd/5/51712: left without a libxl record",)
    after = plan_guest(tree, 5, ds).after(tree)
    assert after.values[ds[0].placement.backend_path + "/params"] == "/dev/vg0/a"


# -- a detach in progress (backend Closing): never cleaned up under a live guest ------------------------
def _closing(tree, d, frontend=None):
    """What a safe remove that timed out leaves: online=0, state=5, the frontend as it was."""
    out = tree.copy()
    out.values[d.placement.backend_path + "/online"] = "0"
    out.values[d.placement.backend_path + "/state"] = "5"
    if frontend is not None:
        out.values[d.placement.frontend_path + "/state"] = frontend
    return out


@pytest.mark.parametrize("frontend", ["1", "2", "3", "4", "5", "6", "7", "0", "x", None])
def test_closing_backend_is_a_detach_in_progress_whatever_the_frontend_says(host, frontend):
    # the frontend is the guest's: what it says is reported, never a reason to clean up
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = _closing(connect(attached(host((5, "pv")), *ds), ds[0]), ds[0], frontend)
    if frontend is None:
        tree = _frontend_gone(tree, ds[0])
    [current] = read_disks(tree, 5)
    assert (current.stale, current.detaching) == ((), True)
    assert current.frontend_present == (frontend is not None)


def test_declared_disk_with_a_detach_in_progress_is_refused_without_force(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = _closing(connect(attached(host((5, "pv")), *ds), ds[0]), ds[0])
    plan = plan_guest(tree, 5, ds)
    [change] = plan.changes
    assert not plan and plan.ops == () and plan.stale == ()
    assert (change.action, change.needs) == ("recreate", "force")
    with pytest.raises(PlanError, match=(
            r"^disks\[0\]: a detach of xvda is in progress: its backend is Closing and the guest has not "
            r"released the disk \(frontend Connected\); once the guest releases it, the next run attaches it "
            r"again; force=true removes it without the guest's cooperation and attaches it again$")):
        plan.check()
    # recreate=true does not bypass it: only force removes entries under a live guest
    assert plan_guest(tree, 5, ds, recreate=True).errors == plan.errors


def test_declared_disk_with_a_detach_in_progress_is_detached_by_force_and_attached(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = _closing(connect(attached(host((5, "pv")), *ds), ds[0]), ds[0])
    plan = plan_guest(tree, 5, ds, force=True)
    [change] = plan.changes
    assert (change.action, change.needs, change.error) == ("recreate", "force", "")
    assert [(ph.step, ph.values[0] if ph.values else ph.action, ph.on_timeout) for ph in change.phases] == [
        ("transaction", "", "fail"), ("wait", "6", "continue"), ("hotplug", "remove", "fail"),
        ("cleanup", "", "fail"), ("transaction", "", "fail"), ("wait", "2", "fail"), ("hotplug", "add", "fail")]
    assert change.phases[0].ops[0] == XsOp("rm", ds[0].placement.frontend_path)   # FORCE_ON
    after = plan.after(tree)
    assert after.values[ds[0].placement.backend_path + "/online"] == "1"
    assert after.values[ds[0].placement.backend_path + "/state"] == "1"
    assert not any(p.endswith("/physical-device") for p in after.values)
    assert_converged(after, 5, ds)


@pytest.mark.parametrize("force, frontend, needs, on_timeout", [
    (False, "4", "guest_cooperation", "fail"),
    (False, "1", "force", "fail"),
    (True, "4", "force", "continue"),
])
@pytest.mark.parametrize("how", ["absent", "exclusive"])
def test_detach_in_progress_is_continued_not_cleaned(host, force, frontend, needs, on_timeout, how):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = _closing(connect(attached(host((5, "pv")), *ds), ds[0]), ds[0], frontend)
    kw = {"state": "absent"} if how == "absent" else {"exclusive": True}
    plan = plan_guest(tree, 5, ds if how == "absent" else [], force=force, **kw)
    [change] = plan.changes
    assert (change.action, change.needs, change.stale) == ("detach", needs, ())
    assert [ph.step for ph in change.phases] == ["transaction", "wait", "hotplug", "cleanup"]
    close, wait = change.phases[0], change.phases[1]
    assert (close.ops[0] == XsOp("rm", ds[0].placement.frontend_path)) == force
    assert (wait.values, wait.on_timeout) == (("6",), on_timeout)
    assert_converged(plan.after(tree), 5, ds if how == "absent" else [], **kw)


def test_undeclared_detach_in_progress_is_reported_and_left_alone(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = _closing(connect(attached(host((5, "pv")), *ds), ds[0]), ds[0])
    plan = plan_guest(tree, 5, desired(5, "pv", "/dev/vg0/b,,xvdb"))
    assert actions(plan) == [("xvdb", "attach")] and plan.stale == ()
    assert plan.warnings == ("xvda: a detach is in progress (backend Closing, frontend Connected)",)


# -- drift of owned nodes, lenient protocol -----------------------------------------------------------
def test_backend_drift_is_repaired_in_place(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = connect(attached(host((5, "pv")), *ds), ds[0])
    b, f = ds[0].placement.backend_path, ds[0].placement.frontend_path
    tree.values[b + "/mode"] = "r"
    tree.perms[b] = ("n0", "r6")
    tree.perms[f] = ("n5",)  # the guest's own directory: reported, left as the guest set it
    plan = plan_guest(tree, 5, ds)
    [change] = plan.changes
    assert (change.action, change.fields) == ("repair", ("access", "permissions"))
    assert change.ops == (XsOp("set_perms", b, perms=("n0", "r5")), XsOp("write", b + "/mode", "w"))
    assert "the permissions of the frontend directory %s are n5 (libxl wrote n5,r0)" % f in change.notes
    assert_converged(plan.after(tree), 5, ds)
    [current] = read_disks(tree, 5)
    assert current.warnings == ("backend node mode = 'r' differs from libxl's copy 'w'",)


def test_protocol_is_compared_leniently(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = attached(host((5, "pv")), *ds)
    tree.values[ds[0].placement.frontend_path + "/protocol"] = "x86_32-abi"
    plan = assert_converged(tree, 5, ds)
    assert plan.changes[0].notes[-1:] == (
        "/local/domain/5/device/vbd/51712/protocol = 'x86_32-abi' (libxl wrote 'x86_64-abi'; "
        "the guest may rewrite it)",)


# -- virtio --------------------------------------------------------------------------------------------
def test_virtio_only_at_creation(host):
    ds = desired(3, "pvh", "/dev/mmc,raw,xvda,specification=virtio", arch="arm")
    tree = host((3, "pvh"))
    plan = plan_guest(tree, 3, ds)
    [change] = plan.changes
    assert change.needs == "restart" and not plan
    with pytest.raises(PlanError, match=r"^disks\[0\]: a virtio disk cannot be hot-plugged \(libxl: virtio disks "
                                        r"exist only from the guest's creation\); declare it in the guest's "
                                        r"configuration and restart the guest$"):
        plan.check()
    created = plan_guest(tree, 3, ds, creating=True)
    assert actions(created) == [("xvda", "attach")] and created
    after = created.after(tree)
    assert_converged(after, 3, ds)
    [gone] = plan_guest(after, 3, ds, state="absent").changes
    assert gone.needs == "restart" and "cannot be hot-unplugged" in gone.error


def test_record_names_that_are_not_device_numbers(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda")
    tree = attached(host((5, "pv")), *ds)
    tree.values["/libxl/5/device/vbd/051712"] = ""
    tree.values["/libxl/5/device/vbd/x"] = ""
    assert [c.devid for c in read_disks(tree, 5)] == [51712]
    assert plan_guest(tree, 5, ds).warnings == ("/libxl/5/device/vbd/051712 is not a device number",
                                                "/libxl/5/device/vbd/x is not a device number")


VIRTIO_POOL = ["/dev/v%d,raw,xvd%s,specification=virtio" % (i, "abcdef"[i]) for i in range(6)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.sets(st.integers(0, 5)), second=st.sets(st.integers(0, 5)))
def test_virtio_disks_change_only_with_the_guest(host, first, second):
    stat = {"/dev/v%d" % i: "block" for i in range(6)}

    def virtio(indexes):
        [out] = validate_declaration([GuestDeclaration(3, tuple(VIRTIO_POOL[i] for i in sorted(indexes)),
                                                       guest_type="pvh")], stat_target=stat, arch="arm")
        return out
    base = host((3, "pvh"))
    created = plan_guest(base, 3, virtio(first), creating=True)
    assert not created.errors
    tree = created.after(base)
    assert_converged(tree, 3, virtio(first))
    running = plan_guest(tree, 3, virtio(second), exclusive=True)
    # while it runs, every change is refused and asks for a restart; nothing else is planned
    assert not running
    assert sorted(c.vdev for c in running.changes if c.error) == \
        sorted(c.vdev for c in running.changes if c.action not in ("unchanged", "resume"))
    assert not any(c.ops for c in running.changes if c.action == "resume")
    assert all(c.needs == "restart" for c in running.changes if c.error)


def test_mixed_kinds_warning(host):
    tree = attached(host((3, "pvh")), *desired(3, "pvh", "/dev/mmc,raw,xvda,specification=virtio", arch="arm"))
    tree = attached(tree, *desired(3, "pvh", "/dev/vg0/a,,xvdb"))
    assert plan_guest(tree, 3, []).warnings[0] == (
        "guest 3 has both vbd and virtio_disk records: libxl refuses to list its disks "
        "(\"Invalid configuration, both xen and virtio paths are present\")")


# -- read sets: the plan looks at nothing else ----------------------------------------------------------
def restrict(tree, domid, ds):
    """What the runtime reads: guest_roots, then read_set computed on that first read."""
    first = XsTree()
    roots = guest_roots(domid)
    for path in roots.values:
        if path in tree:
            first.values[path] = tree.values[path]
    for root in roots.subtrees:
        for rel, value in tree.subtree(root).items():
            first.values[root + "/" + rel] = value
    second = read_set(first, domid, ds)
    out = first.copy()
    for path in second.values:
        if path in tree:
            out.values[path] = tree.values[path]
    for root in second.subtrees:
        for rel, value in tree.subtree(root).items():
            out.values[root + "/" + rel] = value
    for path in second.perms:
        if path in tree:
            out.perms[path] = tree.perms[path]
    return out, second


def summary(plan):
    return [(c.vdev, c.action, c.fields, c.needs, c.stale, c.error) for c in plan.changes]


def test_noop_reads_exactly_the_owned_paths(host):
    ds = desired(5, "pv", "/dev/vg0/a,,xvda", "/srv/a.img,raw,xvdb,ro,direct-io-safe")
    tree = connect(attached(host((5, "pv")), *ds), ds[0])
    partial, second = restrict(tree, 5, ds)
    assert second == owned_paths(ds)
    assert not plan_guest(partial, 5, ds)
    assert summary(plan_guest(partial, 5, ds)) == summary(plan_guest(tree, 5, ds))
    # reads per disk: every frontend/backend node but `online`, the backend's `hotplug-status`
    # (an unfinished attach), the libxl subtree (a listing + its values) and two directory
    # permissions (the two directories' values are read too: not counted here)
    per_disk = [len([v for v in second.values if d.placement.frontend_path + "/" in v or
                     d.placement.backend_path + "/" in v]) + 1 + len(d.libxl) + 2 for d in ds]
    assert per_disk == [owned_node_count(d) for d in ds]


@pytest.mark.parametrize("new_specs, kw", [
    (["/dev/vg0/b,,xvda"], {}),
    (["/dev/vg0/b,,xvda"], {"recreate": True}),
    (["/dev/vg0/a,,xvda"], {"exclusive": True}),
    (["/dev/vg0/c,,xvdc"], {"exclusive": True, "keep": ["xvdb"]}),
    (["/dev/vg0/a,,xvda", "/dev/vg0/b,,xvdb"], {"state": "absent"}),
    (["/dev/vg0/a,,xvda", "/dev/vg0/c,,xvdc"], {}),                 # xvdc recorded on the driver domain
    (["/dev/vg0/a,,xvda", "/dev/vg0/c,,xvdc"], {"recreate": True}),
])
def test_plan_on_the_read_set_equals_plan_on_everything(host, new_specs, kw):
    old = desired(5, "pv", "/dev/vg0/a,,xvda", "/srv/a.img,raw,xvdb,ro", "backend=stor2,/dev/vg1/x,,xvdc")
    tree = connect(attached(host((5, "pv"), driver_domains=(2,)), *old), old[0])
    tree.values[old[2].placement.backend_path + "/state"] = "6"   # and its backend is Closed: stale
    new = desired(5, "pv", *new_specs)
    partial = restrict(tree, 5, new)[0]
    assert summary(plan_guest(partial, 5, new, **kw)) == summary(plan_guest(tree, 5, new, **kw))


# -- read-back ---------------------------------------------------------------------------------------
def test_read_disks_states_and_canonical_spec(host):
    ds = desired(7, "hvm", "/srv/g.qcow2,qcow2,hda", ",raw,hdc,cdrom")
    tree = connect(attached(host((7, "hvm")), *ds), ds[0], frontend="4", backend="4")
    hda, hdc = read_disks(tree, 7)
    assert (hda.vdev, hda.backend_kind, hda.frontend_state, hda.backend_state, hda.stale) == \
        ("hda", "qdisk", 4, 4, ())
    assert (state_name(hda.frontend_state), state_name(hdc.backend_state), state_name(None)) == \
        ("Connected", "Initialising", "Unknown")
    assert current_to_disk(hda, tree) == settled_disk(ds[0])
    assert current_to_disk(hdc, tree) == settled_disk(ds[1])
    assert render_disk_spec(current_to_disk(hda, tree)) == \
        "format=qcow2,vdev=hda,access=rw,backendtype=qdisk,target=/srv/g.qcow2"
    assert render_disk_spec(current_to_disk(hdc, tree)) == "format=empty,vdev=hdc,access=ro,devtype=cdrom,backendtype=qdisk"


@pytest.mark.parametrize("spec", [
    "/dev/vg0/a,,xvda", "/srv/a.img,raw,xvdb,ro,direct-io-safe,untrusted", "/dev/vg0/a,,xvda,no-discard",
    "/dev/vg0/a,,xvda,ro,discard", "/dev/vg0/a,,xvda,script=block-iscsi", "backend=2,/dev/vg1/x,,xvdc",
    "/srv/g.qcow2,qcow2,xvde", "format=raw,vdev=xvda,access=rw,colo,colo-host=10.0.0.2,colo-port=9000,"
    "colo-export=g,active-disk=/a.img,hidden-disk=/h.img,target=/srv/a.img",
])
def test_read_back_round_trip(host, spec):
    [d] = desired(5, "pv", spec)
    tree = attached(host((5, "pv"), driver_domains=(2,)), d)
    [current] = read_disks(tree, 5)
    assert current_to_disk(current, tree) == settled_disk(d)
    assert render_disk_spec(current_to_disk(current, tree)) == render_disk_spec(settled_disk(d))
    # what a user declared, rendered again after libxl's choices, is the same disk
    assert parse_disk_spec(render_disk_spec(settled_disk(d))) == settled_disk(d)


def test_desired_nodes_cover_the_three_directories(host):
    [d] = desired(5, "pv", "/dev/vg0/a,,xvda")
    nodes = desired_nodes(d)
    assert len(nodes) == len(d.frontend) + len(d.backend) + len(d.libxl) == owned_node_count(d) - 3
    tree = attached(host((5, "pv")), d)
    assert all(tree.values[p] == v for p, v in nodes.items())


# -- property: planning again after applying gives an empty plan --------------------------------------
POOL = ["/dev/vg0/a,,xvda", "/dev/vg0/b,,xvda", "/dev/vg0/a,,xvda,ro", "/srv/a.img,raw,xvdb,ro",
        "/srv/a.img,raw,xvdb,ro,direct-io-safe", "/dev/vg0/c,,xvdc,untrusted", "/dev/vg0/c,,d2p0,no-discard",
        "/srv/g.qcow2,qcow2,xvdd", "/srv/iso/a.iso,raw,hdc,cdrom", ",raw,hdc,cdrom", "/srv/iso/b.iso,raw,hdc,cdrom",
        "backend=stor2,/dev/vg1/x,,xvde", "/dev/vg0/d,,xvde"]


def _declaration(indexes):
    by_vdev = {}
    for i in indexes:
        spec = POOL[i]
        vdev = [p for p in spec.split(",") if p.startswith(("xvd", "hd", "d2"))][0]
        key = "xvdc" if vdev == "d2p0" else vdev
        by_vdev.setdefault(key, spec)
    return sorted(by_vdev.values())


def _tampered(tree, d):
    out = tree.copy()
    out.values[d.placement.backend_path + "/mode"] = "x"
    if d.placement.frontend_path in out.values:  # xenstore has no permissions without a node
        out.perms[d.placement.frontend_path] = ("n0",)
    return out


DAMAGE = {"closed": _closed, "backend_gone": _backend_gone, "frontend_gone": _frontend_gone,
          "half_written": _half_written, "tampered": _tampered, "closing": _closing}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.integers(0, len(POOL) - 1), max_size=6),
       second=st.lists(st.integers(0, len(POOL) - 1), max_size=6),
       guest_type=st.sampled_from(["pv", "hvm"]),
       exclusive=st.booleans(), connected=st.booleans(), absent=st.booleans(),
       damage=st.lists(st.tuples(st.sampled_from(sorted(DAMAGE)), st.integers(0, 5)), max_size=2))
def test_plan_after_then_plan_again_is_empty(host, first, second, guest_type, exclusive, connected, absent,
                                             damage):
    base = host((5, guest_type), driver_domains=(2,))
    old = desired(5, guest_type, *_declaration(first))
    tree = plan_guest(base, 5, old).after(base)
    if connected:
        for d in old:
            tree = connect(tree, d)
    for name, index in damage:
        if old:
            tree = DAMAGE[name](tree, old[index % len(old)])
    new = desired(5, guest_type, *_declaration(second))
    kw = {"state": "absent"} if absent else {"exclusive": exclusive, "recreate": True}
    kw["force"] = any(name == "closing" for name, _index in damage)  # a declared detach in progress needs it
    plan = plan_guest(tree, 5, new, **kw)
    assert plan == plan_guest(tree, 5, new, **kw)          # deterministic
    assert not plan.errors
    after = plan.after(tree)
    assert_converged(after, 5, new, **kw)
    # nodes outside the device directories are never touched
    outside = [p for p in tree.values if "/device" not in p and "/backend" not in p]
    assert {p: after.values.get(p) for p in outside} == {p: tree.values[p] for p in outside}
    if not absent:
        for d in new:
            # a frontend directory the guest removed is left to it (reported, not re-created)
            skip = ("/state", "/online", "/params") + (
                () if d.placement.frontend_path in after.values else (d.placement.frontend_path,))
            assert {p: v for p, v in desired_nodes(d).items() if not p.startswith(skip) and not p.endswith(skip)} == \
                {p: after.values.get(p) for p in desired_nodes(d) if not p.startswith(skip) and not p.endswith(skip)}
