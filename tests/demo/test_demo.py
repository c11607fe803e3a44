"""The demo as a newcomer runs it (playbooks/demo/run.sh): it succeeds, and every warning it prints
is about the user's guests. A warning from the tools (a Python library's deprecation, Ansible's own
notices) or about something the user did not declare (Domain-0) reads as a problem of theirs when it
is not one, so it fails this test. (Checkout-only, as the demo is: run-all runs it with the
integration tests.)
"""
import json
import os
import re
import subprocess

import pytest
import yaml

pytestmark = pytest.mark.xenstored

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Ansible's warnings and deprecations, Python's warnings (SomethingWarning: ...), pip's and others'.
WARNING = re.compile(r"\[WARNING\]|\[DEPRECATION WARNING\]|^\s*WARNING:|\b[A-Z]\w*Warning\b:")


def _declared_guests():
    with open(os.path.join(HERE, "playbooks", "demo", "inventory.yml")) as handle:
        inventory = yaml.safe_load(handle)
    return {guest["domain"] for host in inventory["xen_hosts"]["hosts"].values()
            for guest in host.get("xen_guests", [])}


def _report_blocks(output):
    """The msg of each host's `Show each guest's disks` task of report.yml (debug prints JSON)."""
    section = output.split("TASK [Show each guest's disks", 1)[1].split("\nTASK [", 1)[0]
    return [json.loads(block)["msg"] for block in re.findall(r"^ok: \[[^\]]+\] => (\{.*?^\})", section, re.M | re.S)]


def test_demo_prints_no_warning_but_about_the_users_guests():
    proc = subprocess.run([os.path.join(HERE, "playbooks", "demo", "run.sh")], cwd=HERE, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, check=False)
    output = ANSI.sub("", proc.stdout)
    assert proc.returncode == 0, output[-4000:]
    guests = _declared_guests()
    assert guests == {"web1", "db1", "app1"}
    printed = [line.strip() for line in output.splitlines() if WARNING.search(line)]
    reports = _report_blocks(output)
    assert len(reports) == 2, "report.yml printed %d host reports" % len(reports)
    for report in reports:
        assert set(report["disks"]) >= {"Domain-0"}
        printed += ["%s: %s" % (domain, w) for domain, found in report["guest_warnings"].items() for w in found]
        printed += list(report["disk_warnings"])
    stray = [w for w in printed if not any(re.search(r"\b%s\b" % re.escape(g), w) for g in guests)]
    assert not stray, "warnings not about the user's guests:\n" + "\n".join(stray)
