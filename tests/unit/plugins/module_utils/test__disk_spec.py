# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xl disk syntax: parser, renderer, structured form, libxl rules. Tables with exact messages.

Expected values come from xl-disk-configuration(5), libxlu_disk_l.l / libxlu_disk.c of Xen 4.17
and docs/XENSTORE-LAYOUT.md §6 (the parser is also run against Xen's own in
tests/integration/test_xl_oracle.py).
"""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (
    Disk,
    DiskSpecError,
    canonical_disk,
    check_libxl_rules,
    choose_backend,
    disk_from_dict,
    disk_to_dict,
    parse_disk_spec,
    render_disk_spec,
)

RW_DISK = dict(format="raw", access="rw", devtype="disk")
FULL_SPEC = ("vdev=xvda,backendtype=phy,backend=dd1,script=block-dd,specification=xen,direct-io-safe,no-discard,"
             "untrusted,colo,colo-host=h,colo-port=9000,colo-export=e,active-disk=a,hidden-disk=h2,target=/x")

PARSED = [
    # positional: target, format, vdev, access
    ("/dev/vg0/a,raw,xvda,rw", Disk(target="/dev/vg0/a", vdev="xvda", **RW_DISK)),
    ("/dev/vg0/a,,xvda,w", Disk(target="/dev/vg0/a", vdev="xvda", **RW_DISK)),
    ("/srv/a.qcow2,qcow2,xvdb,r", Disk(target="/srv/a.qcow2", format="qcow2", vdev="xvdb", access="ro", devtype="disk")),
    ("/srv/a,raw,xvdb,", Disk(target="/srv/a", vdev="xvdb", **RW_DISK)),
    # key=value, any order, target= last taking the rest
    ("vdev=xvda,access=ro,format=vhd,target=/srv/a,b=c:d",
     Disk(target="/srv/a,b=c:d", format="vhd", vdev="xvda", access="ro", devtype="disk")),
    ("vdev=xvdz,target=/x,", Disk(target="/x", vdev="xvdz", **RW_DISK)),  # one trailing comma stripped
    # legacy prefixes: recorded as the driver, ignored by Xen; format and script prefixes count
    ("phy:/dev/x,xvda,w", Disk(target="/dev/x", vdev="xvda", driver="phy", **RW_DISK)),
    ("tap:aio:/srv/a.img,xvda,w", Disk(target="/srv/a.img", vdev="xvda", driver="tap", driver_subtype="aio", **RW_DISK)),
    ("tap2:aio:/srv/a.img,xvda,w", Disk(target="/srv/a.img", vdev="xvda", driver="tap2", driver_subtype="aio", **RW_DISK)),
    ("tap:qcow2:/srv/a.q,xvda,w", Disk(target="/srv/a.q", format="qcow2", vdev="xvda", access="rw", devtype="disk",
                                       driver="tap", driver_subtype="qcow2")),
    ("qcow2:/srv/a.q,xvda,w", Disk(target="/srv/a.q", format="qcow2", vdev="xvda", access="rw", devtype="disk")),
    ("nbd:host:1234,xvda,w", Disk(target="host:1234", vdev="xvda", script="block-nbd", **RW_DISK)),
    ("file:/srv/a.img,xvda,w", Disk(target="/srv/a.img", vdev="xvda", driver="file", **RW_DISK)),
    # cdroms: vdev:cdrom, devtype=cdrom, the cdrom flag; read-only and removable; empty drives
    ("/srv/d.iso,,hdc:cdrom,r", Disk(target="/srv/d.iso", format="raw", vdev="hdc", access="ro", devtype="cdrom")),
    ("/srv/d.iso,raw,hdc,w,devtype=cdrom",
     Disk(target="/srv/d.iso", format="raw", vdev="hdc", access="ro", devtype="cdrom")),
    (",,hdc:cdrom,r", Disk(target=None, format="empty", vdev="hdc", access="ro", devtype="cdrom")),
    ("vdev=hdc,cdrom", Disk(target=None, format="empty", vdev="hdc", access="ro", devtype="cdrom")),
    ("/x,,xvdb:disk", Disk(target="/x", vdev="xvdb", **RW_DISK)),
    # flags and options
    (FULL_SPEC,
     Disk(target="/x", vdev="xvda", backendtype="phy", backend="dd1", script="block-dd", specification="xen",
          direct_io_safe=True, discard=False, trusted=False, colo=True, colo_host="h", colo_port=9000,
          colo_export="e", active_disk="a", hidden_disk="h2", **RW_DISK)),
    ("/x,raw,xvda,rw,colo-port=12abc", Disk(target="/x", vdev="xvda", colo_port=12, **RW_DISK)),  # atoi
    ("/x,raw,xvda,rw,discard,no-discard", Disk(target="/x", vdev="xvda", discard=False, **RW_DISK)),
    # blanks: only leading ones are skipped
    ("  /x , raw,\txvda,  w", Disk(target="/x ", vdev="xvda", **RW_DISK)),
    # several strings forming one disk, state carried over
    (["/x", "qcow2", "xvda,ro"], Disk(target="/x", format="qcow2", vdev="xvda", access="ro", devtype="disk")),
    (["vdev=xvda", "access=ro", "target=/dev/x"], Disk(target="/dev/x", vdev="xvda", format="raw", access="ro", devtype="disk")),
    # a `=` ending the string is swallowed at end of file
    ("/x,,xvda=", Disk(target="/x", vdev="xvda", **RW_DISK)),
    ("/a\nb,,xvda", Disk(target="/a\nb", vdev="xvda", **RW_DISK)),  # `.` stops at a newline, [^=,] does not
]


@pytest.mark.parametrize("spec, disk", PARSED)
def test_parse(spec, disk):
    parsed = parse_disk_spec(spec)
    assert parsed == disk
    assert (parsed.driver, parsed.driver_subtype) == (disk.driver, disk.driver_subtype)


def quoted(spec):
    return spec if isinstance(spec, str) else spec[-1]


PARSE_ERRORS = [
    ("/dev/sda,xvda,w", "format", "unknown value for format: near `xvda'"),
    ("/x,QCOW2,xvda", "format", "unknown value for format: near `QCOW2'"),
    ("/x,raw,xvda,w,extra", None, "too many positional parameters: near `extra'"),
    ("/x,raw,xvda,rw,format=qcow2", "format", "format respecified: near `qcow2'"),
    ("qcow2:/x,xvda,format=", "format", "format respecified: near `'"),  # "" means raw, quoted as written
    ("vdev=xvda,vdev=xvdb,target=/x", "vdev", "vdev respecified: near `xvdb'"),
    ("/x,raw,xvda,w,target=/y", "target", "target respecified: near `/y'"),
    ("nbd:h,xvda,script=s", "script", "script respecified: near `s'"),
    ("/x,raw,xvda,readonly", "access", "unknown value for access: near `readonly'"),
    ("/x,raw,xvda,RW", "access", "unknown value for access: near `RW'"),
    ("/x,raw,xvda,devtype=floppy", "devtype", "unknown value for type: near `devtype=floppy'"),
    ("/x,raw,xvda,devtype=floppy,w", "devtype", "unknown value for type: near `devtype=floppy,'"),
    ("/x,,sdc:floppy", "devtype", "unknown deprecated type: near `floppy'"),
    ("/x,raw,xvda,backendtype=qemu", "backendtype", "unknown value for backendtype: near `qemu'"),
    ("/x,raw,xvda,backendtype=phy,backendtype=qdisk", "backendtype", "backend respecified: near `qdisk'"),
    ("/x,raw,xvda,specification=Xen", "specification", "unknown value for specification: near `Xen'"),
    ("/x,raw,xvda,colo-port=0", "colo-port", "unknown value for colo_port: near `0'"),
    ("/x,raw,xvda,colo-port=abc", "colo-port", "unknown value for colo_port: near `abc'"),
    ("transport=mmio,/x,raw,xvda", "transport", "unknown parameter: near `transport=m'"),
    ("/x,raw,xvda,foo=bar", "foo", "unknown parameter: near `foo=b'"),
    ("foo=é,/x", "foo", "unknown parameter: near `foo=é'"),  # Xen quotes the first byte of é only
    ("/x,raw,xvda,grant_usage=1", "access", "unknown value for access: near `grant_usage'"),
    ("grant_usage=1,/x", None, "bad disk syntax: near `=1,/x'"),  # not a 4.17 parameter
    ("phy:/x,,xvda", "access", "unknown value for access: near `xvda'"),  # after a prefix: vdev second
    ("Format=raw,/x", None, "bad disk syntax: near `=raw,/x'"),
    ("foo:/x,xvda", None, "unknown deprecated disk prefix: near `foo:'"),
    ("target=\nx,xvda", "target", "unknown parameter: near `target=\n'"),
    ("/=\nx,xvda", None, "bad disk syntax: near `='"),  # Xen's scanner jams here and exits xl
    ("/x,raw", "vdev", "no vdev specified"),
    ("vdev=xvda", "target", "no target specified (and device not removable)"),
    (["vdev=xvda", "access=rw"], "target", "no target specified (and device not removable)"),
    (["/x,raw", "xvda,w", "extra"], None, "too many positional parameters: near `extra'"),
]


@pytest.mark.parametrize("spec, field_name, message", PARSE_ERRORS)
def test_parse_errors(spec, field_name, message):
    expected = "%s in `%s'" % (message, quoted(spec))
    with pytest.raises(DiskSpecError) as info:
        parse_disk_spec(spec)
    assert str(info.value) == expected
    assert info.value.field == field_name
    assert info.value.value == quoted(spec)


@pytest.mark.parametrize("spec, message", [
    (42, "a disk specification is a string or a list of strings"),
    (["/x", 3], "a disk specification is a string or a list of strings"),
    ([], "a disk specification needs at least one string"),
])
def test_parse_refuses_other_types(spec, message):
    with pytest.raises(DiskSpecError, match="^%s$" % message):
        parse_disk_spec(spec)


def test_trusted_follows_the_grammar():
    """Xen 4.17's shipped lexer takes these words as positionals (its bug); we follow the grammar."""
    assert parse_disk_spec("/x,raw,xvda,w,untrusted").trusted is False
    assert parse_disk_spec("trusted,/x,raw,xvda,w").trusted is True


