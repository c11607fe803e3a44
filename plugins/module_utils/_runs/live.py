# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Orchestration of the xen_disk and xen_disk_info modules: read once, plan, apply, hand-shake.

Private to the xen.disks collection: no compatibility promise. Standard library only (no
Ansible imports); Python 3.8+. The pure pieces live in `_declaration` (validation), `_layout`
(what libxl writes) and `_plan` (read-back and plan); `_xenstore` is the only code that talks
to xenstore. The I/O of this module is limited to that adapter, `stat_target` (libxl's stat of
a local target) and `run_hotplug_script` (libxl's hotplug script runner), both injectable.
Section numbers (§3.4...) are those of docs/XENSTORE-LAYOUT.md.

One reconcile:
1. one snapshot (a read-only transaction): the host's domains, every guest's libxl records,
   then exactly `_plan.read_set` of each guest (the owned nodes of the declared disks, the
   states of the others); for guests that change, the directories the cleanup walks up;
2. the whole declaration validated (`_declaration.validate_declaration`); one bad disk and
   nothing is written;
3. a plan per guest (`_plan.plan_guest`); check mode stops here;
4. per guest, the plan's phases in lock-step (phase k of every disk together): transactions
   merged into one (cleanups re-planned against a fresh read on EAGAIN), waits for the
   backend driven by watches, hotplug scripts where libxl would run them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import stat
import subprocess
import time
from collections import namedtuple

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._core import declaration as _declaration
from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.plugins.module_utils._io import loop as _loop
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._io import qemu_img as _qemu_img
from ansible_collections.xen.disks.plugins.module_utils._core import storage as _storage
from ansible_collections.xen.disks.plugins.module_utils._io.libxl_config import (
    DEFAULT_LIBXL_DIR,
    DomainFiles,
    FileLock,
    LibxlFileError,
    uuid_of_vm_path,
)
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import DiskSpecError, disk_to_dict, render_disk_spec
from ansible_collections.xen.disks.plugins.module_utils._core.layout import (
    DEFAULT_SCRIPT_DIR,
    KINDS,
    TreeView,
    cleanup_ops,
    cleanup_read_paths,
    libxl_kind_dir,
    path_cleanup_ops,
)
from ansible_collections.xen.disks.plugins.module_utils._io.qmp import (
    DEFAULT_RUN_DIR,
    QmpCommandError,
    QmpError,
    QmpProtocolError,
    QmpSession,
    socket_listening_path,
    socket_path,
)
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import (
    XenstoreConnection,
    XenstoreError,
    XenstoreTimeout,
)
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import RM, SET_PERMS, XsTree

GUEST_OPTIONS = ("disks", "state", "exclusive", "keep", "recreate", "force", "creating", "backend", "width")

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


class _RecordsChanged(Exception):
    """Raised inside a guest's transaction (which is then aborted): its libxl records are not
    what its plan expects. `differences`: one message per record (`record_differences`)."""

    def __init__(self, differences):
        super().__init__("; ".join(differences))
        self.differences = differences


class Failures(list):
    """The failure messages of a run (a list), and the declared guests they stopped: a failure
    added with `add(guest, ...)` is that guest's alone; one appended without a guest is the run's."""

    def __init__(self):
        super().__init__()
        self.guests = []         # GuestRequest.domain of each guest that failed, first failure first
        self.of_run = False      # some failure belongs to no single guest

    def append(self, message):
        self.of_run = True
        super().append(message)

    def add(self, guest, message):
        super().append(message)
        if guest.domain not in self.guests:
            self.guests.append(guest.domain)

    def failed_domains(self):
        """The declared guests that failed, or None when a failure is the whole run's."""
        return None if self.of_run else list(self.guests)


class ReconcileError(Exception):
    """A failure for the module to report: `str()` is the message, `details` extra result keys."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def _without_frontend_cleanup(phase):
    """A phase's ops without the forced frontend removal planned on the snapshot (the leading
    removals of the frontend directory and of its ancestors), which the transaction plans again."""
    ops = list(phase.ops)
    if phase.frontend_cleanup is not None:
        frontend = phase.frontend_cleanup.frontend_path
        while ops and ops[0].action == RM and (ops[0].path == frontend or frontend.startswith(ops[0].path + "/")):
            ops.pop(0)
    return ops


def exit_module(module, run):
    """End an AnsibleModule with `run()`'s result, or with the ReconcileError it raised (its
    message, and its details as result keys); `warnings` of either become the module's warnings."""
    try:
        result = run()
    except ReconcileError as exc:
        details = dict(exc.details)
        for warning in details.pop("warnings", []):
            module.warn(warning)
        module.fail_json(msg=str(exc), **details)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


