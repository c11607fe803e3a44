# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen.disks.xen_host_disks run for real (AnsibleModule, in-process) against the REAL xenstored:
one run per host for the live disks, the xl.cfg files and the drift report.

Its live plane and its files are compared with what xen_disk and xl_cfg_files produce alone for
the same declaration (on an identically prepared second host, or in check mode on the same one);
"nothing written" means the same xenstore tree (values and permissions), the same libxl domain
configuration files and the same xl.cfg bytes and mtimes, and xenstored's own request trace says
whether a run sent it any write.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import pytest

from ansible_collections.xen.disks.plugins.modules import xen_host_disks, xl_cfg_files
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    children,
    devices,
    run_module,
    subtree,
    xen_disk_info_run,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.integration.test_xl_cfg_files import read, snapshot
from ansible_collections.xen.disks.tests.xenstored import launcher

pytestmark = pytest.mark.xenstored

RUNNING = (("web", 1, "pv"), ("db", 2, "hvm"))
DECLARED = RUNNING + (("spare", 3, "pv"),)  # spare is declared, and not running
IMAGE_SIZE = 1 << 20
WRITE_OPS = ("WRITE", "MKDIR", "RM", "SET_PERMS")


def declaration(images):
    """The host's guests as an inventory would hold them (xl strings and a dict)."""
    return [
        {"domain": "web", "disks": [
            "%s/web-root.img,raw,xvda,rw" % images,
            {"target": "%s/web-data.img" % images, "format": "raw", "vdev": "xvdb", "access": "ro"}]},
        {"domain": "db", "disks": ["vdev=xvda,access=rw,target=%s/db-root.img" % images, ",,hdc:cdrom,r"]},
        {"domain": "spare", "disks": ["%s/spare-root.img,raw,xvda,rw" % images]},
    ]


def canonical(images):
    """The canonical specs of declaration(images) per guest, as typed from XL-DISK-SYNTAX (the
    spelling the files get)."""
    return {
        "web": ["format=raw,vdev=xvda,access=rw,target=%s/web-root.img" % images,
                "format=raw,vdev=xvdb,access=ro,target=%s/web-data.img" % images],
        "db": ["format=raw,vdev=xvda,access=rw,target=%s/db-root.img" % images,
               "format=empty,vdev=hdc,access=ro,devtype=cdrom"],
        "spare": ["format=raw,vdev=xvda,access=rw,target=%s/spare-root.img" % images],
    }


def make_images(folder):
    folder.mkdir(exist_ok=True)
    for name in ("web-root", "web-data", "web-extra", "web-spare", "db-root", "db-extra", "spare-root"):
        with open(folder / (name + ".img"), "wb") as handle:
            handle.truncate(IMAGE_SIZE)
    return folder


def prepare(xs, base):
    """web (PV, domid 1) and db (HVM, domid 2) running as libxl creates them, spare not; each
    guest's xl.cfg as given to `xl create`, in base/xen (returned)."""
    for name, domid, guest_type in RUNNING:
        xs.add_guest(name, domid, guest_type)
    folder = base / "xen"
    folder.mkdir(parents=True)
    for name, _domid, guest_type in DECLARED:
        (folder / (name + ".cfg")).write_text(launcher.guest_xl_cfg(name, guest_type))
    return folder


def host_run(xs, folder, check=False, diff=False, **args):
    args.setdefault("xenstore_socket", xs.socket)
    args.setdefault("libxl_dir", xs.libxl_dir)
    args.setdefault("hotplug_scripts", "skip")
    args.setdefault("wait", False)  # no backend driver runs: the tree right after the add transaction
    args.setdefault("timeout", 5)
    args.setdefault("config_dir", str(folder))
    args.setdefault("validate", "never")
    return run_module(xen_host_disks.main, args, check=check, diff=diff)


