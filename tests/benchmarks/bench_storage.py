# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the storage behind the disks: 200 images declared on one host (real xenstored,
simulated backends, Debian's real qemu-img), half raw and half qcow2.

Prints figures; asserts nothing about speed. It measures, as module time (AnsibleModule main()
in this process, without Python's start-up):
- the first run, which creates every image (qemu-img create) and attaches every disk;
- the no-op run with the storage options (every image inspected, nothing done), next to the same
  no-op without storage options: the difference is the cost of inspection, printed per disk;
- xen_disk_info of the host (image facts per disk: raw from stat, qcow2 from one qemu-img info).
qemu-img runs are counted in-process (the adapter's runner is wrapped): a no-op xen_disk run must
run none (headers are read directly), xen_disk_info at most one per file.

Usage: bench_storage.py [--guests 25] [--disks 8] [--repeat 3] [--keep DIR] [--quick]
(--quick: 2 guests x 4 disks, one no-op run)
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
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible.module_utils.common import warnings  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.xen.disks.plugins.module_utils._io import qemu_img as _qemu_img  # noqa: E402
from ansible_collections.xen.disks.plugins.modules import xen_disk, xen_disk_info  # noqa: E402
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher  # noqa: E402

VDEVS = ["xvd" + c for c in "bcdefghijklmnopq"]
RUNS = {"qemu-img": 0}
_original_run = _qemu_img._run


def _counted_run(args, what):
    RUNS["qemu-img"] += 1
    return _original_run(args, what)


_qemu_img._run = _counted_run


def run_module(main, args):
    warnings._global_warnings.clear()
    RUNS["qemu-img"] = 0
    buf = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(buf):
        start = time.perf_counter()
        try:
            main()
        except SystemExit:
            pass
        elapsed = time.perf_counter() - start
    result = json.loads(buf.getvalue())
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result.get("msg"))
    return result, elapsed, RUNS["qemu-img"]


def declaration(images, guests, disks, storage):
    domains = []
    for g in range(guests):
        items = []
        for d in range(disks):
            fmt = "qcow2" if d % 2 else "raw"
            item = {"vdev": VDEVS[d], "format": fmt, "target": os.path.join(images, "g%d-%d.%s" % (g + 1, d, fmt))}
            if storage:
                item.update(size="64M", mode="0600")
            items.append(item)
        domains.append({"domain": "guest%d" % (g + 1), "disks": items})
    return domains


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--guests", type=int, default=25)
    parser.add_argument("--disks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="run directory to keep (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="2 guests x 4 disks, one no-op run")
    args = parser.parse_args(argv)
    if args.quick:
        args.guests, args.disks, args.repeat = 2, 4, 1
    if shutil.which("qemu-img") is None:
        raise SystemExit("qemu-img (Debian: qemu-utils) is not installed")
    workdir = args.keep or tempfile.mkdtemp(prefix="bench-storage-")
    images = os.path.join(workdir, "images")
    os.makedirs(images, exist_ok=True)
    rundir = os.path.join(workdir, "host")
    total = args.guests * args.disks
    try:
        daemon = launcher.start(rundir, "0", die_with_parent=True)
        for g in range(args.guests):
            launcher.add_guest(rundir, "guest%d" % (g + 1), g + 1, "pv")
        common = {"xenstore_socket": daemon.socket, "hotplug_scripts": "skip", "libxl_dir": launcher.libxl_dir(rundir),
                  "timeout": 120, "_ansible_check_mode": False, "_ansible_diff": False}
        with_storage = dict(common, domains=declaration(images, args.guests, args.disks, True))
        without = dict(common, domains=declaration(images, args.guests, args.disks, False))
        print("host: %d guests x %d disks = %d images (half raw, half qcow2), real xenstored, real qemu-img"
              % (args.guests, args.disks, total))
        with backend_sim.running(daemon.socket, "connect"):
            check, elapsed, runs = run_module(xen_disk.main, dict(with_storage, _ansible_check_mode=True))
            planned = sum(1 for i in check["images"] if i["action"] == "create")
            print("check mode before the first run: %.3f s, %d creations planned, %d qemu-img runs"
                  % (elapsed, planned, runs))
            first, elapsed, runs = run_module(xen_disk.main, with_storage)
            created = sum(1 for i in first["images"] if i["action"] == "create")
            print("first run (create + attach): module time %.3f s = %.2f ms per disk; %d images created, "
                  "%d qemu-img runs" % (elapsed, elapsed * 1000 / total, created, runs))
            noop, noop_plain, noop_runs = [], [], []
            for _repeat in range(args.repeat):
                result, elapsed, runs = run_module(xen_disk.main, with_storage)
                assert result["changed"] is False, result
                noop.append(elapsed)
                noop_runs.append(runs)
                result, elapsed, _runs = run_module(xen_disk.main, without)
                assert result["changed"] is False, result
                noop_plain.append(elapsed)
            print("no-op with storage options: module time median %.3f s (%d runs), qemu-img runs per no-op: %s"
                  % (median(noop), len(noop), ", ".join(str(r) for r in noop_runs)))
            print("no-op without storage options: module time median %.3f s" % median(noop_plain))
            print("inspection cost: %+.3f ms per disk (median difference)"
                  % ((median(noop) - median(noop_plain)) * 1000 / total))
            info, elapsed, runs = run_module(xen_disk_info.main, {
                "xenstore_socket": daemon.socket, "libxl_dir": launcher.libxl_dir(rundir)})
            reported = sum(1 for g in info["guests"] for d in g["disks"] if d.get("image"))
            print("xen_disk_info: %.3f s = %.2f ms per disk, %d images reported, %d qemu-img runs for %d files "
                  "(raw: stat only)" % (elapsed, elapsed * 1000 / total, reported, runs, total))
    finally:
        launcher.stop(rundir)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
