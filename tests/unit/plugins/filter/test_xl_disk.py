# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xl_disk_parse, xl_disk_spec and xl_vdev_devid filters: type checks and the core's messages."""

from __future__ import annotations

import os
import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.xen.disks.plugins.filter.xl_disk import (
    FilterModule,
    xl_disk_parse,
    xl_disk_spec,
    xl_vdev_devid,
)


def test_filters_are_exported():
    assert set(FilterModule().filters()) == {"xl_disk_parse", "xl_disk_spec", "xl_vdev_devid"}


def test_xl_disk_parse():
    parsed = xl_disk_parse("tap:aio:/srv/a.img,xvda,w")
    assert parsed["target"] == "/srv/a.img" and parsed["vdev"] == "xvda" and parsed["access"] == "rw"
    assert (parsed["driver"], parsed["driver_subtype"], parsed["backendtype"]) == ("tap", "aio", None)
    assert xl_disk_parse(["vdev=xvdb", "access=ro", "target=/dev/x"])["access"] == "ro"


@pytest.mark.parametrize("value, message", [
    ("foo=bar,/x", "xl_disk_parse: unknown parameter: near `foo=b' in `foo=bar,/x'"),
    (["/x,raw"], "xl_disk_parse: no vdev specified in `/x,raw'"),
    (42, "xl_disk_parse: expected an xl disk spec string or a non-empty list of strings, got int"),
    ([], "xl_disk_parse: expected an xl disk spec string or a non-empty list of strings, got list"),
    ({"vdev": "xvda"}, "xl_disk_parse: expected an xl disk spec string or a non-empty list of strings, got dict"),
])
def test_xl_disk_parse_errors(value, message):
    with pytest.raises(AnsibleFilterError) as info:
        xl_disk_parse(value)
    assert info.value.message == message


@pytest.mark.parametrize("value, canonical", [
    ("phy:/dev/x,xvda,w", "format=raw,vdev=xvda,access=rw,target=/dev/x"),
    (["/dev/x", ",xvda:disk"], "format=raw,vdev=xvda,access=rw,target=/dev/x"),
    ({"vdev": "xvda", "target": "/dev/x", "direct_io_safe": True},
     "format=raw,vdev=xvda,access=rw,direct-io-safe,target=/dev/x"),
    ({"vdev": "hdc", "devtype": "cdrom"}, "format=empty,vdev=hdc,access=ro,devtype=cdrom"),
])
def test_xl_disk_spec(value, canonical):
    assert xl_disk_spec(value) == canonical


@pytest.mark.parametrize("value, message", [
    ({"vdev": "xvda", "target": "/x", "format": "QCOW2"}, "xl_disk_spec: unknown value for format: near `QCOW2'"),
    ("/dev/sda,xvda,w", "xl_disk_spec: unknown value for format: near `xvda' in `/dev/sda,xvda,w'"),
    (3.5, "xl_disk_spec: expected an xl disk spec string or a non-empty list of strings, got float"),
])
def test_xl_disk_spec_errors(value, message):
    with pytest.raises(AnsibleFilterError) as info:
        xl_disk_spec(value)
    assert info.value.message == message


def test_xl_vdev_devid():
    assert [xl_vdev_devid(v) for v in ("xvda", "xvdb1", "xvdq", "hdc", "sda")] == [51712, 51729, 268439552, 5632, 2048]


@pytest.mark.parametrize("value, message", [
    ("xvda0", "xl_vdev_devid: invalid vdev 'xvda0': a partition number has no leading zero (the whole disk has none)"),
    (51712, "xl_vdev_devid: expected a vdev string, got int"),
])
def test_xl_vdev_devid_errors(value, message):
    with pytest.raises(AnsibleFilterError) as info:
        xl_vdev_devid(value)
    assert info.value.message == message


@pytest.mark.parametrize("name", ["xl_disk_parse", "xl_disk_spec", "xl_vdev_devid"])
def test_ansible_doc_shows_the_filter(name):
    result = subprocess.run(["ansible-doc", "-t", "filter", "--json", "xen.disks." + name],
                            capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False)
    assert result.returncode == 0, result.stderr
    assert '"name": "%s"' % name in result.stdout


def test_xl_disk_spec_drops_storage_keys():
    """Per-disk storage keys (size, preallocation, backing file, mode) are not xl options."""
    from ansible_collections.xen.disks.plugins.filter.xl_disk import xl_disk_spec

    item = {"vdev": "xvdb", "target": "/srv/a.qcow2", "format": "qcow2", "size": "20G", "preallocation": "metadata",
            "backing_file": "/srv/b.qcow2", "backing_format": "qcow2", "mode": "0600"}
    assert xl_disk_spec(item) == xl_disk_spec({"vdev": "xvdb", "target": "/srv/a.qcow2", "format": "qcow2"})
    assert "20G" not in xl_disk_spec(item)