# -- host I/O (injectable) ----------------------------------------------------------------
def stat_target(path):
    """What libxl's stat of a local target finds: block, file, other, missing or unknown."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:
        return "unknown"
    if stat.S_ISBLK(mode):
        return "block"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


class HotplugFailure(Exception):
    """A hotplug script failed or did not finish in time; `str()` says how."""


def run_hotplug_script(script, action, env, timeout):
    """Run `script action` as libxl does (§3.4): stdin /dev/null, libxl's environment, a timeout."""
    full_env = dict(os.environ)
    full_env.update(env)
    try:
        proc = subprocess.run([script, action], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=full_env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HotplugFailure("%s %s did not finish within %g s" % (script, action, timeout)) from None
    except OSError as exc:
        raise HotplugFailure("%s %s could not be started: %s" % (script, action, exc.strerror)) from None
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace").strip()
        raise HotplugFailure("%s %s exited with status %d%s" % (
            script, action, proc.returncode, (": " + output[-2000:]) if output else ""))


def host_arch():
    """libxl's virtio-mmio allocation differs on Arm; everything else is treated as x86."""
    machine = platform.machine().lower()
    return "arm" if machine.startswith(("arm", "aarch64")) else "x86"


# -- requests -----------------------------------------------------------------------------
AbsentDisk = namedtuple("AbsentDisk", "devid name vdev")
AbsentDisk.__doc__ = """A disk declared absent: only its device number matters (`name` labels messages)."""


class GuestRequest:
    """One guest of a xen_disk call: its options, and how messages name it."""

    def __init__(self, domain, options, prefix):
        self.domain = domain
        self.prefix = prefix        # "" or "domains[1]."
        # storage keys (size, create, ...) apart from the xl options: `storage[i]` is disks[i]'s
        split = [_storage.split_storage(item) for item in (options.get("disks") or [])]
        self.disks = [disk for disk, _keys in split]
        self.storage = [keys for _disk, keys in split]
        self.state = options.get("state") or "present"
        self.exclusive = bool(options.get("exclusive"))
        self.keep = list(options.get("keep") or [])
        self.recreate = bool(options.get("recreate"))
        self.force = bool(options.get("force"))
        self.creating = bool(options.get("creating"))
        self.backend = options.get("backend")
        self.width = options.get("width") or 64
        self.domid = None
        self.name = None
        self.guest_type = None
        self.desired = ()
        self.view = None         # the guest's part of the host snapshot
        self.vm_path = None      # /local/domain/D/vm: names libxl's files
        self.files = None        # _libxl_config.DomainFiles, None when they cannot be named
        self.config = None       # libxl's domain configuration as read (None: no file)
        self.config_steps = {}   # id(change) -> [_libxl_json.ConfigStep]

    @property
    def where(self):
        return (self.prefix + "domain") if self.prefix else "domain"


def guest_requests(params, labels=None):
    """GuestRequests of the module's parameters; `domains:` entries inherit top-level values.
    `labels`: how messages name each entry (default `domains[i].`)."""
    if params.get("domains"):
        out = []
        for index, entry in enumerate(params["domains"]):
            options = {name: params.get(name) for name in GUEST_OPTIONS}
            options.update({k: v for k, v in entry.items() if v is not None and k != "domain"})
            out.append(GuestRequest(str(entry["domain"]), options,
                                    labels[index] if labels else "domains[%d]." % index))
        return out
    return [GuestRequest(str(params["domain"]), params, "")]


def _open(params):
    """The connection; the user's `timeout` also bounds every answer of xenstored."""
    try:
        return XenstoreConnection.open(params.get("xenstore_socket"), timeout=params.get("timeout"))
    except XenstoreError as exc:
        raise ReconcileError(str(exc), errors=[str(exc)]) from None


# -- reading ------------------------------------------------------------------------------
def read_libxl_records(reader, domids):
    """XsTree of `/libxl/D/type` and every `/libxl/D/device/<kind>/N/<node>` of `domids`.

    Listing then reading, one batch per level for all guests at once: exactly the nodes
    `_plan.read_disks` consults (the libxl directories are owned whole)."""
    tree = XsTree()
    if not domids:
        return tree
    types = reader.read_values(["/libxl/%d/type" % d for d in domids])
    tree.values.update({p: v for p, v in types.items() if v is not None})
    kind_dirs = [libxl_kind_dir(d, kind) for d in domids for kind in KINDS]
    device_dirs = []
    for path, names in reader.list_children(kind_dirs).items():
        if names is not None:
            tree.values[path] = ""
            device_dirs += [path + "/" + n for n in names]
    leaves = []
    for path, names in reader.list_children(device_dirs).items():
        if names is not None:
            tree.values[path] = ""
            leaves += [path + "/" + n for n in names]
    tree.values.update({p: v for p, v in reader.read_values(leaves).items() if v is not None})
    tree._children = None
    return tree


_DIRECTORY = "<directory>"  # a record directory in toolstack_records: only its existence counts
ONLINE = "(backend online)"  # the record's backend `online` node, keyed under the record


def toolstack_records(tree, domid, devids=None):
    """What only a toolstack (libxl, xen_disk) writes about guest `domid`'s disks, in `tree`:
    {path: value} of `/libxl/D/type`, every `/libxl/D/device/<kind>/N` and the nodes directly
    in it (as `read_libxl_records` reads them), and under `<record>/(backend online)` the
    `online` node of the backend the record names (1 attached, else being detached or
    removed: backend drivers and guests never write it). `devids`: only the records of these
    device numbers."""
    type_path = "/libxl/%d/type" % domid
    out = {type_path: tree.get(type_path)}
    names = None if devids is None else {str(d) for d in devids}
    for kind in KINDS:
        kind_dir = libxl_kind_dir(domid, kind)
        for name in tree.children(kind_dir):
            if names is not None and name not in names:
                continue
            record = kind_dir + "/" + name
            out[record] = _DIRECTORY
            for leaf in tree.children(record):
                out[record + "/" + leaf] = tree.get(record + "/" + leaf)
    for current in _plan.read_disks(tree, domid):
        if current.libxl_path in out:
            # a driver domain's devd removes a backend it closed: 0 and missing say the same
            online = tree.get(current.placement.backend_path + "/online") == "1"
            out[current.libxl_path + "/" + ONLINE] = "1" if online else "0 or missing"
    return out


def online_paths(tree, domid):
    """The backend `online` nodes `toolstack_records` reports, for the reads."""
    return [c.placement.backend_path + "/online" for c in _plan.read_disks(tree, domid)]


def record_differences(expected, found, removing=()):
    """What another writer changed in a guest's records (`toolstack_records` as the plan
    expects them, and now), one message per record: appeared, removed, or the nodes that
    differ. A record in `removing` (being removed by this run) may have gone: someone
    finished the same removal."""
    out = []
    records = sorted(p for p in set(expected) | set(found)
                     if _DIRECTORY in (expected.get(p), found.get(p)))
    for record in records:
        vdev = found.get(record + "/dev") or expected.get(record + "/dev")
        named = "%s (%s)" % (record, vdev) if vdev else record
        if record not in expected:
            out.append("%s appeared" % named)
        elif record not in found:
            if record not in removing:
                out.append("%s was removed" % named)
        else:
            prefix = record + "/"
            leaves = sorted(p for p in set(expected) | set(found) if p.startswith(prefix))
            changed = ["%s %s -> %s" % (p[len(prefix):], _shown(expected.get(p)), _shown(found.get(p)))
                       for p in leaves if expected.get(p) != found.get(p)]
            if changed:
                out.append("%s: %s" % (named, ", ".join(changed)))
    for path in sorted(p for p in set(expected) | set(found) if p.endswith("/type") and p.count("/") == 3):
        if expected.get(path) != found.get(path):
            out.append("%s %s -> %s" % (path, _shown(expected.get(path)), _shown(found.get(path))))
    return out


def _in_toolstack_records(path, domid):
    """Whether `path` is one of the nodes `toolstack_records` may report for guest `domid`
    (or a directory above them): under `/libxl/D/`, or a backend's `online` node or
    directory of the guest (the records say which)."""
    if path.startswith("/libxl/%d/" % domid):
        return True
    parts = path.split("/")
    return len(parts) >= 7 and parts[1:3] == ["local", "domain"] and parts[4] == "backend" \
        and parts[6] == str(domid) and (len(parts) == 8 or (len(parts) == 9 and parts[8] == "online"))


def _shown(value, limit=60):
    if value is None:
        return "missing"
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _guest_of(path):
    """The guest whose disk directories hold `path` (strictly below `/libxl/D`,
    `/local/domain/D/device` or `/local/domain/B/backend/<kind>/D`), else None (shared)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "libxl":
        return _int(parts[2])
    if len(parts) > 5 and parts[1] == "local" and parts[2] == "domain":
        if parts[4] == "device":
            return _int(parts[3])
        if parts[4] == "backend" and len(parts) > 7:
            return _int(parts[6])
    return None


def vm_path_node(domid):
    """`/local/domain/D/vm` (`/vm/<uuid>`, written by libxl at creation; dom0's, not the guest's)."""
    return "/local/domain/%d/vm" % domid


def frontend_node(path):
    """Whether `path` is in a frontend directory (`/local/domain/D/device/...`): the guest's
    own, which it may rewrite at will. Read as observations, never required to be stable."""
    parts = path.split("/", 5)
    return len(parts) > 4 and parts[1] == "local" and parts[2] == "domain" and parts[4] == "device"


def guest_views(tree, domids):
    """{domid: XsTree} of each guest's part of a host snapshot, plus the shared nodes above the
    guests' directories (with their children, so a walk-up of empty parents sees the other
    guests). Planning a guest on its view costs its size, not the host's."""
    def split(mapping):
        shared, per_guest = {}, {d: {} for d in domids}
        for path, item in mapping.items():
            owner = _guest_of(path)
            if owner is None:
                shared[path] = item
            elif owner in per_guest:
                per_guest[owner][path] = item
        return shared, per_guest

    shared_values, values = split(tree.values)
    shared_perms, perms = split(tree.perms)
    views = {}
    for domid in domids:
        view = XsTree(dict(shared_values), dict(shared_perms))
        view.values.update(values[domid])
        view.perms.update(perms[domid])
        views[domid] = view
    return views


def merge(tree, other):
    """Add the nodes and permissions of `other` to `tree` (both from the same snapshot)."""
    tree.values.update(other.values)
    tree.perms.update(other.perms)
    tree._children = None
    return tree


def read_cleanup_view(reader, placements):
    """What a removal's walk-up of empty parents needs (§4.2 step 5): the device directories
    whole, and each ancestor's value and list of children (children not read otherwise are
    entered with an empty value: only their existence matters to the walk-up)."""
    tree = XsTree()
    if not placements:
        return tree
    dirs = []
    for p in placements:
        dirs += [p.frontend_path, p.backend_path, p.libxl_path]
    merge(tree, reader.read_tree(sorted(set(dirs)), with_perms=True))
    ancestors = sorted({a for p in placements for a in cleanup_read_paths(p)})
    values = reader.read_values(ancestors)
    children = reader.list_children(ancestors)
    for path in ancestors:
        if values[path] is not None:
            tree.values[path] = values[path]
    for path in ancestors:
        for name in children[path] or ():
            tree.values.setdefault(path.rstrip("/") + "/" + name, "")
    tree._children = None
    return tree


def _read_set_into(tree, reader, read_set):
    nodes = reader.read_nodes(read_set.values, perms_of=read_set.perms)
    merge(tree, nodes)


class QmpRun:
    """The QMP connection of one guest's apply: opened by its first QMP command under libxl's
    qmp-socket-lock (`lock`, not yet held, or None), shared by the guest's media changes (QEMU
    serves one client at a time), closed after the last of them or after a broken connection.
    One deadline (`timeout`) from the opening covers the lock wait and every answer."""

    def __init__(self, path, timeout, lock=None):
        self.path = path
        self.timeout = timeout
        self.lock = lock
        self.session = None
        self.fdsets = {}         # id(change) -> the fd set of its add-fd

    def open(self):
        if self.session is None:
            self.session = QmpSession(self.path, self.timeout)
            if self.lock is not None:
                self.lock.timeout = self.timeout
                self.lock.acquire()
        return self.session

    def close(self):
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.lock is not None:
            self.lock.release()


