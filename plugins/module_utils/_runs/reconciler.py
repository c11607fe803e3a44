# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The live run's state and its first half: read once, validate, plan (`Reconciler`).

Private to the xen.disks collection: no compatibility promise. Standard library only (no
Ansible imports); Python 3.8+. The pure pieces live in `_core` (`declaration`: validation,
`layout`: what libxl writes, `plan`: read-back and plan); `_io.xenstore` is the only code that
talks to xenstore. Section numbers (§3.4...) are those of docs/XENSTORE-LAYOUT.md.

One reconcile:
1. one snapshot (watch-validated reads): the host's domains, the declared guests' libxl records,
   then exactly `plan.read_set` of each declared guest (the owned nodes of its recorded
   declared disks, the states of its other disks; of a declared disk without a record, only
   its two directories); for guests that change, the directories the cleanup walks up. No
   other guest is read: a run costs its guests, not the host;
2. the whole declaration validated (`declaration.validate_declaration`); one bad disk and
   nothing is written;
3. a plan per guest (`plan.plan_guest`); check mode stops here (after the sharing rule, when the
   plan puts a target into use);
3b. when it does: the target locks, then the read-write sharing rule against the whole host
   (`check_sharing`: one read per disk record of the host);
4. per guest, the plan's phases in lock-step (`live_apply.apply_guest`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

from ansible_collections.xen.disks.plugins.module_utils._core import declaration as _declaration
from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import DiskSpecError
from ansible_collections.xen.disks.plugins.module_utils._core.layout import DEFAULT_SCRIPT_DIR
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid
from ansible_collections.xen.disks.plugins.module_utils._io.dom0 import (
    host_arch,
    run_hotplug_script,
    stat_target,
    xen_version_facts,
)
from ansible_collections.xen.disks.plugins.module_utils._io.libxl_config import (
    DEFAULT_LIBXL_DIR,
    DomainFiles,
    FileLock,
    LibxlFileError,
    uuid_of_vm_path,
)
from ansible_collections.xen.disks.plugins.module_utils._io.qmp import DEFAULT_RUN_DIR, socket_path
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import Failures, ReconcileError
from ansible_collections.xen.disks.plugins.module_utils._runs.guest_requests import AbsentDisk
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import (
    domid_of_ref,
    frontend_node,
    guest_of,
    guest_views,
    host_xen_version,
    int_or_none,
    merge,
    online_paths,
    read_cleanup_view,
    read_libxl_records,
    backend_state_node,
    records_naming,
    vm_path_node,
)
from ansible_collections.xen.disks.plugins.module_utils._runs.info import unsupported_warning
from ansible_collections.xen.disks.plugins.module_utils._runs.live_results import change_result


