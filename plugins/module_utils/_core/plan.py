# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a guest's disks back from a xenstore snapshot, and plan the changes to its declaration.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

Reference: docs/XENSTORE-LAYOUT.md §4 (removal), §5 (read-back), §8 (idempotent
reimplementation). A `Plan` is a value: `bool(plan)` says "changed", `plan.after(tree)` is the
plan applied to a copy of the snapshot, and planning again against that copy gives an empty
plan. Each `DiskChange` also carries the phases the runtime runs (transactions, waits for the
backend, hotplug scripts), and what an apply would need (nothing, the guest's cooperation,
force, a restart, recreate).

What the plan reads (so the runtime reads exactly that, from one snapshot):
1. `guest_roots(domid)`: the subtrees `/libxl/D/device` (values) and the node `/libxl/D/type`;
2. `read_set(tree, domid, desired)` on that first snapshot: for the declared disks
   `owned_paths(desired)`, for every other recorded disk `current_read_paths(current)`.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field, replace

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import Disk, canonical_disk
from ansible_collections.xen.disks.plugins.module_utils._core.layout import (
    BACKEND,
    BACKEND_KIND,
    CREATE_ONLY,
    DEFAULT_SCRIPT_DIR,
    FRONTEND,
    KINDS,
    LENIENT,
    OWNED,
    QDISK_FORMAT_PREFIX,
    TOOLSTACK_DOMID,
    DiskPlacement,
    TreeView,
    attach_ops,
    cleanup_ops,
    close_ops,
    libxl_disk_path,
    libxl_kind_dir,
    media_change_ops,
    ownership,
    parse_backend_path,
    script_name,
)
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid
from ansible_collections.xen.disks.plugins.module_utils._core.xen_version import RULES, XenVersionError
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import SET_PERMS, WRITE, XsOp

XENBUS_STATES = {0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised", 4: "Connected",
                 5: "Closing", 6: "Closed", 7: "Reconfiguring", 8: "Reconfigured"}

# libxl_internal.h timeouts, in seconds.
INIT_TIMEOUT = 10
DESTROY_TIMEOUT = 10
HOTPLUG_TIMEOUT = 40

# Nodes §5.1 requires in the libxl directory.
REQUIRED_LIBXL_NODES = ("backend", "type", "dev", "removable", "mode", "device-type")

# Actions of a DiskChange.
ATTACH = "attach"
DETACH = "detach"
MEDIA_CHANGE = "media_change"
RECREATE = "recreate"
REPAIR = "repair"
RESUME = "resume"  # an attach whose backend never reached InitWait: wait again, run the script
UNCHANGED = "unchanged"
ABSENT = "absent"

# What an apply of a change needs (reported in check mode).
NEEDS_NOTHING = "nothing"
NEEDS_COOPERATION = "guest_cooperation"
NEEDS_FORCE = "force"
NEEDS_RESTART = "restart"
NEEDS_RECREATE = "recreate"

# Phase steps the runtime carries out, in order, for one disk.
STEP_TRANSACTION = "transaction"   # apply `ops` in one transaction
STEP_WAIT = "wait"                 # wait until `path` holds one of `values`
STEP_HOTPLUG = "hotplug"           # run `script` with `action` (add/remove) and `env`
STEP_WAIT_REMOVED = "wait_removed"  # wait until the directory `path` is gone (driver domain's devd)
STEP_CLEANUP = "cleanup"           # one transaction: cleanup_ops(fresh snapshot, placement)
# send `qmp` (QmpCommands) to the guest's QEMU: one connection per change, from its first QMP
# phase to its last phase (libxl's ev_qmp)
STEP_QMP = "qmp"

