# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen_disk and real `xl` (libxl 4.17) on the same host (tests/xl/): each sees and manages the
disks the other attached, libxl's domain configuration (its JSON file) stays in step with
xenstore through mixed sequences, and racing `xl block-attach` against xen_disk loses nothing.

libxl 4.17 adds a disk's entry to the JSON file on attach but never removes it on detach (only
device adds call libxl__set_domain_configuration): xenstore is primary, and
libxl_retrieve_domain_configuration (`xl list -l`, save, migrate, reboot) keeps only the entries
with a device in xenstore. So "in step" means: every disk in xenstore has its entry in the file,
and `xl list -l` shows exactly the disks in xenstore.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.xen.disks.tests.xl.cases import make_images, settle
from ansible_collections.xen.disks.tests.xl.harness import XlHost, loop_devices

pytestmark = [pytest.mark.xenstored, pytest.mark.xl]

RACE_ROUNDS = 6
XL_OFFSET = 0.15  # seconds, times the round number


@pytest.fixture
def host(tmp_path):
    images = str(tmp_path / "images")
    make_images(images)
    for round_number in range(RACE_ROUNDS):
        (tmp_path / "images" / ("race-%d.img" % round_number)).write_bytes(b"\0" * 65536)
    host = XlHost(str(tmp_path / "host"))
    names = sorted(os.listdir(images))
    try:
        # loop devices on every image: phy disks need block devices (harness.loop_devices)
        with loop_devices([os.path.join(images, n) for n in names]) as loops:
            host.add_guest("guest5", 5, "pv")
            # qemu-traditional: `xl list -l` asks its vcpus from xenstore, not from QEMU over QMP
            host.add_guest("guest7", 7, "hvm", dm_version="qemu_xen_traditional")
            host.targets = {n: loops[os.path.join(images, n)] for n in names}
            host.targets["c.qcow2"] = os.path.join(images, "c.qcow2")  # qdisk: the file itself
            yield host
    finally:
        host.close()


def img(host, name):
    return host.targets[name]


def devices(host, domid):
    """{vdev devid: backend path} of the guest's disks in libxl's own xenstore records."""
    out = {}
    for path, (value, _perms) in host.dump("/libxl/%d/device" % domid).items():
        parts = path.split("/")
        if len(parts) == 7 and parts[6] == "backend":
            out[int(parts[5])] = value
    return out


def json_vdevs(host, domid):
    return sorted(d["vdev"] for d in (host.domain_config(domid) or {}).get("disks", []))


def xl_list_long_vdevs(host, domid):
    listing = json.loads(host.xl("list", "-l", str(domid)).stdout)
    return sorted(d["vdev"] for d in listing[0]["config"].get("disks", []))


def block_list(host, domid):
    lines = host.xl("block-list", str(domid)).stdout.splitlines()[1:]
    return sorted(int(line.split()[0]) for line in lines if line.strip())


def xenstore_vdevs(host, domid):
    return sorted(host.read("/libxl/%d/device/vbd/%d/dev" % (domid, devid)) for devid in devices(host, domid))


def assert_in_step(host, domid, vdevs, context=""):
    """xenstore holds exactly `vdevs`, each with its JSON entry; `xl list -l` shows them."""
    assert xenstore_vdevs(host, domid) == sorted(vdevs), context
    missing = set(vdevs) - set(json_vdevs(host, domid))
    assert not missing, "%s: in xenstore but not in libxl's JSON: %s" % (context, sorted(missing))
    assert xl_list_long_vdevs(host, domid) == sorted(vdevs), context


def no_disk_nodes_left(host, domid):
    tree = host.dump("/")
    left = [p for p in tree if p.startswith(("/local/domain/%d/device/vbd" % domid, "/libxl/%d/device/" % domid))
            or "/backend/vbd/%d/" % domid in p or "/backend/qdisk/%d/" % domid in p
            or p.endswith(("/backend/vbd/%d" % domid, "/backend/qdisk/%d" % domid))]
    return left


def ok(result):
    assert not result.get("failed"), result
    return result


