# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's Xen version (_core.xen_version): where it comes from, and that a wrong or missing
one is never silent."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (
    DiskSpecError,
    choose_backend,
    parse_disk_spec,
)
from ansible_collections.xen.disks.plugins.module_utils._core.xen_version import (
    RULES,
    SUPPORTED,
    XenVersion,
    XenVersionError,
    hypervisor_version,
    library_version,
    resolve,
    toolstack_version,
)


def test_supported_versions_have_rules():
    assert SUPPORTED == ("4.17", "4.20")
    assert set(RULES) == set(SUPPORTED)
    assert RULES["4.17"].pv_empty_cdrom_backend == "qdisk"
    assert RULES["4.20"].pv_empty_cdrom_backend is None
    assert RULES["4.17"].insert_first_params("/srv/a.iso") == ""
    assert RULES["4.20"].insert_first_params("/srv/a.iso") == "/srv/a.iso"
    assert RULES["4.20"].insert_first_params("") == ""


@pytest.mark.parametrize("facts, version, source", [
    (dict(hypervisor="4.20", toolstacks=["4.17", "4.20"], libraries=["4.17"]), "4.20", "hypervisor"),
    (dict(toolstacks=["4.20"], libraries=["4.17", "4.20"]), "4.20", "toolstack"),
    (dict(toolstacks=["4.17", "4.17"]), "4.17", "toolstack"),
    (dict(libraries=["4.17"]), "4.17", "libxenlight"),
    (dict(option="4.17", toolstacks=[]), "4.17", "option"),
    (dict(option="4.20", hypervisor="4.20"), "4.20", "option"),
])
def test_where_the_version_comes_from(facts, version, source):
    found, warnings = resolve(**facts)
    assert (found.version, found.source, found.supported) == (version, source, True)
    assert warnings == []
    assert found.rules("anything") is RULES[version]
    assert found.as_result() == {"version": version, "source": source, "supported": True}


@pytest.mark.parametrize("facts, version, problem", [
    (dict(), None, "no running hypervisor"),
    (dict(toolstacks=["4.17", "4.20"]), None, "several toolstacks are installed (4.17, 4.20)"),
    (dict(libraries=["4.17", "4.20"]), None, "several libxenlight versions"),
    (dict(hypervisor="4.19"), "4.19", "Xen 4.19 (hypervisor) is not a version xen.disks is tested with"),
    (dict(toolstacks=["4.21"]), "4.21", "Xen 4.21 (toolstack) is not"),
])
def test_unknown_or_untested_fails_the_decision_that_needs_it(facts, version, problem):
    found, _warnings = resolve(**facts)
    assert found.version == version and not found.supported
    assert problem in found.problem
    with pytest.raises(XenVersionError) as err:
        found.rules("an empty cdrom of a PV guest")
    message = str(err.value)
    assert message.startswith("an empty cdrom of a PV guest depends on the Xen version, and ")
    assert problem in message and "set the option xen_version (4.17 or 4.20" in message


def test_option_contradicting_the_running_hypervisor_fails():
    with pytest.raises(XenVersionError, match=r"xen_version: 4\.17 was given, but this dom0 runs Xen 4\.20"):
        resolve(option="4.17", hypervisor="4.20")


def test_option_over_another_installed_toolstack_warns():
    found, warnings = resolve(option="4.20", toolstacks=["4.17"])
    assert found.version == "4.20"
    assert warnings == ["xen_version 4.20 was given, but the toolstack installed is 4.17 "
                        "(/usr/lib/xen-*/bin/xl): writing what xl 4.20 writes"]


@pytest.mark.parametrize("option", ["4.19", "4.20.4", "420", "", "4.2"])
def test_option_must_be_a_supported_version(option):
    with pytest.raises(XenVersionError, match="is not a supported Xen version"):
        resolve(option=option)


def test_facts_are_read_from_debian_names():
    assert toolstack_version("/usr/lib/xen-4.20/bin/xl") == "4.20"
    assert toolstack_version("/usr/lib/xen-common/bin/xl") is None
    assert library_version("libxenlight.so.4.17") == "4.17"
    assert library_version("libxenlight.so.4.17.0") == "4.17"
    assert library_version("libxenlight-4.20.so") == "4.20"
    assert library_version("libxenlight.so") is None
    assert hypervisor_version("4\n", "20\n") == "4.20"
    assert hypervisor_version("", "20") is None


def _backend(spec, guest_type, xen):
    return choose_backend(parse_disk_spec(spec), backend_domid=0, target_kind="unknown", guest_type=guest_type,
                          xen=xen)


@pytest.mark.parametrize("spec", ["vdev=xvdd,devtype=cdrom", ",raw,xvdd,cdrom", ",,xvdd:cdrom"])
@pytest.mark.parametrize("guest_type", ["pv", "pvh"])
def test_empty_pv_cdrom_backend_per_version(spec, guest_type):
    assert _backend(spec, guest_type, None) == "qdisk"  # no host known: libxl 4.17's choice
    assert _backend(spec, guest_type, XenVersion("4.17", "toolstack")) == "qdisk"
    with pytest.raises(DiskSpecError) as err:
        _backend(spec, guest_type, XenVersion("4.20", "toolstack"))
    assert str(err.value) == (
        "backendtype: Disk vdev=xvdd, an empty cdrom of a PV or PVH guest cannot be attached on Xen 4.20: its "
        "libxl gives it the phy backend without a medium, which the block hotplug script refuses (xl "
        "block-attach fails the same way); give the cdrom a target (an image), or attach it to an HVM guest")
    unknown, _warnings = resolve()
    with pytest.raises(DiskSpecError, match=r"^backendtype: an empty cdrom of a PV or PVH guest \(vdev=xvdd\) "
                                            r"depends on the Xen version, and no running hypervisor"):
        _backend(spec, guest_type, unknown)


def test_what_4_20_still_attaches():
    v420 = XenVersion("4.20", "hypervisor")
    assert _backend("vdev=hdc,devtype=cdrom", "hvm", v420) == "qdisk"           # HVM: as 4.17
    assert _backend("/srv/a.iso,raw,xvdd,cdrom", "pv", v420) == "phy"           # a medium: as 4.17
    assert _backend("vdev=xvdd,devtype=cdrom,backendtype=qdisk", "pv", v420) == "qdisk"  # as given
    with pytest.raises(DiskSpecError, match="backend phy unsuitable due to format empty"):
        _backend("vdev=xvdd,devtype=cdrom,backendtype=phy", "pv", v420)       # refused on both (§9.1)
