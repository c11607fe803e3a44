# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault suite: xen_disk runs on a host of 20 guests x 8 disks killed at random points, against the
REAL xenstored and the simulated backends (tests/xenstored/).

- kill -9 of the module process (tests/integration/runs.py runs it in its own process) during an
  apply: no guest is left half-written (each guest's disks are whole: a libxl record with every
  node, a frontend and a backend directory, or none of the three), a rerun converges and a third
  run changes nothing;
- kill -9 of xenstored during an apply: the run fails cleanly (a message naming xenstored, no
  traceback) within its timeout. The C xenstored keeps its database in memory, so the host is
  then rebuilt as after a reboot: a new daemon, the guests created again as the launcher does;
  a rerun converges and a third run changes nothing;
- SIGSTOP of xenstored (hung) at a random point of a run: the run fails within about its timeout
  with a message stating that timeout, no traceback; once the daemon runs again, a rerun converges.

Rounds are seeded: XEN_DISKS_SEED=<n> replays the choices (the seed is printed); the kill points
are times, so a replay is close, not identical.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid
from ansible_collections.xen.disks.tests.integration.runs import outcome, start_run
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import xen_disk_run
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher

pytestmark = pytest.mark.xenstored

VDEVS = tuple("xvd" + c for c in "bcdefghijk")   # 10: each declaration takes 8
TIMEOUT = 30  # generous: the suite must pass on a loaded machine (a killed daemon is reported at once)


def _seed():
    return int(os.environ.get("XEN_DISKS_SEED") or random.SystemRandom().randrange(1 << 30))


class Host:
    """A xenstored with guests guest1..guestN (domids 1..N), their images, and the simulated
    backends (restarted with the daemon)."""

    def __init__(self, xenstored, images, guests, disks):
        self.xenstored = xenstored
        self.images = images
        self.guests = [("guest%d" % d, d) for d in range(1, guests + 1)]
        self.disks = disks
        self._sim = contextlib.ExitStack()

    @property
    def socket(self):
        return self.xenstored.socket

    def create_guests(self):
        for name, domid in self.guests:
            launcher.add_guest(self.xenstored.rundir, name, domid, "pv")

    def start_sim(self):
        self._sim.enter_context(backend_sim.running(self.socket, "connect"))

    def stop_sim(self):
        self._sim.close()

    def daemon_pid(self):
        return launcher.status(self.xenstored.rundir).pid

    def restart_daemon(self):
        """A new xenstored on the same socket, the guests created again (the tree was in the
        killed daemon's memory), new simulated backends."""
        self.stop_sim()
        launcher.stop(self.xenstored.rundir)
        launcher.start(self.xenstored.rundir, die_with_parent=True)
        self.create_guests()
        self.start_sim()

    def declaration(self, rng):
        entries = []
        for name, _domid in self.guests:
            vdevs = sorted(rng.sample(VDEVS, self.disks))
            entries.append({"domain": name, "exclusive": True, "recreate": True,
                            "disks": ["%s,raw,%s,rw" % (self.images / ("%s-%s-%d.img" % (name, v, rng.randrange(2))), v)
                                      for v in vdevs]})
        return entries

    def args(self, entries, timeout=TIMEOUT):
        return {"domains": entries, "xenstore_socket": self.socket, "libxl_dir": self.xenstored.libxl_dir,
                "hotplug_scripts": "skip", "timeout": timeout}


@pytest.fixture
def make_host(xenstored, tmp_path):
    made = []

    def make(guests, disks):
        host = Host(xenstored, tmp_path, guests, disks)
        for name, _domid in host.guests:
            for vdev in VDEVS:
                for variant in range(2):
                    with open(tmp_path / ("%s-%s-%d.img" % (name, vdev, variant)), "wb") as handle:
                        handle.truncate(1 << 20)
        host.create_guests()
        host.start_sim()
        made.append(host)
        return host

    try:
        yield make
    finally:
        for host in made:
            host.stop_sim()


def _whole(host, reference):
    """Assert that no guest is half-written: per guest, the libxl records, frontend and backend
    directories are the same disks, and every record has every node of a complete one."""
    with launcher.WireClient(host.socket) as client:
        def names(path):
            try:
                return set(client.list(path))
            except launcher.WireError:
                return set()
        for name, domid in host.guests:
            records = names("/libxl/%d/device/vbd" % domid)
            fronts = names("/local/domain/%d/device/vbd" % domid)
            backs = names("/local/domain/0/backend/vbd/%d" % domid) | names("/local/domain/0/backend/qdisk/%d" % domid)
            assert records == fronts == backs, (name, records, fronts, backs)
            for devid in records:
                leaves = names("/libxl/%d/device/vbd/%s" % (domid, devid))
                assert leaves == reference, (name, devid, sorted(reference ^ leaves))


