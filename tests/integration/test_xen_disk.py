# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.disks.xen_disk run for real (AnsibleModule, in-process) against the REAL xenstored, with
the simulated backend driver/frontend (tests/xenstored/backend_sim.py) as a separate process.

Trees are read back with the launcher's wire client, never through the collection's adapter.
"""

from __future__ import annotations

import os
import random
import stat
import threading
import time

import pytest

from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    children,
    devices,
    four_steps,
    subtree,
    value,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher

pytestmark = pytest.mark.xenstored


@pytest.fixture
def host(xenstored, tmp_path):
    """A dom0 with a driver domain stor2 (2) and guests 3 (pvh), 5 (pv), 7 (hvm), 9 (pv), and
    image files: raw (a regular file: phy), qcow2 (qdisk), iso."""
    xenstored.add_guest("stor2", 2, "pv", driver_domain=True)
    xenstored.add_guest("guest3", 3, "pvh")
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest7", 7, "hvm")
    xenstored.add_guest("guest9", 9, "pv")
    for name, size in (("a.img", 1 << 20), ("b.img", 2 << 20), ("c.img", 1 << 20), ("g.qcow2", 1 << 20),
                       ("d.iso", 3 << 20), ("e.iso", 1 << 20)):
        with open(tmp_path / name, "wb") as handle:
            handle.truncate(size)
    xenstored.images = tmp_path
    return xenstored


@pytest.fixture
def sim(host):
    with backend_sim.running(host.socket, "connect"):
        yield host


def settled(host, *backend_paths, state="4"):
    """Wait (test-side polling, bounded) until the simulated backends are in `state` (default
    Connected), so that later snapshots are not racing the simulator."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(value(host, p + "/state") == state for p in backend_paths):
            return
        time.sleep(0.02)
    raise AssertionError("backends not in state %s: %s" % (state, backend_paths))


def img(host, name):
    return str(host.images / name)


# -- the four steps, for every backend kind ---------------------------------------------------
KINDS = [
    ("phy-file", "guest5", lambda h: ["%s,raw,xvdb,rw" % img(h, "a.img")], {}, "vbd", "vbd"),
    ("phy-structured", "guest5", lambda h: [{"target": img(h, "a.img"), "vdev": "xvdb", "access": "ro",
                                             "direct-io-safe": True, "trusted": False}], {}, "vbd", "vbd"),
    ("qdisk-qcow2", "guest5", lambda h: ["%s,qcow2,xvdc" % img(h, "g.qcow2")], {}, "vbd", "qdisk"),
    ("legacy-prefix", "guest9", lambda h: ["tap:aio:%s,xvda,w" % img(h, "a.img")], {}, "vbd", "vbd"),
    ("cdrom-empty-hvm", "guest7", lambda h: [",raw,hdc,cdrom"], {}, "vbd", "qdisk"),
    ("cdrom-iso-hvm", "guest7", lambda h: ["%s,raw,hdc,cdrom" % img(h, "d.iso")], {}, "vbd", "qdisk"),
    ("cdrom-iso-pv", "guest5", lambda h: ["%s,raw,xvdd,cdrom" % img(h, "d.iso")], {}, "vbd", "vbd"),
    ("virtio-at-creation", "guest3", lambda h: ["%s,raw,xvda,w,specification=virtio" % img(h, "a.img")],
     {"creating": True, "arch": "arm"}, "virtio_disk", "virtio_disk"),
    ("driver-domain", "guest5", lambda h: ["backend=stor2,/dev/vg1/g5data,,xvde"], {}, "vbd", "vbd"),
    ("driver-domain-default", "guest9", lambda h: ["/dev/vg1/g9data,,xvdb"], {"backend": "stor2"}, "vbd", "vbd"),
]


@pytest.mark.parametrize("name, domain, disks, extra, kind, backend_kind", KINDS, ids=[k[0] for k in KINDS])
def test_check_apply_check_apply(sim, name, domain, disks, extra, kind, backend_kind):
    first, second, third, _fourth = four_steps(sim, domain=domain, disks=disks(sim), **extra)
    assert [(d["action"], d["kind"], d["backend_kind"]) for d in first["disks"]] == [("attach", kind, backend_kind)]
    assert first["disks"][0]["needs"] == "nothing"
    assert second["disks"][0]["spec"] == first["disks"][0]["spec"] == third["disks"][0]["spec"]
    assert second["disks"][0]["backend_state"] in ((1, 2, 3, 4) if backend_kind == "qdisk" else (2, 3, 4))
    devid = second["disks"][0]["devid"]
    domid = second["disks"][0]["domid"]
    assert value(sim, "/libxl/%d/device/%s/%d/backend" % (domid, kind, devid)) == \
        "/local/domain/%d/backend/%s/%d/%d" % (second["disks"][0]["backend_domid"], backend_kind, domid, devid)


