# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a guest may do to its own frontend nodes, and what the plan makes of it (issue 10, items
1, 2, 6): only dom0's nodes decide; the frontend is reported; an unfinished attach is resumed."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.declaration import (
    DeclarationError,
    GuestDeclaration,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._core.layout import attach_ops
from ansible_collections.xen.disks.plugins.module_utils._core.plan import plan_guest, read_disks
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsOp

STAT = {"/dev/vg0/a": "block", "/dev/vg0/b": "block"}


def desired(domid, *specs):
    [out] = validate_declaration([GuestDeclaration(domid, specs, guest_type="pv")], stat_target=STAT)
    return out


def connected(tree, *ds):
    """`ds` attached by libxl's transaction, then connected by blkback, the script and the guest."""
    out = tree.copy()
    for d in ds:
        out.apply_all(attach_ops(d))
        p = d.placement
        out.values[p.backend_path + "/state"] = "4"
        out.values[p.frontend_path + "/state"] = "4"
        out.apply(XsOp("write", p.backend_path + "/physical-device", "fd:3"))
    return out


def guest_removes(*names):
    return lambda tree, f: tree.apply_all([XsOp("rm", f + ("/" + n if n else "")) for n in names])


def guest_writes(name, value):
    return lambda tree, f: tree.apply(XsOp("write", f + "/" + name, value))


def guest_sets_perms(*perms):
    return lambda tree, f: tree.apply(XsOp("set_perms", f, perms=perms))


