# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark on the real Xen host (tests/xenvm/: Xen 4.17, a Debian PV dom0 inside QEMU under
TCG, a busybox PV guest): the time from the start of the xen_disk module on dom0 to the guest's
blkfront showing the disk, for 1 disk and for N disks in one run, next to `xl block-attach` of the
same disks one by one, on the same host in the same run. Raw images, kernel blkback, the real
block hotplug script (a loop device each).

Clocks: the module's start is the moment dom0 starts its Python (the inventory's interpreter is
a wrapper that logs `date +%s.%N` on dom0, then execs /usr/bin/python3); `xl block-attach` is
timed from a `date` just before it on dom0; the guest logs when each /sys/block/xvd* appears
(polled every 50 ms) on its own clock (busybox's `date` has whole seconds: the watcher pins
the wall clock to the uptime clock at a second's tick). dom0 and a PV guest read the same clock (Xen's wall
clock); the skew is printed. The controller's own start (ansible-playbook, SSH) is printed
apart, as the whole wall time of each run.

Prints figures; asserts nothing about speed. Absolute times depend on TCG and the machine's load
(an emulated host is 10-100 times slower than hardware); the ratio is the figure to read.

Usage: bench_real_xen.py [--disks 8] [--repeat 1] [--quick]
  --quick: 2 disks in one run beside 2 xl block-attach one by one (what run-all runs)
The host: the one `tests/xenvm/vm.py up --dir $XENVM_DIR` booted, else one booted here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/ for conftest's collection path
import conftest  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.xen.disks.tests.xenvm.ansible_run import Controller  # noqa: E402
from ansible_collections.xen.disks.tests.xenvm.vm import XenHost, XenHostError  # noqa: E402

GUEST = "bench"
IMAGES = "/var/lib/xenvm/bench"
VDEVS = ["xvd" + c for c in "bcdefghijklmnopq"]
MiB = 1024 * 1024
TIMEOUT = 300

# dom0: log the module process's start, then be Python
PYTHON_WRAPPER = "#!/bin/sh\ndate +%s.%N >> /tmp/module-starts\nexec /usr/bin/python3 \"$@\"\n"
# guest: busybox's date has whole seconds only, so the watcher pins the wall clock to the uptime
# clock at a second's tick (/tmp/offset), then logs when each xvd* first appears as uptime +
# offset (and forgets one that is gone)
GUEST_NOW = "awk -v o=$(cat /tmp/offset) '{printf \"%.3f\\n\", $1 + o}' /proc/uptime"
WATCHER = ("mkdir -p /tmp/seen; s0=$(date +%s); while [ $(date +%s) = $s0 ]; do :; done; "
           "awk -v s=$((s0 + 1)) '{printf \"%.3f\", s - $1}' /proc/uptime > /tmp/offset; "
           "while :; do for b in /sys/block/xvd*; do n=${b##*/}; "
           f"[ -e $b ] && [ ! -e /tmp/seen/$n ] && {GUEST_NOW} > /tmp/seen/$n; done; "
           "for s in /tmp/seen/*; do [ -e \"$s\" ] && [ ! -e /sys/block/${s##*/} ] && rm -f \"$s\"; done; "
           "usleep 50000; done")


def image(vdev):
    return f"{IMAGES}/{vdev}.img"


def spec(vdev):
    return f"format=raw,vdev={vdev},access=rw,target={image(vdev)}"


