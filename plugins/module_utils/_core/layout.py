# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xenstore directories libxl 4.17 writes for one guest disk, and who owns each node.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

Reference: docs/XENSTORE-LAYOUT.md. `desired_disk` builds the frontend, backend
and libxl directories of §1.3 with the permissions of §1.4; `attach_ops` is
libxl__device_generic_add (§3.2 step 6); `close_ops` and `cleanup_ops` are the two
transactions of the removal (§4.2 steps 2 and 5); `media_change_ops` is the xenstore half
of libxl_cdrom_insert (§3.6). `OWNERSHIP` says, as data, which nodes are the toolstack's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import (
    MKDIR,
    RM,
    SET_PERMS,
    WRITE,
    XsOp,
    parent_of,
)

DEFAULT_SCRIPT_DIR = "/etc/xen/scripts"
DEFAULT_SCRIPT = "block"
TOOLSTACK_DOMID = 0

# Frontend kind = the libxl directory's kind; backend kind names the backend directory (§1.1).
FRONTEND_KIND = {"phy": "vbd", "qdisk": "vbd", "standalone": "virtio_disk"}
BACKEND_KIND = {"phy": "vbd", "qdisk": "qdisk", "standalone": "virtio_disk"}
KINDS = ("vbd", "virtio_disk")
# `params` prefix of a qdisk (libxl__device_disk_string_of_format).
QDISK_FORMAT_PREFIX = {"raw": "aio", "empty": "aio", "qcow": "qcow", "qcow2": "qcow2",
                       "vhd": "vhd", "qed": "qed"}
PROTOCOL_OF_WIDTH = {64: "x86_64-abi", 32: "x86_32-abi"}
GUEST_TYPES = ("pv", "hvm", "pvh")

# Arm virtio-mmio allocation (libxl_arm.c): i-th virtio disk in config order.
VIRTIO_MMIO_BASE = 0x02000000
VIRTIO_MMIO_DEV_SIZE = 0x200
VIRTIO_MMIO_SIZE = 0x00100000
VIRTIO_MMIO_SPI_FIRST = 33
VIRTIO_MMIO_SPI_LAST = 43
ARCHES = ("x86", "arm")

# -- ownership (§8) --------------------------------------------------------------------------
OWNED = "owned"              # compared and enforced
CREATE_ONLY = "create_only"  # written at creation, never compared afterwards
LENIENT = "lenient"          # written at creation; a different value is reported, never changed
FOREIGN = "foreign"          # anyone else's: read, never written or removed

FRONTEND = "frontend"
BACKEND = "backend"
LIBXL = "libxl"

# Backend entries of §1.3.1 in write order (rows 1-22; row 0 `frontend` comes from generic_add).
BACKEND_ENTRY_NAMES = (
    "params", "script", "colo-host", "colo-port", "colo-export", "active-disk", "hidden-disk",
    "frontend-id", "online", "removable", "bootable", "state", "dev", "type", "mode",
    "device-type", "direct-io-safe", "discard-enable", "specification", "transport", "base", "irq",
)
FRONTEND_ENTRY_NAMES = ("backend-id", "state", "virtual-device", "device-type", "trusted", "protocol")

OWNERSHIP = {
    FRONTEND: dict(
        {"backend": OWNED, "state": CREATE_ONLY, "protocol": LENIENT},
        **{name: OWNED for name in ("backend-id", "virtual-device", "device-type", "trusted")}),
    BACKEND: dict(
        {name: OWNED for name in ("frontend",) + BACKEND_ENTRY_NAMES},
        state=CREATE_ONLY, online=CREATE_ONLY),
    # The whole libxl directory is the toolstack's record, frozen state/online included.
    LIBXL: {name: OWNED for name in ("frontend", "backend") + BACKEND_ENTRY_NAMES},
}


def ownership(directory, name):
    """Class of node `name` in `directory` (frontend/backend/libxl): owned, create_only, lenient or foreign."""
    return OWNERSHIP[directory].get(name, FOREIGN)


class LayoutError(ValueError):
    """A disk that libxl could not lay out (bad guest type, too many virtio disks, ...)."""


