# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host as the runs read it from xenstore, and the comparisons made on what was read.

- reads through the adapter's reader: `read_libxl_records` (the `/libxl/D` records),
  `records_naming` (the records of the whole host that may name given targets: one read per
  record), `read_cleanup_view` (what a removal's walk-up needs), `open_xenstore`;
- who owns a node: `guest_of` (per-guest snapshot validation), `frontend_node` (the guest's
  own nodes: observations), `guest_views` (each guest's part of a host snapshot);
- what only a toolstack writes (`toolstack_records`) and what another writer changed
  (`record_differences`): the check each apply transaction makes;
- a libxl record read back as a disk (`disk_of_record`, `spec_of_record`);
- the host's Xen toolstack version (`host_xen_version`).

Private to the xen.disks collection: no compatibility promise. Standard library only.
Section numbers (§3.4...) are those of docs/XENSTORE-LAYOUT.md.
"""

from __future__ import annotations

import posixpath

from ansible_collections.xen.disks.plugins.module_utils._core import declaration as _declaration
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import render_disk_spec
from ansible_collections.xen.disks.plugins.module_utils._core.layout import (
    DEFAULT_SCRIPT_DIR,
    KINDS,
    cleanup_read_paths,
    libxl_kind_dir,
    parse_backend_path,
)
from ansible_collections.xen.disks.plugins.module_utils._core.xen_version import XenVersionError, resolve
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsTree
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreConnection, XenstoreError
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError


def host_xen_version(params, facts):
    """(XenVersion, warnings) of this dom0: the `xen_version` option checked against what
    `facts()` (`_io.dom0.xen_version_facts`) reads; a contradiction is a ReconcileError."""
    try:
        return resolve(params.get("xen_version"), **facts())
    except XenVersionError as exc:
        raise ReconcileError(str(exc), errors=[str(exc)]) from None


def open_xenstore(params):
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


def _may_name(params, paths):
    """Whether a record's `params` may name one of `paths` (normalised): as a phy or standalone
    target (the whole value) or as a qdisk one (after its first `:`), whichever the record is."""
    if not params:
        return False
    names = (params, params.split(":", 1)[1]) if ":" in params else (params,)
    return any(name and posixpath.normpath(name) in paths for name in names)


def records_naming(reader, paths):
    """The CurrentDisks of the host (every domain, both kinds) whose libxl record may name one
    of `paths` (targets; normalised here), with their backend's state: for the rules that look
    at the whole host (a target attached read-write is not shared; an image file still in use
    is not removed). Per domain one listing per kind, per record one read (`params`); only the
    records that may match are then read whole."""
    wanted = {posixpath.normpath(p) for p in paths if p}
    if not wanted:
        return []
    domids = sorted(int(c) for c in reader.list_children(["/local/domain"])["/local/domain"] or () if c.isdigit())
    records = []
    for path, names in reader.list_children([libxl_kind_dir(d, k) for d in domids for k in KINDS]).items():
        records += [path + "/" + name for name in names or ()]
    params = reader.read_values([record + "/params" for record in records])
    matching = [record for record in records if _may_name(params[record + "/params"], wanted)]
    if not matching:
        return []
    tree = XsTree()
    leaves = []
    for path, names in reader.list_children(matching).items():
        if names is not None:
            tree.values[path.rsplit("/", 1)[0]] = ""
            tree.values[path] = ""
            leaves += [path + "/" + name for name in names]
    tree.values.update({p: v for p, v in reader.read_values(leaves).items() if v is not None})
    tree._children = None
    keys = []
    for record in matching:
        _root, _libxl, domid, _device, kind, devid = record.split("/")
        if int_or_none(domid) is not None and int_or_none(devid) is not None:
            keys.append((int(domid), kind, int(devid)))
    found = [c for c in (_plan.read_disk(tree, *key) for key in keys) if c is not None]
    merge(tree, reader.read_nodes([c.placement.backend_path + "/state" for c in found]))
    return [c for c in (_plan.read_disk(tree, *key) for key in keys) if c is not None]


def backend_state_node(path):
    """A backend's `state` node, which its driver changes at will: the host-wide rules
    (`records_naming`) read it as an observation, so a flapping backend never invalidates
    their read (one noisy guest must not stop a run for the others)."""
    directory, _slash, leaf = path.rpartition("/")
    return leaf == "state" and parse_backend_path(directory) is not None


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
            changed = ["%s %s -> %s" % (p[len(prefix):], shown_value(expected.get(p)), shown_value(found.get(p)))
                       for p in leaves if expected.get(p) != found.get(p)]
            if changed:
                out.append("%s: %s" % (named, ", ".join(changed)))
    for path in sorted(p for p in set(expected) | set(found) if p.endswith("/type") and p.count("/") == 3):
        if expected.get(path) != found.get(path):
            out.append("%s %s -> %s" % (path, shown_value(expected.get(path)), shown_value(found.get(path))))
    return out


def in_toolstack_records(path, domid):
    """Whether `path` is one of the nodes `toolstack_records` may report for guest `domid`
    (or a directory above them): under `/libxl/D/`, or a backend's `online` node or
    directory of the guest (the records say which)."""
    if path.startswith("/libxl/%d/" % domid):
        return True
    parts = path.split("/")
    return len(parts) >= 7 and parts[1:3] == ["local", "domain"] and parts[4] == "backend" \
        and parts[6] == str(domid) and (len(parts) == 8 or (len(parts) == 9 and parts[8] == "online"))


def shown_value(value, limit=60):
    if value is None:
        return "missing"
    return repr(value if len(value) <= limit else value[:limit] + "...")


def guest_of(path):
    """The guest whose disk directories hold `path` (strictly below `/libxl/D`,
    `/local/domain/D/device` or `/local/domain/B/backend/<kind>/D`), else None (shared)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "libxl":
        return int_or_none(parts[2])
    if len(parts) > 5 and parts[1] == "local" and parts[2] == "domain":
        if parts[4] == "device":
            return int_or_none(parts[3])
        if parts[4] == "backend" and len(parts) > 7:
            return int_or_none(parts[6])
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
            owner = guest_of(path)
            if owner is None:
                owner = _domain_of(path)  # a guest's own domain nodes (`vm`...) go to its view only
                if owner not in per_guest:
                    shared[path] = item
                    continue
            if owner in per_guest:
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


def _domain_of(path):
    """D for a node of `/local/domain/D` outside its backend directories, else None."""
    parts = path.split("/", 5)
    if len(parts) > 4 and parts[1] == "local" and parts[2] == "domain" and parts[4] != "backend":
        return int_or_none(parts[3])
    return None


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


def int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _unique_domid(names, name):
    found = names.get(name, [])
    return found[0] if len(found) == 1 else None


def domid_of_ref(domains, names, ref):
    """The domain a reference names on this host (a domid or a unique name), else None."""
    number = _declaration.domid_text(ref)
    if number is not None:
        return number if number in domains else None
    return _unique_domid(names, ref)


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