def test_check_mode_diff_shows_specs_and_nodes(sim):
    result = xen_disk_run(sim, check=True, diff=True, domain="guest5", disks=["%s,,xvdb" % img(sim, "a.img")])
    spec_diff, tree_diff, config_diff = result["diff"]
    assert config_diff["before_header"].endswith("userdata-d.5.%s.libxl-json, disks" % sim.domain_config(5)["c_info"]["uuid"])
    assert (config_diff["before"], config_diff["after"]) == ("[\n\n]\n", (
        '[\n    {\n        "pdev_path": "%s",\n        "vdev": "xvdb",\n        "format": "raw",\n'
        '        "readwrite": 1\n    }\n]\n' % img(sim, "a.img")))
    assert "disks" not in sim.domain_config(5)  # check mode
    assert spec_diff["before"] == ""
    assert spec_diff["after"] == "format=raw,vdev=xvdb,access=rw,backendtype=phy,target=%s\n" % img(sim, "a.img")
    assert "/local/domain/0/backend/vbd/5/51728/params = '%s' (n0,r5)" % img(sim, "a.img") in tree_diff["after"]
    assert tree_diff["before"] == "\n"
    assert value(sim, "/libxl/5/device/vbd") is None


def test_several_guests_in_one_call(sim):
    domains = [{"domain": "guest5", "disks": ["%s,,xvdb" % img(sim, "a.img")]},
               {"domain": "7", "disks": ["%s,qcow2,hda" % img(sim, "g.qcow2"), ",raw,hdc,cdrom"]},
               {"domain": "guest9", "disks": ["%s,,xvda,ro" % img(sim, "c.img")]}]
    first, second, _third, _fourth = four_steps(sim, domains=domains)
    assert [(d["domain"], d["vdev"], d["action"]) for d in second["disks"]] == [
        ("guest5", "xvdb", "attach"), ("guest7", "hda", "attach"), ("guest7", "hdc", "attach"),
        ("guest9", "xvda", "attach")]
    assert value(sim, "/libxl/7/device/vbd/5632/params") == "aio:"


# -- detach, exclusive, keep, force -----------------------------------------------------------
def test_absent_detaches_with_the_guests_cooperation_and_cleans_up(sim):
    xen_disk_run(sim, domain="guest5", disks=["%s,,xvdb" % img(sim, "a.img"), "%s,,xvdc" % img(sim, "b.img")])
    first = xen_disk_run(sim, check=True, domain="guest5", state="absent", disks=["xvdb"])
    assert [(d["vdev"], d["action"], d["needs"]) for d in first["disks"]] == [("xvdb", "detach", "guest_cooperation")]
    second = xen_disk_run(sim, domain="guest5", state="absent", disks=["xvdb"])
    assert second["changed"] is True
    assert (second["disks"][0]["frontend_state"], second["disks"][0]["backend_state"]) == (0, 0)
    assert subtree(sim, "/local/domain/0/backend/vbd/5/51728") == {}
    assert subtree(sim, "/local/domain/5/device/vbd/51728") == {}
    assert subtree(sim, "/libxl/5/device/vbd/51728") == {}
    assert children(sim, "/local/domain/0/backend/vbd/5") == ["51744"]
    third = xen_disk_run(sim, domain="guest5", state="absent", disks=["xvdb", {"vdev": "xvdc"}])
    assert [(d["vdev"], d["action"]) for d in third["disks"]] == [("xvdc", "detach"), ("xvdb", "absent")]
    # the walk-up of empty parents removed the guest's empty kind directories, not ~/device
    assert value(sim, "/local/domain/0/backend/vbd") is None
    assert value(sim, "/local/domain/5/device/vbd") is None
    assert value(sim, "/libxl/5/device") is None
    assert value(sim, "/local/domain/5/device/suspend/event-channel") == ""
    assert xen_disk_run(sim, domain="guest5", state="absent", disks=["xvdb", "xvdc"])["changed"] is False


def test_detach_from_a_driver_domain_waits_for_its_devd(sim):
    spec = "backend=stor2,/dev/vg1/g5data,,xvde"
    xen_disk_run(sim, domain="guest5", disks=[spec])
    settled(sim, "/local/domain/2/backend/vbd/5/51776")
    removed = xen_disk_run(sim, domain="guest5", disks=[spec], state="absent")
    assert not removed.get("failed"), removed
    assert [(d["action"], d["backend_domid"], d["hotplug"]) for d in removed["disks"]] == [("detach", 2, "none")]
    assert subtree(sim, "/local/domain/2/backend/vbd") == {}
    assert subtree(sim, "/libxl/5/device") == {}
    # libxl's path_cleanup walks up the empty parents, up to the driver domain's own directory
    assert value(sim, "/local/domain/2/backend") is None
    assert value(sim, "/local/domain/2/name") == "stor2"


