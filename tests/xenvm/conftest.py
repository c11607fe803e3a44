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
    return os.environ.get("XENVM_XENSTORED", "oxenstored")


@pytest.fixture(scope="session")
def xen_host(xenstored_flavour):
    workdir = tempfile.mkdtemp(prefix=f"xenvm-{xenstored_flavour}-")
    host = XenHost(workdir, xenstored=xenstored_flavour)
    _hosts.append(host)
    host.boot()
    host.ssh(f"mkdir -p {IMAGES_DIR}")
    yield host
    host.poweroff()
    _hosts.remove(host)


@pytest.fixture(scope="session")
def controller(xen_host):
    inventory = xen_host.ansible_inventory(os.path.join(xen_host.workdir, "inventory.json"))
    return Controller(inventory, xen_host.workdir)


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