# -- the reconcile ------------------------------------------------------------------------
class Reconciler:
    """One xen_disk call: see the module docstring for the steps."""

    def __init__(self, conn, params, *, check_mode=False, want_diff=False, stat=stat_target,
                 run_script=run_hotplug_script):
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
        self.results = {}        # (domid, devid, kind) -> result dict
        self.failures = Failures()
        self.applied = {}  # domid -> the ops this run committed for the guest, in order
        self.sharing = ((), {}, set())  # the declaration, names and declared disks, for recheck_sharing
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
        snap = self.conn.snapshot_by_owner(lambda reader: self._read_and_plan(reader, guests), _guest_of,
                                           observed=frontend_node)
        planned, tree = snap.value
        self._unsettled(guests, snap)
        errors = [e for g, _d, plan in planned if g.domid not in self.unsettled for e in plan.errors]
        if errors:
            results = [r for g, _d, plan in planned for r in self._change_results(g, plan)]
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
                "auto runs it only when present)" % (self._label(guest, change), phase.script)
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

    def _alive(self, guest):
        return lambda: self.conn.read_value(vm_path_node(guest.domid)) == guest.vm_path

    def _config_update(self, guest, steps):
        """Under the userdata lock: read the file, apply `steps`, store it if an entry changed;
        returns the lock (held) for the caller to release after its xenstore transaction."""
        lock = guest.files.userdata_lock(self._alive(guest)).acquire()
        try:
            self._config_store(guest, steps)
        except BaseException:
            lock.release()
            raise
        return lock

    def _config_store(self, guest, steps):
        """Read the file, apply `steps`, store it if an entry changed (the caller holds the lock)."""
        data = guest.files.read()
        if data is None:
            warning = "%s: libxl's domain configuration %s disappeared: not recreated" % (guest.where, guest.files.path)
            if warning not in self.warnings:
                self.warnings.append(warning)
            return
        doc = _libxl_json.parse_config(data)
        if any(step.entry is not None for step in steps):
            guest.files.store(_libxl_json.render_config(_libxl_json.apply_steps(doc, steps)))

    def _config_phases(self, guest, plan):
        """{id(change): {phase index: (steps with its transaction, steps after it)}}, the steps
        with no transaction of their own, and the last phase index the device lock covers."""
        by_change, alone, devlock_until = {}, [], -1
        for change in plan.changes:
            if change.action == _libxl_json.MEDIA_CHANGE and change.changed:
                # libxl_cdrom_insert: the device lock from before its first QMP command to the end
                devlock_until = max(devlock_until, len(change.phases) - 1)
            steps = guest.config_steps.get(id(change))
            if not steps:
                continue
            txns = [i for i, ph in enumerate(change.phases) if ph.step == _plan.STEP_TRANSACTION]
            if change.action in _libxl_json.ATTACHING and change.changed and txns:
                by_change[id(change)] = {txns[-1]: (steps, [])}
            elif change.action == _libxl_json.MEDIA_CHANGE and change.changed and txns:
                eject, insert = steps
                if change.desired.disk.effective_format == "empty" or len(txns) < 2:
                    by_change[id(change)] = {txns[0]: ([eject], [insert])}
                else:
                    by_change[id(change)] = {txns[0]: ([eject], []), txns[1]: ([insert], [])}
            else:
                alone += steps
        return by_change, alone, devlock_until

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
        tree = read_libxl_records(reader, sorted(domains))
        for guest in guests:
            guest.guest_type = tree.get("/libxl/%d/type" % guest.domid)
        self._check_guests(guests)

        present = [g for g in guests if g.state == "present"]
        declarations = [_declaration.GuestDeclaration(
            g.domid, tuple(self._with_default_backend(g)), g.guest_type or "pv", g.width, g.prefix)
            for g in present]
        desired_lists = self._validate(declarations, names, attached=())
        self.sharing = (declarations, names, {(g.domid, d.devid) for g, ds in zip(present, desired_lists) for d in ds})
        desired_of = {id(g): d for g, d in zip(present, desired_lists)}
        for guest in guests:
            guest.desired = desired_of[id(guest)] if guest.state == "present" else self._absent_items(guest)

        # One batch: the nodes each declared guest's plan compares, and the backend states of every
        # other recorded disk of the host (the sharing rule counts every disk with a backend).
        values, perms = [], []
        declared = {g.domid for g in guests}
        for guest in guests:
            owned = [d for d in guest.desired if not isinstance(d, AbsentDisk)]
            read_set = _plan.read_set(tree, guest.domid, owned)
            values += read_set.values
            perms += read_set.perms
            values.append(vm_path_node(guest.domid))  # names libxl's domain configuration
            values += online_paths(tree, guest.domid)  # checked again by each apply transaction
        for domid in sorted(domains):
            if domid not in declared:
                for current in _plan.read_disks(tree, domid):
                    values.append(current.placement.backend_path + "/state")
        merge(tree, reader.read_nodes(values, perms_of=perms))
        if present:
            self._check_sharing(tree, domains)

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
        sharing rule (`recheck_sharing`) only once the first has committed. Lock files live in
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

    def recheck_sharing(self):
        """The sharing rule again, on a fresh read of every disk record of the host, with this
        run's target locks held: another run may have attached one of its targets after this run
        read the host (its commit is visible now; a later one waits for the lock). Raises
        ReconcileError before anything is written."""
        def read(reader):
            domains = reader.domains()
            tree = read_libxl_records(reader, sorted(domains))
            states = [c.placement.backend_path + "/state" for d in sorted(domains) for c in _plan.read_disks(tree, d)]
            merge(tree, reader.read_nodes(states))
            return domains, tree

        domains, tree = self.conn.snapshot(read)
        self._check_sharing(tree, domains)

    def _check_sharing(self, tree, domids):
        """The read-write sharing rule against every disk record of `tree` that is not a declared
        disk itself (the declared ones are checked among themselves); raises ReconcileError."""
        declarations, names, declared = self.sharing
        attached = []
        for domid in sorted(domids):
            devids = [n for kind in KINDS for n in tree.children(libxl_kind_dir(domid, kind))]
            if any((domid, _int(n)) not in declared for n in devids):
                attached += [c for c in _plan.read_disks(tree, domid) if (c.domid, c.devid) not in declared]
        if attached:
            self._validate(declarations, names, attached=attached)

    def _validate(self, declarations, names, attached):
        try:
            return _declaration.validate_declaration(
                declarations, stat_target=self.stat, resolve_domain=lambda ref: _domid_of_ref(self.domains, names, ref),
                arch=self.arch, script_dir=self.script_dir, attached=attached)
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
                                    creating=guest.creating, resume=bool(self.wait))
        except ValueError as exc:
            raise ReconcileError("%s: %s" % (guest.where, exc)) from None

    # -- step 4: apply ----------------------------------------------------------------------
    def apply(self, guest, plan):
        """Carry out the plan of one guest; failures are collected in self.failures.

        A plan holds only while the guest's libxl records are as it read them (another run or
        `xl` may have attached, changed or detached a disk since). Each of the guest's
        transactions reads them inside itself (xenstored then fails its commit with EAGAIN if
        they change before it, and it is retried) and compares them with what the plan
        expects. At the first transaction nothing of the guest is written yet: the guest is
        planned again on a fresh read (at most MAX_REPLANS times). Later, the run stops for
        the guest with a message naming the change. Returns the plan carried out."""
        for replans in range(MAX_REPLANS + 1):
            try:
                self._apply_plan(guest, plan)
                return plan
            except _RecordsChanged as exc:
                seen = "; ".join(exc.differences)
            who = "%s %s" % (guest.where, guest.domain)
            if replans == MAX_REPLANS:
                self._not_applied(guest, plan, "%s: another writer kept changing its disks while this run "
                                  "applied its plan (last: %s); nothing was written for it: run again"
                                  % (who, seen))
                return plan
            self.replans += 1
            self.stage = "planning %s again" % who
            for key in [k for k in self.results if k[0] == guest.domid]:
                del self.results[key]
            try:
                replanned = self._replan(guest)
            except ReconcileError as exc:
                self._not_applied(guest, plan, "%s: another writer changed its disks after this run read "
                                  "them (%s), and planning again failed: %s" % (who, seen, exc))
                return plan
            plan = replanned
            if plan.errors:
                for error in plan.errors:
                    self.failures.add(guest, "%s (planned again: another writer changed %s's disks after this "
                                             "run read them: %s)" % (error, guest.domain, seen))
                return plan
        return plan  # not reached

    def _not_applied(self, guest, plan, message):
        self.failures.add(guest, message)
        for change in plan.changes:
            if change.acts:
                self._result(guest, change)["error"] = message

    def _replan(self, guest):
        """The guest's plan made again from a fresh consistent read (validation included),
        and the changes of libxl's domain configuration that go with it."""
        snap = self.conn.snapshot_by_owner(lambda reader: self._read_and_plan(reader, [guest]), _guest_of,
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

    def _apply_plan(self, guest, plan):
        changes = [c for c in plan.changes if c.acts]
        remaining = {id(c): list(c.phases) for c in changes}
        skip_hotplug = set()
        # (a host without libxl's directory has no libxl to share the locks with)
        config, alone, devlock_until = self._config_phases(guest, plan) \
            if guest.files is not None and os.path.isdir(self.libxl_dir) else ({}, [], -1)
        # libxl_cdrom_insert holds the device lock over the whole media change
        devlock = None
        timeout = self.timeout if self.timeout is not None else _plan.HOTPLUG_TIMEOUT
        qmp = QmpRun(socket_path(guest.domid, self.run_dir), timeout,
                     guest.files.qmp_lock(self._alive(guest)) if guest.files is not None else None)
        try:
            if alone:  # entries missing for attached disks: libxl's file alone, under its lock
                self._config_update(guest, alone).release()
            if devlock_until >= 0:
                devlock = guest.files.device_lock(self._alive(guest)).acquire()
            self._apply_phases(guest, plan, changes, remaining, skip_hotplug, config, devlock_until, devlock,
                               qmp)
        except (LibxlFileError, _libxl_json.LibxlConfigError) as exc:
            self.failures.add(guest, "%s: libxl's domain configuration: %s" % (guest.where, exc))
        finally:
            qmp.close()
            if devlock is not None:
                devlock.release()

    def _apply_phases(self, guest, plan, changes, remaining, skip_hotplug, config, devlock_until, devlock,
                      qmp):
        expected = XsTree({p: v for p, v in guest.view.values.items() if _in_toolstack_records(p, guest.domid)})
        # After the first write, what this plan needs: its own disks' records (every record for
        # exclusive, which answers for the whole set), tolerating the loss of those it removes.
        devids = None if guest.exclusive else {c.devid for c in plan.changes}
        removing = {ph.placement.libxl_path for c in changes for ph in c.phases if ph.step == _plan.STEP_CLEANUP}
        first = True
        where = "%s %s" % (guest.where, guest.domain)
        index = -1
        qmp_changes = [id(c) for c in changes if any(ph.step == _plan.STEP_QMP for ph in c.phases)]
        while True:
            index += 1
            if devlock is not None and index > devlock_until:
                devlock.release()
            batch = [(c, remaining[id(c)].pop(0)) for c in changes if remaining[id(c)]]
            if not batch:
                break
            for change, phase in batch:
                if phase.step == _plan.STEP_QMP and not self._qmp(guest, change, phase, qmp):
                    remaining[id(change)] = []
            batch = [(c, ph) for c, ph in batch if ph.step != _plan.STEP_QMP or remaining[id(c)]]
            with_txn, after_txn = [], []
            for change, _phase in batch:
                steps = config.get(id(change), {}).get(index)
                if steps:
                    with_txn += steps[0]
                    after_txn += steps[1]
            txn = [(c, ph) for c, ph in batch if ph.step in (_plan.STEP_TRANSACTION, _plan.STEP_CLEANUP)]
            if txn:
                self.stage = "applying the changes of %s" % where
                # device_disk_add / cdrom_insert: the file is stored inside the retry loop of the
                # xenstore transaction, after its checks and before its commit, under the
                # userdata lock
                lock = guest.files.userdata_lock(self._alive(guest)).acquire() if with_txn else None
                try:
                    self._transaction(guest, txn, expected, None if first else devids, () if first else removing,
                                      before_commit=(lambda: self._config_store(guest, with_txn)) if with_txn
                                      else None)
                except _RecordsChanged as exc:
                    if first:
                        raise
                    message = ("%s: another writer changed its disks while this run applied its plan (%s); "
                               "this run stopped for it: run again" % (where, "; ".join(exc.differences)))
                    self.failures.add(guest, message)
                    for change in changes:
                        if remaining[id(change)]:
                            self._result(guest, change)["error"] = message
                    return
                finally:
                    if lock is not None:
                        lock.release()
                first = False
                if after_txn:
                    self._config_update(guest, after_txn).release()
            waits = [(c, ph) for c, ph in batch if ph.step in (_plan.STEP_WAIT, _plan.STEP_WAIT_REMOVED)]
            if waits and self.wait:
                self.stage = "waiting for the backends of %s" % where
                failed, gone = self._waits(waits)
                skip_hotplug |= gone  # the backend is gone: no remove script to run on it
                if any(phase.on_timeout != "continue" for _c, phase, _m in failed):
                    # a backend that never answered may be a disk another writer removed meanwhile
                    found = read_libxl_records(self.conn, [guest.domid])
                    merge(found, self.conn.read_nodes(online_paths(found, guest.domid)))
                    others = record_differences(toolstack_records(expected, guest.domid, devids),
                                                toolstack_records(found, guest.domid, devids), removing)
                    if others:
                        failed = [(c, ph, m if ph.on_timeout == "continue" else
                                   "%s (another writer changed the guest's disks meanwhile: %s)"
                                   % (m, "; ".join(others))) for c, ph, m in failed]
                for change, phase, message in failed:
                    label = self._label(guest, change)
                    if phase.on_timeout == "continue":
                        # FORCE_ON: removed anyway; libxl then skips the remove script
                        self.warnings.append("%s: %s; removed without the backend's answer" % (label, message))
                        skip_hotplug.add(id(change))
                    else:
                        self.failures.add(guest, "%s: %s" % (label, message))
                        remaining[id(change)] = []
            for change, phase in batch:
                if phase.step != _plan.STEP_HOTPLUG:
                    continue
                self.stage = "running the hotplug scripts of %s" % where
                outcome = self._hotplug(guest, change, phase, skip=id(change) in skip_hotplug)
                self._result(guest, change)["hotplug"] = outcome
                if outcome not in (HOTPLUG_RAN, HOTPLUG_SKIPPED, HOTPLUG_UDEV, HOTPLUG_NONE):
                    remaining[id(change)] = []
            if qmp_changes and all(not remaining[i] for i in qmp_changes):
                qmp.close()  # libxl keeps QMP open until the media change is done

    def _qmp(self, guest, change, phase, qmp):
        """Send a QMP phase's commands on the guest's QMP connection. False (and a failure
        recorded) when QEMU is absent, refuses or does not answer."""
        result = self._result(guest, change)
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
                state = "nothing was changed: QEMU and xenstore keep the old medium"
            else:
                state = ("the drive is left empty in QEMU and in xenstore (libxl leaves it so too); "
                         "a next run inserts the declared medium")
            self.failures.add(guest, "%s: media change failed: %s; %s" % (self._label(guest, change), exc, state))
            if not isinstance(exc, QmpCommandError):
                qmp.close()  # the connection is unusable; another change opens a new one
            return False
        return True

    def _transaction(self, guest, batch, expected, devids, removing, before_commit=None):
        """One transaction of a guest's phase: the guest's records checked against `expected`
        (raises _RecordsChanged), `before_commit()` (libxl's JSON file), then the cleanups
        re-planned on this transaction's view and the planned ops. `expected` then takes this
        run's own changes."""
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
            view.apply_all(op for op in self.applied.get(domid, []) + fixed if op.action != SET_PERMS)
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

        outcome = self.conn.transaction(plan_fn)
        self.committed = True
        self.applied.setdefault(domid, []).extend(outcome.ops)
        self.retries += outcome.attempts - 1
        for op in outcome.ops:
            if _in_toolstack_records(op.path, domid):
                try:
                    expected.apply(op)
                except KeyError:
                    pass  # permissions of a node the records do not hold

    def _waits(self, waits):
        """Wait for each backend (they progress concurrently: one deadline per phase timeout).
        Returns ([(change, phase, message)] of the waits that failed, {id(change)} of the
        closes that found the backend already removed (by a driver domain or another run))."""
        failed, gone = [], set()
        start = time.monotonic()
        for change, phase in waits:
            timeout = self.timeout if self.timeout is not None else phase.timeout
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
                value = self.conn.wait_for(phase.path, values, remaining)
                if value is None and phase.step == _plan.STEP_WAIT:
                    if values[:len(INIT_REACHED)] == INIT_REACHED:
                        failed.append((change, phase, "the backend was removed before it reached InitWait "
                                       "(%s: missing)" % phase.path))
                    else:
                        gone.add(id(change))
            except XenstoreTimeout as exc:  # any other XenstoreError ends the run (run_xen_disk)
                last = "missing" if exc.last is None else "%s (%s)" % (
                    exc.last, _plan.state_name(_int(exc.last)))
                hint = ""
                if phase.step == _plan.STEP_WAIT and values[:len(INIT_REACHED)] == INIT_REACHED:
                    hint = ": is the backend driver running (blkback, QEMU, the virtio daemon)? " \
                           "The entries stay, as libxl leaves them"
                elif phase.step == _plan.STEP_WAIT and phase.on_timeout != "continue":
                    hint = self._close_timeout_hint(change)
                failed.append((change, phase, "timed out after %g s waiting for %s (%s: %s)%s"
                               % (timeout, what, phase.path, last, hint)))
        return failed, gone

    # A frontend in these states still holds the disk (blkfront closes once it is unused).
    FRONTEND_HOLDING = ("3", "4", "5")

    def _close_timeout_hint(self, change):
        """Why a backend did not close: the guest still holds the disk (its frontend is live), or
        the frontend let go (or never connected) and no backend driver answered."""
        item = change.current if change.current is not None else change.desired
        try:
            front = self.conn.read_value(item.placement.frontend_path + "/state") if item is not None else None
        except XenstoreError:
            return ""
        if front in self.FRONTEND_HOLDING:
            return ": the guest did not release the disk; force=true removes it without the guest's cooperation"
        shown = "missing" if front is None else "%s (%s)" % (front, _plan.state_name(_int(front)))
        return (": the backend did not answer (the guest's frontend is %s): is the backend driver running "
                "(blkback, QEMU)? force=true removes the disk without it" % shown)

    def _hotplug(self, guest, change, phase, skip=False):
        label = self._label(guest, change)
        if skip or not self.wait:
            return HOTPLUG_SKIPPED
        if self.hotplug_policy == "skip":
            return HOTPLUG_SKIPPED
        env = dict(phase.env)
        if self.params.get("xenstore_socket"):
            env["XENSTORED_PATH"] = self.conn.path  # the scripts' xenstore-* tools use the same daemon
        if self.hotplug_policy == "auto":
            backend = change.current.placement.backend_path if phase.action == "remove" \
                else change.desired.placement.backend_path
            if phase.action == "add" and self.conn.read_value(backend + "/hotplug-status") is not None:
                return HOTPLUG_UDEV
            if not os.access(phase.script, os.X_OK):
                self.warnings.append("%s: hotplug script %s is not on this host: not run (%s)"
                                     % (label, phase.script, phase.action))
                return HOTPLUG_SKIPPED
        try:
            self.run_script(phase.script, phase.action, env, phase.timeout)
        except HotplugFailure as exc:
            if phase.action == "remove":  # libxl ignores remove errors
                self.warnings.append("%s: %s" % (label, exc))
                return HOTPLUG_RAN
            backend = change.desired.placement.backend_path
            error = self.conn.read_value(backend + "/hotplug-error")
            self.failures.add(guest, "%s: hotplug script failed: %s%s" % (
                label, exc, ("; hotplug-error: %s" % error) if error else ""))
            return "failed"
        return HOTPLUG_RAN

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
                result["frontend_state"] = _int(values[front]) or 0
                result["backend_state"] = _int(values[back]) or 0

    # -- results ----------------------------------------------------------------------------
    @staticmethod
    def _label(guest, change):
        """How messages name a disk: `disks[2] (xvdc)`, or the vdev of an undeclared one."""
        if change.label and change.label != change.vdev:
            return "%s (%s)" % (change.label, change.vdev)
        where = guest.prefix.rstrip(".") + ": " if guest.prefix else ""
        return "%s%s" % (where, change.vdev or change.devid)

    def _result(self, guest, change):
        key = (guest.domid, change.devid, change.kind)
        if key not in self.results:
            self.results[key] = result = _change_result(guest, change)
            if result["qmp"]:
                result["qmp_socket"] = socket_path(guest.domid, self.run_dir)
        return self.results[key]

    def _change_results(self, guest, plan):
        return [self._result(guest, c) for c in plan.changes]

    def config_results(self, guest, plan):
        """Each disk's `libxl_config`: written (this run stores its entry), recorded (libxl's
        file has an entry for it), missing (it has none), or no_file."""
        for change in plan.changes:
            result = self._result(guest, change)
            if guest.config is None:
                result["libxl_config"] = "no_file"
            elif id(change) in guest.config_steps:
                result["libxl_config"] = "written"
            else:
                vdev = change.current.libxl.get("dev") if change.current is not None else None
                vdev = vdev or change.vdev
                result["libxl_config"] = "recorded" if _libxl_json.entry_for(guest.config, vdev) else "missing"


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _unique_domid(names, name):
    found = names.get(name, [])
    return found[0] if len(found) == 1 else None


def _domid_of_ref(domains, names, ref):
    """The domain a reference names on this host (a domid or a unique name), else None."""
    number = _declaration.domid_text(ref)
    if number is not None:
        return number if number in domains else None
    return _unique_domid(names, ref)


def _change_result(guest, change):
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


def disk_of_record(current, script_dir=DEFAULT_SCRIPT_DIR, names=None, tree=None):
    """A Disk read back from a libxl record (`_plan.current_to_disk`); None if unreadable."""
    if any(reason.startswith("half-written") for reason in current.stale):
        return None
    try:
        return _plan.current_to_disk(current, tree, domain_name=names, script_dir=script_dir)
    except (TypeError, ValueError, KeyError):
        return None


def spec_of_record(current, script_dir=DEFAULT_SCRIPT_DIR, names=None, tree=None):
    """Canonical xl spec of a libxl record, or None when the record cannot be read back."""

    disk = disk_of_record(current, script_dir, names, tree)
    return render_disk_spec(disk) if disk is not None else None


# -- xen_disk -----------------------------------------------------------------------------
def _check_params(errors):
    if errors:
        raise ReconcileError("\n".join(errors), errors=errors)


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


def run_xen_disk(params, check_mode=False, want_diff=False, *, stat=stat_target, run_script=run_hotplug_script,
                 labels=None):
    """The xen_disk module without Ansible: returns the result dict or raises ReconcileError.

    A lost or silent xenstored (XenstoreError at any step) is reported with what the run was
    doing and what it had already written (`changed`, `disks`). `labels`: how messages name the
    `domains` entries (xen_host_disks says `guests[i].`)."""
    _check_params(_argspec.xen_disk_param_errors(params, labels))
    guests = guest_requests(params, labels)
    images = ImageRun(guests, stat)  # storage options checked, images inspected: nothing written
    conn = _open(params)
    rec = Reconciler(conn, params, check_mode=check_mode, want_diff=want_diff, stat=images.stat,
                     run_script=run_script)
    locks = []  # held from the sharing rule's second check until every guest is applied
    try:
        rec.stage = "reading the host"
        planned, tree = rec.plan(guests)
        images.read_host(tree, rec.domains)
        images.plan(planned)
        locks = [] if check_mode else rec.target_locks(planned)
        if locks:
            rec.stage = "locking the targets to attach"
            try:
                for lock in locks:
                    lock.acquire()
            except LibxlFileError as exc:
                raise ReconcileError("%s (nothing was written)" % exc, errors=[str(exc)]) from None
            rec.stage = "checking again that no other guest attached a target meanwhile"
            rec.recheck_sharing()
        if not check_mode:
            rec.stage = "creating and growing images"
            images.apply(rec.failures)
            planned = [(g, d, rec.apply(g, p) if (p.acts or g.config_steps) and g.domid not in rec.unsettled
                        and g.domid not in images.failed else p)
                       for g, d, p in planned]
            rec.stage = "telling backends of grown images"
            images.notify(conn, rec.timeout, rec.failures, rec)
            for guest, _desired, plan in planned:
                rec._change_results(guest, plan)
            rec.stage = "reading the final states"
            rec.final_states([(g, p) for g, _d, p in planned])
            if images.removals:
                rec.stage = "removing image files"
                images.remove(rec.failures, {g.domid for g, _d, p in planned
                                             if any(r.get("error") for r in rec._change_results(g, p))},
                              conn, sorted(rec.domains))
    except XenstoreError as exc:
        message = "%s (while %s%s)" % (exc, rec.stage, "; changes were already written" if rec.committed else "")
        errors = [message] + rec.failures  # what failed before, too (a wait that timed out, ...)
        raise ReconcileError("\n".join(errors), errors=errors, changed=rec.committed, warnings=rec.warnings,
                             disks=list(rec.results.values())) from None
    finally:
        for lock in locks:
            lock.release()
        conn.close()
    result = _xen_disk_result(rec, planned, want_diff)
    result["xenstore_requests"] = conn.requests
    result["images"] = images.results()
    result["warnings"] = result["warnings"] + images.warnings
    result["changed"] = result["changed"] or images.changed
    if want_diff:
        result["diff"] = images.diff() + result["diff"]
    if params.get("read_back"):
        # the disks as they are now, exactly as xen_disk_info reports them (its own snapshot)
        result["guests"] = [] if not planned else run_xen_disk_info({
            "domains": [str(g.domid) for g, _d, _p in planned], "xenstore_socket": params.get("xenstore_socket"),
            "script_dir": rec.script_dir, "libxl_dir": rec.libxl_dir})["guests"]
    if rec.failures:
        # failed_domains: the guests the failures stopped (None: a failure of the whole run)
        raise ReconcileError("\n".join(rec.failures), errors=list(rec.failures),
                             failed_domains=rec.failures.failed_domains(),
                             **{k: v for k, v in result.items() if k != "errors"})
    return result


def _xen_disk_result(rec, planned, want_diff):
    """The module's result of the plans carried out (or checked)."""
    changed = False
    stale = []
    diffs = []
    for guest, _desired, plan in planned:
        if guest.domid in rec.unsettled:
            continue
        changed = changed or plan.acts or bool(guest.config_steps)
        rec._change_results(guest, plan)
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
                         % (rec._label(guest, c), c.current.unfinished_reason, "resumed" if c.action == _plan.RESUME
                            else "not resumed (wait=false)")
                         for c in plan.changes if c.current is not None and c.current.attach_unfinished
                         and c.action in (_plan.RESUME, _plan.UNCHANGED, _plan.REPAIR)]
        path = socket_path(guest.domid, rec.run_dir)
        for change in plan.changes:
            if rec.check_mode and change.changed and qmp_commands(change) and not socket_listening_path(path):
                rec.warnings.append("%s: the media change needs the guest's QEMU, but %s is not a socket: an "
                                    "apply would fail (is the device model running?)" % (rec._label(guest, change), path))
        if want_diff and (plan or guest.config_steps):
            diffs += guest_diffs(guest, plan, guest.view, rec.script_dir, rec.domains, rec.run_dir)
    result = {
        "changed": changed or rec.committed,
        "disks": [r for g, _d, p in planned if g.domid not in rec.unsettled
                  for r in (rec._result(g, c) for c in p.changes)],
        "stale": stale,
        "missing_domains": list(rec.missing),
        "xenstore_retries": rec.retries,
        "xenstore_replans": rec.replans,
        "warnings": rec.warnings,
    }
    if want_diff:
        result["diff"] = diffs
    return result