def libxl_configs(xs, with_mtime=True):
    """libxl's domain configuration file of each running guest: its text with the guest's uuid
    (different on each simulated host) replaced, and its mtime."""
    out = {}
    guests = launcher.read_guests(xs.rundir)
    for _name, domid, _type in RUNNING:
        path = launcher.domain_config_path(xs.rundir, domid, guests[domid]["uuid"])
        with open(path, "rb") as handle:
            text = handle.read().decode().replace(guests[domid]["uuid"], "<uuid>")
        out[domid] = (text, os.stat(path).st_mtime_ns) if with_mtime else text
    return out


def state(xs, folder):
    """Everything a run may write: the guests' xenstore trees and every backend directory,
    libxl's domain configuration files, and the xl.cfg folder (bytes and mtimes)."""
    return devices(xs, 1, 2, 3), libxl_configs(xs), snapshot(folder)


class RequestTrace:
    """xenstored's own request trace (`xenstore-control log`): the writes a run sent."""

    def __init__(self, xs, path):
        from ansible_collections.xen.disks.tests.xl import harness

        self.harness = harness
        self.control = [os.path.join(harness.xen_root(), "usr/lib/xen-4.17/bin/xenstore-control")]
        self.env = xs.env
        self.path = str(path)
        self._run("logfile", self.path)
        self._run("log", "on")

    def _run(self, *args):
        subprocess.run(self.control + list(args), env=self.env, check=True, capture_output=True)

    def mark(self):
        marker = "host-disks-%d" % time.monotonic_ns()
        self._run("print", marker)
        return marker

    def writes_since(self, marker):
        """Every write request sent after `marker` (answered or not, in a transaction or not)."""
        self._run("print", marker + "-end")  # answered once every earlier answer is logged
        trace = self.harness.Trace.read(self.path)
        return [(op, payload) for conn in trace.connections_after(marker)
                for op, payload, _reply, _answer in conn.requests if op in WRITE_OPS]


@pytest.fixture
def host(xenstored, tmp_path):
    xenstored.images = make_images(tmp_path / "images")
    xenstored.folder = prepare(xenstored, tmp_path)
    xenstored.guests = declaration(xenstored.images)
    return xenstored


def cfg(host, name):
    return host.folder / (name + ".cfg")


def with_disks(text, specs):
    """`text` (a launcher xl.cfg, without a disk setting) as xl_cfg_files appends the setting."""
    return text + "disk = [\n" + "".join("    '%s',\n" % spec for spec in specs) + "]\n"


def guest_tree(host, domid):
    """One guest's device and libxl directories and its disks' backend directories."""
    out = {}
    for root in ("/local/domain/%d/device" % domid, "/libxl/%d" % domid, "/local/domain/0/backend/vbd/%d" % domid,
                 "/local/domain/0/backend/qdisk/%d" % domid):
        out.update(subtree(host, root))
    return out


def live_specs(host, name):
    """The running guest's disks as xen_disk_info reads them: {vdev: spec}."""
    info = xen_disk_info_run(host, domains=[name])
    return {d["vdev"]: d["spec"] for d in info["guests"][0]["disks"]}


