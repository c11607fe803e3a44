# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the xen_disk / xen_disk_info integration tests: run the real modules in-process
(AnsibleModule with patched arguments) against a real xenstored, and read trees back with the
launcher's own wire client (never through the collection's adapter)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.common import warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.xen.disks.plugins.modules import xen_disk, xen_disk_info
from ansible_collections.xen.disks.tests.xenstored import launcher


def run_module(main, args, check=False, diff=False):
    """Run a module's main() for real; return its JSON result (failed or not)."""
    # AnsibleModule collects warnings in process-wide lists: start each run empty
    warnings._global_warnings.clear()
    warnings._global_deprecations.clear()
    buf = io.StringIO()
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    # Once any controller code is imported in this process (the filter tests do), module-side
    # warn() goes to the controller's display instead of the result: run as a real target does.
    was_controller = module_utils_internal.is_controller
    module_utils_internal.is_controller = False
    try:
        with patch_module_args(full), contextlib.redirect_stdout(buf):
            with pytest.raises(SystemExit):
                main()
    finally:
        module_utils_internal.is_controller = was_controller
    result = json.loads(buf.getvalue())
    # ansible-core 2.19 reports warnings as structured summaries
    result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
    return result


def xen_disk_run(host, check=False, diff=False, **args):
    args.setdefault("xenstore_socket", host.socket)
    args.setdefault("libxl_dir", host.libxl_dir)
    args.setdefault("hotplug_scripts", "skip")
    args.setdefault("timeout", 5)
    return run_module(xen_disk.main, args, check=check, diff=diff)


def xen_disk_info_run(host, **args):
    args.setdefault("xenstore_socket", host.socket)
    args.setdefault("libxl_dir", host.libxl_dir)
    return run_module(xen_disk_info.main, args)


def value(host, path):
    """The value of `path` on the host's daemon, or None when it does not exist."""
    return launcher.read_node(host.socket, path)


def children(host, path):
    """Child names of `path` in the daemon's order (creation order)."""
    with launcher.WireClient(host.socket) as client:
        return client.list(path)


def subtree(host, root):
    """{path: (value, perms)} at and below root, or {} when root is missing."""
    try:
        return host.dump(root)
    except launcher.WireError:
        return {}


def devices(host, *domids):
    """Everything a disk reconcile may touch for guests `domids`: their device and libxl trees
    and every backend directory of dom0 and the driver domains."""
    out = {}
    for root in ["/local/domain/%d/device" % d for d in domids] + ["/libxl/%d" % d for d in domids] \
            + ["/local/domain/0/backend", "/local/domain/2/backend"]:
        out.update(subtree(host, root))
    return out


def four_steps(host, **args):
    """check -> apply -> check -> apply; asserts changed True, True, False, False and that the
    check wrote nothing. Returns the four results."""
    domids = [5, 7, 3, 9]
    before = devices(host, *domids)
    first = xen_disk_run(host, check=True, **args)
    assert not first.get("failed"), first
    assert first["changed"] is True, first
    assert devices(host, *domids) == before, "check mode wrote to xenstore"
    second = xen_disk_run(host, **args)
    assert not second.get("failed"), second
    assert second["changed"] is True, second
    third = xen_disk_run(host, check=True, **args)
    assert third["changed"] is False, third
    fourth = xen_disk_run(host, **args)
    assert fourth["changed"] is False, fourth
    assert [d["action"] for d in third["disks"]] == ["unchanged"] * len(third["disks"])
    return first, second, third, fourth
