# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a whole declaration (every disk of every guest) before anything is written.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O):
the caller stats targets and resolves domain names, and passes the answers in.

All errors of all disks are collected and raised together as one `DeclarationError`, each
naming its place: `disks[2].vdev: ...`, or `domains[1].disks[0].target: ...` for several
guests. One bad disk means nothing is written. On success the result is, per guest, the
`_layout.DesiredDisk`s the plan needs.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (
    TARGET_KINDS,
    Disk,
    DiskSpecError,
    check_libxl_rules,
    choose_backend,
    disk_from_dict,
    parse_disk_spec,
)
from ansible_collections.xen.disks.plugins.module_utils._core.text import bounded_int, shown
from ansible_collections.xen.disks.plugins.module_utils._core.layout import (
    DEFAULT_SCRIPT_DIR,
    FRONTEND_KIND,
    LayoutError,
    desired_disk,
)


class DeclarationError(ValueError):
    """Every problem of a declaration, one message per line (`disks[2].vdev: ...`)."""

    def __init__(self, messages):
        self.messages = tuple(messages)
        super().__init__("\n".join(self.messages))


@dataclass(frozen=True)
class GuestDeclaration:
    """One guest's declared disks (xl strings, lists of strings, dicts or Disks) and its facts."""

    domid: int
    disks: tuple
    guest_type: str = "pv"       # pv | hvm | pvh, from /libxl/D/type
    guest_width: object = 64     # 64 | 32 | None (unknown): the PV `protocol`
    prefix: str = ""             # "domains[1]." when several guests are declared


@dataclass(frozen=True)
class _Checked:
    label: str
    domid: int
    disk: object
    devid: int
    backend_domid: int
    backend_type: str


def _lookup(source, key, default):
    if source is None:
        return default
    if callable(source):
        return source(key)
    return source.get(key, default)


def parse_item(item):
    """A Disk from an xl string, a list of strings (one disk), a dict (structured) or a Disk."""
    if isinstance(item, Disk):
        return item
    if isinstance(item, dict):
        return disk_from_dict(item)
    if isinstance(item, str) or (isinstance(item, (list, tuple)) and all(isinstance(s, str) for s in item)):
        return parse_disk_spec(item if isinstance(item, str) else list(item))
    raise DiskSpecError(None, item, "a disk must be an xl disk string, a list of strings or a dict, not %s"
                        % type(item).__name__)


def spec_message(label, err):
    """`disks[2].vdev: message`: the error located by its field (libxl-stage messages already
    start with `field: `, which is not repeated)."""
    message = str(err)
    if err.field:
        if message.startswith(err.field + ": "):
            message = message[len(err.field) + 2:]
        return "%s.%s: %s" % (label, err.field, message)
    return "%s: %s" % (label, message)


def stat_wanted(disk, backend_domid):
    """Whether libxl may stat the target: a dom0-served disk that is not an empty cdrom (the
    caller stats those targets; `choose_backend` decides from the answer what libxl would,
    docs/XENSTORE-LAYOUT.md §6.3)."""
    return backend_domid == 0 and disk.effective_format != "empty"


MAX_DOMID = 0x7FEF  # DOMID_FIRST_RESERVED - 1: no domain has a higher id


def domid_text(ref):
    """The domid a reference spells in plain ASCII decimal, None for a name; -1 when the number
    is beyond every domid (checked on its length: no int() of thousands of digits)."""
    if not (ref.isdigit() and ref.isascii()):
        return None
    domid = bounded_int(ref, MAX_DOMID)
    return -1 if domid is None else domid


def no_domain_with_id(ref):
    """The message for a domid that names no domain (a number too long to repeat is described)."""
    if len(ref) > 20:
        return "no domain with id %s... (%d digits; domain ids end at %d)" % (ref[:12], len(ref), MAX_DOMID)
    if domid_text(ref) == -1:
        return "no domain with id %s (domain ids end at %d)" % (ref, MAX_DOMID)
    return "no domain with id %s on this host" % ref


def resolve_backend(disk, resolve_domain, default_backend):
    """Backend domid of `disk`: its `backend=` (a name or a domid), else `default_backend`, else 0.
    `resolve_domain(ref)` answers for names and domids alike (None: no such domain); without it a
    domid is taken as it is. Returns (domid, None) or (None, message)."""
    name = disk.backend if disk.backend is not None else default_backend
    if name is None or name == "":
        return 0, None
    name = str(name) if isinstance(name, int) and not isinstance(name, bool) else name
    number = domid_text(name)
    if number == -1:
        return None, no_domain_with_id(name)
    if number is not None and resolve_domain is None:
        return number, None
    domid = _lookup(resolve_domain, name, None)
    if domid is None:
        return None, no_domain_with_id(name) if number is not None else "unknown backend domain %s" % shown(name)
    return int(domid), None


def target_key(backend_domid, target):
    """Identity of a backing store for the sharing rule: the backend domain and the normalised path."""
    return backend_domid, posixpath.normpath(target)


