# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Xen host's declared guests in one module run (the xen_host_disks module): their disks
applied live, written to their xl.cfg files, and both planes compared afterwards.

Private to the xen.disks collection: no compatibility promise. It composes what the other
modules run: `live.run_xen_disk` (the live plane), `_io.xl_cfg_files.ConfigFiles` (the files)
and `info.run_xen_disk_info` with `_core.xl_cfg_disks.disks_drift` (the report). The order is
what keeps bad input harmless: every guest and every file is checked and every new file is
validated by xl before the live plane is touched; a guest's file is moved into place only after
its live disks were applied, so a run that fails before any write writes no file, and a guest that
fails alone (a noisy guest, a backend that did not answer) holds back only its own file.
"""

from __future__ import annotations

import os

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg_disks as _xl_cfg_disks
from ansible_collections.xen.disks.plugins.module_utils._core.declaration import spec_message, parse_item
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import DiskSpecError, check_libxl_rules
from ansible_collections.xen.disks.plugins.module_utils._core.storage import split_storage
from ansible_collections.xen.disks.plugins.module_utils._io.xl_cfg_files import ConfigFiles
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError
from ansible_collections.xen.disks.plugins.module_utils._runs.info import run_xen_disk_info
from ansible_collections.xen.disks.plugins.module_utils._runs.live import run_xen_disk

# xen_disk's options passed through unchanged: the guests' defaults, and how the live plane runs
_LIVE_RUN_OPTIONS = ("exclusive", "recreate", "force") + tuple(_argspec.LIVE_RUN) \
    + tuple(_argspec.XENSTORE_CONNECTION) + tuple(_argspec.LIBXL_FILES)


def _flag(guest, name, default):
    value = guest.get(name)
    return default if value is None else bool(value)


def needs_xenstore(params):
    """Whether a run reads xenstore: some guest is applied live, or drift is reported."""
    return params["report_drift"] or any(_flag(guest, "live", params["live"]) for guest in params["guests"])


def _where(index):
    return "guests[%d]" % index


def _disk_errors(disks, label):
    """Disks no guest could have, located as the live plane locates them (`guests[1].disks[0].vdev:
    ...`), before a file plan would report them as its file's."""
    if not isinstance(disks, list):
        return ["%s: must be a list, not %s" % (label, type(disks).__name__)]
    errors = []
    for index, item in enumerate(disks):
        where = "%s[%d]" % (label, index)
        try:
            check_libxl_rules(parse_item(split_storage(item)[0]), hotplug=False)
        except DiskSpecError as err:
            errors.append(spec_message(where, err))
        except ValueError as err:
            errors.append("%s: %s" % (where, err))
    return errors


def declaration_errors(guests, live=True, persist=True, config_given=()):
    """What is wrong with the guests taken together, each error located (`guests[2] (web1): ...`):
    a guest without a name, a name given twice, a guest applied live or persisted without a
    `disks` key (an empty list must be said, so a forgotten key never empties a guest), a disk
    no guest could have (`guests[2].disks[0]: ...`), a name that cannot name its default file. Pure."""
    errors = []
    seen = {}
    for index, guest in enumerate(guests):
        name = guest.get("domain")
        where = _where(index)
        if not name:
            errors.append("%s: no domain name" % where)
            continue
        if name in seen:
            errors.append("%s: guest %s is declared more than once (also %s)" % (where, name, _where(seen[name])))
            continue
        seen[name] = index
        where = "%s (%s)" % (where, name)
        if _flag(guest, "live", live) or _flag(guest, "persist", persist):
            if guest.get("disks") is None:
                errors.append("%s: no disks key (an empty list must be said, or live and persist false: without it "
                              "the guest's disks would be replaced by none)" % where)
            else:
                errors += _disk_errors(guest["disks"], _where(index) + ".disks")
        if index not in config_given and ("/" in name or name in (".", "..")):
            errors.append("%s: the name cannot name a file in config_dir: give the guest's config" % where)
    return errors


def _live_params(params, guests):
    """xen_disk's parameters for the guests applied live (a missing guest is skipped)."""
    out = {name: params.get(name) for name in _LIVE_RUN_OPTIONS}
    out.update(domain=None, disks=[], state="present", keep=[], creating=False, backend=None, width=64, arch=None,
               missing_domains="skip", read_back=False,
               domains=[dict({"domain": guest["domain"]}, **{k: guest.get(k) for k in _argspec.HOST_GUEST_LIVE_OPTIONS})
                        for _index, guest in guests])
    return out


def _file_entries(params, guests, report_drift):
    """ConfigFiles entries: each persisted guest's file with its disks, and each other guest's
    file only read (for the drift report)."""
    entries = []
    for index, guest in enumerate(guests):
        persist = _flag(guest, "persist", params["persist"])
        if not (persist or report_drift):
            continue
        path = guest.get("config") or os.path.join(params["config_dir"], guest["domain"] + ".cfg")
        entries.append({"path": path, "name": guest["domain"], "disks": guest.get("disks") if persist else None,
                        "content": guest.get("content") if persist else None, "create": params["create_config"],
                        "where": _where(index) + ".config"})
    return entries


