# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based fuzzing of every filter and every filter argument.

Whatever a template hands a filter (any string, NUL, lone surrogates, numbers of thousands of
digits, nan, deep lists, dicts with odd keys, xl.cfg texts and disk specs built from their own
grammar, repeated prefixes, deep nesting), the filter returns a value or raises
AnsibleFilterError with a message: never another exception. What a filter returns holds up:
a canonical spec reads back to itself, and an edited xl.cfg holds exactly the declared disks.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ansible_collections.xen.disks.plugins.filter import xl_cfg, xl_disk

EXAMPLES = int(os.environ.get("XEN_DISKS_FUZZ_EXAMPLES", "70"))
FUZZ = settings(max_examples=2 * EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HUGE_DIGITS = "9" * 4400

scalars = st.one_of(
    st.text(max_size=12),  # any code point, NUL and lone surrogates included
    st.sampled_from(["", "xvda", "d0p0", HUGE_DIGITS, "0x" + "f" * 5000, "\0", "\ud800", "phy:" * 50]),
    st.integers(), st.sampled_from([2 ** 31, -1]),
    st.sampled_from([4400, -5000]).map(lambda e: 10 ** e if e > 0 else -(10 ** -e)),  # no repr: too long
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(), st.binary(max_size=4))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3)),
    max_leaves=8)

FLAGS = ["cdrom", "discard", "no-discard", "trusted", "untrusted", "colo", "no-colo", "direct-io-safe"]
KEYS = ["format", "access", "devtype", "backendtype", "backend", "script", "specification", "vdev", "target",
        "colo-host", "colo-port", "colo-export", "active-disk", "hidden-disk", "colour"]
VALUES = ["raw", "qcow2", "empty", "rw", "ro", "cdrom", "phy", "qdisk", "standalone", "xen", "virtio",
          "block", "9000", "-7", HUGE_DIGITS, "xvda", "hdc", "d" + HUGE_DIGITS + "p0", "Domain-0", "0", ""]
PREFIXES = ["phy:", "file:", "tap:aio:", "tap:qcow2:", "qcow2:", "nbd:", "aio:", "bogus:"]
fragment = st.one_of(
    st.sampled_from(FLAGS + VALUES + PREFIXES),
    st.builds("{}={}".format, st.sampled_from(KEYS), st.one_of(st.sampled_from(VALUES), st.text(max_size=6))),
    st.builds(lambda p, n: p * n + "/x", st.sampled_from(PREFIXES), st.integers(0, 400)),
    st.text(st.sampled_from("abcxvd:=,/ \t\n\0"), max_size=10))
hostile_specs = st.builds(",".join, st.lists(fragment, max_size=7))
GOOD_EXTRAS = ["discard", "no-discard", "trusted", "untrusted", "direct-io-safe", "backend=stor2", "backend=0",
               "backend=Domain-0", "backendtype=qdisk", "script=block", "specification=xen", "devtype=cdrom",
               "no-colo"]


def good_spec(vdev):
    """A disk xl accepts, in one of its spellings, with a target of its own."""
    return st.builds(
        lambda prefix, fmt, access, extra, keyed: ",".join(
            (["vdev=%s" % vdev, "access=%s" % access, "format=%s" % fmt] + extra + ["target=/t/%s" % vdev]) if keyed
            else (["%s/t/%s,%s,%s,%s" % (prefix, vdev, fmt, vdev, access)] + extra)),
        st.sampled_from(["", "phy:", "file:", "tap:aio:"]), st.sampled_from(["raw", "qcow2", "vhd"]),
        st.sampled_from(["rw", "ro", "w", "r"]), st.lists(st.sampled_from(GOOD_EXTRAS), max_size=3, unique=True),
        st.booleans())


VDEVS = ["xvda", "xvdb", "hdc", "d3p1", "sda", "51760", "xvdaa"]
good_specs = st.sampled_from(VDEVS).flatmap(good_spec)
good_disk_lists = st.lists(st.sampled_from(VDEVS), unique=True, max_size=4).flatmap(
    lambda vdevs: st.tuples(*[good_spec(v) for v in vdevs]).map(list))
specs = st.one_of(good_specs, hostile_specs)

CFG_TOKENS = ["disk", "disk", "name", "vif", " = ", " += ", "=", "[", "]", ",", "\n", "; ", " # c\n",
              "'a'", '"b"', "'x\\n'", "'\\x41'", "'\\q'", "'/x,xvda,w'", "'phy:/y,xvdb,r'", "0x1f", "12",
              "'", "\\", "\0", "\ud800", "[" * 80, "]" * 80]


