# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QMP transcripts of real `xl cd-insert` / `xl cd-eject` (libxl 4.17 and 4.20, tests/xl/) against
xen_disk's for the same media changes: two hosts prepared identically, each with its own real
QEMU (tests/qemu/) started with libxl's options for the guest's cdrom, and a recording proxy
at /var/run/xen/qmp-libxl-<domid> inside the host's mount namespace (where libxl connects).

The bytes must be equal: nothing is normalised (fresh QEMUs number their fd sets alike, and
xen_disk numbers its messages as libxl does). QEMU's own query-block proves each step.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.xen.disks.tests.qemu import device_model
from ansible_collections.xen.disks.tests.xl import harness

pytestmark = [pytest.mark.xenstored, pytest.mark.xl,
              pytest.mark.skipif(not device_model.available(), reason="qemu-system-x86_64 is not installed")]

DOMID = 7
DEVID = 5632


def media_changes(workdir, images, tool, xen_version):
    """Insert d.iso, change to e.iso, eject, with `tool` ("xl" or "xen_disk"); returns per step the
    proxy's messages, the medium QEMU reports after it, what the tool itself wrote to xenstore
    (request trace) and libxl's JSON `disks` after it."""
    os.makedirs(workdir)
    qemu_dir = os.path.join(workdir, "qemu")
    os.makedirs(qemu_dir)
    steps, media, writes, configs = [], [], [], []
    with harness.XlHost(os.path.join(workdir, "host"), xen_version=xen_version) as host:
        host.add_guest("hvm7", DOMID, "hvm")
        host.xl("block-attach", str(DOMID), ",raw,hdc,cdrom")
        qemu = device_model.DeviceModel(DOMID, qemu_dir, cdroms=[(DEVID, None)]).start()
        proxy = device_model.RecordingProxy(host.qmp_socket_path(DOMID), qemu.qmp_socket)
        try:
            for target in (images["d.iso"], images["e.iso"], None):
                before = len(proxy.messages())
                tree = host.dump("/")
                marker = host.mark("media")
                if tool == "xl":
                    if target:
                        host.xl("cd-insert", str(DOMID), "hdc", target)
                    else:
                        host.xl("cd-eject", str(DOMID), "hdc")
                else:
                    disk = {"vdev": "hdc", "devtype": "cdrom", "format": "raw"}
                    if target:
                        disk["target"] = target
                    result = host.xen_disk(domain="hvm7", disks=[disk])
                    assert not result.get("failed") and result["disks"][0]["action"] == "media_change", result
                host.wait_for(lambda: proxy.connections == len(steps) + 1, what="the QMP connection")
                steps.append(proxy.messages()[before:])
                media.append(qemu.medium(DEVID))
                changed, removed = host.own_writes(marker, tree)
                writes.append((sorted(changed.items()), sorted(removed)))
                configs.append(host.domain_config(DOMID)["disks"])
        finally:
            proxy.close()
            qemu.stop()
    return steps, media, writes, configs


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The same image files for both hosts (the namespaces share /tmp)."""
    base = tmp_path_factory.mktemp("qmp-xl-images")
    out = {}
    # e.iso's file name has what JSON escapes (quote, backslash, a control character) and
    # non-ASCII: both tools must encode it as libxl's yajl does
    for name, file_name, size in (("d.iso", "d.iso", 3 << 20), ("e.iso", 'e "q" \\ \x1b \u00e9.iso', 1 << 20)):
        out[name] = str(base / file_name)
        with open(out[name], "wb") as handle:
            handle.truncate(size)
    return out


@pytest.fixture(scope="module", params=harness.XEN_VERSIONS)
def transcripts(request, tmp_path_factory, images):
    base = str(tmp_path_factory.mktemp("qmp-xl-%s" % request.param))
    return {tool: media_changes(os.path.join(base, tool), images, tool, request.param) for tool in ("xl", "xen_disk")}


def test_xl_changes_the_medium_as_qemu_reports(transcripts, images):
    _steps, media, writes, configs = transcripts["xl"]
    assert media == [("/dev/fdset/0", 3 << 20), ("/dev/fdset/1", 1 << 20), None]
    params = [dict(changed).get("/libxl/7/device/vbd/5632/params") for changed, _removed in writes]
    assert params == [("aio:" + images["d.iso"], ("n0",)), ("aio:" + images["e.iso"], ("n0",)), ("", ("n0",))]
    assert [c[0].get("pdev_path", "") for c in configs] == [images["d.iso"], images["e.iso"], ""]


def test_xen_disk_sends_exactly_what_xl_sends(transcripts, images):
    """Byte for byte, fds and the byte they came with included; nothing normalised."""
    xl_steps, xl_media, _w, _c = transcripts["xl"]
    steps, media, _w, _c = transcripts["xen_disk"]
    assert [len(s) for s in xl_steps] == [5, 5, 3]  # capabilities, query-version, eject[, add-fd, change]
    assert xl_steps[0][3][1:] == (0, [images["d.iso"]])  # the image's fd, with add-fd's first byte
    assert '"opaque":"raw:%s"' % images["e.iso"].replace("\\", "\\\\").replace('"', '\\"').replace(
        "\x1b", "\\u001B") in xl_steps[1][3][0]           # yajl's escapes, UTF-8 as is
    assert steps == xl_steps
    assert media == xl_media


def test_xen_disk_writes_what_xl_writes_around_qmp(transcripts):
    """The same media changes on a qemu-xen guest: xenstore writes (values and permissions, by
    the request trace) and libxl's JSON disks equal xl's after every step."""
    _s, _m, xl_writes, xl_configs = transcripts["xl"]
    _s, _m, writes, configs = transcripts["xen_disk"]
    assert writes == xl_writes
    assert configs == xl_configs