# -- xen_disk_info ------------------------------------------------------------------------
INFO_FLAGS = (("cdrom", 1), ("removable", 2), ("readonly", 4))  # blkif.h VDISK_*
_PUBLISHED_NUMBERS = (("sectors", "sectors"), ("sector-size", "sector_size"),
                      ("physical-sector-size", "physical_sector_size"))


def _state(value):
    number = _int(value) or 0
    return {"number": number, "name": _plan.state_name(number if value is not None else None)}


def published_of(tree, backend_path):
    """What the backend driver published (§3.5): size, sector sizes, info flags, feature-*."""
    out = {}
    for node, key in _PUBLISHED_NUMBERS:
        number = _int(tree.get(backend_path + "/" + node))
        if number is not None:
            out[key] = number
    if "sectors" in out:
        out["size_bytes"] = out["sectors"] * 512
    info = _int(tree.get(backend_path + "/info"))
    if info is not None:
        out["info"] = {name: bool(info & bit) for name, bit in INFO_FLAGS}
    features = {}
    prefix = backend_path + "/feature-"
    for path in tree.children(backend_path):
        full = backend_path + "/" + path
        if full.startswith(prefix):
            value = tree.get(full)
            features[path[len("feature-"):]] = _int(value) if _int(value) is not None else value
    if features:
        out["features"] = features
    return out


