# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real `xl` as the oracle of xen_disk, for each Xen version the collection supports (libxl
4.17 of Debian 12 and 4.20 of Debian 13): each case makes the same change with
`xl block-attach`/`block-detach`/`cd-insert`/`cd-eject` on one fresh host and with xen_disk on
another prepared identically (tests/xl/), both of that Xen version, and compares what each tool
itself wrote to xenstore: nodes, values and permissions, removed nodes; separated from the
backend's, the hotplug script's and the guest's writes by xenstored's request trace. xen_disk is
not told the version: it detects it as on a dom0 (the namespace shows only that version's toolstack,
/usr/lib/xen-<version>/bin/xl) and reports it in its result (`xen`).
"""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.tests.xl.cases import Attach, Case, Detach, Eject, Insert, shared_outcomes
from ansible_collections.xen.disks.tests.xl.harness import XEN_VERSIONS

pytestmark = [pytest.mark.xenstored, pytest.mark.xl]

A = "{a}"  # a loop device on a.img: phy disks get block devices (tests/xl/harness.py loop_devices)


def attach(case_id, domid, *tokens, disks=None, **args):
    return Case(case_id, domid, [Attach(tuple(tokens), disks, args)])


ATTACH = [
    # every backend kind, on every guest type
    attach("phy-raw-rw-pv", 5, A + ",raw,xvdb,rw"),
    attach("phy-pv32", 6, A + ",raw,xvdb,rw"),
    attach("phy-pvh", 3, A + ",raw,xvda,rw"),
    attach("phy-hvm-hda", 7, A + ",raw,hda,rw"),
    attach("phy-hvm-xvdb", 7, A + ",raw,xvdb,rw"),
    attach("phy-hvm-sda", 7, A + ",raw,sda,rw"),
    attach("qdisk-qcow2-pv", 5, "{i}/c.qcow2,qcow2,xvdb"),
    attach("qdisk-qcow2-pv32", 6, "{i}/c.qcow2,qcow2,xvdb"),
    attach("qdisk-qcow2-pvh", 3, "{i}/c.qcow2,qcow2,xvdb"),
    attach("qdisk-qcow2-hvm", 7, "{i}/c.qcow2,qcow2,hdb"),
    attach("qdisk-vhd-pv", 5, "{i}/f.vhd,vhd,xvdb"),
    attach("qdisk-explicit-hvm", 7, A + ",raw,xvdc,rw,backendtype=qdisk"),
    attach("phy-explicit-pv", 5, A + ",raw,xvdb,rw,backendtype=phy"),
    # access
    attach("phy-ro-pv", 5, A + ",raw,xvdc,ro"),
    attach("phy-r-pv", 5, A + ",raw,xvdc,r"),
    attach("phy-w-pv", 5, A + ",raw,xvdc,w"),
    attach("qdisk-ro-pv", 5, "{i}/c.qcow2,qcow2,xvdc,ro"),
    # cdroms, loaded and empty
    attach("cdrom-iso-hvm", 7, "{i}/d.iso,raw,hdc,cdrom"),
    attach("cdrom-empty-hvm", 7, ",raw,hdc,cdrom"),
    attach("cdrom-devtype-hvm", 7, "vdev=hdd,devtype=cdrom,target={i}/d.iso"),
    attach("cdrom-colon-hvm", 7, "{i}/e.iso,,hdc:cdrom,r"),
    attach("cdrom-iso-pv", 5, "{d},raw,xvdd,cdrom"),
    attach("cdrom-empty-pv", 5, ",raw,xvdd,cdrom"),
    attach("cdrom-empty-keyed-pv", 5, "vdev=xvdd,devtype=cdrom"),
    attach("cdrom-empty-pvh", 3, "vdev=xvdd,devtype=cdrom"),
    # discard, direct-io-safe, script, specification
    attach("discard", 5, A + ",raw,xvdb,rw,discard"),
    attach("no-discard", 5, A + ",raw,xvdb,rw,no-discard"),
    attach("discard-ro", 5, A + ",raw,xvdb,ro,discard"),
    attach("direct-io-safe", 5, A + ",raw,xvdb,rw,direct-io-safe"),
    attach("direct-io-safe-qdisk", 7, "{i}/c.qcow2,qcow2,xvdb,direct-io-safe"),
    attach("script-block", 5, A + ",raw,xvdb,rw,script=block"),
    attach("script-absolute", 5, A + ",raw,xvdb,rw,script=/etc/xen/scripts/block"),
    attach("specification-xen", 5, A + ",raw,xvdb,rw,specification=xen"),
    # driver domains
    attach("driver-domain-name", 5, "backend=stor2,/dev/vg1/g5data,,xvde"),
    attach("driver-domain-id", 5, "backend=2,/dev/vg1/g5data,raw,xvde,ro"),
    attach("driver-domain-default", 5, "backend=stor2,/dev/vg1/g5data,,xvdf", disks=["/dev/vg1/g5data,,xvdf"],
           backend="stor2"),
    attach("driver-domain-hvm", 7, "backend=stor2,/dev/vg1/g7data,raw,xvdb"),
    # partitions and device numbers
    attach("partition-xvdb3", 5, A + ",raw,xvdb3,rw"),
    attach("partition-xvdq1", 5, A + ",raw,xvdq1,rw"),
    attach("extended-xvdaa", 5, A + ",raw,xvdaa,rw"),
    attach("extended-partition-d30p20", 5, A + ",raw,d30p20,rw"),
    attach("d-notation", 5, A + ",raw,d1p0,rw"),
    attach("partition-hda1-hvm", 7, A + ",raw,hda1,rw"),
    attach("partition-sdb2-hvm", 7, A + ",raw,sdb2,rw"),
    attach("numeric-vdev", 5, A + ",raw,51744,rw"),
    # every spelling of the syntax
    attach("keyed-one-string", 5, "format=raw, vdev=xvdb, access=rw, target=" + A),
    attach("keyed-tokens", 5, "format=raw", "vdev=xvdb", "access=rw", "target=" + A),
    attach("positional-tokens", 5, A, "raw", "xvdb", "rw"),
    attach("keyed-dict", 5, "vdev=xvdb,access=ro,target=" + A,
           disks=[{"target": A, "vdev": "xvdb", "access": "ro", "format": "raw"}]),
    attach("mixed-keys-first", 5, "vdev=xvdb,access=rw,format=raw,target=" + A),
    attach("default-format", 5, A + ",,xvdb"),
    attach("default-access", 5, A + ",raw,xvdb"),
    attach("prefix-phy", 5, "phy:" + A + ",xvdb,w"),
    attach("prefix-file", 5, "file:" + A + ",xvdb,w"),
    attach("prefix-tap-aio", 5, "tap:aio:" + A + ",xvdb,w"),
    attach("prefix-aio", 5, "aio:" + A + ",xvdb,w"),
    attach("prefix-tap-qcow2", 5, "tap:qcow2:{i}/c.qcow2,xvdb,w"),
    attach("prefix-qcow2", 5, "qcow2:{i}/c.qcow2,xvdb,w"),
    attach("prefix-vhd", 5, "vhd:{i}/f.vhd,xvdb,w"),
    attach("target-with-commas", 5, "vdev=xvdb,format=qcow2,target={i}/g,h.img"),
    attach("cdrom-keyed-no-target-hvm", 7, "vdev=hdd,devtype=cdrom"),
    attach("keyed-backendtype-qdisk-hvm", 7, "vdev=xvdc,backendtype=qdisk,access=ro,target=" + A),
    attach("prefix-raw", 5, "raw:" + A + ",xvdb,w"),
    attach("keyed-script-discard", 5, "vdev=xvdb,script=block,discard,target=" + A),
]


def detach(case_id, domid, spec, vdev, ours_vdev=None):
    """Attached with xl on both hosts; detached by xl on one, by xen_disk on the other."""
    case = Case(case_id, domid, [Detach(vdev)], setup=[Attach((spec,))])
    if ours_vdev:
        case.steps[0].ours_vdev = ours_vdev
    return case


DETACH = [
    detach("detach-phy-pv", 5, A + ",raw,xvdb,rw", "xvdb"),
    detach("detach-phy-pv32", 6, A + ",raw,xvdb,rw", "xvdb"),
    detach("detach-phy-pvh", 3, A + ",raw,xvda,rw", "xvda"),
    detach("detach-phy-hvm", 7, A + ",raw,hda,rw", "hda"),
    detach("detach-qdisk-pv", 5, "{i}/c.qcow2,qcow2,xvdc", "xvdc"),
    detach("detach-qdisk-hvm", 7, "{i}/c.qcow2,qcow2,xvdb", "xvdb"),
    detach("detach-cdrom-hvm", 7, "{i}/d.iso,raw,hdc,cdrom", "hdc"),
    detach("detach-cdrom-empty-hvm", 7, ",raw,hdc,cdrom", "hdc"),
    detach("detach-cdrom-pv", 5, "{d},raw,xvdd,cdrom", "xvdd"),
    detach("detach-driver-domain", 5, "backend=stor2,/dev/vg1/g5data,,xvde", "xvde"),
    detach("detach-partition", 5, A + ",raw,xvdb3,rw", "xvdb3"),
    detach("detach-by-alias", 5, A + ",raw,xvdb,rw", "xvdb", ours_vdev="d1p0"),
    detach("detach-by-number", 5, A + ",raw,xvdb,rw", "51728"),
    Case("detach-force", 5, [Detach("xvdb", force=True)], setup=[Attach((A + ",raw,xvdb,rw",))]),
    Case("detach-force-qdisk-hvm", 7, [Detach("xvdb", force=True)], setup=[Attach(("{i}/c.qcow2,qcow2,xvdb",))]),
]

ISO_D, ISO_E = "{i}/d.iso", "{i}/e.iso"
MEDIA = [
    Case("insert-into-empty", 8, [Insert("hdc", ISO_D, ISO_D + ",raw,hdc,cdrom")],
         setup=[Attach((",raw,hdc,cdrom",))]),
    Case("eject-loaded", 8, [Eject("hdc", ",raw,hdc,cdrom")], setup=[Attach((ISO_D + ",raw,hdc,cdrom",))]),
    Case("change-loaded", 8, [Insert("hdc", ISO_E, ISO_E + ",raw,hdc,cdrom")],
         setup=[Attach((ISO_D + ",raw,hdc,cdrom",))]),
    Case("insert-eject-insert", 8, [Insert("hdd", ISO_D, ISO_D + ",raw,hdd,cdrom"), Eject("hdd", ",raw,hdd,cdrom"),
                                    Insert("hdd", ISO_E, ISO_E + ",raw,hdd,cdrom")],
         setup=[Attach((",raw,hdd,cdrom",))]),
]

# Changes both tools must refuse, writing nothing (xenstore and libxl's JSON unchanged).
REFUSED = [
    Case("refuse-virtio-hotplug", 5, [Attach((A + ",raw,xvdb,rw,specification=virtio",), fails=True)]),
    Case("refuse-pv-cd-insert", 5, [Insert("xvdd", ISO_E, ISO_E + ",raw,xvdd,cdrom", fails=True)],
         setup=[Attach(("{d},raw,xvdd,cdrom",))]),
    Case("refuse-cd-insert-without-qemu", 7, [Insert("hdc", ISO_E, ISO_E + ",raw,hdc,cdrom", fails=True)],
         setup=[Attach((",raw,hdc,cdrom",))]),
    Case("refuse-existing-vdev", 5, [Attach(("{i}/b.img,raw,xvdb,rw",), fails=True)],
         setup=[Attach((A + ",raw,xvdb,rw",))]),
    Case("refuse-unknown-backend-domain", 5, [Attach(("backend=nosuch,/dev/vg1/x,,xvdb",), fails=True)]),
    Case("refuse-missing-target", 5, [Attach(("{i}/missing.img,raw,xvdb,rw",), fails=True)]),
]

# Listed differences that change what is written: xen_disk is given a declaration xl 4.17
# cannot take, compared with xl's writes for the nearest one it can. xl 4.20 takes it as it is.
UNTRUSTED_417 = [
    attach("untrusted-phy", 5, A + ",raw,xvdb,rw", disks=[A + ",raw,xvdb,rw,untrusted"]),
    attach("untrusted-qdisk", 5, "{i}/c.qcow2,qcow2,xvdc", disks=["{i}/c.qcow2,qcow2,xvdc,untrusted"]),
]
UNTRUSTED_420 = [
    attach("untrusted-phy", 5, A + ",raw,xvdb,rw,untrusted"),
    attach("untrusted-qdisk", 5, "{i}/c.qcow2,qcow2,xvdc,untrusted"),
    attach("trusted-phy", 5, A + ",raw,xvdb,rw,trusted"),
    attach("untrusted-keyed-hvm", 7, "vdev=hdb,untrusted,format=qcow2,target={i}/c.qcow2"),
]

# An empty cdrom with an explicit phy backend: libxl 4.17 refuses it (an empty drive has no
# block device), 4.20 serves it from an empty file it creates, /var/run/xen/empty-cdrom.<domid>.
EMPTY_PHY_CDROM = Case("cdrom-empty-phy-pv", 5, [Attach(("vdev=xvdd,devtype=cdrom,backendtype=phy",))])
# 4.20 gives an empty cdrom of a PV or PVH guest a phy backend without `params`: its own block
# script fails and `xl block-attach` returns 1, its nodes and JSON entry left behind.
PV_EMPTY_CDROM = {"cdrom-empty-pv", "cdrom-empty-keyed-pv", "cdrom-empty-pvh"}


def groups_for(version):
    """The cases of that Xen version, by the test that asserts them."""
    if version == "4.17":
        refused_phy = Case(EMPTY_PHY_CDROM.id, 5, [Attach(EMPTY_PHY_CDROM.steps[0].tokens, fails=True)])
        return {"attach": ATTACH, "detach": DETACH, "media": MEDIA, "refused": REFUSED + [refused_phy],
                "untrusted": UNTRUSTED_417}
    return {"attach": ATTACH + [EMPTY_PHY_CDROM] + UNTRUSTED_420, "detach": DETACH, "media": MEDIA,
            "refused": REFUSED, "untrusted": []}


def cases_for(version):
    return [case for group in groups_for(version).values() for case in group]


def case_ids(group):
    """(version, case id) pairs of that group, for parametrize."""
    return [(version, c.id) for version in XEN_VERSIONS for c in groups_for(version)[group]]


@pytest.fixture(scope="session")
def outcomes(request, tmp_path_factory):
    """outcomes(version): every selected case of that Xen version, run once per test run,
    concurrently (pytest-xdist workers share the batch: the first runs it, the others read it)."""
    selected = {}
    for item in request.session.items:
        if item.module.__name__ == __name__ and hasattr(item, "callspec") and "case_id" in item.callspec.params:
            selected.setdefault(item.callspec.params["xen_version"], set()).add(item.callspec.params["case_id"])
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):
        base = base.parent  # shared by the workers of this run
    cache = {}

    def of(version):
        if version not in cache:
            wanted = [c for c in cases_for(version) if c.id in selected.get(version, ())]
            cache[version] = shared_outcomes(str(base / ("xl-differential-%s" % version)), wanted,
                                             xen_version=version)
        return cache[version]
    return of


def _show(changed, removed):
    lines = ["%s = %r (%s)" % (p, v, ",".join(perms)) for p, (v, perms) in sorted(changed.items())]
    return "\n".join(lines + ["rm %s" % p for p in sorted(removed)])


# Where xen_disk and libxl must differ, each with its reason, per Xen version. A case names the
# differences it shows; the comparison then checks that the difference is there (and only it), so
# a listing that no longer holds fails too.
DIFFERENCES = {
    "empty-positional-target": (
        "A cdrom declared with an empty positional target (`,raw,hdc,cdrom`): xl's parser gives "
        "libxl an empty pdev_path, which libxl stores as \"\"; `vdev=hdc,devtype=cdrom` gives none, "
        "stored as no pdev_path. Both are an empty drive to libxl (format empty, params aio:), and "
        "xen_disk's parser takes both spellings as the same disk (no target), so it stores no "
        "pdev_path for either. Only the JSON entry differs; xenstore is equal."),
    "untrusted": (
        "Xen 4.17's shipped lexer predates the `trusted`/`untrusted` keywords of its own grammar, "
        "so xl takes them as a fifth positional and refuses the disk (`too many positional "
        "parameters`). xen_disk follows the grammar and xl-disk-configuration(5), as Xen 4.20's "
        "xl does: `untrusted` writes the frontend's trusted node as 0 and stores trusted False in "
        "libxl's JSON entry; everything else equals what xl writes without the keyword."),
    "virtio-hotplug": (
        "libxl refuses to hot-plug a virtio disk (`Hotplug isn't supported for specification "
        "virtio`); such disks exist only from the guest's creation. xen_disk refuses too "
        "(case refuse-virtio-hotplug), and writes them only with creating=true, for a guest being "
        "built, which xl cannot be compared with here (`xl create` needs a hypervisor)."),
    "pv-empty-cdrom-420": (
        "Xen 4.20's libxl gives an empty cdrom of a PV or PVH guest (no target, no backendtype) "
        "a phy backend with the block hotplug script and no medium (no `params` node, or \"\" for "
        "`,raw,xvdd,cdrom`); the script fails "
        "(hotplug-status error), `xl block-attach` returns 1 and leaves the backend, frontend and "
        "libxl directory nodes and the JSON entry behind, and such a cdrom would break the "
        "guest's next `xl create` the same way. xen_disk refuses it before writing anything and "
        "says why; a cdrom with a medium works on every version (an empty one with "
        "backendtype=phy works on 4.20's xl: case cdrom-empty-phy-pv)."),
    "empty-phy-cdrom-420": (
        "Xen 4.20's libxl accepts an empty cdrom with backendtype=phy (4.17 finds no suitable "
        "backend): it creates an empty placeholder file /var/run/xen/empty-cdrom.<domid> and "
        "writes it as the backend's params, which the block script puts a loop device on. "
        "xen_disk refuses it on both versions, before writing, as 4.17 does: it does not create "
        "libxl's placeholder file, and its read-back would take that file for a medium."),
}
EMPTY_POSITIONAL = {"cdrom-empty-hvm", "cdrom-empty-pv"}


def case_differences(version, case_id):
    if version == "4.20" and case_id in PV_EMPTY_CDROM:
        return {"pv-empty-cdrom-420"}
    if version == "4.20" and case_id == EMPTY_PHY_CDROM.id:
        return {"empty-phy-cdrom-420"}
    if case_id in EMPTY_POSITIONAL:
        return {"empty-positional-target"}
    if version == "4.17" and case_id.startswith("untrusted-"):
        return {"untrusted"}
    if case_id == "refuse-virtio-hotplug":
        return {"virtio-hotplug"}
    return set()


def _expected_writes(writes, differences):
    """xl's writes with the listed differences applied."""
    changed, removed = writes
    if "untrusted" in differences:
        trusted = [p for p in changed if p.startswith("/local/domain/") and "/device/" in p and p.endswith("/trusted")]
        assert trusted and all(changed[p][0] == "1" for p in trusted), "listed difference not shown"
        changed = dict(changed, **{p: ("0", changed[p][1]) for p in trusted})
    return changed, removed