def test_detach_without_wait_removes_at_once(host):
    xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")], wait=False)
    removed = xen_disk_run(host, domain="guest5", disks=["xvdb"], state="absent", wait=False)
    assert removed["changed"] is True and not removed.get("failed")
    assert subtree(host, "/libxl/5/device") == {}
    assert subtree(host, "/local/domain/0/backend/vbd") == {}


def test_exclusive_detaches_undeclared_disks_except_keep(sim):
    disks = ["%s,,xvda" % img(sim, "a.img"), "%s,,xvdb" % img(sim, "b.img"), "%s,,xvdc" % img(sim, "c.img")]
    xen_disk_run(sim, domain="guest5", disks=disks)
    args = dict(domain="guest5", disks=[disks[1]], exclusive=True, keep=["d0p0"])
    check = xen_disk_run(sim, check=True, **args)
    assert [(d["vdev"], d["action"]) for d in check["disks"]] == [("xvdc", "detach"), ("xvdb", "unchanged")]
    applied = xen_disk_run(sim, **args)
    assert applied["changed"] is True
    assert children(sim, "/libxl/5/device/vbd") == ["51712", "51728"]
    assert xen_disk_run(sim, **args)["changed"] is False


def test_detach_without_the_guests_answer_fails(host):
    with backend_sim.running(host.socket, "connect"):
        xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
        settled(host, "/local/domain/0/backend/vbd/5/51728")
    with backend_sim.running(host.socket, "never"):
        result = xen_disk_run(host, domain="guest5", state="absent", disks=["xvdb"], timeout=0.5)
    assert result["failed"] is True
    assert result["msg"] == (
        "disks[0] (xvdb): timed out after 0.5 s waiting for the backend to close "
        "(/local/domain/0/backend/vbd/5/51728/state: 5 (Closing)): the guest did not release the disk; "
        "force=true removes it without the guest's cooperation")
    # left as libxl leaves a failed safe remove: online=0, state=5, everything else in place
    assert value(host, "/local/domain/0/backend/vbd/5/51728/online") == "0"
    assert value(host, "/libxl/5/device/vbd/51728/online") == "1"
    assert value(host, "/local/domain/5/device/vbd/51728/state") == "4"
    # the guest still holds the disk: not stale, so a run without force never cleans up under it
    check = xen_disk_run(host, check=True, domain="guest5", state="absent", disks=["xvdb"])
    assert [(d["action"], d["stale"], d["needs"]) for d in check["disks"]] == [
        ("detach", [], "guest_cooperation")]
    before = devices(host, 5)
    present = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
    assert present["failed"] is True
    assert [(d["action"], d["needs"]) for d in present["disks"]] == [("recreate", "force")]
    assert devices(host, 5) == before
    assert present["msg"] == (
        "disks[0]: a detach of xvdb is in progress: its backend is Closing and the guest has not released "
        "the disk (frontend Connected); once the guest releases it, the next run attaches it again; "
        "force=true removes it without the guest's cooperation and attaches it again")
    with backend_sim.running(host.socket, "never"):
        again = xen_disk_run(host, domain="guest5", state="absent", disks=["xvdb"], timeout=0.5)
    assert again["failed"] is True and again["msg"] == result["msg"]
    assert value(host, "/local/domain/5/device/vbd/51728/state") == "4"
    assert value(host, "/libxl/5/device/vbd/51728/dev") == "xvdb"


def test_force_attaches_again_a_disk_whose_detach_is_unfinished(host):
    with backend_sim.running(host.socket, "connect"):
        xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
        settled(host, "/local/domain/0/backend/vbd/5/51728")
    with backend_sim.running(host.socket, "never"):
        xen_disk_run(host, domain="guest5", state="absent", disks=["xvdb"], timeout=0.5)
    assert value(host, "/local/domain/0/backend/vbd/5/51728/state") == "5"
    disks = ["%s,,xvdb" % img(host, "a.img")]
    check = xen_disk_run(host, check=True, domain="guest5", disks=disks, force=True)
    assert [(d["action"], d["needs"], d["error"]) for d in check["disks"]] == [("recreate", "force", None)]
    with backend_sim.running(host.socket, "never"):
        forced = xen_disk_run(host, domain="guest5", disks=disks, force=True, timeout=0.5)
    # the frontend went first (FORCE_ON), then the whole disk was written again
    assert forced["changed"] is True
    assert value(host, "/local/domain/0/backend/vbd/5/51728/online") == "1"
    assert value(host, "/local/domain/5/device/vbd/51728/state") == "1"
    with backend_sim.running(host.socket, "connect"):
        settled(host, "/local/domain/0/backend/vbd/5/51728")
        assert xen_disk_run(host, domain="guest5", disks=disks)["changed"] is False


