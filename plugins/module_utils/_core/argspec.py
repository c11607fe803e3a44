# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specifications of the xen_disk, xen_disk_info, xl_cfg_files and xen_host_disks modules.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).
The modules' DOCUMENTATION describes the same options; `ansible-test sanity` checks they agree.
`xen_disk_param_errors` / `xen_disk_info_param_errors` check what a spec cannot express (a finite
timeout, text that can reach xenstore, vdevs of `keep`), before anything is read or written.
"""

from __future__ import annotations

import copy

from ansible_collections.xen.disks.plugins.module_utils._core.text import text_problem
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid

HOTPLUG_SCRIPT_POLICIES = ("auto", "run", "skip")
VALIDATE_POLICIES = ("auto", "always", "never")  # xl.cfg files checked by xl create --dryrun

XENSTORE_CONNECTION = {
    "xenstore_socket": {"type": "path"},
}

LIBXL_FILES = {
    "libxl_dir": {"type": "path", "default": "/var/lib/xen"},
}

# How the live plane runs: libxl's hot-plug handshake and its run directory (xen_disk, xen_host_disks).
LIVE_RUN = {
    "wait": {"type": "bool", "default": True},
    "timeout": {"type": "float"},
    "hotplug_scripts": {"type": "str", "default": "auto", "choices": list(HOTPLUG_SCRIPT_POLICIES)},
    "script_dir": {"type": "path", "default": "/etc/xen/scripts"},
    "libxl_run_dir": {"type": "path", "default": "/var/run/xen"},
}

# How xl.cfg files are written: backups and xl's validation (xl_cfg_files, xen_host_disks).
XL_CFG_WRITING = {
    "backup": {"type": "bool", "default": False},
    "validate": {"type": "str", "default": "auto", "choices": list(VALIDATE_POLICIES)},
    "xl_path": {"type": "path", "default": "/usr/sbin/xl"},
    "validate_command": {"type": "str"},
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


# The guest options of xen_host_disks' guests[] entries that go to the live plane as they are.
HOST_GUEST_LIVE_OPTIONS = ("disks", "exclusive", "keep", "recreate", "force", "backend")


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
        "arch": {"type": "str", "choices": ["x86", "arm"]},
        "missing_domains": {"type": "str", "default": "fail", "choices": ["fail", "skip"]},
        "read_back": {"type": "bool", "default": False},
    })
    spec.update(copy.deepcopy(LIVE_RUN))
    spec.update(copy.deepcopy(XENSTORE_CONNECTION))
    spec.update(copy.deepcopy(LIBXL_FILES))
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
    spec.update(copy.deepcopy(LIBXL_FILES))
    return spec


XEN_DISK_INFO_MUTUALLY_EXCLUSIVE = [["domain", "domains"]]


MAX_TIMEOUT = 86400.0  # a day: every wait is bounded by a number the clock and select() can use


def _text_errors(where, value):
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            return ["%s: %s" % (where, problem)]
    return []


def _keep_errors(where, keep):
    errors = []
    for index, vdev in enumerate(keep or ()):
        try:
            vdev_to_devid(vdev)
        except VdevError as exc:
            errors.append("%s[%d]: %s" % (where, index, exc))
    return errors


def xen_disk_param_errors(params, labels=None):
    """What the argument spec cannot say about xen_disk's options, located (`timeout: ...`,
    `domains[1].keep[0]: ...`; `labels` name the `domains` entries otherwise): checked before
    anything is read or written. The disks themselves are the declaration's
    (`_declaration.validate_declaration`)."""
    errors = []
    timeout = params.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            errors.append("timeout: a number of seconds, not %s" % type(timeout).__name__)
        elif not 0 < timeout <= MAX_TIMEOUT:  # also refuses nan
            errors.append("timeout: %r is not a number of seconds above 0 and at most %g" % (timeout, MAX_TIMEOUT))
    for name in ("domain", "backend", "xenstore_socket", "script_dir", "libxl_dir"):
        errors += _text_errors(name, params.get(name))
    errors += _keep_errors("keep", params.get("keep"))
    for index, entry in enumerate(params.get("domains") or ()):
        where = labels[index] if labels else "domains[%d]." % index
        for name in ("domain", "backend"):
            errors += _text_errors(where + name, entry.get(name))
        errors += _keep_errors(where + "keep", entry.get("keep"))
    return errors


def xen_disk_info_param_errors(params):
    """xen_disk_info's counterpart of `xen_disk_param_errors`."""
    errors = []
    for name in ("domain", "xenstore_socket", "libxl_dir"):
        errors += _text_errors(name, params.get(name))
    for index, ref in enumerate(params.get("domains") or ()):
        errors += _text_errors("domains[%d]" % index, ref)
    return errors


def xl_cfg_files_argument_spec():
    """Argument spec of xen.disks.xl_cfg_files."""
    file_options = {
        "path": {"type": "path", "required": True},
        "name": {"type": "str"},
        "disks": {"type": "list", "elements": "raw"},
        "content": {"type": "str"},
        "create": {"type": "bool"},
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "mode": {"type": "raw"},
    }
    spec = {
        "files": {"type": "list", "elements": "dict", "required": True, "options": file_options},
        "create": {"type": "bool", "default": False},
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "mode": {"type": "raw"},
    }
    spec.update(copy.deepcopy(XL_CFG_WRITING))
    # unused here: the options the group's other modules share, so the group's module_defaults apply
    spec.update(copy.deepcopy(XENSTORE_CONNECTION))
    spec.update(copy.deepcopy(LIBXL_FILES))
    return spec


def xen_host_disks_argument_spec():
    """Argument spec of xen.disks.xen_host_disks: one host's guests, live and in their files."""
    guest_options = {"domain": {"type": "str", "required": True}}
    guest_options.update({name: copy.deepcopy(_GUEST_OPTIONS[name]) for name in HOST_GUEST_LIVE_OPTIONS})
    guest_options.update({
        "live": {"type": "bool"},
        "persist": {"type": "bool"},
        "config": {"type": "path"},
        "content": {"type": "str"},
    })
    spec = {
        "guests": {"type": "list", "elements": "dict", "required": True, "options": guest_options},
        "live": {"type": "bool", "default": True},
        "persist": {"type": "bool", "default": True},
        "exclusive": {"type": "bool", "default": False},
        "recreate": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "config_dir": {"type": "path", "default": "/etc/xen"},
        "create_config": {"type": "bool", "default": False},
        "config_owner": {"type": "str"},
        "config_group": {"type": "str"},
        "config_mode": {"type": "raw"},
        "report_drift": {"type": "bool", "default": True},
        "fail_on_drift": {"type": "bool", "default": False},
    }
    spec.update(copy.deepcopy(XL_CFG_WRITING))
    spec.update(copy.deepcopy(LIVE_RUN))
    spec.update(copy.deepcopy(XENSTORE_CONNECTION))
    spec.update(copy.deepcopy(LIBXL_FILES))
    return spec
