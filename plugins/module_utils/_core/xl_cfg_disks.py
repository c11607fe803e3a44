# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The disk setting of xl.cfg files: read it, replace it, and plan the edit of one file.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).
Shared by the xl.cfg filters (controller) and the xl_cfg_files module (host), so a file edited
in one module run for many guests gets exactly the text the filters would give.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg as _xl_cfg
from ansible_collections.xen.disks.plugins.module_utils._core.storage import split_storage
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid
from ansible_collections.xen.disks.plugins.module_utils._core.declaration import (
    GuestDeclaration,
    domid_text,
    parse_item,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (
    canonical_disk,
    disk_from_dict,
    disk_to_dict,
    parse_disk_spec,
    render_disk_spec,
)

DISK_SETTING = "disk"
_PLACEHOLDER_DOMID = 0x7FEF  # below DOMID_FIRST_RESERVED


def _identity(spec):
    """The device number of an xl spec string: what makes two entries the same disk."""
    return parse_disk_spec(spec).devid


def _canonical_or_none(spec):
    try:
        return canonical_disk(parse_disk_spec(spec))
    except ValueError:
        return None


def _same_disks(old_specs, new_specs):
    """The file already holds these disks when each entry means the same as the declared one
    (the same canonical disk: a spelled-out libxl default is no difference)."""
    return len(old_specs) == len(new_specs) and all(
        _canonical_or_none(old) == canonical_disk(parse_disk_spec(new)) for old, new in zip(old_specs, new_specs))


class _OfflineDomains:
    """A file may name driver domains that are not running: each name stands for its own domain
    (a domid for itself, dom0's name for dom0)."""

    def __init__(self):
        self.ids = {"Domain-0": 0}

    def __call__(self, name):
        number = domid_text(name)
        if number is not None:
            return number
        return self.ids.setdefault(name, _PLACEHOLDER_DOMID - len(self.ids))


def guest_type(settings):
    """The guest type xl would build: `type`, else the legacy `builder = "hvm"`, else PV."""
    value = _xl_cfg.effective_value(settings, "type")
    if value in ("pv", "pvh", "hvm"):
        return value
    return "hvm" if _xl_cfg.effective_value(settings, "builder") == "hvm" else "pv"


def declared_items(disks):
    """The declared disks as plain items (xl strings, lists of strings, dicts without xen_disk's
    storage keys); ValueError names one."""
    if not isinstance(disks, list):
        raise ValueError("disks must be a list, not %s" % type(disks).__name__)
    items = []
    for index, entry in enumerate(disks):
        if isinstance(entry, Mapping):
            # the storage keys (size, create, ...) are xen_disk's, not the xl.cfg line's
            items.append(split_storage(dict(entry))[0])
        elif isinstance(entry, str) or (isinstance(entry, list) and all(isinstance(s, str) for s in entry)):
            items.append(entry)
        else:
            raise ValueError("disks[%d]: a disk must be an xl spec string, a list of strings or a dict, "
                             "not %s" % (index, type(entry).__name__))
    return items


def file_disks(text, source="xl.cfg"):
    """The disk specs of an xl.cfg text as xl reads them (an empty list when there is no setting)."""
    return _xl_cfg.get_list_setting(text, DISK_SETTING, source) or []


def set_disks(text, disks, source="xl.cfg"):
    """The xl.cfg text with its disk setting replaced by the canonical specs of `disks`.

    The whole declaration is checked first, with the rules the live plane uses (the shared
    `validate_declaration`): targets are not stat'ed and named backends are not resolved,
    since the file describes the guest's next start. Raises XlCfgError, DeclarationError or
    ValueError (all ValueErrors).
    """
    settings = _xl_cfg.parse_settings(text, source)
    items = declared_items(disks)
    validate_declaration([GuestDeclaration(domid=1, disks=tuple(items), guest_type=guest_type(settings))],
                         resolve_domain=_OfflineDomains())
    specs = [render_disk_spec(parse_item(item)) for item in items]
    return _xl_cfg.set_list_setting(text, DISK_SETTING, specs, key=_identity, equal=_same_disks, source=source)


# -- drift between a running guest and its file ------------------------------------------------
# The record of a legacy spelling (`phy:`, `tap:aio:`) says how a disk was written, not what it is.
_NOT_COMPARED = frozenset(("vdev", "driver", "driver_subtype"))


def _to_disk(entry, where):
    """A declared disk (xl string, list of strings forming one disk, or dict) -> Disk."""
    try:
        if isinstance(entry, Mapping):
            return disk_from_dict(split_storage(dict(entry))[0])  # storage keys are xen_disk's
        if isinstance(entry, (str, list)):
            return parse_disk_spec(entry)
    except ValueError as exc:
        raise ValueError("%s: %s" % (where, exc)) from None
    raise ValueError("%s: a disk must be an xl spec string or a dict, not %s" % (where, type(entry).__name__))


def _live_disk(entry, where):
    """A live disk: an entry of xen_disk_info's guests[].disks (its `spec`), a string or a dict."""
    if isinstance(entry, Mapping) and "spec" in entry:
        if entry["spec"] is None:
            return None
        return _to_disk(entry["spec"], where)
    return _to_disk(entry, where)


def _differing_fields(live, persistent):
    """Fields the file sets that the live disk does not match (unset fields, and fields that
    spell out libxl's default, are libxl's choice: both sides are compared canonical)."""
    live_fields = disk_to_dict(canonical_disk(live))
    fields = []
    for name, value in sorted(disk_to_dict(canonical_disk(persistent)).items()):
        if name in _NOT_COMPARED or value is None:
            continue
        if live_fields.get(name) != value:
            fields.append(name)
    return fields


def _devid(disk, where):
    try:
        return disk.devid
    except ValueError as exc:
        raise ValueError("%s: %s" % (where, exc)) from None


def _unreadable_devid(entry, vdev):
    """The device number of a live disk whose spec could not be read (its own, or its vdev's)."""
    devid = entry.get("devid") if isinstance(entry, Mapping) else None
    if isinstance(devid, int) and not isinstance(devid, bool):
        return devid
    try:
        return vdev_to_devid(vdev) if isinstance(vdev, str) else None
    except VdevError:
        return None


def _add_once(by_devid, devid, disk, side, index):
    """One disk per device number and side: a second would hide the first from the comparison."""
    if devid in by_devid:
        raise ValueError("%s[%d]: %s is the same device (number %d) as %s, an earlier %s disk"
                         % (side, index, disk.vdev, devid, by_devid[devid].vdev, side))
    by_devid[devid] = disk


def disks_drift(live, persistent):
    """The drift of a running guest from its file, by device number: disks only live (lost at the
    next re-create), only in the file (they appear at the next boot), or different; live disks
    whose spec could not be read; live disks libxl's domain configuration lacks (the third plane).

    `live`: xen_disk_info's guests[].disks entries (or specs); `persistent`: the file's disks.
    Raises ValueError naming the entry (`live[2]: ...`)."""
    unreadable = []
    unreadable_devids = set()  # live, so a file disk of the same number is not "only in the file"
    not_in_libxl = []
    live_by_devid = {}
    for index, entry in enumerate(live):
        disk = _live_disk(entry, "live[%d]" % index)
        if disk is None:
            vdev = entry.get("vdev") if isinstance(entry, Mapping) else str(entry)
            unreadable.append(vdev)
            devid = _unreadable_devid(entry, vdev)
            if devid is not None:
                unreadable_devids.add(devid)
            continue
        _add_once(live_by_devid, _devid(disk, "live[%d]" % index), disk, "live", index)
        if isinstance(entry, Mapping) and entry.get("survives_xl_reboot") is False:
            not_in_libxl.append(render_disk_spec(disk))
    file_by_devid = {}
    for index, entry in enumerate(persistent):
        disk = _to_disk(entry, "persistent[%d]" % index)
        _add_once(file_by_devid, _devid(disk, "persistent[%d]" % index), disk, "persistent", index)

    only_live = [render_disk_spec(live_by_devid[d]) for d in sorted(set(live_by_devid) - set(file_by_devid))]
    only_persistent = [render_disk_spec(file_by_devid[d])
                       for d in sorted(set(file_by_devid) - set(live_by_devid) - unreadable_devids)]
    different = []
    for devid in sorted(set(live_by_devid) & set(file_by_devid)):
        fields = _differing_fields(live_by_devid[devid], file_by_devid[devid])
        if fields:
            different.append({
                "vdev": file_by_devid[devid].vdev,
                "devid": devid,
                "fields": fields,
                "live": render_disk_spec(live_by_devid[devid]),
                "persistent": render_disk_spec(file_by_devid[devid]),
            })
    return {
        "in_sync": not (only_live or only_persistent or different or unreadable or not_in_libxl),
        "only_live": only_live,
        "only_persistent": only_persistent,
        "different": different,
        "unreadable_live": unreadable,
        "not_in_libxl_config": not_in_libxl,
    }


# -- one file of the xl_cfg_files module -------------------------------------------------------
@dataclass(frozen=True)
class FileEdit:
    """What to do with one file, decided from its current text (None: it does not exist)."""

    path: str
    old_text: object      # str, or None for a missing file
    new_text: object      # str; None when the file is only read, or missing and only read
    write: bool           # the text changes (or the file is created)
    validate: bool        # give the new file to xl (whole guest files only)

    @property
    def created(self):
        return self.write and self.old_text is None

    @property
    def text(self):
        """The file's text after the edit (None: still missing)."""
        return self.new_text if self.write else self.old_text


def plan_file(path, old_text, disks, *, content=None, create=False):
    """The edit of one file: its disk setting set to `disks` (None: only read the file).

    `content` is the whole file as rendered elsewhere (a template): its disk setting is set and it
    replaces the file. Without it only the disk setting of the existing file changes; a missing file
    is an error unless `create`, which writes a file holding only the disk setting (such a file is
    not a whole guest configuration, so xl does not validate it). Raises ValueError.
    """
    if disks is None:
        if old_text is not None:
            _xl_cfg.parse_settings(old_text, path)  # a file xl cannot read is an error here too
        return FileEdit(path, old_text, None, False, False)
    if content is not None:
        new_text = set_disks(content, disks, path)
        return FileEdit(path, old_text, new_text, new_text != old_text, True)
    if old_text is None:
        if not create:
            raise ValueError("%s does not exist (create it, or give the whole file's content)" % path)
        return FileEdit(path, None, set_disks("", disks, path), True, False)
    new_text = set_disks(old_text, disks, path)
    return FileEdit(path, old_text, new_text, new_text != old_text, True)