def _read_back(params, guests):
    """The declared running guests' disks (one read of xenstore, no image inspection)."""
    return run_xen_disk_info({"domains": [guest["domain"] for guest in guests],
                              "xenstore_socket": params.get("xenstore_socket"),
                              "libxl_dir": params.get("libxl_dir"), "script_dir": params.get("script_dir")},
                             inspect_images=False, skip_missing=True)


def _drift(guests, info, file_results):
    """(drift by guest name, names of declared guests that are not running)."""
    refs = [guest["domain"] for guest in guests]
    file_disks = {entry["name"]: entry["disks"] for entry in file_results}
    file_errors = {entry["name"]: entry["error"] for entry in file_results if entry.get("error")}
    drift = {}
    for guest in info["guests"]:
        ref = next((r for r in refs if r in (guest["domain"], str(guest["domid"])) and r not in drift), None)
        if ref is None:
            continue
        if ref in file_errors:  # a file only read, that xl cannot read either
            drift[ref] = {"in_sync": False, "error": file_errors[ref]}
            continue
        try:
            drift[ref] = _xl_cfg_disks.disks_drift(guest["disks"], file_disks.get(ref, []))
        except ValueError as exc:  # a file only read, that xl could not start the guest from
            drift[ref] = {"in_sync": False, "error": "%s: %s" % (ref, exc)}
    return drift, info["missing_domains"]


def run(module):
    """The xen_host_disks module's result, or ReconcileError (then nothing was written unless its
    `changed` says so). `module`: the AnsibleModule (its params, check and diff modes, and the
    file operations the files go through)."""
    params = module.params
    guests = params["guests"]
    report_drift = params["report_drift"]
    errors = declaration_errors(guests, params["live"], params["persist"],
                                config_given={i for i, g in enumerate(guests) if g.get("config")})
    if errors:
        raise ReconcileError("\n".join(errors), errors=errors)
    live = [(i, g) for i, g in enumerate(guests) if _flag(g, "live", params["live"])]
    files = ConfigFiles(module, _file_entries(params, guests, report_drift), backup=params["backup"],
                        defaults={"owner": params["config_owner"], "group": params["config_group"],
                                  "mode": params["config_mode"]},
                        validate=params["validate"], xl_path=params["xl_path"],
                        validate_command=params["validate_command"], report_unreadable=True)
    try:
        errors = files.plan() or files.stage()
        if errors:
            raise ReconcileError("\n".join(errors), errors=errors)
        live_result = {"changed": False, "disks": [], "images": [], "stale": [], "missing_domains": [],
                       "warnings": [], "diff": []}
        live_error = None
        if live:
            try:
                live_result = run_xen_disk(_live_params(params, live), check_mode=module.check_mode,
                                           want_diff=module._diff, labels=[_where(i) + "." for i, _g in live])
            except ReconcileError as exc:
                if not exc.details.get("failed_domains"):  # a failure of the whole run (or before any write)
                    raise ReconcileError("%s\n(no xl.cfg file was written: they are written once the live disks "
                                         "are applied)" % exc, **exc.details) from None
                # some guests failed alone (a noisy guest, a backend that did not answer): the others'
                # files are still written, theirs are held until their live disks are applied
                live_error = exc
                live_result = dict(live_result, **{k: v for k, v in exc.details.items() if k in live_result})
        info = None
        if report_drift and guests:
            try:  # before the files are moved into place: a host that cannot be read back gets none
                info = _read_back(params, guests)
            except ReconcileError as exc:
                raise ReconcileError("%s\n(reading the guests back for the drift report; no xl.cfg file was "
                                     "written)" % exc, **dict(exc.details, changed=live_result["changed"],
                                                              disks=live_result["disks"])) from None
        held = live_error.details["failed_domains"] if live_error is not None else []
        file_results, file_diffs = files.commit(with_content=False, hold=held)
    finally:
        files.cleanup()
    not_running = list(live_result["missing_domains"])
    drift = {}
    if info is not None:
        drift, missing = _drift(guests, info, file_results)
        not_running += [name for name in missing if name not in not_running]
    result = {
        "changed": live_result["changed"] or any(entry["changed"] for entry in file_results),
        "disks": live_result["disks"],
        "images": live_result["images"],
        "stale": live_result["stale"],
        "files": file_results,
        "not_running": not_running,
        "drift": drift,
        "in_sync": all(entry["in_sync"] for entry in drift.values()),
        "warnings": live_result["warnings"],
    }
    if module._diff:
        result["diff"] = live_result.get("diff", []) + file_diffs
    if live_error is not None:
        message = "%s\n(the xl.cfg files of %s were not written: they are written once the live disks are " \
                  "applied; the other guests' files were)" % (live_error, ", ".join(held))
        raise ReconcileError(message, errors=list(live_error.details.get("errors") or [str(live_error)]),
                             failed_domains=held, **result)
    drifting = sorted(name for name, entry in drift.items() if not entry["in_sync"])
    if params["fail_on_drift"] and drifting:
        message = "live disks, libxl's record and xl.cfg files differ: %s" % ", ".join(drifting)
        raise ReconcileError(message, errors=[message], **result)
    return result
