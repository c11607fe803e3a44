# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_xl_cfg_disks.disks_drift as xen_host_disks calls it (plain lists and dicts, ValueError): what
the xl_disks_drift filter tests (tests/unit/plugins/filter/test_xl_cfg.py) do not cover."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg_disks import disks_drift

IN_SYNC = {"in_sync": True, "only_live": [], "only_persistent": [], "different": [], "unreadable_live": [],
           "not_in_libxl_config": []}


def info(spec, vdev=None, **facts):
    """An entry of xen_disk_info's guests[].disks."""
    return dict({"vdev": vdev or spec.split("vdev=")[1].split(",")[0], "spec": spec}, **facts)


def test_nothing_on_either_side_is_in_sync():
    assert disks_drift([], []) == IN_SYNC


def test_the_declared_forms_on_both_sides():
    # dicts (with xen_disk's storage keys, which are no xl option), lists of strings, strings
    live = [info("format=raw,vdev=xvda,access=rw,backendtype=phy,target=/srv/a.img"),
            {"vdev": "xvdb", "target": "/srv/b.qcow2", "format": "qcow2"},
            ["vdev=hdc", "devtype=cdrom", "format=empty", "access=ro"]]
    persistent = [{"vdev": "xvda", "target": "/srv/a.img", "format": "raw", "size": "1G", "create": True},
                  ["/srv/b.qcow2", "qcow2", "xvdb"], ",,hdc:cdrom,r"]
    assert disks_drift(live, persistent) == IN_SYNC


def test_reports_are_ordered_by_device_number_not_by_position():
    live = ["/srv/z.img,raw,xvdz", "/srv/a.img,raw,xvda", "/srv/c.img,raw,hdc"]
    assert disks_drift(live, [])["only_live"] == [
        "format=raw,vdev=hdc,access=rw,target=/srv/c.img",  # 5632
        "format=raw,vdev=xvda,access=rw,target=/srv/a.img",  # 51712
        "format=raw,vdev=xvdz,access=rw,target=/srv/z.img"]  # 52112
    assert disks_drift([], list(reversed(live)))["only_persistent"] == disks_drift(live, [])["only_live"]


def test_every_differing_field_is_named_sorted():
    drift = disks_drift(["/srv/a.qcow2,qcow2,xvda,ro"], ["/srv/b.img,raw,xvda,rw"])
    assert drift["in_sync"] is False
    assert drift["different"] == [{"vdev": "xvda", "devid": 51712, "fields": ["access", "format", "target"],
                                   "live": "format=qcow2,vdev=xvda,access=ro,target=/srv/a.qcow2",
                                   "persistent": "format=raw,vdev=xvda,access=rw,target=/srv/b.img"}]
    # the file's vdev spelling is the one reported
    assert disks_drift(["/srv/a.img,raw,xvda,ro"], ["/srv/a.img,raw,d0p0,rw"])["different"][0]["vdev"] == "d0p0"


def test_legacy_spellings_are_how_a_disk_was_written_not_what_it_is():
    assert disks_drift(["format=raw,vdev=xvda,access=rw,target=/srv/a.img"], ["tap:aio:/srv/a.img,xvda,w"]) == IN_SYNC
    assert disks_drift(["format=raw,vdev=xvda,access=rw,target=/dev/vg0/a"], ["phy:/dev/vg0/a,51712,w"]) == IN_SYNC


def test_the_libxl_record_is_judged_only_when_known():
    spec = "format=raw,vdev=xvda,access=rw,target=/srv/a.img"
    assert disks_drift([info(spec, survives_xl_reboot=None)], [spec]) == IN_SYNC  # unknown: not drift
    lost = disks_drift([info(spec, survives_xl_reboot=False)], [])
    # a disk only live and missing from libxl's record is both
    assert (lost["only_live"], lost["not_in_libxl_config"]) == ([spec], [spec])


def test_an_unreadable_live_disk_is_never_in_sync():
    spec = "format=raw,vdev=xvdb,access=rw,target=/srv/b.img"
    drift = disks_drift([info(None, vdev="xvda"), info(spec)], ["/srv/a.img,raw,xvda", spec])
    assert drift["unreadable_live"] == ["xvda"]
    assert drift["in_sync"] is False and drift["only_live"] == [] and drift["different"] == []
    assert disks_drift([info(None, vdev="xvda")], [])["unreadable_live"] == ["xvda"]
    # the file's xvda is live (unreadable), not only in the file; by its vdev, or by its devid
    assert drift["only_persistent"] == []
    assert disks_drift([info(None, vdev="d0p0", devid=51712)], ["/srv/a.img,raw,xvda"])["only_persistent"] == []
    assert disks_drift([info(None, vdev="xvdc")], ["/srv/a.img,raw,xvda"])["only_persistent"] == [
        "format=raw,vdev=xvda,access=rw,target=/srv/a.img"]


@pytest.mark.parametrize("live, persistent, message", [
    ([], ["/srv/a.img,raw,xvda", "/srv/b.img,raw,d0p0"],
     "persistent[1]: d0p0 is the same device (number 51712) as xvda, an earlier persistent disk"),
    (["/srv/a.img,raw,hda", "/srv/b.img,raw,hda"], [],
     "live[1]: hda is the same device (number 768) as hda, an earlier live disk"),
])
def test_two_disks_of_one_device_number_on_a_side_are_an_error_not_one_hidden(live, persistent, message):
    with pytest.raises(ValueError) as error:
        disks_drift(live, persistent)
    assert str(error.value) == message


@pytest.mark.parametrize("live, persistent, message", [
    ([5], [], "live[0]: a disk must be an xl spec string or a dict, not int"),
    ([info("colour=x", vdev="xvda")], [], "live[0]: unknown parameter: near `colour=x' in `colour=x'"),
    (["/srv/a.img,raw,xvda", "/srv/b.img,raw,xvd!"], [], "live[1]: invalid vdev 'xvd!'"),
    ([], ["/srv/a.img,raw,xvda", None], "persistent[1]: a disk must be an xl spec string or a dict, not NoneType"),
    ([], [{"vdev": "xvda", "colour": 1}], "persistent[0]: unknown parameter"),
])
def test_errors_name_the_side_and_the_entry(live, persistent, message):
    with pytest.raises(ValueError) as caught:
        disks_drift(live, persistent)
    assert str(caught.value).startswith(message)