# -- placement --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiskPlacement:
    """Where one disk lives: frontend domid D, backend domid B, devid N and the two kinds (§1.1, §1.2)."""

    domid: int
    backend_domid: int
    devid: int
    kind: str          # vbd | virtio_disk (frontend and libxl directories)
    backend_kind: str  # vbd | qdisk | virtio_disk (backend directory)

    @property
    def frontend_path(self):
        return "/local/domain/%d/device/%s/%d" % (self.domid, self.kind, self.devid)

    @property
    def backend_path(self):
        return "/local/domain/%d/backend/%s/%d/%d" % (
            self.backend_domid, self.backend_kind, self.domid, self.devid)

    @property
    def libxl_path(self):
        return libxl_disk_path(self.domid, self.kind, self.devid)

    @property
    def frontend_perms(self):
        return ("n%d" % self.domid, "r%d" % self.backend_domid)

    @property
    def backend_perms(self):
        return ("n%d" % self.backend_domid, "r%d" % self.domid)

    @property
    def runs_hotplug_script(self):
        """libxl runs the backend's hotplug script itself: blkback (`vbd`) served by the toolstack domain (§3.4)."""
        return self.backend_kind == "vbd" and self.backend_domid == TOOLSTACK_DOMID

    @property
    def waits_for_init(self):
        """libxl waits for backend state 2 after the add: every backend but QEMU's qdisk (§3.3)."""
        return self.backend_kind != "qdisk"


def libxl_disk_path(domid, kind, devid):
    """`/libxl/D/device/<kind>/N`, the directory whose existence means "the disk exists" (§1.2)."""
    return "/libxl/%d/device/%s/%d" % (domid, kind, devid)


def libxl_kind_dir(domid, kind):
    """`/libxl/D/device/<kind>`, listed to enumerate a guest's disks (§5.2)."""
    return "/libxl/%d/device/%s" % (domid, kind)


def parse_backend_path(path):
    """(backend_domid, backend_kind, domid, devid) of `/local/domain/B/backend/<kind>/D/N`, or None."""
    parts = path.split("/") if isinstance(path, str) else ()
    if len(parts) != 8 or parts[0] != "" or parts[1:3] != ["local", "domain"] or parts[4] != "backend":
        return None
    numbers = (parts[3], parts[6], parts[7])
    if not all(p.isdigit() and p.isascii() for p in numbers):
        return None
    return int(parts[3]), parts[5], int(parts[6]), int(parts[7])


def virtio_mmio_slot(index, arch):
    """(base, irq) of the `index`-th virtio disk (config order): Arm allocation, zeros on x86 (§1.3.1)."""
    if arch not in ARCHES:
        raise LayoutError("unknown architecture %r: expected one of %s" % (arch, ", ".join(ARCHES)))
    if arch == "x86":
        return 0, 0
    base = VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_DEV_SIZE
    irq = VIRTIO_MMIO_SPI_FIRST + index
    if base + VIRTIO_MMIO_DEV_SIZE > VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE or irq > VIRTIO_MMIO_SPI_LAST:
        raise LayoutError("too many virtio disks: libxl on Arm allocates at most %d virtio-mmio slots"
                          % (VIRTIO_MMIO_SPI_LAST - VIRTIO_MMIO_SPI_FIRST + 1))
    return base, irq


def script_path(script, script_dir=DEFAULT_SCRIPT_DIR):
    """Absolute hotplug script path as libxl writes it: absolute as given, else under `script_dir`."""
    name = script if script else DEFAULT_SCRIPT
    if name.startswith("/"):
        return name
    return script_dir.rstrip("/") + "/" + name


def script_name(path, script_dir=DEFAULT_SCRIPT_DIR):
    """Inverse of `script_path` for rendering: None for the default, relative under `script_dir`."""
    prefix = script_dir.rstrip("/") + "/"
    if path == prefix + DEFAULT_SCRIPT:
        return None
    if path.startswith(prefix) and len(path) > len(prefix):
        return path[len(prefix):]
    return path


def qdisk_params(format_name, target):
    """`<fmt>:<path>` of a qdisk backend (`aio:` for an empty cdrom)."""
    return "%s:%s" % (QDISK_FORMAT_PREFIX[format_name], target or "")


