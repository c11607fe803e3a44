# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark the xenstore adapter against Debian's real xenstored; prints figures, asserts nothing.

Per workload, the adapter (pipelined batches) next to plain pyxs calls (one request, one
answer) in the same run, on the same daemon and the same nodes:
  - subtree reads: nodes per second, requests and round trips per read;
  - exact-node reads (what a no-op reconcile does): nodes per second, plain and as a
    consistent snapshot (validated by a watch, or by a transaction);
  - transactional applies: nodes per second, in one transaction and in one per guest
    (xenstored 4.17's cost per transaction grows with the square of the nodes it touches).
Run: python tests/benchmarks/bench_xenstore.py [--devices 200] [--repeat 3] [--quick]
(--quick: 20 devices, one repeat)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(CHECKOUT, "tests"))
# conftest puts the folder above ansible_collections on sys.path.
import conftest  # noqa: E402,F401  pylint: disable=unused-import

import pyxs  # noqa: E402

from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreConnection  # noqa: E402
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsOp  # noqa: E402
from ansible_collections.xen.disks.tests.xenstored import launcher  # noqa: E402

# One backend directory as libxl writes it for a phy disk (docs/XENSTORE-LAYOUT.md §1.5 A).
BACKEND_NODES = [
    ("frontend", "/local/domain/5/device/vbd/%d"), ("params", "/dev/vg0/guest5"),
    ("script", "/etc/xen/scripts/block"), ("frontend-id", "5"), ("online", "1"), ("removable", "0"),
    ("bootable", "1"), ("state", "1"), ("dev", "xvda"), ("type", "phy"), ("mode", "w"),
    ("device-type", "disk"), ("discard-enable", "1"), ("specification", "xen"),
]
ROOT = "/local/domain/0/backend/vbd/5"
PER_GUEST = 8  # devices per guest transaction
OPS_PER_DEVICE = 2 + len(BACKEND_NODES)


def device_ops(devices, prefix=ROOT):
    ops = []
    for n in range(devices):
        base = "%s/%d" % (prefix, 51712 + n)
        ops.append(XsOp("mkdir", base))
        ops.append(XsOp("set_perms", base, perms=("n0", "r5")))
        ops.extend(XsOp("write", "%s/%s" % (base, k), v % (51712 + n) if "%d" in v else v) for k, v in BACKEND_NODES)
    return ops


def best(fn, repeat):
    """Best wall time of `repeat` runs, and fn's last result."""
    times, result = [], None
    for _run in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def pyxs_walk(client, root, with_perms):
    """The plain-pyxs subtree read: one request at a time."""
    values, perms, stack = {}, {}, [root]
    while stack:
        path = stack.pop()
        key = path.encode()
        values[path] = client.read(key)
        if with_perms:
            perms[path] = client.get_perms(key)
        stack.extend("%s/%s" % (path, c.decode()) for c in client.list(key))
    return values


def pyxs_apply(client, ops):
    """The plain-pyxs transactional apply: one request at a time, retried on conflict."""
    while True:
        client.transaction()
        for op in ops:
            key = op.path.encode()
            if op.action == "write":
                if op.value:
                    client.write(key, op.value.encode())
                else:
                    client.mkdir(key)
            elif op.action == "mkdir":
                client.mkdir(key)
            elif op.action == "set_perms":
                client.set_perms(key, [p.encode() for p in op.perms])
            else:
                client.delete(key)
        if client.commit():
            return