def test_a_detach_the_guest_finishes_lets_the_next_run_attach(host):
    with backend_sim.running(host.socket, "connect"):
        xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
        settled(host, "/local/domain/0/backend/vbd/5/51728")
    with backend_sim.running(host.socket, "never"):
        xen_disk_run(host, domain="guest5", state="absent", disks=["xvdb"], timeout=0.5)
    with backend_sim.running(host.socket, "connect"):   # the guest and the backend answer now
        settled(host, "/local/domain/0/backend/vbd/5/51728", state="6")
        applied = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
        assert not applied.get("failed"), applied
        assert [(d["action"], d["stale"]) for d in applied["disks"]] == [
            ("attach", ["/libxl/5/device/vbd/51728: backend Closed"])]
        settled(host, "/local/domain/0/backend/vbd/5/51728")
        assert xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])["changed"] is False
    assert value(host, "/local/domain/0/backend/vbd/5/51728/online") == "1"


def test_force_removes_without_the_guests_answer(host):
    with backend_sim.running(host.socket, "connect"):
        xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")])
        settled(host, "/local/domain/0/backend/vbd/5/51728")
    with backend_sim.running(host.socket, "never"):
        check = xen_disk_run(host, check=True, domain="guest5", state="absent", disks=["xvdb"], force=True)
        assert [(d["action"], d["needs"]) for d in check["disks"]] == [("detach", "force")]
        forced = xen_disk_run(host, domain="guest5", state="absent", disks=["xvdb"], force=True, timeout=0.5)
    assert forced["changed"] is True and not forced.get("failed"), forced
    assert forced["warnings"] == [
        "disks[0] (xvdb): timed out after 0.5 s waiting for the backend to close "
        "(/local/domain/0/backend/vbd/5/51728/state: 5 (Closing)); removed without the backend's answer"]
    assert subtree(host, "/libxl/5/device") == {}
    assert subtree(host, "/local/domain/0/backend/vbd") == {}
    assert subtree(host, "/local/domain/5/device/vbd") == {}


def test_attach_times_out_when_no_backend_answers(host):
    with backend_sim.running(host.socket, "never"):
        result = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")], timeout=0.5)
    assert result["failed"] is True
    assert result["changed"] is True
    assert result["msg"] == (
        "disks[0] (xvdb): timed out after 0.5 s waiting for the backend to reach InitWait "
        "(/local/domain/0/backend/vbd/5/51728/state: 1 (Initialising)): is the backend driver running "
        "(blkback, QEMU, the virtio daemon)? The entries stay, as libxl leaves them")
    assert value(host, "/libxl/5/device/vbd/51728/dev") == "xvdb"


def test_qdisk_nothing_serves_fails_naming_the_disk(host):
    # libxl does not wait for QEMU backends, so a qcow2 nothing serves (no QEMU for the guest, or
    # QEMU refusing it) would look attached; the module waits for InitWait and says so
    spec = "%s,qcow2,xvdc" % img(host, "g.qcow2")
    result = xen_disk_run(host, domain="guest5", disks=[spec], timeout=0.5)
    assert result.get("failed") and result["changed"] is True
    assert result["msg"].startswith(
        "disks[0] (xvdc): timed out after 0.5 s waiting for the backend to reach InitWait "
        "(/local/domain/0/backend/qdisk/5/51744/state: 1 (Initialising)): nothing serves this disk"), result["msg"]
    assert result["disks"][0]["backend_state"] == 1
    # the entries stay, as libxl leaves them; a next run waits again, and fails again
    assert value(host, "/libxl/5/device/vbd/51744/dev") == "xvdc"
    again = xen_disk_run(host, domain="guest5", disks=[spec], timeout=0.5)
    assert again.get("failed") and "nothing serves this disk" in again["msg"]
    # once a QEMU serves it, the same declaration completes
    with backend_sim.running(host.socket, "connect"):
        served = xen_disk_run(host, domain="guest5", disks=[spec], timeout=5)
    assert not served.get("failed"), served
    assert served["disks"][0]["backend_state"] >= 2


def test_qdisk_attach_while_creating_does_not_wait_for_qemu(host):
    # a guest being created: its QEMU starts after the disks are written, as libxl does it
    result = xen_disk_run(host, domain="guest5", disks=["%s,qcow2,xvdc" % img(host, "g.qcow2")], timeout=0.5,
                          creating=True)
    assert not result.get("failed") and result["changed"] is True
    assert result["disks"][0]["backend_state"] == 1


def test_slow_backend_is_waited_for(host):
    with backend_sim.running(host.socket, "slow", delay=0.3):
        result = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")], timeout=5)
    assert not result.get("failed"), result
    assert result["disks"][0]["backend_state"] >= 2


def test_wait_false_writes_and_returns(host):
    result = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % img(host, "a.img")], wait=False)
    assert not result.get("failed") and result["disks"][0]["backend_state"] == 1


