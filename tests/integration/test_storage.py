# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage behind the disks, for real: xen_disk creates, grows and inspects images with Debian's
qemu-img, a real xenstored and the simulated backend; loop devices are real (`losetup`); every
size, format and backing file is read back with `qemu-img info`, never through the collection."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time

import pytest

from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    xen_disk_info_run,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.xenstored import backend_sim

pytestmark = [pytest.mark.xenstored,
              pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) is not installed")]

GiB = 1 << 30
MiB = 1 << 20


def qemu_info(path):
    out = subprocess.run(["qemu-img", "info", "--output=json", "-U", path], check=True, capture_output=True)
    return json.loads(out.stdout)


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.add_guest("guest5", 5, "pv")
    xenstored.add_guest("guest6", 6, "pv")
    xenstored.images = tmp_path
    return xenstored


@pytest.fixture
def sim(host):
    with backend_sim.running(host.socket, "connect"):
        yield host


def disk(path, vdev="xvdb", fmt="raw", **storage):
    out = {"vdev": vdev, "target": str(path), "format": fmt}
    out.update(storage)
    return out


def test_create_raw_then_idempotent_check_mode_predicts(sim):
    path = sim.images / "a.img"
    args = dict(domain="guest5", disks=[disk(path, size="20M", mode="0640")])
    checked = xen_disk_run(sim, check=True, diff=True, **args)
    assert checked["changed"] is True, checked
    assert not path.exists()
    assert checked["images"][0]["action"] == "create"
    assert "create raw image %s of 20 MiB" % path in checked["diff"][0]["after"]
    applied = xen_disk_run(sim, **args)
    assert applied["changed"] is True, applied
    assert [(i["action"], i["size_after"]) for i in applied["images"]] == \
        [(i["action"], i["size_after"]) for i in checked["images"]]
    info = qemu_info(path)
    assert (info["format"], info["virtual-size"]) == ("raw", 20 * MiB)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert not [n for n in os.listdir(sim.images) if n.endswith(".tmp")]
    again = xen_disk_run(sim, **args)
    assert again["changed"] is False, again
    assert again["images"][0]["action"] == "unchanged"