@pytest.mark.parametrize("spec, field, where", [
    ("/x,raw,xvda\0,junk=1", None, "a NUL character at offset 11"),
    ("/x\0y,raw,xvda,rw", "target", "a NUL character at offset 2"),
    ("vdev=xvda,target=/a\ud800b", "target", "a lone surrogate \\ud800 at offset 19"),
    ("/a,raw,xvda,rw,backend=d\udc80", "backend", "a lone surrogate \\udc80"),
    ("/a,raw,xvda\0", "vdev", "NUL"),
    ("\0", None, "NUL"),
])
def test_nul_and_lone_surrogates_are_refused_at_their_option(spec, field, where):
    # xl would end the C string at a NUL (xl.cfg refuses NUL outright); a surrogate is no UTF-8
    with pytest.raises(DiskSpecError) as info:
        parse_disk_spec(spec)
    assert info.value.field == field
    assert str(info.value).startswith("%s: " % (field or "spec"))
    assert where in str(info.value)


# --------------------------------------------------------------------------------------------
# rendering

EQUIVALENT_SPELLINGS = [
    (["phy:/dev/x,xvda,w", "format=raw,vdev=xvda,access=rw,target=/dev/x", "/dev/x,,xvda",
      "  vdev=xvda,target=/dev/x", ["/dev/x", "raw", "xvda", "rw"], "file:/dev/x,xvda,rw",
      "tap:aio:/dev/x,xvda", "/dev/x,raw,xvda,w,devtype=disk"],
     "format=raw,vdev=xvda,access=rw,target=/dev/x"),
    ([",,hdc:cdrom,r", "vdev=hdc,devtype=cdrom", "cdrom,vdev=hdc,access=rw", ",,hdc:cdrom,w"],
     "format=empty,vdev=hdc,access=ro,devtype=cdrom"),
    (["/i.iso,,hdc:cdrom", "/i.iso,raw,hdc,cdrom", "format=raw,vdev=hdc,devtype=cdrom,target=/i.iso"],
     "format=raw,vdev=hdc,access=ro,devtype=cdrom,target=/i.iso"),
    (["nbd:h:1,xvdb,r", "vdev=xvdb,access=r,script=block-nbd,target=h:1"],
     "format=raw,vdev=xvdb,access=ro,script=block-nbd,target=h:1"),
]