def test_xl_sees_and_detaches_disks_xen_disk_attached(host):
    pv_disks = ["%s,raw,xvdb,rw" % img(host, "a.img"), "%s,qcow2,xvdc,ro" % img(host, "c.qcow2"),
                "%s,raw,xvdd,cdrom" % img(host, "d.iso")]
    hvm_disks = ["%s,raw,hdb,rw" % img(host, "b.img"), ",raw,hdc,cdrom"]
    assert ok(host.xen_disk(domain="guest5", disks=pv_disks))["changed"] is True
    assert ok(host.xen_disk(domain="guest7", disks=hvm_disks))["changed"] is True
    settle(host)
    assert block_list(host, 5) == [51728, 51744, 51760]
    assert block_list(host, 7) == [832, 5632]
    assert xl_list_long_vdevs(host, 5) == ["xvdb", "xvdc", "xvdd"]
    assert xl_list_long_vdevs(host, 7) == ["hdb", "hdc"]
    for domid, vdevs in ((5, ["xvdb", "xvdc", "xvdd"]), (7, ["hdb", "hdc"])):
        for vdev in vdevs:
            result = host.xl("block-detach", str(domid), vdev, check=False)
            assert result.returncode == 0, result.stderr
        assert no_disk_nodes_left(host, domid) == []
        assert_in_step(host, domid, [])
    for domain, disks in (("guest5", pv_disks), ("guest7", hvm_disks)):
        check = ok(host.xen_disk(check=True, domain=domain, disks=disks))
        assert [d["action"] for d in check["disks"]] == ["attach"] * len(disks)


def test_xen_disk_reports_unchanged_and_detaches_disks_xl_attached(host):
    attached = [
        ("5", ["%s,raw,xvdb,rw" % img(host, "a.img")]),
        ("5", ["format=qcow2", "vdev=xvdc", "access=ro", "target=%s" % img(host, "c.qcow2")]),
        ("5", ["phy:%s,xvde,w" % img(host, "b.img")]),
        ("7", ["%s,raw,hdc,cdrom" % img(host, "d.iso")]),
        ("7", ["vdev=xvdb,access=rw,no-discard,target=%s" % img(host, "g,h.img")]),
    ]
    for domid, tokens in attached:
        host.xl("block-attach", domid, *tokens)
    settle(host)
    declared = {
        "guest5": ["%s,raw,xvdb,rw" % img(host, "a.img"), "%s,qcow2,xvdc,ro" % img(host, "c.qcow2"),
                   {"target": img(host, "b.img"), "vdev": "xvde", "access": "rw", "backendtype": "phy"}],
        "guest7": ["%s,raw,hdc,cdrom" % img(host, "d.iso"), "vdev=xvdb,no-discard,target=%s" % img(host, "g,h.img")],
    }
    for domain, disks in declared.items():
        again = ok(host.xen_disk(domain=domain, disks=disks))
        assert again["changed"] is False, again
        assert [d["action"] for d in again["disks"]] == ["unchanged"] * len(disks), again
    before_json = {d: json_vdevs(host, d) for d in (5, 7)}
    assert before_json == {5: ["xvdb", "xvdc", "xvde"], 7: ["hdc", "xvdb"]}
    for domain, domid in (("guest5", 5), ("guest7", 7)):
        absent = ok(host.xen_disk(domain=domain, state="absent", disks=before_json[domid]))
        assert absent["changed"] is True
        assert [d["action"] for d in absent["disks"]] == ["detach"] * len(before_json[domid]), absent
        settle(host)
        assert no_disk_nodes_left(host, domid) == []
        assert block_list(host, domid) == []
        assert_in_step(host, domid, [])


def test_mixed_sequence_keeps_libxl_json_in_step(host):
    steps = [
        ("xl", ["block-attach", "5", "%s,raw,xvdb,rw" % img(host, "a.img")]),
        ("ours", {"disks": ["%s,raw,xvdb,rw" % img(host, "a.img"), "%s,qcow2,xvdc" % img(host, "c.qcow2")]}),
        ("xl", ["block-attach", "5", "vdev=xvdd,devtype=cdrom,target=%s" % img(host, "d.iso")]),
        ("ours", {"disks": ["xvdb"], "state": "absent"}),
        ("xl", ["block-detach", "5", "xvdc"]),
        ("ours", {"disks": ["%s,raw,xvdb,ro" % img(host, "b.img"), "%s,raw,xvdd,cdrom" % img(host, "d.iso")]}),
        ("xl", ["block-attach", "5", "%s,raw,xvdf,rw" % img(host, "a.img")]),
        ("ours", {"disks": ["%s,raw,xvdb,ro" % img(host, "b.img")], "exclusive": True}),
        ("xl", ["block-detach", "5", "xvdb"]),
    ]
    expected = [["xvdb"], ["xvdb", "xvdc"], ["xvdb", "xvdc", "xvdd"], ["xvdc", "xvdd"], ["xvdd"],
                ["xvdb", "xvdd"], ["xvdb", "xvdd", "xvdf"], ["xvdb"], []]
    for (tool, what), vdevs in zip(steps, expected):
        if tool == "xl":
            result = host.xl(*what, check=False)
            assert result.returncode == 0, (what, result.stderr)
        else:
            ok(host.xen_disk(domain="guest5", **what))
        settle(host)
        assert_in_step(host, 5, vdevs, "after %s %s" % (tool, what))


