# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xen_disk_info module's run: `run_xen_disk_info` reads the host once and reports each
recorded disk (spec, states, what the backend published, libxl's domain configuration entry,
the image behind a dom0 target).

Private to the xen.disks collection: no compatibility promise. Standard library only.
Section numbers (§3.5...) are those of docs/XENSTORE-LAYOUT.md.
"""

from __future__ import annotations

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._core import declaration as _declaration
from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan
from ansible_collections.xen.disks.plugins.module_utils._core import storage as _storage
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import disk_to_dict, render_disk_spec
from ansible_collections.xen.disks.plugins.module_utils._core.layout import DEFAULT_SCRIPT_DIR
from ansible_collections.xen.disks.plugins.module_utils._io import qemu_img as _qemu_img
from ansible_collections.xen.disks.plugins.module_utils._io.libxl_config import (
    DEFAULT_LIBXL_DIR,
    DomainFiles,
    LibxlFileError,
    uuid_of_vm_path,
)
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreError
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError, check_params
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import (
    disk_of_record,
    frontend_node,
    guest_of,
    int_or_none,
    merge,
    open_xenstore,
    read_libxl_records,
    vm_path_node,
)


INFO_FLAGS = (("cdrom", 1), ("removable", 2), ("readonly", 4))  # blkif.h VDISK_*


_PUBLISHED_NUMBERS = (("sectors", "sectors"), ("sector-size", "sector_size"),
                      ("physical-sector-size", "physical_sector_size"))


def _state(value):
    number = int_or_none(value) or 0
    return {"number": number, "name": _plan.state_name(number if value is not None else None)}


def published_of(tree, backend_path):
    """What the backend driver published (§3.5): size, sector sizes, info flags, feature-*."""
    out = {}
    for node, key in _PUBLISHED_NUMBERS:
        number = int_or_none(tree.get(backend_path + "/" + node))
        if number is not None:
            out[key] = number
    if "sectors" in out:
        out["size_bytes"] = out["sectors"] * 512
    info = int_or_none(tree.get(backend_path + "/info"))
    if info is not None:
        out["info"] = {name: bool(info & bit) for name, bit in INFO_FLAGS}
    features = {}
    prefix = backend_path + "/feature-"
    for path in tree.children(backend_path):
        full = backend_path + "/" + path
        if full.startswith(prefix):
            value = tree.get(full)
            features[path[len("feature-"):]] = int_or_none(value) if int_or_none(value) is not None else value
    if features:
        out["features"] = features
    return out


def disk_info(tree, current, names, script_dir=DEFAULT_SCRIPT_DIR):
    """The xen_disk_info entry of one recorded disk."""
    p = current.placement
    disk = disk_of_record(current, script_dir, names, tree)
    warnings = ["stale: %s" % reason for reason in current.stale] + list(current.warnings)
    if current.attach_unfinished:
        warnings.append("the attach did not finish: %s; the next xen_disk run declaring it resumes it"
                        % current.unfinished_reason)
    if current.detaching:
        warnings.append("a detach is in progress: the backend is Closing")
    warnings += ["guest's frontend: %s" % text for text in current.observed]
    settings = None
    spec = None
    if disk is not None:
        settings = disk_to_dict(disk)
        spec = render_disk_spec(disk)
    return {
        "vdev": current.vdev,
        "devid": current.devid,
        "kind": current.kind,
        "spec": spec,
        "settings": settings,
        "backend_domid": p.backend_domid,
        "backend_kind": p.backend_kind,
        "frontend_path": p.frontend_path,
        "backend_path": p.backend_path,
        "frontend_state": _state(tree.get(p.frontend_path + "/state")),
        "backend_state": _state(tree.get(p.backend_path + "/state")),
        "published": published_of(tree, p.backend_path),
        "hotplug_status": tree.get(p.backend_path + "/hotplug-status"),
        "hotplug_error": tree.get(p.backend_path + "/hotplug-error"),
        "attach_unfinished": current.attach_unfinished,
        "frontend_observed": list(current.observed),
        "warnings": warnings,
    }


def read_guest_config(libxl_dir, domid, vm_path):
    """(path, document or None, problem or None): libxl's domain configuration of a guest, read
    without a lock (libxl replaces it by a rename, so a read sees one whole version)."""
    uuid = uuid_of_vm_path(vm_path)
    if uuid is None:
        return None, None, "no uuid (/local/domain/%d/vm is %r): libxl's domain configuration cannot be named" \
            % (domid, vm_path)
    files = DomainFiles(libxl_dir, domid, uuid)
    try:
        data = files.read()
        if data is None:
            return files.path, None, (
                "libxl's domain configuration %s does not exist (not created by xl/libxl?): xl drops "
                "every disk of this guest at its next xl reboot, save or migration" % files.path)
        return files.path, _libxl_json.parse_config(data), None
    except (LibxlFileError, _libxl_json.LibxlConfigError) as exc:
        return files.path, None, "libxl's domain configuration %s: %s" % (files.path, exc)


def run_xen_disk_info(params, *, inspect_images=True, skip_missing=False):
    """The xen_disk_info module without Ansible: {"guests": [...]} or raises ReconcileError.

    `inspect_images=False` leaves out each disk's `image` (no stat, no qemu-img: a drift report
    needs only the specs); `skip_missing` leaves out the named domains that do not exist and lists
    them in `missing_domains` instead of failing."""
    check_params(_argspec.xen_disk_info_param_errors(params))
    conn = open_xenstore(params)
    try:
        try:
            snap = conn.snapshot_by_owner(lambda reader: _read_host(reader, params, skip_missing), guest_of,
                                          observed=frontend_node)
        except XenstoreError as exc:
            message = "%s (while reading the host)" % exc
            raise ReconcileError(message, errors=[message]) from None
        domains, domids, tree, missing = snap.value
        script_dir = params.get("script_dir") or DEFAULT_SCRIPT_DIR
        libxl_dir = params.get("libxl_dir") or DEFAULT_LIBXL_DIR
        guests = [_guest_info(tree, domains, domid, script_dir, libxl_dir, inspect_images) for domid in domids]
        result = {"guests": guests}
        if skip_missing:
            result["missing_domains"] = missing
        return result
    finally:
        conn.close()


def _resolve(params, domains, skip_missing):
    """(domids, missing refs) of the domains the parameters name (all of the host's by default);
    raises ReconcileError for a name several domains share, or one not found (unless skipped)."""
    names = {}
    for domid, name in domains.items():
        if name is not None:
            names.setdefault(name, []).append(domid)
    if params.get("domain") is not None:
        refs = [("domain", str(params["domain"]))]
    elif params.get("domains"):
        refs = [("domains[%d]" % i, str(d)) for i, d in enumerate(params["domains"])]
    else:
        refs = [(None, str(d)) for d in sorted(domains)]
    domids, errors, missing = [], [], []
    for where, ref in refs:
        number = _declaration.domid_text(ref)
        if number is not None and number in domains:
            domid = number
        elif len(names.get(ref, [])) == 1:
            domid = names[ref][0]
        elif names.get(ref):
            errors.append("%s: several domains are named %r (ids %s): give the domain id"
                          % (where, ref, ", ".join(str(d) for d in names[ref])))
            continue
        elif skip_missing:
            missing.append(ref)
            continue
        else:
            errors.append("%s: %s" % (where, _declaration.no_domain_with_id(ref) if number is not None
                                      else "no domain named %r on this host" % ref))
            continue
        if domid not in domids:
            domids.append(domid)
    if errors:
        raise ReconcileError("\n".join(errors), errors=errors)
    return domids, missing


def _read_host(reader, params, skip_missing):
    """The body of the snapshot: the named domains' records, `vm` nodes and disk directories."""
    domains = reader.domains()
    domids, missing = _resolve(params, domains, skip_missing)
    tree = read_libxl_records(reader, domids)
    tree.values.update({p: v for p, v in reader.read_values([vm_path_node(d) for d in domids]).items()
                        if v is not None})
    dirs = []
    for domid in domids:
        for current in _plan.read_disks(tree, domid):
            dirs += [current.placement.frontend_path, current.placement.backend_path]
    merge(tree, reader.read_tree(sorted(set(dirs)), with_perms=False))
    fronts = [p for p in dirs if frontend_node(p)]
    tree.perms.update({p: v for p, v in reader.read_perms(fronts).items() if v is not None})
    return domains, domids, tree, missing


def _guest_info(tree, domains, domid, script_dir, libxl_dir, inspect_images):
    """The xen_disk_info entry of one guest: its disks, and libxl's domain configuration beside them."""
    currents = sorted(_plan.read_disks(tree, domid), key=lambda c: (c.devid, c.kind))
    disks = [disk_info(tree, c, domains, script_dir) for c in currents]
    warnings = _plan.guest_warnings(tree, domid)
    path, config, problem = read_guest_config(libxl_dir, domid, tree.get(vm_path_node(domid)))
    if problem and (currents or config is None and path is None):
        warnings.append(problem)
    recorded = set()
    for current, disk in zip(currents, disks):
        vdev = current.libxl.get("dev") or current.vdev
        entry = _libxl_json.entry_for(config, vdev) if config is not None else None
        if entry is not None:
            recorded.add(vdev)
        disk["libxl_config"] = entry
        image = target_image(disk) if inspect_images else None
        if image is not None:
            disk["image"] = image
            if image.get("format_mismatch"):
                disk["warnings"].append("%s: %s" % (image["path"], image["format_mismatch"]))
        # no file (a guest xl did not create): nothing to survive, not a disk libxl lost
        disk["survives_xl_reboot"] = entry is not None if config is not None else None
        if config is not None and entry is None:
            disk["warnings"].append(
                "not in libxl's domain configuration: xl drops it at the guest's next xl reboot, "
                "save or migration")
    return {
        "domain": domains.get(domid) or "",
        "domid": domid,
        "type": tree.get("/libxl/%d/type" % domid),
        "specs": [d["spec"] for d in disks if d["spec"] is not None],
        "warnings": warnings,
        "disks": disks,
        "libxl_config_path": path if config is not None else None,
        "libxl_only": [{"vdev": e.get("vdev"), "entry": e}
                       for e in _libxl_json.disk_entries(config) if e.get("vdev") not in recorded],
    }


def target_image(disk):
    """xen_disk_info's `image` of a dom0 disk's target: a file's format, sizes, backing chain and
    flags (raw: from stat alone; other formats: one `qemu-img info` with the header's format, not
    run when the header contradicts the declared format, so a guest-written header never makes dom0
    open a file of its choosing), a block device's size. None for other disks."""
    settings = disk.get("settings") or {}
    path = settings.get("target")
    declared = settings.get("format") or "raw"
    if disk.get("backend_domid") != 0 or not path or not path.startswith("/") or declared == "empty":
        return None
    try:
        facts = _qemu_img.inspect(path)
    except _qemu_img.ImageError as exc:
        return {"path": path, "kind": "unknown", "error": str(exc)}
    out = {"path": path, "kind": facts.kind}
    if facts.kind == "block":
        out["size"] = facts.virtual_size
        return out
    if facts.kind != "file":
        return out
    mismatch = _storage.format_mismatch(declared, facts.format)
    out.update(format=facts.format, declared_format=declared, virtual_size=facts.virtual_size,
               actual_size=facts.actual_size, backing_chain=[], dirty=None, corrupt=None, format_mismatch=mismatch)
    if facts.format == "raw" or mismatch:
        out["dirty"], out["corrupt"] = (False, False) if facts.format == "raw" else (None, None)
        if mismatch and facts.backing_file:
            out["backing_file_in_header"] = facts.backing_file
        return out
    try:
        chain = _qemu_img.info(path, facts.format)
    except _qemu_img.ImageError as exc:
        out["error"] = str(exc)
        return out
    top = chain[0] if chain else {}
    out["virtual_size"] = top.get("virtual-size", facts.virtual_size)
    out["actual_size"] = top.get("actual-size", facts.actual_size)
    out["dirty"] = bool(top.get("dirty-flag", False))
    out["corrupt"] = bool(((top.get("format-specific") or {}).get("data") or {}).get("corrupt", False))
    out["backing_chain"] = [{"filename": e.get("filename"), "format": e.get("format"),
                             "virtual_size": e.get("virtual-size"), "actual_size": e.get("actual-size")}
                            for e in chain[1:]]
    return out
