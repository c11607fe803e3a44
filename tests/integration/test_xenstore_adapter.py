# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xenstore adapter against Debian's real xenstored (fixtures in conftest.py); no fakes.

Trees written or read through the adapter are checked with the fixture's own wire client
(`xenstored.dump`) or with pyxs directly, never with the adapter itself.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.xen.disks.plugins.module_utils._io import xenstore as xs
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import (
    XenstoreConflict,
    XenstoreConnection,
    XenstoreConnectionError,
    XenstoreError,
    XenstorePathError,
    XenstoreTimeout,
)
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsOp, XsTree
from ansible_collections.xen.disks.tests.xenstored import launcher

pytestmark = pytest.mark.xenstored


def W(path, value):
    return XsOp("write", path, value)


def populate(xenstored, nodes):
    """Write nodes with the fixture's raw client (pyxs refuses non-ASCII values)."""
    with launcher.WireClient(xenstored.socket) as client:
        for path, value in nodes.items():
            client.write(path, value)


# -- reads -----------------------------------------------------------------------------------

TREE = {
    "/r/a": "1", "/r/a/x": "ax", "/r/a/y": "ay", "/r/b": "2", "/r/b/c/d": "deep", "/r/e": "é ü",
}


def test_read_values_perms_children(xenstored, xs_conn, xs_client):
    populate(xenstored, TREE)
    xs_client.set_perms(b"/r/b", [b"n0", b"r0"])
    before = xs_conn.requests
    assert xs_conn.read_values(["/r/a", "/r/missing", "/r/e", "/r/a"]) == {
        "/r/a": "1", "/r/missing": None, "/r/e": "é ü"}
    assert xs_conn.read_perms(["/r/b", "/r/a", "/r/missing"]) == {
        "/r/b": ("n0", "r0"), "/r/a": ("n0",), "/r/missing": None}
    assert xs_conn.list_children(["/r", "/r/a/x", "/nope"]) == {
        "/r": ["a", "b", "e"], "/r/a/x": [], "/nope": None}
    assert xs_conn.requests - before == 3 + 3 + 3  # duplicates are asked once


def test_read_tree_is_the_daemons_tree_one_round_trip_per_level(xenstored, xs_conn, xs_client):
    populate(xenstored, TREE)
    xs_client.set_perms(b"/r/a/x", [b"n0", b"r0"])
    expected = xenstored.dump("/r")
    before = dict(xs_conn.stats())
    tree = xs_conn.read_tree(["/r"], with_perms=True)
    assert {p: (tree.values[p], tree.perms[p]) for p in tree.values} == expected
    # Levels: /r; a b e; x y c; d -> 4 round trips, READ+DIRECTORY+GET_PERMS per node.
    assert xs_conn.round_trips - before["round_trips"] == 4
    assert xs_conn.requests - before["requests"] == 3 * len(expected)
    plain = xs_conn.read_tree("/r", with_perms=False)
    assert plain.values == tree.values and plain.perms == {}
    assert xs_conn.read_tree(["/nothing/here"]).values == {}


def test_read_nodes_reads_exactly_the_nodes_named(xenstored, xs_conn):
    populate(xenstored, TREE)
    before = xs_conn.requests
    tree = xs_conn.read_nodes(["/r/a/x", "/r/b/c/d", "/r/zz"], perms_of=["/r/b", "/r/gone"])
    assert xs_conn.requests - before == 5
    assert tree.values == {"/r/a/x": "ax", "/r/b/c/d": "deep"}
    assert tree.perms == {"/r/b": ("n0",)}
    assert isinstance(tree, XsTree)


def test_directory_too_large_for_one_reply_is_listed_in_parts(xenstored, xs_conn, xs_client):
    import pyxs

    names = ["child-number-%04d" % i for i in range(400)]  # 7,200 bytes of names
    xs_conn.transaction(lambda r: [W("/wide/" + n, "") for n in names] + [W("/wide/child-number-0007/x", "1")])
    with pytest.raises(pyxs.PyXSError) as too_big:
        xs_client.list(b"/wide")  # one DIRECTORY reply cannot hold them
    assert too_big.value.args[0] == 7  # E2BIG
    before = xs_conn.requests
    assert xs_conn.list_children(["/wide", "/local"]) == {"/wide": names, "/local": ["domain"]}
    assert xs_conn.requests - before == 2 + 2  # then two DIRECTORY_PART requests for /wide
    tree = xs_conn.snapshot(lambda reader: reader.read_tree(["/wide"]))
    assert sorted(tree.values) == sorted(xenstored.dump("/wide"))
    assert tree.children("/wide") == names