# -- recreate, media change, stale ------------------------------------------------------------
def test_changed_settings_need_recreate(sim):
    xen_disk_run(sim, domain="guest5", disks=["%s,,xvdb,rw" % img(sim, "a.img")])
    # both ends Connected: the snapshot below must not race the simulated guest (3 -> 4 under load)
    settled(sim, "/local/domain/0/backend/vbd/5/51728", "/local/domain/5/device/vbd/51728")
    before = devices(sim, 5)
    refused = xen_disk_run(sim, domain="guest5", disks=["%s,,xvdb,ro" % img(sim, "b.img")])
    assert refused["failed"] is True
    assert refused["msg"] == (
        "disks[0]: access, discard, target differ from the attached disk (libxl record: "
        "discard-enable '1' -> '0', mode 'w' -> 'r', params '%s' -> '%s'); changing them needs a detach "
        "and an attach: set recreate=true to do that" % (img(sim, "a.img"), img(sim, "b.img")))
    assert [(d["action"], d["needs"]) for d in refused["disks"]] == [("recreate", "recreate")]
    assert devices(sim, 5) == before
    args = dict(domain="guest5", disks=["%s,,xvdb,ro" % img(sim, "b.img")], recreate=True)
    check = xen_disk_run(sim, check=True, **args)
    assert [(d["action"], d["needs"], d["differing"]) for d in check["disks"]] == [
        ("recreate", "guest_cooperation", ["access", "discard", "target"])]
    applied = xen_disk_run(sim, **args)
    assert applied["changed"] is True and not applied.get("failed"), applied
    assert value(sim, "/local/domain/0/backend/vbd/5/51728/mode") == "r"
    assert value(sim, "/libxl/5/device/vbd/51728/params") == img(sim, "b.img")
    assert xen_disk_run(sim, **args)["changed"] is False


def test_cdrom_media_change_in_place(sim):
    """The xenstore side, for a qemu-traditional guest (no QMP: test_qmp_media_change.py has QEMU)."""
    with launcher.WireClient(sim.socket) as client:
        client.write("/libxl/7/dm-version", "qemu_xen_traditional")
    xen_disk_run(sim, domain="guest7", disks=[",raw,hdc,cdrom"])
    settled(sim, "/local/domain/0/backend/qdisk/7/5632")
    inserted = xen_disk_run(sim, domain="guest7", disks=["%s,raw,hdc,cdrom" % img(sim, "d.iso")])
    assert [(d["action"], d["differing"]) for d in inserted["disks"]] == [("media_change", ["target"])]
    for base in ("/local/domain/0/backend/qdisk/7/5632", "/libxl/7/device/vbd/5632"):
        assert value(sim, base + "/params") == "aio:" + img(sim, "d.iso")
        assert value(sim, base + "/type") == "qdisk"
    assert value(sim, "/local/domain/0/backend/qdisk/7/5632/state") == "4"  # not re-plugged
    assert xen_disk_run(sim, domain="guest7", disks=["%s,raw,hdc,cdrom" % img(sim, "d.iso")])["changed"] is False
    ejected = xen_disk_run(sim, domain="guest7", disks=[",raw,hdc,cdrom"])
    assert [d["action"] for d in ejected["disks"]] == ["media_change"]
    assert value(sim, "/libxl/7/device/vbd/5632/params") == ""
    assert xen_disk_run(sim, domain="guest7", disks=[",raw,hdc,cdrom"])["changed"] is False


def test_stale_entries_are_cleaned_before_an_attach(sim):
    xen_disk_run(sim, domain="guest5", disks=["%s,,xvdb" % img(sim, "a.img")])
    with launcher.WireClient(sim.socket) as client:  # a backend left Closed by a crashed detach
        client.write("/local/domain/0/backend/vbd/5/51728/online", "0")
        client.write("/local/domain/0/backend/vbd/5/51728/state", "6")
    check = xen_disk_run(sim, check=True, domain="guest5", disks=["%s,,xvdb" % img(sim, "a.img")])
    assert [(d["action"], d["stale"]) for d in check["disks"]] == [
        ("attach", ["/libxl/5/device/vbd/51728: backend Closed"])]
    applied = xen_disk_run(sim, domain="guest5", disks=["%s,,xvdb" % img(sim, "a.img")])
    assert applied["stale"] == [{"domain": "guest5", "domid": 5, "entry": "xvdb", "cleaned": True,
                                 "reasons": ["/libxl/5/device/vbd/51728: backend Closed"]}]
    assert value(sim, "/local/domain/0/backend/vbd/5/51728/online") == "1"
    assert xen_disk_run(sim, domain="guest5", disks=["%s,,xvdb" % img(sim, "a.img")])["changed"] is False


