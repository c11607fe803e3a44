# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xl_cfg_files against real files (and Xen's real xl 4.17 as the validator), and the xen_disk
options the fleet role relies on (missing_domains=skip, read_back) against a real xenstored."""

from __future__ import annotations

import os
import shlex

import pytest

from ansible_collections.xen.disks.plugins.modules import xl_cfg_files
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    run_module,
    xen_disk_info_run,
    xen_disk_run,
)

HAND_WRITTEN = """# web1 (hand-written)
name = "web1"
type = "pv"
kernel = "/boot/vmlinuz"
memory = 512
disk = [ 'phy:/dev/vg0/web1,xvda,w',   # root
         'file:/srv/scratch.img,xvdz,w' ]
vif = [ 'bridge=xenbr0' ]
"""
ROOT = "format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1"
DATA = "format=raw,vdev=xvdb,access=rw,target=/dev/vg0/data"
TEMPLATE = "# managed\nname = 'db1'\ntype = 'hvm'\nmemory = 1024\ndisk = []\n"


def files_run(check=False, diff=False, **args):
    args.setdefault("validate", "never")
    return run_module(xl_cfg_files.main, args, check=check, diff=diff)


def read(path):
    with open(path) as handle:
        return handle.read()


def snapshot(folder):
    """Every file of the folder with its bytes and mtime: what 'nothing written' means."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        out[name] = (read(path), os.stat(path).st_mtime_ns)
    return out


@pytest.fixture
def fleet_files(tmp_path):
    """A host's config folder: web1 hand-written, db1 and spare missing, app1 only read."""
    (tmp_path / "web1.cfg").write_text(HAND_WRITTEN)
    (tmp_path / "app1.cfg").write_text("name = 'app1'\ndisk = [ '/dev/vg0/app1,raw,xvda,w' ]\n")
    files = [
        {"path": str(tmp_path / "web1.cfg"), "name": "web1", "disks": ["/dev/vg0/web1,raw,xvda,rw", DATA]},
        {"path": str(tmp_path / "db1.cfg"), "name": "db1", "disks": [",,hdc:cdrom,r"], "content": TEMPLATE},
        {"path": str(tmp_path / "spare.cfg"), "name": "spare", "disks": [ROOT], "create": True},
        {"path": str(tmp_path / "app1.cfg"), "name": "app1"},
    ]
    return tmp_path, files


def test_many_files_in_one_run_then_nothing_to_do(fleet_files):
    folder, files = fleet_files
    result = files_run(files=files, backup=True)
    assert result["changed"] is True, result
    by_name = {f["name"]: f for f in result["files"]}
    assert [f["name"] for f in result["files"]] == ["web1", "db1", "spare", "app1"]
    assert {n: (f["changed"], f["created"]) for n, f in by_name.items()} == {
        "web1": (True, False), "db1": (True, True), "spare": (True, True), "app1": (False, False)}

    web1 = read(folder / "web1.cfg")
    assert web1 == HAND_WRITTEN.replace(
        "disk = [ 'phy:/dev/vg0/web1,xvda,w',   # root\n         'file:/srv/scratch.img,xvdz,w' ]",
        "disk = [\n    '%s', # root\n    '%s',\n]" % (ROOT, DATA))
    assert read(folder / "db1.cfg") == TEMPLATE.replace(
        "disk = []", "disk = [\n    'format=empty,vdev=hdc,access=ro,devtype=cdrom',\n]")
    assert read(folder / "spare.cfg") == "disk = [\n    '%s',\n]\n" % ROOT
    # the result holds each file as it is now, and its disks as xl reads them
    for name in ("web1", "db1", "spare", "app1"):
        assert by_name[name]["content"] == read(folder / (name + ".cfg"))
        assert by_name[name]["exists"] is True
    assert by_name["web1"]["disks"] == [ROOT, DATA]
    assert by_name["app1"]["disks"] == ["/dev/vg0/app1,raw,xvda,w"]
    # one backup, of the only file that existed and changed, holding its old text
    assert by_name["web1"]["backup_file"] and read(by_name["web1"]["backup_file"]) == HAND_WRITTEN
    assert [f["backup_file"] for f in result["files"][1:]] == [None, None, None]
    assert sorted(os.listdir(folder)) == sorted(["web1.cfg", "db1.cfg", "spare.cfg", "app1.cfg",
                                                 os.path.basename(by_name["web1"]["backup_file"])])

    before = snapshot(folder)
    again = files_run(files=files, backup=True)
    assert again["changed"] is False
    assert [f["changed"] for f in again["files"]] == [False] * 4
    assert snapshot(folder) == before


