# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for xl disk specifications: xl_disk_parse, xl_disk_spec, xl_vdev_devid.

They type-check, call the pure core (_disk_spec, _vdev) and turn its errors into
AnsibleFilterError with the core's message. Documentation: the .yml file of each filter.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.xen.disks.plugins.module_utils._core.storage import split_storage
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (
    DiskSpecError,
    disk_from_dict,
    disk_to_dict,
    parse_disk_spec,
    render_disk_spec,
)
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid


def _strings(value, name):
    """A string, or a list of strings forming one disk (as xl block-attach takes them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return [str(item) for item in value]
    raise AnsibleFilterError("%s: expected an xl disk spec string or a non-empty list of strings, got %s"
                             % (name, type(value).__name__))


def xl_disk_parse(spec):
    """xl disk spec string (or list of strings) -> dict keyed by the xl option names."""
    try:
        return disk_to_dict(parse_disk_spec(_strings(spec, "xl_disk_parse")))
    except DiskSpecError as exc:
        raise AnsibleFilterError("xl_disk_parse: %s" % exc) from None


def xl_disk_spec(disk):
    """dict, spec string or list of strings -> the canonical xl disk spec string."""
    try:
        if isinstance(disk, Mapping):
            return render_disk_spec(disk_from_dict(split_storage(dict(disk))[0]))  # storage keys: xen_disk's
        return render_disk_spec(parse_disk_spec(_strings(disk, "xl_disk_spec")))
    except DiskSpecError as exc:
        raise AnsibleFilterError("xl_disk_spec: %s" % exc) from None


def xl_vdev_devid(vdev):
    """vdev name -> device number (libxl's numbering)."""
    if not isinstance(vdev, str):
        raise AnsibleFilterError("xl_vdev_devid: expected a vdev string, got %s" % type(vdev).__name__)
    try:
        return vdev_to_devid(str(vdev))
    except VdevError as exc:
        raise AnsibleFilterError("xl_vdev_devid: %s" % exc) from None


class FilterModule:
    """xl disk specification filters."""

    def filters(self):
        return {
            "xl_disk_parse": xl_disk_parse,
            "xl_disk_spec": xl_disk_spec,
            "xl_vdev_devid": xl_vdev_devid,
        }
