# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One guest's plan carried out: the phases of its disks in lock-step (phase k of every disk
together), each step kind by one handler, the state they share in one object (`GuestApply`):

- `qmp_step`: a media change's QMP commands on the guest's one QMP connection;
- `transaction_step`: the batch's xenstore ops in one transaction (the guest's records checked
  inside it; cleanups re-planned on its view), with libxl's domain configuration stored under
  the userdata lock before its commit or after it (`LibxlFile`);
- `wait_step`: watch-driven waits for the backends;
- `hotplug_step`: the hotplug scripts, where libxl would run them.

`apply_guest` re-plans the guest when another writer changed its records before its first
transaction. Private to the xen.disks collection: no compatibility promise. Standard library only.
Section numbers (§3.4...) are those of docs/XENSTORE-LAYOUT.md.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._core.layout import TreeView, cleanup_ops, path_cleanup_ops
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import RM, SET_PERMS, XsTree
from ansible_collections.xen.disks.plugins.module_utils._io.dom0 import HotplugFailure
from ansible_collections.xen.disks.plugins.module_utils._io.libxl_config import LibxlFileError
from ansible_collections.xen.disks.plugins.module_utils._io.qmp import (
    QmpCommandError,
    QmpError,
    QmpProtocolError,
    QmpRun,
    socket_path,
)
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreError, XenstoreTimeout
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import (
    in_toolstack_records,
    int_or_none,
    merge,
    online_paths,
    read_cleanup_view,
    read_libxl_records,
    record_differences,
    toolstack_records,
)

# A fast backend may already be past InitWait (the guest connected) when the watch is set:
# libxl's wait for InitWait is satisfied by any later live state.
INIT_REACHED = ("2", "3", "4")

HOTPLUG_RAN = "ran"
HOTPLUG_SKIPPED = "skipped"
HOTPLUG_UDEV = "udev"
HOTPLUG_NONE = "none"

# Times a guest is planned again when another writer changed its libxl records between the
# read and the first transaction (each re-plan reads the host again).
MAX_REPLANS = 4

# A frontend in these states still holds the disk (blkfront closes once it is unused).
FRONTEND_HOLDING = ("3", "4", "5")


class _RecordsChanged(Exception):
    """Raised inside a guest's transaction (which is then aborted): its libxl records are not
    what its plan expects. `differences`: one message per record (`record_differences`)."""

    def __init__(self, differences):
        super().__init__("; ".join(differences))
        self.differences = differences


# -- the guest's apply, re-planned while nothing of it is written -------------------------------
def apply_guest(run, guest, plan):
    """Carry out the plan of one guest (`run`: the Reconciler); failures are collected in
    run.failures.

    A plan holds only while the guest's libxl records are as it read them (another run or
    `xl` may have attached, changed or detached a disk since). Each of the guest's
    transactions reads them inside itself (xenstored then fails its commit with EAGAIN if
    they change before it, and it is retried) and compares them with what the plan
    expects. At the first transaction nothing of the guest is written yet: the guest is
    planned again on a fresh read (at most MAX_REPLANS times). Later, the run stops for
    the guest with a message naming the change. Returns the plan carried out."""
    for replans in range(MAX_REPLANS + 1):
        try:
            _apply_plan(run, guest, plan)
            return plan
        except _RecordsChanged as exc:
            seen = "; ".join(exc.differences)
        who = "%s %s" % (guest.where, guest.domain)
        if replans == MAX_REPLANS:
            _not_applied(run, guest, plan, "%s: another writer kept changing its disks while this run "
                         "applied its plan (last: %s); nothing was written for it: run again"
                         % (who, seen))
            return plan
        run.replans += 1
        run.stage = "planning %s again" % who
        for key in [k for k in run.results if k[0] == guest.domid]:
            del run.results[key]
        try:
            replanned = run.replan(guest)
        except ReconcileError as exc:
            _not_applied(run, guest, plan, "%s: another writer changed its disks after this run read "
                         "them (%s), and planning again failed: %s" % (who, seen, exc))
            return plan
        plan = replanned
        if plan.errors:
            for error in plan.errors:
                run.failures.add(guest, "%s (planned again: another writer changed %s's disks after this "
                                        "run read them: %s)" % (error, guest.domain, seen))
            return plan
    return plan  # not reached


def _not_applied(run, guest, plan, message):
    run.failures.add(guest, message)
    for change in plan.changes:
        if change.acts:
            run.result(guest, change)["error"] = message


