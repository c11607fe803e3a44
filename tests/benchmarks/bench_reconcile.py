# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of xen.disks.xen_disk on a real xenstored: a host with 100 guests x 8 disks.

Two identical hosts (one real xenstored each) are measured side by side: one whose guests have
libxl's domain configuration file (as xl creates guests: xen_disk reads it, and on apply stores
each guest's entries under libxl's userdata lock), one whose guests have none (xenstore only,
the cost without the JSON and the locks). No-op runs alternate between the two hosts so that
both see the same machine load; the JSON files must only be read by a no-op (their inodes and
contents are compared before and after, and the count of files written is printed).

Prints figures; asserts nothing about speed. For a full apply (every disk attached in runs of
`--chunk` guests, as a playbook with one task per guest, waiting for the simulated backends'
handshake) and for a no-op run (everything already there), it prints:
- module time: AnsibleModule main() in this process (argument checking, the snapshot read,
  validation, planning, applying, the result), without Python's start-up; the time waiting for
  the simulated backends, and the time outside those waits; this process's CPU time;
- xenstore requests sent, per disk, next to the budget "owned nodes per disk + 2", where owned
  nodes per disk is `_plan.owned_node_count` (the three directories libxl writes for a disk and
  every node in them) for the disks of this benchmark.
Then what a run costs beside the host it runs on: a no-op naming `--named` guests, and a run
attaching `--extra` more guests to the full host (requests per attached disk).

`--scale` measures hosts of several sizes (default 800, 1,600 and 3,200 disks) one after the other
and prints a scaling table: a cost that grows with the host rather than with the work shows as
a ratio larger than the ratio of the sizes (or, for the runs naming some guests, larger than 1).

Usage: bench_reconcile.py [--guests 100] [--disks 8] [--repeat 3] [--chunk 10] [--named 10]
                          [--extra 10] [--scale [800,1600,3200]] [--keep DIR] [--quick]
(--quick: 10 guests x 2 disks, one no-op run, 2 named guests, 2 more guests)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
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
_BACKEND_PATH = re.compile(r"^/local/domain/\d+/backend/[^/]+/(\d+)(?:/|$)")
_DOMAIN_PATH = re.compile(r"^/(?:libxl|local/domain)/(\d+)(?:/|$)")


def guest_of(path):
    """The guest a request path is about (its libxl records, backends, frontends, domain nodes);
    None for the host's own nodes (dom0's, `/local/domain`, `/`)."""
    match = _BACKEND_PATH.match(path) or _DOMAIN_PATH.match(path)
    domid = int(match.group(1)) if match else 0
    return domid or None


def split_requests(requests, total, named):
    """(about the named guests, about other guests, the host's own) requests of the module's
    connection in a request trace: the connection that sent `total` requests."""
    per_connection = {}
    for connection, op, path in requests:
        per_connection.setdefault(connection, []).append(path)
    paths = [p for p in per_connection.values() if len(p) == total]
    if len(paths) != 1:
        raise SystemExit("the module's connection is not in the request trace (%d requests; connections: %s)"
                         % (total, sorted(len(p) for p in per_connection.values())))
    counts = [0, 0, 0]
    for path in paths[0]:
        guest = guest_of(path)
        counts[0 if guest in named else 1 if guest is not None else 2] += 1
    return counts


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


def owned_nodes_per_disk(domains, _images=None):
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


