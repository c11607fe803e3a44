# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real-xl harness itself (tests/xl/harness.py): the hypervisor shim replaces every call,
cases are isolated in their mount namespaces, the trace separates xl's own writes, and a test
can place the QMP socket xl opens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ansible_collections.xen.disks.tests.xl import harness

pytestmark = [pytest.mark.xenstored, pytest.mark.xl]


@pytest.fixture(params=harness.XEN_VERSIONS)
def xl_host(request, tmp_path):
    host = harness.XlHost(str(tmp_path / "host"), xen_version=request.param)
    try:
        yield host
    finally:
        host.close()


@pytest.mark.parametrize("version", harness.XEN_VERSIONS)
def test_shim_replaces_every_hypervisor_call(version):
    imports = harness.hypervisor_imports(version)
    with open(harness.SHIM_SOURCE) as handle:
        implemented = harness.implemented_functions(handle.read(), version)
    assert len(imports) > 100
    assert {"xc_interface_open", "xc_domain_getinfolist", "xc_domain_get_native_protocol"} <= implemented
    assert implemented <= set(imports), "hvshim.c defines functions libxl %s does not import" % version
    stubs = harness.stub_source([n for n in imports if n not in implemented])
    assert all(('__asm__("%s")' % n) in stubs for n in imports if n not in implemented)
    library = harness.build_shim(version)
    defined = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True,
                             check=True).stdout.split()
    assert set(imports) <= set(defined)


def test_namespaces_are_private(tmp_path, xl_host):
    other = harness.XlHost(str(tmp_path / "other"), sim_mode=None, xen_version=xl_host.xen_version)
    try:
        with open(xl_host.ns.path("/var/lib/xen/probe"), "w") as handle:
            handle.write("one")
        assert not os.path.exists("/var/lib/xen/probe")
        assert not os.path.exists(other.ns.path("/var/lib/xen/probe"))
        inside = xl_host.run(["cat", "/var/lib/xen/probe", "/etc/xen/scripts/block"])
        assert inside.returncode == 0 and inside.stdout.startswith("one")
        assert os.path.exists(xl_host.ns.path("/etc/xen/xl.conf"))
        assert not os.path.exists("/etc/xen/xl.conf") or os.path.samefile("/etc/xen/xl.conf", "/etc/xen/xl.conf")
        # the toolstack as Debian installs it, only this version's
        tools = xl_host.run(["sh", "-c", "ls -d /usr/lib/xen-*/bin/xl"])
        assert tools.stdout.split() == ["/usr/lib/xen-%s/bin/xl" % xl_host.xen_version]
        listed = xl_host.run(["/usr/lib/xen-%s/bin/xl" % xl_host.xen_version, "block-list", "0"],
                             env=dict(xl_host.env, LD_PRELOAD=xl_host.shim))
        assert listed.returncode == 0 and listed.stdout.startswith("Vdev"), listed.stderr
    finally:
        other.close()


def test_xl_sees_the_guests_and_their_types(xl_host):
    xl_host.add_guest("pv5", 5, "pv")
    xl_host.add_guest("hvm7", 7, "hvm")
    listing = xl_host.xl("list").stdout.split("\n")
    assert [line.split()[:2] for line in listing[1:] if line] == [["Domain-0", "0"], ["pv5", "5"], ["hvm7", "7"]]
    config = xl_host.domain_config(7)
    assert config["c_info"] == {"type": "hvm", "name": "hvm7", "uuid": xl_host.guests[7]["uuid"],
                                "run_hotplug_scripts": "True"}
    long_listing = xl_host.xl("list", "-l", "5").stdout
    assert '"name": "pv5"' in long_listing


def test_trace_separates_xl_writes_from_the_backend(xl_host, tmp_path):
    xl_host.add_guest("pv5", 5, "pv")
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 4096)
    with harness.loop_devices([str(image)]) as loops:  # the block script's block-device branch
        target = loops[str(image)]
        before = xl_host.dump("/")
        marker = xl_host.mark("attach")
        xl_host.xl("block-attach", "5", "%s,raw,xvdb,rw" % target)
        backend = "/local/domain/0/backend/vbd/5/51728"
        xl_host.wait_for(lambda: xl_host.read(backend + "/state") == "4", what="the backend connected")
        changed, removed = xl_host.own_writes(marker, before)
        check_trace(xl_host, backend, changed, removed, target)


def check_trace(xl_host, backend, changed, removed, image):
    assert changed[backend + "/params"] == (str(image), ("n0", "r5"))
    assert changed[backend + "/state"] == ("1", ("n0", "r5"))  # libxl's value, not the backend's 4
    assert changed["/local/domain/5/device/vbd/51728/protocol"] == ("x86_64-abi", ("n5", "r0"))
    assert not any(p.endswith(("/physical-device", "/hotplug-status", "/ring-ref", "/sectors")) for p in changed)
    assert xl_host.read(backend + "/hotplug-status") == "connected"
    assert removed == set()
    assert xl_host.domain_config(5)["disks"] == [
        {"pdev_path": str(image), "vdev": "xvdb", "format": "raw", "readwrite": 1}]


def test_pv32_guest_protocol(xl_host, tmp_path):
    xl_host.add_guest("pv6", 6, "pv", width=32)
    (tmp_path / "a.qcow2").write_bytes(b"\0" * 4096)  # qdisk: no loop device (losetup -f races other runs)
    before = xl_host.dump("/")
    marker = xl_host.mark("attach")
    xl_host.xl("block-attach", "6", "%s,qcow2,xvdb" % (tmp_path / "a.qcow2"))
    changed, _removed = xl_host.own_writes(marker, before)
    assert changed["/local/domain/6/device/vbd/51728/protocol"][0] == "x86_32-abi"


def test_qmp_socket_placed_by_a_test(xl_host):
    path = xl_host.qmp_socket_path(7)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(1)
        client = xl_host.run([sys.executable, "-c",
                              "import socket; s = socket.socket(socket.AF_UNIX); "
                              "s.connect('/var/run/xen/qmp-libxl-7'); s.sendall(b'hello')"])
        assert client.returncode == 0, client.stderr
        conn, _addr = server.accept()
        assert conn.recv(5) == b"hello"
        conn.close()
    finally:
        server.close()
    assert not os.path.exists("/var/run/xen/qmp-libxl-7")


def test_each_version_is_the_xen_it_claims():
    """4.18 replaced xc_domain_getinfo by xc_domain_getinfo_single: each libxl imports its own;
    4.20's xl comes from Debian 13's package, 4.17's from the host's."""
    assert "xc_domain_getinfo" in harness.hypervisor_imports("4.17")
    assert "xc_domain_getinfo_single" not in harness.hypervisor_imports("4.17")
    assert "xc_domain_getinfo_single" in harness.hypervisor_imports("4.20")
    assert "xc_domain_getinfo" not in harness.hypervisor_imports("4.20")
    assert harness.XenTools("4.20").package_version().startswith("4.20.")
    assert harness.XenTools("4.17").package_version().startswith("4.17.")
    with pytest.raises(harness.HarnessError, match="no xl oracle for Xen '4.19'"):
        harness.XenTools("4.19")
