# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for xl.cfg files: xl_cfg_disks, xl_cfg_set_disks, xl_cfg_value, xl_disks_drift.

They type-check, call the pure core (_xl_cfg for the file, _disk_spec/_vdev for the disks) and
turn its errors into AnsibleFilterError. Documentation: the .yml file of each filter.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg as _xl_cfg
from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg_disks as _xl_cfg_disks
from ansible_collections.xen.disks.plugins.module_utils._core.declaration import DeclarationError


def _text(value, name):
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: the xl config must be a string, not %s" % (name, type(value).__name__))
    return value


def _source(value, name):
    """The file name messages give: a string (a number of thousands of digits cannot be shown)."""
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: source must be a string (the file's name), not %s" % (name, type(value).__name__))
    return value


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


def xl_disks_drift(live, persistent):
    """Compare the live disks of a guest with the disks of its xl.cfg, by device number."""
    if not isinstance(live, list) or not isinstance(persistent, list):
        raise AnsibleFilterError("xl_disks_drift: live and persistent must be lists")
    try:
        return _xl_cfg_disks.disks_drift(live, persistent)
    except ValueError as exc:
        raise AnsibleFilterError("xl_disks_drift: %s" % exc)


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
