# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the real Xen host stage (tests/xenvm/README.md).

One host per session (XENVM_XENSTORED picks the daemon: oxenstored, Debian's default, or the C
xenstored). A failing test gets the host's evidence (xl dmesg, the guests' consoles, the hotplug
log, the backends) appended to its report.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from ansible_collections.xen.disks.tests.xenvm.ansible_run import Controller
from ansible_collections.xen.disks.tests.xenvm.vm import XenHost

IMAGES_DIR = "/var/lib/xenvm/images"

_hosts = []


@pytest.fixture(scope="session")
def xenstored_flavour():
    if os.environ.get("XENVM_DIR"):
        return XenHost.attach(os.environ["XENVM_DIR"]).xenstored
    return os.environ.get("XENVM_XENSTORED", "oxenstored")


@pytest.fixture(scope="session")
def xen_host(xenstored_flavour):
    """The session's host: booted here, or the one `vm.py up --dir $XENVM_DIR` booted (run-all's
    stage boots one for the tests, the benchmark and molecule; it is not powered off here)."""
    shared = os.environ.get("XENVM_DIR")
    if shared:
        host = XenHost.attach(shared)
    else:
        host = XenHost(tempfile.mkdtemp(prefix=f"xenvm-{xenstored_flavour}-"), xenstored=xenstored_flavour)
    _hosts.append(host)
    if not shared:
        host.boot()
    host.ssh(f"mkdir -p {IMAGES_DIR}")
    yield host
    if not shared:
        host.poweroff()
    _hosts.remove(host)


@pytest.fixture(scope="session")
def controller(xen_host):
    inventory = xen_host.ansible_inventory(os.path.join(xen_host.workdir, "inventory.json"))
    return Controller(inventory, xen_host.workdir)


@pytest.fixture(scope="session")
def g61(xen_host):
    """A guest on Debian 12's 6.1 kernel; its config has a qcow2 disk (xvda), so libxl starts a
    QEMU for it, and that QEMU serves the qdisk disks hot-plugged later."""
    xen_host.ssh(f"qemu-img create -q -f qcow2 {IMAGES_DIR}/g61-root.qcow2 32M")
    guest = xen_host.create_guest(
        "g61", disks=[f"format=qcow2,vdev=xvda,access=rw,target={IMAGES_DIR}/g61-root.qcow2"])
    yield guest
    xen_host.destroy_guest("g61")


@pytest.fixture(scope="session")
def g510(xen_host):
    """A guest on Debian 11's 5.10 kernel, created without any disk: no QEMU serves it."""
    guest = xen_host.create_guest("g510", kernel="5.10")
    yield guest
    xen_host.destroy_guest("g510")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _hosts:
        for host in _hosts:
            if host.alive():
                report.sections.append((f"real Xen host ({host.xenstored}) diagnostics", host.diagnostics()))
            else:
                report.sections.append((f"real Xen host ({host.xenstored}): QEMU is gone; serial console",
                                        "\n".join(host.serial_text().splitlines()[-80:])))
