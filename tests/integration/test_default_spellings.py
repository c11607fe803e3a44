# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A declaration that spells out a libxl default is the same disk everywhere (no false drift):
xen_disk attaches it and then reports it unchanged, xen_disk_info reads back the same canonical
disk as for the plain declaration, `xl_disks_drift` finds the live disk and the file in sync, and
`xl_cfg_set_disks` leaves a file holding the plain spelling as it is. Real modules, real
xenstored, the simulated backend."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.filter.xl_cfg import xl_cfg_set_disks, xl_disks_drift
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    xen_disk_info_run,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.xenstored import backend_sim

pytestmark = pytest.mark.xenstored

# (plain declaration, the same with libxl's defaults spelled out)
SPELLINGS = [
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,discard"),
    ("{a},raw,xvdb,ro", "{a},raw,xvdb,ro,no-discard"),
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,trusted"),
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,specification=xen"),
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,script=block"),
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,backend=0"),
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,backend=Domain-0"),
    ("{a},raw,xvdb,rw", "{a},raw,xvdb,rw,no-colo"),
    ("{a},raw,xvdb,rw", "vdev=xvdb,access=rw,format=raw,discard,trusted,specification=xen,script=block,"
                        "backend=Domain-0,target={a}"),
]


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.add_guest("guest5", 5, "pv")
    image = tmp_path / "a.img"
    with open(image, "wb") as handle:
        handle.truncate(1 << 20)
    xenstored.image = str(image)
    with backend_sim.running(xenstored.socket, "connect"):
        yield xenstored


@pytest.mark.parametrize("plain, spelled", SPELLINGS, ids=[s[1].split(",", 3)[-1] for s in SPELLINGS])
def test_a_spelled_out_default_is_no_difference(host, plain, spelled):
    plain, spelled = plain.format(a=host.image), spelled.format(a=host.image)
    applied = xen_disk_run(host, domain="guest5", disks=[spelled], hotplug_scripts="skip")
    assert not applied.get("failed") and applied["changed"], applied
    again = xen_disk_run(host, domain="guest5", disks=[spelled])
    assert again["changed"] is False and [d["action"] for d in again["disks"]] == ["unchanged"], again
    # the plain declaration is the same disk: nothing to do either
    assert xen_disk_run(host, domain="guest5", disks=[plain], check=True)["changed"] is False

    info = xen_disk_info_run(host, domain="guest5")
    live = info["guests"][0]["disks"]
    assert [d["spec"] for d in live] == [applied["disks"][0]["spec"]]
    for persistent in ([spelled], [plain]):
        drift = xl_disks_drift(live, persistent)
        assert drift["in_sync"], (persistent, drift)

    # a file holding either spelling already means the declared disks: left as it is
    for held, declared in ((plain, spelled), (spelled, plain)):
        text = "name = 'guest5'\ndisk = [ '%s' ]\n" % held
        assert xl_cfg_set_disks(text, [declared]) == text