# /libxl/D/dm-version (libxl_device_model_version); a missing node means qemu-traditional.
DM_QEMU_XEN = "qemu_xen"
DM_TRADITIONAL = "qemu_xen_traditional"
DM_VERSIONS = ("unknown", DM_TRADITIONAL, DM_QEMU_XEN)
# libxl__qemu_disk_format_string: the block driver QEMU opens a medium with.
QEMU_FORMATS = {"raw": "raw", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vpc", "qed": "qed"}
# In a planned blockdev-change-medium: the fd set of the add-fd just before (QEMU numbers it).
QMP_FDSET = "/dev/fdset/<fdset-id>"

# Which xl option a libxl-written node stands for, for messages ("differing fields").
FIELD_OF_NODE = {
    "params": "target", "script": "script", "colo-host": "colo-host", "colo-port": "colo-port",
    "colo-export": "colo-export", "active-disk": "active-disk", "hidden-disk": "hidden-disk",
    "removable": "devtype", "dev": "vdev", "type": "backendtype", "mode": "access",
    "device-type": "devtype", "direct-io-safe": "direct-io-safe", "discard-enable": "discard",
    "specification": "specification", "transport": "transport", "base": "specification",
    "irq": "specification", "frontend": "backend", "backend": "backend", "backend-id": "backend",
    "frontend-id": "domain", "virtual-device": "vdev", "trusted": "trusted", "bootable": "bootable",
    "online": "online", "state": "state",
}

# xl options libxl writes only into the frontend (the guest's directory: the guest may rewrite
# them), which the frontend reads when it connects. A difference is repaired in place, never a
# refusal a guest could provoke; the repair says when it takes effect.
READ_AT_CONNECT = ("trusted",)

ReadSet = namedtuple("ReadSet", "values perms subtrees")
ReadSet.__doc__ = """What to read from one snapshot: node values (missing -> absent), permissions of
directories, and subtrees whose every node value is read (list, then read each child)."""


def _int_or_none(value):
    """A plain decimal number as libxl writes it (no sign, no leading zero), else None."""
    if value is None or not value.isdigit() or not value.isascii() or (value[0] == "0" and value != "0"):
        return None
    return int(value)


def state_name(state):
    """XenbusState name of a state number (None -> "Unknown" for a missing node)."""
    return XENBUS_STATES.get(state, "Unknown") if state is not None else "Unknown"


# -- read-back --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurrentDisk:
    """One disk as recorded in `/libxl/D/device/<kind>/N`, with the live state of both ends.

    Only dom0's nodes decide what the disk is (live, stale, closed, detaching, unfinished):
    the libxl record and the backend directory. The frontend directory is the guest's: it may
    rewrite or remove any node there, permissions included, so what is read there
    (`frontend_*`, `observed`) is reported, never the ground for a removal or a sharing decision.
    """

    domid: int
    kind: str
    devid: int
    libxl: dict = field(hash=False)   # direct children of the libxl directory: name -> value
    backend_domid: int
    backend_kind: str
    frontend_state: object = None     # int, or None when the node is missing/unread (observation)
    backend_state: object = None
    frontend_present: bool = False    # observation
    stale: tuple = ()                 # why the entry is dead and will be cleaned, if it is
    warnings: tuple = ()              # backend nodes differing from libxl's copy, ...
    backend_present: bool = False     # the backend directory has its `state` node
    observed: tuple = ()              # what the guest did to its frontend nodes (reported only)
    hotplug_status: object = None     # the backend's `hotplug-status` (the script's answer), or None

    @property
    def vdev(self):
        return self.libxl.get("dev")

    @property
    def placement(self):
        return DiskPlacement(self.domid, self.backend_domid, self.devid, self.kind, self.backend_kind)

    @property
    def libxl_path(self):
        return libxl_disk_path(self.domid, self.kind, self.devid)

    @property
    def is_cdrom(self):
        return self.libxl.get("device-type") == "cdrom"

    @property
    def target(self):
        """The target path, None if empty: a qdisk's `params` after its first `:` (§5.1); phy and
        standalone hold the path as given (libxl's read-back would cut it at a `:` too)."""
        params = self.libxl.get("params")
        if self.libxl.get("type") in ("phy", "standalone"):
            return params or None
        return split_params(params)[1]

    @property
    def format(self):
        """The format a qdisk's `params` prefix names; raw for phy and standalone; empty for an
        empty cdrom. None when the record cannot say."""
        fmt, target = split_params(self.libxl.get("params"))
        if self.is_cdrom and target is None:
            return "empty"
        if self.libxl.get("type") in ("phy", "standalone"):
            return "raw"
        return fmt

    @property
    def detaching(self):
        """A detach is in progress: the backend is Closing (a safe remove that timed out leaves
        exactly that). Not stale: finishing it needs the guest's cooperation, or force."""
        return not self.stale and self.backend_state == 5

    @property
    def attach_unfinished(self):
        """An attach libxl would not have finished: the backend is still Initialising where libxl
        waits for InitWait, or in InitWait with no answer from the hotplug script libxl runs
        (`hotplug-status`). The wait failed or is under way; the next run resumes it."""
        if self.stale:
            return False
        if self.backend_state == 1:
            return waits_for_backend(self.placement)
        return self.backend_state == 2 and self.hotplug_status is None and "script" in self.libxl \
            and self.placement.runs_hotplug_script

    @property
    def unfinished_reason(self):
        """Why `attach_unfinished`, for messages."""
        if self.backend_state == 1 and self.placement.backend_kind == "qdisk":
            return ("the backend is still Initialising: nothing serves it (no QEMU runs for the guest, or "
                    "QEMU refused the disk)")
        if self.backend_state == 1:
            return "the backend is still Initialising (it never reached InitWait)"
        return "the backend is in InitWait and its hotplug script never answered (no hotplug-status)"

    @property
    def holds_target(self):
        """Whether the disk may hold its target open: a backend directory exists (whatever the
        guest's frontend says), for the rule that a target attached read-write is not shared."""
        return self.backend_present

    @property
    def connected(self):
        """The guest's frontend is live (Initialised, Connected or Closing): a detach needs it
        (as reported in `needs`; an observation, never a reason to skip the handshake)."""
        return self.frontend_present and self.frontend_state in (3, 4, 5)


FORMAT_OF_PREFIX = {prefix: fmt for fmt, prefix in QDISK_FORMAT_PREFIX.items() if fmt != "empty"}


def split_params(params):
    """(format or None, target or None) of a `params` value, as libxl reads it back (§5.1)."""
    if params is None:
        return None, None
    if ":" in params:
        prefix, target = params.split(":", 1)
        return FORMAT_OF_PREFIX.get(prefix), target or None
    return None, params or None


def settled_disk(desired):
    """The declared disk with libxl's choices made explicit (backend type, format) and the
    defaults left unset: the same shape `current_to_disk` reads back, for comparing and
    rendering both sides of a diff alike."""
    disk = desired.disk
    script = dict(desired.backend).get("script")
    return canonical_disk(replace(
        disk, target=disk.target or None, format=disk.effective_format,
        access="rw" if disk.readwrite else "ro", devtype="cdrom" if disk.is_cdrom else "disk",
        backendtype=desired.backend_type, script=script_name(script, desired.script_dir) if script else None,
        specification=disk.effective_specification, discard=disk.effective_discard,
        trusted=disk.effective_trusted,
        direct_io_safe=bool(disk.direct_io_safe), colo=True if disk.effective_colo else None,
        colo_host=disk.colo_host if disk.effective_colo else None,
        colo_port=int(disk.colo_port) if disk.effective_colo and disk.colo_port is not None else None,
        colo_export=disk.colo_export if disk.effective_colo else None,
        active_disk=disk.active_disk if disk.effective_colo else None,
        hidden_disk=disk.hidden_disk if disk.effective_colo else None, transport=None))


def current_to_disk(current, tree=None, *, domain_name=None, script_dir=None):
    """A `_disk_spec.Disk` for a recorded disk (§5.1 plus what the record holds beyond it:
    script, discard, direct-io-safe, and `trusted` from the frontend when `tree` has it), in
    the shape of `settled_disk`, so that `render_disk_spec` gives its canonical xl spec.
    `domain_name(domid)` (or a dict) names a driver domain; default: its domid."""
    lx = current.libxl
    readwrite = lx.get("mode") == "w"
    is_cdrom = current.is_cdrom
    backend = None
    if current.backend_domid != TOOLSTACK_DOMID:
        name = domain_name(current.backend_domid) if callable(domain_name) else \
            (domain_name or {}).get(current.backend_domid)
        backend = name if name else str(current.backend_domid)
    trusted_node = tree.get(current.placement.frontend_path + "/trusted") if tree is not None else None
    colo = "colo-host" in lx
    port = lx.get("colo-port")
    return canonical_disk(Disk(
        target=current.target, format=current.format, vdev=lx.get("dev"), access="rw" if readwrite else "ro",
        devtype="cdrom" if is_cdrom else "disk", backendtype=lx.get("type"), backend=backend,
        script=script_name(lx["script"], script_dir or DEFAULT_SCRIPT_DIR) if "script" in lx else None,
        specification=lx.get("specification", "xen"),
        discard=lx.get("discard-enable", "1" if readwrite else "0") == "1",
        direct_io_safe=lx.get("direct-io-safe") == "1",
        trusted=trusted_node != "0",
        colo=True if colo else None, colo_host=lx.get("colo-host") if colo else None,
        colo_port=int(port) if colo and port is not None and port.isdigit() else None,
        colo_export=lx.get("colo-export") if colo else None,
        active_disk=lx.get("active-disk") if colo else None,
        hidden_disk=lx.get("hidden-disk") if colo else None))


def guest_roots(domid):
    """First read of a guest: the subtree `/libxl/D/device` and the node `/libxl/D/type`."""
    return ReadSet(values=("/libxl/%d/type" % domid,), perms=(), subtrees=("/libxl/%d/device" % domid,))


def device_model_paths(domid):
    """What a cdrom media change asks of the guest's device model (libxl_cdrom_insert): its
    version (`/libxl/D/dm-version`) and whether it runs in a stub domain. Both are written
    by the toolstack in directories the guest cannot write."""
    return ("/libxl/%d/dm-version" % domid, "/local/domain/%d/image/device-model-domid" % domid)


def _placement_of_record(domid, kind, devid, libxl):
    parsed = parse_backend_path(libxl.get("backend"))
    if parsed is not None and parsed[2] == domid and parsed[3] == devid:
        return parsed[0], parsed[1]
    # No usable record: recompute as libxl__device_from_disk does (type -> backend kind, B = 0).
    return TOOLSTACK_DOMID, BACKEND_KIND.get(libxl.get("type"), kind)


def read_disk(tree, domid, kind, devid):
    """The `CurrentDisk` recorded at `/libxl/D/device/<kind>/N`, or None if there is none.

    Stale (dead: cleaned without a handshake) only from dom0's nodes: a half-written or invalid
    libxl record, a missing backend directory, a Closed backend (whose teardown still runs the
    hotplug `remove`, `_detach_phases`). Nothing the guest writes makes a disk stale."""
    path = libxl_disk_path(domid, kind, devid)
    names = tree.children(path)
    if path not in tree and not names:
        return None
    libxl = {name: tree.values[path + "/" + name] for name in names}
    backend_domid, backend_kind = _placement_of_record(domid, kind, devid, libxl)
    placement = DiskPlacement(domid, backend_domid, devid, kind, backend_kind)
    front, back = placement.frontend_path, placement.backend_path
    backend_present = (back + "/state") in tree
    backend_state = _int_or_none(tree.get(back + "/state"))

    stale = []
    missing = [n for n in REQUIRED_LIBXL_NODES if n not in libxl]
    if missing:
        stale.append("half-written libxl record (no %s)" % ", ".join(missing))
    elif parse_backend_path(libxl["backend"]) is None:
        stale.append("libxl record has an invalid backend path %r" % libxl["backend"])
    if not backend_present:
        stale.append("backend directory missing")
    elif backend_state == 6:
        stale.append("backend Closed")

    warnings = []
    for name in sorted(libxl):
        if ownership(BACKEND, name) != OWNED:
            continue
        have = tree.get(back + "/" + name)
        if have is not None and have != libxl[name]:
            warnings.append("backend node %s = %r differs from libxl's copy %r" % (name, have, libxl[name]))
    frontend_present, frontend_state, observed = _observe_frontend(tree, placement, backend_state)
    return CurrentDisk(domid, kind, devid, libxl, backend_domid, backend_kind, frontend_state,
                       backend_state, frontend_present, tuple(stale), tuple(warnings), backend_present,
                       observed, tree.get(back + "/hotplug-status"))


def _observe_frontend(tree, placement, backend_state):
    """(present, state, observations) of the guest's frontend directory, from whatever of it
    `tree` holds (directory, `backend`, `state`, permissions). Reported, never acted upon."""
    front = placement.frontend_path
    present = any(p in tree for p in (front, front + "/backend", front + "/state")) or front in tree.perms
    state = _int_or_none(tree.get(front + "/state"))
    observed = []
    if not present:
        return False, None, ("the frontend directory %s is missing" % front,)
    backend = tree.get(front + "/backend")
    if backend is None and front in tree:
        observed.append("the frontend node %s/backend is missing" % front)
    elif backend is not None and backend != placement.backend_path:
        observed.append("the frontend node %s/backend is %r, not %r" % (front, backend, placement.backend_path))
    raw_state = tree.get(front + "/state")
    if raw_state is None and front in tree:
        observed.append("the frontend node %s/state is missing" % front)
    elif raw_state is not None and (state is None or state not in XENBUS_STATES):
        observed.append("the frontend node %s/state is %r, not a XenbusState" % (front, raw_state))
    elif backend_state == 4 and state in (0, 6):
        observed.append("the frontend is %s while the backend is Connected" % state_name(state))
    have = tree.perms.get(front)
    want = placement.frontend_perms
    if have is not None and tuple(have) != tuple(want):
        observed.append("the permissions of the frontend directory %s are %s (libxl wrote %s)"
                        % (front, ",".join(have), ",".join(want)))
    return True, state, tuple(observed)


def read_disks(tree, domid):
    """Every disk recorded for guest `domid` (§5.1/§5.2), both kinds, sorted by (kind, devid).

    Stale entries (backend missing or Closed, frontend missing, half-written records) are
    returned too, with the reasons in `stale`. Child names that are not device numbers are
    reported by `guest_warnings`.
    """
    out = []
    for kind in KINDS:
        devids = [_int_or_none(name) for name in tree.children(libxl_kind_dir(domid, kind))]
        for devid in sorted(d for d in devids if d is not None):
            out.append(read_disk(tree, domid, kind, devid))
    return out


def guest_warnings(tree, domid):
    """Guest-level problems: both vbd and virtio_disk records (libxl then lists none, §5.2),
    and record names that are not device numbers."""
    warnings = []
    kinds = [k for k in KINDS if tree.children(libxl_kind_dir(domid, k))]
    if len(kinds) == 2:
        warnings.append("guest %d has both vbd and virtio_disk records: libxl refuses to list its disks "
                        "(\"Invalid configuration, both xen and virtio paths are present\")" % domid)
    for kind in KINDS:
        for name in tree.children(libxl_kind_dir(domid, kind)):
            devid = _int_or_none(name)
            if devid is None or str(devid) != name:
                warnings.append("%s/%s is not a device number" % (libxl_kind_dir(domid, kind), name))
    return warnings


def current_read_paths(current):
    """Nodes the plan reads for a recorded disk: backend `state` and `hotplug-status` (what
    decides), and the frontend directory, `backend` and `state` (observations, reported)."""
    p = current.placement
    return (p.backend_path + "/state", p.backend_path + "/hotplug-status", p.frontend_path,
            p.frontend_path + "/backend", p.frontend_path + "/state")


def owned_paths(desired):
    """The exact reads a no-op check of declared disk(s) needs.

    `values`: both directories and every frontend and backend node libxl writes except the
    backend's `online` (backend `state` tells live from stale; the frontend's are observations);
    `perms`: the frontend and backend directories; `subtrees`: the libxl directory (all of it
    is owned).
    Accepts one DesiredDisk or an iterable of them.
    """
    items = [desired] if hasattr(desired, "placement") else list(desired)
    values, perms, subtrees = [], [], []
    for d in items:
        p = d.placement
        values += [p.frontend_path, p.backend_path]
        values += [p.frontend_path + "/" + name for name, _value in d.frontend]
        values += [p.backend_path + "/" + name for name, _value in d.backend if name != "online"]
        values.append(p.backend_path + "/hotplug-status")  # an unfinished attach (the script's answer)
        perms += [p.frontend_path, p.backend_path]
        subtrees.append(p.libxl_path)
    return ReadSet(tuple(values), tuple(perms), tuple(subtrees))


def owned_node_count(desired):
    """Nodes libxl writes for one disk: its three directories and every node in them."""
    return 3 + len(desired.frontend) + len(desired.backend) + len(desired.libxl)


def read_set(tree, domid, desired):
    """Second read of a guest, computed on the first (`guest_roots`): the declared disks' owned
    paths plus, for each other recorded disk (or one recorded elsewhere), `current_read_paths`."""
    own = owned_paths(desired)
    values = list(own.values)
    if any(d.guest_type == "hvm" and d.disk.is_cdrom for d in desired):
        values += device_model_paths(domid)
    seen = set(values)
    for current in read_disks(tree, domid):
        for path in current_read_paths(current):
            if path not in seen:
                seen.add(path)
                values.append(path)
    return ReadSet(tuple(values), own.perms, own.subtrees)


# -- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One step of the runtime's work for a disk (see the STEP_* constants)."""

    step: str
    ops: tuple = ()
    path: str = ""
    values: tuple = ()
    timeout: float = 0
    action: str = ""
    script: str = ""
    env: tuple = ()              # ((name, value), ...) for a hotplug script
    on_timeout: str = "fail"     # "fail", or "continue" (FORCE_ON goes on to the cleanup)
    placement: object = None     # cleanup: recompute cleanup_ops against a fresh snapshot
    qmp: tuple = ()              # QmpCommands, sent in order
    # FORCE_ON: the placement whose frontend directory `ops` removes first; the runtime removes it
    # on the transaction's own view instead (its walk-up of empty parents may not go by the
    # snapshot: another change of the same transaction may create a sibling)
    frontend_cleanup: object = None


@dataclass(frozen=True)
class QmpCommand:
    """One QMP command as libxl sends it: `arguments` are (name, value) pairs in libxl's order;
    `fd_path` names the file whose descriptor (opened read-only) goes with the message."""

    execute: str
    arguments: tuple = ()
    fd_path: str = ""

    def describe(self):
        """`eject id=ide-5632`, as check mode and the results show it."""
        words = [self.execute] + ["%s=%s" % (name, value) for name, value in self.arguments]
        if self.fd_path:
            words.append("(with the file descriptor of %s)" % self.fd_path)
        return " ".join(words)

    def resolved(self, fdset):
        """The command with `QMP_FDSET` replaced by the fd set QEMU returned for the add-fd."""
        return replace(self, arguments=tuple((n, "/dev/fdset/%d" % fdset if v == QMP_FDSET else v)
                                             for n, v in self.arguments))

    def for_qemu(self, version):
        """libxl uses `id` (a qdev id) and blockdev-change-medium from QEMU 2.8 on; before,
        `device` and `change` (QEMU's `version` as (major, minor, micro))."""
        if version is None or tuple(version) >= (2, 8, 0):
            return self
        args = dict(self.arguments)
        if self.execute == "eject":
            return replace(self, arguments=(("device", args["id"]),))
        if self.execute == "blockdev-change-medium":
            return replace(self, execute="change", arguments=(
                ("device", args["id"]), ("target", args["filename"]), ("arg", args["format"])))
        return self


def media_change_qmp(desired):
    """libxl_cdrom_insert's QMP for a qemu-xen guest: ([query-version, eject] before the eject
    transaction, [add-fd, blockdev-change-medium] before the insert transaction, or [] when
    the new medium is empty). QEMU knows the cdrom as the qdev `ide-<devid>` (libxl_dm.c)."""
    disk = desired.disk
    qdev = "ide-%d" % desired.devid
    eject = [QmpCommand("query-version"), QmpCommand("eject", (("id", qdev),))]
    fmt = disk.effective_format
    if fmt == "empty":
        return eject, []
    insert = [QmpCommand("add-fd", (("opaque", "%s:%s" % (fmt, disk.target)),), fd_path=disk.target),
              QmpCommand("blockdev-change-medium", (("id", qdev), ("filename", QMP_FDSET),
                                                    ("format", QEMU_FORMATS[fmt])))]
    return eject, insert


@dataclass(frozen=True)
class DiskChange:
    """The plan for one disk: action, identity, differences, ops and runtime phases."""

    action: str
    vdev: str
    devid: int
    kind: str
    label: str = ""
    fields: tuple = ()           # xl options that differ (sorted)
    differences: tuple = ()      # ((path, current value, desired value), ...)
    ops: tuple = ()              # net effect on the snapshot (what `Plan.after` applies)
    phases: tuple = ()
    needs: str = NEEDS_NOTHING
    stale: tuple = ()            # stale entries cleaned by this change, with reasons
    notes: tuple = ()            # informational (lenient differences, backend drift, ...)
    error: str = ""              # set when the change is refused (recreate/virtio/...)
    desired: object = None       # DesiredDisk or None
    current: object = None       # CurrentDisk or None

    @property
    def changed(self):
        """Whether xenstore is written (what `Plan.after` shows)."""
        return bool(self.ops) and not self.error

    @property
    def acts(self):
        """Whether the runtime has work: writes, or an unfinished attach to resume."""
        return (bool(self.ops) or self.action == RESUME) and not self.error


class PlanError(ValueError):
    """Changes the plan refuses: every message, one per line."""

    def __init__(self, messages):
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True)
class Plan:
    """The changes to one guest: a value, ops sorted deterministically (detaches first)."""

    domid: int
    changes: tuple = ()
    stale: tuple = ()            # stale entries seen and left alone: (vdev or path, reasons)
    warnings: tuple = ()

    @property
    def ops(self):
        return tuple(op for c in self.changes if not c.error for op in c.ops)

    @property
    def errors(self):
        return tuple(c.error for c in self.changes if c.error)

    def __bool__(self):
        return any(c.changed for c in self.changes)

    @property
    def acts(self):
        """Whether an apply has work: writes, or attaches to resume (`DiskChange.acts`)."""
        return any(c.acts for c in self.changes)

    def after(self, tree):
        """The snapshot with every accepted change applied, on a copy."""
        return tree.copy().apply_all(self.ops)

    def check(self):
        """Raise PlanError listing every refused change."""
        if self.errors:
            raise PlanError(self.errors)
        return self


