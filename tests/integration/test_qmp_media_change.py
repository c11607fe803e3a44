# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cdrom media change of a qemu-xen HVM guest against Debian's REAL QEMU (TCG, paused) started
with libxl's own device-model options (tests/qemu/device_model.py), and the real xenstored.

QEMU's own `query-block` / `query-fdsets` (asked on a second monitor, never through the
collection) prove the medium changed or is gone; a recording proxy in front of QEMU shows the
exact bytes xen_disk sends, which are libxl 4.17's (libxl_disk.c cdrom_insert, libxl_qmp.c).
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from ansible_collections.xen.disks.plugins.module_utils._io import qmp as _qmp
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import value, xen_disk_run
from ansible_collections.xen.disks.tests.qemu import device_model
from ansible_collections.xen.disks.tests.xenstored import backend_sim, launcher

pytestmark = [pytest.mark.xenstored,
              pytest.mark.skipif(not device_model.available(), reason="qemu-system-x86_64 is not installed")]

DOMID = 7
DEVID = 5632                     # hdc
BACKEND = "/local/domain/0/backend/qdisk/7/5632"
LIBXL = "/libxl/7/device/vbd/5632"


def write(host, path, text):
    with launcher.WireClient(host.socket) as client:
        client.write(path, text)


@pytest.fixture
def guest(xenstored, tmp_path):
    """HVM guest 7 as libxl creates it with qemu-xen (dm-version, device-model pid), an empty
    cdrom hdc attached, its QEMU running with libxl's options for it, images of distinct sizes."""
    xenstored.add_guest("guest7", DOMID, "hvm")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    images = {}
    for name, size in (("d.iso", 3 << 20), ("e.iso", 1 << 20), ("f.iso", 2 << 20)):
        images[name] = str(tmp_path / name)
        with open(images[name], "wb") as handle:
            handle.truncate(size)
    xenstored.run_dir = str(run_dir)
    xenstored.images = images
    with backend_sim.running(xenstored.socket, "connect"):
        attached = run(xenstored, [",raw,hdc,cdrom"])
        assert attached["disks"][0]["action"] == "attach" and not attached.get("failed"), attached
        qemu = device_model.DeviceModel(DOMID, run_dir, cdroms=[(DEVID, None)]).start()
        try:
            write(xenstored, "/libxl/7/dm-version", "qemu_xen")
            write(xenstored, "/local/domain/7/image/device-model-pid", str(qemu.proc.pid))
            xenstored.qemu = qemu
            yield xenstored
        finally:
            qemu.stop()


def run(host, disks, check=False, diff=False, **args):
    args.setdefault("libxl_run_dir", getattr(host, "run_dir", "/nonexistent"))
    return xen_disk_run(host, check=check, diff=diff, domain="guest7", disks=disks, **args)


def size(host, name):
    return os.path.getsize(host.images[name])


def expected_qmp(host, name):
    path = host.images[name]
    return ["query-version", "eject id=ide-5632",
            "add-fd opaque=raw:%s (with the file descriptor of %s)" % (path, path),
            "blockdev-change-medium id=ide-5632 filename=/dev/fdset/%s format=raw"]


def test_insert_change_eject_seen_by_qemu(guest):
    qemu = guest.qemu
    assert qemu.medium(DEVID) is None
    inserted = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"]])
    assert not inserted.get("failed"), inserted
    change = inserted["disks"][0]
    assert change["action"] == "media_change"
    first_fdset = sorted(qemu.fdset_files())[-1]
    assert change["qmp"][:3] == expected_qmp(guest, "d.iso")[:3]
    assert change["qmp"][3] == expected_qmp(guest, "d.iso")[3] % first_fdset
    assert change["qmp_socket"] == qemu.qmp_socket
    # QEMU reads the new medium through the fd set, open on the declared image
    assert qemu.medium(DEVID) == ("/dev/fdset/%d" % first_fdset, size(guest, "d.iso"))
    assert ("raw:" + guest.images["d.iso"], guest.images["d.iso"]) in qemu.fdset_files()[first_fdset]
    for base in (BACKEND, LIBXL):
        assert value(guest, base + "/params") == "aio:" + guest.images["d.iso"]

    again = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"]])
    assert again["changed"] is False and again["disks"][0]["qmp"] == []

    changed = run(guest, ["%s,raw,hdc,cdrom" % guest.images["e.iso"]])
    assert not changed.get("failed"), changed
    assert qemu.medium(DEVID)[1] == size(guest, "e.iso")
    assert value(guest, LIBXL + "/params") == "aio:" + guest.images["e.iso"]

    ejected = run(guest, [",raw,hdc,cdrom"])
    assert not ejected.get("failed"), ejected
    assert ejected["disks"][0]["qmp"] == ["query-version", "eject id=ide-5632"]
    assert qemu.medium(DEVID) is None
    for base in (BACKEND, LIBXL):
        assert value(guest, base + "/params") == ""
    assert run(guest, [",raw,hdc,cdrom"])["changed"] is False