def disk_info(tree, current, names, script_dir=DEFAULT_SCRIPT_DIR):
    """The xen_disk_info entry of one recorded disk."""
    p = current.placement
    disk = disk_of_record(current, script_dir, names, tree)
    warnings = ["stale: %s" % reason for reason in current.stale] + list(current.warnings)
    if current.attach_unfinished:
        warnings.append("the attach did not finish: %s; the next xen_disk run declaring it resumes it"
                        % current.unfinished_reason)
    if current.detaching:
        warnings.append("a detach is in progress: the backend is Closing")
    warnings += ["guest's frontend: %s" % text for text in current.observed]
    settings = None
    spec = None
    if disk is not None:
        settings = disk_to_dict(disk)
        spec = render_disk_spec(disk)
    return {
        "vdev": current.vdev,
        "devid": current.devid,
        "kind": current.kind,
        "spec": spec,
        "settings": settings,
        "backend_domid": p.backend_domid,
        "backend_kind": p.backend_kind,
        "frontend_path": p.frontend_path,
        "backend_path": p.backend_path,
        "frontend_state": _state(tree.get(p.frontend_path + "/state")),
        "backend_state": _state(tree.get(p.backend_path + "/state")),
        "published": published_of(tree, p.backend_path),
        "hotplug_status": tree.get(p.backend_path + "/hotplug-status"),
        "hotplug_error": tree.get(p.backend_path + "/hotplug-error"),
        "attach_unfinished": current.attach_unfinished,
        "frontend_observed": list(current.observed),
        "warnings": warnings,
    }