def _apply_plan(run, guest, plan):
    """One attempt at the plan: the libxl file's own steps and the device lock, then the phases."""
    state = GuestApply(run, guest, plan)
    try:
        state.libxl_file.store_alone()
        state.libxl_file.lock_device()
        run_phases(state)
    except (LibxlFileError, _libxl_json.LibxlConfigError) as exc:
        run.failures.add(guest, "%s: libxl's domain configuration: %s" % (guest.where, exc))
    finally:
        state.qmp.close()
        state.libxl_file.unlock_device()


class GuestApply:
    """What the steps of one guest's apply share: the run (its settings, failures, warnings and
    per-disk results), the guest and its plan, the phases each change has left, libxl's file,
    the guest's QMP connection, and the records each transaction checks."""

    def __init__(self, run, guest, plan):
        self.run = run
        self.guest = guest
        self.plan = plan
        self.where = "%s %s" % (guest.where, guest.domain)
        self.changes = [c for c in plan.changes if c.acts]
        self.remaining = {id(c): list(c.phases) for c in self.changes}  # the phases each change has left
        self.skip_hotplug = set()  # id(change): no remove script (backend gone, or removed without its answer)
        self.libxl_file = LibxlFile(run, guest, plan)
        timeout = run.timeout if run.timeout is not None else _plan.HOTPLUG_TIMEOUT
        self.qmp = QmpRun(socket_path(guest.domid, run.run_dir), timeout,
                          guest.files.qmp_lock(run.alive(guest)) if guest.files is not None else None)
        self.qmp_changes = [id(c) for c in self.changes if any(ph.step == _plan.STEP_QMP for ph in c.phases)]
        # What only a toolstack writes, as this plan expects it (it then takes this run's writes).
        # After the first write, what this plan needs: its own disks' records (every record for
        # exclusive, which answers for the whole set), tolerating the loss of those it removes.
        self.expected = XsTree({p: v for p, v in guest.view.values.items() if in_toolstack_records(p, guest.domid)})
        self.devids = None if guest.exclusive else {c.devid for c in plan.changes}
        self.removing = {ph.placement.libxl_path for c in self.changes for ph in c.phases
                         if ph.step == _plan.STEP_CLEANUP}
        self.first = True  # no transaction of the guest committed yet: a records change re-plans it

    def next_batch(self):
        """The next phase of every change that has phases left: [(change, phase)]."""
        return [(c, self.remaining[id(c)].pop(0)) for c in self.changes if self.remaining[id(c)]]

    def stop(self, change):
        """No more phases for `change` (its step failed)."""
        self.remaining[id(change)] = []


def run_phases(state):
    """Phase k of every change together: its QMP commands, one transaction, the waits, the
    hotplug scripts. The device lock covers the phases up to `devlock_until`; the QMP connection
    is closed once the media changes are done (libxl keeps it open until then)."""
    index = -1
    while True:
        index += 1
        state.libxl_file.unlock_device_after(index)
        batch = state.next_batch()
        if not batch:
            break
        batch = qmp_step(state, batch)
        if not transaction_step(state, batch, index):
            return
        wait_step(state, batch)
        hotplug_step(state, batch)
        if state.qmp_changes and all(not state.remaining[i] for i in state.qmp_changes):
            state.qmp.close()  # libxl keeps QMP open until the media change is done


# -- QMP -------------------------------------------------------------------------------------
def qmp_step(state, batch):
    """Send the batch's QMP phases; returns the batch without the changes whose QMP failed."""
    for change, phase in batch:
        if phase.step == _plan.STEP_QMP and not _send_qmp(state, change, phase):
            state.stop(change)
    return [(c, ph) for c, ph in batch if ph.step != _plan.STEP_QMP or state.remaining[id(c)]]