def validate_declaration(guests, *, stat_target=None, resolve_domain=None, default_backend=None,
                         arch="x86", script_dir=DEFAULT_SCRIPT_DIR, attached=()):
    """Check every disk of every guest; return [[DesiredDisk, ...] per guest] or raise DeclarationError.

    `guests`: GuestDeclarations. `stat_target(path) -> kind` (or a dict path -> kind; kinds are
    block, file, other, missing, unknown) answers for local targets libxl would stat;
    `resolve_domain(name) -> domid or None` (or a dict) resolves `backend=` names;
    `default_backend` is used for disks without `backend=`. `attached`: CurrentDisks of the
    whole host (from `_plan.read_disks`), for the rule that a target attached read-write is
    not shared. Virtio hot-plug is the plan's concern (it knows what would be attached), so the
    libxl-stage rules run here as at domain creation.
    """
    errors = []
    checked_guests = []
    for guest in guests:
        checked = []
        for index, item in enumerate(guest.disks):
            label = "%sdisks[%d]" % (guest.prefix, index)
            try:
                disk = parse_item(item)
            except DiskSpecError as err:
                errors.append(spec_message(label, err))
                continue
            item_errors = []
            try:
                check_libxl_rules(disk, hotplug=False)
            except DiskSpecError as err:
                item_errors.append(spec_message(label, err))
            backend_domid, problem = resolve_backend(disk, resolve_domain, default_backend)
            if problem:
                item_errors.append("%s.backend: %s" % (label, problem))
            if item_errors:
                errors += item_errors
                continue
            target_kind = "unknown"
            if stat_wanted(disk, backend_domid):
                # libxl's stat("") fails like any missing path
                target_kind = (_lookup(stat_target, disk.target, "unknown") or "unknown") if disk.target \
                    else "missing"
                if target_kind not in TARGET_KINDS:
                    raise ValueError("stat_target gave %r for %r: expected one of %s"
                                     % (target_kind, disk.target, ", ".join(TARGET_KINDS)))
            try:
                backend_type = choose_backend(disk, backend_domid=backend_domid, target_kind=target_kind,
                                              guest_type=guest.guest_type)
            except DiskSpecError as err:
                errors.append(spec_message(label, err))
                continue
            devid = disk.devid
            checked.append(_Checked(label, guest.domid, disk, devid, backend_domid, backend_type))
        errors += _guest_rules(checked)
        checked_guests.append(checked)
    errors += _sharing_rules([c for cs in checked_guests for c in cs], attached)
    if errors:
        raise DeclarationError(errors)

    out = []
    for guest, checked in zip(guests, checked_guests):
        desired, virtio_index = [], 0
        for c in checked:
            try:
                desired.append(desired_disk(
                    c.disk, domid=guest.domid, backend_domid=c.backend_domid, backend_kind=c.backend_type,
                    guest_type=guest.guest_type, guest_width=guest.guest_width, virtio_index=virtio_index,
                    script_dir=script_dir, arch=arch, devid=c.devid, label=c.label))
            except LayoutError as err:
                errors.append("%s: %s" % (c.label, err))
            if FRONTEND_KIND[c.backend_type] == "virtio_disk":
                virtio_index += 1
        out.append(desired)
    if errors:
        raise DeclarationError(errors)
    return out


def _guest_rules(checked):
    """Within one guest: one disk per device number, and not both vbd and virtio_disk kinds."""
    errors = []
    first_by_devid = {}
    for c in checked:
        first = first_by_devid.setdefault(c.devid, c)
        if first is not c:
            errors.append("%s.vdev: %r is the same device as %s (%r, device number %d)"
                          % (c.label, c.disk.vdev, first.label, first.disk.vdev, c.devid))
    kinds = {}
    for c in checked:
        kinds.setdefault(FRONTEND_KIND[c.backend_type], c)
    if len(kinds) == 2:
        virtio = kinds["virtio_disk"]
        xen = kinds["vbd"]
        errors.append("%s.specification: a virtio disk cannot be mixed with xen disks (%s) in one guest: "
                      "libxl then lists none of them (\"both xen and virtio paths are present\")"
                      % (virtio.label, xen.label))
    return errors


SHARING_REASON = ("Xen's block hotplug script refuses to share a device that one guest writes "
                  "(hotplug-status busy) and QEMU's qdisk does not check, so the data would be corrupted "
                  "or read while it changes")
MODE = {True: "read-write", False: "read-only"}


def _sharing_rules(checked, attached):
    """A target attached read-write is not shared, with any guest, in any mode: what the block
    hotplug script enforces (writable use needs the device unused elsewhere, read-only use needs
    no writer), applied to every backend before anything is written."""
    errors = []
    declared = {(c.domid, c.devid) for c in checked}
    by_target = {}
    for c in checked:
        if c.disk.target and c.disk.effective_format != "empty":
            by_target.setdefault(target_key(c.backend_domid, c.disk.target), []).append(c)
    for c_list in by_target.values():
        for i, c in enumerate(c_list):
            for other in c_list[:i]:
                if c.disk.readwrite or other.disk.readwrite:
                    where = other.label + ("" if other.domid == c.domid else " (guest %d)" % other.domid)
                    errors.append("%s.target: %r is also attached by %s, %s: %s"
                                  % (c.label, c.disk.target, where, _modes(other.disk.readwrite, c.disk.readwrite),
                                     SHARING_REASON))
                    break
    for current in attached:
        # a backend directory may hold the target open, whatever the guest's frontend says
        if not current.holds_target or (current.domid, current.devid) in declared:
            continue
        target = current.target
        if target is None:
            continue
        writes = current.libxl.get("mode") == "w"
        for c in by_target.get(target_key(current.backend_domid, target), ()):
            if c.disk.readwrite or writes:
                errors.append("%s.target: %r is already attached to guest %d as %s, %s: %s"
                              % (c.label, c.disk.target, current.domid, current.vdev,
                                 _modes(writes, c.disk.readwrite), SHARING_REASON))
    return errors


def _modes(there, here):
    if there == here:
        return "both %s" % MODE[here]
    return "%s there and %s here" % (MODE[there], MODE[here])
