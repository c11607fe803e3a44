# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_runs.host.declaration_errors: what is wrong with a host's guests taken together (pure, plain
dicts as the xen_host_disks module receives them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.xen.disks.plugins.module_utils._runs.host import declaration_errors

NO_DISKS = ("no disks key (an empty list must be said, or live and persist false: without it the guest's disks "
            "would be replaced by none)")
NO_FILE_NAME = "the name cannot name a file in config_dir: give the guest's config"


def test_a_good_declaration_has_no_error():
    guests = [
        {"domain": "web1", "disks": ["/dev/vg0/web1,raw,xvda,rw",
                                     {"target": "/srv/web1-data.qcow2", "format": "qcow2", "vdev": "xvdb",
                                      "size": "1G", "create": True},  # xen_disk's storage keys are allowed
                                     ["vdev=xvdc", "target=/dev/vg0/web1-tmp"]]},
        {"domain": "db1", "disks": []},  # an empty list, said
        {"domain": "spare", "live": False, "persist": False},  # only compared: no disks needed
    ]
    assert declaration_errors(guests) == []
    assert declaration_errors([]) == []


def test_names_missing_and_repeated():
    guests = [{"domain": "a", "disks": []}, {"domain": "", "disks": []}, {"domain": None, "disks": []},
              {"domain": "a", "disks": []}, {"domain": "a"}]
    assert declaration_errors(guests) == [
        "guests[1]: no domain name",
        "guests[2]: no domain name",
        "guests[3]: guest a is declared more than once (also guests[0])",
        # a repeated guest is reported as such, not for its own content
        "guests[4]: guest a is declared more than once (also guests[0])",
    ]


@pytest.mark.parametrize("guest, live, persist, wanted", [
    ({"domain": "a"}, True, True, True),
    ({"domain": "a"}, False, True, True),
    ({"domain": "a"}, True, False, True),
    ({"domain": "a"}, False, False, False),
    ({"domain": "a", "disks": None}, True, True, True),  # an explicit null is no list
    ({"domain": "a", "live": False, "persist": False}, True, True, False),
    ({"domain": "a", "live": False}, True, False, False),
    ({"domain": "a", "persist": True}, False, False, True),  # the guest's own option wins
    ({"domain": "a", "live": None, "persist": None}, True, False, True),  # unset: the run's default
])
def test_the_disks_key_is_needed_by_a_guest_applied_live_or_persisted(guest, live, persist, wanted):
    assert declaration_errors([guest], live=live, persist=persist) == (
        ["guests[0] (a): %s" % NO_DISKS] if wanted else [])


def test_names_that_cannot_name_a_file_need_their_config():
    guests = [{"domain": n, "disks": []} for n in (".", "..", "ops/web", "web.1", "...")]
    assert declaration_errors(guests) == ["guests[%d] (%s): %s" % (i, n, NO_FILE_NAME)
                                          for i, n in ((0, "."), (1, ".."), (2, "ops/web"))]
    # the module says which guests have their config (indexes in the guests list)
    assert declaration_errors(guests, config_given={0, 2}) == ["guests[1] (..): %s" % NO_FILE_NAME]


def test_each_bad_disk_is_located_in_the_declaration():
    guests = [
        {"domain": "web1", "disks": ["/dev/vg0/web1,raw,xvda,rw"]},
        {"domain": "db1", "disks": [5, "/dev/vg0/db1,raw,xvda,rw", "colour=blue,/dev/vg0/x,raw,xvdb",
                                    {"vdev": "xvdc", "target": "/dev/vg0/y", "access": "sometimes"},
                                    "/dev/vg0/z,raw,xvd!"]},
        {"domain": "app1", "disks": "/dev/vg0/app1,raw,xvda"},
    ]
    errors = declaration_errors(guests)
    assert errors[0] == "guests[1].disks[0]: a disk must be an xl disk string, a list of strings or a dict, not int"
    assert errors[1].startswith("guests[1].disks[2].colour: unknown parameter")
    assert errors[2].startswith("guests[1].disks[3].access: ")
    assert errors[3].startswith("guests[1].disks[4].vdev: ") and "xvd!" in errors[3]
    assert errors[4] == "guests[2].disks: must be a list, not str"
    assert len(errors) == 5


def test_disks_of_a_guest_neither_applied_nor_persisted_are_not_used_so_not_checked():
    guest = {"domain": "a", "disks": ["colour=blue"], "live": False, "persist": False}
    assert declaration_errors([guest]) == []
    assert declaration_errors([dict(guest, persist=None)], persist=True)[0].startswith("guests[0].disks[0].colour")


def test_every_error_of_every_guest_in_order():
    guests = [{"domain": "a"}, {"domain": "a/b", "disks": ["colour=x"]}, {"domain": ""}, {"domain": "a", "disks": []}]
    errors = declaration_errors(guests)
    assert [e.split(":")[0] for e in errors] == [
        "guests[0] (a)", "guests[1].disks[0].colour", "guests[1] (a/b)", "guests[2]", "guests[3]"]


def test_importing_it_loads_no_ansible_code():
    """It runs on the managed host, inside the module: no Ansible import (controller or module side)."""
    from ansible_collections.xen.disks.plugins.module_utils._runs import host as _host_disks

    root = _host_disks.__file__.split(os.sep + "ansible_collections" + os.sep, maxsplit=1)[0]
    code = ("import sys; import ansible_collections.xen.disks.plugins.module_utils._runs.host; "
            "print(sorted(m for m in sys.modules if m == 'ansible' or m.startswith('ansible.')))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=root), capture_output=True,
                         text=True, check=True).stdout
    assert out == "[]\n"
