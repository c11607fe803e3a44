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
from ansible_collections.xen.disks.plugins.module_utils import _xl_cfg_disks
from ansible_collections.xen.disks.plugins.module_utils._declaration import DeclarationError
from ansible_collections.xen.disks.plugins.module_utils._storage import split_storage
from ansible_collections.xen.disks.plugins.module_utils._disk_spec import (
    canonical_disk,
    disk_from_dict,
    disk_to_dict,
    parse_disk_spec,
    render_disk_spec,
)
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
            return disk_from_dict(split_storage(dict(entry))[0])  # storage keys are xen_disk's
        if isinstance(entry, (str, list)):
            return parse_disk_spec(entry)
    except ValueError as exc:
        raise AnsibleFilterError("%s: %s" % (where, exc))
    raise AnsibleFilterError("%s: a disk must be an xl spec string or a dict, not %s" % (where, type(entry).__name__))


def xl_cfg_disks(text, source="xl.cfg"):
    """The disk specs of an xl.cfg text as xl reads them (an empty list when there is no setting)."""
    try:
        return _xl_cfg_disks.file_disks(_text(text, "xl_cfg_disks"), _source(source, "xl_cfg_disks"))
    except _xl_cfg.XlCfgError as exc:
        raise AnsibleFilterError("xl_cfg_disks: %s" % exc)


def xl_cfg_set_disks(text, disks, source="xl.cfg"):
    """The xl.cfg text with its disk setting replaced by the canonical specs of `disks`.

    The whole declaration is checked first, with the rules the live plane uses (the shared
    `validate_declaration`): targets are not stat'ed and named backends are not resolved,
    since the file describes the guest's next start.
    """
    try:
        return _xl_cfg_disks.set_disks(_text(text, "xl_cfg_set_disks"), disks, _source(source, "xl_cfg_set_disks"))
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
