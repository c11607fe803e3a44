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
from ansible_collections.xen.disks.plugins.module_utils._disk_spec import (
    disk_from_dict,
    disk_to_dict,
    parse_disk_spec,
    render_disk_spec,
)
from ansible_collections.xen.disks.plugins.module_utils._vdev import vdev_to_devid

DISK_SETTING = "disk"


def _text(value, name):
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: the xl config must be a string, not %s" % (name, type(value).__name__))
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
    return vdev_to_devid(parse_disk_spec(spec).vdev)


def _canonical_or_none(spec):
    try:
        return render_disk_spec(parse_disk_spec(spec))
    except ValueError:
        return None


def _same_disks(old_specs, new_specs):
    """The file already holds these disks when each entry means the same as the declared one."""
    return len(old_specs) == len(new_specs) and all(
        _canonical_or_none(old) == new for old, new in zip(old_specs, new_specs))


def xl_cfg_disks(text, source="xl.cfg"):
    """The disk specs of an xl.cfg text as xl reads them (an empty list when there is no setting)."""
    try:
        specs = _xl_cfg.get_list_setting(_text(text, "xl_cfg_disks"), DISK_SETTING, source)
    except _xl_cfg.XlCfgError as exc:
        raise AnsibleFilterError("xl_cfg_disks: %s" % exc)
    return specs or []


def xl_cfg_set_disks(text, disks, source="xl.cfg"):
    """The xl.cfg text with its disk setting replaced by the canonical specs of `disks`."""
    _text(text, "xl_cfg_set_disks")
    if not isinstance(disks, list):
        raise AnsibleFilterError("xl_cfg_set_disks: disks must be a list, not %s" % type(disks).__name__)
    specs = [render_disk_spec(_to_disk(entry, "disks[%d]" % index)) for index, entry in enumerate(disks)]
    try:
        return _xl_cfg.set_list_setting(text, DISK_SETTING, specs, key=_identity, equal=_same_disks, source=source)
    except (_xl_cfg.XlCfgError, ValueError) as exc:
        raise AnsibleFilterError("xl_cfg_set_disks: %s" % exc)


def _live_disk(entry, where):
    """A live disk: an entry of xen_disk_info's guests[].disks (its `spec`), a string or a dict."""
    if isinstance(entry, Mapping) and "spec" in entry:
        if entry["spec"] is None:
            return None
        return _to_disk(entry["spec"], where)
    return _to_disk(entry, where)


def _differing_fields(live, persistent):
    """Fields the file sets that the live disk does not match (unset fields: libxl's choice)."""
    live_fields = disk_to_dict(live)
    fields = []
    for name, value in sorted(disk_to_dict(persistent).items()):
        if name == "vdev" or value is None:
            continue
        if live_fields.get(name) != value:
            fields.append(name)
    return fields


def xl_disks_drift(live, persistent):
    """Compare the live disks of a guest with the disks of its xl.cfg, by device number."""
    if not isinstance(live, list) or not isinstance(persistent, list):
        raise AnsibleFilterError("xl_disks_drift: live and persistent must be lists")
    unreadable = []
    live_by_devid = {}
    for index, entry in enumerate(live):
        disk = _live_disk(entry, "live[%d]" % index)
        if disk is None:
            unreadable.append(entry.get("vdev") if isinstance(entry, Mapping) else str(entry))
            continue
        live_by_devid[vdev_to_devid(disk.vdev)] = disk
    file_by_devid = {}
    for index, entry in enumerate(persistent):
        disk = _to_disk(entry, "persistent[%d]" % index)
        file_by_devid[vdev_to_devid(disk.vdev)] = disk

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
        "in_sync": not (only_live or only_persistent or different or unreadable),
        "only_live": only_live,
        "only_persistent": only_persistent,
        "different": different,
        "unreadable_live": unreadable,
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