def _send_qmp(state, change, phase):
    """Send a QMP phase's commands on the guest's QMP connection. False (and a failure
    recorded) when QEMU is absent, refuses or does not answer."""
    run, guest, qmp = state.run, state.guest, state.qmp
    result = run.result(guest, change)
    if phase is change.phases[0]:
        result["qmp"] = []
    try:
        session = qmp.open()
        for command in phase.qmp:
            if id(change) in qmp.fdsets:
                command = command.resolved(qmp.fdsets[id(change)])
            command = command.for_qemu(session.version)
            answer = session.execute(command.execute, command.arguments, command.fd_path or None)
            result["qmp"].append(command.describe())
            if command.execute == "add-fd":
                fdset = answer.get("fdset-id") if isinstance(answer, dict) else None
                if not isinstance(fdset, int):
                    raise QmpProtocolError("QEMU answered add-fd on %s without an fdset-id: %r"
                                           % (session.path, answer))
                qmp.fdsets[id(change)] = fdset
    except (QmpError, LibxlFileError) as exc:
        if phase is change.phases[0]:
            where = "nothing was changed: QEMU and xenstore keep the old medium"
        else:
            where = ("the drive is left empty in QEMU and in xenstore (libxl leaves it so too); "
                     "a next run inserts the declared medium")
        run.failures.add(guest, "%s: media change failed: %s; %s" % (run.label(guest, change), exc, where))
        if not isinstance(exc, QmpCommandError):
            qmp.close()  # the connection is unusable; another change opens a new one
        return False
    return True


# -- the transaction -------------------------------------------------------------------------
def transaction_step(state, batch, index):
    """The batch's transaction and cleanup phases in one xenstore transaction, libxl's file
    stored with it (device_disk_add / cdrom_insert: inside the transaction's retry loop, after
    its checks and before its commit, under the userdata lock) or after it. False when another
    writer changed the guest's disks after its first transaction: the run stops for the guest."""
    run, guest = state.run, state.guest
    with_txn, after_txn = state.libxl_file.steps_at(batch, index)
    txn = [(c, ph) for c, ph in batch if ph.step in (_plan.STEP_TRANSACTION, _plan.STEP_CLEANUP)]
    if not txn:
        return True
    run.stage = "applying the changes of %s" % state.where
    lock = state.libxl_file.userdata_lock() if with_txn else None
    try:
        _transaction(state, txn, before_commit=(lambda: state.libxl_file.store(with_txn)) if with_txn else None)
    except _RecordsChanged as exc:
        if state.first:
            raise
        message = ("%s: another writer changed its disks while this run applied its plan (%s); "
                   "this run stopped for it: run again" % (state.where, "; ".join(exc.differences)))
        run.failures.add(guest, message)
        for change in state.changes:
            if state.remaining[id(change)]:
                run.result(guest, change)["error"] = message
        return False
    finally:
        if lock is not None:
            lock.release()
    state.first = False
    if after_txn:
        state.libxl_file.update(after_txn).release()
    return True


def _without_frontend_cleanup(phase):
    """A phase's ops without the forced frontend removal planned on the snapshot (the leading
    removals of the frontend directory and of its ancestors), which the transaction plans again."""
    ops = list(phase.ops)
    if phase.frontend_cleanup is not None:
        frontend = phase.frontend_cleanup.frontend_path
        while ops and ops[0].action == RM and (ops[0].path == frontend or frontend.startswith(ops[0].path + "/")):
            ops.pop(0)
    return ops


def _transaction(state, batch, before_commit=None):
    """One transaction of a guest's phase: the guest's records checked against `state.expected`
    (raises _RecordsChanged), `before_commit()` (libxl's JSON file), then the cleanups
    re-planned on this transaction's view and the planned ops. `state.expected` then takes this
    run's own changes."""
    run, guest = state.run, state.guest
    expected = state.expected
    devids = None if state.first else state.devids
    removing = () if state.first else state.removing
    cleanups = [ph.placement for _c, ph in batch if ph.step == _plan.STEP_CLEANUP]
    forced = [ph.frontend_cleanup for _c, ph in batch
              if ph.step == _plan.STEP_TRANSACTION and ph.frontend_cleanup is not None]
    fixed = [op for _c, ph in batch if ph.step == _plan.STEP_TRANSACTION for op in _without_frontend_cleanup(ph)]
    domid = guest.domid
    # A forced frontend removal's walk-up of empty parents, decided on the guest's snapshot
    # view (its own nodes are never read inside a transaction: its writes would make ours
    # conflict) with this run's earlier writes and this batch's other ops applied: a sibling
    # that another change of the batch creates keeps the parent.
    forced_ops = []
    if forced:
        view = TreeView(guest.view)
        view.apply_all(op for op in run.applied.get(domid, []) + fixed if op.action != SET_PERMS)
        for placement in forced:
            step = path_cleanup_ops(view, placement.frontend_path)
            view.apply_all(step)
            forced_ops += step

    def plan_fn(reader):
        # read inside the transaction: a change by another writer before the commit is EAGAIN
        found = read_libxl_records(reader, [domid])
        merge(found, reader.read_nodes(online_paths(found, domid)))
        differences = record_differences(toolstack_records(expected, domid, devids),
                                         toolstack_records(found, domid, devids), removing)
        if differences:
            raise _RecordsChanged(differences)
        if before_commit is not None:
            before_commit()
        # cleanups first, re-planned on this transaction's view (also after EAGAIN)
        work = read_cleanup_view(reader, cleanups)
        ops = []
        for placement in cleanups:
            step = cleanup_ops(work, placement)
            work.apply_all(step)
            ops += step
        return ops + forced_ops + fixed

    outcome = run.conn.transaction(plan_fn)
    run.committed = True
    run.applied.setdefault(domid, []).extend(outcome.ops)
    run.retries += outcome.attempts - 1
    for op in outcome.ops:
        if in_toolstack_records(op.path, domid):
            try:
                expected.apply(op)
            except KeyError:
                pass  # permissions of a node the records do not hold