def read_guest_config(libxl_dir, domid, vm_path):
    """(path, document or None, problem or None): libxl's domain configuration of a guest, read
    without a lock (libxl replaces it by a rename, so a read sees one whole version)."""
    uuid = uuid_of_vm_path(vm_path)
    if uuid is None:
        return None, None, "no uuid (/local/domain/%d/vm is %r): libxl's domain configuration cannot be named" \
            % (domid, vm_path)
    files = DomainFiles(libxl_dir, domid, uuid)
    try:
        data = files.read()
        if data is None:
            return files.path, None, (
                "libxl's domain configuration %s does not exist (not created by xl/libxl?): xl drops "
                "every disk of this guest at its next xl reboot, save or migration" % files.path)
        return files.path, _libxl_json.parse_config(data), None
    except (LibxlFileError, _libxl_json.LibxlConfigError) as exc:
        return files.path, None, "libxl's domain configuration %s: %s" % (files.path, exc)


def run_xen_disk_info(params, *, inspect_images=True, skip_missing=False):
    """The xen_disk_info module without Ansible: {"guests": [...]} or raises ReconcileError.

    `inspect_images=False` leaves out each disk's `image` (no stat, no qemu-img: a drift report
    needs only the specs); `skip_missing` leaves out the named domains that do not exist and lists
    them in `missing_domains` instead of failing."""
    _check_params(_argspec.xen_disk_info_param_errors(params))
    conn = _open(params)
    try:
        def read(reader):
            domains = reader.domains()
            names = {}
            for domid, name in domains.items():
                if name is not None:
                    names.setdefault(name, []).append(domid)
            if params.get("domain") is not None:
                refs = [("domain", str(params["domain"]))]
            elif params.get("domains"):
                refs = [("domains[%d]" % i, str(d)) for i, d in enumerate(params["domains"])]
            else:
                refs = [(None, str(d)) for d in sorted(domains)]
            domids, errors, missing = [], [], []
            for where, ref in refs:
                number = _declaration.domid_text(ref)
                if number is not None and number in domains:
                    domid = number
                elif len(names.get(ref, [])) == 1:
                    domid = names[ref][0]
                elif names.get(ref):
                    errors.append("%s: several domains are named %r (ids %s): give the domain id"
                                  % (where, ref, ", ".join(str(d) for d in names[ref])))
                    continue
                elif skip_missing:
                    missing.append(ref)
                    continue
                else:
                    errors.append("%s: %s" % (where, _declaration.no_domain_with_id(ref) if number is not None
                                              else "no domain named %r on this host" % ref))
                    continue
                if domid not in domids:
                    domids.append(domid)
            if errors:
                raise ReconcileError("\n".join(errors), errors=errors)
            tree = read_libxl_records(reader, domids)
            tree.values.update({p: v for p, v in reader.read_values([vm_path_node(d) for d in domids]).items()
                                if v is not None})
            dirs = []
            for domid in domids:
                for current in _plan.read_disks(tree, domid):
                    dirs += [current.placement.frontend_path, current.placement.backend_path]
            merge(tree, reader.read_tree(sorted(set(dirs)), with_perms=False))
            fronts = [p for p in dirs if frontend_node(p)]
            tree.perms.update({p: v for p, v in reader.read_perms(fronts).items() if v is not None})
            return domains, domids, tree, missing

        try:
            snap = conn.snapshot_by_owner(read, _guest_of, observed=frontend_node)
        except XenstoreError as exc:
            message = "%s (while reading the host)" % exc
            raise ReconcileError(message, errors=[message]) from None
        domains, domids, tree, missing = snap.value
        script_dir = params.get("script_dir") or DEFAULT_SCRIPT_DIR
        libxl_dir = params.get("libxl_dir") or DEFAULT_LIBXL_DIR
        guests = []
        for domid in domids:
            currents = sorted(_plan.read_disks(tree, domid), key=lambda c: (c.devid, c.kind))
            disks = [disk_info(tree, c, domains, script_dir) for c in currents]
            warnings = _plan.guest_warnings(tree, domid)
            path, config, problem = read_guest_config(libxl_dir, domid, tree.get(vm_path_node(domid)))
            if problem and (currents or config is None and path is None):
                warnings.append(problem)
            recorded = set()
            for current, disk in zip(currents, disks):
                vdev = current.libxl.get("dev") or current.vdev
                entry = _libxl_json.entry_for(config, vdev) if config is not None else None
                if entry is not None:
                    recorded.add(vdev)
                disk["libxl_config"] = entry
                image = target_image(disk) if inspect_images else None
                if image is not None:
                    disk["image"] = image
                    if image.get("format_mismatch"):
                        disk["warnings"].append("%s: %s" % (image["path"], image["format_mismatch"]))
                # no file (a guest xl did not create): nothing to survive, not a disk libxl lost
                disk["survives_xl_reboot"] = entry is not None if config is not None else None
                if config is not None and entry is None:
                    disk["warnings"].append(
                        "not in libxl's domain configuration: xl drops it at the guest's next xl reboot, "
                        "save or migration")
            guests.append({
                "domain": domains.get(domid) or "",
                "domid": domid,
                "type": tree.get("/libxl/%d/type" % domid),
                "specs": [d["spec"] for d in disks if d["spec"] is not None],
                "warnings": warnings,
                "disks": disks,
                "libxl_config_path": path if config is not None else None,
                "libxl_only": [{"vdev": e.get("vdev"), "entry": e}
                               for e in _libxl_json.disk_entries(config) if e.get("vdev") not in recorded],
            })
        result = {"guests": guests}
        if skip_missing:
            result["missing_domains"] = missing
        return result
    finally:
        conn.close()


# -- the storage behind the disks (images) ------------------------------------------------------
@dataclasses.dataclass
class ImageEntry:
    """One declared disk with storage options: its spec, what was found, what is planned/done."""

    guest: object
    index: int
    spec: object = None          # _storage.ImageSpec
    facts: object = None         # _storage.ImageFacts
    step: object = None          # _storage.ImageStep
    current: object = None       # the attached disk (CurrentDisk) when it holds the image
    result: dict = dataclasses.field(default_factory=dict)


DOM0_REFS = (None, "", 0, "0", "Domain-0")