def test_check_mode_and_diff_show_the_qmp_steps_and_send_nothing(guest):
    spec = "%s,raw,hdc,cdrom" % guest.images["f.iso"]
    proxy_target = guest.qemu.qmp_socket + ".qemu"
    os.rename(guest.qemu.qmp_socket, proxy_target)
    proxy = device_model.RecordingProxy(guest.qemu.qmp_socket, proxy_target)
    try:
        check = run(guest, [spec], check=True, diff=True)
    finally:
        proxy.close()
        os.rename(proxy_target, guest.qemu.qmp_socket)
    assert check["changed"] is True
    planned = check["disks"][0]["qmp"]
    assert planned[:3] == expected_qmp(guest, "f.iso")[:3]
    assert planned[3] == "blockdev-change-medium id=ide-5632 filename=/dev/fdset/<fdset-id> format=raw"
    qmp_diff = check["diff"][-1]
    assert qmp_diff["after_header"] == "guest7 (domid 7): QMP %s" % guest.qemu.qmp_socket
    assert qmp_diff["after"] == "".join("hdc: %s\n" % line for line in planned)
    assert proxy.connections == 0 and proxy.sent == b""
    assert guest.qemu.medium(DEVID) is None
    assert value(guest, LIBXL + "/params") == "aio:"  # as the attach of the empty cdrom wrote it


def test_transcript_is_libxls(guest):
    """What xen_disk writes on the QMP socket, byte for byte: libxl 4.17's messages (ids from
    0x786c7100, the first command's id taken before qmp_capabilities), the image's fd passed
    with the first byte of add-fd, no remove-fd (4.17 sends none)."""
    path = guest.images["d.iso"]
    proxy_target = guest.qemu.qmp_socket + ".qemu"
    os.rename(guest.qemu.qmp_socket, proxy_target)
    proxy = device_model.RecordingProxy(guest.qemu.qmp_socket, proxy_target)
    try:
        inserted = run(guest, ["%s,raw,hdc,cdrom" % path])
        ejected = run(guest, [",raw,hdc,cdrom"])
    finally:
        proxy.close()
        os.rename(proxy_target, guest.qemu.qmp_socket)
    assert not inserted.get("failed") and not ejected.get("failed"), (inserted, ejected)
    fdset = int(inserted["disks"][0]["qmp"][3].split("/dev/fdset/")[1].split()[0])
    assert proxy.connections == 2
    assert proxy.messages() == [
        ('{"execute":"qmp_capabilities","id":2020372737}\r\n', None, []),
        ('{"execute":"query-version","id":2020372736}\r\n', None, []),
        ('{"execute":"eject","id":2020372738,"arguments":{"id":"ide-5632"}}\r\n', None, []),
        ('{"execute":"add-fd","id":2020372739,"arguments":{"opaque":"raw:%s"}}\r\n' % path, 0, [path]),
        ('{"execute":"blockdev-change-medium","id":2020372740,"arguments":{"id":"ide-5632",'
         '"filename":"/dev/fdset/%d","format":"raw"}}\r\n' % fdset, None, []),
        ('{"execute":"qmp_capabilities","id":2020372737}\r\n', None, []),
        ('{"execute":"query-version","id":2020372736}\r\n', None, []),
        ('{"execute":"eject","id":2020372738,"arguments":{"id":"ide-5632"}}\r\n', None, []),
    ]
    assert guest.qemu.medium(DEVID) is None