# -- concurrency ----------------------------------------------------------------------------
def test_concurrent_writer_during_apply(sim):
    """Another client keeps writing in the directories the module reads and writes (the records'
    and backends' parents): the run succeeds (re-reading or re-planning when its reads or
    transactions conflict), the result is exactly the declaration and the foreign nodes stay."""
    stop, started = threading.Event(), threading.Event()
    writes = []
    pauses = random.Random(360)

    def writer():
        with launcher.WireClient(sim.socket) as client:
            while True:
                for domid in (5, 9):
                    client.write("/local/domain/0/backend/vbd/%d/99" % domid, str(len(writes)))
                    client.write("/libxl/%d/device/vbd/99" % domid, str(len(writes)))
                writes.append(1)
                started.set()
                # irregular pauses: a writer that never leaves a gap as long as a transaction on
                # a loaded machine would starve any bounded retry, which is not what this tests
                if stop.wait(pauses.uniform(0.05, 0.4)):
                    return

    domains = [{"domain": name, "disks": ["%s,,xvd%s,ro" % (img(sim, "a.img"), c) for c in "abcdefgh"]}
               for name in ("guest5", "guest9")]
    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(10)
    try:
        result = xen_disk_run(sim, domains=domains)
    finally:
        stop.set()
        thread.join()
    assert not result.get("failed"), result
    assert len(writes) >= 1
    assert [d["action"] for d in result["disks"]] == ["attach"] * 16
    assert value(sim, "/local/domain/0/backend/vbd/5/99") is not None  # foreign node kept
    again = xen_disk_run(sim, domains=domains)
    assert again["changed"] is False, again
    assert sorted(children(sim, "/libxl/5/device/vbd")) == ["51712", "51728", "51744", "51760", "51776",
                                                            "51792", "51808", "51824", "99"]


def test_a_change_during_the_read_is_seen(sim):
    """xenstore changes while the host is being read (here: another client rewrites the
    toolstack's record of xvda at the moment libxl's stat of the target runs, after the record
    was read): the read is redone and the plan is made on what xenstore holds, not on a torn view."""
    from ansible_collections.xen.disks.plugins.module_utils._io.dom0 import stat_target
    from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError
    from ansible_collections.xen.disks.plugins.module_utils._runs.live import run_xen_disk

    spec = "%s,,xvda" % img(sim, "a.img")
    xen_disk_run(sim, domain="guest5", disks=[spec])
    calls = []

    def stat_and_interfere(path):
        if not calls:
            with launcher.WireClient(sim.socket) as client:
                client.write("/libxl/5/device/vbd/51712/mode", "r")
        calls.append(path)
        return stat_target(path)

    params = {"domain": "guest5", "disks": [spec], "state": "present", "exclusive": False, "keep": [],
              "recreate": False, "force": False, "creating": False, "backend": None, "width": 64,
              "domains": None, "wait": True, "timeout": 5, "hotplug_scripts": "skip",
              "script_dir": "/etc/xen/scripts", "arch": "x86", "xenstore_socket": sim.socket}
    with pytest.raises(ReconcileError) as raised:
        run_xen_disk(params, check_mode=True, stat=stat_and_interfere)
    assert len(calls) == 2  # the snapshot was read twice
    assert str(raised.value) == (
        "disks[0]: access differs from the attached disk (libxl record: mode 'r' -> 'w'); "
        "changing it needs a detach and an attach: set recreate=true to do that")


# -- hotplug scripts ------------------------------------------------------------------------
HOTPLUG_SCRIPT = """#!/bin/sh
echo "$1 script=$script XENBUS_TYPE=$XENBUS_TYPE XENBUS_PATH=$XENBUS_PATH XENBUS_BASE_PATH=$XENBUS_BASE_PATH" >> {log}
if [ "$1" = add ]; then
  xenstore-write "$XENBUS_PATH/physical-device" 7:0 "$XENBUS_PATH/hotplug-status" connected
fi
exit {status}
"""


def _script(tmp_path, status=0):
    path = tmp_path / "block-test"
    path.write_text(HOTPLUG_SCRIPT.format(log=tmp_path / "calls.log", status=status))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_hotplug_script_runs_where_libxl_would(host, tmp_path):
    script = _script(tmp_path)
    spec = "%s,,xvdb,script=%s" % (img(host, "a.img"), script)
    # no udev: the simulated blkback connects only once the script wrote physical-device
    with backend_sim.running(host.socket, "connect", udev=False):
        added = xen_disk_run(host, domain="guest5", disks=[spec], hotplug_scripts="run")
        assert added["disks"][0]["hotplug"] == "ran", added
        settled(host, "/local/domain/0/backend/vbd/5/51728")
        assert value(host, "/local/domain/0/backend/vbd/5/51728/physical-device") == "7:0"
        removed = xen_disk_run(host, domain="guest5", disks=[spec], state="absent", hotplug_scripts="run")
        assert removed["disks"][0]["hotplug"] == "ran", removed
    env = "script=%s XENBUS_TYPE=vbd XENBUS_PATH=backend/vbd/5/51728 XENBUS_BASE_PATH=backend" % script
    assert (tmp_path / "calls.log").read_text().splitlines() == ["add " + env, "remove " + env]


