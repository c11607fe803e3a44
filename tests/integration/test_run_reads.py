# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a xen_disk run reads of the host, from the real xenstored's own request trace (nothing of
the module is instrumented): the guests it names, not the host.

- A run that names some guests sends no request about any other guest's disks (only the
  domain names, which resolve the guests it names).
- A run that puts a target into a backend also applies the read-write sharing rule to the
  whole host, with one read per disk record of the other guests (`params`) and one listing
  per kind of disk record per domain; only a record whose `params` may name a declared target
  is read whole (and its backend's state), and the rule still refuses it.
"""

from __future__ import annotations

import collections
import re

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import xen_disk_run
from ansible_collections.xen.disks.tests.xenstored import launcher

pytestmark = pytest.mark.xenstored

OTHER = 7  # the guest the runs do not name
OTHER_VDEVS = ("xvda", "xvdb", "xvdc")


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest7", OTHER, "pv")
    xenstored.images = tmp_path
    for name in ["g5-a", "g5-b", "shared"] + ["g7-%s" % v for v in OTHER_VDEVS]:
        with open(tmp_path / (name + ".img"), "wb") as handle:
            handle.truncate(1 << 20)
    return xenstored


def _image(host, name):
    return str(host.images / (name + ".img"))


def _traced(host, **args):
    with launcher.request_trace(host.socket, str(host.images / "trace.log")) as requests:
        result = xen_disk_run(host, wait=False, **args)
    return result, requests


def _about(path, domid):
    """Whether a request path is about guest `domid`'s disks or domain (its libxl records, its
    backends in any backend domain, its frontends and domain nodes)."""
    return bool(re.match(r"^/libxl/%d(/|$)|^/local/domain/%d(/|$)|^/local/domain/\d+/backend/[^/]+/%d(/|$)"
                         % (domid, domid, domid), path))


def _other_guest_requests(requests):
    return collections.Counter((op, re.sub(r"/\d+(?=/|$)", "/N", path)) for _conn, op, path in requests
                               if _about(path, OTHER))


def _attach_other(host, target_of=None, backendtype="phy"):
    disks = ["%s,raw,%s,rw,backendtype=%s" % ((target_of or {}).get(v) or _image(host, "g7-" + v), v, backendtype)
             for v in OTHER_VDEVS]
    result = xen_disk_run(host, domain="guest7", disks=disks, wait=False)
    assert result["changed"] and not result.get("failed"), result


def test_a_no_op_naming_a_guest_reads_nothing_of_the_others(host):
    _attach_other(host)
    disks = ["%s,raw,xvda,rw" % _image(host, "g5-a")]
    assert not xen_disk_run(host, domain="guest5", disks=disks, wait=False).get("failed")
    result, requests = _traced(host, domain="guest5", disks=disks)
    assert result["changed"] is False and not result.get("failed"), result
    assert requests, "the trace recorded nothing"
    # only the other guest's name, read with every domain's to resolve "guest5"
    assert _other_guest_requests(requests) == {("READ", "/local/domain/N/name"): 1}


def test_an_attach_reads_one_node_per_disk_of_the_others(host):
    _attach_other(host)
    disks = ["%s,raw,xvda,rw" % _image(host, "g5-a"), "%s,raw,xvdb,rw" % _image(host, "g5-b")]
    result, requests = _traced(host, domain="guest5", disks=disks)
    assert result["changed"] is True and not result.get("failed"), result
    assert _other_guest_requests(requests) == {
        ("READ", "/local/domain/N/name"): 1,
        ("DIRECTORY", "/libxl/N/device/vbd"): 1,
        ("DIRECTORY", "/libxl/N/device/virtio_disk"): 1,
        ("READ", "/libxl/N/device/vbd/N/params"): len(OTHER_VDEVS),  # one read per disk record
    }


@pytest.mark.parametrize("backendtype", ["phy", "qdisk"])
def test_the_sharing_rule_reads_whole_only_the_record_naming_a_declared_target(host, backendtype):
    shared = _image(host, "shared")
    _attach_other(host, {"xvdb": shared}, backendtype)
    disks = ["%s,raw,xvda,rw" % _image(host, "g5-a"), "%s,raw,xvdc,ro" % shared]
    result, requests = _traced(host, domain="guest5", disks=disks)
    assert result.get("failed") and "is already attached to guest %d as xvdb" % OTHER in result["msg"], result
    assert not result.get("changed") and launcher.read_node(host.socket, "/libxl/5/device/vbd/51744") is None
    per_record = collections.defaultdict(collections.Counter)
    for _conn, op, path in requests:
        match = re.match(r"^(/libxl/%d/device/vbd/\d+)(?:/(.*))?$" % OTHER, path)
        if match:
            per_record[match.group(1)][(op, match.group(2))] += 1
    matching = "/libxl/%d/device/vbd/%d" % (OTHER, vdev_to_devid("xvdb"))
    for record, reads in per_record.items():
        if record != matching:  # one read: `params`
            assert reads == {("READ", "params"): 1}, (record, reads)
    # the record that names the declared target: `params`, then the whole record
    whole = per_record[matching]
    assert whole[("DIRECTORY", None)] == 1 and whole[("READ", "params")] == 2, whole
    assert {leaf for (op, leaf) in whole if op == "READ"} >= {"backend", "mode", "type", "dev"}
    # and its backend's state (whether the backend holds the target), no other backend node
    backends = [(op, path) for _conn, op, path in requests if re.match(r"^/local/domain/\d+/backend/[^/]+/%d/" % OTHER, path)]
    assert backends == [("READ", "/local/domain/0/backend/%s/%d/%d/state"
                         % ("vbd" if backendtype == "phy" else "qdisk", OTHER, vdev_to_devid("xvdb")))], backends


def test_a_new_disk_over_directories_left_without_a_record(host):
    """A declared disk without a libxl record is read in two steps (its directories, then their
    nodes when they exist): directories left behind are still seen, reported and replaced."""
    backend = "/local/domain/0/backend/vbd/5/%d" % vdev_to_devid("xvdb")
    with launcher.WireClient(host.socket) as client:
        client.write(backend + "/params", "/stale/path")
        client.write(backend + "/state", "6")
    result = xen_disk_run(host, domain="guest5", disks=["%s,raw,xvdb,rw" % _image(host, "g5-b")], wait=False)
    assert result["changed"] is True and not result.get("failed"), result
    (disk,) = result["disks"]
    assert disk["action"] == "attach" and disk["stale"] == ["%s: left without a libxl record" % backend], disk
    assert launcher.read_node(host.socket, backend + "/params") == _image(host, "g5-b")
