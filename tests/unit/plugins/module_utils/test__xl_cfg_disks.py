# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_xl_cfg_disks: the disk setting of xl.cfg texts, and the plan of one file's edit."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.declaration import DeclarationError
from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg import XlCfgError
from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg_disks import file_disks, plan_file, set_disks

HAND_WRITTEN = """# web1 (hand-written)
name = "web1"
disk = [ 'phy:/dev/vg0/web1,xvda,w',   # root
         'file:/srv/scratch.img,xvdz,w' ]
vif = [ 'bridge=xenbr0' ]
"""
ROOT = "format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1"


def test_set_disks_keeps_the_rest_and_the_comment_of_a_kept_disk():
    text = set_disks(HAND_WRITTEN, ["/dev/vg0/web1,raw,xvda,rw", {"target": "/dev/vg0/data", "vdev": "xvdb"}])
    assert text == (
        "# web1 (hand-written)\n"
        'name = "web1"\n'
        "disk = [\n"
        "    '%s', # root\n"
        "    'format=raw,vdev=xvdb,access=rw,target=/dev/vg0/data',\n"
        "]\n"
        "vif = [ 'bridge=xenbr0' ]\n" % ROOT)
    assert file_disks(text) == [ROOT, "format=raw,vdev=xvdb,access=rw,target=/dev/vg0/data"]


def test_file_disks_of_a_file_without_the_setting_is_empty():
    assert file_disks('name = "web1"\n') == []


def test_plan_of_a_file_only_read():
    edit = plan_file("/etc/xen/web1.cfg", HAND_WRITTEN, None)
    assert (edit.write, edit.validate, edit.created, edit.text) == (False, False, False, HAND_WRITTEN)
    missing = plan_file("/etc/xen/nope.cfg", None, None)
    assert (missing.write, missing.text) == (False, None)


def test_plan_of_a_file_only_read_refuses_what_xl_cannot_read():
    with pytest.raises(XlCfgError, match="web1.cfg:1"):
        plan_file("/etc/xen/web1.cfg", "disk = [ 'a' \n", None)


def test_plan_sets_the_disk_setting_and_asks_xl():
    edit = plan_file("/etc/xen/web1.cfg", HAND_WRITTEN, [ROOT])
    assert edit.write and edit.validate and not edit.created
    assert edit.new_text == set_disks(HAND_WRITTEN, [ROOT])
    assert edit.text == edit.new_text


def test_plan_leaves_a_file_whose_disks_already_mean_the_declared_ones():
    current = "disk = [ 'phy:/dev/vg0/web1,xvda,w' ]\n"
    edit = plan_file("/etc/xen/web1.cfg", current, ["/dev/vg0/web1,raw,xvda,w"])
    assert not edit.write
    assert edit.text == current


def test_plan_refuses_a_missing_file_unless_created():
    with pytest.raises(ValueError, match="/etc/xen/web1.cfg does not exist"):
        plan_file("/etc/xen/web1.cfg", None, [ROOT])
    edit = plan_file("/etc/xen/web1.cfg", None, [ROOT], create=True)
    # a file holding only the disk setting is not a whole guest configuration: xl is not asked
    assert (edit.write, edit.created, edit.validate) == (True, True, False)
    assert edit.new_text == "disk = [\n    '%s',\n]\n" % ROOT


def test_plan_with_content_replaces_the_whole_file():
    content = "name = 'db1'\ntype = 'hvm'\ndisk = []\n"
    edit = plan_file("/etc/xen/db1.cfg", HAND_WRITTEN, [ROOT], content=content)
    assert edit.new_text == "name = 'db1'\ntype = 'hvm'\ndisk = [\n    '%s',\n]\n" % ROOT
    assert edit.write and edit.validate
    created = plan_file("/etc/xen/db1.cfg", None, [ROOT], content=content)
    assert created.created and created.validate and created.new_text == edit.new_text
    same = plan_file("/etc/xen/db1.cfg", edit.new_text, [ROOT], content=content)
    assert not same.write


def test_plan_names_the_bad_disk():
    with pytest.raises(ValueError, match=r"^disks\[1\]: a disk must be an xl spec string"):
        plan_file("/etc/xen/web1.cfg", HAND_WRITTEN, [ROOT, 7])
    with pytest.raises(DeclarationError) as caught:
        plan_file("/etc/xen/web1.cfg", HAND_WRITTEN, [ROOT, "vdev=xvdc,colour=blue,target=/x"])
    assert str(caught.value).startswith("disks[1]")


def test_plan_uses_the_guest_type_of_the_file():
    # an HVM guest's file may hold an hd* cdrom; the same declaration is checked with the file's type
    hvm = "name = 'db1'\ntype = 'hvm'\n"
    edit = plan_file("/etc/xen/db1.cfg", hvm, [",,hdc:cdrom,r"])
    assert file_disks(edit.new_text) == ["format=empty,vdev=hdc,access=ro,devtype=cdrom"]