# What a guest can do to /local/domain/5/device/vbd/51712 (it owns it): the disk stays live.
HOSTILE = {
    "backend removed": guest_removes("backend"),
    "state removed": guest_removes("state"),
    "directory removed": guest_removes(""),
    "state Closed": guest_writes("state", "6"),
    "state garbage": guest_writes("state", "-1x"),
    "backend elsewhere": guest_writes("backend", "/local/domain/0/backend/vbd/7/51712"),
    "perms widened": guest_sets_perms("n5", "r0", "r7"),
    "perms narrowed": guest_sets_perms("n5"),
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_a_guest_rewriting_its_frontend_never_makes_a_disk_stale_nor_tears_it_down(host, what):
    ds = desired(5, "/dev/vg0/a,,xvda")
    p = ds[0].placement
    tree = connected(host((5, "pv")), *ds)
    HOSTILE[what](tree, p.frontend_path)
    [current] = read_disks(tree, 5)
    assert current.stale == () and not current.detaching and not current.attach_unfinished
    assert current.observed, "what the guest did is reported"
    for kw in ({}, {"exclusive": True}):
        plan = plan_guest(tree, 5, ds, **kw)
        assert not plan.errors
        [change] = plan.changes
        assert change.action in ("unchanged", "repair")
        assert set(current.observed) <= set(change.notes)
        # nothing outside the guest's own directory is written, nothing is removed
        assert all(op.path.startswith(p.frontend_path + "/") and op.action in ("write", "set_perms")
                   for op in plan.ops), plan.ops
        assert [ph.step for ph in change.phases] in ([], ["transaction"])
        after = plan.after(tree)  # no KeyError (issue 10 item 1)
        assert after.values[p.backend_path + "/state"] == "4"
        assert not plan_guest(after, 5, ds)


@pytest.mark.parametrize("what", ["perms widened", "perms narrowed"])
def test_frontend_permissions_are_reported_never_rewritten(host, what):
    ds = desired(5, "/dev/vg0/a,,xvda")
    tree = connected(host((5, "pv")), *ds)
    HOSTILE[what](tree, ds[0].placement.frontend_path)
    plan = plan_guest(tree, 5, ds)
    assert not plan and [c.action for c in plan.changes] == ["unchanged"]
    [note] = [n for n in plan.changes[0].notes if "permissions" in n]
    assert note.startswith("the permissions of the frontend directory /local/domain/5/device/vbd/51712 are ")
    assert note.endswith("(libxl wrote n5,r0)")


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_a_disk_whose_backend_is_live_counts_for_the_sharing_rule_whatever_its_frontend(host, what):
    ds = desired(5, "/dev/vg0/a,,xvda")
    tree = connected(host((5, "pv"), (7, "pv")), *ds)
    HOSTILE[what](tree, ds[0].placement.frontend_path)
    with pytest.raises(DeclarationError, match=r"already attached to guest 5 as xvda"):
        validate_declaration([GuestDeclaration(7, ("/dev/vg0/a,,xvdb",), guest_type="pv")], stat_target=STAT,
                             attached=read_disks(tree, 5))
    # a record without a backend directory holds nothing: the target is free
    gone = tree.copy().apply_all([XsOp("rm", ds[0].placement.backend_path)])
    validate_declaration([GuestDeclaration(7, ("/dev/vg0/a,,xvdb",), guest_type="pv")], stat_target=STAT,
                         attached=read_disks(gone, 5))


def test_absent_detaches_with_the_handshake_even_when_the_guest_removed_its_frontend(host):
    ds = desired(5, "/dev/vg0/a,,xvda")
    tree = connected(host((5, "pv")), *ds)
    guest_removes("")(tree, ds[0].placement.frontend_path)
    [change] = plan_guest(tree, 5, ds, state="absent").changes
    assert change.action == "detach" and change.stale == ()
    assert [ph.step for ph in change.phases] == ["transaction", "wait", "hotplug", "cleanup"]
    assert change.phases[0].ops == (XsOp("write", ds[0].placement.backend_path + "/online", "0"),
                                    XsOp("write", ds[0].placement.backend_path + "/state", "5"))


def test_an_attach_whose_backend_never_reached_initwait_is_resumed(host):
    ds = desired(5, "/dev/vg0/a,,xvda", "/dev/vg0/b,,xvdb")
    tree = host((5, "pv")).apply_all(attach_ops(ds[0]))  # both ends sit in Initialising
    tree = connected(tree, ds[1])
    [current, _other] = read_disks(tree, 5)
    assert current.attach_unfinished and current.backend_state == 1
    plan = plan_guest(tree, 5, ds)
    resume, unchanged = plan.changes
    assert (resume.action, unchanged.action) == ("resume", "unchanged")
    assert resume.ops == () and [ph.step for ph in resume.phases] == ["wait", "hotplug"]
    assert resume.phases[0].values == ("2",)
    assert resume.notes[0].startswith("the attach did not finish: the backend is still Initialising")
    assert not plan and plan.acts and resume.acts and not unchanged.acts
    # not declared: a warning that says how to resume it
    [warning] = plan_guest(tree, 5, ds[1:]).warnings
    assert warning.startswith("xvda: the attach did not finish")
    # in InitWait, the hotplug script libxl runs has not answered: still unfinished
    tree.values[ds[0].placement.backend_path + "/state"] = "2"
    [resume, _unchanged] = plan_guest(tree, 5, ds).changes
    assert resume.action == "resume" and "hotplug script never answered" in resume.notes[0]
    # once the script answered, nothing is left to do
    tree.apply(XsOp("write", ds[0].placement.backend_path + "/hotplug-status", "connected"))
    assert not plan_guest(tree, 5, ds).acts


def test_a_closed_backend_is_torn_down_with_its_remove_script_before_the_attach(host):
    ds = desired(5, "/dev/vg0/a,,xvda")
    tree = connected(host((5, "pv")), *ds)
    tree.values[ds[0].placement.backend_path + "/state"] = "6"
    [change] = plan_guest(tree, 5, ds).changes
    assert change.action == "attach"
    steps = [(ph.step, ph.action) for ph in change.phases]
    assert steps[:4] == [("transaction", ""), ("wait", ""), ("hotplug", "remove"), ("cleanup", "")]
