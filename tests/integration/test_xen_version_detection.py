# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules know the host's Xen version as a dom0 shows it: on hosts of the real-xl harness
(tests/xl/), whose mount namespace shows only that version's toolstack as Debian installs it
(/usr/lib/xen-<version>/bin/xl), xen_disk_info and xen_disk report it, the option overrides it
with a warning, and nothing is guessed silently."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.tests.xl import harness

pytestmark = [pytest.mark.xenstored, pytest.mark.xl]


@pytest.fixture(params=harness.XEN_VERSIONS)
def host(request, tmp_path):
    with harness.XlHost(str(tmp_path / "host"), sim_mode=None, xen_version=request.param) as xl_host:
        xl_host.add_guest("guest5", 5, "pv")
        yield xl_host


def test_detected_and_reported(host):
    info = host.module("xen_disk_info", {"domain": "guest5"})
    assert not info.get("failed"), info
    assert info["xen"] == {"version": host.xen_version, "source": "toolstack", "supported": True}
    assert not info.get("warnings")
    check = host.xen_disk(check=True, domain="guest5", disks=["vdev=xvdd,devtype=cdrom,target=/dev/null"])
    assert check["xen"] == info["xen"], check


def test_option_over_another_toolstack_warns(host):
    other = [v for v in harness.XEN_VERSIONS if v != host.xen_version][0]
    info = host.module("xen_disk_info", {"domain": "guest5", "xen_version": other})
    assert info["xen"] == {"version": other, "source": "option", "supported": True}
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in info["warnings"]]  # ansible-core 2.19's form
    assert warnings == ["xen_version %s was given, but the toolstack installed is %s "
                        "(/usr/lib/xen-*/bin/xl): writing what xl %s writes" % (other, host.xen_version, other)]


def test_a_version_not_supported_is_refused_by_the_option(host):
    info = host.module("xen_disk_info", {"domain": "guest5", "xen_version": "4.19"})
    assert info.get("failed") and "xen_version" in info["msg"] and "4.19" in info["msg"], info


def test_empty_pv_cdrom_follows_the_detected_version(host):
    """4.17 serves it with qdisk; on 4.20 (detected, not told) it is refused before writing."""
    before = host.dump("/")
    result = host.xen_disk(domain="guest5", disks=["vdev=xvdd,devtype=cdrom"], wait=False)
    if host.xen_version == "4.17":
        assert not result.get("failed"), result
        assert host.read("/local/domain/0/backend/qdisk/5/51760/params") == "aio:"
    else:
        assert result.get("failed") and "cannot be attached on Xen 4.20" in result["msg"], result
        assert host.dump("/") == before