# -- desired state ----------------------------------------------------------------------------
@dataclass(frozen=True)
class DesiredDisk:
    """What libxl would write for one disk: ordered (name, value) entries of the three directories."""

    disk: object                 # the declared _disk_spec.Disk
    placement: DiskPlacement
    backend_type: str            # phy | qdisk | standalone (the `type` node)
    guest_type: str              # pv | hvm | pvh
    frontend: tuple              # ((name, value), ...) in write order, `backend` first
    backend: tuple               # ((name, value), ...) in write order, `frontend` first
    libxl: tuple                 # ((name, value), ...): frontend, backend, then the backend entries
    label: str = ""              # how messages name the disk, e.g. "disks[2]"
    script_dir: str = DEFAULT_SCRIPT_DIR

    @property
    def vdev(self):
        return self.disk.vdev

    @property
    def devid(self):
        return self.placement.devid

    @property
    def is_virtio(self):
        return self.placement.kind == "virtio_disk"

    @property
    def hotplug_script(self):
        """The script libxl would run for this disk, or None (§3.4)."""
        if not self.placement.runs_hotplug_script:
            return None
        return dict(self.backend).get("script")

    @property
    def name(self):
        return self.label or self.disk.vdev


def _backend_entries(disk, backend_type, placement, script_dir, virtio_slot):
    """Rows 1-22 of §1.3.1 (NULL entries skipped), same list for the backend and libxl copies."""
    fmt = disk.effective_format
    target = disk.target or ""
    if backend_type == "qdisk":
        params = qdisk_params(fmt, target)
    else:
        params = disk.target  # NULL -> skipped
    entries = [("params", params)]
    if backend_type == "phy":
        entries.append(("script", script_path(disk.script, script_dir)))
    if backend_type == "qdisk" and disk.effective_colo:
        entries += [("colo-host", disk.colo_host), ("colo-port", str(disk.colo_port)),
                    ("colo-export", disk.colo_export), ("active-disk", disk.active_disk),
                    ("hidden-disk", disk.hidden_disk)]
    entries += [
        ("frontend-id", str(placement.domid)),
        ("online", "1"),
        ("removable", "1" if disk.removable else "0"),
        ("bootable", "1"),
        ("state", "1"),
        ("dev", disk.vdev),
        ("type", backend_type),
        ("mode", "w" if disk.readwrite else "r"),
        ("device-type", "cdrom" if disk.is_cdrom else "disk"),
    ]
    if disk.direct_io_safe:
        entries.append(("direct-io-safe", "1"))
    entries.append(("discard-enable", "1" if disk.effective_discard else "0"))
    specification = disk.effective_specification
    entries.append(("specification", specification))
    if specification == "virtio":
        base, irq = virtio_slot
        entries += [("transport", "mmio"), ("base", str(base)), ("irq", str(irq))]
    return tuple((name, value) for name, value in entries if value is not None)