# -- 1. one run for the whole host ------------------------------------------------------------
def test_one_run_equals_xen_disk_and_xl_cfg_files_then_changes_nothing(xenstored_factory, tmp_path):
    images = make_images(tmp_path / "images")
    here, there = xenstored_factory(2)
    folder, other_folder = prepare(here, tmp_path / "here"), prepare(there, tmp_path / "there")
    guests = declaration(images)

    trace = RequestTrace(here, tmp_path / "trace.log")
    marker = trace.mark()
    result = host_run(here, folder, guests=guests)
    assert not result.get("failed"), result
    written = trace.writes_since(marker)  # the trace sees the run's writes (so its silence below means none)
    assert ("WRITE", "/local/domain/0/backend/vbd/1/51712/params %s/web-root.img" % images) in written
    assert result["changed"] is True
    assert result["not_running"] == ["spare"]
    assert [(d["domain"], d["vdev"], d["action"]) for d in result["disks"]] == [
        ("web", "xvda", "attach"), ("web", "xvdb", "attach"), ("db", "hdc", "attach"), ("db", "xvda", "attach")]
    assert [(f["name"], f["changed"], f["created"], f["exists"]) for f in result["files"]] == [
        ("web", True, False, True), ("db", True, False, True), ("spare", True, False, True)]
    assert [f["disks"] for f in result["files"]] == list(canonical(images).values())
    assert result["drift"] == {name: {"in_sync": True, "only_live": [], "only_persistent": [], "different": [],
                                      "unreadable_live": [], "not_in_libxl_config": []} for name in ("web", "db")}
    assert result["in_sync"] is True

    # the same declaration given to xen_disk and xl_cfg_files on the other host
    alone = xen_disk_run(there, domains=guests, missing_domains="skip", wait=False)
    assert alone["changed"] is True and alone["missing_domains"] == ["spare"]
    files = run_module(xl_cfg_files.main, {"validate": "never", "files": [
        {"path": str(other_folder / (g["domain"] + ".cfg")), "name": g["domain"], "disks": g["disks"]}
        for g in guests]})
    assert files["changed"] is True
    assert [(d["domain"], d["vdev"], d["action"]) for d in alone["disks"]] == \
        [(d["domain"], d["vdev"], d["action"]) for d in result["disks"]]
    tree = devices(here, 1, 2, 3)
    assert tree == devices(there, 1, 2, 3)
    assert len([p for p in tree if "/backend/" in p]) > 20  # four disks' backend directories
    assert libxl_configs(here, with_mtime=False) == libxl_configs(there, with_mtime=False)
    assert [len(here.domain_config(d)["disks"]) for d in (1, 2)] == [2, 2]
    assert {n: t for n, (t, _m) in snapshot(folder).items()} == {n: t for n, (t, _m) in snapshot(other_folder).items()}
    for name, _domid, guest_type in DECLARED:
        assert read(folder / (name + ".cfg")) == with_disks(launcher.guest_xl_cfg(name, guest_type),
                                                            canonical(images)[name])

    # a second run: nothing to do, and not one write request reaches xenstored
    before = state(here, folder)
    marker = trace.mark()
    time.sleep(0.01)  # mtimes: a rewrite within the same clock tick would be invisible
    again = host_run(here, folder, guests=guests)
    assert not again.get("failed"), again
    assert again["changed"] is False
    assert [d["action"] for d in again["disks"]] == ["unchanged"] * 4
    assert [f["changed"] for f in again["files"]] == [False] * 3
    assert again["drift"] == result["drift"] and again["not_running"] == ["spare"]
    assert trace.writes_since(marker) == []
    assert state(here, folder) == before


# -- 2. check and diff modes --------------------------------------------------------------------
def test_check_mode_writes_nothing_and_diffs_are_xen_disks_and_xl_cfg_files(host, tmp_path):
    before = state(host, host.folder)
    trace = RequestTrace(host, tmp_path / "trace.log")
    marker = trace.mark()
    result = host_run(host, host.folder, check=True, diff=True, guests=host.guests)
    assert not result.get("failed"), result
    assert trace.writes_since(marker) == []
    assert state(host, host.folder) == before
    assert result["changed"] is True
    assert [(d["domain"], d["vdev"], d["action"]) for d in result["disks"]] == [
        ("web", "xvda", "attach"), ("web", "xvdb", "attach"), ("db", "hdc", "attach"), ("db", "xvda", "attach")]
    assert [f["changed"] for f in result["files"]] == [True] * 3
    # in check mode the files and the drift describe the host as it is
    assert [f["disks"] for f in result["files"]] == [[], [], []]
    assert result["drift"] == {name: {"in_sync": True, "only_live": [], "only_persistent": [], "different": [],
                                      "unreadable_live": [], "not_in_libxl_config": []} for name in ("web", "db")}

    # the diffs are xen_disk's, then xl_cfg_files', for the same declaration
    live = xen_disk_run(host, check=True, diff=True, domains=host.guests, missing_domains="skip", wait=False)
    files = run_module(xl_cfg_files.main, {"validate": "never", "files": [
        {"path": str(cfg(host, g["domain"])), "name": g["domain"], "disks": g["disks"]} for g in host.guests]},
        check=True, diff=True)
    assert result["diff"] == live["diff"] + files["diff"]
    headers = [d["after_header"] for d in result["diff"]]
    assert "web (domid 1): xenstore" in headers and "db (domid 2): xenstore" in headers
    assert headers[-3:] == [str(cfg(host, n)) for n in ("web", "db", "spare")]
    web = next(d for d in result["diff"] if d["after_header"] == "web (domid 1): xenstore")
    assert "/local/domain/0/backend/vbd/1/51712/params" in web["after"] and "51712" not in web["before"]
    assert state(host, host.folder) == before

    # without diff mode, no diff
    assert "diff" not in host_run(host, host.folder, check=True, guests=host.guests)

    # once applied, check mode has nothing to say
    assert host_run(host, host.folder, guests=host.guests)["changed"] is True
    marker = trace.mark()
    done = host_run(host, host.folder, check=True, diff=True, guests=host.guests)
    assert done["changed"] is False and done["in_sync"] is True
    assert [d["after_header"] for d in done["diff"] if d["before"] != d["after"]] == []
    assert trace.writes_since(marker) == []


