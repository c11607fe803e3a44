# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input through the real modules (AnsibleModule, in-process) against a real xenstored: every
case fails with a located message, never a traceback, and leaves the whole tree as it was."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError
from ansible_collections.xen.disks.plugins.module_utils._runs.info import run_xen_disk_info
from ansible_collections.xen.disks.plugins.module_utils._runs.live import run_xen_disk
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import (
    xen_disk_info_run,
    xen_disk_run,
)
from ansible_collections.xen.disks.tests.xenstored import launcher

pytestmark = pytest.mark.xenstored

HUGE = "1" * 5000  # past Python's 4,300-digit limit of int(str)


@pytest.fixture(scope="module")
def host(xenstored_session, tmp_path_factory):
    xenstored_session.add_guest("guest5", 5, "pv")
    xenstored_session.add_guest("guest7", 7, "pv")
    images = tmp_path_factory.mktemp("images")
    for name in ("a.img", "b.img"):
        with open(images / name, "wb") as handle:
            handle.truncate(1 << 20)
    xenstored_session.images = images
    return xenstored_session


def _img(host, name="a.img"):
    return str(host.images / name)


COLO = "colo,colo-host=h,colo-port=%s,colo-export=e,active-disk=/a,hidden-disk=/h"

# (id, args builder, words the message must hold)
CASES = [
    ("huge domain id", lambda h: {"domain": HUGE, "disks": []}, ["domain:", "no domain with id"]),
    ("huge vdev number", lambda h: {"domain": "guest5", "disks": ["%s,raw,%s,rw" % (_img(h), HUGE)]},
     ["disks[0].vdev:", "device number above"]),
    ("huge d<N>p0", lambda h: {"domain": "guest5", "disks": ["%s,raw,d%sp0,rw" % (_img(h), HUGE)]},
     ["disks[0].vdev:", "is above"]),
    ("huge partition", lambda h: {"domain": "guest5", "disks": ["%s,raw,xvda%s,rw" % (_img(h), HUGE)]},
     ["disks[0].vdev:", "is above"]),
    ("huge colo-port", lambda h: {"domain": "guest5", "disks": [
        "backendtype=qdisk,vdev=xvdb,%s,target=%s" % (COLO % HUGE, _img(h))]},
     ["disks[0]"]),
    ("huge colo-port dict", lambda h: {"domain": "guest5", "disks": [
        {"vdev": "xvdb", "target": _img(h), "colo": True, "colo-host": "h", "colo-port": HUGE,
         "colo-export": "e", "active-disk": "/a", "hidden-disk": "/h"}]},
     ["disks[0].colo-port:", "1-65535"]),
    ("huge backend", lambda h: {"domain": "guest5", "disks": ["%s,raw,xvdb,rw,backend=%s" % (_img(h), HUGE)]},
     ["disks[0].backend:", "no domain with id"]),
    ("huge keep", lambda h: {"domain": "guest5", "disks": [], "exclusive": True, "keep": [HUGE]},
     ["keep[0]:", "device number above"]),
    ("NUL in target", lambda h: {"domain": "guest5", "disks": ["%s\0x,raw,xvdb,rw" % _img(h)]},
     ["disks[0]", "NUL"]),
    ("keep label", lambda h: {"domain": "guest5", "disks": [], "exclusive": True, "keep": ["xvda", "nonsense"]},
     ["keep[1]:", "nonsense"]),
    ("keep label in domains", lambda h: {"domains": [{"domain": "guest5", "disks": []},
                                                     {"domain": "guest7", "disks": [], "keep": ["xvd0"]}]},
     ["domains[1].keep[0]:"]),
    ("missing backend domain, several guests", lambda h: {"domains": [
        {"domain": "guest5", "disks": ["%s,raw,xvdb,rw" % _img(h)]},
        {"domain": "guest7", "disks": ["%s,raw,xvdb,rw" % _img(h, "b.img")], "backend": "99999"}]},
     ["domains[1].disks[0].backend:", "99999"]),
    ("missing backend domain id", lambda h: {"domains": [
        {"domain": "guest5", "disks": ["%s,raw,xvdb,rw" % _img(h)]},
        {"domain": "guest7", "disks": ["%s,raw,xvdb,rw,backend=42" % _img(h, "b.img")]}]},
     ["domains[1].disks[0].backend:", "no domain with id 42"]),
]
for bad in ("inf", "1e300", "nan", "-1", "0", "-inf"):
    CASES.append(("timeout " + bad, lambda h, bad=bad: {
        "domain": "guest5", "disks": ["%s,raw,xvdb,rw" % _img(h)], "timeout": bad}, ["timeout:"]))