@pytest.mark.parametrize("spellings, canonical", EQUIVALENT_SPELLINGS)
def test_equivalent_spellings_render_the_same(spellings, canonical):
    assert {render_disk_spec(parse_disk_spec(s)) for s in spellings} == {canonical}
    assert len({parse_disk_spec(s) for s in spellings}) == 1


def test_render_full_order():
    disk = parse_disk_spec(FULL_SPEC)
    assert render_disk_spec(disk) == (
        "format=raw,vdev=xvda,access=rw,backendtype=phy,backend=dd1,script=block-dd,specification=xen,"
        "direct-io-safe,no-discard,untrusted,colo,colo-host=h,colo-port=9000,colo-export=e,"
        "active-disk=a,hidden-disk=h2,target=/x")


def test_render_target_with_newline_as_positional():
    disk = parse_disk_spec(" a\nb,,xvda")
    assert disk.target == " a\nb"
    assert render_disk_spec(disk) == " a\nb,format=raw,vdev=xvda,access=rw"
    assert parse_disk_spec(render_disk_spec(disk)) == disk


@pytest.mark.parametrize("target", [",", "/a,", "/a,,"])
def test_render_target_ending_with_a_comma(target):
    disk = Disk(target=target, vdev="xvda", **RW_DISK)
    assert render_disk_spec(disk) == "format=raw,vdev=xvda,access=rw,target=%s," % target
    assert parse_disk_spec(render_disk_spec(disk)) == disk


