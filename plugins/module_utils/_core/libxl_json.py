# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libxl 4.17's domain configuration (`userdata-d.<domid>.<uuid>.libxl-json`), as values.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O):
`_io.libxl_config` reads and replaces the file under libxl's locks; `_runs.live_apply` executes
the steps planned here.

What libxl 4.17 does with the `disks` array (libxl_disk.c, libxl_device.c, libxl_domain.c):
- attach (device_disk_add, `xl block-attach`): under the userdata lock, reads the file, adds the
  disk as xl's parser produced it (before libxl fills its defaults) or replaces the entry with
  the same `vdev` string in place (device_add_domain_config), stores the file, then commits the
  xenstore transaction;
- detach (`xl block-detach`, with or without -f): neither reads nor writes the file, and takes
  no lock; the entry stays, and libxl_retrieve_domain_configuration (xl list -l, save, migrate,
  reboot) skips entries without a xenstore device;
- cdrom media change (libxl_cdrom_insert, `xl cd-insert` / `cd-eject`): under the device lock
  for the whole change, the userdata lock around the eject's xenstore write (the file is read,
  not stored) and again around the insert (the file is read, the entry replaced, stored, then
  the xenstore transaction committed).
- retrieval: a disk that is in xenstore but has no entry is dropped, so it is lost at the
  guest's next xl reboot, save or migration.

The file is libxl_domain_config_to_json's output (yajl, beautified with four spaces; an empty
map or array spans a blank line) followed by a NUL byte; keys in the IDL's order, fields equal
to their default left out.
"""

from __future__ import annotations

import json
from collections import namedtuple

# libxl_domain_config's fields in the IDL's order (libxl_types.idl, 4.17).
DOMAIN_CONFIG_KEYS = (
    "c_info", "b_info", "disks", "nics", "pcidevs", "rdms", "dtdevs", "vfbs", "vkbs", "vtpms",
    "p9s", "pvcallsifs", "vdispls", "vsnds", "channels", "usbctrls", "usbdevs", "on_poweroff",
    "on_reboot", "on_watchdog", "on_crash", "on_soft_reset",
)

# libxl_device_disk's fields in the IDL's order.
DISK_KEYS = (
    "backend_domid", "backend_domname", "pdev_path", "vdev", "backend", "format", "script",
    "removable", "readwrite", "is_cdrom", "direct_io_safe", "discard_enable", "specification",
    "transport", "irq", "base", "colo_enable", "colo_restore_enable", "colo_host", "colo_port",
    "colo_export", "active_disk", "hidden_disk", "trusted",
)

INDENT = "    "

# What a step changes in the file, and under which locks (see the module docstring).
ADD = "add"            # device_disk_add: userdata lock, entry stored, then the xenstore commit
EJECT = "eject"        # cdrom_insert_ejected: userdata lock, file read, not stored
INSERT = "insert"      # cdrom_insert_inserted: userdata lock, entry stored, then the commit

ConfigStep = namedtuple("ConfigStep", "action vdev entry")
ConfigStep.__doc__ = """One change to the `disks` array: `action` ADD/EJECT/INSERT, the `vdev`
string libxl compares, the entry to store (None for EJECT)."""


class LibxlConfigError(ValueError):
    """The file is not a libxl domain configuration; `str()` says why."""


# -- the file format ----------------------------------------------------------------------
def parse_config(data):
    """The document of the file's bytes (the trailing NUL libxl stores is dropped)."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "surrogateescape")
    text = data[:-1] if data.endswith("\0") else data
    if not text.strip():
        raise LibxlConfigError("the file is empty")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise LibxlConfigError("not JSON: %s" % exc) from None
    if not isinstance(doc, dict):
        raise LibxlConfigError("not a JSON object")
    disks = doc.get("disks")
    if disks is not None and (not isinstance(disks, list) or not all(isinstance(d, dict) for d in disks)):
        raise LibxlConfigError("`disks` is not an array of objects")
    return doc


# yajl_string_encode (yajl 2 as libxl configures it): the two JSON specials and the C escapes;
# \u00XX for other controls; no solidus escape, no UTF-8 validation: characters >= 0x20 as they are.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\b": "\\b"}


def yajl_string(value):
    """`value` as a JSON string written by libxl's yajl (its JSON files and QMP commands)."""
    out = []
    for char in value:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20:
            out.append("\\u00%02X" % ord(char))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _render(value, depth, out):
    if isinstance(value, dict):
        out.append("{\n")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",\n")
            out.append(INDENT * (depth + 1) + yajl_string(str(key)) + ": ")
            _render(item, depth + 1, out)
        out.append("\n" + INDENT * depth + "}")
    elif isinstance(value, list):
        out.append("[\n")
        for index, item in enumerate(value):
            if index:
                out.append(",\n")
            out.append(INDENT * (depth + 1))
            _render(item, depth + 1, out)
        out.append("\n" + INDENT * depth + "]")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        out.append("%d" % value)
    elif isinstance(value, float):
        out.append(repr(value))
    else:
        out.append(yajl_string(value))


def render_json(value):
    """`value` as libxl's yajl generator prints it (beautified, final newline)."""
    out = []
    _render(value, 0, out)
    return "".join(out) + "\n"


