# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a xen_disk run reports: one result dict per disk change, the Ansible diffs of a guest,
and the module's result of the plans carried out (or checked).

Private to the xen.disks collection: no compatibility promise. Standard library only.
"""

from __future__ import annotations

from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import render_disk_spec
from ansible_collections.xen.disks.plugins.module_utils._io.qmp import (
    DEFAULT_RUN_DIR,
    socket_listening_path,
    socket_path,
)
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import spec_of_record
from ansible_collections.xen.disks.plugins.module_utils._runs.live_apply import HOTPLUG_NONE


def change_result(guest, change):
    desired, current = change.desired, change.current
    if desired is not None:
        placement = desired.placement
    elif current is not None:
        placement = current.placement
    else:
        placement = None
    return {
        "domain": guest.name,
        "domid": guest.domid,
        "vdev": change.vdev,
        "devid": change.devid,
        "kind": change.kind or None,
        "action": change.action,
        "spec": disk_spec_of(desired) if desired is not None
        else (spec_of_record(current) if current is not None else None),
        "backend_kind": placement.backend_kind if placement else None,
        "backend_domid": placement.backend_domid if placement else None,
        "differing": list(change.fields),
        "needs": change.needs,
        "stale": list(change.stale),
        "notes": list(change.notes),
        "error": change.error or None,
        "frontend_state": current.frontend_state if current is not None else None,
        "backend_state": current.backend_state if current is not None else None,
        "hotplug": HOTPLUG_NONE,
        "libxl_config": None,
        "qmp": qmp_commands(change),
        "qmp_socket": None,
        "attach_unfinished": bool(current is not None and current.attach_unfinished),
        "frontend_observed": list(current.observed) if current is not None else [],
    }


def qmp_commands(change):
    """The QMP commands a change sends to the guest's QEMU (as planned)."""
    return [command.describe() for phase in change.phases if phase.step == _plan.STEP_QMP
            for command in phase.qmp]


def disk_spec_of(desired):
    """Canonical xl spec of a declared disk, libxl's choices explicit (`_plan.settled_disk`)."""

    return render_disk_spec(_plan.settled_disk(desired))


def _affected_paths(plan):
    """Directories a guest's plan touches (for the diff): device directories and op paths."""
    dirs = set()
    for change in plan.changes:
        for item in (change.desired, change.current):
            if item is not None:
                p = item.placement
                dirs.update((p.frontend_path, p.backend_path, p.libxl_path))
        dirs.update(op.path for op in change.ops)
    return sorted(dirs)


def _tree_lines(tree, roots):
    lines = []
    for path in sorted(tree.values):
        if any(path == r or path.startswith(r + "/") for r in roots):
            perms = tree.perms.get(path)
            lines.append("%s = %r%s" % (path, tree.values[path], (" (%s)" % ",".join(perms)) if perms else ""))
    return lines


def _specs_of(tree, domid, script_dir, names):
    lines = []
    for current in _plan.read_disks(tree, domid):
        spec = spec_of_record(current, script_dir, names, tree)
        lines.append(spec if spec is not None else "# %s: unreadable record %s" % (current.vdev, current.libxl_path))
    return lines


def guest_diffs(guest, plan, tree, script_dir, names, run_dir=DEFAULT_RUN_DIR):
    """Ansible diffs of one guest: canonical xl specs, and the xenstore nodes, before/after;
    and the QMP commands a media change sends to the guest's QEMU, if any."""
    after = plan.after(tree)
    roots = _affected_paths(plan)
    title = "%s (domid %d)" % (guest.name or guest.domain, guest.domid)
    specs_before = _specs_of(tree, guest.domid, script_dir, names)
    specs_after = _specs_of(after, guest.domid, script_dir, names)
    diffs = [
        {"before_header": "%s: xl disks" % title, "after_header": "%s: xl disks" % title,
         "before": "\n".join(specs_before) + "\n" if specs_before else "",
         "after": "\n".join(specs_after) + "\n" if specs_after else ""},
        {"before_header": "%s: xenstore" % title, "after_header": "%s: xenstore" % title,
         "before": "\n".join(_tree_lines(tree, roots)) + "\n",
         "after": "\n".join(_tree_lines(after, roots)) + "\n"},
    ]
    if guest.config_steps:
        steps = [s for c in plan.changes for s in guest.config_steps.get(id(c), ())]
        header = "%s: libxl domain configuration %s, disks" % (title, guest.files.path)
        diffs.append({"before_header": header, "after_header": header,
                      "before": _libxl_json.disks_text(guest.config),
                      "after": _libxl_json.disks_text(_libxl_json.apply_steps(guest.config, steps))})
    qmp = ["%s: %s" % (c.vdev, line) for c in plan.changes if c.changed for line in qmp_commands(c)]
    if qmp:
        header = "%s: QMP %s" % (title, socket_path(guest.domid, run_dir))
        diffs.append({"before_header": header, "after_header": header, "before": "",
                      "after": "\n".join(qmp) + "\n"})
    return diffs


def xen_disk_result(rec, planned, want_diff):
    """The module's result of the plans carried out (or checked)."""
    changed = False
    stale = []
    diffs = []
    for guest, _desired, plan in planned:
        if guest.domid in rec.unsettled:
            continue
        changed = changed or plan.acts or bool(guest.config_steps)
        rec.change_results(guest, plan)
        rec.config_results(guest, plan)
        for entry, reasons in plan.stale:
            stale.append({"domain": guest.name, "domid": guest.domid, "entry": entry,
                          "reasons": list(reasons), "cleaned": False})
        for change in plan.changes:
            if change.stale and change.changed:
                stale.append({"domain": guest.name, "domid": guest.domid, "entry": change.vdev,
                              "reasons": list(change.stale), "cleaned": True})
        rec.warnings += ["%s: %s" % (guest.where, w) for w in plan.warnings]
        rec.warnings += ["%s: the attach did not finish: %s; %s"
                         % (rec.label(guest, c), c.current.unfinished_reason, "resumed" if c.action == _plan.RESUME
                            else "not resumed (wait=false)")
                         for c in plan.changes if c.current is not None and c.current.attach_unfinished
                         and c.action in (_plan.RESUME, _plan.UNCHANGED, _plan.REPAIR)]
        path = socket_path(guest.domid, rec.run_dir)
        for change in plan.changes:
            if rec.check_mode and change.changed and qmp_commands(change) and not socket_listening_path(path):
                rec.warnings.append("%s: the media change needs the guest's QEMU, but %s is not a socket: an "
                                    "apply would fail (is the device model running?)" % (rec.label(guest, change), path))
        if want_diff and (plan or guest.config_steps):
            diffs += guest_diffs(guest, plan, guest.view, rec.script_dir, rec.domains, rec.run_dir)
    result = {
        "changed": changed or rec.committed,
        "disks": [r for g, _d, p in planned if g.domid not in rec.unsettled
                  for r in (rec.result(g, c) for c in p.changes)],
        "stale": stale,
        "missing_domains": list(rec.missing),
        "xenstore_retries": rec.retries,
        "xenstore_replans": rec.replans,
        "warnings": rec.warnings,
    }
    if want_diff:
        result["diff"] = diffs
    return result