def row(label, nodes, seconds, extra=""):
    print("  %-50s %7.0f nodes/s  %8.2f ms%s" % (label, nodes / seconds, seconds * 1000, extra))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200, help="backend directories (15 nodes each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 devices, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.repeat = 20, 1

    with tempfile.TemporaryDirectory(prefix="bench-xenstore-") as tmp:
        daemon = launcher.start(os.path.join(tmp, "host"), "0-5", die_with_parent=True)
        conn = XenstoreConnection.open(daemon.socket)
        client = pyxs.Client(unix_socket_path=daemon.socket)
        client.connect()
        try:
            ops = device_ops(args.devices)
            nodes = args.devices * (len(BACKEND_NODES) + 1)
            print("xenstored %s, %d devices = %d nodes, best of %d"
                  % (launcher.find_xenstored(), args.devices, nodes, args.repeat))

            groups = [ops[i:i + PER_GUEST * OPS_PER_DEVICE] for i in range(0, len(ops), PER_GUEST * OPS_PER_DEVICE)]
            print("transactional apply (mkdir + set_perms + %d writes per device):" % len(BACKEND_NODES))
            for label, batches in (("one transaction for all", [ops]),
                                   ("one transaction per %d devices (a guest)" % PER_GUEST, groups)):
                t_pyxs = best(lambda: [pyxs_apply(client, b) for b in batches], args.repeat)[0]
                row("pyxs, %s" % label, nodes, t_pyxs)
                before = conn.stats()
                t_ad = best(lambda: [conn.transaction(lambda reader, b=b: b) for b in batches], args.repeat)[0]
                sent = (conn.requests - before["requests"]) / args.repeat
                trips = (conn.round_trips - before["round_trips"]) / args.repeat
                row("adapter, %s" % label, nodes, t_ad,
                    "  %d requests, %d round trips  (x%.1f)" % (sent, trips, t_pyxs / t_ad))

            print("subtree read of %s (values + permissions):" % ROOT)
            t_pyxs, got = best(lambda: pyxs_walk(client, ROOT, True), args.repeat)
            count = len(got)
            row("pyxs walk, one call at a time", count, t_pyxs)
            before = conn.stats()
            t_ad, tree = best(lambda: conn.read_tree([ROOT]), args.repeat)
            sent = (conn.requests - before["requests"]) / args.repeat
            trips = (conn.round_trips - before["round_trips"]) / args.repeat
            row("adapter read_tree, with_perms", len(tree.values), t_ad,
                "  %d requests, %d round trips  (x%.1f)" % (sent, trips, t_pyxs / t_ad))
            t_pyxs, got = best(lambda: pyxs_walk(client, ROOT, False), args.repeat)
            row("pyxs walk, values only", len(got), t_pyxs)
            t_ad, tree = best(lambda: conn.read_tree([ROOT], with_perms=False), args.repeat)
            row("adapter read_tree, values only", len(tree.values), t_ad, "  (x%.1f)" % (t_pyxs / t_ad))

            print("exact-node read (each node named; what a no-op reconcile reads):")
            paths = [op.path for op in ops if op.action == "write"]
            t_pyxs = best(lambda: [client.read(p.encode()) for p in paths], args.repeat)[0]
            row("pyxs read, one call at a time", len(paths), t_pyxs)
            before = conn.stats()
            t_ad = best(lambda: conn.read_values(paths), args.repeat)[0]
            trips = (conn.round_trips - before["round_trips"]) / args.repeat
            row("adapter read_values", len(paths), t_ad, "  %d round trips  (x%.1f)" % (trips, t_pyxs / t_ad))
            for method in ("watch", "transaction"):
                t_ad = best(lambda m=method: conn.snapshot(lambda reader: reader.read_values(paths), method=m),
                            args.repeat)[0]
                row("adapter snapshot (%s), one for all" % method, len(paths), t_ad, "  (x%.1f)" % (t_pyxs / t_ad))
            step = PER_GUEST * len(BACKEND_NODES)
            chunks = [paths[i:i + step] for i in range(0, len(paths), step)]
            t_ad = best(lambda: [conn.snapshot(lambda reader, c=c: reader.read_values(c), method="transaction")
                                 for c in chunks], args.repeat)[0]
            row("adapter snapshot (transaction), one per %d devices" % PER_GUEST, len(paths), t_ad,
                "  (x%.1f)" % (t_pyxs / t_ad))
        finally:
            client.close()
            conn.close()
            launcher.stop(daemon.rundir)


if __name__ == "__main__":
    main()