# -- libxl's domain configuration file ---------------------------------------------------------
class LibxlFile:
    """libxl's domain configuration of one guest's apply: which steps go with which phase, the
    userdata lock around each store, the device lock over a media change (libxl_cdrom_insert
    holds it over the whole change). Nothing to do when the guest has no file, or the host no
    libxl directory (no libxl to share the locks with)."""

    def __init__(self, run, guest, plan):
        self.run = run
        self.guest = guest
        if guest.files is not None and os.path.isdir(run.libxl_dir):
            self.by_change, self.alone, self.devlock_until = self._phases(plan)
        else:
            self.by_change, self.alone, self.devlock_until = {}, [], -1
        self.devlock = None

    def _phases(self, plan):
        """{id(change): {phase index: (steps with its transaction, steps after it)}}, the steps
        with no transaction of their own, and the last phase index the device lock covers."""
        by_change, alone, devlock_until = {}, [], -1
        for change in plan.changes:
            if change.action == _libxl_json.MEDIA_CHANGE and change.changed:
                # libxl_cdrom_insert: the device lock from before its first QMP command to the end
                devlock_until = max(devlock_until, len(change.phases) - 1)
            steps = self.guest.config_steps.get(id(change))
            if not steps:
                continue
            txns = [i for i, ph in enumerate(change.phases) if ph.step == _plan.STEP_TRANSACTION]
            if change.action in _libxl_json.ATTACHING and change.changed and txns:
                by_change[id(change)] = {txns[-1]: (steps, [])}
            elif change.action == _libxl_json.MEDIA_CHANGE and change.changed and txns:
                eject, insert = steps
                if len(txns) < 2:
                    by_change[id(change)] = {txns[0]: ([eject], [insert])}
                else:
                    by_change[id(change)] = {txns[0]: ([eject], []), txns[1]: ([insert], [])}
            else:
                alone += steps
        return by_change, alone, devlock_until

    def steps_at(self, batch, index):
        """(steps stored with the batch's transaction, steps stored after it) at phase `index`."""
        with_txn, after_txn = [], []
        for change, _phase in batch:
            steps = self.by_change.get(id(change), {}).get(index)
            if steps:
                with_txn += steps[0]
                after_txn += steps[1]
        return with_txn, after_txn

    def store_alone(self):
        """Entries missing for attached disks: libxl's file alone, under its lock."""
        if self.alone:
            self.update(self.alone).release()

    def lock_device(self):
        if self.devlock_until >= 0:
            self.devlock = self.guest.files.device_lock(self.run.alive(self.guest)).acquire()

    def unlock_device_after(self, index):
        if self.devlock is not None and index > self.devlock_until:
            self.devlock.release()

    def unlock_device(self):
        if self.devlock is not None:
            self.devlock.release()

    def userdata_lock(self):
        return self.guest.files.userdata_lock(self.run.alive(self.guest)).acquire()

    def update(self, steps):
        """Under the userdata lock: read the file, apply `steps`, store it if an entry changed;
        returns the lock (held) for the caller to release after its xenstore transaction."""
        lock = self.userdata_lock()
        try:
            self.store(steps)
        except BaseException:
            lock.release()
            raise
        return lock

    def store(self, steps):
        """Read the file, apply `steps`, store it if an entry changed (the caller holds the lock)."""
        guest, warnings = self.guest, self.run.warnings
        data = guest.files.read()
        if data is None:
            warning = "%s: libxl's domain configuration %s disappeared: not recreated" % (guest.where, guest.files.path)
            if warning not in warnings:
                warnings.append(warning)
            return
        doc = _libxl_json.parse_config(data)
        if any(step.entry is not None for step in steps):
            guest.files.store(_libxl_json.render_config(_libxl_json.apply_steps(doc, steps)))