def _hotplug_env(placement, script):
    return (("script", script), ("XENBUS_TYPE", "vbd"),
            ("XENBUS_PATH", "backend/vbd/%d/%d" % (placement.domid, placement.devid)),
            ("XENBUS_BASE_PATH", "backend"))


def waits_for_backend(placement, creating=False):
    """Whether an attach waits for the backend to reach InitWait: where libxl waits (every backend
    but QEMU's qdisk), and also for a qdisk of a running guest. libxl does not wait for QEMU, but
    then a disk nothing serves (a PV guest created without a QEMU-served disk has no QEMU; QEMU
    7.2 refuses a read-only qcow2) looks attached: its backend stays Initialising. While the
    guest is being created its QEMU is not started yet: no wait then."""
    return placement.waits_for_init or (placement.backend_kind == "qdisk" and not creating)


def _attach_phases(desired, ops, creating=False):
    p = desired.placement
    phases = [Phase(STEP_TRANSACTION, ops=tuple(ops))]
    if waits_for_backend(p, creating):
        phases.append(Phase(STEP_WAIT, path=p.backend_path + "/state", values=("2",), timeout=INIT_TIMEOUT))
    script = desired.hotplug_script
    if script:
        phases.append(Phase(STEP_HOTPLUG, action="add", script=script, env=_hotplug_env(p, script),
                            timeout=HOTPLUG_TIMEOUT))
    return phases