@pytest.mark.parametrize("disk, message", [
    (Disk(target="\n", vdev="xvda"), "target cannot be written in xl syntax with a newline here: near `\n'"),
    (Disk(target="a\nb,c", vdev="xvda"), "target cannot be written in xl syntax with a newline here: near `a\nb,c'"),
    (Disk(target="/x\0", vdev="xvda"), "target cannot be written in xl syntax with a NUL: near `/x\0'"),
    (Disk(target="/x", vdev="xvda,w"), "vdev cannot be written in xl syntax with a comma or a NUL: near `xvda,w'"),
    (Disk(target="/x", vdev="xvda", colo_host="a,b"),
     "colo-host cannot be written in xl syntax with a comma or a NUL: near `a,b'"),
])
def test_render_refuses_what_xl_cannot_read_back(disk, message):
    with pytest.raises(DiskSpecError) as info:
        render_disk_spec(disk)
    assert str(info.value) == message


def test_render_refuses_transport_it_cannot_write():
    with pytest.raises(DiskSpecError, match=r"^transport=mmio cannot be written in xl syntax "):
        render_disk_spec(Disk(target="/x", vdev="xvda", transport="mmio"))
    virtio = Disk(target="/x", vdev="xvda", specification="virtio", transport="mmio")
    assert render_disk_spec(virtio) == "format=raw,vdev=xvda,access=rw,specification=virtio,target=/x"