# Each `add` marks its start, then waits (at most 20 s) for the other disk's script to have
# started too: run one after the other, the first would fail.
RENDEZVOUS_SCRIPT = """#!/bin/sh
dir={dir}
if [ "$1" = add ]; then
  touch "$dir/started-${{XENBUS_PATH##*/}}"
  i=0
  while [ "$(ls "$dir" | grep -c '^started-')" -lt 2 ]; do
    i=$((i + 1)); [ $i -gt 200 ] && exit 9
    sleep 0.1
  done
  xenstore-write "$XENBUS_PATH/physical-device" 7:0 "$XENBUS_PATH/hotplug-status" connected
fi
"""


def test_the_hotplug_scripts_of_a_run_run_concurrently(host, tmp_path):
    """As libxl runs a new domain's disk scripts: the block script takes its own lock where it
    must, and eight disks' scripts one after another took longer than xl on the real host."""
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    script = tmp_path / "block-rendezvous"
    script.write_text(RENDEZVOUS_SCRIPT.format(dir=rendezvous))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    specs = ["%s,,%s,script=%s" % (img(host, name + ".img"), name, script) for name in ("xvdb", "xvdc")]
    with backend_sim.running(host.socket, "connect", udev=False):
        result = xen_disk_run(host, domain="guest5", disks=specs, hotplug_scripts="run")
    assert result.get("failed") is not True, result
    assert [d["hotplug"] for d in result["disks"]] == ["ran", "ran"]
    assert sorted(os.listdir(rendezvous)) == ["started-51728", "started-51744"]


def test_hotplug_policy_auto_leaves_udev_alone_and_skip_never_runs(host, tmp_path):
    script = _script(tmp_path)
    with backend_sim.running(host.socket, "connect"):  # udev ran the script at probe time
        auto = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb,script=%s" % (img(host, "a.img"), script)],
                            hotplug_scripts="auto")
        skipped = xen_disk_run(host, domain="guest5", disks=["%s,,xvdc,script=%s" % (img(host, "b.img"), script)],
                               hotplug_scripts="skip")
    assert [d["hotplug"] for d in auto["disks"]] == ["udev"]
    assert [d["hotplug"] for d in skipped["disks"] if d["action"] == "attach"] == ["skipped"]
    assert not (tmp_path / "calls.log").exists()


def test_failing_hotplug_script_fails_the_attach(host, tmp_path):
    script = _script(tmp_path, status=3)
    with backend_sim.running(host.socket, "connect", udev=False):
        result = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb,script=%s" % (img(host, "a.img"), script)],
                              hotplug_scripts="run")
    assert result["failed"] is True
    assert result["msg"] == "disks[0] (xvdb): hotplug script failed: %s add exited with status 3" % script


def test_missing_script_is_reported_under_auto(host):
    with backend_sim.running(host.socket, "connect", udev=False):
        result = xen_disk_run(host, domain="guest5", disks=["%s,,xvdb,script=/nonexistent/block" % img(host, "a.img")],
                              hotplug_scripts="auto")
    assert result["warnings"] == ["disks[0] (xvdb): hotplug script /nonexistent/block is not on this host: "
                                  "not run (add)"]
    assert result["disks"][0]["hotplug"] == "skipped"


# -- bad input: exact messages, nothing written ---------------------------------------------------
def _bad_cases():
    return [
        ("duplicate vdev", dict(domain="guest5", disks=["{a},,xvdb", "{b},,xvdb"]),
         "disks[1].vdev: 'xvdb' is the same device as disks[0] ('xvdb', device number 51728)"),
        ("alias", dict(domain="guest5", disks=["{a},,xvda", "{b},,d0p0,ro"]),
         "disks[1].vdev: 'd0p0' is the same device as disks[0] ('xvda', device number 51712)"),
        ("missing target", dict(domain="guest5", disks=["{a},,xvda", "/nonexistent/x.img,,xvdb"]),
         "disks[1].target: Disk vdev=xvdb failed to stat: /nonexistent/x.img"),
        ("virtio hot-plug", dict(domain="guest3", disks=["{a},raw,xvda,w,specification=virtio"]),
         "disks[0]: a virtio disk cannot be hot-plugged (libxl: virtio disks exist only from the guest's "
         "creation); declare it in the guest's configuration and restart the guest"),
        ("unknown domain", dict(domain="nope", disks=[]), "domain: no domain named 'nope' on this host"),
        ("dom0", dict(domain="0", disks=[]),
         "domain: dom0's disks are not managed (libxl's local attach owns /libxl/0)"),
        ("unknown backend", dict(domain="guest5", disks=["backend=stor9,/dev/x,,xvdb"]),
         "disks[0].backend: unknown backend domain 'stor9'"),
        ("shared read-write", dict(domains=[{"domain": "guest5", "disks": ["{a},,xvdb"]},
                                            {"domain": "guest9", "disks": ["{a},,xvdc,ro"]}]),
         "domains[1].disks[0].target: '{a}' is also attached by domains[0].disks[0] (guest 5), read-write "
         "there and read-only here: Xen's block hotplug script refuses to share a device that one guest "
         "writes (hotplug-status busy) and QEMU's qdisk does not check, so the data would be corrupted or "
         "read while it changes"),
        ("same guest twice", dict(domains=[{"domain": "guest5", "disks": []}, {"domain": "5", "disks": []}]),
         "domains[1].domain: domain 5 is already declared by domains[0].domain"),
    ]