def _detach_phases(tree, current, force, cleanup):
    p = current.placement
    if not current.backend_present:  # no backend left to hand-shake with
        return [Phase(STEP_CLEANUP, ops=tuple(cleanup), placement=p)]
    phases = [
        Phase(STEP_TRANSACTION, ops=tuple(close_ops(tree, p, force=force)), frontend_cleanup=p if force else None),
        Phase(STEP_WAIT, path=p.backend_path + "/state", values=("6",), timeout=DESTROY_TIMEOUT,
              on_timeout="continue" if force else "fail"),
    ]
    if p.backend_domid != TOOLSTACK_DOMID:
        phases.append(Phase(STEP_WAIT_REMOVED, path=p.backend_path, timeout=DESTROY_TIMEOUT,
                            on_timeout="continue" if force else "fail"))
    elif p.backend_kind == "vbd":
        script = current.libxl.get("script") or tree.get(p.backend_path + "/script")
        if script:
            phases.append(Phase(STEP_HOTPLUG, action="remove", script=script, env=_hotplug_env(p, script),
                                timeout=HOTPLUG_TIMEOUT))
    phases.append(Phase(STEP_CLEANUP, ops=tuple(cleanup), placement=p))
    return phases


def _detach_needs(current, force):
    if not current.backend_present or current.backend_state == 6 or not current.frontend_present \
            or current.frontend_state == 6:
        return NEEDS_NOTHING
    if force:
        return NEEDS_FORCE
    return NEEDS_COOPERATION if current.connected else NEEDS_FORCE