def _expected_config(config, differences):
    """libxl's JSON with the listed differences applied."""
    if config is not None and "untrusted" in differences:
        config = dict(config, disks=[dict(d, trusted="False") for d in config.get("disks", [])])
    if config is None or "empty-positional-target" not in differences:
        return config
    disks = config.get("disks", [])
    assert any(d.get("pdev_path") == "" for d in disks), "listed difference not shown: libxl stored no \"\""
    return dict(config, disks=[{k: v for k, v in d.items() if not (k == "pdev_path" and v == "")} for d in disks])


def _assert_same_writes(outcome, version):
    assert outcome.xl.error is None, outcome.xl.error
    assert outcome.ours.error is None, outcome.ours.error
    assert len(outcome.xl.results) == len(outcome.ours.results) == len(outcome.case.steps)
    differences = case_differences(version, outcome.case.id)
    for step, (xl_result, ours) in enumerate(zip(outcome.xl.results, outcome.ours.results)):
        assert xl_result.returncode == 0, xl_result.stderr
        assert not ours.get("failed"), ours
        assert ours["changed"] is True
        # detected as on a dom0: the namespace shows the toolstack as /usr/lib/xen-<version>/bin/xl
        assert ours["xen"] == {"version": version, "source": "toolstack", "supported": True}, ours["xen"]
        xl_writes, our_writes = outcome.xl.writes[step], outcome.ours.writes[step]
        assert xl_writes[0] or xl_writes[1], "xl wrote nothing: the trace did not separate its writes"
        assert _show(*our_writes) == _show(*_expected_writes(xl_writes, differences)), "step %d; xl's requests:\n%s\nours:\n%s" % (
            step, "\n".join(outcome.xl.requests[step]), "\n".join(outcome.ours.requests[step]))
        assert outcome.ours.configs[step] == _expected_config(outcome.xl.configs[step], differences), \
            "libxl's JSON after step %d" % step


