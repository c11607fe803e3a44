# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: CPU time of the parsers on hostile inputs of growing size (prints figures only).

For each input family the size doubles; the printed ratio is time(2n) / time(n): about 2 means
linear, about 4 quadratic. Families: repeated legacy prefixes (`phy:phy:...`, `tap:aio:...`),
long targets and runs, many blanks, huge numbers (vdev, `d<N>p0`, colo-port), many `disk +=`
statements, long xl.cfg lists.
Run: python tests/benchmarks/bench_hostile_input.py [--quick | max_chars] (--quick: up to 40,000)
"""

from __future__ import annotations

import math
import os
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_here))
# tests/conftest.py puts the folder above ansible_collections on sys.path
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg as _xl_cfg  # noqa: E402
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import DiskSpecError, parse_disk_spec  # noqa: E402
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid  # noqa: E402


def _spec(text):
    try:
        parse_disk_spec(text)
    except DiskSpecError:
        pass


def _vdev(text):
    try:
        vdev_to_devid(text)
    except VdevError:
        pass


def _cfg(text):
    try:
        _xl_cfg.get_list_setting(text, "disk")
    except _xl_cfg.XlCfgError:
        pass


def _set_disks(text):
    _xl_cfg.set_list_setting(text, "disk", ["/x,raw,xvda,rw"])


FAMILIES = [
    ("phy: prefixes", _spec, lambda n: "phy:" * (n // 4) + "/x,xvda,w"),
    ("tap:aio: prefixes", _spec, lambda n: "tap:aio:" * (n // 8) + "/x,xvda,w"),
    ("prefixes, newline", _spec, lambda n: "phy:" * (n // 4) + "\n/x,xvda,w"),
    ("long target", _spec, lambda n: "vdev=xvda,target=/" + "a" * n),
    ("blanks", _spec, lambda n: " " * n + "/x,xvda,w"),
    ("blank-word runs", _spec, lambda n: " a" * (n // 2) + ",xvda,w"),
    ("commas", _spec, lambda n: "/x,xvda,w" + "," * n),
    ("huge colo-port", _spec, lambda n: "/x,xvda,w,colo-port=" + "9" * n),
    ("huge vdev number", _vdev, lambda n: "1" * n),
    ("huge d<N>p0", _vdev, lambda n: "d" + "1" * n + "p0"),
    ("xl.cfg disk +=", _cfg, lambda n: "disk = []\n" + "disk += ['/x,xvda,w']\n" * (n // 22)),
    ("xl.cfg set disk +=", _set_disks, lambda n: "disk = []\n" + "disk += ['/x,xvda,w']\n" * (n // 22)),
    ("xl.cfg long list", _cfg, lambda n: "disk = [" + "'/x,xvda,w'," * (n // 12) + "]\n"),
    ("xl.cfg lists 60 deep", _cfg, lambda n: "a = " + "[" * 60 + "]" * 60 + "\n"
     + "b = 1\n" * (n // 6)),
]


def cpu_time(function, text, rounds):
    best = None
    for _round in range(rounds):
        start = time.process_time()
        function(text)
        elapsed = time.process_time() - start
        best = elapsed if best is None else min(best, elapsed)
    return best


def main():
    argument = sys.argv[1] if len(sys.argv) > 1 else ""
    largest = 40000 if argument == "--quick" else int(argument) if argument else 160000
    sizes = []
    size = 10000
    while size <= largest:
        sizes.append(size)
        size *= 2
    print("CPU time (ms, best of 3) per input size (characters); ratio = time(2n)/time(n), ~2 = linear")
    print("%-26s" % "family" + "".join("%10d" % s for s in sizes) + "   ratios")
    worst = 0.0
    for name, function, build in FAMILIES:
        times = [cpu_time(function, build(s), 3) for s in sizes]
        ratios = [later / earlier if earlier > 1e-4 else float("nan") for earlier, later in zip(times, times[1:])]
        worst = max([worst] + [r for r in ratios if not math.isnan(r)])
        print("%-26s" % name + "".join("%10.2f" % (t * 1000) for t in times) + "   "
              + " ".join("%.1f" % r for r in ratios))
    print("largest ratio: %.1f (a quadratic family would show about 4)" % worst)


if __name__ == "__main__":
    main()
