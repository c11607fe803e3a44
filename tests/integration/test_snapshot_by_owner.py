# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-owner snapshot against the real xenstored: one owner's changes re-read a bounded number
of times and are then reported for that owner alone; observed nodes never count; shared nodes
keep the host-wide guarantee."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import frontend_node, guest_of
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreConflict

NODES = {
    "/libxl/5/device/vbd/51712/params": "a",
    "/local/domain/0/backend/vbd/5/51712/state": "4",
    "/local/domain/5/device/vbd/51712/state": "4",
    "/libxl/7/device/vbd/51712/params": "b",
    "/local/domain/0/backend/vbd/7/51712/state": "4",
    "/local/domain/7/device/vbd/51712/state": "4",
    "/local/domain/7/name": "guest7",
}


@pytest.fixture
def nodes(xs_client):
    for path, value in NODES.items():
        xs_client.write(path.encode(), value.encode())
    return NODES


def run(xs_conn, change, **kw):
    """A per-owner snapshot of NODES whose every attempt ends with change(attempt number)."""
    calls = []

    def read(reader):
        values = reader.read_values(sorted(NODES))
        calls.append(values)
        change(len(calls))
        reader.read_value("/")  # the change's event is queued before this answer
        return values

    snap = xs_conn.snapshot_by_owner(read, guest_of, backoff=0.001, observed=frontend_node, **kw)
    return snap, calls


def test_nothing_changes_one_read(xs_conn, nodes):
    snap, calls = run(xs_conn, lambda n: None)
    assert (snap.unsettled, snap.attempts, len(calls)) == (frozenset(), 1, 1)


def test_a_guest_rewriting_its_frontend_nodes_never_invalidates_anything(xs_conn, xs_client, nodes):
    def flap(n):
        xs_client.write(b"/local/domain/5/device/vbd/51712/state", str(n % 7).encode())
        xs_client.delete(b"/local/domain/5/device/vbd/51712")
        xs_client.write(b"/local/domain/5/device/vbd/51712/state", b"1")
    snap, calls = run(xs_conn, flap)
    assert (snap.unsettled, snap.attempts) == (frozenset(), 1)


def test_one_owner_that_keeps_changing_is_reported_alone_after_bounded_rereads(xs_conn, xs_client, nodes):
    snap, calls = run(xs_conn, lambda n: xs_client.write(b"/local/domain/0/backend/vbd/5/51712/state",
                                                         str(n % 7).encode()), owner_retries=2, owner_window=0)
    assert snap.unsettled == frozenset({5})
    assert snap.attempts == len(calls) == 3
    # guest 7's reads (and the shared ones) in the returned view are one state of xenstore
    assert snap.value["/local/domain/0/backend/vbd/7/51712/state"] == "4"


def test_an_owner_changing_for_part_of_the_window_settles(xs_conn, xs_client, nodes):
    """A backend finishing its handshake changes its nodes for a while, then stops: more re-reads
    than owner_retries, inside the window, and the view settles."""
    deadline = []

    def busy_for_a_while(n):
        import time
        if not deadline:
            deadline.append(time.monotonic() + 0.3)
        if time.monotonic() < deadline[0]:
            xs_client.write(b"/local/domain/0/backend/vbd/5/51712/state", str(n % 7).encode())
    snap, calls = run(xs_conn, busy_for_a_while, owner_retries=2, owner_window=5.0)
    assert snap.unsettled == frozenset()
    assert len(calls) > 3


def test_an_owner_that_keeps_changing_is_reread_for_the_whole_window(xs_conn, xs_client, nodes):
    import time
    started = time.monotonic()
    snap, calls = run(xs_conn, lambda n: xs_client.write(b"/local/domain/0/backend/vbd/5/51712/state",
                                                         str(n % 7).encode()), owner_retries=2, owner_window=0.5)
    assert snap.unsettled == frozenset({5})
    assert time.monotonic() - started >= 0.5
    assert len(calls) > 3


def test_an_owner_that_settles_is_reread_once(xs_conn, xs_client, nodes):
    def once(n):
        if n == 1:
            xs_client.write(b"/libxl/7/device/vbd/51712/params", b"c")
    snap, calls = run(xs_conn, once)
    assert (snap.unsettled, snap.attempts) == (frozenset(), 2)
    assert snap.value["/libxl/7/device/vbd/51712/params"] == "c"


def test_shared_nodes_keep_the_host_wide_guarantee(xs_conn, xs_client, nodes):
    with pytest.raises(XenstoreConflict, match=r"still changing after 3 attempts"):
        run(xs_conn, lambda n: xs_client.write(b"/local/domain/7/name", str(n).encode()), max_retries=2)