# -- waits for the backends ---------------------------------------------------------------------
def wait_step(state, batch):
    """The batch's waits (when the run waits): a backend that fails its wait stops its change
    (or, FORCE_ON, is removed anyway and its remove script skipped); one that is gone needs no
    remove script."""
    run, guest = state.run, state.guest
    waits = [(c, ph) for c, ph in batch if ph.step in (_plan.STEP_WAIT, _plan.STEP_WAIT_REMOVED)]
    if not (waits and run.wait):
        return
    run.stage = "waiting for the backends of %s" % state.where
    failed, gone = _waits(run, waits)
    state.skip_hotplug |= gone  # the backend is gone: no remove script to run on it
    if any(phase.on_timeout != "continue" for _c, phase, _m in failed):
        # a backend that never answered may be a disk another writer removed meanwhile
        found = read_libxl_records(run.conn, [guest.domid])
        merge(found, run.conn.read_nodes(online_paths(found, guest.domid)))
        others = record_differences(toolstack_records(state.expected, guest.domid, state.devids),
                                    toolstack_records(found, guest.domid, state.devids), state.removing)
        if others:
            failed = [(c, ph, m if ph.on_timeout == "continue" else
                       "%s (another writer changed the guest's disks meanwhile: %s)"
                       % (m, "; ".join(others))) for c, ph, m in failed]
    for change, phase, message in failed:
        label = run.label(guest, change)
        if phase.on_timeout == "continue":
            # FORCE_ON: removed anyway; libxl then skips the remove script
            run.warnings.append("%s: %s; removed without the backend's answer" % (label, message))
            state.skip_hotplug.add(id(change))
        else:
            run.failures.add(guest, "%s: %s" % (label, message))
            state.stop(change)


def _waits(run, waits):
    """Wait for each backend (they progress concurrently: one deadline per phase timeout).
    Returns ([(change, phase, message)] of the waits that failed, {id(change)} of the
    closes that found the backend already removed (by a driver domain or another run))."""
    failed, gone = [], set()
    start = time.monotonic()
    for change, phase in waits:
        timeout = run.timeout if run.timeout is not None else phase.timeout
        remaining = max(0.0, start + timeout - time.monotonic())
        # A backend directory that goes away never comes back to the awaited state: only
        # the toolstack (another run, `xl`) or a driver domain's devd removes it.
        if phase.step == _plan.STEP_WAIT_REMOVED:
            values, what = (None,), "the driver domain to remove %s" % phase.path
        elif tuple(phase.values) == ("2",):
            values, what = INIT_REACHED + (None,), "the backend to reach InitWait"
        else:
            values, what = tuple(phase.values) + (None,), "the backend to close"
        try:
            value = run.conn.wait_for(phase.path, values, remaining)
            if value is None and phase.step == _plan.STEP_WAIT:
                if values[:len(INIT_REACHED)] == INIT_REACHED:
                    failed.append((change, phase, "the backend was removed before it reached InitWait "
                                   "(%s: missing)" % phase.path))
                else:
                    gone.add(id(change))
        except XenstoreTimeout as exc:  # any other XenstoreError ends the run (run_xen_disk)
            last = "missing" if exc.last is None else "%s (%s)" % (
                exc.last, _plan.state_name(int_or_none(exc.last)))
            hint = ""
            desired = change.desired
            if phase.step == _plan.STEP_WAIT and values[:len(INIT_REACHED)] == INIT_REACHED and \
                    desired is not None and desired.placement.backend_kind == "qdisk":
                hint = (": nothing serves this disk (no QEMU runs for the guest: libxl starts one only for "
                        "a guest created with a QEMU-served disk; or QEMU refused the disk, see its log "
                        "/var/log/xen/qemu-dm-<guest>.log). The guest does not see it; the entries stay, as "
                        "libxl leaves them: state=absent with force=true removes them")
            elif phase.step == _plan.STEP_WAIT and values[:len(INIT_REACHED)] == INIT_REACHED:
                hint = ": is the backend driver running (blkback, QEMU, the virtio daemon)? " \
                       "The entries stay, as libxl leaves them"
            elif phase.step == _plan.STEP_WAIT and phase.on_timeout != "continue":
                hint = _close_timeout_hint(run, change)
            failed.append((change, phase, "timed out after %g s waiting for %s (%s: %s)%s"
                           % (timeout, what, phase.path, last, hint)))
    return failed, gone