class ImageRun:
    """The image steps of one xen_disk call: options checked and images inspected before the
    declaration is validated (a target about to be created counts as a file for libxl's stat),
    planned once the attached disks are known, executed before the xenstore transactions, and
    the backend of an attached disk told of a growth after it."""

    def __init__(self, guests, stat=stat_target, inspect=None):
        self.inspect = inspect or _qemu_img.inspect
        self.entries = []
        self.removals = []       # ImageEntry of state=absent disks with remove_storage
        self.failed = set()      # domids whose image steps failed: their xenstore is not changed
        self.warnings = []
        self._stat = stat
        self.creating = set()
        errors = []
        by_path = {}
        for guest in guests:
            for index, keys in enumerate(guest.storage):
                label = "%sdisks[%d]" % (guest.prefix, index)
                if not keys:
                    if guest.state == "present":
                        errors += self._header_check(guest, index, label)
                    continue
                if guest.state == "absent":
                    errors += self._absent_entry(guest, index, keys, label)
                    continue
                try:
                    disk = _declaration.parse_item(guest.disks[index])
                except DiskSpecError:
                    continue  # reported, located, by the declaration's validation
                backend = disk.backend if disk.backend is not None else guest.backend
                if backend not in DOM0_REFS:
                    errors.append("%s: storage options are for images dom0 serves; backend %s is another "
                                  "domain, which owns its storage" % (label, backend))
                    continue
                spec, spec_errors = _storage.storage_spec(keys, disk, label)
                errors += spec_errors
                if spec is None:
                    continue
                path = os.path.normpath(spec.path)
                if path in by_path:
                    errors.append("%s.target: %s also has storage options at %s: declare them once"
                                  % (label, spec.path, by_path[path]))
                    continue
                by_path[path] = label
                try:
                    facts = self.inspect(spec.path)
                except _qemu_img.ImageError as exc:
                    errors.append("%s.target: %s" % (label, exc))
                    continue
                if facts.kind != "file":
                    try:  # a missing directory, a directory, a device: said now, not as libxl's stat
                        _storage.plan_image(spec, facts)
                    except ValueError as exc:
                        errors.append(str(exc))
                        continue
                self.entries.append(ImageEntry(guest, index, spec, facts))
                if facts.kind == "missing" and spec.create and facts.parent_kind == "directory":
                    self.creating.add(spec.path)
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)

    def _header_check(self, guest, index, label):
        """A dom0 file target whose header names another image format than the declared one: an
        error (format_mismatch: ignore accepts it), so that a guest that wrote a qcow2 header
        into its raw image never makes dom0 open a backing file of the guest's choosing. A
        declared non-raw format over a headerless (raw-looking) file is only a warning."""
        try:
            disk = _declaration.parse_item(guest.disks[index])
        except DiskSpecError:
            return []
        if (disk.backend if disk.backend is not None else guest.backend) not in DOM0_REFS:
            return []
        fmt = disk.effective_format
        if fmt == "empty" or not disk.target or not disk.target.startswith("/"):
            return []
        found = _qemu_img.probe_format(disk.target)
        mismatch = _storage.format_mismatch(fmt, found)
        if mismatch is None:
            return []
        if found == "raw":
            self.warnings.append("%s.format: %s: %s" % (label, disk.target, mismatch))
            return []
        return ["%s.format: %s: %s (format_mismatch: ignore accepts it)" % (label, disk.target, mismatch)]

    def _absent_entry(self, guest, index, keys, label):
        other = sorted(k for k in keys if k != "remove_storage")
        if other:
            return ["%s: %s: only remove_storage applies to a disk declared absent" % (label, ", ".join(other))]
        value = keys.get("remove_storage")
        if value is None or value is False:
            return []
        if value is not True:
            return ["%s.remove_storage: %s is not a boolean" % (label, _shown(value))]
        item = guest.disks[index]
        target = item.get("target") if isinstance(item, dict) else None
        self.removals.append(ImageEntry(guest, index, result={"label": label, "path": target}))
        return []

    def stat(self, path):
        """libxl's stat, where a target this run creates is already the file it will be."""
        return "file" if path in self.creating else self._stat(path)

    # -- planning --------------------------------------------------------------------------------
    def plan(self, planned):
        """Each image's step, now that the attached disks are known; raises ReconcileError
        (nothing written) on any refusal."""
        errors = []
        changes = {}
        for guest, _desired, plan in planned:
            for change in plan.changes:
                changes[(guest.domid, change.label)] = change
        for entry in self.entries:
            guest, spec = entry.guest, entry.spec
            change = changes.get((guest.domid, spec.label))
            current = change.current if change is not None else None
            entry.current = current if current is not None and current.holds_target and \
                current.target is not None and os.path.normpath(current.target) == os.path.normpath(spec.path) \
                else None
            uid, gid, problems = _owner_ids(spec)
            errors += problems
            try:
                entry.step = _storage.plan_image(spec, entry.facts, attached=entry.current is not None, uid=uid, gid=gid)
            except ValueError as exc:
                errors.append(str(exc))
                continue
            self.warnings += list(entry.step.warnings)
            entry.result = self._result(entry)
        errors += self._plan_removals(planned)
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)

    def _plan_removals(self, planned):
        """remove_storage: the file of a disk declared absent, unless another disk uses it."""
        if not self.removals:
            return []
        errors = []
        users = []               # (who, path) of every other disk of the host and of the declaration
        for guest, _desired, plan in planned:
            for change in plan.changes:
                if change.current is not None and change.current.target:
                    users.append(("%s (guest %d)" % (change.current.vdev, guest.domid), change.current.target,
                                  guest.domid, change.devid))
        for domid, disks in self.host_disks.items():
            for current in disks:
                if current.target:
                    users.append(("%s (guest %d)" % (current.vdev, domid), current.target, domid, current.devid))
        for guest, desired, _plan_of in planned:
            if guest.state != "present":
                continue
            for item in desired:
                target = getattr(getattr(item, "disk", None), "target", None)
                if target:  # a declared disk, attached by this run or not
                    users.append((item.label or item.disk.vdev, target, None, None))
        for entry in self.entries:
            users.append((entry.spec.label, entry.spec.path, None, None))
        for entry in self.removals:
            guest, label = entry.guest, entry.result["label"]
            devid = None
            try:
                devid = vdev_to_devid(str(_vdev_of(guest.disks[entry.index])))
            except (VdevError, DiskSpecError, TypeError):
                pass
            path = entry.result.get("path")
            recorded = [t for _w, t, d, n in users if d == guest.domid and n == devid]
            if path is None:
                path = recorded[0] if recorded else None
            if path is None:
                entry.result.update(action="unchanged", reason="no target known (not declared, not attached)")
                continue
            if not path.startswith("/"):
                errors.append("%s.target: %s is not an absolute path: not removed" % (label, _shown(path)))
                continue
            others = sorted({w for w, t, d, n in users if os.path.normpath(t) == os.path.normpath(path)
                             and not (d == guest.domid and n == devid)})
            if others:
                errors.append("%s.remove_storage: %s is used by %s: not removed" % (label, path, ", ".join(others)))
                continue
            try:
                facts = self.inspect(path)
            except _qemu_img.ImageError as exc:
                errors.append("%s.remove_storage: %s" % (label, exc))
                continue
            if facts.kind not in ("file", "missing"):
                errors.append("%s.remove_storage: %s is a %s: only image files are removed" % (label, path, facts.kind))
                continue
            entry.result.update(path=path, action="remove" if facts.kind == "file" else "unchanged")
        return errors

    host_disks = {}

    def read_host(self, tree, domains):
        """Every recorded disk of the host (for the removal's sharing check)."""
        self.host_disks = {domid: _plan.read_disks(tree, domid) for domid in domains}

    def _result(self, entry):
        step, spec = entry.step, entry.spec
        result = {"label": spec.label, "domain": entry.guest.name, "domid": entry.guest.domid, "path": spec.path,
                  "format": spec.format, "action": step.action, "size_before": step.size_before,
                  "size_after": step.size_after, "changed": step.changed, "description": step.describe(),
                  "attributes": dict(step.attributes)}
        if entry.current is not None and step.action == _storage.GROW:
            result["backend"] = {"kind": entry.current.placement.backend_kind, "path": entry.current.placement.backend_path}
        return result

    @property
    def changed(self):
        return any(e.step is not None and e.step.changed for e in self.entries) or \
            any(e.result.get("action") == "remove" for e in self.removals)

    def results(self):
        return [e.result for e in self.entries if e.result] + [e.result for e in self.removals]

    def diff(self):
        lines = [e.step.describe() for e in self.entries if e.step is not None and e.step.changed]
        lines += ["remove %s" % e.result["path"] for e in self.removals if e.result.get("action") == "remove"]
        if not lines:
            return []
        return [{"before_header": "images", "after_header": "images", "before": "",
                 "after": "\n".join(lines) + "\n"}]

    # -- execution -------------------------------------------------------------------------------
    def apply(self, failures):
        """Create, grow, shrink, set attributes: before any xenstore write of the guest. A
        failed image stops its guest (its disks are not attached to a missing or short image)."""
        for entry in self.entries:
            step, spec = entry.step, entry.spec
            if step is None or not step.changed or entry.guest.domid in self.failed:
                continue
            if step.action == _storage.GROW and entry.current is not None \
                    and entry.current.placement.backend_kind == "qdisk" and not step.attributes:
                # QEMU holds the image (and its lock): it grows it itself (block_resize), after
                entry.result["deferred"] = True
                continue
            try:
                if step.action == _storage.CREATE:
                    attrs = dict(step.attributes)
                    _qemu_img.create(spec.path, spec.qemu_format, step.size_after, preallocation=spec.preallocation,
                                     backing_file=spec.backing_file, backing_format=spec.backing_format,
                                     mode=attrs.get("mode"), uid=attrs.get("uid"), gid=attrs.get("gid"))
                else:
                    if step.action in (_storage.GROW, _storage.SHRINK):
                        _qemu_img.resize(spec.path, spec.qemu_format, step.size_after,
                                         shrink=step.action == _storage.SHRINK, preallocation=spec.preallocation)
                    if step.attributes:
                        attrs = dict(step.attributes)
                        _qemu_img.set_attributes(spec.path, attrs.get("mode"), attrs.get("uid"), attrs.get("gid"))
                entry.result["done"] = True
            except _qemu_img.ImageError as exc:
                message = "%s: %s; nothing of guest %s was changed in xenstore" % (spec.label, exc, entry.guest.domain)
                entry.result["error"] = message
                failures.add(entry.guest, message)
                self.failed.add(entry.guest.domid)

    def notify(self, conn, timeout, failures, rec=None):
        """Tell the backend of each attached disk that grew, and wait for its new `sectors`."""
        for entry in self.entries:
            if entry.current is None or entry.step is None or entry.step.action != _storage.GROW \
                    or not (entry.result.get("done") or entry.result.get("deferred")):
                continue
            entry.result["backend"] = self._notify(conn, entry, timeout, failures, rec)

    def _block_resize(self, conn, entry, out, rec, failures):
        """qdisk: QEMU is told as libxl names its drive (an HVM guest's emulated disk, qemu-xen
        without a stub domain); anything else is said, not guessed."""
        guest, current = entry.guest, entry.current
        version_path, stubdom_path = _plan.device_model_paths(guest.domid)
        version = conn.read_value(version_path)
        drive = _storage.emulated_drive_id(current.vdev, current.devid, _hdtype(guest.config))
        out["told"] = None
        if guest.guest_type != "hvm" or drive is None:
            out["note"] = ("QEMU's qdisk backend of %s has no drive libxl names for QMP: the guest sees the new "
                           "size when the disk is attached again" % current.vdev)
        elif version != _plan.DM_QEMU_XEN:
            out["note"] = ("the device model is qemu-traditional (no QMP block_resize): the guest sees the new "
                           "size when the disk is attached again")
        elif conn.read_value(stubdom_path) is not None:
            out["note"] = "the device model runs in a stub domain: not told"
        if out.get("note"):
            self.warnings.append("%s: %s" % (entry.spec.label, out["note"]))
            self._resize_deferred(entry, failures)
            return out
        qmp = QmpRun(socket_path(guest.domid, rec.run_dir), rec.timeout if rec.timeout is not None
                     else _plan.HOTPLUG_TIMEOUT,
                     guest.files.qmp_lock(rec._alive(guest)) if guest.files is not None
                     and os.path.isdir(rec.libxl_dir) else None)
        try:
            qmp.open().execute("block_resize", (("device", drive), ("size", entry.step.size_after)))
            out["told"] = "block_resize device=%s size=%d" % (drive, entry.step.size_after)
            entry.result["done"] = True
        except (QmpError, LibxlFileError) as exc:
            out["note"] = "QMP block_resize of %s failed: %s" % (drive, exc)
            message = "%s: %s: the image was not grown" % (entry.spec.label, out["note"])
            entry.result["error"] = message
            failures.add(entry.guest, message)
        finally:
            qmp.close()
        return out

    def _resize_deferred(self, entry, failures):
        """An image QEMU may hold, that QMP cannot grow: qemu-img is tried (it fails on QEMU's lock)."""
        try:
            _qemu_img.resize(entry.spec.path, entry.spec.qemu_format, entry.step.size_after,
                             preallocation=entry.spec.preallocation)
            entry.result["done"] = True
        except _qemu_img.ImageError as exc:
            message = ("%s: %s (the device model holds the image: detach the disk, or grow it with the guest "
                       "shut down)" % (entry.spec.label, exc))
            entry.result["error"] = message
            failures.add(entry.guest, message)

    def _notify(self, conn, entry, timeout, failures, rec):
        placement = entry.current.placement
        out = {"kind": placement.backend_kind, "path": placement.backend_path,
               "sectors_before": _int(conn.read_value(placement.backend_path + "/sectors"))}
        wanted = entry.step.size_after // 512
        if placement.backend_kind == "vbd":
            device = conn.read_value(placement.backend_path + "/physical-device-path")
            if _loop.backing_file(device) is not None:
                try:
                    out["loop_device"] = device
                    out["loop_size"] = _loop.refresh(device, entry.spec.path)
                    out["told"] = "losetup -c %s" % device
                except _loop.LoopError as exc:
                    out["told"] = None
                    self.warnings.append("%s: %s: the guest does not see the new size until it is attached again"
                                         % (entry.spec.label, exc))
                    return out
            else:
                out["told"] = None
                out["note"] = ("the backend serves %s, not a loop device of the image: nothing to tell (a block "
                               "device's size is the device's)" % (device or "an unknown device"))
                return out
        elif placement.backend_kind == "qdisk":
            return self._block_resize(conn, entry, out, rec, failures)
        else:
            out["told"] = None
            out["note"] = ("a %s backend is not told of the growth by this module: the guest sees the new size "
                           "when the disk is attached again" % placement.backend_kind)
            self.warnings.append("%s: %s" % (entry.spec.label, out["note"]))
            return out
        deadline = time.monotonic() + (timeout if timeout is not None else _plan.HOTPLUG_TIMEOUT)
        while True:
            sectors = _int(conn.read_value(placement.backend_path + "/sectors"))
            if sectors is not None and sectors >= wanted:
                out["sectors_after"] = sectors
                return out
            if time.monotonic() >= deadline:
                out["sectors_after"] = sectors
                failures.add(entry.guest, "%s: the backend %s did not publish the new size (%d sectors; it shows %s) "
                                          "in time" % (entry.spec.label, placement.backend_path, wanted, sectors))
                return out
            time.sleep(0.05)

    def remove(self, failures, detached, conn, domids):
        """Remove the files of disks declared absent with remove_storage, once detached and no
        backend of the host (any domain, any kind, with or without a libxl record) names them."""
        wanted = [e for e in self.removals if e.result.get("action") == "remove"]
        if not wanted:
            return
        roots = ["/local/domain/%d/backend/%s" % (d, kind) for d in domids for kind in ("vbd", "qdisk", "virtio_disk")]
        tree = conn.read_tree(roots, with_perms=False)
        in_params = {}
        for path, value in tree.values.items():
            if path.endswith("/params") and value:
                for name in (value, value.split(":", 1)[-1]):
                    if name.startswith("/"):
                        in_params.setdefault(os.path.normpath(name), path[:-len("/params")])
        for entry in wanted:
            if entry.guest.domid in detached:
                entry.result["action"] = "unchanged"
                entry.result["reason"] = "the detach did not finish: not removed"
                continue
            backend = in_params.get(os.path.normpath(entry.result["path"]))
            if backend is not None:
                entry.result["action"] = "unchanged"
                message = "%s.remove_storage: %s is still named by the backend %s: not removed" \
                    % (entry.result["label"], entry.result["path"], backend)
                entry.result["error"] = message
                failures.add(entry.guest, message)
                continue
            try:
                _qemu_img.remove(entry.result["path"])
                entry.result["done"] = True
            except _qemu_img.ImageError as exc:
                entry.result["error"] = str(exc)
                failures.add(entry.guest, "%s.remove_storage: %s" % (entry.result["label"], exc))


