# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole-declaration validation: every error of every disk, located, exact messages."""

from __future__ import annotations

import re

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.declaration import (
    SHARING_REASON,
    DeclarationError,
    GuestDeclaration,
    validate_declaration,
)
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import parse_disk_spec
from ansible_collections.xen.disks.plugins.module_utils._core.layout import attach_ops
from ansible_collections.xen.disks.plugins.module_utils._core.plan import read_disks

STAT = {"/dev/a": "block", "/dev/b": "block", "/dev/mmc": "block", "/dev/missing": "missing",
        "/dev/char": "other", "/srv/iso": "file", "/srv/a.img": "file", "/srv/a.qcow2": "file"}


def errors_of(guests, **kw):
    with pytest.raises(DeclarationError) as info:
        validate_declaration(guests, stat_target=kw.pop("stat_target", STAT), **kw)
    assert str(info.value) == "\n".join(info.value.messages)
    return list(info.value.messages)


def one_guest(*disks, guest_type="pv"):
    return [GuestDeclaration(5, tuple(disks), guest_type=guest_type)]


ERRORS = [
    # device numbers: duplicates and aliases
    (["/dev/a,,xvda", "/dev/b,,d0p0"], "pv",
     "disks[1].vdev: 'd0p0' is the same device as disks[0] ('xvda', device number 51712)"),
    (["/dev/a,,xvda", "/dev/b,,51712"], "pv",
     "disks[1].vdev: '51712' is the same device as disks[0] ('xvda', device number 51712)"),
    (["/dev/a,,xvda0"], "pv",
     "disks[0].vdev: invalid vdev 'xvda0': a partition number has no leading zero (the whole disk has none)"),
    # parser stage
    (["/dev/a"], "pv", "disks[0].vdev: no vdev specified in `/dev/a'"),
    (["/dev/a,,xvda,transport=mmio"], "pv",
     "disks[0].transport: unknown parameter: near `transport=m' in `/dev/a,,xvda,transport=mmio'"),
    ([{"target": "/dev/a", "vdev": "xvda", "access": "rx"}], "pv",
     "disks[0].access: unknown value for access: near `rx'"),
    ([42], "pv", "disks[0]: a disk must be an xl disk string, a list of strings or a dict, not int"),
    # libxl stage
    ([{"target": "/dev/a", "vdev": "xvda", "transport": "mmio"}], "pv",
     "disks[0].transport: Transport is only supported for specification virtio"),
    (["/dev/a,qcow2,xvda,backendtype=phy"], "pv",
     "disks[0].backendtype: Disk vdev=xvda, backend phy unsuitable due to format qcow2"),
    (["/dev/mmc,qcow2,xvdb,specification=virtio"], "pvh",
     "disks[0].backendtype: no suitable backend for disk xvdb (backend phy not compatible with specification "
     "virtio; backend qdisk not compatible with specification virtio; backend tap not compatible with "
     "specification virtio; backend standalone unsuitable due to format qcow2)"),
    (["/dev/a,,xvda,script=block-x,backendtype=qdisk"], "pv",
     "disks[0].backendtype: Disk vdev=xvda, backend qdisk not compatible with script=..."),
    # cdrom rules
    (["/srv/iso,raw,hdc,cdrom,backendtype=phy"], "hvm",
     "disks[0].backendtype: Backend for CD devices on HVM guests must be Qdisk"),
    ([{"vdev": "xvdb", "format": "empty"}], "pv", "disks[0].target: no target specified (and device not removable)"),
    # the target on the host
    (["/dev/missing,,xvda"], "pv", "disks[0].target: Disk vdev=xvda failed to stat: /dev/missing"),
    ([",,xvda"], "pv", "disks[0].target: Disk vdev=xvda failed to stat: "),
    (["backend=nosuch,/dev/a,,xvda"], "pv", "disks[0].backend: unknown backend domain 'nosuch'"),
    # virtio
    (["/dev/a,,xvda", "/dev/mmc,,xvdb,specification=virtio"], "pvh",
     "disks[1].specification: a virtio disk cannot be mixed with xen disks (disks[0]) in one guest: libxl then "
     "lists none of them (\"both xen and virtio paths are present\")"),
    # sharing
    (["/dev/a,,xvda", "/dev/a,,xvdb"], "pv",
     "disks[1].target: '/dev/a' is also attached by disks[0], both read-write: " + SHARING_REASON),
    (["/dev/a,,xvda", "/dev//a,,xvdb,ro"], "pv",
     "disks[1].target: '/dev//a' is also attached by disks[0], read-write there and read-only here: "
     + SHARING_REASON),
]


