# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles given wrong inputs, through one real ansible-playbook run: each case must fail with a
message naming what is wrong, and leave the file as it was (a misspelled `xl_disks_disks` must
never write `disk = []`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

FILE_TEXT = "name = 'web1'\ndisk = [ '/dev/vg0/web1,raw,xvda,rw' ]\n"

# (case, role, vars): each is run in a block; the rescue records the message
CASES = [
    ("misspelled_disks", "xl_disks", {"xl_disks_guest_name": "web1", "xl_disks_path": "{{ cfg }}",
                                      "xl_disks_disk": ["/dev/vg0/web1,raw,xvda,rw"]}),
    ("missing_disks", "xl_disks", {"xl_disks_path": "{{ cfg }}"}),
    ("no_guest_name", "xl_disks", {"xl_disks_disks": ["/dev/vg0/web1,raw,xvda,rw"]}),
    ("file_mode_without_name", "xl_disks", {"xl_disks_path": "{{ cfg }}", "xl_disks_mode": "file",
                                            "xl_disks_disks": []}),
    ("bad_setting_name", "xl_disks", {"xl_disks_guest_name": "web1", "xl_disks_path": "{{ cfg }}",
                                      "xl_disks_mode": "file", "xl_disks_disks": [],
                                      "xl_disks_settings": {"memory": 512, "Bad-Name": 1}}),
    ("bad_validate", "xl_disks", {"xl_disks_path": "{{ cfg }}", "xl_disks_disks": [], "xl_disks_validate": "maybe"}),
    ("guest_without_disks", "guest_disks", {"guest_disks_live": False, "guest_disks_report_drift": False,
                                            "guest_disks_config_dir": "{{ dir }}",
                                            "guest_disks_guests": [{"domain": "web1", "disk": []}]}),
    ("guest_disks_missing", "guest_disks", {"guest_disks_live": False, "guest_disks_report_drift": False,
                                            "guest_disks_config_dir": "{{ dir }}",
                                            "guest_disks_guests": [{"domain": "web0", "disks": [], "persist": False},
                                                                   {"domain": "web1"}]}),
    ("guest_twice", "guest_disks", {"guest_disks_live": False, "guest_disks_report_drift": False,
                                    "guest_disks_guests": [{"domain": "a", "disks": []}, {"domain": "b", "disks": []},
                                                           {"domain": "a", "disks": []}]}),
    ("guest_empty_name", "guest_disks", {"guest_disks_live": False, "guest_disks_report_drift": False,
                                         "guest_disks_guests": [{"domain": "a", "disks": []},
                                                                {"domain": "", "disks": []}]}),
]

EXPECTED = {
    "misspelled_disks": ["xl_disks_disks"],
    "missing_disks": ["xl_disks_disks"],
    "no_guest_name": ["xl_disks_guest_name", "xl_disks_path"],
    "file_mode_without_name": ["xl_disks_guest_name", "mode file"],
    "bad_setting_name": ["Bad-Name"],
    "bad_validate": ["xl_disks_validate", "maybe"],
    "guest_without_disks": ["guest_disks_guests.disk", "Supported parameters include"],
    "guest_disks_missing": ["guests[1] (web1): no disks key"],
    "guest_twice": ["guests[2]: guest a is declared more than once (also guests[0])"],
    "guest_empty_name": ["guests[1]: no domain name"],
}


def _playbook():
    tasks = []
    for case, role, role_vars in CASES:
        tasks.append({
            "name": case,
            "block": [
                {"name": "run the role", "ansible.builtin.include_role": {"name": "xen.disks." + role},
                 "vars": role_vars},
                {"name": "record success", "ansible.builtin.set_fact": {
                    "outcome": "{{ outcome | combine({'%s': 'ran'}) }}" % case}},
            ],
            "rescue": [{"name": "record the message", "ansible.builtin.set_fact": {
                "outcome": "{{ outcome | combine({'%s': ansible_failed_result.msg | string}) }}" % case}}],
        })
    tasks.append({"name": "write the outcome", "ansible.builtin.copy": {
        "content": "{{ outcome | to_json }}", "dest": "{{ out }}", "mode": "0600"}})
    return [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"outcome": {}}, "tasks": tasks}]


def test_wrong_role_inputs_fail_clearly_and_write_nothing(tmp_path):
    cfg = tmp_path / "web1.cfg"
    cfg.write_text(FILE_TEXT)
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(_playbook(), sort_keys=False))
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    extra = json.dumps({"cfg": str(cfg), "dir": str(tmp_path), "out": str(out)})
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook), "-e", extra],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcome = json.loads(out.read_text())
    for case, words in EXPECTED.items():
        message = outcome[case]
        assert message != "ran", case
        for word in words:
            assert word in message, (case, message)
        assert "Assertion failed" not in message, (case, message)
    assert cfg.read_text() == FILE_TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "play.yml", "web1.cfg"]