def desired_disk(disk, *, domid, backend_domid, backend_kind, guest_type, guest_width=64,
                 virtio_index=0, script_dir=DEFAULT_SCRIPT_DIR, arch="x86", devid=None, label=""):
    """The three directories libxl writes for `disk` (§1.3) on guest `domid`.

    `backend_kind` is the backend libxl chose (`_disk_spec.choose_backend`: phy, qdisk or
    standalone; the backend directory kinds vbd and virtio_disk are accepted as synonyms).
    `guest_width` (64 or 32, None if unknown) gives the PV `protocol`; `virtio_index` is the
    disk's position among the guest's virtio disks in config order, which sets `base`/`irq` on
    `arch` "arm" (x86 writes zeros). `devid` defaults to the number of `disk.vdev`.
    """
    backend_type = {"vbd": "phy", "virtio_disk": "standalone"}.get(backend_kind, backend_kind)
    if backend_type not in FRONTEND_KIND:
        raise LayoutError("unknown backend %r: expected phy, qdisk or standalone" % (backend_kind,))
    if guest_type not in GUEST_TYPES:
        raise LayoutError("unknown guest type %r: expected one of %s" % (guest_type, ", ".join(GUEST_TYPES)))
    if devid is None:
        devid = vdev_to_devid(disk.vdev)
    placement = DiskPlacement(int(domid), int(backend_domid), int(devid),
                              FRONTEND_KIND[backend_type], BACKEND_KIND[backend_type])
    virtio_slot = virtio_mmio_slot(virtio_index, arch) if disk.effective_specification == "virtio" else None
    entries = _backend_entries(disk, backend_type, placement, script_dir, virtio_slot)
    frontend = [
        ("backend", placement.backend_path),
        ("backend-id", str(placement.backend_domid)),
        ("state", "1"),
        ("virtual-device", str(placement.devid)),
        ("device-type", "cdrom" if disk.is_cdrom else "disk"),
        ("trusted", "1" if disk.effective_trusted else "0"),
    ]
    if guest_type == "pv" and guest_width in PROTOCOL_OF_WIDTH:
        frontend.append(("protocol", PROTOCOL_OF_WIDTH[guest_width]))
    return DesiredDisk(
        disk=disk, placement=placement, backend_type=backend_type, guest_type=guest_type,
        frontend=tuple(frontend),
        backend=(("frontend", placement.frontend_path),) + entries,
        libxl=(("frontend", placement.frontend_path), ("backend", placement.backend_path)) + entries,
        label=label, script_dir=script_dir,
    )


def desired_nodes(desired):
    """{path: value} of every node libxl writes for `desired` (the three directories, values only)."""
    p = desired.placement
    out = {}
    for base, entries in ((p.frontend_path, desired.frontend), (p.backend_path, desired.backend),
                          (p.libxl_path, desired.libxl)):
        for name, value in entries:
            out[base + "/" + name] = value
    return out


# -- operations -------------------------------------------------------------------------------
def attach_ops(desired):
    """libxl__device_generic_add in its exact order (§3.2 step 6): one add transaction."""
    p = desired.placement
    front, back, lib = p.frontend_path, p.backend_path, p.libxl_path
    fperms, bperms = p.frontend_perms, p.backend_perms
    ops = [
        XsOp(RM, lib),
        XsOp(WRITE, lib + "/frontend", front),
        XsOp(WRITE, lib + "/backend", back),
        XsOp(RM, front), XsOp(MKDIR, front), XsOp(SET_PERMS, front, perms=fperms),
    ]
    for name, value in desired.frontend:
        ops.append(XsOp(WRITE, front + "/" + name, value))
        if name != "backend":  # generic_add sets perms on each fents entry, not on `backend`
            ops.append(XsOp(SET_PERMS, front + "/" + name, perms=fperms))
    ops += [XsOp(RM, back), XsOp(MKDIR, back), XsOp(SET_PERMS, back, perms=bperms)]
    ops += [XsOp(WRITE, back + "/" + name, value) for name, value in desired.backend]
    ops += [XsOp(WRITE, lib + "/" + name, value) for name, value in desired.libxl[2:]]
    return ops


def close_ops(tree, placement, *, force=False):
    """Step 2 of the removal (§4.2): online=0 and state=5 (unless already 6) in the backend.

    With `force` (FORCE_ON) the frontend directory is removed first (path_cleanup). A missing
    backend `state` means the backend is gone: only the forced frontend removal is returned.
    """
    ops = path_cleanup_ops(tree, placement.frontend_path) if force else []
    state = tree.get(placement.backend_path + "/state")
    if state is None:
        return ops
    ops.append(XsOp(WRITE, placement.backend_path + "/online", "0"))
    if state != "6":
        ops.append(XsOp(WRITE, placement.backend_path + "/state", "5"))
    return ops


