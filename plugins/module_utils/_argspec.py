# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specifications shared by the xen_disk and xen_disk_info modules.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).
The modules' DOCUMENTATION describes the same options; `ansible-test sanity` checks they agree.
"""

from __future__ import annotations

import copy

HOTPLUG_SCRIPT_POLICIES = ("auto", "run", "skip")

XENSTORE_CONNECTION = {
    "xenstore_socket": {"type": "path"},
}

# Options that apply to one guest; `domains:` entries take the same ones (they override the
# top-level values for that guest).
_GUEST_OPTIONS = {
    "disks": {"type": "list", "elements": "raw"},
    "state": {"type": "str", "choices": ["present", "absent"]},
    "exclusive": {"type": "bool"},
    "keep": {"type": "list", "elements": "str"},
    "recreate": {"type": "bool"},
    "force": {"type": "bool"},
    "creating": {"type": "bool"},
    "backend": {"type": "str"},
    "width": {"type": "int", "choices": [32, 64]},
}

GUEST_DEFAULTS = {
    "disks": [],
    "state": "present",
    "exclusive": False,
    "keep": [],
    "recreate": False,
    "force": False,
    "creating": False,
    "backend": None,
    "width": 64,
}


def _domain_entry_spec():
    options = {"domain": {"type": "str", "required": True}}
    options.update(copy.deepcopy(_GUEST_OPTIONS))
    return {"type": "list", "elements": "dict", "options": options}


def xen_disk_argument_spec():
    """Argument spec of xen.disks.xen_disk."""
    spec = {"domain": {"type": "str"}}
    spec.update(copy.deepcopy(_GUEST_OPTIONS))
    for name, default in GUEST_DEFAULTS.items():
        if default is not None:
            spec[name]["default"] = copy.deepcopy(default)
    spec.update({
        "domains": _domain_entry_spec(),
        "wait": {"type": "bool", "default": True},
        "timeout": {"type": "float"},
        "hotplug_scripts": {"type": "str", "default": "auto", "choices": list(HOTPLUG_SCRIPT_POLICIES)},
        "script_dir": {"type": "path", "default": "/etc/xen/scripts"},
        "arch": {"type": "str", "choices": ["x86", "arm"]},
    })
    spec.update(copy.deepcopy(XENSTORE_CONNECTION))
    return spec


XEN_DISK_MUTUALLY_EXCLUSIVE = [["domain", "domains"]]
XEN_DISK_REQUIRED_ONE_OF = [["domain", "domains"]]


def xen_disk_info_argument_spec():
    """Argument spec of xen.disks.xen_disk_info."""
    spec = {
        "domain": {"type": "str"},
        "domains": {"type": "list", "elements": "str"},
    }
    spec.update(copy.deepcopy(XENSTORE_CONNECTION))
    return spec


XEN_DISK_INFO_MUTUALLY_EXCLUSIVE = [["domain", "domains"]]
