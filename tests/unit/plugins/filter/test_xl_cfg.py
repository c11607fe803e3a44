"""Filters of plugins/filter/xl_cfg.py: xl_cfg_disks, xl_cfg_set_disks, xl_cfg_value, xl_disks_drift."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xen.disks.plugins.filter.xl_cfg import (
    FilterModule,
    xl_cfg_disks,
    xl_cfg_set_disks,
    xl_cfg_value,
    xl_disks_drift,
)

WEB1 = """\
# web1
name = "web1"
type = "pv"
disk = [ 'phy:/dev/vg0/web1,xvda,w',   # root
         'file:/srv/scratch.img,xvdz,w' ]
vif = [ 'bridge=xenbr0' ]
"""


def test_filters_are_exported():
    assert sorted(FilterModule().filters()) == ["xl_cfg_disks", "xl_cfg_set_disks", "xl_cfg_value", "xl_disks_drift"]


def test_xl_cfg_disks():
    assert xl_cfg_disks(WEB1) == ["phy:/dev/vg0/web1,xvda,w", "file:/srv/scratch.img,xvdz,w"]
    assert xl_cfg_disks("name = 'x'\n") == []


@pytest.mark.parametrize(
    "args, message",
    [
        ((5,), r"^xl_cfg_disks: the xl config must be a string, not int$"),
        (("disk = (1)\n", "g.cfg"), r"^xl_cfg_disks: g\.cfg:1: config parsing error near `\(1\)': lexical error$"),
    ],
)
def test_xl_cfg_disks_errors(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        xl_cfg_disks(*args)


def test_set_disks_canonical_and_keeps_the_rest():
    new = xl_cfg_set_disks(WEB1, ["/dev/vg0/web1,,xvda,rw", {"target": "/dev/vg0/data", "vdev": "xvdb", "access": "rw"},
                                  ",,hdc:cdrom,r"])
    assert new == """\