def _race_round(host, round_number):
    """xl block-attach of one disk and xen_disk's attach of another, on guest5, at once; xl starts
    a little later each round, so the rounds sweep the window of xen_disk's apply."""
    xl_vdev, our_vdev = "xvd%s" % "bcdefg"[round_number], "xvd%s" % "hijklm"[round_number]
    ours = ["%s,raw,%s,rw" % (img(host, "race-%d.img" % round_number), our_vdev)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        our_future = pool.submit(host.xen_disk, domain="guest5", disks=ours)
        time.sleep(XL_OFFSET * round_number)
        xl_future = pool.submit(host.xl, "block-attach", "5", "%s,raw,%s,ro" % (img(host, "b.img"), xl_vdev),
                                check=False)
        xl_result, our_result = xl_future.result(timeout=300), our_future.result(timeout=300)
    return xl_vdev, our_vdev, xl_result, our_result


def test_race_xl_block_attach_and_xen_disk(host):
    """Many rounds: neither plane (xenstore, libxl's JSON) loses an entry; nobody deadlocks
    (both finish: each waited for the other's lock)."""
    expected, retried = [], []
    for round_number in range(RACE_ROUNDS):
        xl_vdev, our_vdev, xl_result, our_result = _race_round(host, round_number)
        assert xl_result.returncode == 0, xl_result.stderr
        settle(host)
        if our_result.get("failed") and "run again" in " ".join(our_result.get("errors", [])):
            # xen_disk's reads of the guest kept changing under xl's attach (and the backend's
            # answers): it changed nothing and said so; the run it asks for converges
            assert our_result["changed"] is False, our_result
            retried.append(round_number)
            our_result = host.xen_disk(domain="guest5", disks=["%s,raw,%s,rw" % (
                img(host, "race-%d.img" % round_number), our_vdev)])
            settle(host)
        ok(our_result)
        expected += [xl_vdev, our_vdev]
        assert_in_step(host, 5, expected, "round %d" % round_number)
    # and detach them all at once, half by each
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        xl_future = pool.submit(lambda: [host.xl("block-detach", "5", v, check=False)
                                         for v in expected[0::2]])
        our_future = pool.submit(host.xen_disk, domain="guest5", state="absent", disks=expected[1::2])
        xl_results, our_result = xl_future.result(timeout=300), our_future.result(timeout=300)
    assert all(r.returncode == 0 for r in xl_results), [r.stderr for r in xl_results]
    ok(our_result)
    settle(host)
    assert_in_step(host, 5, [])
    assert no_disk_nodes_left(host, 5) == []
    print("race rounds: %d, xen_disk asked to be run again in rounds %s" % (RACE_ROUNDS, retried))


# Holds one of libxl's lock files as libxl does (open O_RDWR|O_CREAT 0666, flock LOCK_EX; release:
# unlink, LOCK_UN, close) until a line arrives on stdin.
_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
os.unlink(sys.argv[1])
fcntl.flock(fd, fcntl.LOCK_UN)
os.close(fd)
"""
LOCK_HELD_FOR = 2.0  # seconds the lock is kept while the tool runs


@pytest.mark.parametrize("tool", ["xl", "xen_disk"])
def test_attach_waits_for_libxl_userdata_lock(host, tool):
    """Both tools wait while another holds libxl's domain-userdata-lock of the guest, then attach.
    (A tool ignoring the lock would be done before it is released: the check below can only fail
    for such a tool, however loaded the machine.)"""
    lock = host.userdata_path(5, key="domain-userdata-lock", kind="l")
    holder = subprocess.Popen(host.ns.command([sys.executable, "-c", _HOLD_LOCK, lock]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        results = []
        target = "%s,raw,xvdb,rw" % img(host, "a.img")
        if tool == "xl":
            run = threading.Thread(target=lambda: results.append(host.xl("block-attach", "5", target, check=False)))
        else:
            run = threading.Thread(target=lambda: results.append(host.xen_disk(domain="guest5", disks=[target])))
        run.start()
        time.sleep(LOCK_HELD_FOR)
        assert run.is_alive() and not results, "%s did not wait for libxl's lock" % tool
        assert devices(host, 5) == {}
    finally:
        holder.stdin.write("release\n")
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
    run.join(120)
    assert not run.is_alive()
    result = results[0]
    if tool == "xl":
        assert result.returncode == 0, result.stderr
    else:
        ok(result)
    settle(host)
    assert_in_step(host, 5, ["xvdb"])