def test_listed_differences_have_reasons():
    for version in XEN_VERSIONS:
        for cid in {c.id for c in cases_for(version)}:
            for name in case_differences(version, cid):
                assert len(DIFFERENCES[name]) > 80


@pytest.mark.parametrize("xen_version, case_id", case_ids("attach"))
def test_attach_writes_equal_libxl(outcomes, xen_version, case_id):
    if "pv-empty-cdrom-420" in case_differences(xen_version, case_id):
        _assert_pv_empty_cdrom_refused(outcomes(xen_version)[case_id])
        return
    if "empty-phy-cdrom-420" in case_differences(xen_version, case_id):
        _assert_empty_phy_cdrom_refused(outcomes(xen_version)[case_id])
        return
    _assert_same_writes(outcomes(xen_version)[case_id], xen_version)


def _assert_pv_empty_cdrom_refused(outcome):
    """pv-empty-cdrom-420, as listed: xl fails after writing a phy backend without params;
    xen_disk refuses, writes nothing and says why."""
    assert outcome.xl.error is None, outcome.xl.error
    assert outcome.ours.error is None, outcome.ours.error
    xl_result = outcome.xl.results[0]
    assert xl_result.returncode == 1 and "block failed" in xl_result.stderr, xl_result.stderr
    changed, _removed = outcome.xl.writes[0]
    backend = [p for p in changed if p.startswith("/local/domain/0/backend/vbd/") and p.count("/") == 7]
    assert len(backend) == 1, sorted(changed)
    assert changed[backend[0] + "/type"][0] == "phy"
    assert changed[backend[0] + "/script"][0] == "/etc/xen/scripts/block"
    # no medium: no params node (`vdev=xvdd,devtype=cdrom`), or "" (`,raw,xvdd,cdrom`)
    assert changed.get(backend[0] + "/params", ("",))[0] == ""
    assert [d.get("format") for d in outcome.xl.configs[0]["disks"]] == ["empty"], "xl left no JSON entry"
    _assert_we_refused(outcome, "4.20")


