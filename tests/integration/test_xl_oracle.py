# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Differential tests: our parser and vdev numbering against Xen 4.17's own code.

The oracles (tests/oracle/*.c) are built here with gcc against Debian's libxen-dev and run a
generated corpus (tests/oracle/corpus.py). Verdict, error message and every field must agree,
except for the differences listed in ACCEPTED_DIFFERENCES, each with its reason.
"""

from __future__ import annotations

import random
import re

import pytest

from dataclasses import replace

from ansible_collections.xen.disks.plugins.module_utils._core.disk_spec import (
    DiskSpecError,
    parse_disk_spec,
    render_disk_spec,
)
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import (
    VdevError,
    devid_to_vdev,
    index_to_letters,
    vdev_to_devid,
)
from ansible_collections.xen.disks.tests.oracle import build, corpus

pytestmark = pytest.mark.oracle

CORPUS_SIZE = 600
SOUP_SIZE = 3000

ACCEPTED_DIFFERENCES = {
    "trusted-lexer-bug": (
        "Xen 4.17's shipped lexer (libxlu_disk_l.c) was generated before `trusted`/`untrusted` "
        "were added to libxlu_disk_l.l, so it takes them as positional parameters. We follow the "
        "grammar and xl-disk-configuration(5), as Xen 4.19 does: such cases are compared with the "
        "flags left out, and our `trusted` is checked against the last flag written."),
    "flex-jam": (
        "A `=` followed by a newline makes Xen's scanner match nothing in its error state: flex "
        "prints `flex scanner jammed` and exits the whole process (xl dies). We report the first "
        "error Xen had reported before that, or else `bad disk syntax: near `='`."),
    "partial-utf8-in-message": (
        "Xen scans bytes: in `unknown parameter: near `key=X'` it quotes one byte after the `=`, "
        "which may be the first byte of a multi-byte character. We quote the whole character."),
    "empty-cdrom-target": (
        "A cdrom whose target is the empty string is reported with no target (None): libxl treats "
        "NULL and \"\" alike for an empty drive (format empty, params \"aio:\"), and one value "
        "keeps `,,hdc:cdrom` and `vdev=hdc,devtype=cdrom` equal."),
}

XEN_PREFIX = "spec: config parsing error in disk specification: "


@pytest.fixture(scope="module")
def disk_oracle():
    return build.build("xl_disk_oracle")


@pytest.fixture(scope="module")
def vdev_oracle():
    return build.build("xl_vdev_oracle")


@pytest.fixture(scope="module")
def cases():
    return corpus.generate(CORPUS_SIZE)


@pytest.fixture(scope="module")
def xen_results(disk_oracle, cases):
    return build.run_disk_oracle(disk_oracle, [case.without_trusted for case in cases])


def xen_fields(result):
    """Xen's libxl_device_disk, with the accepted differences applied."""
    fields = {k: v for k, v in result.items() if k not in ("rc", "report")}
    if fields["is_cdrom"] and fields["target"] == "":
        fields["target"] = None  # empty-cdrom-target
    return fields


def our_fields(disk):
    """Our Disk in the oracle's terms (libxl_device_disk members, enums as libxl names them)."""
    return {
        "target": disk.target, "vdev": disk.vdev, "format": disk.format,
        "backendtype": disk.backendtype or "unknown", "backend": disk.backend, "script": disk.script,
        "specification": disk.specification or "unknown", "transport": disk.transport or "unknown",
        "readwrite": int(disk.readwrite), "is_cdrom": int(disk.is_cdrom),
        "removable": int(disk.removable), "direct_io_safe": int(disk.direct_io_safe),
        "discard": disk.discard, "colo": disk.colo, "trusted": disk.trusted,
        "colo_host": disk.colo_host, "colo_port": disk.colo_port or 0,
        "colo_export": disk.colo_export, "active_disk": disk.active_disk,
        "hidden_disk": disk.hidden_disk,
    }


def first_xen_error(result):
    """The first message Xen reported (a quoted spec may hold newlines)."""
    report = result["report"]
    assert report.startswith(XEN_PREFIX), report
    return report.split(XEN_PREFIX)[1][:-1]


def compare_with_xen(strings, result):
    """None when we agree with Xen on these strings, else a description of the difference."""
    try:
        disk = parse_disk_spec(strings)
    except DiskSpecError as exc:
        if result.get("jammed") and not result["report"]:  # flex-jam
            return None if error_kind(str(exc)) == "bad disk syntax" else "Xen jammed, we said %s" % exc
        if result.get("rc") == 0:
            return "we reject (%s), Xen accepts" % exc
        theirs = first_xen_error(result)
        if str(exc) == theirs or same_but_partial_utf8(str(exc), theirs):
            return None
        return "messages differ: ours %r, Xen %r" % (str(exc), theirs)
    if result.get("jammed"):
        return "we accept, Xen's scanner jammed"
    if result["rc"] != 0:
        return "we accept, Xen rejects: %s" % first_xen_error(result)
    ours, theirs = our_fields(disk), xen_fields(result)
    differing = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    return "fields differ (ours, Xen): %s" % differing if differing else None


def same_but_partial_utf8(ours, theirs):
    """partial-utf8-in-message: Xen's text is ours with the continuation bytes of one character cut."""
    ours_bytes, theirs_bytes = ours.encode("utf-8"), theirs.encode("utf-8", "surrogateescape")
    cut = next((i for i, (a, b) in enumerate(zip(ours_bytes, theirs_bytes)) if a != b), None)
    if cut is None or not 0x80 <= ours_bytes[cut] <= 0xBF:
        return False
    rest = cut
    while rest < len(ours_bytes) and 0x80 <= ours_bytes[rest] <= 0xBF:
        rest += 1
    return theirs_bytes == ours_bytes[:cut] + ours_bytes[rest:]


def error_kind(message):
    return message.split(": near `")[0].split(" in `")[0]


def compare(case, result):
    """Compare one corpus case; a case with trusted flags goes through `trusted-lexer-bug`."""
    if case.strings == case.without_trusted:
        return compare_with_xen(case.strings, result)
    why = compare_with_xen(case.without_trusted, result)
    if why is not None:
        return "without the trusted flags: " + why
    try:
        without = parse_disk_spec(case.without_trusted)
    except DiskSpecError as exc:
        try:
            parse_disk_spec(case.strings)
        except DiskSpecError as exc_with:
            same = error_kind(str(exc_with)) == error_kind(str(exc))
            return None if same else "errors differ with the flags: %s / %s" % (exc_with, exc)
        return "the trusted flags turn an error into a disk"
    disk = parse_disk_spec(case.strings)
    if disk != replace(without, trusted=case.trusted):
        return "with the flags: %r, expected trusted=%r on %r" % (disk, case.trusted, without)
    return None


def test_corpus_is_large_and_mostly_mixed(cases, xen_results):
    rejected = sum(1 for result in xen_results if result.get("rc", 1) != 0)
    assert len(cases) >= 400
    assert rejected >= 150, rejected
    assert len(cases) - rejected >= 150, len(cases) - rejected
    assert sum(1 for case in cases if len(case.strings) > 1) >= 40
    assert sum(1 for case in cases if case.trusted is not None) >= 40


def test_parser_agrees_with_xen(cases, xen_results):
    differences = [(case.strings, why) for case, result in zip(cases, xen_results)
                   if (why := compare(case, result)) is not None]
    assert differences == []


def test_rendered_specs_read_back_identically_by_xen(disk_oracle, cases, xen_results):
    accepted = []
    for case, result in zip(cases, xen_results):
        if result.get("rc") == 0:
            disk = parse_disk_spec(case.strings)
            # trusted-lexer-bug: Xen 4.17 cannot read the flags back; compare without them
            accepted.append((disk, render_disk_spec(replace(disk, trusted=None))))
    assert len(accepted) >= 150
    results = build.run_disk_oracle(disk_oracle, [[rendered] for unused_disk, rendered in accepted])
    for (disk, rendered), result in zip(accepted, results):
        assert result["rc"] == 0, (rendered, result["report"])
        ours = our_fields(disk)
        ours["trusted"] = None
        assert xen_fields(result) == ours, rendered
        assert parse_disk_spec(rendered) == replace(disk, trusted=None)


def test_parser_agrees_with_xen_on_vocabulary_soup(disk_oracle):
    soup = corpus.generate_soup(SOUP_SIZE)
    assert not any("trusted" in text for strings in soup for text in strings)
    results = build.run_disk_oracle(disk_oracle, soup)
    assert sum(1 for result in results if result.get("rc") == 0) >= 30
    assert sum(1 for result in results if result.get("jammed")) >= 20
    differences = [(strings, why) for strings, result in zip(soup, results)
                   if (why := compare_with_xen(strings, result)) is not None]
    assert differences == []


@pytest.mark.parametrize("spec, xen_error", [
    ("/dev/x,raw,xvda,w,trusted", "too many positional parameters: near `trusted' in `/dev/x,raw,xvda,w,trusted'"),
    ("vdev=xvda,untrusted,target=/dev/x", "target respecified: near `/dev/x' in `vdev=xvda,untrusted,target=/dev/x'"),
])
def test_xen_417_lexer_does_not_know_trusted(disk_oracle, spec, xen_error):
    """The accepted difference `trusted-lexer-bug` is real: Xen 4.17 fails where we follow the grammar."""
    (result,) = build.run_disk_oracle(disk_oracle, [[spec]])
    assert first_xen_error(result) == xen_error
    assert parse_disk_spec(spec).trusted is (spec.find("untrusted") < 0)


def test_flex_jam_difference(disk_oracle):
    (result,) = build.run_disk_oracle(disk_oracle, [["/=\nx,xvda"]])
    assert result == {"jammed": True, "report": ""}
    with pytest.raises(DiskSpecError, match=r"^bad disk syntax: near `=' in `/=\nx,xvda'$"):
        parse_disk_spec("/=\nx,xvda")


def test_empty_cdrom_target_difference(disk_oracle):
    (result,) = build.run_disk_oracle(disk_oracle, [[",,hdc:cdrom,r"]])
    assert result["rc"] == 0 and result["target"] == "" and result["format"] == "empty"
    assert parse_disk_spec(",,hdc:cdrom,r").target is None


# ---------------------------------------------------------------------------------------------
# vdev numbers against libxl's own libxl__device_disk_dev_number (see tests/oracle/xl_vdev_oracle.c)

# Spellings libxl accepts but we refuse on purpose (§2.3 of docs/XENSTORE-LAYOUT.md), by reason.
SLOPPY_SPELLINGS = {
    "sign or blank inside a number (sscanf/strtoul take them)": re.compile(r".*[+\- \t]"),
    "leading zero, octal or hex in the d<N>p<M> form": re.compile(r"d.*(0[0-9xX])"),
    "octal plain number": re.compile(r"0[0-7]+\Z"),
    "empty string (strtoul reaches its end at once)": re.compile(r"\Z"),
    "no disk letters (libxl returns a negative devid)": re.compile(r"(xvd|hd|sd)[0-9]*\Z"),
}


def vdev_inputs():
    rng = random.Random(202)
    strict = []
    for unused_index in range(1500):
        form = rng.choice(["xvd", "xvd", "d", "hd", "sd", "num"])
        if form == "xvd":
            disk = rng.choice([rng.randint(0, 30), rng.randint(0, (1 << 20) - 1)])
            part = rng.choice([0, 0, rng.randint(1, 15), rng.randint(1, 255)])
            strict.append("xvd%s%s" % (index_to_letters(disk), part or ""))
        elif form == "d":
            strict.append("d%dp%d" % (rng.choice([rng.randint(0, 20), rng.randint(0, (1 << 20) - 1)]),
                                      rng.randint(0, 255)))
        elif form == "hd":
            strict.append("hd%s%s" % ("abcd"[rng.randint(0, 3)], rng.choice(["", rng.randint(1, 63)])))
        elif form == "sd":
            strict.append("sd%s%s" % ("abcdefghijklmnop"[rng.randint(0, 15)], rng.choice(["", rng.randint(1, 15)])))
        else:
            number = rng.choice([rng.randint(0, 70000), rng.randint(0, 2147483647)])
            strict.append(rng.choice([str(number), hex(number)]))
    edges = ["xvdbgqcv255", "xvdbgqcw", "d1048575p255", "d1048576p0", "d0p256", "xvda256", "hde", "sdq",
             "hda64", "sda16", "xvda0", "xvda01", "d0", "2147483647", "2147483648", "xvdA", "xvd", "sd",
             "hd", "", " ", "xvda+1", "xvda 1", "d 2p 3", "+7", "-1", "d-1p0", "d0p-2", "xvda-2", "hd-2",
             "d0x10p0", "d010p0", "d0p00", "0312", "0xca00", "0XCA00", "xvda1x", "xvdzzzzzz", "51712",
             "0", "00", "0x", "x", "vda", "xvd1", "hda0", "sdb01", "d1p2p3", "d1p2 "]
    return strict + edges


def test_vdev_numbers_agree_with_libxl(vdev_oracle):
    vdevs = vdev_inputs()
    libxl_numbers = build.run_vdev_oracle(vdev_oracle, vdevs)
    agreed = refused_by_both = 0
    unexplained = []
    for vdev, theirs in zip(vdevs, libxl_numbers):
        try:
            ours = vdev_to_devid(vdev)
        except VdevError:
            if theirs is None:
                refused_by_both += 1
            elif not any(p.match(vdev) for p in SLOPPY_SPELLINGS.values()):
                unexplained.append((vdev, theirs))
            continue
        assert ours == theirs, vdev
        agreed += 1
    assert unexplained == []
    assert agreed >= 1400 and refused_by_both >= 10


def test_devid_to_vdev_inverts_libxl_numbering(vdev_oracle):
    rng = random.Random(28)
    devids = list(range(51712, 51968)) + [(1 << 28) | (rng.randint(0, (1 << 20) - 1) << 8) | rng.randint(0, 255)
                                          for unused_index in range(500)]
    names = [devid_to_vdev(devid) for devid in devids]
    assert build.run_vdev_oracle(vdev_oracle, names) == devids