def _same_params(current, desired):
    """An ejected cdrom holds params "" (§3.6); a new empty one "aio:": same meaning."""
    return current == desired or (desired == "aio:" and current == "")


def _equivalent(name, have, value, desired):
    """Values that differ in spelling only: an ejected cdrom's "" and a new one's "aio:", and a
    `dev` written with another spelling of the same device number (libxl keeps the vdev as
    configured: `d0p0` and `xvda` are one disk)."""
    if have == value:
        return True
    if have is None:
        return False
    if name == "params" and desired.disk.is_cdrom:
        return _same_params(have, value)
    if name == "dev":
        try:
            return vdev_to_devid(have) == desired.devid
        except ValueError:
            return False
    return False


def _compare(tree, desired, current):
    """(differences in the libxl record, drift elsewhere, perms drift, notes) of a live disk."""
    p = desired.placement
    record, drift, notes = [], [], []
    want = dict(desired.libxl)
    for name in sorted(set(want) | set(current.libxl)):
        have, value = current.libxl.get(name), want.get(name)
        if have != value and _equivalent(name, have, value, desired):
            if name == "dev":
                notes.append("%s is recorded as %r, the same device (%d): the recorded spelling is kept"
                             % (value, have, desired.devid))
        elif have != value:
            record.append((p.libxl_path + "/" + name, have, value))
    # A frontend directory the guest removed is reported (`CurrentDisk.observed`), not re-created.
    for base, entries, directory in (((p.frontend_path, desired.frontend, FRONTEND),) if current.frontend_present
                                     else ()) + ((p.backend_path, desired.backend, BACKEND),):
        for name, value in entries:
            klass = ownership(directory, name)
            if klass == CREATE_ONLY:
                continue
            path = base + "/" + name
            have = tree.get(path)
            if klass == LENIENT:
                if have is not None and have != value:
                    notes.append("%s = %r (libxl wrote %r; the guest may rewrite it)" % (path, have, value))
                continue
            if not _equivalent(name, have, value, desired):
                drift.append((path, have, value))
                if name in READ_AT_CONNECT and directory == FRONTEND:
                    notes.append("%s: the frontend reads it when it connects: the new value applies from "
                                 "the guest's next connection (a recreate applies it now)" % path)
    perms = []  # the frontend directory's are the guest's: `CurrentDisk.observed` reports them
    for path, want_perms in ((p.backend_path, p.backend_perms),):
        have = tree.perms.get(path)
        if have is not None and tuple(have) != tuple(want_perms):
            perms.append((path, ",".join(have), ",".join(want_perms)))
    return record, drift, perms, notes