def test_legacy_prefix_round_trip():
    disk = parse_disk_spec("tap2:aio:/img,xvda")
    assert disk.legacy_prefix == "tap2:aio:"
    assert parse_disk_spec(disk.legacy_prefix + "/img,xvda").legacy_prefix == "tap2:aio:"
    assert parse_disk_spec("/img,,xvda").legacy_prefix == ""
    assert canonical_disk(disk) == disk and canonical_disk(disk).driver is None


# --------------------------------------------------------------------------------------------
# structured form

def test_dict_round_trip_and_keys():
    disk = parse_disk_spec("tap:aio:/x,xvda,ro,direct-io-safe,colo-port=7")
    data = disk_to_dict(disk)
    assert list(data) == ["target", "format", "vdev", "access", "devtype", "backendtype", "backend", "script",
                          "specification", "discard", "direct-io-safe", "trusted", "colo", "colo-host",
                          "colo-port", "colo-export", "active-disk", "hidden-disk", "transport", "driver",
                          "driver_subtype"]
    assert data["direct-io-safe"] is True and data["driver"] == "tap" and data["driver_subtype"] == "aio"
    again = disk_from_dict(data)
    assert again == disk and (again.driver, again.driver_subtype) == ("tap", "aio")


@pytest.mark.parametrize("data, spec", [
    ({"vdev": "xvda", "target": "/dev/x"}, "phy:/dev/x,xvda,w"),
    ({"vdev": "xvda", "target": "/dev/x", "access": "w", "format": None}, "/dev/x,,xvda"),
    ({"vdev": "xvda", "target": "/dev/x", "direct_io_safe": True}, "/dev/x,,xvda,direct-io-safe"),
    ({"vdev": "hdc", "devtype": "cdrom", "target": ""}, ",,hdc:cdrom"),
    ({"vdev": "hdc", "devtype": "cdrom"}, "vdev=hdc,cdrom"),
    ({"vdev": "xvda", "target": "/q", "driver": "tap", "driver_subtype": "qcow2"}, "tap:qcow2:/q,xvda"),
    ({"vdev": "xvda", "target": "/v", "specification": "virtio", "transport": "mmio",
      "backendtype": "standalone"}, "vdev=xvda,specification=virtio,backendtype=standalone,target=/v"),
    ({"vdev": "xvda", "target": "/x", "colo-port": "9000", "colo": True}, "/x,,xvda,colo,colo-port=9000"),
])
def test_dict_equals_xl_spelling(data, spec):
    assert disk_from_dict(data) == parse_disk_spec(spec)


