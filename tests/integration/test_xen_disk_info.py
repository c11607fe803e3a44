# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.disks.xen_disk_info run for real against the REAL xenstored and the simulated backend."""

from __future__ import annotations

import time

import pytest

from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import xen_disk_info_run, xen_disk_run
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher

pytestmark = pytest.mark.xenstored


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.add_guest("stor2", 2, "pv", driver_domain=True)
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest7", 7, "hvm")
    image = tmp_path / "a.img"
    with open(image, "wb") as handle:
        handle.truncate(4 << 20)
    xenstored.image = str(image)
    return xenstored


def _connected(host, *paths):
    deadline = time.monotonic() + 10
    with launcher.WireClient(host.socket) as client:
        while time.monotonic() < deadline:
            if all(client.read(p + "/state") == "4" for p in paths):
                return
            time.sleep(0.02)
    raise AssertionError("not connected: %s" % (paths,))


def test_one_guest_every_field(host):
    with backend_sim.running(host.socket, "connect"):
        xen_disk_run(host, domain="guest5", disks=["%s,raw,xvdb,ro" % host.image, "backend=stor2,/dev/vg1/x,,xvdc"])
        _connected(host, "/local/domain/0/backend/vbd/5/51728", "/local/domain/2/backend/vbd/5/51744")
    result = xen_disk_info_run(host, domain="guest5")
    assert result["changed"] is False
    (guest,) = result["guests"]
    assert (guest["domain"], guest["domid"], guest["type"], guest["warnings"]) == ("guest5", 5, "pv", [])
    assert guest["specs"] == ["format=raw,vdev=xvdb,access=ro,backendtype=phy,target=%s" % host.image,
                              "format=raw,vdev=xvdc,access=rw,backendtype=phy,backend=stor2,target=/dev/vg1/x"]
    first, second = guest["disks"]
    assert {k: first[k] for k in ("vdev", "devid", "kind", "backend_domid", "backend_kind", "frontend_path",
                                  "backend_path", "frontend_state", "backend_state", "hotplug_status",
                                  "hotplug_error", "warnings")} == {
        "vdev": "xvdb", "devid": 51728, "kind": "vbd", "backend_domid": 0, "backend_kind": "vbd",
        "frontend_path": "/local/domain/5/device/vbd/51728", "backend_path": "/local/domain/0/backend/vbd/5/51728",
        "frontend_state": {"number": 4, "name": "Connected"}, "backend_state": {"number": 4, "name": "Connected"},
        "hotplug_status": "connected", "hotplug_error": None, "warnings": []}
    # what the simulated blkback published for a 4 MiB read-only file
    assert first["published"] == {
        "sectors": 8192, "sector_size": 512, "physical_sector_size": 512, "size_bytes": 4 << 20,
        "info": {"cdrom": False, "removable": False, "readonly": True},
        "features": {"barrier": 1, "discard": 0, "flush-cache": 1, "max-indirect-segments": 256, "persistent": 1}}
    assert first["settings"]["access"] == "ro" and first["settings"]["target"] == host.image
    assert (second["backend_domid"], second["settings"]["backend"]) == (2, "stor2")


def test_every_guest_from_one_read_and_several_by_name_or_id(host):
    xen_disk_run(host, domain="guest7", disks=[",raw,hdc,cdrom"], wait=False)
    everything = xen_disk_info_run(host)
    assert [(g["domid"], g["domain"], len(g["disks"])) for g in everything["guests"]] == [
        (0, "Domain-0", 0), (2, "stor2", 0), (5, "guest5", 0), (7, "guest7", 1)]
    some = xen_disk_info_run(host, domains=["7", "guest5"])
    assert [g["domid"] for g in some["guests"]] == [7, 5]
    (cdrom,) = some["guests"][0]["disks"]
    assert cdrom["spec"] == "format=empty,vdev=hdc,access=ro,devtype=cdrom,backendtype=qdisk"
    assert cdrom["backend_state"] == {"number": 1, "name": "Initialising"}
    assert cdrom["published"] == {}


def test_warnings_stale_and_backend_drift(host):
    xen_disk_run(host, domain="guest5", disks=["%s,,xvdb" % host.image], wait=False)
    with launcher.WireClient(host.socket) as client:
        client.write("/local/domain/0/backend/vbd/5/51728/state", "6")
        client.write("/local/domain/0/backend/vbd/5/51728/mode", "r")
        client.write("/libxl/5/device/virtio_disk/51760/dev", "xvdd")  # a half-written virtio record
    (guest,) = xen_disk_info_run(host, domain="5")["guests"]
    assert guest["warnings"] == [
        "guest 5 has both vbd and virtio_disk records: libxl refuses to list its disks "
        "(\"Invalid configuration, both xen and virtio paths are present\")"]
    vbd, virtio = guest["disks"]
    assert vbd["warnings"] == ["stale: backend Closed",
                               "backend node mode = 'r' differs from libxl's copy 'w'"]
    assert virtio["spec"] is None
    assert virtio["warnings"][0].startswith("stale: half-written libxl record (no backend, ")


@pytest.mark.parametrize("args, message", [
    ({"domain": "nope"}, "domain: no domain named 'nope' on this host"),
    ({"domain": "12"}, "domain: no domain with id 12 on this host"),
    ({"domains": ["guest5", "ghost"]}, "domains[1]: no domain named 'ghost' on this host"),
])
def test_unknown_domains(host, args, message):
    result = xen_disk_info_run(host, **args)
    assert result["failed"] is True
    assert result["msg"] == message