def test_qemu_absent_refused_or_refusing(guest):
    spec = "%s,raw,hdc,cdrom" % guest.images["d.iso"]
    socket_path = guest.qemu.qmp_socket
    # no socket at all (another run directory)
    other = os.path.join(guest.run_dir, "elsewhere")
    os.mkdir(other)
    check = run(guest, [spec], check=True, libxl_run_dir=other)
    assert check["changed"] is True and not check.get("failed")
    assert "disks[0] (hdc): the media change needs the guest's QEMU, but %s/qmp-libxl-7 is not a socket: an apply " \
        "would fail (is the device model running?)" % other in "\n".join(check["warnings"])
    assert not any("QEMU" in w for w in run(guest, [spec], check=True)["warnings"])  # QEMU listens there
    absent = run(guest, [spec], libxl_run_dir=other)
    assert absent["failed"] is True
    assert absent["msg"] == (
        "disks[0] (hdc): media change failed: no QMP socket %s/qmp-libxl-7: the guest's device model (QEMU) "
        "is not running, or not with libxl's QMP socket; nothing was changed: QEMU and xenstore keep the "
        "old medium" % other)
    assert value(guest, LIBXL + "/params") == "aio:" and value(guest, BACKEND + "/params") == "aio:"

    # QEMU refuses a command: a format it cannot open the image with (after the eject, as libxl)
    wrong = run(guest, ["%s,qcow2,hdc,cdrom" % guest.images["d.iso"]])
    assert wrong["failed"] is True
    assert "QEMU refused blockdev-change-medium id=ide-5632 filename=/dev/fdset/" in wrong["msg"]
    assert "format=qcow2: GenericError: " in wrong["msg"]
    assert wrong["msg"].endswith("the drive is left empty in QEMU and in xenstore (libxl leaves it so too); "
                                 "a next run inserts the declared medium")
    assert guest.qemu.medium(DEVID) is None
    assert value(guest, LIBXL + "/params") == ""
    # libxl stores its JSON only with the insert transaction, which did not happen
    assert [(d["vdev"], d.get("pdev_path", ""), d["format"]) for d in guest.domain_config(DOMID)["disks"]] == \
        [("hdc", "", "empty")]

    # QEMU refuses the eject: no such qdev (a guest started without this cdrom emulated)
    write(guest, "/libxl/7/device/vbd/5632/params", "aio:" + guest.images["e.iso"])
    # (the libxl record now says e.iso: the run wants d.iso, so it plans a media change)
    guest.qemu.stop()
    qemu = device_model.DeviceModel(DOMID, guest.run_dir, cdroms=[]).start()
    try:
        refused = run(guest, [spec])
    finally:
        qemu.stop()
    assert refused["failed"] is True
    assert refused["msg"].startswith(
        "disks[0] (hdc): media change failed: QEMU refused eject id=ide-5632: DeviceNotFound: "
        "Device 'ide-5632' not found; nothing was changed")
    assert value(guest, LIBXL + "/params") == "aio:" + guest.images["e.iso"]

    # the socket is left behind by a QEMU that exited: connection refused
    assert os.path.exists(socket_path)
    with socket.socket(socket.AF_UNIX) as probe:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(socket_path)
    gone = run(guest, [spec])
    assert gone["failed"] is True
    assert "QMP socket %s refused the connection: no QEMU is listening on it" % socket_path in gone["msg"]


def test_qemu_that_does_not_answer_times_out(guest):
    guest.qemu.pause()
    try:
        stuck = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"]], timeout=1)
    finally:
        guest.qemu.resume()
    assert stuck["failed"] is True
    # (a loaded machine may let the greeting out before QEMU stopped: then capabilities wait)
    assert ("no answer from QEMU on %s within 1 s (waiting for its greeting)" % guest.qemu.qmp_socket in stuck["msg"]
            or "no answer from QEMU on %s within 1 s (waiting for the answer to qmp_capabilities)"
            % guest.qemu.qmp_socket in stuck["msg"]), stuck["msg"]
    assert value(guest, LIBXL + "/params") == "aio:"


@pytest.mark.parametrize("dm_version", [None, "qemu_xen_traditional"])
def test_qemu_traditional_is_xenstore_only(guest, dm_version):
    with launcher.WireClient(guest.socket) as client:
        if dm_version is None:
            client.rm("/libxl/7/dm-version")
        else:
            client.write("/libxl/7/dm-version", dm_version)
    other = os.path.join(guest.run_dir, "none")  # no QMP socket: none is needed
    result = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"]], libxl_run_dir=other)
    assert not result.get("failed"), result
    assert result["disks"][0]["action"] == "media_change" and result["disks"][0]["qmp"] == []
    assert value(guest, LIBXL + "/params") == "aio:" + guest.images["d.iso"]
    assert guest.qemu.medium(DEVID) is None   # QEMU was not told, as libxl does not tell it


