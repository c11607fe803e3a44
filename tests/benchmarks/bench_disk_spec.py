# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: xl disk specs parsed and rendered per second on one core (prints figures only).

The specs are the accepted cases of the differential-test corpus (tests/oracle/corpus.py) plus
typical xl.cfg lines. Run: python tests/benchmarks/bench_disk_spec.py [seconds | --quick]
(--quick: 0.2 s per figure, to prove the benchmark runs; the figures are then rough)
"""

from __future__ import annotations

import os
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_here))
# tests/conftest.py puts the folder above ansible_collections on sys.path
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (  # noqa: E402
    DiskSpecError,
    parse_disk_spec,
    render_disk_spec,
)
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid  # noqa: E402
from ansible_collections.xen.disks.tests.oracle import corpus  # noqa: E402

TYPICAL = [
    "phy:/dev/vg0/web1-root,xvda,w",
    "format=raw,vdev=xvdb,access=rw,target=/dev/vg0/web1-data",
    "tap:aio:/srv/xen/web1.img,xvdc,w",
    "file:/srv/iso/debian-12.iso,hdc:cdrom,r",
    ",,hdd:cdrom,r",
    "/srv/xen/web1.qcow2,qcow2,xvde,rw",
    "vdev=xvdf,backendtype=standalone,specification=virtio,target=/dev/vg0/v",
]


def specs():
    accepted = []
    for case in corpus.generate(1000):
        try:
            parse_disk_spec(case.strings)
        except DiskSpecError:
            continue
        accepted.append(case.strings if len(case.strings) > 1 else case.strings[0])
    return accepted + TYPICAL * 20


def measure(function, items, seconds):
    count, start = 0, time.perf_counter()
    while True:
        for item in items:
            function(item)
        count += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def main():
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    arg = sys.argv[1] if len(sys.argv) > 1 else "2.0"
    seconds = 0.2 if arg == "--quick" else float(arg)
    items = specs()
    parse_render = measure(lambda s: render_disk_spec(parse_disk_spec(s)), items, seconds)
    parse_only = measure(parse_disk_spec, items, seconds)
    vdevs = ["xvda", "xvdb1", "xvdaa", "d3p2", "hdc", "sda1", "51712"]
    devids = measure(vdev_to_devid, vdevs, seconds / 2)
    print("disk specs (%d distinct, one core, %.1f s each):" % (len(set(map(str, items))), seconds))
    print("  parse + render: %10.0f specs/s" % parse_render)
    print("  parse only:     %10.0f specs/s" % parse_only)
    print("  vdev_to_devid:  %10.0f vdevs/s" % devids)


if __name__ == "__main__":
    main()
