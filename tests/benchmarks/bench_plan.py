# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU time of the pure reconciler core on a host of 100 guests x 8 disks (figures, no assertions).

Prints, for the no-op case (everything already attached) and the full attach: the time to
validate the declaration (parse, backend choice, desired trees), to plan every guest against
one host-wide snapshot, and the reads per disk a no-op check needs (`owned_paths`) next to the
nodes libxl writes per disk.
Run: python tests/benchmarks/bench_plan.py [--quick]   (--quick: 10 guests x 2 disks)
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
__import__("conftest")  # tests/conftest.py makes ansible_collections.xen.disks importable

from ansible_collections.xen.disks.plugins.module_utils._core.declaration import (  # noqa: E402
    GuestDeclaration,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._core.layout import attach_ops  # noqa: E402
from ansible_collections.xen.disks.plugins.module_utils._core.plan import (  # noqa: E402
    owned_node_count,
    owned_paths,
    plan_guest,
)
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsTree  # noqa: E402

GUESTS, DISKS = 100, 8


def host_tree():
    tree = XsTree()
    for path in ("/local", "/local/domain", "/libxl", "/local/domain/0"):
        tree.values[path], tree.perms[path] = "", ("n0",)
    for domid in range(1, GUESTS + 1):
        dom = "/local/domain/%d" % domid
        for path, value, perms in ((dom, "", ("n0", "r%d" % domid)), (dom + "/name", "g%d" % domid, ("n0", "r%d" % domid)),
                                   (dom + "/device", "", ("n0", "r%d" % domid)), ("/libxl/%d" % domid, "", ("n0",)),
                                   ("/libxl/%d/device" % domid, "", ("n0",)), ("/libxl/%d/type" % domid, "pv", ("n0",))):
            tree.values[path], tree.perms[path] = value, perms
    return tree


def declaration():
    def spec(domid, index):
        access = ",ro" if index % 3 == 2 else ""
        return "/dev/vg%d/g%d-%d,,xvd%s%s" % (domid % 4, domid, index, chr(97 + index), access)
    return [GuestDeclaration(domid, tuple(spec(domid, i) for i in range(DISKS)), guest_type="pv",
                             prefix="domains[%d]." % domid)
            for domid in range(1, GUESTS + 1)]


def cpu(fn, repeat=5):
    best = None
    for _round in range(repeat):
        start = time.process_time()
        result = fn()
        spent = time.process_time() - start
        best = spent if best is None or spent < best else best
    return best, result


def main():
    global GUESTS, DISKS  # pylint: disable=global-statement
    if "--quick" in sys.argv[1:]:
        GUESTS, DISKS = 10, 2
    guests = declaration()
    validate_time, desired = cpu(lambda: validate_declaration(guests, stat_target=lambda path: "block"))
    empty = host_tree()
    full = empty.copy()
    for ds in desired:
        for d in ds:
            full.apply_all(attach_ops(d))

    def plan_all(tree):
        return [plan_guest(tree, g.domid, ds) for g, ds in zip(guests, desired)]

    attach_time, plans = cpu(lambda: plan_all(empty))
    noop_time, noop = cpu(lambda: plan_all(full))
    assert all(plans) and not any(noop)  # sanity of the set-up, not a speed check
    reads = owned_paths(desired[0][0])
    # values, directory permissions, and the libxl directory: a listing plus each node
    per_disk_reads = len(reads.values) + len(reads.perms) + len(reads.subtrees) * (1 + len(desired[0][0].libxl))
    print("host: %d guests x %d disks = %d disks, %d nodes when attached" % (GUESTS, DISKS, GUESTS * DISKS,
                                                                             len(full.values)))
    print("validate declaration (parse, backend choice, desired trees): %.3f s CPU" % validate_time)
    print("plan, full attach:  %.3f s CPU (%d ops)" % (attach_time, sum(len(p.ops) for p in plans)))
    print("plan, no-op:        %.3f s CPU" % noop_time)
    print("no-op total (validate + plan): %.3f s CPU" % (validate_time + noop_time))
    print("reads per disk for a no-op check: %d (nodes libxl writes per disk, directories included: %d)"
          % (per_disk_reads, owned_node_count(desired[0][0])))


if __name__ == "__main__":
    main()