DICT_ERRORS = [
    ({"vdev": "xvda", "target": "/x", "mode": "w"}, "mode", "unknown parameter: near `mode'"),
    ({"vdev": "xvda", "target": "/x", "direct-io-safe": True, "direct_io_safe": True},
     "direct-io-safe", "direct-io-safe respecified: near `direct_io_safe'"),
    ({"vdev": "xvda", "target": "/x", "format": "QCOW2"}, "format", "unknown value for format: near `QCOW2'"),
    ({"vdev": "xvda", "target": "/x", "access": "readonly"}, "access", "unknown value for access: near `readonly'"),
    ({"vdev": "xvda", "target": "/x", "devtype": "floppy"}, "devtype", "unknown value for type: near `floppy'"),
    ({"vdev": "xvda", "target": "/x", "backendtype": "qemu"}, "backendtype",
     "unknown value for backendtype: near `qemu'"),
    ({"vdev": "xvda", "target": "/x", "specification": "Xen"}, "specification",
     "unknown value for specification: near `Xen'"),
    ({"vdev": "xvda", "target": "/x", "transport": "pci", "specification": "virtio"}, "transport",
     "unknown value for transport: near `pci'"),
    ({"vdev": "xvda", "target": "/x", "transport": "mmio"}, "transport",
     "transport: Transport is only supported for specification virtio"),
    ({"vdev": "xvda", "target": "/x", "discard": "yes"}, "discard", "unknown value for discard (a boolean): near `yes'"),
    ({"vdev": "xvda", "target": "/x", "colo-port": 0}, "colo-port", "unknown value for colo_port (1-65535): near `0'"),
    ({"vdev": "xvda", "target": "/x", "colo-port": "9k"}, "colo-port", "unknown value for colo_port: near `9k'"),
    ({"vdev": "xvda", "target": "/x", "colo-port": True}, "colo-port", "unknown value for colo_port: near `True'"),
    ({"vdev": 51712, "target": "/x"}, "vdev", "vdev must be a string, not int"),
    ({"vdev": "xvda,w", "target": "/x"}, "vdev", "vdev must not contain a comma (only target may): near `xvda,w'"),
    ({"vdev": "xvda", "target": "/x\ny"}, "target", "target must not contain a NUL or a newline: near `/x\\ny'"),
    ({"vdev": "xvda", "target": "/q", "format": "raw", "driver_subtype": "qcow2"}, "driver_subtype",
     "format respecified: near `qcow2'"),
    ({"vdev": "xvda", "target": "/x", "driver": "blktap"}, "driver", "unknown value for driver: near `blktap'"),
    ({"target": "/x"}, "vdev", "no vdev specified"),
    ({"vdev": "xvda"}, "target", "no target specified (and device not removable)"),
    ({"vdev": "xvda", "target": None}, "target", "no target specified (and device not removable)"),
]


@pytest.mark.parametrize("data, field_name, message", DICT_ERRORS)
def test_dict_errors(data, field_name, message):
    with pytest.raises(DiskSpecError) as info:
        disk_from_dict(data)
    assert str(info.value) == message
    assert info.value.field == field_name


def test_dict_refuses_non_dicts():
    with pytest.raises(DiskSpecError, match=r"^a disk must be a dict, not list$"):
        disk_from_dict(["vdev=xvda"])


# --------------------------------------------------------------------------------------------
# defaults

@pytest.mark.parametrize("spec, discard, trusted, specification, transport", [
    ("/x,,xvda,rw", True, True, "xen", None),
    ("/x,,xvda,ro", False, True, "xen", None),
    ("/x,,xvda,ro,discard,untrusted", True, False, "xen", None),
    ("/i.iso,,hdc:cdrom,rw", False, True, "xen", None),
    ("vdev=xvda,specification=virtio,target=/x", True, True, "virtio", "mmio"),
])
def test_effective_defaults(spec, discard, trusted, specification, transport):
    disk = parse_disk_spec(spec)
    assert (disk.effective_discard, disk.effective_trusted, disk.effective_specification,
            disk.effective_transport) == (discard, trusted, specification, transport)


def test_properties_of_a_bare_disk():
    disk = Disk(vdev="hdc", devtype="cdrom")
    assert disk.effective_format == "empty" and disk.removable and not disk.readwrite
    assert Disk(vdev="xvda", target="/x").effective_format == "raw"
    assert Disk(vdev="xvdb", target="/x").devid == 51728


# --------------------------------------------------------------------------------------------
# libxl stage

