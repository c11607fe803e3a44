# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Concurrency suite: two and eight xen_disk runs at once, each with its own declaration for the
same guests, against the REAL xenstored and the simulated backends (tests/xenstored/).

Each run is the real module in its own process (tests/integration/runs.py), started together.
Whatever the interleaving, per round:
- no run ends in a traceback; a run that fails says why;
- `exclusive` rounds: each guest ends as exactly one run's declaration for it (a check-mode run
  of it changes nothing, and the guest's libxl records, frontend and backend directories are
  exactly its disks), or, if it ends as none, every run failed: never a mixture reported as
  success. (Each guest is applied in its own transactions: with two guests, each may end as
  another run's declaration);
- same vdev, different targets: exactly one run succeeds and its target is the one attached;
  every other run fails, naming the difference (never two `changed` with the last writer winning).

Rounds are seeded: XEN_DISKS_SEED=<n> replays a run (the seed is printed).
"""

from __future__ import annotations

import collections
import os
import random

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid
from ansible_collections.xen.disks.tests.integration.runs import RunPool, outcome
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import xen_disk_run
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher

pytestmark = pytest.mark.xenstored

GUESTS = (("guest5", 5), ("guest9", 9))
VDEVS = ("xvdb", "xvdc", "xvdd", "xvde", "xvdf")
VARIANTS = 8  # images per guest and vdev: same vdev, different targets


def _seed():
    return int(os.environ.get("XEN_DISKS_SEED") or random.SystemRandom().randrange(1 << 30))


@pytest.fixture
def sim(xenstored, tmp_path):
    for name, domid in GUESTS:
        xenstored.add_guest(name, domid, "pv")
    for name, _domid in GUESTS:
        for vdev in VDEVS:
            for variant in range(VARIANTS):
                with open(tmp_path / ("%s-%s-%d.img" % (name, vdev, variant)), "wb") as handle:
                    handle.truncate(1 << 20)
    xenstored.images = tmp_path
    with backend_sim.running(xenstored.socket, "connect"):
        yield xenstored


def _args(host, guests, **extra):
    args = {"domains": guests, "xenstore_socket": host.socket, "libxl_dir": host.libxl_dir, "hotplug_scripts": "skip",
            "timeout": 30}
    args.update(extra)
    return args


def _disk(host, guest, vdev, variant):
    return "%s,raw,%s,rw" % (host.images / ("%s-%s-%d.img" % (guest, vdev, variant)), vdev)


def _random_declaration(rng, host, guests, recreate):
    entries = []
    for name, _domid in guests:
        vdevs = sorted(rng.sample(VDEVS, rng.randint(1, 3)))
        entries.append({"domain": name, "exclusive": True, "recreate": recreate,
                        "disks": [_disk(host, name, v, rng.randrange(VARIANTS)) for v in vdevs]})
    return entries


def _dirs(host, domid):
    """(records, frontends, backends): the device numbers of each kind of directory of a guest."""
    with launcher.WireClient(host.socket) as client:
        def names(path):
            try:
                return frozenset(client.list(path))
            except launcher.WireError:
                return frozenset()
        return (names("/libxl/%d/device/vbd" % domid), names("/local/domain/%d/device/vbd" % domid),
                names("/local/domain/0/backend/vbd/%d" % domid) | names("/local/domain/0/backend/qdisk/%d" % domid))


def _holds(host, entries):
    """Whether the host is exactly this exclusive declaration: a check-mode run changes nothing,
    and each guest has exactly the declared disks' three directories (nothing half-removed)."""
    check = xen_disk_run(host, check=True, **_args(host, entries))
    if check.get("failed") or check["changed"]:
        return False
    for entry in entries:
        domid = dict(GUESTS)[entry["domain"]]
        declared = frozenset(str(vdev_to_devid(d.split(",")[2])) for d in entry["disks"])
        if any(found != declared for found in _dirs(host, domid)):
            return False
    return True


def _exclusive_round(host, pool, rng, guests, stats):
    declarations = [_random_declaration(rng, host, guests, recreate=rng.random() < 0.8)
                    for _run in range(pool.count)]
    results = pool.run([_args(host, d) for d in declarations])
    kinds = [outcome(r) for r in results]
    stats.update(kinds)
    stats["replans"] += sum(r.get("xenstore_replans", 0) for r in results)
    _no_traceback(results)
    for result in results:
        if result.get("failed"):
            stats["failure: " + _failure_kind(result["msg"])] += 1
    if "ok" not in kinds:
        stats["rounds where every run failed"] += 1
    # Each guest is applied in its own transactions, so per guest: exactly one run's declaration
    # for it (that run may have failed for another guest), or, if none, no run succeeded.
    for index, (name, domid) in enumerate(guests):
        holding = [k for k, d in enumerate(declarations) if _holds(host, [d[index]])]
        if holding:
            stats["%s ends as the declaration of a run that %s" % ("guest", kinds[holding[0]])] += 1
        elif "ok" in kinds:
            checks = [_check_summary(xen_disk_run(host, check=True, **_args(host, [d[index]]))) for d in declarations]
            pytest.fail("runs reported success but %s is none of the declarations:\n%s\nfinal: %s %s\n"
                        "check mode of each: %s"
                        % (name, _report(declarations, results, index), _records(host, domid), _dirs(host, domid),
                           checks), pytrace=False)
        else:  # every run failed, clearly: bring the guest to a known state for the next round
            stats["guest left as no declaration, every run failed"] += 1
            entry = dict(declarations[0][index], recreate=True)
            reset = xen_disk_run(host, **_args(host, [entry], force=True))
            assert not reset.get("failed"), reset
            assert _holds(host, [entry])


def _same_vdev_round(host, pool, rng, stats):
    name, domid = GUESTS[0]
    cleared = xen_disk_run(host, **_args(host, [{"domain": name, "exclusive": True, "disks": []}], force=True))
    assert not cleared.get("failed"), cleared
    vdev = rng.choice(VDEVS)
    variants = rng.sample(range(VARIANTS), pool.count)
    declarations = [[{"domain": name, "disks": [_disk(host, name, vdev, v)]}] for v in variants]
    results = pool.run([_args(host, d) for d in declarations])
    kinds = [outcome(r) for r in results]
    stats.update("same vdev: " + k for k in kinds)
    _no_traceback(results)
    assert kinds.count("ok") == 1, results
    winner = kinds.index("ok")
    assert results[winner]["changed"] is True
    assert _holds(host, [dict(declarations[winner][0], exclusive=True)])
    for result in results[:winner] + results[winner + 1:]:
        assert "target differs from the attached disk" in result["msg"], result["msg"]
    with launcher.WireClient(host.socket) as client:
        assert client.read("/libxl/%d/device/vbd/%d/params" % (domid, vdev_to_devid(vdev))) == \
            str(host.images / ("%s-%s-%d.img" % (name, vdev, variants[winner])))


def _check_summary(check):
    if check.get("msg"):
        return check["msg"]
    return check["changed"], [(d["vdev"], d["action"], d.get("libxl_config"), d["frontend_state"], d["backend_state"])
                              for d in check["disks"]]


def _short(entry):
    disks = ["%s=%s" % (d.split(",")[2], d.split(",")[0].rsplit("-", 1)[1].split(".")[0]) for d in entry["disks"]]
    return "%s%s" % (" ".join(disks), " recreate" if entry.get("recreate") else "")


def _report(declarations, results, index):
    lines = []
    for number, (declaration, result) in enumerate(zip(declarations, results)):
        lines.append("run %d: %s -> %s%s replans=%s retries=%s %s" % (
            number, _short(declaration[index]), outcome(result), " changed" if result.get("changed") else "",
            result.get("xenstore_replans"), result.get("xenstore_retries"),
            result.get("msg", "") or [(d["vdev"], d["action"]) for d in result.get("disks", [])]))
    return "\n".join(lines)


def _records(host, domid):
    with launcher.WireClient(host.socket) as client:
        out = {}
        for devid in sorted(_dirs(host, domid)[0]):
            base = "/libxl/%d/device/vbd/%s" % (domid, devid)
            out[client.read(base + "/dev")] = client.read(base + "/params").rsplit("-", 1)[1]
        return out


def _no_traceback(results):
    broken = [r.get("traceback") or r.get("exception") or r.get("msg") for r in results if outcome(r) == "traceback"]
    if broken:
        pytest.fail("a run ended in a traceback:\n" + "\n".join(str(b) for b in broken), pytrace=False)


def _failure_kind(message):
    for kind in ("another writer", "differs from the attached disk", "a detach of", "timed out", "removed before"):
        if kind in message:
            return kind
    return message.splitlines()[0][:80]


@pytest.mark.parametrize("runs, exclusive_rounds, same_vdev_rounds, guests", [
    (2, 10, 4, GUESTS[:1]),
    (8, 4, 2, GUESTS),
], ids=["two-runs", "eight-runs"])
def test_concurrent_runs_end_in_one_declaration_or_fail_clearly(
        sim, runs, exclusive_rounds, same_vdev_rounds, guests):
    seed = _seed()
    print("\nconcurrency suite: %d runs at once, seed %d (XEN_DISKS_SEED=%d replays it)" % (runs, seed, seed))
    rng = random.Random(seed)
    stats = collections.Counter()
    with RunPool(runs, seed) as pool:
        for _round in range(exclusive_rounds):
            _exclusive_round(sim, pool, rng, guests, stats)
        for _round in range(same_vdev_rounds):
            _same_vdev_round(sim, pool, rng, stats)
    print("%d exclusive rounds and %d same-vdev rounds of %d runs: %s"
          % (exclusive_rounds, same_vdev_rounds, runs, dict(sorted(stats.items()))))
    assert stats["ok"] >= exclusive_rounds - stats["rounds where every run failed"]
    assert stats["same vdev: ok"] == same_vdev_rounds


# -- one image, two guests, two runs at once --------------------------------------------------
SHARING_ROUNDS = int(os.environ.get("XEN_DISKS_SHARING_ROUNDS", "12"))


def test_two_runs_never_both_attach_one_image_read_write_to_two_guests(sim):
    """Run A attaches an image read-write to guest5 while run B attaches the same image to
    guest9 (read-write or read-only): each run's read of the host may come before the other's
    commit, yet at most one of them may attach it: the image is never shared with a writer."""
    seed = _seed()
    rng = random.Random(seed)
    print("sharing rounds: seed %d (XEN_DISKS_SEED to replay)" % seed)
    both = 0
    with RunPool(2, seed) as pool:
        for round_no in range(SHARING_ROUNDS):
            image = sim.images / ("shared-%d.img" % round_no)
            with open(image, "wb") as handle:
                handle.truncate(1 << 20)
            vdev = VDEVS[round_no % len(VDEVS)]
            mode = rng.choice(("rw", "ro"))
            results = pool.run([
                _args(sim, [{"domain": "guest5", "disks": ["%s,raw,%s,rw" % (image, vdev)]}], wait=False),
                _args(sim, [{"domain": "guest9", "disks": ["%s,raw,%s,%s" % (image, vdev, mode)]}], wait=False)],
                delay=0.01)
            outcomes = [outcome(r) for r in results]
            assert not any(o == "traceback" for o in outcomes), (seed, round_no, results)
            attached = [domid for (_name, domid), r in zip(GUESTS, results) if not r.get("failed")]
            both += len(attached) == 2
            for (_name, domid), r in zip(GUESTS, results):
                if r.get("failed"):
                    assert "is already attached to guest" in r["msg"] and "read-write" in r["msg"], (seed, round_no, r)
            assert len(attached) == 1, (seed, round_no, mode, results)
            # the image attached to exactly the guest whose run succeeded
            for name, domid in GUESTS:
                params = launcher.read_node(sim.socket, "/local/domain/0/backend/vbd/%d/%d/params"
                                            % (domid, vdev_to_devid(vdev)))
                assert (params == str(image)) == (domid in attached), (seed, round_no, domid, params)
            # detach both for the next round
            for name, domid in GUESTS:
                xen_disk_run(sim, domain=name, disks=[vdev], state="absent", force=True, wait=False,
                             hotplug_scripts="skip")
    assert both == 0
