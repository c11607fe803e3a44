# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of xen.disks.xen_disk on a real xenstored: a host with 100 guests x 8 disks.

Prints figures; asserts nothing about speed. For a full apply (every disk attached, waiting for
the simulated backends' handshake) and for a no-op run (everything already there), it prints:
- module time: AnsibleModule main() in this process (argument checking, the snapshot read,
  validation, planning, applying, the result), without Python's start-up;
- xenstore requests sent, per disk, next to the budget "owned nodes per disk + 2", where owned
  nodes per disk is `_plan.owned_node_count` (the three directories libxl writes for a disk and
  every node in them) for the disks of this benchmark.

Usage: bench_reconcile.py [--guests 100] [--disks 8] [--repeat 3] [--keep DIR] [--quick]
(--quick: 10 guests x 2 disks, one no-op run)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/ for conftest's collection path
# conftest puts the folder holding ansible_collections on sys.path
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible.module_utils.common import warnings  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.xen.disks.plugins.module_utils import _declaration, _plan, _xenstore  # noqa: E402
from ansible_collections.xen.disks.plugins.modules import xen_disk  # noqa: E402
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher  # noqa: E402

VDEVS = ["xvd" + c for c in "abcdefghijklmnop"]
WAITED = [0.0]


def _timed_wait_for(original):
    """Instrumentation of this benchmark only: time spent waiting for the simulated backends."""
    def wait_for(self, path, values, timeout):
        start = time.perf_counter()
        try:
            return original(self, path, values, timeout)
        finally:
            WAITED[0] += time.perf_counter() - start
    return wait_for


_xenstore.XenstoreConnection.wait_for = _timed_wait_for(_xenstore.XenstoreConnection.wait_for)


def run_module(args):
    warnings._global_warnings.clear()
    WAITED[0] = 0.0
    buf = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(buf):
        start = time.perf_counter()
        try:
            xen_disk.main()
        except SystemExit:
            pass
        elapsed = time.perf_counter() - start
    result = json.loads(buf.getvalue())
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result.get("msg"))
    return result, elapsed


def settle(socket_path, domains, disks):
    """Wait until every simulated backend is Connected, so the no-op run measures a quiet host."""
    paths = ["/local/domain/0/backend/vbd/%d/%d" % (g + 1, 51712 + 16 * d)
             for g in range(len(domains)) for d in range(disks)]
    deadline = time.monotonic() + 300
    with launcher.WireClient(socket_path) as client:
        while paths and time.monotonic() < deadline:
            paths = [p for p in paths if client.read(p + "/state") != "4"]
            if paths:
                time.sleep(0.1)
    if paths:
        raise SystemExit("%d backends did not connect" % len(paths))


def owned_nodes_per_disk(domains, images):
    """`_plan.owned_node_count` of one declared disk of this benchmark (all disks are alike)."""
    declaration = _declaration.GuestDeclaration(1, (domains[0]["disks"][0],), "pv", 64)
    (desired,) = _declaration.validate_declaration([declaration], stat_target=lambda p: "file")
    return _plan.owned_node_count(desired[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--guests", type=int, default=100)
    parser.add_argument("--disks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs (min and median are printed)")
    parser.add_argument("--keep", help="run directory to keep (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="10 guests x 2 disks, one no-op run")
    args = parser.parse_args(argv)
    if args.quick:
        args.guests, args.disks, args.repeat = 10, 2, 1
    if args.disks > len(VDEVS):
        parser.error("at most %d disks per guest" % len(VDEVS))
    workdir = args.keep or tempfile.mkdtemp(prefix="bench-reconcile-")
    rundir = os.path.join(workdir, "xenstored")
    images = os.path.join(workdir, "images")
    os.makedirs(images, exist_ok=True)
    daemon = launcher.start(rundir, "0", die_with_parent=True)
    try:
        domains = []
        for g in range(args.guests):
            domid = g + 1
            launcher.add_guest(rundir, "guest%d" % domid, domid, "pv")
            disks = []
            for d in range(args.disks):
                path = os.path.join(images, "g%d-%d.img" % (domid, d))
                with open(path, "wb") as handle:
                    handle.truncate(1 << 20)
                disks.append("%s,raw,%s,rw" % (path, VDEVS[d]))
            domains.append({"domain": "guest%d" % domid, "disks": disks})
        total = args.guests * args.disks
        owned = owned_nodes_per_disk(domains, images)
        module_args = {"domains": domains, "xenstore_socket": daemon.socket, "hotplug_scripts": "skip",
                       "_ansible_check_mode": False, "_ansible_diff": False}
        print("host: %d guests x %d disks = %d disks, real xenstored (%s)" % (
            args.guests, args.disks, total, daemon.socket))
        print("owned nodes per disk (_plan.owned_node_count): %d; request budget per disk: %d"
              % (owned, owned + 2))
        with backend_sim.running(daemon.socket, "connect"):
            full, full_time = run_module(module_args)
            assert full["changed"] is True and len(full["disks"]) == total
            print("full apply : module time %.3f s (of which %.3f s waiting for %d simulated backends), "
                  "%d xenstore requests = %.1f per disk, %d retries"
                  % (full_time, WAITED[0], total, full["xenstore_requests"], full["xenstore_requests"] / total,
                     full["xenstore_retries"]))
            settle(daemon.socket, domains, args.disks)
            noops = [run_module(module_args) for _run in range(args.repeat)]
        for result, _elapsed in noops:
            assert result["changed"] is False
        times = sorted(elapsed for _result, elapsed in noops)
        requests = noops[0][0]["xenstore_requests"]
        print("no-op      : module time min %.3f s, median %.3f s (%d runs), %d xenstore requests = %.2f per disk "
              "(budget %d per disk)" % (times[0], times[len(times) // 2], len(times), requests, requests / total,
                                        owned + 2))
        check, check_time = run_module(dict(module_args, _ansible_check_mode=True))
        assert check["changed"] is False
        print("no-op check: module time %.3f s, %d xenstore requests = %.2f per disk"
              % (check_time, check["xenstore_requests"], check["xenstore_requests"] / total))
        print("load average during the run: %.2f (2 cores shared with other work: times vary with it)"
              % os.getloadavg()[0])
    finally:
        launcher.stop(rundir)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