def _hdtype(config):
    """b_info.type.hdtype of libxl's domain configuration (ide when unknown)."""
    try:
        return (config or {}).get("b_info", {}).get("type", {}).get("hdtype") or "ide"
    except AttributeError:
        return "ide"


def _vdev_of(item):
    if isinstance(item, str) and "," not in item and "=" not in item:
        return item
    if isinstance(item, dict) and "vdev" in item:
        return item["vdev"]
    return _declaration.parse_item(item).vdev


def _owner_ids(spec):
    """(uid, gid, [errors]) of an image's declared owner and group (names or numbers)."""
    import grp  # pylint: disable=import-outside-toplevel
    import pwd  # pylint: disable=import-outside-toplevel
    uid = gid = None
    errors = []
    for key, value, lookup in (("owner", spec.owner, pwd.getpwnam), ("group", spec.group, grp.getgrnam)):
        if value is None:
            continue
        if value.isdigit():
            number = int(value)
        else:
            try:
                number = lookup(value)[2]
            except KeyError:
                errors.append("%s.%s: no %s named %r on this host" % (spec.label, key, "user" if key == "owner"
                                                                      else "group", value))
                continue
        if key == "owner":
            uid = number
        else:
            gid = number
    return uid, gid, errors


def target_image(disk):
    """xen_disk_info's `image` of a dom0 disk's target: a file's format, sizes, backing chain and
    flags (raw: from stat alone; other formats: one `qemu-img info` with the header's format, not
    run when the header contradicts the declared format, so a guest-written header never makes dom0
    open a file of its choosing), a block device's size. None for other disks."""
    settings = disk.get("settings") or {}
    path = settings.get("target")
    declared = settings.get("format") or "raw"
    if disk.get("backend_domid") != 0 or not path or not path.startswith("/") or declared == "empty":
        return None
    try:
        facts = _qemu_img.inspect(path)
    except _qemu_img.ImageError as exc:
        return {"path": path, "kind": "unknown", "error": str(exc)}
    out = {"path": path, "kind": facts.kind}
    if facts.kind == "block":
        out["size"] = facts.virtual_size
        return out
    if facts.kind != "file":
        return out
    mismatch = _storage.format_mismatch(declared, facts.format)
    out.update(format=facts.format, declared_format=declared, virtual_size=facts.virtual_size,
               actual_size=facts.actual_size, backing_chain=[], dirty=None, corrupt=None, format_mismatch=mismatch)
    if facts.format == "raw" or mismatch:
        out["dirty"], out["corrupt"] = (False, False) if facts.format == "raw" else (None, None)
        if mismatch and facts.backing_file:
            out["backing_file_in_header"] = facts.backing_file
        return out
    try:
        chain = _qemu_img.info(path, facts.format)
    except _qemu_img.ImageError as exc:
        out["error"] = str(exc)
        return out
    top = chain[0] if chain else {}
    out["virtual_size"] = top.get("virtual-size", facts.virtual_size)
    out["actual_size"] = top.get("actual-size", facts.actual_size)
    out["dirty"] = bool(top.get("dirty-flag", False))
    out["corrupt"] = bool(((top.get("format-specific") or {}).get("data") or {}).get("corrupt", False))
    out["backing_chain"] = [{"filename": e.get("filename"), "format": e.get("format"),
                             "virtual_size": e.get("virtual-size"), "actual_size": e.get("actual-size")}
                            for e in chain[1:]]
    return out