class Bench:
    def __init__(self, host, controller):
        self.host = host
        self.controller = controller
        self.guest = None

    def setup(self, count):
        self.host.put("/root/bench-python", PYTHON_WRAPPER, mode="0755")
        self.host.ssh(f"mkdir -p {IMAGES} && for v in {' '.join(VDEVS[:count])}; do "
                      f"truncate -s {64}M {IMAGES}/$v.img; done")
        if self.host.domid(GUEST) is None:
            self.guest = self.host.create_guest(GUEST)
        else:
            self.guest = self.host.wait_guest(GUEST)
        self.guest.run(f"rm -f /tmp/offset; ( {WATCHER} ) > /dev/null 2>&1 &")
        self.guest.run("until [ -s /tmp/offset ]; do usleep 100000; done", timeout=300)
        skew = [float(self.host.ssh("date +%s.%N").stdout)]
        skew.append(float(self.guest.run(GUEST_NOW)[1]))
        skew.append(float(self.host.ssh("date +%s.%N").stdout))
        print(f"clocks: dom0 {skew[0]:.2f}, guest {skew[1]:.2f}, dom0 {skew[2]:.2f} "
              f"(the guest's reading lies between dom0's: {skew[0] <= skew[1] <= skew[2]})")

    def seen(self, vdevs, timeout=TIMEOUT):
        """Guest clock times at which each vdev appeared (waits for all)."""
        files = " ".join(f"/tmp/seen/{v}" for v in vdevs)
        self.guest.run(f"end=$(($(date +%s) + {timeout})); for f in {files}; do until [ -s $f ]; do "
                       "[ $(date +%s) -ge $end ] && exit 1; usleep 200000; done; done", timeout=timeout + 90)
        out = self.guest.run(f"cat {files}")[1].split()
        return [float(x) for x in out]

    def detach_all(self, vdevs):
        run = self.controller.module("xen.disks.xen_disk", {"domain": GUEST, "disks": list(vdevs),
                                                            "state": "absent", "timeout": TIMEOUT})
        assert run.rc == 0, run
        files = " ".join(f"/sys/block/{v}" for v in vdevs)
        self.guest.run(f"end=$(($(date +%s) + {TIMEOUT})); for f in {files}; do while [ -e $f ]; do "
                       "[ $(date +%s) -ge $end ] && exit 1; usleep 200000; done; done", timeout=TIMEOUT + 90)

    def module_attach(self, vdevs):
        self.host.ssh("rm -f /tmp/module-starts")
        wall = time.monotonic()
        run = self.controller.module("xen.disks.xen_disk", {
            "domain": GUEST, "timeout": TIMEOUT,
            "disks": [{"target": image(v), "format": "raw", "vdev": v, "access": "rw"} for v in vdevs]})
        wall = time.monotonic() - wall
        assert run.rc == 0 and run.status == "changed", run
        start = float(self.host.ssh("head -n 1 /tmp/module-starts").stdout)
        seen = self.seen(vdevs)
        return max(seen) - start, wall

    def xl_attach(self, vdevs):
        wall = time.monotonic()
        out = self.host.ssh("date +%s.%N; " + "; ".join(f"xl block-attach {GUEST} {spec(v)} || exit 1" for v in vdevs),
                            timeout=TIMEOUT * len(vdevs)).stdout
        wall = time.monotonic() - wall
        start = float(out.split()[0])
        seen = self.seen(vdevs)
        return max(seen) - start, wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    many = 2 if args.quick else args.disks
    repeat = 1 if args.quick else args.repeat

    shared = os.environ.get("XENVM_DIR")
    host = XenHost.attach(shared) if shared else XenHost(tempfile.mkdtemp(prefix="xenvm-bench-")).boot()
    inventory = os.path.join(host.workdir, "bench-inventory.json")
    host.ansible_inventory(inventory, extra_vars={"ansible_python_interpreter": "/root/bench-python"})
    bench = Bench(host, Controller(inventory, host.workdir))
    try:
        bench.setup(many)
        rows = []
        for _round in range(repeat):
            cases = [(f"{many} disks", VDEVS[:many])] if args.quick else \
                [("1 disk", VDEVS[:1]), (f"{many} disks", VDEVS[:many])]
            for label, vdevs in cases:
                module, module_wall = bench.module_attach(vdevs)
                print(f"{label}: xen_disk start->seen {module:.1f} s (controller wall {module_wall:.1f} s)", flush=True)
                bench.detach_all(vdevs)
                try:
                    xl, xl_wall = bench.xl_attach(vdevs)
                except XenHostError as exc:  # libxl's own 40 s for the block script, under load
                    print(f"{label}: xl block-attach failed: {exc}", flush=True)
                    xl, xl_wall = float("nan"), float("nan")
                else:
                    print(f"{label}: xl block-attach one by one start->seen {xl:.1f} s", flush=True)
                bench.detach_all(vdevs)
                rows.append((label, module, module_wall, xl, xl_wall))
        print(f"\nreal Xen host ({host.xenstored}), guest '{GUEST}', raw images on blkback; seconds")
        print(f"{'disks':>10} {'xen_disk: start->seen':>22} {'(controller wall)':>18} "
              f"{'xl one by one: start->seen':>27} {'(ssh wall)':>11} {'ratio xl/module':>16}")
        for label, module, module_wall, xl, xl_wall in rows:
            print(f"{label:>10} {module:22.1f} {module_wall:18.1f} {xl:27.1f} {xl_wall:11.1f} {xl / module:16.2f}")
        print(f"load average: {open('/proc/loadavg').read().split()[:3]}")
    finally:
        host.destroy_guest(GUEST)
        if not shared:
            host.poweroff()
    return 0


if __name__ == "__main__":
    sys.exit(main())