@pytest.mark.parametrize("disks, guest_type, message", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_error_table(disks, guest_type, message):
    assert errors_of(one_guest(*disks, guest_type=guest_type)) == [message]


def test_every_error_of_every_disk_is_reported_and_nothing_is_returned():
    messages = errors_of(one_guest("/dev/a", "/dev/a,,xvda0", "/dev/b,,xvdb", "/dev/missing,,xvdc",
                                   "/dev/b,,d1p0"))
    assert messages == [
        "disks[0].vdev: no vdev specified in `/dev/a'",
        "disks[1].vdev: invalid vdev 'xvda0': a partition number has no leading zero (the whole disk has none)",
        "disks[3].target: Disk vdev=xvdc failed to stat: /dev/missing",
        "disks[4].vdev: 'd1p0' is the same device as disks[2] ('xvdb', device number 51728)",
        "disks[4].target: '/dev/b' is also attached by disks[2], both read-write: " + SHARING_REASON,
    ]


def test_several_guests_are_located_by_domain():
    guests = [GuestDeclaration(5, ("/dev/a,,xvda",), prefix="domains[0]."),
              GuestDeclaration(6, ("/dev/a,,xvdb,ro", "bad"), prefix="domains[1].")]
    assert errors_of(guests) == [
        "domains[1].disks[1].vdev: no vdev specified in `bad'",
        "domains[1].disks[0].target: '/dev/a' is also attached by domains[0].disks[0] (guest 5), read-write there "
        "and read-only here: " + SHARING_REASON,
    ]


def test_read_only_sharing_is_fine_and_driver_domain_paths_are_their_own():
    ok = validate_declaration(
        [GuestDeclaration(5, ("/dev/a,,xvda,ro",)), GuestDeclaration(6, ("/dev/a,,xvda,ro", "backend=stor2,/dev/a,,xvdb"))],
        stat_target=STAT, resolve_domain={"stor2": 2, "2": 2, "0": 0})
    assert [[d.vdev for d in g] for g in ok] == [["xvda"], ["xvda", "xvdb"]]
    assert ok[1][1].placement.backend_domid == 2


def test_targets_already_attached_on_the_host(host):
    [[other]] = validate_declaration([GuestDeclaration(7, ("/dev/a,,xvdc",))], stat_target=STAT)
    tree = host((5, "pv"), (7, "pv")).apply_all(attach_ops(other))
    attached = read_disks(tree, 7)
    assert errors_of(one_guest("/dev/a,,xvda,ro"), attached=attached) == [
        "disks[0].target: '/dev/a' is already attached to guest 7 as xvdc, read-write there and read-only here: "
        + SHARING_REASON]
    # the same disk, declared again for the guest that has it, is not a conflict
    validate_declaration([GuestDeclaration(7, ("/dev/a,,xvdc",))], stat_target=STAT, attached=attached)


def test_the_stat_answer_picks_the_backend():
    def backend(kind, spec="/dev/x,,xvda", guest_type="pv"):
        [[d]] = validate_declaration([GuestDeclaration(5, (spec,), guest_type=guest_type)],
                                     stat_target=lambda path: kind)
        return d.backend_type
    assert backend("block") == "phy"
    assert backend("file") == "phy"
    assert backend("other") == "qdisk"       # a directory or a char device: QEMU's qdisk
    assert backend("unknown") == "phy"
    assert backend("block", "/dev/x,qcow2,xvda") == "qdisk"
    assert backend("block", "/dev/x,raw,hdc,cdrom", "hvm") == "qdisk"
    assert backend("missing", "backend=2,/dev/x,,xvda") == "phy"  # a driver domain: libxl does not stat


def test_stat_is_asked_only_for_local_targets():
    asked = []
    validate_declaration([GuestDeclaration(5, ("/dev/a,,xvda", "backend=2,/dev/b,,xvdb", ",raw,hdc,cdrom"))],
                         stat_target=lambda path: asked.append(path) or "block")
    assert asked == ["/dev/a"]


def test_structured_strings_and_lists_give_the_same_desired_disks():
    specs = ["/dev/a,,xvda", ["/dev/b", "raw,xvdb,ro"], {"target": "/srv/a.qcow2", "format": "qcow2", "vdev": "xvdc"},
             parse_disk_spec(",raw,hdc,cdrom")]
    [desired] = validate_declaration([GuestDeclaration(5, tuple(specs), guest_type="hvm")], stat_target=STAT)
    assert [(d.label, d.vdev, d.backend_type) for d in desired] == [
        ("disks[0]", "xvda", "phy"), ("disks[1]", "xvdb", "phy"), ("disks[2]", "xvdc", "qdisk"),
        ("disks[3]", "hdc", "qdisk")]


def test_virtio_index_counts_virtio_disks_only_in_config_order():
    [desired] = validate_declaration(
        [GuestDeclaration(3, ("/dev/mmc,raw,xvdb,specification=virtio", "/dev/a,raw,xvda,specification=virtio"),
                          guest_type="pvh")], stat_target=STAT, arch="arm")
    assert [(d.vdev, dict(d.backend)["irq"]) for d in desired] == [("xvdb", "33"), ("xvda", "34")]


def test_too_many_virtio_disks_on_arm():
    specs = tuple("/dev/v%d,raw,xvd%s,specification=virtio" % (i, chr(97 + i)) for i in range(12))
    messages = errors_of([GuestDeclaration(3, specs, guest_type="pvh")], stat_target=lambda p: "block", arch="arm")
    assert messages == ["disks[11]: too many virtio disks: libxl on Arm allocates at most 11 virtio-mmio slots"]


def test_a_bad_stat_answer_is_a_programming_error():
    with pytest.raises(ValueError, match=re.escape("stat_target gave 'dir' for '/dev/a': expected one of block, "
                                                   "file, other, missing, unknown")):
        validate_declaration(one_guest("/dev/a,,xvda"), stat_target={"/dev/a": "dir"})


@pytest.mark.parametrize("backend, message", [
    ("42", "domains[1].disks[0].backend: no domain with id 42 on this host"),
    ("99999", "domains[1].disks[0].backend: no domain with id 99999 (domain ids end at 32751)"),
    ("9" * 5000, "domains[1].disks[0].backend: no domain with id 999999999999... (5000 digits; domain ids end at 32751)"),
    ("stor9", "domains[1].disks[0].backend: unknown backend domain 'stor9'"),
])
def test_a_backend_domain_must_exist_for_every_guest(backend, message):
    guests = [GuestDeclaration(5, ("/dev/a,,xvdb",), prefix="domains[0]."),
              GuestDeclaration(7, ("/dev/b,,xvdb,backend=%s" % backend,), prefix="domains[1].")]
    with pytest.raises(DeclarationError) as info:
        validate_declaration(guests, stat_target=STAT, resolve_domain={"stor2": 2, "2": 2, "0": 0})
    assert info.value.messages == (message,)