LIBXL_ERRORS = [
    ("/x,,xvda0", False, "vdev", "invalid vdev 'xvda0': a partition number has no leading zero (the whole disk has none)"),
    ("vdev=xvda,specification=virtio,backendtype=standalone,target=/x", True, "specification",
     "specification: virtio disks cannot be hot-plugged or unplugged "
     "(libxl: Hotplug isn't supported for specification virtio)"),
    ("vdev=xvda,specification=virtio,backendtype=phy,target=/x", False, "backendtype",
     "backendtype: Disk vdev=xvda, backend phy not compatible with specification virtio"),
    ("vdev=xvda,backendtype=standalone,target=/x", False, "backendtype",
     "backendtype: Disk vdev=xvda, backend standalone not compatible with specification xen"),
    ("vdev=xvda,specification=virtio,backendtype=standalone,format=qcow2,target=/x", False, "backendtype",
     "backendtype: Disk vdev=xvda, backend standalone unsuitable due to format qcow2"),
    ("vdev=xvda,backendtype=phy,format=vhd,target=/x", False, "backendtype",
     "backendtype: Disk vdev=xvda, backend phy unsuitable due to format vhd"),
    ("vdev=xvda,backendtype=phy,colo,colo-host=h,colo-port=1,colo-export=e,active-disk=a,hidden-disk=b,target=/x",
     False, "backendtype", "backendtype: Disk vdev=xvda, backend phy not compatible with colo"),
    ("vdev=xvda,colo,colo-host=h,colo-export=e,target=/x", False, "colo",
     "colo: a COLO disk needs colo-host, colo-port, colo-export, active-disk, hidden-disk "
     "(missing: colo-port, active-disk, hidden-disk)"),
    ("vdev=xvda,backendtype=qdisk,script=s,target=/x", False, "backendtype",
     "backendtype: Disk vdev=xvda, backend qdisk not compatible with script=..."),
    ("vdev=xvda,backendtype=tap,target=/x", False, "backendtype",
     "backendtype: Disk vdev=xvda, backend tap unsuitable because blktap is not available (Xen 4.17)"),
    ("vdev=xvda,format=qcow2,script=s,target=/x", False, "backendtype",
     "backendtype: no suitable backend for disk xvda (backend phy unsuitable due to format qcow2; "
     "backend qdisk not compatible with script=...; backend tap unsuitable because blktap is not available "
     "(Xen 4.17); backend standalone not compatible with specification xen)"),
    ("vdev=xvda,specification=virtio,script=s,target=/x", False, "backendtype",
     "backendtype: no suitable backend for disk xvda (backend phy not compatible with specification virtio; "
     "backend qdisk not compatible with specification virtio; backend tap not compatible with specification "
     "virtio; backend standalone not compatible with script=...)"),
    ("vdev=xvda,format=empty,target=/x", False, "format", "format: Disk vdev=xvda is empty but not cdrom"),
]


@pytest.mark.parametrize("spec, hotplug, field_name, message", LIBXL_ERRORS)
def test_libxl_rules(spec, hotplug, field_name, message):
    with pytest.raises(DiskSpecError) as info:
        check_libxl_rules(parse_disk_spec(spec), hotplug=hotplug)
    assert str(info.value) == message
    assert info.value.field == field_name


def test_libxl_rules_transport_and_empty_cdrom_image():
    with pytest.raises(DiskSpecError, match=r"^transport: Transport is only supported for specification virtio$"):
        check_libxl_rules(Disk(vdev="xvda", target="/x", transport="mmio"), hotplug=False)
    with pytest.raises(DiskSpecError, match=r"^target: Disk vdev=hdc is empty but an image has been provided: /i$"):
        check_libxl_rules(Disk(vdev="hdc", target="/i", devtype="cdrom", format="empty"), hotplug=False)


@pytest.mark.parametrize("spec", [
    "/x,,xvda", "/x,qcow2,xvda", ",,hdc:cdrom", "/i,,hdc:cdrom", "vdev=xvda,specification=virtio,target=/x",
    "vdev=xvda,backendtype=qdisk,colo,colo-host=h,colo-port=1,colo-export=e,active-disk=a,hidden-disk=b,target=/x",
    "vdev=xvda,no-colo,target=/x", "nbd:h:1,xvda", "/x,vhd,xvda", "/x,,51712",
])
def test_libxl_rules_accept(spec):
    assert check_libxl_rules(parse_disk_spec(spec), hotplug=False) is None