def _fields(differences):
    names = set()
    for path, _have, _want in differences:
        name = path.rsplit("/", 1)[1]
        names.add(FIELD_OF_NODE.get(name, "permissions" if name.isdigit() else name))
    return tuple(sorted(names))


def _describe(differences):
    """`libxl record: mode 'w' -> 'r', ...; frontend: trusted '1' -> '0'`."""
    groups = {}
    for path, have, want in differences:
        where = "libxl record" if path.startswith("/libxl/") else \
            "frontend" if "/device/" in path else "backend"
        groups.setdefault(where, []).append("%s %r -> %r" % (path.rsplit("/", 1)[1], have, want))
    return "; ".join("%s: %s" % (where, ", ".join(items)) for where, items in groups.items())


def _repair_ops(drift, perms, desired):
    ops = [XsOp(SET_PERMS, path, perms=tuple(want.split(","))) for path, _have, want in perms]
    fperms = desired.placement.frontend_perms
    for path, _have, value in drift:
        ops.append(XsOp(WRITE, path, value))
        if path.startswith(desired.placement.frontend_path + "/") and not path.endswith("/backend"):
            ops.append(XsOp(SET_PERMS, path, perms=fperms))
    return ops


def _virtio_error(name, what):
    verb = "hot-plugged" if what == "attach" else "hot-unplugged"
    return ("%s: a virtio disk cannot be %s (libxl: virtio disks exist only from the guest's creation); "
            "declare it in the guest's configuration and restart the guest" % (name, verb))