@pytest.mark.parametrize("name, args, message", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_fails_with_its_message_and_writes_nothing(host, name, args, message):
    a, b = img(host, "a.img"), img(host, "b.img")

    def fill(item):
        if isinstance(item, str):
            return item.format(a=a, b=b)
        if isinstance(item, list):
            return [fill(i) for i in item]
        if isinstance(item, dict):
            return {k: fill(v) for k, v in item.items()}
        return item

    before = devices(host, 3, 5, 7, 9)
    result = xen_disk_run(host, **fill(args))
    assert result["failed"] is True
    assert result["msg"] == fill(message)
    assert devices(host, 3, 5, 7, 9) == before


def test_all_errors_of_all_disks_are_reported_together(host):
    result = xen_disk_run(host, domain="guest5", disks=[
        "%s,,xvdb" % img(host, "a.img"), "/nonexistent,,xvdc", "target=/x,vdev=xvdzzzzzzzz", "%s,bogus,xvdd" % img(host, "b.img")])
    assert result["failed"] is True
    lines = result["msg"].splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["disks[1].target", "disks[2].vdev", "disks[3].format"]
    assert subtree(host, "/libxl/5/device") == {"/libxl/5/device": ("", ("n0",))}


def test_no_xenstore(tmp_path):
    from ansible_collections.xen.disks.plugins.modules import xen_disk
    from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import run_module

    result = run_module(xen_disk.main, {"domain": "guest5", "xenstore_socket": str(tmp_path / "socket")})
    assert result["failed"] is True
    assert result["msg"] == "xenstore socket %s does not exist: is xenstored running? is this a dom0?" % (
        tmp_path / "socket")


def test_domain_and_domains_are_exclusive(host):
    result = xen_disk_run(host, domain="guest5", domains=[{"domain": "guest9"}])
    assert result["failed"] is True
    assert result["msg"] == "parameters are mutually exclusive: domain|domains"


def test_environment_socket(host, monkeypatch):
    monkeypatch.setenv("XENSTORED_PATH", host.socket)
    from ansible_collections.xen.disks.plugins.modules import xen_disk
    from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import run_module

    result = run_module(xen_disk.main, {"domain": "guest5", "disks": ["%s,,xvdb" % img(host, "a.img")],
                                        "wait": False}, check=True)
    assert result["changed"] is True
    assert os.environ["XENSTORED_PATH"] == host.socket


def test_a_forced_recreate_beside_new_disks_keeps_their_frontends(sim):
    """One run: xvdc re-created by force (its frontend removed, FORCE_ON) while xvdb and xvdd are
    attached. The forced removal's walk-up of empty parents is planned on the transaction's own
    view, not on the snapshot (where device/vbd held only xvdc): it used to remove device/vbd with
    the new xvdb frontend in it."""
    first = xen_disk_run(sim, domain="guest5", disks=["%s,raw,xvdc,rw" % img(sim, "a.img")])
    assert not first.get("failed"), first
    settled(sim, "/local/domain/0/backend/vbd/5/51744")
    declared = ["%s,raw,xvdb,rw" % img(sim, "b.img"), "%s,raw,xvdc,rw" % img(sim, "c.img"),
                "%s,raw,xvdd,ro" % img(sim, "d.iso")]
    result = xen_disk_run(sim, domain="guest5", disks=declared, exclusive=True, recreate=True, force=True)
    assert not result.get("failed"), result
    assert [(d["vdev"], d["action"]) for d in result["disks"]] == [("xvdb", "attach"), ("xvdc", "recreate"),
                                                                   ("xvdd", "attach")]
    for vdev, devid in (("xvdb", 51728), ("xvdc", 51744), ("xvdd", 51760)):
        for path in ("/local/domain/5/device/vbd/%d" % devid, "/local/domain/0/backend/vbd/5/%d" % devid,
                     "/libxl/5/device/vbd/%d" % devid):
            assert children(sim, path), (vdev, path)  # every directory, with its nodes
    again = xen_disk_run(sim, check=True, domain="guest5", disks=declared, exclusive=True)
    assert again["changed"] is False, again