class TreeView:
    """Copy-on-write view of an XsTree for planning: values and children, no permissions.

    Records writes and removals without copying the snapshot, so that planning many guests
    against one host-wide snapshot stays cheap. Only what the walk-up and the plan consult:
    `get`, `in`, `children`, `apply`.
    """

    def __init__(self, base):
        self.base = base
        self.over = {}      # path -> value of nodes written or created here
        self.gone = set()   # roots of removed subtrees: base nodes below are hidden
        self.kids = {}      # parent -> names created here

    def _hidden(self, path):
        if not self.gone:
            return False
        p = path
        while p is not None:
            if p in self.gone:
                return True
            p = parent_of(p)
        return False

    def get(self, path, default=None):
        if path in self.over:
            return self.over[path]
        value = self.base.get(path)
        if value is not None and not self._hidden(path):
            return value
        return default

    def __contains__(self, path):
        return self.get(path) is not None

    def children(self, path):
        prefix = path.rstrip("/") + "/"
        names = {n for n in self.base.children(path) if not self._hidden(prefix + n)}
        names.update(n for n in self.kids.get(path, ()) if prefix + n in self.over)
        return sorted(names)

    def _create(self, path):
        parent = parent_of(path)
        if parent not in (None, "/") and parent not in self:
            self._create(parent)
        self.over[path] = ""
        if parent is not None:
            self.kids.setdefault(parent, set()).add(path.rsplit("/", 1)[1])

    def apply(self, op):
        if op.action == RM:
            prefix = op.path.rstrip("/") + "/"
            for p in [p for p in self.over if p == op.path or p.startswith(prefix)]:
                del self.over[p]
            self.gone.add(op.path)
        elif op.action in (WRITE, MKDIR):
            if op.path not in self:
                self._create(op.path)
            if op.action == WRITE:
                self.over[op.path] = op.value
        elif op.action == SET_PERMS and op.path not in self:
            raise KeyError("set_perms on a missing node: %s" % op.path)

    def apply_all(self, ops):
        for op in ops:
            self.apply(op)
        return self


def path_cleanup_ops(tree, path):
    """libxl__xs_path_cleanup: rm `path`, then each parent whose value is empty and has no children.

    Computed against `tree` (an XsTree or TreeView), which must hold the value and the complete
    list of children of each ancestor (see `cleanup_read_paths`); an ancestor missing from
    `tree` stops the walk-up.
    """
    return _path_cleanup(TreeView(tree), path)


def _path_cleanup(work, path):
    ops = [XsOp(RM, path)]
    work.apply(ops[0])
    parent = parent_of(path)
    while parent not in (None, "/") and work.get(parent) == "" and not work.children(parent):
        op = XsOp(RM, parent)
        ops.append(op)
        work.apply(op)
        parent = parent_of(parent)
    return ops


def cleanup_ops(tree, placement):
    """Step 5 of the removal (§4.2), one transaction run by the toolstack domain (T = 0):
    path_cleanup of the frontend, libxl and backend directories, each walk-up seeing the
    removals before it. `tree` is a snapshot (XsTree or TreeView, not changed); see
    `cleanup_read_paths` for what it must hold."""
    work = TreeView(tree)
    ops = []
    for path in (placement.frontend_path, placement.libxl_path, placement.backend_path):
        ops += _path_cleanup(work, path)
    return ops


def cleanup_read_paths(placement):
    """Ancestors whose value and children `cleanup_ops` consults (the walk-up of empty parents)."""
    out = []
    for path in (placement.frontend_path, placement.libxl_path, placement.backend_path):
        parent = parent_of(path)
        while parent not in (None, "/"):
            out.append(parent)
            parent = parent_of(parent)
    return sorted(set(out))


def media_change_ops(desired, *, eject_first=True):
    """cdrom media change (§3.6): `type` and `params` in the backend and libxl directories.

    libxl does it as two transactions around QMP: the eject (params="") then the insert of the
    new medium (params of `desired`, "" when it is empty). Returns the list of both when
    `eject_first`, else only the insert.
    """
    p = desired.placement
    entries = dict(desired.libxl)
    new_params = "" if desired.disk.effective_format == "empty" else entries["params"]
    out = []
    steps = [("", ), (new_params, )] if eject_first else [(new_params, )]
    for (params,) in steps:
        ops = []
        for base in (p.backend_path, p.libxl_path):
            ops.append(XsOp(WRITE, base + "/type", entries["type"]))
            ops.append(XsOp(WRITE, base + "/params", params))
        out.append(ops)
    return out