@pytest.mark.parametrize("name, build, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_located_message_and_nothing_is_written(host, name, build, words):
    before = host.dump("/")
    result = xen_disk_run(host, **build(host))
    assert result.get("failed"), result
    assert "exception" not in result and "Traceback" not in result["msg"], result
    for word in words:
        assert word in result["msg"], (name, result["msg"][:2000])
    assert host.dump("/") == before


INFO_CASES = [
    ("huge domain id", {"domain": HUGE}, ["domain:", "no domain with id"]),
    ("huge in domains", {"domains": ["guest5", HUGE]}, ["domains[1]:", "no domain with id"]),
]


@pytest.mark.parametrize("name, args, words", INFO_CASES, ids=[c[0] for c in INFO_CASES])
def test_xen_disk_info_bad_input_is_a_message(host, name, args, words):
    result = xen_disk_info_run(host, **args)
    assert result.get("failed"), result
    assert "exception" not in result, result
    for word in words:
        assert word in result["msg"], (name, result["msg"][:2000])


# Ansible 2.19 refuses lone surrogates in module arguments before a module runs (depending on its
# JSON profile), so they are given to the module code directly: other callers may have them.
@pytest.mark.parametrize("run, params, where", [
    (run_xen_disk, {"domain": "guest5", "disks": ["/tmp/\ud800,raw,xvdb,rw"]}, "disks[0].target:"),
    (run_xen_disk, {"domain": "guest5", "disks": [{"vdev": "xvdb", "target": "/\udcff"}]},
     "disks[0].target:"),
    (run_xen_disk, {"domain": "g\ud800", "disks": []}, "domain:"),
    (run_xen_disk, {"domain": "guest5", "disks": [], "backend": "\udc80"}, "backend:"),
    (run_xen_disk, {"domain": "guest5", "disks": [], "script_dir": "/etc/\udc80"}, "script_dir:"),
    (run_xen_disk, {"domains": [{"domain": "guest5"}, {"domain": "\ud800"}]}, "domains[1].domain:"),
    (run_xen_disk_info, {"domain": "\udc80"}, "domain:"),
    (run_xen_disk_info, {"domains": ["guest5", "\udc80"]}, "domains[1]:"),
])
def test_lone_surrogates_in_options_are_messages(host, run, params, where):
    before = host.dump("/")
    with pytest.raises(ReconcileError) as info:
        run(dict(params, xenstore_socket=host.socket))
    assert str(info.value).startswith(where) and "UTF-8" in str(info.value), str(info.value)
    assert host.dump("/") == before


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_socket_path_that_is_no_socket_says_what_it_is(host, tmp_path, kind):
    path = tmp_path / "not-a-socket"
    if kind == "file":
        path.write_text("")
    else:
        path.mkdir()
    for run in (xen_disk_run, xen_disk_info_run):
        args = {"domain": "guest5", "xenstore_socket": str(path)}
        if run is xen_disk_run:
            args["disks"] = []
        result = run(host, **args)
        assert result["failed"], result
        expected = "a regular file" if kind == "file" else "a directory"
        assert result["msg"].startswith("xenstore socket %s is %s, not a socket" % (path, expected)), result["msg"]


@pytest.mark.parametrize("guest_released", [False, True])
def test_a_detach_no_backend_answers_says_so(xenstored, tmp_path, guest_released):
    """No backend driver: the disk never connected (frontend Initialising), or the guest let go
    (frontend Closed) and nobody closed the backend. Not the guest's fault: the message says so."""
    xenstored.add_guest("guest5", 5, "pv")
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 4096)
    attached = xen_disk_run(xenstored, domain="guest5", disks=["%s,,xvdb" % image], wait=False)
    assert not attached.get("failed") and attached["changed"], attached
    front = "/local/domain/5/device/vbd/51728/state"
    if guest_released:
        with launcher.WireClient(xenstored.socket) as client:
            client.write(front, "6")
    result = xen_disk_run(xenstored, domain="guest5", state="absent", disks=["xvdb"], timeout=0.5)
    assert result["failed"], result
    state = "6 (Closed)" if guest_released else "1 (Initialising)"
    assert result["msg"] == (
        "disks[0] (xvdb): timed out after 0.5 s waiting for the backend to close "
        "(/local/domain/0/backend/vbd/5/51728/state: 5 (Closing)): the backend did not answer (the guest's "
        "frontend is %s): is the backend driver running (blkback, QEMU)? force=true removes the disk "
        "without it" % state), result["msg"]


def test_a_missing_hotplug_script_under_run_fails_before_anything_is_written(host):
    before = host.dump("/")
    result = xen_disk_run(host, domains=[
        {"domain": "guest5", "disks": ["%s,raw,xvdc,rw" % _img(host)]},
        {"domain": "guest7", "disks": ["%s,raw,xvdc,rw,script=/nonexistent/block" % _img(host, "b.img")]}],
        hotplug_scripts="run", script_dir=str(host.images))
    assert result["failed"], result
    assert result["msg"].splitlines() == [
        "domains[0].disks[0] (xvdc): hotplug script %s/block is not an executable file on this host "
        "(hotplug_scripts=run; auto runs it only when present)" % host.images,
        "domains[1].disks[0] (xvdc): hotplug script /nonexistent/block is not an executable file on this host "
        "(hotplug_scripts=run; auto runs it only when present)"], result["msg"]
    assert host.dump("/") == before
