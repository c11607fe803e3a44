# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for xl.cfg files: xl_cfg_disks, xl_cfg_set_disks, xl_cfg_value, xl_disks_drift.

They type-check, call the pure core (_xl_cfg for the file, _disk_spec/_vdev for the disks) and
turn its errors into AnsibleFilterError. Documentation: the .yml file of each filter.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.disks.plugins.module_utils import _xl_cfg
from ansible_collections.xen.disks.plugins.module_utils._declaration import (
    DeclarationError,
    GuestDeclaration,
    domid_text,
    parse_item,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._disk_spec import (
    canonical_disk,
    disk_from_dict,
    disk_to_dict,
    parse_disk_spec,
    render_disk_spec,
)
DISK_SETTING = "disk"
_PLACEHOLDER_DOMID = 0x7FEF  # below DOMID_FIRST_RESERVED
# The record of a legacy spelling (`phy:`, `tap:aio:`) says how a disk was written, not what it is.
_NOT_COMPARED = frozenset(("vdev", "driver", "driver_subtype"))


def _text(value, name):
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: the xl config must be a string, not %s" % (name, type(value).__name__))
    return value


def _source(value, name):
    """The file name messages give: a string (a number of thousands of digits cannot be shown)."""
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: source must be a string (the file's name), not %s" % (name, type(value).__name__))
    return value


def _to_disk(entry, where):
    """A declared disk (xl string, list of strings forming one disk, or dict) -> Disk."""
    try:
        if isinstance(entry, Mapping):
            return disk_from_dict(dict(entry))
        if isinstance(entry, (str, list)):
            return parse_disk_spec(entry)
    except ValueError as exc:
        raise AnsibleFilterError("%s: %s" % (where, exc))
    raise AnsibleFilterError("%s: a disk must be an xl spec string or a dict, not %s" % (where, type(entry).__name__))


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


def xl_cfg_disks(text, source="xl.cfg"):
    """The disk specs of an xl.cfg text as xl reads them (an empty list when there is no setting)."""
    try:
        specs = _xl_cfg.get_list_setting(_text(text, "xl_cfg_disks"), DISK_SETTING, _source(source, "xl_cfg_disks"))
    except _xl_cfg.XlCfgError as exc:
        raise AnsibleFilterError("xl_cfg_disks: %s" % exc)
    return specs or []


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


def _guest_type(settings):
    """The guest type xl would build: `type`, else the legacy `builder = "hvm"`, else PV."""
    guest_type = _xl_cfg.effective_value(settings, "type")
    if guest_type in ("pv", "pvh", "hvm"):
        return guest_type
    return "hvm" if _xl_cfg.effective_value(settings, "builder") == "hvm" else "pv"


def _declared_items(disks):
    if not isinstance(disks, list):
        raise ValueError("disks must be a list, not %s" % type(disks).__name__)
    items = []
    for index, entry in enumerate(disks):
        if isinstance(entry, Mapping):
            items.append(dict(entry))
        elif isinstance(entry, str) or (isinstance(entry, list) and all(isinstance(s, str) for s in entry)):
            items.append(entry)
        else:
            raise ValueError("disks[%d]: a disk must be an xl spec string, a list of strings or a dict, "
                             "not %s" % (index, type(entry).__name__))
    return items


def xl_cfg_set_disks(text, disks, source="xl.cfg"):
    """The xl.cfg text with its disk setting replaced by the canonical specs of `disks`.

    The whole declaration is checked first, with the rules the live plane uses (the shared
    `validate_declaration`): targets are not stat'ed and named backends are not resolved,
    since the file describes the guest's next start.
    """
    try:
        settings = _xl_cfg.parse_settings(_text(text, "xl_cfg_set_disks"), _source(source, "xl_cfg_set_disks"))
        items = _declared_items(disks)
        validate_declaration([GuestDeclaration(domid=1, disks=tuple(items), guest_type=_guest_type(settings))],
                             resolve_domain=_OfflineDomains())
        specs = [render_disk_spec(parse_item(item)) for item in items]
        return _xl_cfg.set_list_setting(text, DISK_SETTING, specs, key=_identity, equal=_same_disks, source=source)
    except (_xl_cfg.XlCfgError, DeclarationError, ValueError) as exc:
        raise AnsibleFilterError("xl_cfg_set_disks: %s" % exc)


def _live_disk(entry, where):
    """A live disk: an entry of xen_disk_info's guests[].disks (its `spec`), a string or a dict."""
    if isinstance(entry, Mapping) and "spec" in entry:
        if entry["spec"] is None:
            return None
        return _to_disk(entry["spec"], "xl_disks_drift: " + where)
    return _to_disk(entry, "xl_disks_drift: " + where)


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
        raise AnsibleFilterError("xl_disks_drift: %s: %s" % (where, exc))


def xl_disks_drift(live, persistent):
    """Compare the live disks of a guest with the disks of its xl.cfg, by device number."""
    if not isinstance(live, list) or not isinstance(persistent, list):
        raise AnsibleFilterError("xl_disks_drift: live and persistent must be lists")
    unreadable = []
    not_in_libxl = []
    live_by_devid = {}
    for index, entry in enumerate(live):
        disk = _live_disk(entry, "live[%d]" % index)
        if disk is None:
            unreadable.append(entry.get("vdev") if isinstance(entry, Mapping) else str(entry))
            continue
        live_by_devid[_devid(disk, "live[%d]" % index)] = disk
        # the third plane: xen_disk_info says libxl's domain configuration lacks the disk
        if isinstance(entry, Mapping) and entry.get("survives_xl_reboot") is False:
            not_in_libxl.append(render_disk_spec(disk))
    file_by_devid = {}
    for index, entry in enumerate(persistent):
        disk = _to_disk(entry, "xl_disks_drift: persistent[%d]" % index)
        file_by_devid[_devid(disk, "persistent[%d]" % index)] = disk

    only_live = [render_disk_spec(live_by_devid[d]) for d in sorted(set(live_by_devid) - set(file_by_devid))]
    only_persistent = [render_disk_spec(file_by_devid[d]) for d in sorted(set(file_by_devid) - set(live_by_devid))]
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


def xl_cfg_value(value):
    """A value as xl config text, quoted as xl's parser requires."""
    try:
        return _xl_cfg.render_value(value)
    except ValueError as exc:
        raise AnsibleFilterError("xl_cfg_value: %s" % exc)


class FilterModule:
    """xl.cfg disk-setting filters."""

    def filters(self):
        return {
            "xl_cfg_disks": xl_cfg_disks,
            "xl_cfg_set_disks": xl_cfg_set_disks,
            "xl_cfg_value": xl_cfg_value,
            "xl_disks_drift": xl_disks_drift,
        }