def plan_guest(tree, domid, desired, *, state="present", exclusive=False, keep=(), recreate=False,
               force=False, creating=False, resume=True, xen=None):
    """Plan guest `domid` from snapshot `tree` towards `desired` (DesiredDisks of `_layout`).

    state=present: attach what is missing, leave what matches, change cdrom media in place (HVM),
    repair drift of owned frontend/backend nodes, recreate (detach + attach) a disk whose libxl
    record differs only with `recreate`, else refuse naming the fields; with `exclusive`, detach
    every recorded disk not declared whose vdev is not in `keep` (aliases count). state=absent:
    detach each declared disk (only its vdev/devid matters; strings are accepted too).
    `force` detaches without the guest's cooperation (FORCE_ON). `creating` says the guest is
    being created (virtio disks may then be attached); by default it is running.
    A declared disk whose attach did not finish (`CurrentDisk.attach_unfinished`) is resumed
    (RESUME: the attach's wait and hotplug script, no write); with resume=False (a run that
    does not wait) it is unchanged, with a note.
    A detach in progress (`CurrentDisk.detaching`) is continued by a detach; a declared one is
    refused without `force`, and with it detached by force and attached again.
    Refused changes are in `Plan.errors` (`Plan.check()` raises them).
    `xen`: the host's XenVersion (what a media change's first transaction writes, §9.1); None
    plans as libxl 4.17.
    """
    if state not in ("present", "absent"):
        raise ValueError("state must be present or absent, not %r" % (state,))
    currents = read_disks(tree, domid)
    by_devid = {}
    for c in currents:
        by_devid.setdefault(c.devid, []).append(c)
    keep_devids = {vdev_to_devid(v) for v in keep}
    work = TreeView(tree)
    detaches, others = [], []
    seen_devids = set()
    warnings = list(guest_warnings(tree, domid))

    def detach(current, label):
        if current.kind == "virtio_disk" and not creating and not current.stale:
            return DiskChange(DETACH, current.vdev, current.devid, current.kind, label=label,
                              needs=NEEDS_RESTART, error=_virtio_error(label, "detach"), current=current)
        cleanup = cleanup_ops(work, current.placement)
        work.apply_all(cleanup)
        return DiskChange(DETACH, current.vdev, current.devid, current.kind, label=label,
                          ops=tuple(cleanup), phases=tuple(_detach_phases(tree, current, force, cleanup)),
                          needs=_detach_needs(current, force), stale=current.stale, current=current)

    if state == "absent":
        items = [(vdev_to_devid(item), item, item) if isinstance(item, str) else (item.devid, item.name, item)
                 for item in desired]
        for devid, label, item in sorted(items, key=lambda x: x[0]):
            if devid in seen_devids:
                continue
            seen_devids.add(devid)
            found = by_devid.get(devid, ())
            if not found:
                others.append(DiskChange(ABSENT, label if isinstance(item, str) else item.vdev, devid,
                                         getattr(getattr(item, "placement", None), "kind", ""), label=label))
            for current in found:
                detaches.append(detach(current, label))
        return _finish(domid, detaches, others, by_devid, seen_devids, warnings)

    declared = sorted(desired, key=lambda x: x.devid)
    for d in declared:
        if d.devid in seen_devids:
            raise ValueError("two declared disks have device number %d" % d.devid)
        seen_devids.add(d.devid)
    if exclusive:  # first, so that each later walk-up sees these removals
        for current in sorted(currents, key=lambda c: (c.devid, c.kind)):
            if current.devid not in seen_devids and current.devid not in keep_devids:
                detaches.append(detach(current, current.vdev or str(current.devid)))

    for d in declared:
        p = d.placement
        found = by_devid.get(d.devid, [])
        live = [c for c in found if not c.stale]
        current = live[0] if live and live[0].kind == p.kind else None
        if current is None:
            if live and not recreate:  # recorded live under the other kind
                c = live[0]
                others.append(DiskChange(
                    RECREATE, d.vdev, d.devid, p.kind, label=d.name, fields=("specification",),
                    needs=NEEDS_RESTART if (d.is_virtio or c.kind == "virtio_disk") and not creating
                    else NEEDS_RECREATE,
                    error="%s: the attached disk %d is a %s device and the declared one a %s device; "
                          "changing that needs a detach and an attach: set recreate=true"
                          % (d.name, d.devid, c.kind, p.kind),
                    desired=d, current=c))
                continue
            if not creating and (d.is_virtio or any(c.kind == "virtio_disk" for c in live)):
                others.append(DiskChange(
                    RECREATE if live else ATTACH, d.vdev, d.devid, p.kind, label=d.name, needs=NEEDS_RESTART,
                    error=_virtio_error(d.name, "detach" if live and not d.is_virtio else "attach"),
                    desired=d, current=live[0] if live else None))
                continue
            stale, ops, phases = [], [], []
            for c in found:  # stale records, and with recreate a live one of the other kind
                stale += ["%s: %s" % (c.libxl_path, reason) for reason in c.stale]
                cleanup = cleanup_ops(work, c.placement)
                work.apply_all(cleanup)
                ops += cleanup
                phases += _detach_phases(tree, c, force, cleanup)
            if not found:  # directories without a libxl record: generic_add's rm removes them
                for path in (p.frontend_path, p.backend_path):
                    if path in work or work.children(path):
                        stale.append("%s: left without a libxl record" % path)
            add = attach_ops(d)
            work.apply_all(add)
            ops += add
            others.append(DiskChange(
                RECREATE if live else ATTACH, d.vdev, d.devid, p.kind, label=d.name, ops=tuple(ops),
                phases=tuple(phases + _attach_phases(d, add, creating)),
                needs=_detach_needs(live[0], force) if live else NEEDS_NOTHING,
                stale=tuple(stale), desired=d, current=live[0] if live else None))
            continue

        if current.detaching:
            others.append(_present_while_detaching(work, tree, d, current, force, creating))
            continue
        record, drift, perms, notes = _compare(tree, d, current)
        notes += list(current.warnings) + list(current.observed)
        # a qdisk of a guest being created waits for the QEMU libxl starts after the disks
        if not record and current.attach_unfinished and not (creating and not p.waits_for_init):
            if resume:
                others.append(_resume(d, current, drift, perms, notes))
                continue
            notes.insert(0, "the attach did not finish: %s; not resumed by a run that does not wait"
                         % current.unfinished_reason)
        if not record and not drift and not perms:
            others.append(DiskChange(UNCHANGED, d.vdev, d.devid, p.kind, label=d.name, notes=tuple(notes),
                                     desired=d, current=current))
            continue
        if not record:
            ops = _repair_ops(drift, perms, d)
            work.apply_all(ops)
            others.append(DiskChange(REPAIR, d.vdev, d.devid, p.kind, label=d.name, fields=_fields(drift + perms),
                                     differences=tuple(drift + perms), ops=tuple(ops),
                                     phases=(Phase(STEP_TRANSACTION, ops=tuple(ops)),),
                                     notes=tuple(notes), desired=d, current=current))
            continue
        media = _media_change_possible(d, current, record)
        if media:
            dm_version, dm_error = _device_model(tree, domid, d)
            if dm_error:
                others.append(DiskChange(MEDIA_CHANGE, d.vdev, d.devid, p.kind, label=d.name,
                                         fields=_fields(record), differences=tuple(record), needs=NEEDS_RESTART,
                                         error=dm_error, desired=d, current=current))
                continue
            if d.disk.effective_format == "empty":  # an eject: "" twice in every version
                first_params = ""
            else:
                try:
                    rules = RULES["4.17"] if xen is None else xen.rules("%s: a cdrom media change" % d.name)
                except XenVersionError as exc:
                    others.append(DiskChange(MEDIA_CHANGE, d.vdev, d.devid, p.kind, label=d.name,
                                             fields=_fields(record), differences=tuple(record),
                                             error=str(exc), desired=d, current=current))
                    continue
                first_params = rules.insert_first_params(d.disk.target)
            txns = media_change_ops(d, eject_first=True, first_params=first_params)
            rest = [x for x in drift if x[0].rsplit("/", 1)[1] not in ("params", "type")]
            repair = _repair_ops(rest, perms, d)
            ops = [op for txn in txns for op in txn] + repair
            work.apply_all(ops)
            # libxl_cdrom_insert: QMP eject, eject transaction, QMP insert, insert transaction
            qmp_eject, qmp_insert = media_change_qmp(d) if dm_version == DM_QEMU_XEN else ((), ())
            phases = [Phase(STEP_QMP, qmp=tuple(qmp_eject))] if qmp_eject else []
            phases.append(Phase(STEP_TRANSACTION, ops=tuple(txns[0])))
            if qmp_insert:
                phases.append(Phase(STEP_QMP, qmp=tuple(qmp_insert)))
            phases += [Phase(STEP_TRANSACTION, ops=tuple(txn)) for txn in txns[1:]]
            if repair:
                phases.append(Phase(STEP_TRANSACTION, ops=tuple(repair)))
            others.append(DiskChange(MEDIA_CHANGE, d.vdev, d.devid, p.kind, label=d.name, fields=_fields(record),
                                     differences=tuple(record + rest + perms), ops=tuple(ops),
                                     phases=tuple(phases), notes=tuple(notes), desired=d, current=current))
            continue
        fields = _fields(record)
        if d.is_virtio and not creating:
            error = ("%s: %s %s from the attached virtio disk (%s); a virtio disk cannot be "
                     "replaced while the guest runs: change the guest's configuration and restart it"
                     % (d.name, ", ".join(fields), "differs" if len(fields) == 1 else "differ",
                        _describe(record)))
            others.append(DiskChange(RECREATE, d.vdev, d.devid, p.kind, label=d.name, fields=fields,
                                     differences=tuple(record), needs=NEEDS_RESTART, error=error,
                                     desired=d, current=current))
            continue
        if not recreate:
            error = ("%s: %s %s from the attached disk (%s); changing %s needs a detach "
                     "and an attach: set recreate=true to do that"
                     % (d.name, ", ".join(fields), "differs" if len(fields) == 1 else "differ",
                        _describe(record), "it" if len(fields) == 1 else "them"))
            others.append(DiskChange(RECREATE, d.vdev, d.devid, p.kind, label=d.name, fields=fields,
                                     differences=tuple(record), needs=NEEDS_RECREATE, error=error,
                                     desired=d, current=current))
            continue
        cleanup = cleanup_ops(work, current.placement)
        work.apply_all(cleanup)
        add = attach_ops(d)
        work.apply_all(add)
        others.append(DiskChange(
            RECREATE, d.vdev, d.devid, p.kind, label=d.name, fields=fields, differences=tuple(record),
            ops=tuple(cleanup + add),
            phases=tuple(_detach_phases(tree, current, force, cleanup) + _attach_phases(d, add, creating)),
            needs=_detach_needs(current, force), notes=tuple(notes), desired=d, current=current))

    seen_devids.update(c.devid for c in detaches)
    return _finish(domid, detaches, others, by_devid, seen_devids, warnings)