def test_check_mode_writes_nothing_and_diff_shows_each_file(fleet_files):
    folder, files = fleet_files
    before = snapshot(folder)
    result = files_run(files=files, check=True, diff=True)
    assert result["changed"] is True
    assert snapshot(folder) == before
    by_name = {f["name"]: f for f in result["files"]}
    # in check mode each file is reported as it is
    assert by_name["web1"]["content"] == HAND_WRITTEN
    assert by_name["web1"]["disks"] == ["phy:/dev/vg0/web1,xvda,w", "file:/srv/scratch.img,xvdz,w"]
    assert (by_name["spare"]["exists"], by_name["spare"]["content"], by_name["spare"]["disks"]) == (False, "", [])
    diffs = {d["after_header"]: d for d in result["diff"]}
    assert sorted(diffs) == sorted(str(folder / n) for n in ("web1.cfg", "db1.cfg", "spare.cfg"))
    assert diffs[str(folder / "web1.cfg")]["before"] == HAND_WRITTEN
    assert "'%s'," % DATA in diffs[str(folder / "web1.cfg")]["after"]
    assert diffs[str(folder / "spare.cfg")]["before"] == ""


def test_one_bad_file_means_no_file_is_written(fleet_files):
    folder, files = fleet_files
    files[2]["disks"] = [ROOT, "vdev=xvdc,colour=blue,target=/x"]
    files.append({"path": str(folder / "ghost.cfg"), "disks": [ROOT]})  # missing, not created
    before = snapshot(folder)
    result = files_run(files=files)
    assert result.get("failed") is True
    assert result["errors"][0].startswith("files[2] (%s): disks[1]" % (folder / "spare.cfg"))
    assert result["errors"][1] == "files[4] (%s): %s does not exist (create it, or give the whole file's content)" % (
        folder / "ghost.cfg", folder / "ghost.cfg")
    assert len(result["errors"]) == 2
    assert snapshot(folder) == before


def test_the_same_file_twice_is_refused(fleet_files):
    folder, files = fleet_files
    result = files_run(files=[files[0], dict(files[0], name="other")])
    assert result.get("failed") is True
    assert result["errors"] == ["files[1] (%s): the same file as files[0] (%s)" % ((folder / "web1.cfg",) * 2)]


def test_attributes_of_a_file(fleet_files):
    folder, files = fleet_files
    os.chmod(folder / "web1.cfg", 0o600)
    result = files_run(files=[dict(files[0], mode="0644")])
    assert result["files"][0]["changed"] is True
    assert os.stat(folder / "web1.cfg").st_mode & 0o777 == 0o644
    # the text is written; only the mode changes now
    os.chmod(folder / "web1.cfg", 0o640)
    text = read(folder / "web1.cfg")
    again = files_run(files=[dict(files[0], mode="0644")])
    assert again["changed"] is True and read(folder / "web1.cfg") == text
    assert os.stat(folder / "web1.cfg").st_mode & 0o777 == 0o644
    assert files_run(files=[dict(files[0], mode="0644")])["changed"] is False
    # a file only read keeps its attributes, whatever the defaults say
    os.chmod(folder / "app1.cfg", 0o600)
    assert files_run(files=[files[3]], mode="0644")["changed"] is False
    assert os.stat(folder / "app1.cfg").st_mode & 0o777 == 0o600
    # an existing file keeps its mode when none is given
    os.chmod(folder / "web1.cfg", 0o600)
    files_run(files=[dict(files[0], disks=[ROOT])])
    assert os.stat(folder / "web1.cfg").st_mode & 0o777 == 0o600