def _assert_we_refused(outcome, *words):
    ours = outcome.ours.results[0]
    assert ours.get("failed"), ours
    assert all(word in ours["msg"] for word in words), ours["msg"]
    assert outcome.ours.writes[0] == ({}, set()), ours
    assert outcome.ours.configs[0] == outcome.ours.before_configs[0]


def _assert_empty_phy_cdrom_refused(outcome):
    """empty-phy-cdrom-420, as listed: 4.20's xl serves it from its placeholder file and the
    block script connects it; xen_disk refuses, writing nothing."""
    assert outcome.xl.error is None, outcome.xl.error
    assert outcome.ours.error is None, outcome.ours.error
    assert outcome.xl.results[0].returncode == 0, outcome.xl.results[0].stderr
    changed, _removed = outcome.xl.writes[0]
    assert changed["/local/domain/0/backend/vbd/5/51760/params"][0] == "/var/run/xen/empty-cdrom.5"
    assert changed["/local/domain/0/backend/vbd/5/51760/type"][0] == "phy"
    assert [d.get("backend") for d in outcome.xl.configs[0]["disks"]] == ["phy"]
    _assert_we_refused(outcome, "phy")


@pytest.mark.parametrize("xen_version, case_id", case_ids("detach"))
def test_detach_writes_equal_libxl(outcomes, xen_version, case_id):
    outcome = outcomes(xen_version)[case_id]
    _assert_same_writes(outcome, xen_version)
    assert outcome.xl.writes[0][1], "xl's detach removed nothing"