# -- 3. bad input: a located message and nothing written -----------------------------------------
def _bad_disks(host, guests):
    """Each bad disk located in the declaration (not in the file it was going to), all of them."""
    guests[1]["disks"][0] = "colour=blue," + guests[1]["disks"][0]
    guests[2]["disks"].append({"target": "/dev/vg0/spare", "vdev": "xvdb", "access": "sometimes"})
    return ["guests[1].disks[0].colour: unknown parameter: near `colour=b'",
            "\nguests[2].disks[1].access: "]


def _declared_twice(host, guests):
    guests.append({"domain": "web", "disks": []})
    return ["guests[3]: guest web is declared more than once (also guests[0])"]


def _no_disks_key(host, guests):
    del guests[1]["disks"]
    return ["guests[1] (db): no disks key"]


def _slash_without_config(host, guests):
    guests.append({"domain": "ops/web", "disks": []})
    return ["guests[3] (ops/web): the name cannot name a file in config_dir: give the guest's config"]


def _all_at_once(host, guests):
    """Every declaration error is reported, not the first."""
    del guests[1]["disks"]
    guests += [{"domain": "web", "disks": []}, {"domain": "ops/web", "disks": []}]
    return ["guests[1] (db): no disks key (an empty list must be said, or live and persist false: without it the "
            "guest's disks would be replaced by none)",
            "guests[3]: guest web is declared more than once (also guests[0])",
            "guests[4] (ops/web): the name cannot name a file in config_dir: give the guest's config"]


def _missing_backend_domain(host, guests):
    guests[0]["disks"].append("backend=stor9,vdev=xvdc,target=/dev/vg9/web")
    return ["guests[0].disks[2].backend: ", "stor9",
            "(no xl.cfg file was written: they are written once the live disks are applied)"]


@pytest.mark.parametrize("case", [_bad_disks, _declared_twice, _no_disks_key, _slash_without_config, _all_at_once,
                                  _missing_backend_domain])
def test_bad_input_writes_nothing_and_says_where(host, case):
    expected = case(host, host.guests)
    before = state(host, host.folder)
    result = host_run(host, host.folder, guests=host.guests)
    assert result.get("failed") is True, result
    for fragment in expected:
        assert fragment in result["msg"], (fragment, result["msg"])
    if case is _all_at_once:
        assert result["errors"] == expected
    if case is _bad_disks:
        assert len(result["errors"]) == 2 and ".config" not in result["msg"]
    assert state(host, host.folder) == before
    assert sorted(os.listdir(host.folder)) == ["db.cfg", "spare.cfg", "web.cfg"]  # no temporary file left