# web1
name = "web1"
type = "pv"
disk = [
    'format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1', # root
    'format=raw,vdev=xvdb,access=rw,target=/dev/vg0/data',
    'format=empty,vdev=hdc,access=ro,devtype=cdrom',
]
vif = [ 'bridge=xenbr0' ]
"""


def test_set_disks_equivalent_spelling_is_no_change():
    # phy:/dev/vg0/web1,xvda,w and format=raw,...: the same disks, so the file stays as written
    same = ["/dev/vg0/web1,raw,xvda,rw",
            {"target": "/srv/scratch.img", "vdev": "xvdz", "access": "rw"}]
    assert xl_cfg_set_disks(WEB1, same) is WEB1


def test_set_disks_quotes_targets_as_xl_requires():
    new = xl_cfg_set_disks("", [{"target": "/srv/it's a \\ file.img", "vdev": "xvda"}])
    assert new == "disk = [\n    'format=raw,vdev=xvda,access=rw,target=/srv/it\\'s a \\\\ file.img',\n]\n"
    assert xl_cfg_disks(new) == ["format=raw,vdev=xvda,access=rw,target=/srv/it's a \\ file.img"]


@pytest.mark.parametrize(
    "disks, message",
    [
        (["/a,,xvda", "vdev=xvdc,colour=blue,target=/x"],
         r"^xl_cfg_set_disks: disks\[1\]\.colour: unknown parameter: near `colour=b' in `vdev=xvdc,colour=blue,target=/x'$"),
        (["/a,,xvda", "/b,,d0p0"],
         r"^xl_cfg_set_disks: disks\[1\]\.vdev: 'd0p0' is the same device as disks\[0\] \('xvda', device number 51712\)$"),
        (["/a,,xvda", 5],
         r"^xl_cfg_set_disks: disks\[1\]: a disk must be an xl spec string, a list of strings or a dict, not int$"),
        (["/a,qcow2,xvda,backendtype=phy"],
         r"^xl_cfg_set_disks: disks\[0\]\.backendtype: Disk vdev=xvda, backend phy unsuitable due to "
         r"format qcow2$"),
        ("/a,,xvda", r"^xl_cfg_set_disks: disks must be a list, not str$"),
    ],
)
def test_set_disks_refuses_bad_declarations(disks, message):
    with pytest.raises(AnsibleFilterError, match=message):
        xl_cfg_set_disks(WEB1, disks)


def test_set_disks_refuses_a_bad_file():
    with pytest.raises(AnsibleFilterError, match=r"^xl_cfg_set_disks: web1\.cfg:2: config parsing error near `:': "
                                                 r"lexical error$"):
        xl_cfg_set_disks("name = 'x'\nmemory : 5\n", ["/a,,xvda"], "web1.cfg")


@pytest.mark.parametrize(
    "value, text",
    [
        ("web1", "'web1'"),
        ("it's", "'it\\'s'"),
        (2048, "2048"),
        (True, "1"),
        (False, "0"),
        (["bridge=xenbr0", "bridge=xenbr1"], "[ 'bridge=xenbr0', 'bridge=xenbr1' ]"),
        ([], "[]"),
        ([["a"], 1], "[ [ 'a' ], 1 ]"),
    ],
)
def test_xl_cfg_value(value, text):
    assert xl_cfg_value(value) == text


@pytest.mark.parametrize(
    "value, message",
    [
        (-1, r"^xl_cfg_value: xl config numbers cannot be negative \(write -1 as a string\)$"),
        (1.5, r"^xl_cfg_value: an xl config value must be a string, number, boolean or list, not float$"),
        ("a\0b", r"^xl_cfg_value: an xl config string cannot hold a NUL character$"),
    ],
)
def test_xl_cfg_value_errors(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        xl_cfg_value(value)


def test_drift_by_device_number():
    live = [
        {"vdev": "xvda", "spec": "format=raw,vdev=xvda,access=rw,backendtype=phy,target=/dev/vg0/web1"},
        {"vdev": "xvdc", "spec": "format=raw,vdev=xvdc,access=rw,backendtype=phy,target=/dev/vg0/tmp"},
        {"vdev": "xvde", "spec": None},
        "format=raw,vdev=xvdf,access=ro,target=/dev/vg0/ro",
    ]
    persistent = ["phy:/dev/vg0/web1,d0p0,w", "/dev/vg0/new,,xvdd", "/dev/vg0/ro,,xvdf,rw"]
    assert xl_disks_drift(live, persistent) == {
        "in_sync": False,
        "only_live": ["format=raw,vdev=xvdc,access=rw,backendtype=phy,target=/dev/vg0/tmp"],
        "only_persistent": ["format=raw,vdev=xvdd,access=rw,target=/dev/vg0/new"],
        "different": [{
            "vdev": "xvdf", "devid": 51792, "fields": ["access"],
            "live": "format=raw,vdev=xvdf,access=ro,target=/dev/vg0/ro",
            "persistent": "format=raw,vdev=xvdf,access=rw,target=/dev/vg0/ro",
        }],
        "unreadable_live": ["xvde"],
        "not_in_libxl_config": [],
    }


def test_drift_third_plane_libxl_record():
    spec = "format=raw,vdev=xvda,access=rw,backendtype=phy,target=/dev/vg0/web1"
    recorded = {"vdev": "xvda", "spec": spec, "survives_xl_reboot": True}
    assert xl_disks_drift([recorded], ["/dev/vg0/web1,raw,xvda,w"])["in_sync"] is True
    lost = dict(recorded, survives_xl_reboot=False)
    drift = xl_disks_drift([lost], ["/dev/vg0/web1,raw,xvda,w"])
    assert drift["in_sync"] is False and drift["not_in_libxl_config"] == [spec]
    assert drift["only_live"] == drift["only_persistent"] == drift["different"] == []


def test_drift_in_sync_ignores_what_the_file_leaves_to_libxl():
    live = [{"vdev": "xvda", "spec": "format=raw,vdev=xvda,access=rw,backendtype=phy,target=/dev/vg0/web1"}]
    assert xl_disks_drift(live, ["/dev/vg0/web1,raw,xvda,w"])["in_sync"] is True
    assert xl_disks_drift(live, ["/dev/vg0/web1,raw,xvda,w,backendtype=qdisk"])["different"][0]["fields"] == [
        "backendtype"]


def test_drift_errors():
    with pytest.raises(AnsibleFilterError, match=r"^xl_disks_drift: live and persistent must be lists$"):
        xl_disks_drift("x", [])
    with pytest.raises(AnsibleFilterError, match=r"^xl_disks_drift: persistent\[0\]: invalid vdev 'xvd!': expected "
                                                 r"xvd<letters>\[<partition>\], d<disk>p<partition>, "
                                                 r"hd\[a-d\]\[<partition>\], sd\[a-p\]\[<partition>\] or a device number$"):
        xl_disks_drift([], ["/a,,xvd!"])