def test_stub_domain_and_unknown_dm_version_are_refused(guest):
    write(guest, "/libxl/7/dm-version", "qemu_xen_next")
    unknown = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"]])
    assert unknown["failed"] is True
    assert unknown["msg"] == ("disks[0]: cannot determine the guest's device model version: /libxl/7/dm-version "
                              "holds 'qemu_xen_next' (libxl knows unknown, qemu_xen_traditional, qemu_xen)")
    write(guest, "/libxl/7/dm-version", "qemu_xen")
    write(guest, "/local/domain/7/image/device-model-domid", "8")
    stubdom = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"]])
    assert stubdom["failed"] is True
    assert "runs in a stub domain" in stubdom["msg"]
    assert value(guest, LIBXL + "/params") == "aio:"


def test_adapter_errors_name_class_and_description(guest):
    """The adapter alone: a refused command carries QEMU's error class and description."""
    with _qmp.QmpSession(guest.qemu.qmp_socket, 10) as session:
        assert session.execute("query-version")["qemu"]["major"] == session.version[0]
        with pytest.raises(_qmp.QmpCommandError) as refused:
            session.execute("eject", (("id", "ide-1"),))
    assert (refused.value.error_class, refused.value.desc) == ("DeviceNotFound", "Device 'ide-1' not found")
    assert str(refused.value) == "QEMU refused eject id=ide-1: DeviceNotFound: Device 'ide-1' not found"
    assert json.loads(_qmp.encode_command("eject", (("id", "ide-1"),), 5)) == {
        "execute": "eject", "id": 5, "arguments": {"id": "ide-1"}}


def test_adapter_when_qemu_dies_mid_session(guest):
    """QEMU killed between two commands: the next one fails as a broken connection."""
    session = _qmp.QmpSession(guest.qemu.qmp_socket, 10)
    try:
        session.execute("query-version")
        guest.qemu.stop()
        with pytest.raises(_qmp.QmpProtocolError) as broken:
            session.execute("eject", (("id", "ide-5632"),))
    finally:
        session.close()
    # the send may already fail (EPIPE), or the answer never comes (EOF): both name the socket
    assert str(broken.value) in (
        "QEMU closed the QMP connection on %s while the answer to eject was expected" % guest.qemu.qmp_socket,
        "sending eject to QEMU on %s failed: Broken pipe" % guest.qemu.qmp_socket,
        "sending eject to QEMU on %s failed: Connection reset by peer" % guest.qemu.qmp_socket)


def test_two_cdroms_of_one_guest_share_one_connection(guest):
    """QEMU serves one QMP client at a time (and libxl's qmp-socket-lock admits one): both media
    changes of one run go over one connection, each command answered before the next."""
    attached = run(guest, [",raw,hdc,cdrom", ",raw,hdd,cdrom"])
    assert [d["action"] for d in attached["disks"]] == ["unchanged", "attach"], attached
    guest.qemu.stop()
    qemu = device_model.DeviceModel(DOMID, guest.run_dir, cdroms=[(DEVID, None), (5696, None)]).start()
    os.rename(qemu.qmp_socket, qemu.qmp_socket + ".qemu")
    proxy = device_model.RecordingProxy(qemu.qmp_socket, qemu.qmp_socket + ".qemu")
    try:
        both = run(guest, ["%s,raw,hdc,cdrom" % guest.images["d.iso"], "%s,raw,hdd,cdrom" % guest.images["e.iso"]])
        assert not both.get("failed"), both
        assert qemu.medium(DEVID)[1] == size(guest, "d.iso")
        assert qemu.medium(5696)[1] == size(guest, "e.iso")
    finally:
        proxy.close()
        qemu.stop()
    assert proxy.connections == 1
    sent = [json.loads(text) for text, _fd_at, _files in proxy.messages()]
    assert [(m["execute"], m.get("arguments", {}).get("id")) for m in sent] == [
        ("qmp_capabilities", None), ("query-version", None), ("eject", "ide-5632"),
        ("query-version", None), ("eject", "ide-5696"),
        ("add-fd", None), ("blockdev-change-medium", "ide-5632"),
        ("add-fd", None), ("blockdev-change-medium", "ide-5696")]
    assert [d["qmp"][-1].split("filename=")[1] for d in both["disks"]] == [
        "/dev/fdset/0 format=raw", "/dev/fdset/1 format=raw"]
