# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure storage planner: sizes as users write them, option checks, create/grow/leave/refuse."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import disk_from_dict
from ansible_collections.xen.disks.plugins.module_utils._core.storage import (
    CREATE,
    GROW,
    LEAVE,
    SHRINK,
    ImageFacts,
    SizeError,
    parse_size,
    plan_image,
    split_storage,
    storage_spec,
)

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize("text,size", [
    ("20G", 20 * G), ("20g", 20 * G), ("20GiB", 20 * G), ("20 GiB", 20 * G), ("512MiB", 512 * M),
    ("512M", 512 * M), ("1.5T", 3 * T // 2), ("1.5TiB", 3 * T // 2), ("4K", 4 * K), ("4096", 4096),
    (1048576, M), ("100GB", 100 * 10 ** 9), ("1MB", 1000448), ("100", 512), ("512B", 512), ("512b", 512), (" 2G ", 2 * G),
    ("0.5G", G // 2), ("8E", None), ("1P", 1 << 50), ("+1G", G), (1.0 * M, M),
])
def test_sizes_in_every_unit(text, size):
    if size is None:
        with pytest.raises(SizeError, match="largest"):
            parse_size(text)
    else:
        assert parse_size(text) == size


@pytest.mark.parametrize("value,message", [
    ("-1G", "negative"), (-512, "negative"), ("20Q", "unknown unit"), ("20GG", "unknown unit"),
    ("20 gigs", "not a size"), ("", "not a size"), ("G", "not a size"), ("1e9", "not a size"),
    ("9" * 40, "not a size"), ("99999999999999999999E", "largest"), (1 << 70, "largest"),
    ("0", "at least one"), ("0.1G", "whole number of bytes"),
    (True, "boolean"), ([1], "not list"), (float("nan"), "not a size"), ("1,5G", "not a size"),
])
def test_bad_sizes_are_explained(value, message):
    with pytest.raises(SizeError, match=message):
        parse_size(value)


def _checked(**keys):
    item = {"vdev": "xvdb", "target": "/srv/a.img", "format": "raw"}
    item.update(keys)
    disk_item, storage = split_storage(item)
    return storage_spec(storage, disk_from_dict(disk_item), "disks[0]")


def _spec(**keys):
    spec, errors = _checked(**keys)
    assert not errors
    return spec


def test_split_keeps_xl_options_apart():
    disk_item, storage = split_storage({"vdev": "xvdb", "target": "/a", "size": "1G", "allow-shrink": True})
    assert disk_item == {"vdev": "xvdb", "target": "/a"}
    assert storage == {"size": "1G", "allow_shrink": True}


@pytest.mark.parametrize("keys,message", [
    ({"size": "-1G"}, r"disks\[0\]\.size: .*negative"),
    ({"size": "1G", "preallocation": "metadata"}, r"disks\[0\]\.preallocation: qemu-img cannot preallocate raw"),
    ({"size": "1G", "preallocation": "sparse"}, r"disks\[0\]\.preallocation: 'sparse' is not one of"),
    ({"backing_file": "/b.qcow2", "backing_format": "qcow2"}, r"disks\[0\]\.backing_file: only qcow2 overlays"),
    ({"format": "qcow2", "backing_file": "/b.qcow2"}, r"disks\[0\]\.backing_format: required"),
    ({"format": "qcow2", "backing_format": "raw"}, r"disks\[0\]\.backing_format: given without backing_file"),
    ({"create": True}, r"disks\[0\]\.size: required to create"),
    ({"size": "1G", "mode": "rw"}, r"disks\[0\]\.mode: 'rw' is not an octal mode"),
    ({"size": "1G", "create": "yes"}, r"disks\[0\]\.create: 'yes' is not a boolean"),
    ({"size": "1G", "format": "qed"}, r"disks\[0\]\.format: qed images are not created"),
    ({"size": "1G", "target": "a.img"}, r"disks\[0\]\.target: 'a.img' is not an absolute path"),
    ({"size": "1G", "format_mismatch": "warn"}, r"disks\[0\]\.format_mismatch"),
])
def test_option_errors_are_located(keys, message):
    spec, errors = _checked(**keys)
    assert spec is None
    assert any(__import__("re").search(message, e) for e in errors), errors


FILE_1G = ImageFacts("/srv/a.img", "file", format="raw", virtual_size=G)


def test_decisions():
    spec = _spec(size="2G")
    assert plan_image(spec, ImageFacts("/srv/a.img", "missing")).action == CREATE
    step = plan_image(spec, FILE_1G)
    assert (step.action, step.size_before, step.size_after) == (GROW, G, 2 * G)
    same = _spec(size="1G")
    assert plan_image(same, FILE_1G).action == LEAVE
    assert not plan_image(same, FILE_1G).changed


def test_shrink_refused_unless_allowed_and_detached():
    spec = _spec(size="512M")
    with pytest.raises(ValueError, match=r"disks\[0\]\.size: .* never shrunk"):
        plan_image(spec, FILE_1G)
    allowed = _spec(size="512M", allow_shrink=True)
    assert plan_image(allowed, FILE_1G).action == SHRINK
    with pytest.raises(ValueError, match="attached to its guest"):
        plan_image(allowed, FILE_1G, attached=True)


def test_missing_directory_and_directory_target():
    spec = _spec(size="1G")
    with pytest.raises(ValueError, match="its directory /srv does not exist"):
        plan_image(spec, ImageFacts("/srv/a.img", "missing", parent_kind="missing"))
    with pytest.raises(ValueError, match="is a directory"):
        plan_image(spec, ImageFacts("/srv/a.img", "directory"))
    no_create = _spec(size="1G", create=False)
    with pytest.raises(ValueError, match="does not exist"):
        plan_image(no_create, ImageFacts("/srv/a.img", "missing"))


def test_format_mismatch_is_an_error_unless_ignored():
    spec = _spec(size="2G")
    qcow = ImageFacts("/srv/a.img", "file", format="qcow2", virtual_size=G)
    with pytest.raises(ValueError, match=r"disks\[0\]\.format: .*declared raw but the file is a qcow2 image"):
        plan_image(spec, qcow)
    ignored = _spec(size="2G", format_mismatch="ignore")
    step = plan_image(ignored, qcow)
    assert step.action == LEAVE and step.warnings


def test_attributes_planned():
    spec = _spec(size="1G", mode="0600")
    step = plan_image(spec, ImageFacts("/srv/a.img", "file", format="raw", virtual_size=G, mode=0o644), uid=0)
    assert step.action == LEAVE and step.changed
    assert dict(step.attributes) == {"mode": 0o600, "uid": 0}


def test_xl_cfg_side_drops_storage_keys():
    """The xl.cfg line (role, xl_cfg_files) carries the xl options only (the filters: in
    tests/unit/plugins/filter, which may import controller code)."""
    from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg_disks import declared_items

    item = {"vdev": "xvdb", "target": "/srv/a.qcow2", "format": "qcow2", "size": "20G", "preallocation": "metadata",
            "backing_file": "/srv/b.qcow2", "backing_format": "qcow2", "mode": "0600"}
    assert declared_items([item]) == [{"vdev": "xvdb", "target": "/srv/a.qcow2", "format": "qcow2"}]


@pytest.mark.parametrize("header_names, reported", [
    ("/srv/base.qcow2", False),
    ("base.qcow2", False),             # relative to the overlay's directory, as QEMU opens it
    ("../srv/./base.qcow2", False),
    ("/srv/other.qcow2", True),
    (None, True),                      # a qcow2 image without a backing file
])
def test_an_overlay_of_another_backing_file_is_reported_not_rebased(header_names, reported):
    spec = _spec(format="qcow2", target="/srv/top.qcow2", backing_file="/srv/base.qcow2", backing_format="qcow2")
    step = plan_image(spec, ImageFacts("/srv/top.qcow2", "file", format="qcow2", virtual_size=G,
                                       backing_file=header_names))
    assert step.action == LEAVE and not step.changed
    assert [w for w in step.warnings if "backing_file" in w] == ([
        "disks[0].backing_file: /srv/top.qcow2 has %s, not the declared '/srv/base.qcow2': left as it is "
        "(qemu-img rebase is not run: a wrong backing file would corrupt the guest's data)"
        % ("the backing file '%s'" % header_names if header_names else "no backing file")] if reported else [])