class Reconciler:
    """One xen_disk call: its settings and records (failures, warnings, per-disk results, what it
    committed), and the steps before any write: read, validate, plan, lock the targets, check the
    sharing rule again. `live_apply.apply_guest` carries out each guest's plan."""

    def __init__(self, conn, params, *, check_mode=False, want_diff=False, stat=stat_target,
                 run_script=run_hotplug_script, xen=None):
        self.conn = conn
        self.params = params
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.stat = stat
        self.run_script = run_script
        self.wait = params.get("wait", True)
        self.timeout = params.get("timeout")
        self.hotplug_policy = params.get("hotplug_scripts") or "auto"
        self.script_dir = params.get("script_dir") or DEFAULT_SCRIPT_DIR
        self.arch = params.get("arch") or host_arch()
        self.libxl_dir = params.get("libxl_dir") or DEFAULT_LIBXL_DIR
        self.run_dir = params.get("libxl_run_dir") or DEFAULT_RUN_DIR
        self.warnings = []
        # the host's Xen toolstack: what its xl writes where versions differ (_core.xen_version);
        # (XenVersion, warnings) of `host_xen_version`, read before xenstore is opened
        self.xen, xen_warnings = xen if xen is not None else host_xen_version(params, xen_version_facts)
        self.warnings += list(xen_warnings) + unsupported_warning(self.xen)
        self.results = {}        # (domid, devid, kind) -> result dict
        self.failures = Failures()
        self.applied = {}  # domid -> the ops this run committed for the guest, in order
        self.sharing = ((), {}, set(), [])  # declaration, names, declared disks, their targets: check_sharing
        self.retries = 0         # transactions re-planned after a conflict (EAGAIN)
        self.replans = 0         # guests planned again: another writer changed their records
        self.committed = False   # a transaction of this run was committed
        self.stage = "connecting to xenstore"  # what the run was doing, for connection errors
        self.unsettled = set()   # declared guests whose reads did not settle: left alone
        self.skip_missing = params.get("missing_domains") == "skip"
        self.missing = []        # declared guests not on the host (missing_domains=skip)

    # -- step 1-3: read, validate, plan ---------------------------------------------------
    def plan(self, guests):
        """Resolve the guests, read the host from one snapshot, validate and plan. Returns
        ([(guest, desired, plan)], tree) (tree = what was read)."""
        snap = self.conn.snapshot_by_owner(lambda reader: self._read_and_plan(reader, guests), guest_of,
                                           observed=frontend_node)
        planned, tree = snap.value
        self._unsettled(guests, snap)
        errors = [e for g, _d, plan in planned if g.domid not in self.unsettled for e in plan.errors]
        if errors or (self.check_mode and self.needs_sharing_check(planned)):
            self.check_sharing()  # its errors first, as the declaration's; an apply checks under its locks
        if errors:
            results = [r for g, _d, plan in planned for r in self.change_results(g, plan)]
            raise ReconcileError("\n".join(errors), errors=errors, disks=results)
        errors = []
        for guest, _desired, plan in planned:
            guest.vm_path = tree.get(vm_path_node(guest.domid))
            error = self._plan_config(guest, plan)
            if error:
                errors.append(error)
            errors += self._missing_scripts(guest, plan)
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)
        return planned, tree

    def _missing_scripts(self, guest, plan):
        """hotplug_scripts=run with an `add` script that is not on this host: known before the
        first write (the attach would be written, then fail at its script)."""
        if self.hotplug_policy != "run" or not self.wait:
            return []
        return ["%s: hotplug script %s is not an executable file on this host (hotplug_scripts=run; "
                "auto runs it only when present)" % (self.label(guest, change), phase.script)
                for change in plan.changes if change.acts
                for phase in change.phases
                if phase.step == _plan.STEP_HOTPLUG and phase.action == "add" and not os.access(phase.script, os.X_OK)]

    # -- libxl's domain configuration -------------------------------------------------------
    def _plan_config(self, guest, plan):
        """Read the guest's libxl JSON file (no lock: libxl replaces it by a rename) and plan
        its changes; a warning when it is missing, an error message when it is unreadable."""
        uuid = uuid_of_vm_path(guest.vm_path)
        wanted = _libxl_json.plan_steps(plan.changes, {})
        if uuid is None:
            if wanted:
                self.warnings.append("%s: %s has no uuid (/local/domain/%d/vm is %r): libxl's domain "
                                     "configuration cannot be kept in step; xenstore only"
                                     % (guest.where, guest.name or guest.domid, guest.domid, guest.vm_path))
            return None
        guest.files = DomainFiles(self.libxl_dir, guest.domid, uuid)
        try:
            data = guest.files.read()
            guest.config = _libxl_json.parse_config(data) if data is not None else None
        except (LibxlFileError, _libxl_json.LibxlConfigError) as exc:
            return "%s: libxl's domain configuration %s: %s" % (guest.where, guest.files.path, exc)
        if guest.config is None:
            if wanted:
                self.warnings.append(
                    "%s: libxl's domain configuration %s does not exist (the guest was not created by "
                    "xl/libxl, or libxl_dir is wrong): xenstore changed only; xl does not know these "
                    "disks and drops them at the guest's next xl reboot, save or migration"
                    % (guest.where, guest.files.path))
            return None
        guest.config_steps = _libxl_json.plan_steps(plan.changes, guest.config)
        return None

    def alive(self, guest):
        return lambda: self.conn.read_value(vm_path_node(guest.domid)) == guest.vm_path

    def _unsettled(self, guests, snap):
        """Guests whose own (dom0-side) nodes kept changing while the host was read: a declared
        one is not changed in this run and fails, the others are only a warning."""
        declared = {g.domid: g for g in guests}
        for domid in sorted(snap.unsettled):
            what = "the xenstore nodes of guest %d (its libxl records or backends) kept changing while " \
                   "they were read (%d reads)" % (domid, snap.attempts)
            if domid in declared:
                self.unsettled.add(domid)
                self.failures.add(declared[domid], "%s: %s: not changed in this run; run again" % (declared[domid].where, what))
            else:
                self.warnings.append("%s; the read-write sharing rule used the last read" % what)

    def _read_and_plan(self, reader, guests):
        """The body of the snapshot (re-run if xenstore changed while it read)."""
        domains = reader.domains()
        self.domains = domains
        names = {}
        for domid, name in domains.items():
            if name is not None:
                names.setdefault(name, []).append(domid)
        guests = self._resolve(guests, domains, names)
        # only the declared guests: the rules that need the whole host read it later, and only
        # what they need (`records_naming`), when the plan puts a target into a backend
        tree = read_libxl_records(reader, sorted(g.domid for g in guests))
        for guest in guests:
            guest.guest_type = tree.get("/libxl/%d/type" % guest.domid)
        self._check_guests(guests)

        present = [g for g in guests if g.state == "present"]
        declarations = [_declaration.GuestDeclaration(
            g.domid, tuple(self._with_default_backend(g)), g.guest_type or "pv", g.width, g.prefix)
            for g in present]
        desired_lists = self._validate(declarations, names, attached=())
        self.sharing = (declarations, names, {(g.domid, d.devid) for g, ds in zip(present, desired_lists) for d in ds},
                        [d.disk.target for ds in desired_lists for d in ds
                         if d.disk.target and d.disk.effective_format != "empty"])
        desired_of = {id(g): d for g, d in zip(present, desired_lists)}
        for guest in guests:
            guest.desired = desired_of[id(guest)] if guest.state == "present" else self._absent_items(guest)

        # One batch: the nodes each declared guest's plan compares. A declared disk without a libxl
        # record is new: only its two directories are read (almost always missing: an attach
        # writes every node), and every node of those that exist in a second batch.
        values, perms, new = [], [], []
        for guest in guests:
            owned = [d for d in guest.desired if not isinstance(d, AbsentDisk)]
            recorded = {c.devid for c in _plan.read_disks(tree, guest.domid)}
            read_set = _plan.read_set(tree, guest.domid, [d for d in owned if d.devid in recorded])
            values += read_set.values
            perms += read_set.perms
            for desired in owned:
                if desired.devid not in recorded:
                    new.append(desired)
                    values += [desired.placement.frontend_path, desired.placement.backend_path]
            values.append(vm_path_node(guest.domid))  # names libxl's domain configuration
            values += online_paths(tree, guest.domid)  # checked again by each apply transaction
        merge(tree, reader.read_nodes(values, perms_of=perms))
        left = _plan.owned_paths([d for d in new if d.placement.frontend_path in tree
                                  or d.placement.backend_path in tree])
        if left.values:
            merge(tree, reader.read_nodes(left.values, perms_of=left.perms))

        views = guest_views(tree, [g.domid for g in guests])
        planned = []
        for guest in guests:
            guest.view = views[guest.domid]
            plan = self._plan_guest(guest.view, guest, guest.desired)
            removing = [c for c in plan.changes if c.changed and (c.action in (_plan.DETACH, _plan.RECREATE) or c.stale)]
            if removing:
                # the walk-up of empty parents needs the complete directories around what is removed
                placements = [c.current.placement for c in removing if c.current is not None]
                placements += [c.desired.placement for c in removing if c.desired is not None]
                # what the view already holds wins: the cleanup view enters nodes it did not
                # read (only their existence matters to the walk-up) with an empty value
                guest.view = merge(read_cleanup_view(reader, placements), guest.view)
                plan = self._plan_guest(guest.view, guest, guest.desired)
            planned.append((guest, guest.desired, plan))
        return planned, tree

    # what puts a dom0 target into a backend: these take the target's lock
    _TARGET_ACTIONS = (_plan.ATTACH, _plan.RECREATE, _plan.MEDIA_CHANGE)

    def target_locks(self, planned):
        """FileLocks (not yet held), in one order, on each target this run puts into a backend.
        Two runs of this module attaching one image take the same lock, so the second checks the
        sharing rule (`check_sharing`) only once the first has committed. Lock files live in
        libxl's directory, beside libxl's own (none on a host without it)."""
        if not os.path.isdir(self.libxl_dir):
            return []
        keys = set()
        for guest, _desired, plan in planned:
            if guest.domid in self.unsettled:
                continue
            for change in plan.changes:
                disk = change.desired.disk if change.desired is not None else None
                if change.acts and change.action in self._TARGET_ACTIONS and disk is not None and disk.target \
                        and disk.effective_format != "empty":
                    keys.add(_declaration.target_key(change.desired.placement.backend_domid, disk.target))
        timeout = self.timeout if self.timeout is not None else _plan.HOTPLUG_TIMEOUT
        return [FileLock(os.path.join(self.libxl_dir, "xen-disks-target-%s.lock"
                                      % hashlib.sha256(("%d:%s" % key).encode("utf-8", "surrogateescape")).hexdigest()[:32]),
                         timeout=timeout)
                for key in sorted(keys)]

    # what may put a dom0 target into use: the sharing rule is checked for these
    _USING_ACTIONS = (_plan.ATTACH, _plan.RECREATE, _plan.MEDIA_CHANGE, _plan.REPAIR, _plan.RESUME)

    def needs_sharing_check(self, planned):
        """Whether this run may put a declared target into use (attach, re-create, media change,
        and the repair or resume of an attached disk): only then is the host read whole."""
        return any(change.acts and change.action in self._USING_ACTIONS and change.desired is not None
                   and change.desired.disk.target and change.desired.disk.effective_format != "empty"
                   for guest, _desired, plan in planned if guest.domid not in self.unsettled
                   for change in plan.changes)

    def check_sharing(self):
        """The read-write sharing rule against every disk record of the host that may name a
        declared target (`records_naming`: one read per record, in one consistent read) and is
        not a declared disk itself (those are checked among themselves). A run that attaches
        calls it with its target locks held: another run may have attached one of its targets
        after this run read its guests (its commit is visible now; a later one waits for the
        lock). Raises ReconcileError before anything is written."""
        declarations, names, declared, targets = self.sharing
        if not targets:
            return
        found = self.conn.snapshot(lambda reader: records_naming(reader, targets), observed=backend_state_node)
        attached = [c for c in found if (c.domid, c.devid) not in declared]
        if attached:
            self._validate(declarations, names, attached=attached)

    def _validate(self, declarations, names, attached):
        try:
            return _declaration.validate_declaration(
                declarations, stat_target=self.stat, resolve_domain=lambda ref: domid_of_ref(self.domains, names, ref),
                arch=self.arch, script_dir=self.script_dir, attached=attached, xen=self.xen)
        except _declaration.DeclarationError as exc:
            raise ReconcileError(str(exc), errors=list(exc.messages)) from None

    def _resolve(self, guests, domains, names):
        """The guests found on the host (domid and name set); the others are errors, or skipped."""
        errors = []
        seen = {}
        found_guests = []
        self.missing = []
        for guest in guests:
            ref = guest.domain
            number = _declaration.domid_text(ref)
            if number is not None:
                domid = number
                if domid not in domains:
                    if self.skip_missing:
                        self.missing.append(ref)
                        continue
                    errors.append("%s: %s" % (guest.where, _declaration.no_domain_with_id(ref)))
                    continue
            else:
                found = names.get(ref, [])
                if not found:
                    if self.skip_missing:
                        self.missing.append(ref)
                        continue
                    errors.append("%s: no domain named %r on this host" % (guest.where, ref))
                    continue
                if len(found) > 1:
                    errors.append("%s: several domains are named %r (ids %s): give the domain id"
                                  % (guest.where, ref, ", ".join(str(d) for d in found)))
                    continue
                domid = found[0]
            if domid in seen:
                errors.append("%s: domain %s is already declared by %s" % (guest.where, ref, seen[domid]))
                continue
            seen[domid] = guest.where
            guest.domid = domid
            guest.name = domains[domid] or ""
            found_guests.append(guest)
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)
        return found_guests

    def _check_guests(self, guests):
        errors = []
        for guest in guests:
            if guest.domid == 0:
                errors.append("%s: dom0's disks are not managed (libxl's local attach owns /libxl/0)"
                              % guest.where)
            elif guest.guest_type is None:
                errors.append("%s: domain %d has no toolstack record (/libxl/%d/type): it was not "
                              "created by xl/libxl" % (guest.where, guest.domid, guest.domid))
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)

    def _with_default_backend(self, guest):
        """The guest's disk items; a guest-level `backend` becomes the default of its disks."""
        if guest.backend is None:
            return guest.disks
        out = []
        for item in guest.disks:
            try:
                disk = _declaration.parse_item(item)
            except DiskSpecError:
                out.append(item)  # reported, with its place, by the validation
                continue
            out.append(disk if disk.backend is not None else dataclasses.replace(disk, backend=guest.backend))
        return out

    def _absent_items(self, guest):
        """For state=absent only the vdevs matter: a vdev string, or the vdev of a spec/dict."""
        out, errors = [], []
        for index, item in enumerate(guest.disks):
            label = "%sdisks[%d]" % (guest.prefix, index)
            vdev = None
            if isinstance(item, str) and "," not in item and "=" not in item:
                vdev = item
            elif isinstance(item, dict) and "vdev" in item:
                vdev = item["vdev"]
            else:
                try:
                    vdev = _declaration.parse_item(item).vdev
                except DiskSpecError as exc:
                    errors.append("%s: %s" % (label, exc))
                    continue
            try:
                devid = vdev_to_devid(str(vdev))
            except VdevError as exc:
                errors.append("%s.vdev: %s" % (label, exc))
                continue
            out.append(AbsentDisk(devid, label, str(vdev)))
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)
        return out

    def _plan_guest(self, tree, guest, desired):
        try:
            return _plan.plan_guest(tree, guest.domid, desired, state=guest.state, exclusive=guest.exclusive,
                                    keep=guest.keep, recreate=guest.recreate, force=guest.force,
                                    creating=guest.creating, resume=bool(self.wait), xen=self.xen)
        except ValueError as exc:
            raise ReconcileError("%s: %s" % (guest.where, exc)) from None

    def replan(self, guest):
        """The guest's plan made again from a fresh consistent read (validation included),
        and the changes of libxl's domain configuration that go with it."""
        snap = self.conn.snapshot_by_owner(lambda reader: self._read_and_plan(reader, [guest]), guest_of,
                                           observed=frontend_node)
        planned, tree = snap.value
        if guest.domid in snap.unsettled:
            raise ReconcileError("its xenstore nodes (libxl records or backends) kept changing while they "
                                 "were read (%d reads)" % snap.attempts)
        plan = planned[0][2]
        if not plan.errors:
            guest.vm_path = tree.get(vm_path_node(guest.domid))
            guest.config_steps = {}
            error = self._plan_config(guest, plan)
            if error:
                raise ReconcileError(error, errors=[error])
        return plan

    def final_states(self, planned):
        """Read the frontend and backend states of every changed disk after the run (0 = gone)."""
        paths = {}
        for guest, plan in planned:
            for change in plan.changes:
                if not change.acts:
                    continue
                item = change.desired if change.desired is not None and change.action != _plan.DETACH \
                    else change.current
                if item is None:
                    continue
                p = item.placement
                key = (guest.domid, change.devid, change.kind)
                paths[key] = (p.frontend_path + "/state", p.backend_path + "/state")
        values = self.conn.read_values([p for pair in paths.values() for p in pair])
        for key, (front, back) in paths.items():
            result = self.results.get(key)
            if result is not None:
                result["frontend_state"] = int_or_none(values[front]) or 0
                result["backend_state"] = int_or_none(values[back]) or 0

    # -- results ----------------------------------------------------------------------------
    @staticmethod
    def label(guest, change):
        """How messages name a disk: `disks[2] (xvdc)`, or the vdev of an undeclared one."""
        if change.label and change.label != change.vdev:
            return "%s (%s)" % (change.label, change.vdev)
        where = guest.prefix.rstrip(".") + ": " if guest.prefix else ""
        return "%s%s" % (where, change.vdev or change.devid)

    def result(self, guest, change):
        key = (guest.domid, change.devid, change.kind)
        if key not in self.results:
            self.results[key] = result = change_result(guest, change)
            if result["qmp"]:
                result["qmp_socket"] = socket_path(guest.domid, self.run_dir)
        return self.results[key]

    def change_results(self, guest, plan):
        return [self.result(guest, c) for c in plan.changes]

    def config_results(self, guest, plan):
        """Each disk's `libxl_config`: written (this run stores its entry), recorded (libxl's
        file has an entry for it), missing (it has none), or no_file."""
        for change in plan.changes:
            result = self.result(guest, change)
            if guest.config is None:
                result["libxl_config"] = "no_file"
            elif id(change) in guest.config_steps:
                result["libxl_config"] = "written"
            else:
                vdev = change.current.libxl.get("dev") if change.current is not None else None
                vdev = vdev or change.vdev
                result["libxl_config"] = "recorded" if _libxl_json.entry_for(guest.config, vdev) else "missing"
