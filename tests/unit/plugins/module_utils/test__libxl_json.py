# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libxl's domain configuration as values (`_libxl_json`): the entries and the file format.

The reference files below were produced by Debian's unmodified xl 4.17 (libxl 4.17.7) running
against the real xenstored: `xl -N create` of a minimal xl.cfg stored as the guest's file, then
`xl block-attach 5 'format=raw,vdev=xvdb,access=rw,target=/tmp/lx/img/a.img'` on a PV guest, and
`xl block-attach 6 'vdev=hdc,devtype=cdrom,target=/tmp/lx/img/a.img'`, `xl cd-insert 6 hdc
/tmp/lx/img/b.iso`, `xl cd-eject 6 hdc` on an HVM guest: libxl's own output, byte for byte.
The entries of ENTRIES are `xl -N block-attach` printing xl's parse of each specification.
"""

from __future__ import annotations

import textwrap

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core import libxl_json as _libxl_json
from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import parse_disk_spec

PV_AFTER_ATTACH = textwrap.dedent("""\
{
    "c_info": {
        "type": "pv",
        "name": "g1",
        "uuid": "42e1153e-b226-5cfc-828b-0389963afd97",
        "run_hotplug_scripts": "True"
    },
    "b_info": {
        "max_memkb": 131072,
        "target_memkb": 131072,
        "sched_params": {

        },
        "claim_mode": "True",
        "kernel": "/dev/null",
        "type.pv": {

        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    },
    "disks": [
        {
            "pdev_path": "/tmp/lx/img/a.img",
            "vdev": "xvdb",
            "format": "raw",
            "readwrite": 1
        }
    ],
    "on_reboot": "restart",
    "on_soft_reset": "soft_reset"
}
""") + "\0"

HVM_AFTER_ATTACH = textwrap.dedent("""\
{
    "c_info": {
        "type": "hvm",
        "name": "h1",
        "uuid": "b8938460-15f8-5482-921a-37b84ad316d3",
        "run_hotplug_scripts": "True"
    },
    "b_info": {
        "max_memkb": 131072,
        "target_memkb": 131072,
        "sched_params": {

        },
        "claim_mode": "True",
        "type.hvm": {
            "vga": {

            },
            "vnc": {

            },
            "sdl": {

            },
            "spice": {

            },
            "rdm": {

            }
        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    },
    "disks": [
        {
            "pdev_path": "/tmp/lx/img/a.img",
            "vdev": "hdc",
            "format": "raw",
            "removable": 1,
            "is_cdrom": 1
        }
    ],
    "on_reboot": "restart",
    "on_soft_reset": "soft_reset"
}
""") + "\0"

HVM_AFTER_INSERT = textwrap.dedent("""\
{
    "c_info": {
        "type": "hvm",
        "name": "h1",
        "uuid": "b8938460-15f8-5482-921a-37b84ad316d3",
        "run_hotplug_scripts": "True"
    },
    "b_info": {
        "max_memkb": 131072,
        "target_memkb": 131072,
        "sched_params": {

        },
        "claim_mode": "True",
        "type.hvm": {
            "vga": {

            },
            "vnc": {

            },
            "sdl": {

            },
            "spice": {

            },
            "rdm": {

            }
        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    },
    "disks": [
        {
            "pdev_path": "/tmp/lx/img/b.iso",
            "vdev": "hdc",
            "format": "raw",
            "removable": 1,
            "is_cdrom": 1
        }
    ],
    "on_reboot": "restart",
    "on_soft_reset": "soft_reset"
}
""") + "\0"

HVM_AFTER_EJECT = textwrap.dedent("""\
{
    "c_info": {
        "type": "hvm",
        "name": "h1",
        "uuid": "b8938460-15f8-5482-921a-37b84ad316d3",
        "run_hotplug_scripts": "True"
    },
    "b_info": {
        "max_memkb": 131072,
        "target_memkb": 131072,
        "sched_params": {

        },
        "claim_mode": "True",
        "type.hvm": {
            "vga": {

            },
            "vnc": {

            },
            "sdl": {

            },
            "spice": {

            },
            "rdm": {

            }
        },
        "arch_arm": {

        },
        "arch_x86": {

        }
    },
    "disks": [
        {
            "pdev_path": "",
            "vdev": "hdc",
            "format": "empty",
            "removable": 1,
            "is_cdrom": 1
        }
    ],
    "on_reboot": "restart",
    "on_soft_reset": "soft_reset"
}
""") + "\0"


def _without_disks(text):
    doc = _libxl_json.parse_config(text)
    doc.pop("disks")
    return doc


def test_parse_render_is_the_identity_on_libxl_files():
    for text in (PV_AFTER_ATTACH, HVM_AFTER_ATTACH, HVM_AFTER_INSERT, HVM_AFTER_EJECT):
        assert _libxl_json.render_config(_libxl_json.parse_config(text)) == text.encode()


def test_attach_adds_the_entry_libxl_stores():
    before = _without_disks(PV_AFTER_ATTACH)
    disk = parse_disk_spec("format=raw,vdev=xvdb,access=rw,target=/tmp/lx/img/a.img")
    after = _libxl_json.with_entry(before, _libxl_json.disk_entry(disk))
    assert _libxl_json.render_config(after) == PV_AFTER_ATTACH.encode()
    assert list(after) == ["c_info", "b_info", "disks", "on_reboot", "on_soft_reset"]


def test_cdrom_attach_insert_eject_as_libxl():
    before = _without_disks(HVM_AFTER_ATTACH)
    disk = parse_disk_spec("vdev=hdc,devtype=cdrom,target=/tmp/lx/img/a.img")
    attached = _libxl_json.with_entry(before, _libxl_json.disk_entry(disk))
    assert _libxl_json.render_config(attached) == HVM_AFTER_ATTACH.encode()
    iso = parse_disk_spec("vdev=hdc,devtype=cdrom,access=r,target=/tmp/lx/img/b.iso")
    steps = [_libxl_json.ConfigStep(_libxl_json.EJECT, "hdc", None),
             _libxl_json.ConfigStep(_libxl_json.INSERT, "hdc", _libxl_json.media_entry(iso))]
    inserted = _libxl_json.apply_steps(attached, steps)
    assert _libxl_json.render_config(inserted) == HVM_AFTER_INSERT.encode()
    empty = parse_disk_spec("vdev=hdc,devtype=cdrom")
    ejected = _libxl_json.with_entry(inserted, _libxl_json.media_entry(empty))
    assert _libxl_json.render_config(ejected) == HVM_AFTER_EJECT.encode()


# (specification, what `xl -N block-attach` printed for it)
ENTRIES = [
    ("phy:/dev/loop0,xvdb,w", {"pdev_path": "/dev/loop0", "vdev": "xvdb", "format": "raw", "readwrite": 1}),
    ("format=qcow2,vdev=xvdd,target=/i", {"pdev_path": "/i", "vdev": "xvdd", "format": "qcow2", "readwrite": 1}),
    ("vdev=hdc,devtype=cdrom,target=/i",
     {"pdev_path": "/i", "vdev": "hdc", "format": "raw", "removable": 1, "is_cdrom": 1}),
    ("vdev=hdb,devtype=cdrom,access=rw,target=/a",
     {"pdev_path": "/a", "vdev": "hdb", "format": "raw", "removable": 1, "is_cdrom": 1}),
    ("vdev=hdd,cdrom", {"vdev": "hdd", "format": "empty", "removable": 1, "is_cdrom": 1}),
    ("vdev=xvde,backendtype=qdisk,discard,target=/dev/loop0",
     {"pdev_path": "/dev/loop0", "vdev": "xvde", "backend": "qdisk", "format": "raw", "readwrite": 1,
      "discard_enable": "True"}),
    ("vdev=xvdf,no-discard,direct-io-safe,script=myscript,backend=dd,target=/dev/loop0",
     {"backend_domname": "dd", "pdev_path": "/dev/loop0", "vdev": "xvdf", "format": "raw", "script": "myscript",
      "readwrite": 1, "direct_io_safe": True, "discard_enable": "False"}),
    ("vdev=xvdg,backendtype=phy,access=ro,target=/dev/loop0",
     {"pdev_path": "/dev/loop0", "vdev": "xvdg", "backend": "phy", "format": "raw"}),
    ("vdev=xvdi,specification=virtio,target=/dev/loop0",
     {"pdev_path": "/dev/loop0", "vdev": "xvdi", "format": "raw", "readwrite": 1, "specification": "virtio"}),
    ("vdev=xvdm,specification=xen,target=/dev/loop0",
     {"pdev_path": "/dev/loop0", "vdev": "xvdm", "format": "raw", "readwrite": 1, "specification": "xen"}),
    ("vdev=xvdj,colo,colo-host=a,colo-port=3,colo-export=e,active-disk=ad,hidden-disk=hd,target=/dev/loop0",
     {"pdev_path": "/dev/loop0", "vdev": "xvdj", "format": "raw", "readwrite": 1, "colo_enable": "True",
      "colo_host": "a", "colo_port": 3, "colo_export": "e", "active_disk": "ad", "hidden_disk": "hd"}),
    ("vdev=xvdk,backendtype=tap,target=/dev/loop0",
     {"pdev_path": "/dev/loop0", "vdev": "xvdk", "backend": "tap", "format": "raw", "readwrite": 1}),
    ("vdev=xvdl,backend=0,devtype=disk,access=rw,format=raw,target=/dev/loop0",
     {"backend_domname": "0", "pdev_path": "/dev/loop0", "vdev": "xvdl", "format": "raw", "readwrite": 1}),
    ("vdev=xvdn,format=qed,access=w,target=/a", {"pdev_path": "/a", "vdev": "xvdn", "format": "qed", "readwrite": 1}),
    ("tap:aio:/i,xvdh,w", {"pdev_path": "/i", "vdev": "xvdh", "format": "raw", "readwrite": 1}),
    ("file:/i,sdb,w", {"pdev_path": "/i", "vdev": "sdb", "format": "raw", "readwrite": 1}),
]


@pytest.mark.parametrize("spec, expected", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_entry_is_what_xl_parses(spec, expected):
    entry = _libxl_json.disk_entry(parse_disk_spec(spec))
    assert entry == expected
    assert list(entry) == list(expected)  # the generator's key order


def test_strings_escaped_as_yajl():
    # xl -N block-attach 5 $'vdev=xvdb,target=/a\x1b\x01b\t/\xc3\xa9' printed this line
    assert _libxl_json.render_json("/a\x1b\x01b\t/\u00e9") == '"/a\\u001B\\u0001b\\t/\u00e9"\n'
    assert _libxl_json.render_json('a"b\\c') == '"a\\"b\\\\c"\n'


def test_empty_containers_span_a_blank_line():
    assert _libxl_json.render_json({"a": {}, "b": []}) == '{\n    "a": {\n\n    },\n    "b": [\n\n    ]\n}\n'


def test_replace_keeps_the_position_of_the_last_entry_with_the_same_vdev():
    doc = {"c_info": {}, "disks": [{"vdev": "xvdb", "n": 1}, {"vdev": "xvdc"}, {"vdev": "xvdb", "n": 2}]}
    out = _libxl_json.with_entry(doc, {"vdev": "xvdb", "n": 3})
    assert out["disks"] == [{"vdev": "xvdb", "n": 1}, {"vdev": "xvdc"}, {"vdev": "xvdb", "n": 3}]
    assert doc["disks"][2] == {"vdev": "xvdb", "n": 2}  # a copy


def test_disks_is_inserted_at_its_idl_position():
    doc = {"c_info": {}, "b_info": {}, "nics": [], "on_reboot": "restart"}
    assert list(_libxl_json.with_entry(doc, {"vdev": "xvda"})) == ["c_info", "b_info", "disks", "nics", "on_reboot"]
    assert list(_libxl_json.with_entry({"c_info": {}}, {"vdev": "xvda"})) == ["c_info", "disks"]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"), (b"\0", "empty"), (b"{", "not JSON"), (b"[]\0", "not a JSON object"),
    (b'{"disks": {}}', "not an array"), (b'{"disks": [1]}', "not an array"),
])
def test_bad_files_are_refused(data, message):
    with pytest.raises(_libxl_json.LibxlConfigError, match=message):
        _libxl_json.parse_config(data)


def test_entry_for_pairs_by_the_exact_vdev_string():
    doc = {"disks": [{"vdev": "xvdb", "n": 1}, {"vdev": "51728"}, {"vdev": "xvdb", "n": 2}]}
    assert _libxl_json.entry_for(doc, "xvdb") == {"vdev": "xvdb", "n": 2}
    assert _libxl_json.entry_for(doc, "51728") == {"vdev": "51728"}
    assert _libxl_json.entry_for(doc, "xvdc") is None
    assert _libxl_json.entry_for(None, "xvdb") is None


def _change(action, spec, *, changed=True, current_dev=None, error=""):
    from types import SimpleNamespace

    from ansible_collections.xen.disks.plugins.module_utils._core.plan import DiskChange
    disk = parse_disk_spec(spec)
    current = SimpleNamespace(libxl={"dev": current_dev}) if current_dev is not None else None
    return DiskChange(action, disk.vdev, disk.devid, "vbd", ops=("op",) if changed else (), error=error,
                      desired=SimpleNamespace(disk=disk), current=current)


def test_plan_steps_per_action():
    doc = {"c_info": {}, "disks": [{"vdev": "xvdc", "pdev_path": "/c"}]}
    attach = _change("attach", "/a,,xvdb")
    recreate = _change("recreate", "/c,,xvdc,ro", current_dev="xvdc")
    media = _change("media_change", "/e.iso,raw,hdc,cdrom", current_dev="hdc")
    detach = _change("detach", "/d,,xvdd", current_dev="xvdd")
    unchanged = _change("unchanged", "/c,,xvdc", changed=False, current_dev="xvdc")
    unrecorded = _change("unchanged", "/f,,xvdf", changed=False, current_dev="51792")
    refused = _change("recreate", "/g,,xvdg", error="set recreate=true", current_dev="xvdg")
    steps = _libxl_json.plan_steps([attach, recreate, media, detach, unchanged, unrecorded, refused], doc)
    entry = {"pdev_path": "/a", "vdev": "xvdb", "format": "raw", "readwrite": 1}
    assert steps[id(attach)] == [_libxl_json.ConfigStep("add", "xvdb", entry)]
    assert steps[id(recreate)][0].entry == {"pdev_path": "/c", "vdev": "xvdc", "format": "raw"}
    assert [s.action for s in steps[id(media)]] == ["eject", "insert"]
    assert steps[id(media)][1].entry["pdev_path"] == "/e.iso"
    # a detach leaves the file; a recorded unchanged disk needs nothing; a refused change nothing
    assert id(detach) not in steps and id(unchanged) not in steps and id(refused) not in steps
    # an attached disk libxl has no entry for: one, paired by the vdev string xenstore holds
    assert steps[id(unrecorded)] == [_libxl_json.ConfigStep("add", "51792", {
        "pdev_path": "/f", "vdev": "51792", "format": "raw", "readwrite": 1})]
    assert _libxl_json.plan_steps([attach], None) == {}  # no file: nothing planned, nothing invented