@pytest.mark.parametrize("method", ["watch", "transaction"])
def test_snapshot_rereads_when_a_read_node_changed(xs_conn, xs_client, method):
    xs_client.write(b"/s", b"old")
    views = []

    def read(reader):
        first = reader.read_value("/s")
        if not views:  # another writer changes both nodes between our two reads
            xs_client.write(b"/s", b"new")
            xs_client.write(b"/s2", b"x")
        views.append((first, reader.read_value("/s2")))
        return views[-1]

    assert xs_conn.snapshot(read, backoff=0.001, method=method) == ("new", "x")
    assert views == [("old", "x"), ("new", "x")]  # the mixed view was never returned


def snapshot_attempts(xs_conn, reads, change):
    """Run a watch snapshot whose first attempt calls change() after reads(reader), then
    reads once more: a change's event reaches us before the answers to later reads."""
    attempts = []

    def read(reader):
        result = reads(reader)
        if not attempts:
            change()
        reader.read_value("/")
        attempts.append(result)
        return result

    return xs_conn.snapshot(read, backoff=0.001), len(attempts)


@pytest.mark.parametrize(("change", "attempts"), [
    (lambda c: c.write(b"/snap/a/x", b"2"), 2),               # a node read
    (lambda c: c.set_perms(b"/snap/a/x", [b"n0", b"r0"]), 2),  # its permissions
    (lambda c: c.write(b"/snap/b/new", b"1"), 2),              # a child of a listed directory
    (lambda c: c.delete(b"/snap/a"), 2),                       # a directory above a node read
    (lambda c: c.write(b"/snap/other", b"1"), 1),              # something not read
    (lambda c: c.write(b"/snap/b/y/deeper", b"1"), 1),         # below a listed directory's child
])
def test_watch_snapshot_retries_only_for_what_it_read(xs_conn, xs_client, change, attempts):
    for path in (b"/snap/a/x", b"/snap/b/y", b"/snap/other"):
        xs_client.write(path, b"1")

    def reads(reader):
        return reader.read_values(["/snap/a/x"]), reader.list_children(["/snap/b"])

    _result, made = snapshot_attempts(xs_conn, reads, lambda: change(xs_client))
    assert made == attempts


def test_watch_snapshot_sees_a_change_made_after_the_reads_before_it_returns(xs_conn, xs_client):
    xs_client.write(b"/late", b"1")
    seen = []

    def read(reader):
        seen.append(reader.read_value("/late"))
        if len(seen) == 1:
            xs_client.write(b"/late", b"2")  # while read_fn plans on what it read
        return seen[-1]

    assert xs_conn.snapshot(read, backoff=0.001) == "2"
    assert seen == ["1", "2"]


def test_watch_snapshot_ignores_changes_made_before_the_read(xs_conn, xs_client):
    xs_client.write(b"/early", b"1")
    calls = []

    def read(reader):
        calls.append(1)
        xs_client.write(b"/early", b"2")  # after the watch is set, before this read: seen by it
        return reader.read_value("/early")

    before = xs_conn.requests
    assert xs_conn.snapshot(read) == "2"
    assert len(calls) == 1
    assert xs_conn.requests - before == 4  # watch, the read, the end mark, unwatch


def test_watch_snapshot_sees_a_node_created_below_one_it_found_missing(xs_conn, xs_client):
    calls = []

    def read(reader):
        calls.append(1)
        value = reader.read_value("/fresh/dir")
        if len(calls) == 1:
            # creates /fresh/dir too, but the watch event names only the leaf
            xs_client.write(b"/fresh/dir/leaf", b"1")
        return value

    assert xs_conn.snapshot(read, backoff=0.001) == ""
    assert len(calls) == 2