def test_validate_always_needs_xl(fleet_files):
    folder, files = fleet_files
    before = snapshot(folder)
    result = files_run(files=files, validate="always", xl_path=str(folder / "no-xl"))
    assert result.get("failed") is True and "is not installed" in result["msg"]
    assert snapshot(folder) == before


@pytest.mark.xl
@pytest.mark.xenstored
def test_validation_by_the_real_xl(fleet_files, tmp_path_factory):
    """Xen 4.17's own parser validates each new whole file; the untrusted disk option, which the
    man page documents and xl 4.17's lexer predates, is refused by xl: nothing is written."""
    from ansible_collections.xen.disks.tests.xl import harness

    folder, files = fleet_files
    with harness.XlHost(str(tmp_path_factory.mktemp("xl")), sim_mode=None) as host:
        xl = host.ns.command(["env", "LD_PRELOAD=" + host.shim, "XENSTORED_PATH=" + host.socket, host.xl_binary])
        command = " ".join(shlex.quote(a) for a in xl) + " create --dryrun --quiet %s"
        args = dict(validate="always", xl_path=host.xl_binary, validate_command=command)

        result = files_run(files=files, **args)
        assert result.get("changed") is True, result.get("errors") or result
        # whole guest files are validated; a created file holding only the disk setting is not
        assert [f["validated"] for f in result["files"]] == [True, True, False, False]

        before = snapshot(folder)
        untrusted = dict(files[1], disks=["vdev=xvda,access=rw,untrusted,target=/dev/vg0/db1"])
        refused = files_run(files=[dict(files[0], disks=[ROOT]), untrusted], **args)
        assert refused.get("failed") is True
        assert refused["errors"] == [refused["errors"][0]]
        assert refused["errors"][0].startswith("files[1] (%s): xl refuses the new file (rc 1): " % (folder / "db1.cfg"))
        assert "untrusted" in refused["errors"][0] or "target respecified" in refused["errors"][0]
        # the error names the file, not xl's temporary copy
        assert str(folder / "db1.cfg") in refused["errors"][0].split("): ", 1)[1]
        assert snapshot(folder) == before


# -- xen_disk: the options of the fleet role --------------------------------------------------


@pytest.mark.xenstored
def test_xen_disk_skips_guests_not_running_and_reads_its_guests_back(xenstored, tmp_path):
    xenstored.add_guest("web1", 1, "pv")
    xenstored.add_guest("db1", 2, "hvm")
    image = tmp_path / "web1.img"
    image.write_bytes(b"")
    declared = [{"domain": "web1", "disks": ["%s,raw,xvda,rw" % image]},
                {"domain": "spare", "disks": ["/dev/vg0/spare,raw,xvda,rw"]},
                {"domain": "db1", "disks": []},
                {"domain": "77", "disks": []}]

    refused = xen_disk_run(xenstored, domains=declared, wait=False)
    assert refused.get("failed") is True and "spare" in refused["msg"]

    check = xen_disk_run(xenstored, check=True, domains=declared, wait=False, missing_domains="skip", read_back=True)
    assert check["changed"] is True and check["missing_domains"] == ["spare", "77"]
    # in check mode the read-back shows the host as it is
    assert [(g["domain"], g["specs"]) for g in check["guests"]] == [("web1", []), ("db1", [])]

    result = xen_disk_run(xenstored, domains=declared, wait=False, missing_domains="skip", read_back=True)
    assert result["changed"] is True and result["missing_domains"] == ["spare", "77"]
    assert [d["domain"] for d in result["disks"]] == ["web1"]
    # the read-back is exactly what xen_disk_info reads afterwards
    info = xen_disk_info_run(xenstored, domains=["web1", "db1"])
    assert result["guests"] == info["guests"]
    assert result["guests"][0]["specs"] == ["format=raw,vdev=xvda,access=rw,backendtype=phy,target=%s" % image]

    again = xen_disk_run(xenstored, domains=declared, wait=False, missing_domains="skip")
    assert again["changed"] is False and "guests" not in again
