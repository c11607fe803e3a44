# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of xen.disks.xen_disk on a real xenstored: a host with 100 guests x 8 disks.

Two identical hosts (one real xenstored each) are measured side by side: one whose guests have
libxl's domain configuration file (as xl creates guests: xen_disk reads it, and on apply stores
each guest's entries under libxl's userdata lock), one whose guests have none (xenstore only,
the cost without the JSON and the locks). No-op runs alternate between the two hosts so that
both see the same machine load; the JSON files must only be read by a no-op (their inodes and
contents are compared before and after, and the count of files written is printed).

Prints figures; asserts nothing about speed. For a full apply (every disk attached, waiting for
the simulated backends' handshake) and for a no-op run (everything already there), it prints:
- module time: AnsibleModule main() in this process (argument checking, the snapshot read,
  validation, planning, applying, the result), without Python's start-up;
- xenstore requests sent, per disk, next to the budget "owned nodes per disk + 2", where owned
  nodes per disk is `_plan.owned_node_count` (the three directories libxl writes for a disk and
  every node in them) for the disks of this benchmark.

Usage: bench_reconcile.py [--guests 100] [--disks 8] [--repeat 3] [--chunk 10] [--keep DIR] [--quick]
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

from ansible_collections.xen.disks.plugins.module_utils._core import declaration as _declaration  # noqa: E402
from ansible_collections.xen.disks.plugins.module_utils._core import plan as _plan  # noqa: E402
from ansible_collections.xen.disks.plugins.module_utils._io import xenstore as _xenstore  # noqa: E402
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


CPU = [0.0]


def run_module(args):
    warnings._global_warnings.clear()
    WAITED[0] = 0.0
    buf = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(buf):
        start = time.perf_counter()
        cpu = time.process_time()
        try:
            xen_disk.main()
        except SystemExit:
            pass
        elapsed = time.perf_counter() - start
        CPU[0] = time.process_time() - cpu
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


def config_files(rundir):
    """{path: (inode, bytes)} of the host's libxl domain configuration files."""
    directory = launcher.libxl_dir(rundir)
    out = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
        if name.startswith("userdata-d."):
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                out[path] = (os.stat(path).st_ino, handle.read())
    return out


def make_host(rundir, images, guests, disks, libxl_config):
    daemon = launcher.start(rundir, "0", die_with_parent=True)
    domains = []
    for g in range(guests):
        domid = g + 1
        launcher.add_guest(rundir, "guest%d" % domid, domid, "pv", libxl_config=libxl_config)
        specs = []
        for d in range(disks):
            path = os.path.join(images, "g%d-%d.img" % (domid, d))
            if not os.path.exists(path):
                with open(path, "wb") as handle:
                    handle.truncate(1 << 20)
            specs.append("%s,raw,%s,rw" % (path, VDEVS[d]))
        domains.append({"domain": "guest%d" % domid, "disks": specs})
    return daemon, domains


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--guests", type=int, default=100)
    parser.add_argument("--disks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs (min and median are printed)")
    parser.add_argument("--chunk", type=int, default=10, help="guests per apply run (the hosts alternate)")
    parser.add_argument("--keep", help="run directory to keep (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="10 guests x 2 disks, one no-op run")
    args = parser.parse_args(argv)
    if args.quick:
        args.guests, args.disks, args.repeat = 10, 2, 1
    if args.disks > len(VDEVS):
        parser.error("at most %d disks per guest" % len(VDEVS))
    workdir = args.keep or tempfile.mkdtemp(prefix="bench-reconcile-")
    images = os.path.join(workdir, "images")
    os.makedirs(images, exist_ok=True)
    rundirs = {"with": os.path.join(workdir, "with-json"), "without": os.path.join(workdir, "no-json")}
    try:
        hosts = {}
        for label, rundir in rundirs.items():
            daemon, domains = make_host(rundir, images, args.guests, args.disks, libxl_config=label == "with")
            hosts[label] = (daemon, domains, {
                "domains": domains, "xenstore_socket": daemon.socket, "hotplug_scripts": "skip",
                "libxl_dir": launcher.libxl_dir(rundir), "_ansible_check_mode": False, "_ansible_diff": False})
        total = args.guests * args.disks
        owned = owned_nodes_per_disk(hosts["with"][1], images)
        print("hosts: 2 x (%d guests x %d disks = %d disks), real xenstored each; one with libxl's JSON files, "
              "one without" % (args.guests, args.disks, total))
        print("owned nodes per disk (_plan.owned_node_count): %d; request budget per disk: %d"
              % (owned, owned + 2))
        # The apply is measured in chunks of guests, alternating between the two hosts, so that both
        # see the same load; figures are the sums (wall, waits for the backends, this process's CPU).
        full = {label: [0, 0.0, 0.0, 0.0] for label in hosts}   # requests, wall, waited, cpu
        noops = {"with": [], "without": []}
        noop_cpu = {"with": [], "without": []}
        checks = {}
        sims = [backend_sim.running(hosts[label][0].socket, "connect") for label in ("with", "without")]
        with sims[0], sims[1]:
            for first in range(0, args.guests, args.chunk):
                for label in (("without", "with") if first // args.chunk % 2 else ("with", "without")):
                    module_args = dict(hosts[label][2], domains=hosts[label][1][first:first + args.chunk])
                    result, elapsed = run_module(module_args)
                    assert result["changed"] is True
                    totals = full[label]
                    totals[0] += result["xenstore_requests"]
                    totals[1] += elapsed
                    totals[2] += WAITED[0]
                    totals[3] += CPU[0]
            for label in ("with", "without"):
                settle(hosts[label][0].socket, hosts[label][1], args.disks)
            before = config_files(rundirs["with"])
            for _run in range(args.repeat):
                for label in ("with", "without"):
                    result, elapsed = run_module(hosts[label][2])
                    assert result["changed"] is False
                    noops[label].append(elapsed)
                    noop_cpu[label].append(CPU[0])
            after = config_files(rundirs["with"])
            for label in ("with", "without"):
                result, elapsed = run_module(dict(hosts[label][2], _ansible_check_mode=True))
                assert result["changed"] is False
                checks[label] = (result, elapsed)
        written = sum(1 for path in after if before.get(path) != after[path])
        for label in ("without", "with"):
            requests, elapsed, waited, cpu = full[label]
            print("full apply %-7s JSON: module time %.3f s (of which %.3f s waiting for %d simulated backends), "
                  "CPU %.3f s, %d xenstore requests = %.1f per disk (%d runs of %d guests)"
                  % (label, elapsed, waited, total, cpu, requests, requests / total,
                     -(-args.guests // args.chunk), args.chunk))
        work = {label: full[label][1] - full[label][2] for label in full}
        cpu = {label: full[label][3] for label in full}
        print("full apply, JSON and locks: %+.2f ms per guest of module time outside the backend waits "
              "(%+.1f%%: %.3f s without, %.3f s with); %+.2f ms CPU per guest (%+.1f%%)"
              % ((work["with"] - work["without"]) * 1000 / args.guests, 100 * (work["with"] / work["without"] - 1),
                 work["without"], work["with"], (cpu["with"] - cpu["without"]) * 1000 / args.guests,
                 100 * (cpu["with"] / cpu["without"] - 1)))
        medians = {}
        cpu_medians = {label: sorted(noop_cpu[label])[len(noop_cpu[label]) // 2] for label in noop_cpu}
        for label in ("without", "with"):
            times = sorted(noops[label])
            medians[label] = times[len(times) // 2]
            requests = checks[label][0]["xenstore_requests"]
            print("no-op %-7s JSON: module time min %.3f s, median %.3f s (%d runs), %d xenstore requests = %.2f "
                  "per disk (budget %d per disk)" % (label, times[0], medians[label], len(times), requests,
                                                     requests / total, owned + 2))
        print("no-op, JSON read: %+.2f ms per guest (%+.1f%% of the median no-op); CPU median %.3f s without, "
              "%.3f s with (%+.2f ms per guest, %+.1f%%); JSON files written by the %d no-op runs: %d of %d"
              % ((medians["with"] - medians["without"]) * 1000 / args.guests,
                 100 * (medians["with"] / medians["without"] - 1), cpu_medians["without"], cpu_medians["with"],
                 (cpu_medians["with"] - cpu_medians["without"]) * 1000 / args.guests,
                 100 * (cpu_medians["with"] / cpu_medians["without"] - 1), args.repeat, written, len(after)))
        for label in ("without", "with"):
            result, elapsed = checks[label]
            print("no-op check %-7s JSON: module time %.3f s, %d xenstore requests = %.2f per disk"
                  % (label, elapsed, result["xenstore_requests"], result["xenstore_requests"] / total))
        print("load average during the run: %.2f (2 cores shared with other work: times vary with it)"
              % os.getloadavg()[0])
    finally:
        for rundir in rundirs.values():
            launcher.stop(rundir)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