def test_a_host_that_cannot_be_read_back_gets_no_file(host):
    """Files only (live false), and the drift report cannot read xenstore: the run fails before a
    file is moved into place, as any failed run."""
    for guest in host.guests:
        guest["live"] = False
    before = state(host, host.folder)
    socket = str(host.folder.parent / "no-xenstored")
    result = host_run(host, host.folder, guests=host.guests, xenstore_socket=socket)
    assert result.get("failed") is True
    assert result["msg"].startswith("xenstore socket %s does not exist" % socket)
    assert result["msg"].endswith("(reading the guests back for the drift report; no xl.cfg file was written)")
    assert result["changed"] is False
    assert state(host, host.folder) == before
    assert sorted(os.listdir(host.folder)) == ["db.cfg", "spare.cfg", "web.cfg"]
    # without the report, the same run needs no xenstored
    written = host_run(host, host.folder, guests=host.guests, xenstore_socket=socket, report_drift=False)
    assert written["changed"] is True and [f["changed"] for f in written["files"]] == [True] * 3


@pytest.mark.xl
def test_real_xl_validates_whole_files_and_a_refusal_writes_nothing(host, tmp_path):
    """Xen 4.17's xl validates each new whole file (`content`): a setting xl refuses (an unknown
    on_crash action, which the file syntax allows) stops the run before the live plane; the same
    run with a valid file then writes it, validated."""
    from ansible_collections.xen.disks.tests.xl import harness

    images = host.images
    template = "# managed\nname = 'db'\ntype = 'hvm'\nmemory = 1024\ndisk = []\non_crash = '%s'\n"
    with harness.XlHost(str(tmp_path / "xl"), sim_mode=None) as xl_host:
        xl = xl_host.ns.command(["env", "LD_PRELOAD=" + xl_host.shim, "XENSTORED_PATH=" + xl_host.socket,
                                 xl_host.xl_binary])
        args = dict(validate="always", xl_path=xl_host.xl_binary,
                    validate_command=" ".join(shlex.quote(a) for a in xl) + " create --dryrun --quiet %s")
        host.guests[1]["content"] = template % "explode"
        before = state(host, host.folder)
        refused = host_run(host, host.folder, guests=host.guests, **args)
        assert refused.get("failed") is True
        assert refused["errors"][0].startswith("guests[1].config (%s): xl refuses the new file (rc 1): "
                                               % cfg(host, "db"))
        assert 'Unknown on_crash action "explode"' in refused["errors"][0]
        assert len(refused["errors"]) == 1
        assert state(host, host.folder) == before

        host.guests[1]["content"] = template % "restart"
        result = host_run(host, host.folder, guests=host.guests, **args)
    assert not result.get("failed"), result
    # the whole files (web and spare: their existing text with the disk setting; db: content)
    assert [f["validated"] for f in result["files"]] == [True, True, True]
    assert read(cfg(host, "db")) == (template % "restart").replace("disk = []", "disk = [\n%s]" % "".join(
        "    '%s',\n" % spec for spec in canonical(images)["db"]))
    assert sorted(children(host, "/libxl/2/device/vbd")) == ["51712", "5632"]


# -- 4. drift ---------------------------------------------------------------------------------
def test_a_live_disk_not_declared_is_drift(host):
    extra = "%s/web-extra.img,raw,xvdc,rw" % host.images
    assert not xen_disk_run(host, domain="web", disks=[extra], wait=False).get("failed")
    live = live_specs(host, "web")

    result = host_run(host, host.folder, guests=host.guests)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["drift"]["web"] == {"in_sync": False, "only_live": [live["xvdc"]], "only_persistent": [],
                                      "different": [], "unreadable_live": [], "not_in_libxl_config": []}
    assert result["drift"]["db"]["in_sync"] is True
    assert result["in_sync"] is False
    assert children(host, "/libxl/1/device/vbd") == ["51744", "51712", "51728"]  # not exclusive: kept

    # fail_on_drift: the drifting guest named, the result given with the failure
    before = state(host, host.folder)
    failed = host_run(host, host.folder, guests=host.guests, fail_on_drift=True)
    assert failed.get("failed") is True
    assert failed["msg"] == "live disks, libxl's record and xl.cfg files differ: web"
    assert failed["drift"] == result["drift"] and failed["changed"] is False
    assert [f["name"] for f in failed["files"]] == ["web", "db", "spare"]
    assert state(host, host.folder) == before

    quiet = host_run(host, host.folder, guests=host.guests, report_drift=False, fail_on_drift=True)
    assert not quiet.get("failed"), quiet
    assert (quiet["drift"], quiet["in_sync"], quiet["not_running"]) == ({}, True, ["spare"])


