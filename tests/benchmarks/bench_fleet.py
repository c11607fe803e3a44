# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: wall time of playbooks/provision.yml over a fleet of simulated dom0 hosts.

For 1, 5 and 20 forks, a fresh fleet (one real xenstored per host, a PV and an HVM guest each,
4 disks per host; the fleet of tests/integration/test_fleet.py) is provisioned, then provisioned
again (a no-op run). Prints figures only; asserts nothing about speed.
Run: python tests/benchmarks/bench_fleet.py [--apply-only] [hosts] [forks ...]   (defaults: 20 hosts; 1 5 20)
     python tests/benchmarks/bench_fleet.py --quick   (2 hosts, 2 forks: proves it runs)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_here))
# tests/conftest.py puts the folder above ansible_collections on sys.path
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.xen.disks.tests.integration import test_fleet as fleet  # noqa: E402
from ansible_collections.xen.disks.tests.xenstored import launcher  # noqa: E402


class _Host:
    """A started daemon with the add_guest the fleet helpers call."""

    def __init__(self, daemon):
        self.rundir = daemon.rundir
        self.socket = daemon.socket

    @property
    def libxl_dir(self):
        return launcher.libxl_dir(self.rundir)

    def add_guest(self, name, domid, guest_type):
        launcher.add_guest(self.rundir, name, domid, guest_type)


def measure(hosts_count, forks, noop=True):
    """(apply seconds, no-op seconds or None) of the provisioning playbook on a fresh fleet."""
    with tempfile.TemporaryDirectory(prefix="xdf-") as base:
        daemons = launcher.start_many(os.path.join(base, "fleet"), hosts_count, die_with_parent=True)
        try:
            inventory = fleet.prepare_fleet([_Host(d) for d in daemons])
            apply_s = _timed_run(inventory, forks, "apply")
            noop_s = _timed_run(inventory, forks, "no-op") if noop else None
            return apply_s, noop_s
        finally:
            launcher.stop_many(os.path.join(base, "fleet"))


def _timed_run(inventory, forks, run):
    """Seconds one provisioning run took; exits when it fails or a no-op run changes something."""
    start = time.perf_counter()
    code, output = fleet.run_provision(inventory, forks)
    seconds = time.perf_counter() - start
    changed = sum(r[1] for r in fleet.recap(output).values())
    if code != 0:
        sys.stdout.write(output[-3000:])
        raise SystemExit("provision.yml failed (%s run, %d forks)" % (run, forks))
    if run == "no-op" and changed:
        raise SystemExit("the second run changed %d things" % changed)
    return seconds


def main(argv):
    args = [a for a in argv[1:] if a not in ("--apply-only", "--quick")]
    if "--quick" in argv:
        args = ["2", "2"]
    noop = "--apply-only" not in argv
    hosts_count = int(args[0]) if args else fleet.HOSTS
    forks_list = [int(a) for a in args[1:]] or [1, 5, 20]
    print("provision.yml over %d simulated dom0 hosts (real xenstored each), %d guests and %d disks per host, "
          "%d CPU(s)" % (hosts_count, len(fleet.GUESTS), 4, os.cpu_count() or 1))
    print("%6s  %12s  %12s  %16s" % ("forks", "apply (s)", "no-op (s)", "apply per host"))
    for forks in forks_list:
        apply_s, noop_s = measure(hosts_count, forks, noop)
        noop_text = "-" if noop_s is None else format(noop_s, ".1f")
        print("%6d  %12.1f  %12s  %15.2fs" % (forks, apply_s, noop_text, apply_s / hosts_count))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv)
