# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet provisioning: playbooks/provision.yml over 20 simulated dom0 hosts.

Each host is a real xenstored (tests/xenstored/launcher.py) reached over a local connection with
its own socket variable, with a PV and an HVM guest. The playbook runs for real
(ansible-playbook); then every host's tree is compared node for node, permissions included,
with what libxl 4.17 writes (docs/XENSTORE-LAYOUT.md §1.3, §1.4, §6.3: expected trees typed
from the document, not computed by the collection), every guest's xl.cfg is read back, and a
second run must change nothing. The helpers are shared with tests/benchmarks/bench_fleet.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg import get_list_setting

pytestmark = pytest.mark.xenstored

COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROVISION = os.path.join(COLLECTION, "playbooks", "provision.yml")
HOSTS = 20
IMAGE_SIZE = 1 << 20
# Each host: a 64-bit PV guest and an HVM guest, as libxl creates them.
GUESTS = (("web", 1, "pv"), ("db", 2, "hvm"))


def host_name(index):
    return "dom0-%03d" % index


def guest_disks(host_dir, guest, guest_type):
    """The declaration of one guest (xl strings and a dict, as an inventory would hold it)."""
    images = os.path.join(host_dir, "images")
    if guest_type == "pv":
        return [
            "%s/%s-root.img,raw,xvda,rw" % (images, guest),
            {"target": "%s/%s-data.qcow2" % (images, guest), "format": "qcow2", "vdev": "xvdb", "access": "rw"},
        ]
    return [
        "vdev=xvda,access=rw,target=%s/%s-root.img" % (images, guest),
        ",,hdc:cdrom,r",
    ]


def prepare_fleet(hosts, guests_per_host=GUESTS):
    """Guests, images and an inventory for started XenstoredHost-like objects; returns its path.
    `guests_per_host`: (name, domid, type) of each host's guests."""
    inventory = {}
    for index, host in enumerate(hosts, 1):
        images = os.path.join(host.rundir, "images")
        os.makedirs(images, exist_ok=True)
        os.makedirs(os.path.join(host.rundir, "xen"), exist_ok=True)
        guests = []
        for guest, domid, guest_type in guests_per_host:
            host.add_guest(guest, domid, guest_type)
            for name in ("%s-root.img" % guest, "%s-data.qcow2" % guest):
                with open(os.path.join(images, name), "wb") as handle:
                    handle.truncate(IMAGE_SIZE)
            guests.append({"domain": guest, "disks": guest_disks(host.rundir, guest, guest_type)})
        inventory[host_name(index)] = {
            "guest_disks_xenstore_socket": host.socket,
            "guest_disks_libxl_dir": host.libxl_dir,
            "guest_disks_config_dir": os.path.join(host.rundir, "xen"),
            "xen_guests": guests,
        }
    base = os.path.dirname(hosts[0].rundir)
    path = os.path.join(base, "inventory.yml")
    import json  # JSON is YAML: no YAML writer needed
    with open(path, "w") as handle:
        json.dump({"xen_hosts": {
            "hosts": inventory,
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "guest_disks_create_config": True,
                # No backend driver runs in the fleet: the tree right after the add transaction.
                "guest_disks_wait": False,
                "guest_disks_hotplug_scripts": "skip",
            },
        }}, handle, indent=1)
    return path