def test_a_file_edited_by_hand_is_drift_and_an_unreadable_spec_is_reported(host):
    applied = host_run(host, host.folder, guests=host.guests)
    assert applied["in_sync"] is True, applied
    # someone adds a disk to db's file by hand; db's file is only read (persist false)
    text = read(cfg(host, "db")).replace("]\n", "    '/srv/db-extra.img,raw,xvdd,rw',\n]\n")
    cfg(host, "db").write_text(text)
    host.guests[1]["persist"] = False
    result = host_run(host, host.folder, guests=host.guests)
    assert result["changed"] is False
    assert read(cfg(host, "db")) == text
    assert result["drift"]["db"]["only_persistent"] == ["format=raw,vdev=xvdd,access=rw,target=/srv/db-extra.img"]
    assert result["drift"]["db"]["in_sync"] is False and result["drift"]["web"]["in_sync"] is True

    # a disk spec xl's config parser reads but no disk parser can: an error for that guest only
    cfg(host, "db").write_text(text.replace("'/srv/db-extra.img,raw,xvdd,rw'", "'colour=blue'"))
    result = host_run(host, host.folder, guests=host.guests)
    assert not result.get("failed"), result
    assert result["drift"]["db"]["in_sync"] is False
    assert result["drift"]["db"]["error"].startswith("db: persistent[2]")
    assert result["drift"]["web"]["in_sync"] is True


def test_a_file_only_read_that_xl_cannot_read_is_that_guests_drift_not_a_failed_run(host):
    host.guests[1]["persist"] = False
    broken = launcher.guest_xl_cfg("db", "hvm") + "disk = [ 'vdev=xvda,target=/x' \n"
    cfg(host, "db").write_text(broken)
    result = host_run(host, host.folder, guests=host.guests)
    assert not result.get("failed"), result
    assert result["drift"]["db"] == {"in_sync": False, "error": result["files"][1]["error"]}
    assert result["files"][1]["error"].startswith("guests[1].config (%s): " % cfg(host, "db"))
    assert result["drift"]["web"]["in_sync"] is True and result["in_sync"] is False
    assert read(cfg(host, "db")) == broken  # only read
    assert sorted(live_specs(host, "db")) == ["hdc", "xvda"]  # db's live disks applied all the same
    # not running: nothing compared, nothing failed
    host.guests[2]["persist"] = False
    cfg(host, "spare").write_text("disk = [ \n")
    assert not host_run(host, host.folder, guests=host.guests).get("failed")


# -- 5. whole files ---------------------------------------------------------------------------
def test_content_is_written_with_its_disk_setting_replaced(host):
    template = "# rendered by the controller\nname = \"%s\"\ntype = \"%s\"\nmemory = 256\ndisk = [ 'old' ]\n" \
               "vif = [ 'bridge=xenbr0' ]\n"
    for guest, (name, _domid, guest_type) in zip(host.guests, DECLARED):
        guest["content"] = template % (name, guest_type)
    cfg(host, "spare").unlink()  # content creates a missing file
    result = host_run(host, host.folder, guests=host.guests)
    assert not result.get("failed"), result
    assert [(f["changed"], f["created"]) for f in result["files"]] == [(True, False), (True, False), (True, True)]
    for name, _domid, guest_type in DECLARED:
        setting = "disk = [\n" + "".join("    '%s',\n" % s for s in canonical(host.images)[name]) + "]"
        assert read(cfg(host, name)) == (template % (name, guest_type)).replace("disk = [ 'old' ]", setting)
    assert result["in_sync"] is True
    before = snapshot(host.folder)
    time.sleep(0.01)
    assert host_run(host, host.folder, guests=host.guests)["changed"] is False
    assert snapshot(host.folder) == before


