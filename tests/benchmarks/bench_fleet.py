# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: playbooks/provision.yml over a fleet of simulated dom0 hosts, beside its floor.

One run regenerates issue 12's table side by side: for forks 5 and 20, a fresh fleet of 20 hosts
(one real xenstored each, libxl-shaped guests with libxl's domain configuration file, 2 disks per
guest, 2 guests per host: the fleet of tests/integration/test_fleet.py), on which run in turn
`ansible.builtin.ping` per host (the floor: one module run per host), `xen.disks.xen_disk_info`
per host, provision.yml on the new fleet (apply) and provision.yml again (no-op: it must change
nothing). Then fresh fleets of 10 and 40 guests per host at the largest forks, and the marginal
cost of one more guest per host (the slope between the fewest and the most guests), as a share of
the floor. Module runs per host are counted by a callback (callback_plugins/module_runs.py).
Prints figures only; asserts nothing about speed (a failed run or a no-op that changes something
stops it).

Run:  python tests/benchmarks/bench_fleet.py           (full: 20 hosts; forks 5, 20; 2, 10, 40 guests)
      python tests/benchmarks/bench_fleet.py --quick   (2 hosts; forks 2; 2 and 3 guests: proves it runs)
      options: --hosts N  --forks 5,20  --guests 2,10,40
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import tempfile
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_here))
# tests/conftest.py puts the folder above ansible_collections on sys.path
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.xen.disks.tests.integration import test_fleet as fleet  # noqa: E402
from ansible_collections.xen.disks.tests.xenstored import launcher  # noqa: E402

PING = """---
- name: The floor, one module run per host
  hosts: xen_hosts
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""
INFO = """---
- name: Every guest's disks, one module run per host
  hosts: xen_hosts
  gather_facts: false
  tasks:
    - name: Read the host
      xen.disks.xen_disk_info:
        xenstore_socket: "{{ guest_disks_xenstore_socket }}"
        libxl_dir: "{{ guest_disks_libxl_dir }}"
"""


class _Host:
    """A started daemon with what the fleet helpers use."""

    def __init__(self, daemon):
        self.rundir = daemon.rundir
        self.socket = daemon.socket

    @property
    def libxl_dir(self):
        return launcher.libxl_dir(self.rundir)

    def add_guest(self, name, domid, guest_type):
        launcher.add_guest(self.rundir, name, domid, guest_type)


def guests_of(count):
    """`count` guests per host, PV and HVM in turn (2 disks each, as in the fleet test)."""
    return [("g%02d" % i, i, "pv" if i % 2 else "hvm") for i in range(1, count + 1)]


Figures = collections.namedtuple("Figures", "wall cpu runs")


def _children_cpu():
    """CPU seconds of the finished child processes (ansible-playbook, its workers and the module
    runs they waited for; not the xenstored daemons): a loaded machine stretches wall time, not this."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Fleet:
    """A fresh fleet: `hosts` daemons, `guests` guests each; plays timed on it."""

    def __init__(self, base, hosts, guests):
        self.base = base
        self.daemons = launcher.start_many(os.path.join(base, "fleet"), hosts, die_with_parent=True)
        self.inventory = fleet.prepare_fleet([_Host(d) for d in self.daemons], guests_of(guests))
        self.playbooks = {}
        for name, text in (("ping", PING), ("info", INFO)):
            path = os.path.join(base, name + ".yml")
            with open(path, "w") as handle:
                handle.write(text)
            self.playbooks[name] = path
        self.playbooks["apply"] = self.playbooks["no-op"] = fleet.PROVISION

    def run(self, play, forks):
        """Figures of one play (wall and CPU seconds, module runs per host); exits when it fails or
        a no-op changes something."""
        counts = os.path.join(self.base, "module_runs.json")
        env = {"ANSIBLE_CALLBACK_PLUGINS": os.path.join(_here, "callback_plugins"),
               "ANSIBLE_CALLBACKS_ENABLED": "module_runs", "XEN_DISKS_MODULE_RUNS": counts}
        start, cpu_start = time.perf_counter(), _children_cpu()
        code, output = fleet.run_provision(self.inventory, forks, self.playbooks[play], env)
        seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
        if code != 0:
            lines = output.splitlines()
            shown = [i for i, line in enumerate(lines) if line.startswith(("fatal:", "failed:", "ERROR"))
                     or "UNREACHABLE" in line or "[ERROR]" in line]
            for index in shown[:5]:
                sys.stdout.write("\n".join(lines[index:index + 15]) + "\n")
            sys.stdout.write(output[-1500:])
            raise SystemExit("%s failed (rc %d, %d forks)" % (play, code, forks))
        changed = sum(r[1] for r in fleet.recap(output).values())
        if play == "no-op" and changed:
            raise SystemExit("the no-op run changed %d things" % changed)
        with open(counts) as handle:
            runs = json.load(handle)
        return Figures(seconds, cpu, sorted(set(runs.values())))

    def close(self):
        launcher.stop_many(os.path.join(self.base, "fleet"))