def _present_while_detaching(work, tree, desired, current, force, creating):
    """A declared disk whose detach is in progress: the backend is half torn down, so it is
    neither unchanged nor repairable. With force: the forced detach, then the attach
    (recorded in `work`); without: refused, naming what would let it finish."""
    p = desired.placement
    if (desired.is_virtio or current.kind == "virtio_disk") and not creating:
        return DiskChange(RECREATE, desired.vdev, desired.devid, p.kind, label=desired.name, needs=NEEDS_RESTART,
                          error=_virtio_error(desired.name, "detach"), desired=desired, current=current)
    if not force:
        error = ("%s: a detach of %s is in progress: its backend is Closing and the guest has not released "
                 "the disk (frontend %s); once the guest releases it, the next run attaches it again; "
                 "force=true removes it without the guest's cooperation and attaches it again"
                 % (desired.name, current.vdev, state_name(current.frontend_state)))
        return DiskChange(RECREATE, desired.vdev, desired.devid, p.kind, label=desired.name,
                          needs=NEEDS_FORCE, error=error, desired=desired, current=current)
    cleanup = cleanup_ops(work, current.placement)
    work.apply_all(cleanup)
    add = attach_ops(desired)
    work.apply_all(add)
    return DiskChange(
        RECREATE, desired.vdev, desired.devid, p.kind, label=desired.name, ops=tuple(cleanup + add),
        phases=tuple(_detach_phases(tree, current, force, cleanup) + _attach_phases(desired, add, creating)),
        needs=NEEDS_FORCE, notes=tuple(current.warnings), desired=desired, current=current)


def _resume(desired, current, drift, perms, notes):
    """A declared disk whose attach did not finish (backend still Initialising): drift repaired,
    then the attach's own wait for InitWait and its hotplug script, as libxl runs them."""
    p = desired.placement
    ops = tuple(_repair_ops(drift, perms, desired))
    phases = ([Phase(STEP_TRANSACTION, ops=ops)] if ops else []) + _attach_phases(desired, ())[1:]
    notes = ["the attach did not finish: %s; resumed: waiting for the backend again, then the hotplug script"
             % current.unfinished_reason] + list(notes)
    return DiskChange(RESUME, desired.vdev, desired.devid, p.kind, label=desired.name,
                      fields=_fields(drift + perms), differences=tuple(drift + perms), ops=ops,
                      phases=tuple(phases), notes=tuple(notes), desired=desired, current=current)


def _media_change_possible(desired, current, record):
    """libxl_cdrom_insert: an HVM guest's cdrom keeping its backend; only `params` may differ."""
    if desired.guest_type != "hvm" or not desired.disk.is_cdrom or not current.is_cdrom:
        return False
    if current.libxl.get("removable") != "1" or current.backend_kind != desired.placement.backend_kind:
        return False
    return all(path.rsplit("/", 1)[1] == "params" for path, _have, _want in record)


def _device_model(tree, domid, desired):
    """(dm-version, error) of a media change, as libxl_cdrom_insert decides: a stub domain's
    device model is refused; no `dm-version` means qemu-traditional (xenstore only)."""
    version_path, stubdom_path = device_model_paths(domid)
    if tree.get(stubdom_path) is not None:
        return None, ("%s: the guest's device model runs in a stub domain (%s = %s): libxl 4.17 cannot change "
                      "a cdrom's medium there either (cdrom-insert doesn't work for stub domains)"
                      % (desired.name, stubdom_path, tree.get(stubdom_path)))
    version = tree.get(version_path)
    if version is None:
        return DM_TRADITIONAL, ""
    if version not in DM_VERSIONS:
        return None, ("%s: cannot determine the guest's device model version: %s holds %r (libxl knows %s)"
                      % (desired.name, version_path, version, ", ".join(DM_VERSIONS)))
    return version, ""


def _finish(domid, detaches, others, by_devid, seen_devids, warnings):
    # Stale entries and unfinished detaches nobody asked about: reported, left alone.
    stale = tuple(("%s" % (c.vdev or c.libxl_path), c.stale) for devid, cs in sorted(by_devid.items())
                  for c in cs if c.stale and devid not in seen_devids)
    warnings += ["%s: a detach is in progress (backend Closing, frontend %s)" % (c.vdev, state_name(c.frontend_state))
                 for devid, cs in sorted(by_devid.items()) for c in cs if c.detaching and devid not in seen_devids]
    warnings += ["%s: the attach did not finish: %s; declare the disk to resume it" % (c.vdev, c.unfinished_reason)
                 for devid, cs in sorted(by_devid.items()) for c in cs
                 if c.attach_unfinished and devid not in seen_devids]
    changes = tuple(sorted(detaches, key=lambda c: (c.devid, c.kind)) + sorted(others, key=lambda c: (c.devid, c.kind)))
    return Plan(domid, changes, stale, tuple(warnings))