def test_config_names_a_guests_file_anywhere_and_once(host, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    guests = host.guests[:2] + [{"domain": "ops/spare", "disks": host.guests[2]["disks"],
                                 "config": str(other / "spare.cfg"), "content": "name = 'spare'\n"}]
    before = snapshot(host.folder)["spare.cfg"]
    result = host_run(host, host.folder, guests=guests)
    assert not result.get("failed"), result
    assert result["not_running"] == ["ops/spare"]
    assert read(other / "spare.cfg") == "name = 'spare'\ndisk = [\n    '%s',\n]\n" % canonical(host.images)["spare"][0]
    assert snapshot(host.folder)["spare.cfg"] == before
    # two guests cannot share a file
    state_before = state(host, host.folder)
    twice = host_run(host, host.folder, guests=guests[:2] + [dict(guests[2], config=str(cfg(host, "web")))])
    assert twice.get("failed") is True
    assert twice["errors"] == ["guests[2].config (%s): the same file as guests[0].config (%s)" % (
        (cfg(host, "web"),) * 2)]
    assert state(host, host.folder) == state_before


# -- 6. per-guest options -----------------------------------------------------------------------
def test_exclusive_with_keep_per_guest(host):
    extra = ["%s/web-extra.img,raw,xvdc,rw" % host.images, "%s/web-spare.img,raw,xvdd,rw" % host.images]
    assert not xen_disk_run(host, domain="web", disks=extra, wait=False).get("failed")
    db_extra = "%s/db-extra.img,raw,xvdc,rw" % host.images
    assert not xen_disk_run(host, domain="db", disks=[db_extra], wait=False).get("failed")
    host.guests[0].update(exclusive=True, keep=["xvdd"])
    live_before = live_specs(host, "web")
    result = host_run(host, host.folder, guests=host.guests)
    assert not result.get("failed"), result
    # db is not exclusive: its undeclared disk stays, and is drift
    assert sorted(children(host, "/libxl/2/device/vbd")) == ["51712", "51744", "5632"]
    assert result["drift"]["db"]["only_live"] == [live_specs(host, "db")["xvdc"]]
    assert [(d["domain"], d["vdev"], d["action"]) for d in result["disks"] if d["domain"] == "web"] == [
        ("web", "xvdc", "detach"), ("web", "xvda", "attach"), ("web", "xvdb", "attach")]
    assert sorted(children(host, "/libxl/1/device/vbd")) == ["51712", "51728", "51760"]
    assert result["drift"]["web"]["only_live"] == [live_before["xvdd"]]


def test_live_false_writes_only_the_file_and_persist_false_only_the_live_disks(host):
    host.guests[1]["live"] = False  # db: file only
    host.guests[0]["persist"] = False  # web: live only, its file only read for the drift report
    web_file = snapshot(host.folder)["web.cfg"]
    db_tree = guest_tree(host, 2)
    result = host_run(host, host.folder, guests=host.guests)
    assert not result.get("failed"), result
    assert [d["domain"] for d in result["disks"]] == ["web", "web"]
    assert guest_tree(host, 2) == db_tree and len(db_tree) > 5
    assert host.domain_config(2).get("disks", []) == []
    assert snapshot(host.folder)["web.cfg"] == web_file
    assert read(cfg(host, "db")) == with_disks(launcher.guest_xl_cfg("db", "hvm"), canonical(host.images)["db"])
    assert [(f["name"], f["changed"]) for f in result["files"]] == [("web", False), ("db", True), ("spare", True)]
    assert sorted(children(host, "/libxl/1/device/vbd")) == ["51712", "51728"]
    # each plane's drift: web's disks are only live, db's only in its file
    live = live_specs(host, "web")
    assert result["drift"]["web"]["only_live"] == [live["xvda"], live["xvdb"]]
    assert result["drift"]["db"]["only_persistent"] == canonical(host.images)["db"][::-1]  # by device number
    assert result["in_sync"] is False


# -- 7. a guest that fails alone holds back only its own file ---------------------------------
def test_a_guest_whose_live_disks_fail_holds_back_only_its_own_file(host, tmp_path):
    from ansible_collections.xen.disks.tests.integration.test_xen_disk import HOTPLUG_SCRIPT
    from ansible_collections.xen.disks.tests.xenstored import backend_sim

    scripts = {}
    for name, status in (("fails", 3), ("works", 0)):
        scripts[name] = tmp_path / ("block-" + name)
        scripts[name].write_text(HOTPLUG_SCRIPT.format(log=tmp_path / "calls.log", status=status))
        scripts[name].chmod(0o755)
    failing = scripts["fails"]
    guests = declaration(host.images)
    guests[0]["disks"] = ["%s/web-root.img,raw,xvda,rw,script=%s" % (host.images, failing)]
    guests[1]["disks"] = ["vdev=xvda,access=rw,script=%s,target=%s/db-root.img" % (scripts["works"], host.images),
                          ",,hdc:cdrom,r"]
    before = snapshot(host.folder)
    # a backend driver that answers; web's hotplug script fails after the handshake, as it may on a real host
    with backend_sim.running(host.socket, "connect", udev=False):
        result = host_run(host, host.folder, guests=guests, hotplug_scripts="run", wait=True)
    assert result["failed"] is True, result
    assert result.get("failed_domains") == ["web"], result
    assert "guests[0].disks[0] (xvda): hotplug script failed: %s add exited with status 3" % failing in result["msg"]
    assert "the xl.cfg files of web were not written" in result["msg"]
    files = {f["name"]: f for f in result["files"]}
    assert files["web"]["held"] is True and files["web"]["changed"] is False
    assert read(cfg(host, "web")) == before["web.cfg"][0]  # web's file as it was
    assert [f.get("held", False) for n, f in files.items() if n != "web"] == [False, False]
    # the others' live disks and files are there
    db = ["format=raw,vdev=xvda,access=rw,script=%s,target=%s/db-root.img" % (scripts["works"], host.images),
          canonical(host.images)["db"][1]]
    live = live_specs(host, "db")
    assert sorted(live) == ["hdc", "xvda"] and "script=%s," % scripts["works"] in live["xvda"]
    types = {n: t for n, _d, t in DECLARED}
    for name, specs in (("db", db), ("spare", canonical(host.images)["spare"])):
        assert read(cfg(host, name)) == with_disks(launcher.guest_xl_cfg(name, types[name]), specs)
    assert result["drift"]["db"]["in_sync"] is True


# -- 8. the files' owner, group and mode --------------------------------------------------------
def test_config_mode_owner_and_group_of_the_files_written(host):
    before = state(host, host.folder)
    refused = host_run(host, host.folder, guests=host.guests, config_owner="no-such-user-xen-disks")
    assert refused["failed"] is True
    assert "owner: no user named 'no-such-user-xen-disks' on this host" in refused["msg"], refused["msg"]
    assert state(host, host.folder) == before  # checked before anything was written
    host.guests[1]["persist"] = False  # db's file is only read: it keeps its own mode
    os.chmod(cfg(host, "db"), 0o600)
    result = host_run(host, host.folder, guests=host.guests, config_mode="0640", config_owner="0", config_group="0")
    assert not result.get("failed"), result
    assert {n: oct(os.stat(cfg(host, n)).st_mode & 0o7777) for n in ("web", "db", "spare")} == {
        "web": "0o640", "db": "0o600", "spare": "0o640"}
    assert all(os.stat(cfg(host, n)).st_uid == 0 for n in ("web", "spare"))
    again = host_run(host, host.folder, guests=host.guests, config_mode="0640")
    assert again["changed"] is False, again
    os.chmod(cfg(host, "web"), 0o644)  # only the mode differs: the run says so and sets it
    fixed = host_run(host, host.folder, guests=host.guests, config_mode="0640")
    assert fixed["changed"] is True and [f["changed"] for f in fixed["files"]] == [True, False, False]
    assert os.stat(cfg(host, "web")).st_mode & 0o7777 == 0o640
