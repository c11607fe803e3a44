# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real `xl` (libxl 4.17) as the oracle of xen_disk: each case makes the same change with
`xl block-attach`/`block-detach`/`cd-insert`/`cd-eject` on one fresh host and with xen_disk on
another prepared identically (tests/xl/), and compares what each tool itself wrote to xenstore:
nodes, values and permissions, removed nodes; separated from the backend's, the hotplug
script's and the guest's writes by xenstored's request trace.
"""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.tests.xl.cases import Attach, Case, run_cases

pytestmark = [pytest.mark.xenstored, pytest.mark.xl]

ATTACH = [
    Case("phy-raw-rw-pv", 5, [Attach(("{i}/a.img", "raw", "xvdb", "rw"))]),
    Case("phy-ro-pv", 5, [Attach(("{i}/a.img", "raw", "xvdc", "ro"))]),
    Case("qdisk-qcow2-pv", 5, [Attach(("{i}/c.qcow2", "qcow2", "xvdb"))]),
    Case("phy-pv32", 6, [Attach(("{i}/a.img", "raw", "xvdb", "rw"))]),
    Case("cdrom-iso-hvm", 7, [Attach(("{i}/d.iso", "raw", "hdc", "cdrom"))]),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_cases(str(tmp_path_factory.mktemp("xl-diff")), ATTACH)


def _show(changed, removed):
    lines = ["%s = %r (%s)" % (p, v, ",".join(perms)) for p, (v, perms) in sorted(changed.items())]
    return "\n".join(lines + ["rm %s" % p for p in sorted(removed)])


@pytest.mark.parametrize("case_id", [c.id for c in ATTACH])
def test_attach_writes_equal_libxl(outcomes, case_id):
    outcome = outcomes[case_id]
    assert outcome.xl.error is None, outcome.xl.error
    assert outcome.ours.error is None, outcome.ours.error
    for step, (xl_result, ours) in enumerate(zip(outcome.xl.results, outcome.ours.results)):
        assert xl_result.returncode == 0, xl_result.stderr
        assert not ours.get("failed"), ours
        assert ours["changed"] is True
        xl_writes, our_writes = outcome.xl.writes[step], outcome.ours.writes[step]
        assert xl_writes[0], "xl wrote nothing: the trace did not separate its writes"
        assert _show(*our_writes) == _show(*xl_writes)
