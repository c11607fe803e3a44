# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xen_disk and xen_disk_info through ansible-playbook (a real controller run, module shipped by
Ansible as on any host), against the REAL xenstored and the simulated backend: check -> apply ->
check -> apply, with the action group's module_defaults, --check and --diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.xen.disks.tests.xenstored import backend_sim

pytestmark = pytest.mark.xenstored

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/xen.disks.xen:
      xenstore_socket: "{{ socket }}"
  tasks:
    - name: check
      xen.disks.xen_disk:
        domain: guest5
        disks: &disks
          - "{{ image }},raw,xvdb,rw"
          - target: "{{ image2 }}"
            vdev: xvdc
            access: ro
      check_mode: true
      register: check1
    - name: apply
      xen.disks.xen_disk:
        domain: guest5
        disks: *disks
      register: apply1
    - name: check again
      xen.disks.xen_disk:
        domain: guest5
        disks: *disks
      check_mode: true
      register: check2
    - name: apply again
      xen.disks.xen_disk:
        domain: guest5
        disks: *disks
      register: apply2
    - name: report
      xen.disks.xen_disk_info:
        domain: guest5
      register: info
    - name: the four steps
      ansible.builtin.assert:
        that:
          - check1 is changed
          - apply1 is changed
          - check2 is not changed
          - apply2 is not changed
          - apply1.disks | map(attribute='action') | list == ['attach', 'attach']
          - info.guests[0].specs | length == 2
    - name: write the results
      ansible.builtin.copy:
        content: "{{ {'apply1': apply1, 'info': info} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_four_steps_through_ansible_playbook(xenstored, tmp_path):
    xenstored.add_guest("guest5", 5, "pv")
    image, image2 = tmp_path / "a.img", tmp_path / "b.img"
    for path in (image, image2):
        with open(path, "wb") as handle:
            handle.truncate(1 << 20)
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    extra = json.dumps({"socket": xenstored.socket, "image": str(image), "image2": str(image2), "out": str(out)})
    with backend_sim.running(xenstored.socket, "connect"):
        proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook), "--diff", "-e", extra],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the diff shows the canonical specs of what was attached
    assert "+format=raw,vdev=xvdb,access=rw,backendtype=phy,target=%s" % image in proc.stdout
    results = json.loads(out.read_text())
    assert [d["vdev"] for d in results["apply1"]["disks"]] == ["xvdb", "xvdc"]
    assert results["info"]["guests"][0]["specs"] == [
        "format=raw,vdev=xvdb,access=rw,backendtype=phy,target=%s" % image,
        "format=raw,vdev=xvdc,access=ro,backendtype=phy,target=%s" % image2]