def test_watch_snapshot_costs_three_requests_whatever_its_size(xenstored, xs_conn):
    paths = ["/big/d%02d/n%04d" % (i // 100, i) for i in range(3000)]
    xs_conn.transaction(lambda r: [W(p, "v") for p in paths])
    before = xs_conn.requests
    values = xs_conn.snapshot(lambda reader: reader.read_values(paths))
    assert values == {p: "v" for p in paths}
    assert xs_conn.requests - before == 3000 + 3


def test_watch_snapshot_gives_up_when_what_it_reads_keeps_changing(xs_conn, xs_client):
    xs_client.write(b"/busy", b"0")
    calls = []

    def read(reader):
        value = reader.read_value("/busy")
        calls.append(value)
        xs_client.write(b"/busy", str(len(calls)).encode())
        reader.read_value("/")
        return value

    with pytest.raises(XenstoreConflict, match=r"^xenstore kept changing under a snapshot: still changing after 3 attempts$"):
        xs_conn.snapshot(read, max_retries=2, backoff=0.001)
    assert calls == ["0", "1", "2"]
    assert all(not sinks for sinks in xs_conn._router.monitors.values())  # watch removed


def test_snapshot_method_is_checked(xs_conn):
    with pytest.raises(ValueError, match=r"^snapshot method must be 'watch' or 'transaction', got 'magic'$"):
        xs_conn.snapshot(lambda reader: None, method="magic")


# -- transactions ------------------------------------------------------------------------------

def test_transaction_applies_every_action_with_xenstored_semantics(xenstored, xs_conn, xs_client):
    xenstored.add_guest("g", 5)
    xs_client.write(b"/t/old/child", b"x")
    xs_client.write(b"/t/keep", b"has a value")
    ops = [
        W("/t/new/deep/node", "v"),
        W("/t/keep", ""),  # an empty value is written, not mkdir'ed (mkdir keeps the value)
        XsOp("mkdir", "/t/dir"),
        XsOp("set_perms", "/t/dir", perms=("n5", "r0")),
        W("/t/dir/inherits", "1"),
        XsOp("rm", "/t/old"),
        XsOp("rm", "/t/never/existed"),  # missing, and its parent too: fine
    ]
    result = xs_conn.transaction(lambda reader: ops)
    assert (result.applied, result.attempts, result.ops) == (True, 1, ops)
    got = xenstored.dump("/t")
    assert got == {
        "/t": ("", ("n0",)),
        "/t/keep": ("", ("n0",)),
        "/t/new": ("", ("n0",)),
        "/t/new/deep": ("", ("n0",)),
        "/t/new/deep/node": ("v", ("n0",)),
        "/t/dir": ("", ("n5", "r0")),
        "/t/dir/inherits": ("1", ("n5", "r0")),
    }
    # XsTree.apply predicts exactly what the daemon holds.
    predicted = XsTree({"/t": "", "/t/old": "", "/t/old/child": "x", "/t/keep": "has a value"},
                       {"/t": ("n0",), "/t/old": ("n0",), "/t/old/child": ("n0",), "/t/keep": ("n0",)})
    predicted.apply_all(ops)
    assert {p: (predicted.values[p], predicted.perms[p]) for p in predicted.values} == got


def test_transaction_conflicting_with_a_second_client_retries_and_succeeds(xenstored, xs_conn, xs_client):
    xs_client.write(b"/counter", b"0")
    seen = []

    def plan(reader):
        value = int(reader.read_value("/counter"))
        seen.append(value)
        if len(seen) == 1:
            xs_client.write(b"/counter", b"10")  # another writer commits meanwhile
        return [W("/counter", str(value + 1)), W("/planned-from", str(value))]

    result = xs_conn.transaction(plan, backoff=0.001)
    assert seen == [0, 10]  # re-read and re-planned
    assert (result.attempts, result.applied) == (2, True)
    assert xenstored.dump("/counter")["/counter"][0] == "11"
    assert xenstored.dump("/planned-from")["/planned-from"][0] == "10"


def test_rm_after_another_writer_removed_a_listed_child_is_a_conflict(xenstored, xs_conn, xs_client):
    """xenstored 4.17 answers EIO (not EAGAIN) to an rm inside a transaction whose view of the
    directory lists a child another client removed since: tried again, it is gone."""
    xs_client.write(b"/d/c/e", b"1")
    xs_client.write(b"/d/f", b"1")
    listed = []

    def plan(reader):
        listed.append(reader.list_children(["/d"])["/d"])
        if len(listed) == 1:
            xs_client.delete(b"/d/c")  # another writer, after this transaction listed /d
        return [XsOp("rm", "/d"), W("/removed-with", ",".join(listed[-1]))]

    result = xs_conn.transaction(plan, backoff=0.001)
    assert listed == [["c", "f"], ["f"]]
    assert result.attempts == 2
    dump = xenstored.dump("/")
    assert "/d" not in dump and dump["/removed-with"][0] == "f"


def test_transaction_gives_up_after_its_retries(xenstored, xs_conn, xs_client):
    xs_client.write(b"/hot", b"0")
    attempts = []

    def plan(reader):
        attempts.append(reader.read_value("/hot"))
        xs_client.write(b"/hot", str(len(attempts)).encode())
        return [W("/hot-mine", "x")]

    with pytest.raises(XenstoreConflict, match=r"^xenstore transaction still conflicting with other writers after 3 attempts$"):
        xs_conn.transaction(plan, max_retries=2, backoff=0.001)
    assert attempts == ["0", "1", "2"]
    assert "/hot-mine" not in xenstored.dump("/")


def test_failing_op_aborts_and_leaves_no_trace(xenstored, xs_conn):
    ops = [W("/ab/a", "1"), W("/ab/b", "2"), XsOp("set_perms", "/ab/missing", perms=("n0",)), W("/ab/c", "3")]
    planned = []
    with pytest.raises(XenstoreError, match=r"^xenstore set_perms /ab/missing: ENOENT \(no such node\)$"):
        xs_conn.transaction(lambda reader: planned.append(1) or ops)
    assert len(planned) == 2  # tried again once (a conflict would have gone), then reported
    assert not [p for p in xenstored.dump("/") if p.startswith("/ab")]


def test_permission_naming_a_domain_that_does_not_exist_aborts(xenstored, xs_conn):
    ops = [W("/fe/state", "1"), XsOp("set_perms", "/fe", perms=("n9", "r0"))]
    with pytest.raises(XenstoreError, match=r"^xenstore set_perms /fe: ENOENT \(no such node\)$"):
        xs_conn.transaction(lambda reader: ops)
    assert "/fe" not in xenstored.dump("/")
    xenstored.add_guest("nine", 9)
    xs_conn.transaction(lambda reader: ops)
    assert xenstored.dump("/fe")["/fe"] == ("", ("n9", "r0"))


def test_exception_in_plan_aborts(xenstored, xs_conn):
    def plan(reader):
        reader.read_value("/")
        raise RuntimeError("planner failed")

    with pytest.raises(RuntimeError, match=r"^planner failed$"):
        xs_conn.transaction(plan)
    # The transaction was ended: the connection is usable and nothing is pending.
    xs_conn.transaction(lambda reader: [W("/after", "ok")])
    assert xenstored.dump("/after")["/after"][0] == "ok"


def test_bad_op_is_refused_before_anything_is_sent(xenstored, xs_conn):
    ops = [W("/good/a", "1"), W("/bad/../b", "2")]
    before = xs_conn.requests
    with pytest.raises(XenstorePathError, match=r"^invalid xenstore path '/bad/\.\./b': empty, '\.' or '\.\.' component$"):
        xs_conn.transaction(lambda reader: ops)
    assert xs_conn.requests - before == 2  # transaction start and abort, no write
    assert "/good" not in xenstored.dump("/")


def test_plan_only_writes_nothing(xenstored, xs_conn):
    class Plan:
        ops = [W("/p/a", "1")]

    result = xs_conn.transaction(lambda reader: Plan(), apply=False)
    assert (result.applied, result.ops, isinstance(result.result, Plan)) == (False, Plan.ops, True)
    assert "/p" not in xenstored.dump("/")


def test_large_transaction_is_pipelined(xenstored, xs_conn):
    ops = [W("/bulk/d%02d/n%04d" % (i // 100, i), str(i)) for i in range(3000)]
    before = dict(xs_conn.stats())
    xs_conn.transaction(lambda reader: ops)
    assert xs_conn.requests - before["requests"] == 3002
    assert xs_conn.round_trips - before["round_trips"] == 2 + 3  # start, 3 batches of 1024, commit
    dumped = xenstored.dump("/bulk")
    assert sum(1 for p in dumped if "/n" in p) == 3000
    assert dumped["/bulk/d29/n2999"][0] == "2999"


# -- values -------------------------------------------------------------------------------------

def test_values_round_trip_and_size_limit(xs_conn, xs_client):
    xs_conn.transaction(lambda r: [W("/v/uni", "grüße\n\tok"), W("/v/max", "x" * (4096 - len("/v/max") - 1))])
    assert xs_client.read(b"/v/uni").decode() == "grüße\n\tok"
    assert xs_conn.read_value("/v/uni") == "grüße\n\tok"
    big = "x" * (4096 - len("/v/big"))
    with pytest.raises(XenstorePathError, match=r"^value for /v/big is too large: 4090 bytes, a xenstore request carries at most 4096 with its path$"):
        xs_conn.transaction(lambda r: [W("/v/big", big)])


# -- waits --------------------------------------------------------------------------------------

def later(seconds, fn):
    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer


def test_wait_wakes_on_a_watch(xs_conn, xs_client, monkeypatch):
    monkeypatch.setattr(xs, "PROBE_INTERVAL", 60.0)  # no liveness probe in this short wait
    xs_client.write(b"/be/state", b"1")
    before = xs_conn.requests
    timer = later(0.2, lambda: xs_client.write(b"/be/state", b"2"))
    try:
        assert xs_conn.wait_for("/be/state", {"2", "4"}, timeout=120) == "2"
    finally:
        timer.join()
    # watch, a read, a read for the write's event, unwatch: the watch's first firing comes before
    # the first read's answer, so it is not read again (a poller would send hundreds in 0.2 s)
    assert xs_conn.requests - before == 4


def test_wait_returns_at_once_when_already_there(xs_conn, xs_client):
    xs_client.write(b"/be/state", b"4")
    assert xs_conn.wait_for("/be/state", ["2", "4"], timeout=0.01) == "4"


def test_wait_for_removal(xs_conn, xs_client):
    xs_client.write(b"/gone/x", b"1")
    timer = later(0.1, lambda: xs_client.delete(b"/gone"))
    try:
        assert xs_conn.wait_for("/gone/x", [None], timeout=20) is None
    finally:
        timer.join()


def test_wait_for_several_paths(xs_conn, xs_client):
    paths = ["/m/%d/state" % i for i in range(20)]
    for p in paths:
        xs_client.write(p.encode(), b"1")

    def connect_all():
        for p in paths:
            xs_client.write(p.encode(), b"4")

    timer = later(0.1, connect_all)
    try:
        assert xs_conn.wait_for_all({p: ["4"] for p in paths}, timeout=20) == {p: "4" for p in paths}
    finally:
        timer.join()


@pytest.mark.parametrize(("value", "wanted", "message"), [
    (b"1", ["2"], r"^timed out after 0\.2 s waiting for /w/state to be '2' \(last value: '1'\)$"),
    (None, ["2", "4"], r"^timed out after 0\.2 s waiting for /w/state to be one of '2', '4' \(last value: missing\)$"),
    (b"6", [None], r"^timed out after 0\.2 s waiting for /w/state to be missing \(last value: '6'\)$"),
])
def test_wait_times_out_cleanly(xs_conn, xs_client, value, wanted, message):
    if value is not None:
        xs_client.write(b"/w/state", value)
    with pytest.raises(XenstoreTimeout, match=message) as timed_out:
        xs_conn.wait_for("/w/state", wanted, timeout=0.2)
    assert timed_out.value.path == "/w/state"
    assert timed_out.value.last == (value.decode() if value else None)
    # The watch was removed: the connection has no watch left behind.
    xs_client.write(b"/w/state", b"99")
    assert all(not sinks for sinks in xs_conn._router.monitors.values())


# -- domains ------------------------------------------------------------------------------------

def test_domain_lookup(xenstored, xs_conn):
    xenstored.add_guest("web", 5, "pv")
    xenstored.add_guest("win", 7, "hvm")
    xenstored.add_guest("stor", 2, "pvh", driver_domain=True)
    assert xs_conn.domains() == {0: "Domain-0", 2: "stor", 5: "web", 7: "win"}
    assert [xs_conn.domid_of(d) for d in ("web", "win", "stor", "Domain-0", 5, "7")] == [5, 7, 2, 0, 5, 7]
    assert [xs_conn.domain_type(d) for d in (5, 7, 2, 0)] == ["pv", "hvm", "pvh", None]
    assert xs_conn.snapshot(lambda reader: reader.domid_of("web")) == 5


@pytest.mark.parametrize(("domain", "message"), [
    ("nosuch", r"^no domain named 'nosuch' on this host$"),
    (12, r"^no domain with domid 12 \(no /local/domain/12\)$"),
    ("40000", r"^no domain with domid 40000 \(no /local/domain/40000\)$"),
    ("", r"^invalid domain '': give a name or a domid$"),
    (None, r"^invalid domain None: give a name or a domid$"),
    ("twin", r"^several domains are named 'twin': domids 3, 4; give a domid$"),
])
def test_domain_lookup_errors(xenstored, xs_conn, domain, message):
    xenstored.add_guest("twin", 3)
    xs_conn.transaction(lambda r: [W("/local/domain/4/name", "twin")])  # as during a migration
    with pytest.raises(XenstoreError, match=message):
        xs_conn.domid_of(domain)


# -- paths --------------------------------------------------------------------------------------

LONG_LOCAL = "/local/domain/5/" + "a" * 2048
LONG_ROOT = "/" + "b" * 2047
TOO_LONG = r"more than xenstore allows \(2048 below /local/domain/<domid>/ or from the root, 3072 in all\)$"


@pytest.mark.parametrize(("path", "message"), [
    ("relative/path", r"^invalid xenstore path 'relative/path': not absolute$"),
    ("", r"^invalid xenstore path '': not absolute$"),
    ("/a//b", r"^invalid xenstore path '/a//b': empty, '\.' or '\.\.' component$"),
    ("/a/b/", r"^invalid xenstore path '/a/b/': empty, '\.' or '\.\.' component$"),
    ("/a/../b", r"^invalid xenstore path '/a/\.\./b': empty, '\.' or '\.\.' component$"),
    ("/a/./b", r"^invalid xenstore path '/a/\./b': empty, '\.' or '\.\.' component$"),
    ("/a/b\nc", r"^invalid xenstore path '/a/b\\nc': contains a control character$"),
    ("/a/b\x00", r"^invalid xenstore path '/a/b\\x00': contains a control character$"),
    ("/a/b c", r"^invalid xenstore path '/a/b c': only letters, digits, '-', '_' and '@' are allowed$"),
    ("/a/b.c", r"^invalid xenstore path '/a/b\.c': only letters, digits, '-', '_' and '@' are allowed$"),
    ("/a/é", r"^invalid xenstore path '/a/é': only letters, digits, '-', '_' and '@' are allowed$"),
    (LONG_LOCAL + "a", r"^invalid xenstore path '/local/domain/5/a{64}\.\.\.': 2065 characters, " + TOO_LONG),
    (LONG_ROOT + "b", r"^invalid xenstore path '/b{79}\.\.\.': 2049 characters, " + TOO_LONG),
    (b"/bytes", r"^invalid xenstore path b'/bytes': not a string$"),
])
def test_bad_paths_are_refused_before_anything_is_sent(xs_conn, path, message):
    before = xs_conn.requests
    with pytest.raises(XenstorePathError, match=message):
        xs_conn.read_values(["/local", path])
    with pytest.raises(XenstorePathError, match=message):
        xs_conn.wait_for(path, ["1"], timeout=0.1)
    assert xs_conn.requests == before


def test_path_limits_are_the_daemons(xenstored, xs_conn, xs_client):
    import pyxs

    xenstored.add_guest("g", 5)
    # The longest paths the check accepts are accepted by xenstored too ...
    for path in (LONG_LOCAL, LONG_ROOT):
        xs_conn.transaction(lambda r, p=path: [W(p, "ok")])
        assert xs_conn.read_value(path) == "ok"
    # ... and one more character is what xenstored itself refuses (sent raw with pyxs).
    for path in (LONG_LOCAL + "a", LONG_ROOT + "b"):
        with pytest.raises(pyxs.PyXSError) as refused:
            xs_client.write(path.encode(), b"x")
        assert refused.value.args[0] == 22  # EINVAL


@pytest.mark.parametrize(("parts", "expected"), [
    (("local", "domain", 5, "device", "vbd", 51712), "/local/domain/5/device/vbd/51712"),
    (("libxl", "0", "type"), "/libxl/0/type"),
])
def test_build_path(parts, expected):
    assert xs.build_path(*parts) == expected


@pytest.mark.parametrize(("parts", "message"), [
    (("local", "a/b"), r"^invalid xenstore path component 'a/b'$"),
    (("local", ".."), r"^invalid xenstore path component '\.\.'$"),
    (("local", ""), r"^invalid xenstore path component ''$"),
    (("local", -1), r"^invalid xenstore path component '-1'$"),
    (("local", True), r"^invalid xenstore path component True$"),
    (("local", None), r"^invalid xenstore path component None$"),
])
def test_build_path_refuses_bad_parts(parts, message):
    with pytest.raises(XenstorePathError, match=message):
        xs.build_path(*parts)


@pytest.mark.parametrize(("perms", "message"), [
    ((), r"^empty permission list for /x$"),
    (("x0",), r"^invalid xenstore permission 'x0' for /x: use n, r, w or b followed by a domid$"),
    (("n0", "r-1"), r"^invalid xenstore permission 'r-1' for /x: use n, r, w or b followed by a domid$"),
    (("n01",), r"^invalid xenstore permission 'n01' for /x: use n, r, w or b followed by a domid$"),
    (("n32752",), r"^invalid xenstore permission 'n32752' for /x: use n, r, w or b followed by a domid$"),
])
def test_bad_permissions_are_refused_before_anything_is_sent(xs_conn, perms, message):
    before = xs_conn.requests
    with pytest.raises(XenstorePathError, match=message):
        xs_conn.apply([XsOp("set_perms", "/x", perms=perms)], 0)
    assert xs_conn.requests == before


# -- connection errors ----------------------------------------------------------------------------

HINT = "is xenstored running\\? is this a dom0\\?"


def test_open_uses_the_option_then_xenstored_path(xenstored, tmp_path):
    with XenstoreConnection.open(xenstored.socket) as conn:
        assert conn.read_value("/local/domain/0/name") == "Domain-0"
    with XenstoreConnection.open(environ={"XENSTORED_PATH": xenstored.socket}) as conn:
        assert conn.path == xenstored.socket
    assert XenstoreConnection.candidates(None, {}) == [
        "/run/xenstored/socket", "/var/run/xenstored/socket", "/dev/xen/xenbus"]
    assert XenstoreConnection.candidates("/opt/s", {"XENSTORED_PATH": "/x"}) == ["/opt/s"]


def test_no_socket(tmp_path, monkeypatch):
    missing = str(tmp_path / "socket")
    with pytest.raises(XenstoreConnectionError, match=r"^xenstore socket %s does not exist: %s$" % (re.escape(missing), HINT)):
        XenstoreConnection.open(missing)
    with pytest.raises(XenstoreConnectionError, match=r"^xenstore socket %s does not exist: %s$" % (re.escape(missing), HINT)):
        XenstoreConnection.open(environ={"XENSTORED_PATH": missing})
    monkeypatch.setattr(xs, "DEFAULT_SOCKETS", (str(tmp_path / "run"), str(tmp_path / "var-run")))
    monkeypatch.setattr(xs, "XENBUS_DEVICE", str(tmp_path / "xenbus"))
    with pytest.raises(XenstoreConnectionError, match=r"^no xenstore found \(tried %s/run, %s/var-run, %s/xenbus\): %s$"
                       % ((re.escape(str(tmp_path)),) * 3 + (HINT,))):
        XenstoreConnection.open(environ={})


def test_connection_refused(tmp_path):
    path = str(tmp_path / "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.close()  # the file stays, nobody listens: a daemon that died
    with pytest.raises(XenstoreConnectionError, match=r"^cannot connect to xenstore at %s: connection refused: %s$" % (re.escape(path), HINT)):
        XenstoreConnection.open(path)


def test_xenbus_device_that_cannot_be_opened(tmp_path, monkeypatch):
    # A character device that has no driver behind it stands in for /dev/xen/xenbus.
    device = str(tmp_path / "xenbus")
    os.mknod(device, 0o600 | 0o020000, os.makedev(240, 77))
    with pytest.raises(XenstoreConnectionError, match=r"^cannot connect to xenstore at %s: No such device or address: %s$" % (re.escape(device), HINT)):
        XenstoreConnection.open(device)


def test_permission_denied(xenstored):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: an unprivileged user
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                XenstoreConnection.open(xenstored.socket)
                message = "connected"
            except XenstoreConnectionError as e:
                message = str(e)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    message = os.read(read_end, 4096).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert message == "permission denied opening xenstore at %s: run as root (become: true)" % xenstored.socket


def test_daemon_going_away_mid_run(xenstored, xs_conn):
    assert xs_conn.read_value("/local/domain/0/name") == "Domain-0"
    xenstored.stop()
    lost = r"^lost the connection to xenstored at %s \(the daemon stopped or closed the connection.*\)$" % re.escape(xenstored.socket)
    with pytest.raises(XenstoreConnectionError, match=lost):
        xs_conn.read_values(["/local/domain/0/name"])
    with pytest.raises(XenstoreConnectionError, match=lost):
        xs_conn.transaction(lambda reader: [W("/x", "1")])


def test_daemon_going_away_during_a_wait(xenstored, xs_conn):
    timer = later(0.2, xenstored.stop)
    try:
        with pytest.raises(XenstoreConnectionError, match=r"^lost the connection to xenstored at "):
            xs_conn.wait_for("/never", ["1"], timeout=30)
    finally:
        timer.join()


def test_daemon_that_does_not_answer(xenstored):
    import signal

    message = r"^xenstored at %s did not answer within 0\.3 s: is it stopped or overloaded\?$" % re.escape(
        xenstored.socket)
    with XenstoreConnection.open(xenstored.socket, timeout=0.3) as conn:
        os.kill(xenstored.pid, signal.SIGSTOP)
        try:
            with pytest.raises(XenstoreConnectionError, match=message):
                conn.read_value("/local")
            # the connection is not used again (late answers would be out of step): every later
            # request, a transaction's abort included, fails at once with the same message
            with pytest.raises(XenstoreConnectionError, match=message):
                conn.transaction(lambda reader: [])
            assert conn.round_trips == 1
        finally:
            os.kill(xenstored.pid, signal.SIGCONT)
    with XenstoreConnection.open(xenstored.socket, timeout=0.3) as conn:  # the daemon is fine again
        assert conn.read_value("/local") == ""


def test_daemon_that_stops_answering_during_a_wait(xenstored):
    """A wait for a node is also a wait for the daemon: a stopped xenstored is reported at the
    wait's end (not a timeout of the awaited node, then another of the next request)."""
    import signal

    with XenstoreConnection.open(xenstored.socket, timeout=1.2) as conn:
        stopper = later(0.1, lambda: os.kill(xenstored.pid, signal.SIGSTOP))
        try:
            with pytest.raises(XenstoreConnectionError, match=r"^xenstored at %s did not answer for [0-9.]+ s \(timeout "
                               r"1\.2 s\) while waiting for /never: is it stopped or overloaded\?$"
                               % re.escape(xenstored.socket)):
                conn.wait_for("/never", ["1"], timeout=1.2)
            requests = conn.requests
            with pytest.raises(XenstoreConnectionError, match=r"did not answer for"):
                conn.read_value("/")  # not used again
            assert conn.requests == requests
        finally:
            stopper.join()
            os.kill(xenstored.pid, signal.SIGCONT)


def test_a_daemon_slow_at_the_end_of_a_wait_is_not_called_stopped(xenstored):
    """A daemon that answers late (an emulated dom0 under load: the C xenstored took more than a
    second) is not a stopped one: at the wait's end the unanswered probe gets the connection's
    timeout to be answered, and the wait's own timeout is what is reported."""
    import signal

    with XenstoreConnection.open(xenstored.socket, timeout=4.0) as conn:
        stopper = later(0.5, lambda: os.kill(xenstored.pid, signal.SIGSTOP))
        resumer = later(1.8, lambda: os.kill(xenstored.pid, signal.SIGCONT))
        try:
            with pytest.raises(XenstoreTimeout, match=r"^timed out after 1 s waiting for /never to be '1' "
                               r"\(last value: missing\)$"):
                conn.wait_for("/never", ["1"], timeout=1.0)
            assert conn.read_value("/local") == ""  # the connection is still good
        finally:
            stopper.join()
            resumer.join()
            os.kill(xenstored.pid, signal.SIGCONT)


def test_a_wait_for_a_node_that_never_comes_still_times_out(xenstored, xs_conn):
    with pytest.raises(XenstoreTimeout, match=r"^timed out after 0\.8 s waiting for /never to be '1' \(last value: missing\)$"):
        xs_conn.wait_for("/never", ["1"], timeout=0.8)
    assert xs_conn.read_value("/never") is None  # the connection is fine


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 1e300, True, "5"])
def test_timeouts_that_cannot_bound_a_wait_are_refused(xenstored, timeout):
    with pytest.raises(XenstoreConnectionError, match=r"^invalid xenstore timeout .*: give a number of seconds"):
        XenstoreConnection.open(xenstored.socket, timeout=timeout)


def test_without_pyxs_the_module_imports_and_says_so():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pyxs' or name.startswith('pyxs.'):\n"
        "            raise ImportError('No module named ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.path.insert(0, %r)\n"
        "from ansible_collections.xen.disks.plugins.module_utils._io import xenstore as xs\n"
        "print(xs.HAS_PYXS, 'ImportError' in xs.PYXS_IMPORT_ERROR)\n"
        "try:\n"
        "    xs.XenstoreConnection.open('/nonexistent')\n"
        "except xs.XenstoreConnectionError as e:\n"
        "    print(e)\n"
    ) % (xs.__file__.rsplit("/ansible_collections/", 1)[0],)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "False True\nthe pyxs Python library is required to talk to xenstore\n"


def test_daemon_that_does_not_accept(xenstored):
    import signal

    os.kill(xenstored.pid, signal.SIGSTOP)
    waiting = []
    try:
        # Fill the listen backlog of the stopped daemon: the next connect cannot be queued.
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            waiting.append(sock)
            try:
                sock.connect(xenstored.socket)
            except BlockingIOError:
                break
            assert len(waiting) < 1000
        with pytest.raises(XenstoreConnectionError, match=r"^xenstored at %s did not accept the connection within 0\.2 s$" % re.escape(xenstored.socket)):
            XenstoreConnection.open(xenstored.socket, timeout=0.2)
    finally:
        os.kill(xenstored.pid, signal.SIGCONT)
        for sock in waiting:
            sock.close()


# The path check is exactly the daemon's rule for absolute paths: generated paths near every
# edge (characters, separators, lengths) are accepted by check_path if and only if the real
# xenstored accepts a write to them.
_VALID_PIECES = ["a", "Z", "9", "-", "_", "@", "/x", "/1", "/a-b_c@"]
_PIECES = st.sampled_from(_VALID_PIECES * 4 + ["/", "//", ".", "..", " ", "é", "\t", "\x7f", "~", ":", "+"])
_PATHS = st.one_of(
    st.lists(_PIECES, min_size=1, max_size=12).map(lambda parts: "/" + "".join(parts)),
    st.builds(lambda prefix, n, tail: prefix + "x" * n + tail,
              st.sampled_from(["/", "/local/domain/7/", "/local/domain/", "/local/domain/123456/"]),
              st.integers(min_value=2030, max_value=2070), st.sampled_from(["", "/", "/y", "."])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=_PATHS)
def test_check_path_accepts_exactly_what_xenstored_accepts(xenstored_session, path):
    try:
        xs.check_path(path)
        accepted = True
    except XenstorePathError:
        accepted = False
    with launcher.WireClient(xenstored_session.socket) as client:
        try:
            client.write(path, "v")
            daemon_accepted = True
        except launcher.WireError as refused:
            assert refused.name == "EINVAL"
            daemon_accepted = False
        if daemon_accepted:
            client.rm(path)
    assert accepted == daemon_accepted, path
