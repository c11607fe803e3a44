# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based fuzzing of every option of xen_disk, xen_disk_info and xl_cfg_files, through the
real modules (AnsibleModule, in-process) against a real xenstored.

Properties, for any parameters: the module returns a result (a Python exception escaping main()
fails the test: it would be a traceback for the user); a failed run names what is wrong and has
written nothing (the whole xenstore tree and libxl's files, or the xl.cfg folder, compared before
and after); check mode and xen_disk_info never write. Runs that apply do not wait for a backend (wait false), so that
the only failures are the ones the input explains.

Options come from the argument spec itself: an option added later is fuzzed by its type until it
gets a strategy of its own here. Strings carry no lone surrogates (Ansible refuses them in module
arguments before a module runs; test_bad_input gives them to the module code directly).
"""

from __future__ import annotations

import functools
import os

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.modules import xen_disk, xen_disk_info, xl_cfg_files
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import run_module

pytestmark = pytest.mark.xenstored

GUESTS = (("fz21", 21, "pv"), ("fz22", 22, "hvm"), ("fz23", 23, "pvh"))
DRIVER = ("fzdrv", 24)
HUGE = "7" * 4400
EXAMPLES = int(os.environ.get("XEN_DISKS_FUZZ_EXAMPLES", "70"))


@pytest.fixture(scope="module")
def host(xenstored_session, tmp_path_factory):
    for name, domid, kind in GUESTS:
        xenstored_session.add_guest(name, domid, kind)
    xenstored_session.add_guest(DRIVER[0], DRIVER[1], "pv", driver_domain=True)
    files = tmp_path_factory.mktemp("fuzz")
    for name in ("a.img", "b.img", "c.qcow2", "d.iso"):
        with open(files / name, "wb") as handle:
            handle.truncate(1 << 20)
    (files / "regular").write_text("")
    (files / "dir").mkdir()
    xenstored_session.files = files
    return xenstored_session


def _text(max_size=8):
    # printable and control characters, NUL and non-ASCII included; no surrogates
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=max_size)


def refs():
    names = [g[0] for g in GUESTS] + [DRIVER[0]]
    ids = [str(g[1]) for g in GUESTS] + [str(DRIVER[1])]
    return st.one_of(st.sampled_from(names + ids + ["0", "Domain-0", "99999", HUGE, "", "nosuch", "021", "²"]),
                     _text())


VDEVS = ["xvda", "xvdb", "xvdc", "hdc", "sdb", "d0p0", "d1p3", "51728", "0xca10", "xvd", "hde", "xvda0",
         "d" + HUGE + "p0", HUGE, "xvdaaaaaa", "sdq", "-1", ""]


def vdevs():
    return st.one_of(st.sampled_from(VDEVS), _text(5))


def targets(files):
    known = [str(files / n) for n in ("a.img", "b.img", "c.qcow2", "d.iso", "regular", "dir")]
    return st.one_of(st.sampled_from(known + ["/nonexistent/x.img", "", "/dev/null", "rel.img", "/x,y"]),
                     _text(12))


FLAGS = ["cdrom", "discard", "no-discard", "trusted", "untrusted", "colo", "no-colo", "direct-io-safe"]
KEYS = ["format", "access", "devtype", "backendtype", "backend", "script", "specification", "vdev",
        "colo-host", "colo-port", "colo-export", "active-disk", "hidden-disk", "colour"]
VALUES = ["raw", "qcow2", "empty", "vhd", "rw", "ro", "w", "r", "disk", "cdrom", "phy", "qdisk", "standalone",
          "tap", "xen", "virtio", "block", "block-iscsi", "9000", "0", "-7", HUGE, "fzdrv", "24", "99999", ""]
PREFIXES = ["phy:", "file:", "tap:aio:", "tap:qcow2:", "qcow2:", "raw:", "nbd:", "aio:", "bogus:", "phy:phy:"]


def spec_strings(files):
    fragment = st.one_of(
        st.sampled_from(FLAGS),
        st.builds(lambda k, v: "%s=%s" % (k, v), st.sampled_from(KEYS), st.one_of(st.sampled_from(VALUES), vdevs())),
        st.builds(lambda v: "vdev=" + v, vdevs()),
        st.builds(lambda p, t: p + t, st.sampled_from(PREFIXES + [""]), targets(files)),
        vdevs(), st.sampled_from(VALUES), _text(6))
    positional = st.builds(lambda t, v, a: "%s,raw,%s,%s" % (t, v, a), targets(files), vdevs(),
                           st.sampled_from(["rw", "ro", "w", "r", "x", ""]))
    return st.one_of(
        st.builds(lambda head, rest: ",".join([head] + rest), positional, st.lists(fragment, max_size=3)),
        st.builds(lambda parts, t: ",".join(parts + ["target=" + t]), st.lists(fragment, max_size=5), targets(files)),
        st.builds(",".join, st.lists(fragment, max_size=6)))


def structured(files):
    value = st.one_of(st.sampled_from(VALUES), st.booleans(), st.none(), st.integers(-2, 1 << 70), vdevs(),
                      st.lists(st.text(max_size=2), max_size=2))
    keys = KEYS + FLAGS + ["target", "transport", "driver", "driver_subtype", "colo_port", "direct_io_safe"]
    optional = st.dictionaries(st.sampled_from(keys), value, max_size=5)
    return st.builds(lambda base, extra: dict(base, **extra),
                     st.fixed_dictionaries({"vdev": vdevs(), "target": targets(files)}), optional)


def disk_items(files):
    return st.one_of(spec_strings(files), structured(files),
                     st.lists(spec_strings(files), min_size=0, max_size=2),
                     st.sampled_from([None, 7, True, 1.5, [1], {"vdev": None}]))


BOOLS = st.one_of(st.booleans(), st.sampled_from(["yes", "no", "maybe", 2]))


def guest_options(files):
    return {
        "disks": st.lists(disk_items(files), max_size=3),
        "state": st.sampled_from(["present", "absent", "gone"]),
        "exclusive": BOOLS,
        "keep": st.lists(vdevs(), max_size=2),
        "recreate": BOOLS,
        "force": BOOLS,
        "creating": BOOLS,
        "backend": refs(),
        "width": st.sampled_from([32, 64, 16, "64", "x"]),
    }


def by_type(spec):
    kind = spec.get("type", "str")
    if kind == "bool":
        return BOOLS
    if kind == "int":
        return st.integers(-3, 1 << 40)
    if kind == "float":
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 10))
    if kind == "list":
        return st.lists(_text(), max_size=2)
    return _text()


@st.composite
def plausible_params(draw, host):
    """Parameters that are mostly right (so that runs attach, detach and plan for real), with a
    hostile value here and there."""
    files = host.files
    images = [str(files / n) for n in ("a.img", "b.img", "c.qcow2", "d.iso")]
    extras = ["discard", "trusted", "no-discard", "backend=fzdrv", "backend=0", "backendtype=qdisk",
              "specification=xen", "script=block", "direct-io-safe"]

    def disk(vdev):
        form = draw(st.sampled_from(["raw", "raw", "qcow2", "cdrom", "dict", "rw", "hostile"]))
        if form == "raw":
            extra = draw(st.lists(st.sampled_from(extras), max_size=2, unique=True))
            return ",".join(["%s,,%s,r" % (draw(st.sampled_from(images[:2])), vdev)] + extra)
        if form == "qcow2":
            return "%s,qcow2,%s,r" % (images[2], vdev)
        if form == "cdrom":
            return ",,%s:cdrom,r" % vdev
        if form == "dict":
            return {"vdev": vdev, "target": draw(st.sampled_from(images[:2])), "access": "ro",
                    "discard": draw(st.sampled_from([None, True, False]))}
        if form == "rw":
            return "vdev=%s,access=rw,target=%s" % (vdev, images[3])
        return draw(disk_items(files))

    def guest(name):
        vdevs_drawn = draw(st.lists(st.sampled_from(["xvdb", "xvdc", "xvdd", "hdc", "d0p1", "51792"]),
                                    max_size=3, unique=True))
        entry = {"domain": name, "disks": [disk(v) for v in vdevs_drawn]}
        entry.update(draw(st.fixed_dictionaries({}, optional={
            "state": st.sampled_from(["present", "present", "absent"]), "exclusive": st.booleans(),
            "keep": st.lists(st.sampled_from(["xvdb", "hdc", "nonsense"]), max_size=1), "recreate": st.booleans(),
            "force": st.booleans(), "backend": st.sampled_from(["fzdrv", "0", "24"])})))
        return entry

    names = draw(st.lists(st.sampled_from(["fz21", "fz22", "fz23"]), min_size=1, max_size=3, unique=True))
    params = draw(st.fixed_dictionaries({}, optional={
        "timeout": st.sampled_from([5, 0.5, 30]), "hotplug_scripts": st.sampled_from(["auto", "skip"]),
        "arch": st.sampled_from(["x86", "arm"]), "width": st.sampled_from([32, 64])}))
    if len(names) == 1 and draw(st.booleans()):
        params.update(guest(names[0]))
    else:
        params["domains"] = [guest(n) for n in names]
    return _shaped(host, "keep", params, None, None)


def xen_disk_params(host):
    files = host.files
    named = dict(guest_options(files))
    named.update({
        "domain": refs(),
        "domains": st.lists(st.one_of(
            st.builds(lambda ref, extra: dict(extra, domain=ref), refs(),
                      st.fixed_dictionaries({}, optional=guest_options(files))),
            st.sampled_from([{}, {"domain": None}, "fz21", {"domain": "fz21", "colour": 1}])), max_size=3),
        "wait": st.just(False),
        "timeout": st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                             st.sampled_from(["inf", "nan", "-1", "1e300", "abc", "0", 5])),
        "hotplug_scripts": st.sampled_from(["auto", "run", "skip", "sometimes"]),
        "script_dir": st.sampled_from(["/etc/xen/scripts", str(files), "relative", ""]),
        "arch": st.sampled_from(["x86", "arm", "mips"]),
        "xenstore_socket": st.sampled_from([host.socket] * 6 + [str(files / "regular"), str(files / "dir"),
                                                                str(files / "missing")]),
        "libxl_dir": st.sampled_from([host.libxl_dir] * 6 + [str(files / "regular"), str(files / "missing")]),
    })
    spec = _argspec.xen_disk_argument_spec()
    options = {name: named[name] if name in named else by_type(spec[name]) for name in spec}
    # one guest, several, both (mutually exclusive) or none (required)
    shape = st.sampled_from(["domain", "domain", "domains", "both", "none"])
    hostile = st.builds(functools.partial(_shaped, host), shape, st.fixed_dictionaries({}, optional=options), refs(),
                        options["domains"])
    return st.one_of(plausible_params(host), hostile)


def _shaped(host, shape, params, ref, domains):
    """`params` with the guests in the given shape, connected to `host`, and wait false."""
    if shape != "keep":
        params.pop("domain", None)
        params.pop("domains", None)
    if shape in ("domain", "both"):
        params["domain"] = ref
    if shape in ("domains", "both"):
        params["domains"] = domains
    params.setdefault("xenstore_socket", host.socket)
    params.setdefault("libxl_dir", host.libxl_dir)
    params["wait"] = False  # no backend runs here: a wait would fail after the writes
    return params


def snapshot(host):
    """The whole xenstore tree and every libxl file of this dom0."""
    files = {}
    for top, _dirs, names in os.walk(host.libxl_dir):
        for name in names:
            path = os.path.join(top, name)
            with open(path, "rb") as handle:
                files[path] = handle.read()
    return host.dump("/"), files


def _check_result(result, before, after, wrote_allowed):
    event("failed: " + result.get("msg", "").split(":")[0][:25] if result.get("failed")
          else "changed" if result.get("changed") else "unchanged")
    if result.get("failed"):
        assert isinstance(result.get("msg"), str) and result["msg"], result
        assert "Traceback" not in result["msg"], result["msg"][:2000]
        assert after == before, "a failed run wrote: %s" % result["msg"][:500]
    elif not wrote_allowed:
        assert after == before, "a read-only run wrote"
    assert "exception" not in result, result.get("exception")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_xen_disk_any_options(host, data):
    params = data.draw(xen_disk_params(host))
    check = data.draw(st.booleans())
    before = snapshot(host)
    result = run_module(xen_disk.main, params, check=check, diff=data.draw(st.booleans()))
    _check_result(result, before, snapshot(host), wrote_allowed=not check)


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_xen_disk_info_any_options(host, data):
    params = {"xenstore_socket": data.draw(st.sampled_from([host.socket] * 4 + [str(host.files / "dir")])),
              "libxl_dir": host.libxl_dir}
    shape = data.draw(st.sampled_from(["all", "domain", "domains", "both"]))
    if shape in ("domain", "both"):
        params["domain"] = data.draw(refs())
    if shape in ("domains", "both"):
        params["domains"] = data.draw(st.lists(st.one_of(refs(), st.integers(-1, 1 << 40)), max_size=3))
    before = snapshot(host)
    result = run_module(xen_disk_info.main, params)
    _check_result(result, before, snapshot(host), wrote_allowed=False)


CFG = "name = 'g'\n# hand-written\nmemory = 512\ndisk = [ '/x,raw,xvda,rw' ]\n"


def _dir_state(directory):
    """Every file below `directory`: its bytes and mode (a failed run must leave them all)."""
    out = {}
    for top, dirs, names in os.walk(directory):
        for name in dirs + names:
            path = os.path.join(top, name)
            info = os.lstat(path)
            with_bytes = None
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    with_bytes = handle.read()
            out[path] = (info.st_mode, info.st_uid, with_bytes)
    return out


@settings(max_examples=max(10, EXAMPLES // 2), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_xl_cfg_files_any_options(host, tmp_path_factory, data):
    """The fleet module: any files and options; a failed run leaves every file as it was."""
    directory = tmp_path_factory.mktemp("cfg")
    for name in ("a.cfg", "b.cfg"):
        (directory / name).write_text(CFG)
    (directory / "bad.cfg").write_text("disk = [ 'x'\n")
    paths = [str(directory / n) for n in ("a.cfg", "b.cfg", "bad.cfg", "new.cfg", "sub/x.cfg")] + [str(directory)]
    good = st.lists(st.sampled_from(["/y,raw,xvdb,rw", "/z,qcow2,xvdc,r", ",,hdc:cdrom,r"]), unique=True, max_size=3)
    entry = st.fixed_dictionaries({"path": st.sampled_from(paths)}, optional={
        "name": _text(), "disks": st.one_of(good, good, st.lists(disk_items(host.files), max_size=2)),
        "content": st.one_of(st.just(CFG), st.sampled_from(["", "memory = 1\n", "disk = [ 'x'\n"]), _text(20)),
        "create": BOOLS, "owner": st.sampled_from(["root", "nosuchuser", "0"]),
        "group": st.sampled_from(["root", "nosuchgroup"]), "mode": st.sampled_from(["0644", "u=rw", "999", 420, "x"])})
    spec = _argspec.xl_cfg_files_argument_spec()
    named = {"files": st.lists(entry, max_size=3), "create": BOOLS, "backup": BOOLS,
             "owner": st.sampled_from(["root", "nosuchuser"]), "group": st.sampled_from(["root", "nosuchgroup"]),
             "mode": st.sampled_from(["0600", "a+x", "77777", 384]),
             "validate": st.sampled_from(["auto", "never", "always", "sometimes"]),
             "xl_path": st.sampled_from(["/usr/sbin/xl", "/nonexistent/xl"]),
             "xenstore_socket": st.just(host.socket), "libxl_dir": st.just(host.libxl_dir)}
    options = {name: named[name] if name in named else by_type(spec[name]) for name in spec}
    params = data.draw(st.fixed_dictionaries({"files": options.pop("files")}, optional=options))
    check = data.draw(st.booleans())
    before = _dir_state(str(directory))
    result = run_module(xl_cfg_files.main, params, check=check, diff=data.draw(st.booleans()))
    after = _dir_state(str(directory))
    event("failed: " + result.get("msg", "").split(":")[0][:25] if result.get("failed")
          else "changed" if result.get("changed") else "unchanged")
    assert "exception" not in result, result.get("exception")
    if result.get("failed") or check:
        assert after == before, "wrote with failed=%s: %s" % (result.get("failed"), result.get("msg", "")[:500])
