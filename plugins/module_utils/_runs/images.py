# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage behind a xen_disk call's disks (`ImageRun`): storage options checked and images
inspected before the declaration is validated, image steps planned once the attached disks are
known, executed before the guests' xenstore transactions, the backends of attached disks told of
a growth after them, and image files removed after the detaches.

Private to the xen.disks collection: no compatibility promise. Standard library only.
"""

from __future__ import annotations

import dataclasses
import os
import time

from ansible_collections.xen.disks.plugins.module_utils._core import declaration as _declaration
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._core import storage as _storage
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import DiskSpecError
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid
from ansible_collections.xen.disks.plugins.module_utils._io import loop as _loop
from ansible_collections.xen.disks.plugins.module_utils._io import qemu_img as _qemu_img
from ansible_collections.xen.disks.plugins.module_utils._io.dom0 import stat_target
from ansible_collections.xen.disks.plugins.module_utils._io.libxl_config import LibxlFileError
from ansible_collections.xen.disks.plugins.module_utils._io.qmp import QmpError, QmpRun, socket_path
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import (
    backend_state_node,
    int_or_none,
    records_naming,
    shown_value,
)


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
            return ["%s.remove_storage: %s is not a boolean" % (label, shown_value(value))]
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
                errors.append("%s.target: %s is not an absolute path: not removed" % (label, shown_value(path)))
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

    def read_host(self, conn, planned):
        """The recorded disks of the host that may name a file to remove (for the removal's
        check that no other disk uses it); nothing is read without removals."""
        self.host_disks = {}
        if not self.removals:
            return
        paths = [e.result.get("path") for e in self.removals]
        paths += [c.current.target for _g, _d, plan in planned for c in plan.changes
                  if c.current is not None and c.current.target]
        for current in conn.snapshot(lambda reader: records_naming(reader, [p for p in paths if p]),
                                     observed=backend_state_node):
            self.host_disks.setdefault(current.domid, []).append(current)

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
                     guest.files.qmp_lock(rec.alive(guest)) if guest.files is not None
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
               "sectors_before": int_or_none(conn.read_value(placement.backend_path + "/sectors"))}
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
            sectors = int_or_none(conn.read_value(placement.backend_path + "/sectors"))
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