def render_config(doc):
    """The file's bytes for `doc`: the JSON text and the NUL libxl stores after it."""
    return (render_json(doc) + "\0").encode("utf-8", "surrogateescape")


# -- entries --------------------------------------------------------------------------------
def _defbool(value):
    return "True" if value else "False"


def disk_entry(disk, *, empty_target=None):
    """The `disks` entry libxl stores for `disk` (a _disk_spec.Disk): the libxl_device_disk xl's
    parser builds from the same specification, before libxl fills its defaults, as its JSON
    generator prints it (default fields left out). `empty_target` is the pdev_path of an empty
    cdrom: None (no target given) or "" (`xl cd-eject`, an empty positional target)."""
    cdrom = disk.is_cdrom
    fields = {
        "backend_domname": None if disk.backend is None else str(disk.backend),
        "pdev_path": disk.target if disk.target else (empty_target if cdrom else disk.target),
        "vdev": disk.vdev,
        "backend": disk.backendtype,
        "format": disk.effective_format,
        "script": disk.script,
        "removable": 1 if cdrom else None,
        "readwrite": 1 if disk.readwrite else None,
        "is_cdrom": 1 if cdrom else None,
        "direct_io_safe": True if disk.direct_io_safe else None,
        "discard_enable": None if disk.discard is None else _defbool(disk.discard),
        "specification": disk.specification,
        "transport": disk.transport,
        "colo_enable": None if disk.colo is None else _defbool(disk.colo),
        "colo_host": disk.colo_host,
        "colo_port": disk.colo_port,
        "colo_export": disk.colo_export,
        "active_disk": disk.active_disk,
        "hidden_disk": disk.hidden_disk,
        "trusted": None if disk.trusted is None else _defbool(disk.trusted),
    }
    return {key: fields[key] for key in DISK_KEYS if fields.get(key) is not None}


def media_entry(disk):
    """The entry libxl_cdrom_insert stores for `xl cd-insert`/`cd-eject` of `disk`'s medium."""
    return disk_entry(disk, empty_target="")


def disk_entries(doc):
    """The `disks` array of a document (empty when absent)."""
    return list(doc.get("disks") or []) if doc is not None else []


def entry_for(doc, vdev):
    """The entry libxl's retrieval pairs with a xenstore disk whose `dev` is `vdev` (the last
    one with that exact string, as device_add_domain_config's search), else None."""
    found = None
    for entry in disk_entries(doc):
        if entry.get("vdev") == vdev:
            found = entry
    return found


def with_entry(doc, entry):
    """device_add_domain_config: a copy of `doc` with `entry` replacing the (last) entry of the
    same `vdev` string in place, else appended; `disks` is created at its IDL position."""
    disks = disk_entries(doc)
    index = None
    for i, existing in enumerate(disks):
        if existing.get("vdev") == entry["vdev"]:
            index = i
    if index is None:
        disks.append(dict(entry))
    else:
        disks[index] = dict(entry)
    if "disks" in doc:
        return {key: (disks if key == "disks" else value) for key, value in doc.items()}
    out = {}
    rank = {key: i for i, key in enumerate(DOMAIN_CONFIG_KEYS)}
    placed = False
    for key, value in doc.items():
        if not placed and rank.get(key, -1) > rank["disks"]:
            out["disks"] = disks
            placed = True
        out[key] = value
    if not placed:
        out["disks"] = disks
    return out


def apply_steps(doc, steps):
    """The document after `steps` (EJECT leaves it as it is)."""
    for step in steps:
        if step.entry is not None:
            doc = with_entry(doc, step.entry)
    return doc


# -- planning ---------------------------------------------------------------------------------
ATTACHING = ("attach", "recreate")
MEDIA_CHANGE = "media_change"
DETACHING = ("detach", "absent")


def plan_steps(changes, doc):
    """The file changes of one guest's plan: {id(change): [ConfigStep, ...]}.

    `changes` are the guest's _plan.DiskChange values; `doc` the document read (None when the
    guest has no file: nothing is planned). An attach or recreate adds its entry; a media change
    ejects then inserts; a detach leaves the file alone (as libxl); a declared disk that is
    attached and unchanged but has no entry gets one (libxl would drop it at the next reboot)."""
    steps = {}
    if doc is None:
        return steps
    for change in changes:
        desired = change.desired
        if change.error or desired is None:
            continue
        disk = desired.disk
        if change.changed and change.action in ATTACHING:
            steps[id(change)] = [ConfigStep(ADD, disk.vdev, disk_entry(disk))]
        elif change.changed and change.action == MEDIA_CHANGE:
            steps[id(change)] = [ConfigStep(EJECT, disk.vdev, None),
                                 ConfigStep(INSERT, disk.vdev, media_entry(disk))]
        elif change.current is not None and change.action not in DETACHING:
            vdev = change.current.libxl.get("dev") or disk.vdev
            if entry_for(doc, vdev) is None:
                entry = disk_entry(disk)
                if entry["vdev"] != vdev:
                    entry["vdev"] = vdev  # retrieval pairs them by the string in xenstore
                steps[id(change)] = [ConfigStep(ADD, vdev, entry)]
    return steps


def disks_text(doc):
    """The `disks` array as libxl prints it, for diffs ("" without a document)."""
    if doc is None:
        return ""
    return render_json(disk_entries(doc))