def run_provision(inventory, forks, playbook=PROVISION, env=None):
    """ansible-playbook provision.yml (or another playbook); returns (returncode, output)."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0", **(env or {}))
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, "-f", str(forks),
         playbook],
        cwd=COLLECTION, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    return proc.returncode, proc.stdout


_RECAP_RE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output):
    """{host: (ok, changed, unreachable, failed)} from the PLAY RECAP."""
    return {m.group(1): tuple(int(m.group(i)) for i in range(2, 6)) for m in _RECAP_RE.finditer(output)}


# --- what libxl 4.17 writes (docs/XENSTORE-LAYOUT.md §1.3 tables, §1.4 permissions) ---------------

def expected_disk(domid, devid, vdev, *, backend_kind, params, guest_type, cdrom=False, readwrite=True):
    """{path: (value, perms)} of the three directories of one disk right after the add transaction."""
    front = "/local/domain/%d/device/vbd/%d" % (domid, devid)
    back = "/local/domain/0/backend/%s/%d/%d" % (backend_kind, domid, devid)
    libxl = "/libxl/%d/device/vbd/%d" % (domid, devid)
    fperms, bperms, lperms = ("n%d" % domid, "r0"), ("n0", "r%d" % domid), ("n0",)
    device_type = "cdrom" if cdrom else "disk"
    frontend = {"backend": back, "backend-id": "0", "state": "1", "virtual-device": str(devid),
                "device-type": device_type, "trusted": "1"}
    if guest_type == "pv":
        frontend["protocol"] = "x86_64-abi"
    entries = {"params": params}
    if backend_kind == "vbd":
        entries["script"] = "/etc/xen/scripts/block"
    entries.update({"frontend-id": str(domid), "online": "1", "removable": "1" if cdrom else "0",
                    "bootable": "1", "state": "1", "dev": vdev,
                    "type": "phy" if backend_kind == "vbd" else "qdisk", "mode": "w" if readwrite else "r",
                    "device-type": device_type, "discard-enable": "1" if readwrite else "0",
                    "specification": "xen"})
    tree = {front: ("", fperms), back: ("", bperms), libxl: ("", lperms)}
    tree.update({front + "/" + k: (v, fperms) for k, v in frontend.items()})
    tree.update({back + "/frontend": (front, bperms)})
    tree.update({back + "/" + k: (v, bperms) for k, v in entries.items()})
    tree.update({libxl + "/frontend": (front, lperms), libxl + "/backend": (back, lperms)})
    tree.update({libxl + "/" + k: (v, lperms) for k, v in entries.items()})
    return tree


def expected_host(host_dir):
    images = os.path.join(host_dir, "images")
    tree = {}
    # web (PV, 1): raw file -> phy (a regular file suits phy, §6.3); qcow2 -> qdisk
    tree.update(expected_disk(1, 51712, "xvda", backend_kind="vbd", params=images + "/web-root.img", guest_type="pv"))
    tree.update(expected_disk(1, 51728, "xvdb", backend_kind="qdisk", params="qcow2:" + images + "/web-data.qcow2",
                              guest_type="pv"))
    # db (HVM, 2): raw file -> phy; an HVM guest's cdrom is forced onto qdisk, empty -> "aio:"
    tree.update(expected_disk(2, 51712, "xvda", backend_kind="vbd", params=images + "/db-root.img", guest_type="hvm"))
    tree.update(expected_disk(2, 5632, "hdc", backend_kind="qdisk", params="aio:", guest_type="hvm", cdrom=True,
                              readwrite=False))
    return tree


def expected_files(host_dir):
    images = os.path.join(host_dir, "images")
    return {
        "web": ["format=raw,vdev=xvda,access=rw,target=%s/web-root.img" % images,
                "format=qcow2,vdev=xvdb,access=rw,target=%s/web-data.qcow2" % images],
        "db": ["format=raw,vdev=xvda,access=rw,target=%s/db-root.img" % images,
               "format=empty,vdev=hdc,access=ro,devtype=cdrom"],
    }


def disk_subtrees(host):
    """The three directories of every disk on the host, read by an independent raw client."""
    tree = {}
    # (root, depth of a device directory below it)
    for root, depth in (("/local/domain/1/device/vbd", 1), ("/local/domain/2/device/vbd", 1),
                        ("/local/domain/0/backend", 3), ("/libxl/1/device", 2), ("/libxl/2/device", 2)):
        for path, (value, perms) in host.dump(root).items():
            if len(path[len(root):].strip("/").split("/")) >= depth and path != root:
                tree[path] = (value, tuple(perms))
    return tree


def test_provision_fleet_of_20_hosts(xenstored_factory):
    hosts = xenstored_factory(HOSTS)
    inventory = prepare_fleet(hosts)

    code, output = run_provision(inventory, forks=5)
    assert code == 0, output[-4000:]
    first = recap(output)
    assert sorted(first) == [host_name(i) for i in range(1, HOSTS + 1)]
    assert all(counts[1] > 0 and counts[2:] == (0, 0) for counts in first.values())

    for host in hosts:
        assert disk_subtrees(host) == expected_host(host.rundir), host.rundir
        for guest, specs in expected_files(host.rundir).items():
            with open(os.path.join(host.rundir, "xen", guest + ".cfg")) as handle:
                assert get_list_setting(handle.read(), "disk") == specs

    code, output = run_provision(inventory, forks=5)
    assert code == 0, output[-4000:]
    second = recap(output)
    assert {name: (counts[1], counts[3]) for name, counts in second.items()} == {
        host_name(i): (0, 0) for i in range(1, HOSTS + 1)}
    for host in hosts:
        assert disk_subtrees(host) == expected_host(host.rundir)