def measure(hosts, forks, guests, plays=("ping", "info", "apply", "no-op")):
    """{play: (seconds, module runs per host)} of each play, in order, on a fresh fleet."""
    with tempfile.TemporaryDirectory(prefix="xdf-") as base:
        fleet_ = Fleet(base, hosts, guests)
        try:
            return {play: fleet_.run(play, forks) for play in plays}
        finally:
            fleet_.close()


def _runs(values):
    return "/".join(str(v) for v in values)


def _cell(figures, play):
    mine, floor = figures[play], figures["ping"]
    if play == "ping":
        return "%.1f s, CPU %.1f s [%s]" % (mine.wall, mine.cpu, _runs(mine.runs))
    return "%.1f s (%.1fx), CPU %.1f s (%.1fx) [%s]" % (
        mine.wall, mine.wall / floor.wall, mine.cpu, mine.cpu / floor.cpu, _runs(mine.runs))


def _options(argv):
    options = {"hosts": fleet.HOSTS, "forks": [5, 20], "guests": [2, 10, 40]}
    if "--quick" in argv:
        options.update(hosts=2, forks=[2], guests=[2, 3])
    args = [a for a in argv[1:] if a != "--quick"]
    for name, value in zip(args[::2], args[1::2]):
        key = name.lstrip("-")
        if key not in options:
            raise SystemExit("unknown option %s (see the docstring)" % name)
        options[key] = int(value) if key == "hosts" else [int(v) for v in value.split(",")]
    return options


def main(argv):
    options = _options(argv)
    hosts, forks_list, guests_list = options["hosts"], options["forks"], sorted(options["guests"])
    print("provision.yml over %d simulated dom0 hosts (a real xenstored each), 2 disks per guest; %d CPU(s), "
          "load average %.1f" % (hosts, os.cpu_count() or 1, os.getloadavg()[0]))
    print("each cell: wall seconds of the whole play (x the ping floor on the same fleet), CPU seconds of "
          "ansible-playbook and the module runs (x the floor's) [module runs per host]")
    sys.stdout.flush()
    base_guests = guests_list[0]
    table = {forks: measure(hosts, forks, base_guests) for forks in forks_list}
    labels = [("ping", "ansible.builtin.ping per host (the floor)"),
              ("info", "xen.disks.xen_disk_info per host"),
              ("no-op", "provision.yml no-op (%d guests/host)" % base_guests),
              ("apply", "provision.yml apply (%d guests/host)" % base_guests)]
    print("\n| play | " + " | ".join("forks %d" % f for f in forks_list) + " |")
    print("|---|" + "---|" * len(forks_list))
    for play, label in labels:
        print("| %s | %s |" % (label, " | ".join(_cell(table[f], play) for f in forks_list)))
    sys.stdout.flush()

    forks = max(forks_list)
    scaling = {base_guests: table[forks]}
    for guests in guests_list[1:]:
        scaling[guests] = measure(hosts, forks, guests, ("ping", "apply", "no-op"))
    print("\nguests per host, forks %d (fresh fleet each; floor measured on the same fleet)" % forks)
    print("| guests/host | ping (floor) | no-op | apply |")
    print("|---|---|---|---|")
    for guests in guests_list:
        figures = scaling[guests]
        print("| %d | %s | %s | %s |" % (guests, _cell(figures, "ping"), _cell(figures, "no-op"),
                                         _cell(figures, "apply")))
    low, high = guests_list[0], guests_list[-1]
    if high > low:
        for measure_ in ("wall", "cpu"):
            floor = sum(getattr(scaling[g]["ping"], measure_) for g in guests_list) / len(guests_list)
            for play in ("no-op", "apply"):
                slope = (getattr(scaling[high][play], measure_) - getattr(scaling[low][play], measure_)) / (high - low)
                print("marginal cost of one more guest per host, %s, %s: %.3f s for the fleet (%.1f%% of the mean "
                      "floor %.1f s)" % (play, "wall time" if measure_ == "wall" else "CPU time", slope,
                                         100 * slope / floor, floor))


if __name__ == "__main__":
    main(sys.argv)