def _converges(host, entries):
    """A rerun succeeds, leaves exactly the declared disks, and a third run changes nothing."""
    rerun = xen_disk_run(host.xenstored, **host.args(entries))
    assert outcome(rerun) == "ok", rerun.get("traceback") or rerun.get("msg")
    third = xen_disk_run(host.xenstored, **host.args(entries))
    assert outcome(third) == "ok" and third["changed"] is False, third.get("msg") or [
        (d["domain"], d["vdev"], d["action"]) for d in third["disks"] if d["action"] != "unchanged"]
    with launcher.WireClient(host.socket) as client:
        for entry, (_name, domid) in zip(entries, host.guests):
            declared = {str(vdev_to_devid(d.split(",")[2])) for d in entry["disks"]}
            assert set(client.list("/libxl/%d/device/vbd" % domid)) == declared


def _applied(host, entries):
    """How many guests already have exactly their declared set of records (where a kill landed)."""
    count = 0
    with launcher.WireClient(host.socket) as client:
        for entry, (_name, domid) in zip(entries, host.guests):
            declared = {str(vdev_to_devid(d.split(",")[2])) for d in entry["disks"]}
            try:
                count += set(client.list("/libxl/%d/device/vbd" % domid)) == declared
            except launcher.WireError:
                pass
    return count


def _reference_record(host):
    with launcher.WireClient(host.socket) as client:
        domid = host.guests[0][1]
        first = client.list("/libxl/%d/device/vbd" % domid)[0]
        return set(client.list("/libxl/%d/device/vbd/%s" % (domid, first)))


def _short(host, message):
    return message.replace(host.socket, "<socket>")[:160]


def _clean_failure(result, *expected):
    kind = outcome(result)
    assert kind != "traceback", result.get("traceback") or result.get("msg")
    assert kind == "failed", result
    assert any(e in result["msg"] for e in expected), result["msg"]


def test_kill_the_module_or_xenstored_during_applies(make_host):
    seed = _seed()
    print("\nfault suite: 20 guests x 8 disks, seed %d (XEN_DISKS_SEED=%d replays the choices)" % (seed, seed))
    rng = random.Random(seed)
    host = make_host(20, 8)
    entries = host.declaration(rng)
    started = time.monotonic()
    first = xen_disk_run(host.xenstored, **host.args(entries))
    apply_time = time.monotonic() - started
    assert outcome(first) == "ok", first.get("msg")
    reference = _reference_record(host)
    report = []

    for _round in range(3):  # kill -9 of the module
        entries = host.declaration(rng)
        delay = rng.uniform(0.25, 1.0) * apply_time  # mostly past the read
        run = start_run(host.args(entries))
        time.sleep(delay)
        finished = not run.alive()
        run.kill()
        _whole(host, reference)
        applied = _applied(host, entries)
        _converges(host, entries)
        report.append("module killed after %.2f s (%d/%d guests applied%s)"
                      % (delay, applied, len(host.guests), ", it had finished" if finished else ""))

    for _round in range(2):  # kill -9 of xenstored
        entries = host.declaration(rng)
        delay = rng.uniform(0.25, 1.0) * apply_time  # mostly past the read
        run = start_run(host.args(entries))
        time.sleep(delay)
        finished = not run.alive()
        killed = time.monotonic()
        os.kill(host.daemon_pid(), signal.SIGKILL)
        result = run.result(timeout=TIMEOUT * 6)
        reported = time.monotonic() - killed
        # success is right when the last request was answered before the kill (a dead daemon
        # answers nothing: a request in flight ends the run)
        if outcome(result) != "ok":
            _clean_failure(result, "lost the connection to xenstored", "did not answer within %g s" % TIMEOUT)
            assert reported < TIMEOUT, reported  # at once: the connection ends
        report.append("xenstored killed after %.2f s: %s, reported %.2f s after the kill"
                      % (delay, repr(_short(host, result["msg"])) if result.get("failed") else
                         "the run had finished%s" % ("" if finished else " its requests"), reported))
        host.restart_daemon()
        _converges(host, entries)

    print("first apply %.2f s; %s" % (apply_time, "; ".join(report)))


def test_hung_xenstored_is_reported_within_the_timeout(make_host):
    seed = _seed()
    print("\nhung xenstored: 4 guests x 4 disks, seed %d" % seed)
    rng = random.Random(seed)
    host = make_host(4, 4)
    timeout = 2
    entries = host.declaration(rng)
    started = time.monotonic()
    assert outcome(xen_disk_run(host.xenstored, **host.args(entries, timeout=TIMEOUT))) == "ok"
    apply_time = time.monotonic() - started
    report = []
    for _round in range(3):
        entries = host.declaration(rng)
        delay = rng.uniform(0.25, 1.0) * apply_time
        run = start_run(host.args(entries, timeout=timeout))
        time.sleep(delay)
        pid = host.daemon_pid()
        stopped = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            result = run.result(timeout=timeout * 10)
            reported = time.monotonic() - stopped
        finally:
            os.kill(pid, signal.SIGCONT)
        if outcome(result) == "ok":  # it had finished before the stop
            report.append("stopped after %.2f s: the run had finished" % delay)
        else:
            _clean_failure(result, "did not answer within %g s" % timeout, "s (timeout %g s) while waiting for" % timeout)
            # one request's timeout, or a backend wait's then a request's
            assert reported < 2 * timeout + 10, reported
            report.append("stopped after %.2f s: reported %.2f s later: %r" % (delay, reported, _short(host, result["msg"])))
        _converges(host, entries)
    print("; ".join(report))