def _close_timeout_hint(run, change):
    """Why a backend did not close: the guest still holds the disk (its frontend is live), or
    the frontend let go (or never connected) and no backend driver answered."""
    item = change.current if change.current is not None else change.desired
    try:
        front = run.conn.read_value(item.placement.frontend_path + "/state") if item is not None else None
    except XenstoreError:
        return ""
    if front in FRONTEND_HOLDING:
        return ": the guest did not release the disk; force=true removes it without the guest's cooperation"
    shown = "missing" if front is None else "%s (%s)" % (front, _plan.state_name(int_or_none(front)))
    return (": the backend did not answer (the guest's frontend is %s): is the backend driver running "
            "(blkback, QEMU)? force=true removes the disk without it" % shown)


# -- hotplug scripts ----------------------------------------------------------------------------
# Scripts of one batch run at once, at most this many: libxl runs a new domain's disk scripts
# concurrently too, and Xen's `block` script takes its own lock around the part that must not.
HOTPLUG_CONCURRENCY = 4


def hotplug_step(state, batch):
    """The batch's hotplug phases, their scripts run concurrently; a failed `add` stops its
    change. Xenstore is read only here, before and after the scripts, never from their threads."""
    run = state.run
    to_run = []  # (change, phase, env, timeout)
    for change, phase in batch:
        if phase.step != _plan.STEP_HOTPLUG:
            continue
        run.stage = "running the hotplug scripts of %s" % state.where
        outcome = _hotplug_not_run(run, state.guest, change, phase, skip=id(change) in state.skip_hotplug)
        if outcome is not None:
            run.result(state.guest, change)["hotplug"] = outcome
            continue
        env = dict(phase.env)
        if run.params.get("xenstore_socket"):
            env["XENSTORED_PATH"] = run.conn.path  # the scripts' xenstore-* tools use the same daemon
        to_run.append((change, phase, env, run.timeout if run.timeout is not None else phase.timeout))
    errors = _run_scripts(run.run_script, [(ph.script, ph.action, env, t) for _c, ph, env, t in to_run])
    for (change, phase, _env, _timeout), error in zip(to_run, errors):
        outcome = _hotplug_outcome(run, state.guest, change, phase, error)
        run.result(state.guest, change)["hotplug"] = outcome
        if outcome not in (HOTPLUG_RAN, HOTPLUG_SKIPPED, HOTPLUG_UDEV, HOTPLUG_NONE):
            state.stop(change)


def _run_scripts(run_script, jobs):
    """Run each (script, action, env, timeout) job; [HotplugFailure or None], in jobs' order."""
    def one(job):
        try:
            run_script(*job)
        except HotplugFailure as exc:
            return exc
        return None
    if len(jobs) < 2:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(HOTPLUG_CONCURRENCY, len(jobs))) as pool:
        return list(pool.map(one, jobs))


def _hotplug_not_run(run, guest, change, phase, skip=False):
    """The outcome of a hotplug phase whose script is not to run; None when it is to run."""
    if skip or not run.wait or run.hotplug_policy == "skip":
        return HOTPLUG_SKIPPED
    if run.hotplug_policy == "auto":
        backend = change.current.placement.backend_path if phase.action == "remove" \
            else change.desired.placement.backend_path
        if phase.action == "add" and run.conn.read_value(backend + "/hotplug-status") is not None:
            return HOTPLUG_UDEV
        if not os.access(phase.script, os.X_OK):
            run.warnings.append("%s: hotplug script %s is not on this host: not run (%s)"
                                % (run.label(guest, change), phase.script, phase.action))
            return HOTPLUG_SKIPPED
    return None


def _hotplug_outcome(run, guest, change, phase, error):
    """The outcome of a script that ran: `error` is its HotplugFailure, or None."""
    if error is None:
        return HOTPLUG_RAN
    label = run.label(guest, change)
    if phase.action == "remove":  # libxl ignores remove errors
        run.warnings.append("%s: %s" % (label, error))
        return HOTPLUG_RAN
    backend = change.desired.placement.backend_path
    hotplug_error = run.conn.read_value(backend + "/hotplug-error")
    run.failures.add(guest, "%s: hotplug script failed: %s%s" % (
        label, error, ("; hotplug-error: %s" % hotplug_error) if hotplug_error else ""))
    return "failed"