# cd-insert's first transaction (libxl_cdrom_insert's eject step) writes the backend's `params`
# as "" in 4.17 and as the new medium's bare path in 4.20; its second writes `aio:<path>` in both.
FIRST_INSERT_PARAMS = {"4.17": lambda path: "", "4.20": lambda path: path}


def _params_per_transaction(transactions):
    return [[args[1] for op, args in txn if op == "WRITE" and args[0].endswith("/params")] for txn in transactions]


@pytest.mark.parametrize("xen_version, case_id", case_ids("media"))
def test_media_change_writes_equal_libxl(outcomes, xen_version, case_id):
    outcome = outcomes(xen_version)[case_id]
    _assert_same_writes(outcome, xen_version)
    for step, change in enumerate(outcome.case.steps):
        xl_params = _params_per_transaction(outcome.xl.transactions[step])
        assert _params_per_transaction(outcome.ours.transactions[step]) == xl_params, "step %d" % step
        if isinstance(change, Insert):
            target = change.target.replace("{i}", outcome.case.images)
            first = FIRST_INSERT_PARAMS[xen_version](target)
            assert xl_params == [[first, first], ["aio:" + target, "aio:" + target]], xl_params


@pytest.mark.parametrize("xen_version, case_id", case_ids("refused"))
def test_both_refuse_and_write_nothing(outcomes, xen_version, case_id):
    outcome = outcomes(xen_version)[case_id]
    assert outcome.xl.error is None, outcome.xl.error
    assert outcome.ours.error is None, outcome.ours.error
    xl_result, ours = outcome.xl.results[-1], outcome.ours.results[-1]
    assert xl_result.returncode != 0, "xl accepted it"
    assert ours.get("failed"), ours
    assert outcome.xl.writes[-1] == ({}, set()), xl_result.stderr
    assert outcome.ours.writes[-1] == ({}, set()), ours
    assert outcome.ours.configs[-1] == outcome.xl.configs[-1] == outcome.xl.before_configs[-1]


@pytest.mark.parametrize("xen_version, case_id", case_ids("untrusted"))
def test_untrusted_listed_difference(outcomes, xen_version, case_id):
    _assert_same_writes(outcomes(xen_version)[case_id], xen_version)