# §6.3 "What automatic selection produces" (+ the HVM cdrom rule of §6.2)
BACKENDS = [
    ("/dev/x,,xvda", 0, "block", "pv", "phy"),
    ("/srv/x.img,,xvda", 0, "file", "pv", "phy"),
    ("/srv/x.img,,xvda", 0, "unknown", "pv", "phy"),
    ("/srv/dir,,xvda", 0, "other", "pv", "qdisk"),
    ("/dev/x,,xvda,colo", 0, "block", "pv", "qdisk"),
    ("/srv/x.q,qcow2,xvda", 0, "file", "pv", "qdisk"),
    ("/srv/x.vhd,vhd,xvda", 0, "file", "hvm", "qdisk"),
    ("nbd:h:1,xvda", 0, "missing", "pv", "phy"),
    ("/dev/x,,xvda", 3, "missing", "pv", "phy"),
    (",,hdc:cdrom", 0, "missing", "pv", "qdisk"),
    ("/i.iso,,hdc:cdrom", 0, "file", "hvm", "qdisk"),
    ("/i.iso,,hdc:cdrom", 0, "file", "pvh", "phy"),
    ("vdev=xvda,specification=virtio,target=/dev/x", 0, "block", "pvh", "standalone"),
    ("vdev=xvda,specification=virtio,target=/dev/x", 5, "other", "pvh", "standalone"),
    ("vdev=xvda,backendtype=qdisk,target=/dev/x", 0, "missing", "pv", "qdisk"),
]


@pytest.mark.parametrize("spec, backend_domid, target_kind, guest_type, backend", BACKENDS)
def test_choose_backend(spec, backend_domid, target_kind, guest_type, backend):
    disk = parse_disk_spec(spec)
    assert choose_backend(disk, backend_domid=backend_domid, target_kind=target_kind, guest_type=guest_type) == backend


BACKEND_ERRORS = [
    ("/dev/x,,xvda", 0, "missing", "pv", "target", "target: Disk vdev=xvda failed to stat: /dev/x"),
    # stat() comes first, even when qdisk would take the disk in the end (§6.3)
    ("/srv/x.q,qed,xvda", 0, "missing", "pv", "target", "target: Disk vdev=xvda failed to stat: /srv/x.q"),
    ("vdev=hdc,backendtype=phy,devtype=cdrom,target=/i", 0, "file", "hvm", "backendtype",
     "backendtype: Backend for CD devices on HVM guests must be Qdisk"),
    ("vdev=xvda,specification=virtio,target=/srv/dir", 0, "other", "pv", "backendtype",
     "backendtype: no suitable backend for disk xvda (backend phy not compatible with specification virtio; "
     "backend qdisk not compatible with specification virtio; backend tap not compatible with specification "
     "virtio; backend standalone unsuitable as phys path not a block device)"),
    ("vdev=xvda,backendtype=phy,target=/srv/dir", 0, "other", "pv", "backendtype",
     "backendtype: no suitable backend for disk xvda (backend phy unsuitable as phys path not a block device)"),
    ("vdev=xvda,backendtype=tap,target=/x", 0, "file", "pv", "backendtype",
     "backendtype: no suitable backend for disk xvda (backend tap unsuitable because blktap is not available "
     "(Xen 4.17))"),
]


@pytest.mark.parametrize("spec, backend_domid, target_kind, guest_type, field_name, message", BACKEND_ERRORS)
def test_choose_backend_errors(spec, backend_domid, target_kind, guest_type, field_name, message):
    with pytest.raises(DiskSpecError) as info:
        choose_backend(parse_disk_spec(spec), backend_domid=backend_domid, target_kind=target_kind,
                       guest_type=guest_type)
    assert str(info.value) == message
    assert info.value.field == field_name


@pytest.mark.parametrize("kwargs, message", [
    ({"target_kind": "dir", "guest_type": "pv"}, "target_kind must be one of block, file, other, missing, unknown"),
    ({"target_kind": "file", "guest_type": "HVM"}, "guest_type must be one of pv, pvh, hvm"),
])
def test_choose_backend_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match="^%s$" % message):
        choose_backend(parse_disk_spec("/x,,xvda"), backend_domid=0, **kwargs)