def _quoted(spec):
    return "'%s'" % spec.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


good_cfg_texts = st.builds(
    lambda head, items, tail: head + "disk = [ %s ]\n" % ", ".join(_quoted(d) for d in items) + tail,
    st.sampled_from(["", "name = 'g'\n# hand-written\n", "type = 'hvm'\n", "disk = [ 'x' ]\n"]),
    good_disk_lists, st.sampled_from(["", "disk += [ '/y,raw,xvdz,r' ]\n", "memory = 512 # MiB\n"]))
cfg_texts = st.one_of(
    good_cfg_texts,
    st.builds("".join, st.lists(st.sampled_from(CFG_TOKENS), max_size=25)),
    st.builds(lambda items: "disk = [ %s ]\n" % ", ".join(_quoted(d) for d in items), st.lists(specs, max_size=3)),
    st.builds(lambda n: "disk = " + "[" * n + "]" * n + "\n", st.integers(0, 3000)),
    st.text(max_size=30))
disk_lists = st.one_of(good_disk_lists, good_disk_lists, anything, st.lists(st.one_of(
    specs, st.dictionaries(st.sampled_from(KEYS + FLAGS), scalars, max_size=4)), max_size=3))


def _call(function, *args):
    """The filter's answer, or None when it refused with AnsibleFilterError (anything else fails)."""
    try:
        answer = function(*args)
    except AnsibleFilterError as exc:
        assert str(exc), "an AnsibleFilterError without a message"
        event("%s refused" % function.__name__)
        return None
    event("%s answered" % function.__name__)
    return answer


@FUZZ
@given(value=st.one_of(specs, anything))
def test_xl_disk_parse_and_spec(value):
    parsed = _call(xl_disk.xl_disk_parse, value)
    spec = _call(xl_disk.xl_disk_spec, value)
    if parsed is not None:
        # the parsed dict is a structured disk: it renders to the same canonical spec (or is refused
        # by the stricter structured form: no newline in any value)
        assert spec is not None and _call(xl_disk.xl_disk_spec, parsed) in (spec, None)
    if spec is not None:
        assert _call(xl_disk.xl_disk_spec, spec) == spec


@FUZZ
@given(value=st.one_of(st.sampled_from(VDEVS + ["0xca00", "d0p0", "xvd"]), anything))
def test_xl_vdev_devid(value):
    devid = _call(xl_disk.xl_vdev_devid, value)
    assert devid is None or (isinstance(devid, int) and 0 <= devid < 2 ** 31)


@FUZZ
@given(text=st.one_of(cfg_texts, anything), source=st.one_of(st.just("g.cfg"), anything))
def test_xl_cfg_disks(text, source):
    disks = _call(xl_cfg.xl_cfg_disks, text, source)
    assert disks is None or (isinstance(disks, list) and all(isinstance(d, str) for d in disks))


@FUZZ
@given(text=st.one_of(good_cfg_texts, cfg_texts, anything), disks=disk_lists)
def test_xl_cfg_set_disks(text, disks):
    new = _call(xl_cfg.xl_cfg_set_disks, text, disks)
    if new is not None:
        # the file now holds exactly the declared disks (canonical), and a second edit changes nothing
        assert xl_cfg.xl_disks_drift(xl_cfg.xl_cfg_disks(new), disks)["in_sync"]
        assert xl_cfg.xl_cfg_set_disks(new, disks) == new


@FUZZ
@given(value=anything)
def test_xl_cfg_value(value):
    rendered = _call(xl_cfg.xl_cfg_value, value)
    if rendered is not None and isinstance(value, str):
        assert xl_cfg.xl_cfg_disks("disk = [ %s ]\n" % rendered) == [value]


@FUZZ
@given(live=st.one_of(disk_lists, st.lists(
    st.fixed_dictionaries({"spec": st.one_of(specs, st.none()), "vdev": scalars}), max_size=3)),
    persistent=disk_lists)
def test_xl_disks_drift(live, persistent):
    report = _call(xl_cfg.xl_disks_drift, live, persistent)
    if report is not None:
        assert {"in_sync", "only_live", "only_persistent", "different", "unreadable_live"} <= set(report)
        assert isinstance(report["in_sync"], bool)