def daemon_cpu_seconds(pid):
    """CPU time (user + system) xenstored has used so far: what the daemon costs, apart from
    the module (xenstored 4.17's store gets slower to create nodes in as it grows)."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def measure(workdir, guests, disks, *, repeat, chunk, named, extra):
    """One host size, two hosts (libxl's JSON files or none): figures of every measurement.

    In order, alternating between the two hosts so that both see the same load: the full apply
    of `guests` guests in runs of `chunk`; `repeat` no-op runs of the whole host and one in check
    mode; `repeat` no-op runs naming `named` guests; one run attaching `extra` more guests, then
    one more under xenstored's request trace (`split`: its requests about the guests it names,
    about the other guests, and the host's own)."""
    images = os.path.join(workdir, "images")
    os.makedirs(images, exist_ok=True)
    rundirs = {"with": os.path.join(workdir, "with-json"), "without": os.path.join(workdir, "no-json")}
    labels = ("with", "without")
    hosts, figures = {}, {label: {} for label in labels}
    try:
        for label, rundir in rundirs.items():
            daemon, domains = make_host(rundir, images, guests + 2 * extra, disks, libxl_config=label == "with")
            # timeout: a loaded machine's simulated backends may take longer than libxl's 10 s
            hosts[label] = (daemon, domains, {
                "xenstore_socket": daemon.socket, "hotplug_scripts": "skip", "timeout": 300,
                "libxl_dir": launcher.libxl_dir(rundir), "_ansible_check_mode": False, "_ansible_diff": False})

        def run(label, domains, changed, **extra_args):
            daemon_cpu = daemon_cpu_seconds(hosts[label][0].pid)
            result, elapsed = run_module(dict(hosts[label][2], domains=domains, **extra_args))
            assert result["changed"] is changed, (label, result["changed"])
            return [result["xenstore_requests"], elapsed, WAITED[0], CPU[0],
                    daemon_cpu_seconds(hosts[label][0].pid) - daemon_cpu]

        def add(label, key, sample):
            totals = figures[label].setdefault(key, [0, 0.0, 0.0, 0.0, 0.0])
            figures[label][key] = [a + b for a, b in zip(totals, sample)]

        sims = [backend_sim.running(hosts[label][0].socket, "connect") for label in labels]
        with sims[0], sims[1]:
            for first in range(0, guests, chunk):
                for label in (labels[::-1] if first // chunk % 2 else labels):
                    add(label, "apply", run(label, hosts[label][1][first:min(first + chunk, guests)], True))
            for label in labels:
                settle(hosts[label][0].socket, hosts[label][1][:guests], disks)
            before = config_files(rundirs["with"])
            for _run in range(repeat):
                for label in labels:
                    figures[label].setdefault("noop", []).append(run(label, hosts[label][1][:guests], False))
            for label in labels:
                figures[label]["check"] = run(label, hosts[label][1][:guests], False, _ansible_check_mode=True)
            for _run in range(repeat):
                for label in labels:
                    figures[label].setdefault("named", []).append(
                        run(label, hosts[label][1][guests - named:guests], False))
            after = config_files(rundirs["with"])
            if extra:
                for label in labels:
                    figures[label]["extra"] = run(label, hosts[label][1][guests:guests + extra], True)
                # the same again on more guests, under xenstored's request trace (which slows it):
                # which guests the requests of the module's connection are about
                for label in labels:
                    batch = hosts[label][1][guests + extra:]
                    with launcher.request_trace(hosts[label][0].socket,
                                                os.path.join(rundirs[label], "trace.log")) as requests:
                        sample = run(label, batch, True)
                    named_ids = {int(d["domain"][len("guest"):]) for d in batch}
                    figures[label]["split"] = split_requests(requests, sample[0], named_ids)
    finally:
        for rundir in rundirs.values():
            launcher.stop(rundir)
    for label in labels:
        for key in ("noop", "named"):
            samples = figures[label][key]
            figures[label][key + "_min"] = min(s[1] for s in samples)
            figures[label][key] = [_median([s[i] for s in samples]) for i in range(5)]
    figures["written"] = sum(1 for path in after if before.get(path) != after[path])
    figures["files"] = len(after)
    return figures


def report(figures, guests, disks, *, repeat, chunk, named, extra, owned):
    """The figures of one host size, one line each (the default and --quick output)."""
    total = guests * disks
    for label in ("without", "with"):
        requests, elapsed, waited, cpu, daemon = figures[label]["apply"]
        print("full apply %-7s JSON: module time %.3f s (of which %.3f s waiting for %d simulated backends), "
              "CPU %.3f s (xenstored: %.3f s), %d xenstore requests = %.1f per disk (%d runs of %d guests)"
              % (label, elapsed, waited, total, cpu, daemon, requests, requests / total, -(-guests // chunk), chunk))
    work = {label: figures[label]["apply"][1] - figures[label]["apply"][2] for label in ("with", "without")}
    cpu = {label: figures[label]["apply"][3] for label in ("with", "without")}
    print("full apply, JSON and locks: %+.2f ms per guest of module time outside the backend waits "
          "(%+.1f%%: %.3f s without, %.3f s with); %+.2f ms CPU per guest (%+.1f%%)"
          % ((work["with"] - work["without"]) * 1000 / guests, 100 * (work["with"] / work["without"] - 1),
             work["without"], work["with"], (cpu["with"] - cpu["without"]) * 1000 / guests,
             100 * (cpu["with"] / cpu["without"] - 1)))
    for label in ("without", "with"):
        requests, elapsed, _waited, _cpu, daemon = figures[label]["noop"]
        print("no-op %-7s JSON: module time min %.3f s, median %.3f s (%d runs; xenstored CPU %.3f s), %d xenstore "
              "requests = %.2f per disk (budget %d per disk)"
              % (label, figures[label]["noop_min"], elapsed, repeat, daemon, requests, requests / total, owned + 2))
    noop = {label: figures[label]["noop"] for label in ("with", "without")}
    print("no-op, JSON read: %+.2f ms per guest (%+.1f%% of the median no-op); CPU median %.3f s without, "
          "%.3f s with (%+.2f ms per guest, %+.1f%%); JSON files written by the %d no-op runs: %d of %d"
          % ((noop["with"][1] - noop["without"][1]) * 1000 / guests, 100 * (noop["with"][1] / noop["without"][1] - 1),
             noop["without"][3], noop["with"][3], (noop["with"][3] - noop["without"][3]) * 1000 / guests,
             100 * (noop["with"][3] / noop["without"][3] - 1), repeat, figures["written"], figures["files"]))
    for label in ("without", "with"):
        requests, elapsed, _waited, _cpu, _daemon = figures[label]["check"]
        print("no-op check %-7s JSON: module time %.3f s, %d xenstore requests = %.2f per disk"
              % (label, elapsed, requests, requests / total))
    for label in ("without", "with"):
        requests, elapsed, _waited, cpu, _daemon = figures[label]["named"]
        print("no-op naming %d guests, %-7s JSON: module time median %.3f s, CPU %.3f s, %d xenstore requests "
              "= %.2f per disk of theirs (host: %d disks)"
              % (named, label, elapsed, cpu, requests, requests / (named * disks), total))
    if extra:
        for label in ("without", "with"):
            requests, elapsed, waited, cpu, _daemon = figures[label]["extra"]
            print("attach %d more guests x %d disks, %-7s JSON: module time %.3f s (%.3f s waiting), CPU %.3f s, "
                  "%d xenstore requests = %.1f per attached disk (host: %d disks before)"
                  % (extra, disks, label, elapsed, waited, cpu, requests, requests / (extra * disks), total))
        existing = (guests + extra) * disks
        for label in ("without", "with"):
            own, others, host = figures[label]["split"]
            print("attach %d more guests again, traced, %-7s JSON: %d requests about them = %.1f per attached disk; "
                  "%d about the other guests = %.2f per disk already there (%d); %d about no guest (the host's)"
                  % (extra, label, own, own / (extra * disks), others, others / existing, existing, host))


def _ratio(big, small):
    return big / small if small else float("inf")


def scale_table(rows, disks, *, chunk, named, extra):
    """The scaling table of --scale: one line per host size, then the largest against the smallest."""
    print()
    print("scaling (%d disks per guest; apply in runs of %d guests; 'no/JSON' = without / with libxl's JSON "
          "files and locks; time outside waits = module time - time waiting for the simulated backends)"
          % (disks, chunk))
    head = ("disks", "apply s no/JSON", "waits s", "outside waits s", "CPU s", "xenstored CPU s",
            "requests/disk", "JSON+locks outside/CPU")
    print("%6s | %15s | %13s | %15s | %13s | %15s | %13s | %22s" % head)
    for total, f in rows:
        a, b = f["without"]["apply"], f["with"]["apply"]
        print("%6d | %7.1f %7.1f | %6.1f %6.1f | %7.1f %7.1f | %6.2f %6.2f | %7.1f %7.1f | %6.1f %6.1f | %+9.1f%% %+10.1f%%"
              % (total, a[1], b[1], a[2], b[2], a[1] - a[2], b[1] - b[2], a[3], b[3], a[4], b[4], a[0] / total,
                 b[0] / total, 100 * (_ratio(b[1] - b[2], a[1] - a[2]) - 1), 100 * (_ratio(b[3], a[3]) - 1)))
    head = ("disks", "no-op s no/JSON", "CPU s", "requests/disk", "JSON time/CPU",
            "%d named: s, CPU, requests" % named)
    print("%6s | %15s | %13s | %13s | %17s | %27s" % head)
    for total, f in rows:
        a, b = f["without"], f["with"]
        n = b["named"]
        print("%6d | %7.3f %7.3f | %6.3f %6.3f | %6.2f %6.2f | %+7.1f%% %+7.1f%% | %7.3f %6.3f %10d"
              % (total, a["noop"][1], b["noop"][1], a["noop"][3], b["noop"][3], a["noop"][0] / total,
                 b["noop"][0] / total, 100 * (_ratio(b["noop"][1], a["noop"][1]) - 1),
                 100 * (_ratio(b["noop"][3], a["noop"][3]) - 1), n[1], n[3], n[0]))
    if extra:
        head = ("disks", "+%d guests: s, CPU, requests" % extra, "per attached disk",
                "traced: about them /attached disk", "about others /disk there", "host's")
        print("%6s | %28s | %17s | %33s | %24s | %6s" % head)
        for total, f in rows:
            e, (own, others, host) = f["with"]["extra"], f["with"]["split"]
            print("%6d | %7.3f %6.3f %13d | %17.1f | %33.1f | %24.2f | %6d"
                  % (total, e[1], e[3], e[0], e[0] / (extra * disks), own / (extra * disks),
                     others / (total + extra * disks), host))
    (small, fs), (big, fb) = rows[0], rows[-1]
    print("largest against smallest host (%d vs %d disks, x%.1f), with JSON: full apply time x%.2f, CPU x%.2f "
          "(xenstored's CPU x%.2f), time outside waits x%.2f; whole-host no-op time x%.2f, CPU x%.2f; no-op of %d "
          "named guests time x%.2f, "
          "requests x%.2f; attach of %d guests time x%.2f, requests x%.2f"
          % (big, small, big / small, _ratio(fb["with"]["apply"][1], fs["with"]["apply"][1]),
             _ratio(fb["with"]["apply"][3], fs["with"]["apply"][3]), _ratio(fb["with"]["apply"][4], fs["with"]["apply"][4]),
             _ratio(fb["with"]["apply"][1] - fb["with"]["apply"][2], fs["with"]["apply"][1] - fs["with"]["apply"][2]),
             _ratio(fb["with"]["noop"][1], fs["with"]["noop"][1]), _ratio(fb["with"]["noop"][3], fs["with"]["noop"][3]),
             named, _ratio(fb["with"]["named"][1], fs["with"]["named"][1]),
             _ratio(fb["with"]["named"][0], fs["with"]["named"][0]), extra,
             _ratio(fb["with"]["extra"][1], fs["with"]["extra"][1]) if extra else 0.0,
             _ratio(fb["with"]["extra"][0], fs["with"]["extra"][0]) if extra else 0.0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--guests", type=int, default=100)
    parser.add_argument("--disks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs (min and median are printed)")
    parser.add_argument("--chunk", type=int, default=10, help="guests per apply run (the hosts alternate)")
    parser.add_argument("--named", type=int, default=10, help="guests named by the partial no-op runs")
    parser.add_argument("--extra", type=int, default=10, help="guests attached at the end, on the full host")
    parser.add_argument("--scale", nargs="?", const="800,1600,3200", metavar="DISKS,...",
                        help="measure hosts of these numbers of disks (default 800,1600,3200) and print the "
                             "scaling table")
    parser.add_argument("--keep", help="run directory to keep (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="10 guests x 2 disks, one no-op run, 2 named, 2 more")
    args = parser.parse_args(argv)
    if args.quick:
        args.guests, args.disks, args.repeat, args.named, args.extra = 10, 2, 1, 2, 2
    if args.disks > len(VDEVS):
        parser.error("at most %d disks per guest" % len(VDEVS))
    sizes = [args.guests * args.disks]
    if args.scale:
        try:
            sizes = [int(n) for n in args.scale.split(",")]
        except ValueError:
            parser.error("--scale takes numbers of disks, e.g. 800,1600,3200")
        if any(n % args.disks for n in sizes):
            parser.error("every size must be a multiple of --disks (%d)" % args.disks)
    if min(sizes) // args.disks < args.named:
        parser.error("--named is larger than the smallest host's number of guests")
    workdir = args.keep or tempfile.mkdtemp(prefix="bench-reconcile-")
    rows = []
    try:
        for total in sizes:
            guests = total // args.disks
            owned = owned_nodes_per_disk([{"disks": ["%s/x.img,raw,xvda,rw" % workdir]}], None)
            print("hosts: 2 x (%d guests x %d disks = %d disks), real xenstored each; one with libxl's JSON files, "
                  "one without" % (guests, args.disks, total))
            print("owned nodes per disk (_plan.owned_node_count): %d; request budget per disk: %d"
                  % (owned, owned + 2))
            figures = measure(os.path.join(workdir, "host-%d" % total), guests, args.disks, repeat=args.repeat,
                              chunk=args.chunk, named=args.named, extra=args.extra)
            report(figures, guests, args.disks, repeat=args.repeat, chunk=args.chunk, named=args.named,
                   extra=args.extra, owned=owned)
            print("load average during the run: %.2f (2 cores shared with other work: times vary with it)"
                  % os.getloadavg()[0])
            rows.append((total, figures))
        if args.scale:
            scale_table(rows, args.disks, chunk=args.chunk, named=args.named, extra=args.extra)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
