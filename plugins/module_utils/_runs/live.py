# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xen_disk module's run (the live disks of running guests): `run_xen_disk`.

Private to the xen.disks collection: no compatibility promise. Standard library only (no
Ansible imports); Python 3.8+. The run, in order:
1. the module's options checked, the images' storage options checked and the images inspected
   (`images.ImageRun`): nothing is written;
2. one snapshot of the host, the whole declaration validated, a plan per guest
   (`reconciler.Reconciler.plan`); check mode stops after the image plan;
3. the targets to attach locked and the read-write sharing rule checked again under the locks;
4. images created and grown, then per guest the plan's phases (`live_apply`), then the
   backends told of grown images, final states read, image files removed;
5. the result (`live_results`), or a ReconcileError that says what the run was doing.
"""

from __future__ import annotations


from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._io.dom0 import run_hotplug_script, stat_target
from ansible_collections.xen.disks.plugins.module_utils._io.libxl_config import LibxlFileError
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreError
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError, check_params
from ansible_collections.xen.disks.plugins.module_utils._runs.guest_requests import guest_requests
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import open_xenstore
from ansible_collections.xen.disks.plugins.module_utils._runs.images import ImageRun
from ansible_collections.xen.disks.plugins.module_utils._runs.info import run_xen_disk_info
from ansible_collections.xen.disks.plugins.module_utils._runs.live_apply import apply_guest
from ansible_collections.xen.disks.plugins.module_utils._runs.live_results import xen_disk_result
from ansible_collections.xen.disks.plugins.module_utils._runs.reconciler import Reconciler


def run_xen_disk(params, check_mode=False, want_diff=False, *, stat=stat_target, run_script=run_hotplug_script,
                 labels=None):
    """The xen_disk module without Ansible: returns the result dict or raises ReconcileError.

    A lost or silent xenstored (XenstoreError at any step) is reported with what the run was
    doing and what it had already written (`changed`, `disks`). `labels`: how messages name the
    `domains` entries (xen_host_disks says `guests[i].`)."""
    check_params(_argspec.xen_disk_param_errors(params, labels))
    guests = guest_requests(params, labels)
    images = ImageRun(guests, stat)  # storage options checked, images inspected: nothing written
    conn = open_xenstore(params)
    rec = Reconciler(conn, params, check_mode=check_mode, want_diff=want_diff, stat=images.stat,
                     run_script=run_script)
    locks = []  # held from the sharing rule's second check until every guest is applied
    try:
        rec.stage = "reading the host"
        planned, tree = rec.plan(guests)
        images.read_host(tree, rec.domains)
        images.plan(planned)
        locks = [] if check_mode else rec.target_locks(planned)
        if locks:
            rec.stage = "locking the targets to attach"
            try:
                for lock in locks:
                    lock.acquire()
            except LibxlFileError as exc:
                raise ReconcileError("%s (nothing was written)" % exc, errors=[str(exc)]) from None
            rec.stage = "checking again that no other guest attached a target meanwhile"
            rec.recheck_sharing()
        if not check_mode:
            rec.stage = "creating and growing images"
            images.apply(rec.failures)
            planned = [(g, d, apply_guest(rec, g, p) if (p.acts or g.config_steps) and g.domid not in rec.unsettled
                        and g.domid not in images.failed else p)
                       for g, d, p in planned]
            rec.stage = "telling backends of grown images"
            images.notify(conn, rec.timeout, rec.failures, rec)
            for guest, _desired, plan in planned:
                rec.change_results(guest, plan)
            rec.stage = "reading the final states"
            rec.final_states([(g, p) for g, _d, p in planned])
            if images.removals:
                rec.stage = "removing image files"
                images.remove(rec.failures, {g.domid for g, _d, p in planned
                                             if any(r.get("error") for r in rec.change_results(g, p))},
                              conn, sorted(rec.domains))
    except XenstoreError as exc:
        message = "%s (while %s%s)" % (exc, rec.stage, "; changes were already written" if rec.committed else "")
        errors = [message] + rec.failures  # what failed before, too (a wait that timed out, ...)
        raise ReconcileError("\n".join(errors), errors=errors, changed=rec.committed, warnings=rec.warnings,
                             disks=list(rec.results.values())) from None
    finally:
        for lock in locks:
            lock.release()
        conn.close()
    result = xen_disk_result(rec, planned, want_diff)
    result["xenstore_requests"] = conn.requests
    result["images"] = images.results()
    result["warnings"] = result["warnings"] + images.warnings
    result["changed"] = result["changed"] or images.changed
    if want_diff:
        result["diff"] = images.diff() + result["diff"]
    if params.get("read_back"):
        # the disks as they are now, exactly as xen_disk_info reports them (its own snapshot)
        result["guests"] = [] if not planned else run_xen_disk_info({
            "domains": [str(g.domid) for g, _d, _p in planned], "xenstore_socket": params.get("xenstore_socket"),
            "script_dir": rec.script_dir, "libxl_dir": rec.libxl_dir})["guests"]
    if rec.failures:
        # failed_domains: the guests the failures stopped (None: a failure of the whole run)
        raise ReconcileError("\n".join(rec.failures), errors=list(rec.failures),
                             failed_domains=rec.failures.failed_domains(),
                             **{k: v for k, v in result.items() if k != "errors"})
    return result
