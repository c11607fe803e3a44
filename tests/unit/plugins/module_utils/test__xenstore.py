# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watch snapshot's check of events against what was read (pure part of the adapter; the
behaviour against the real xenstored is in tests/integration/test_xenstore_adapter.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.xen.disks.plugins.module_utils._io import xenstore as _xenstore
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import (
    _changed_since_read,
    _earliest_read_below,
    _Event,
)

# read sequence numbers as the router numbers answers: the watch's ack is 1, its registration
# event 2, then the reads
RECORD = {"/libxl/5/device/": 3, "/libxl/5/device/vbd/51712/dev": 4, "/local/domain/5/device/vbd/51712/state": 5}


def event(path, seq):
    return _Event(path.encode(), b"token", seq)


@pytest.mark.parametrize("events, changed", [
    ([], False),
    ([event("/", 2)], False),                                       # the registration event
    ([event("/libxl/5/device/vbd/51712/dev", 2)], False),           # a change before the read
    ([event("/libxl/5/device/vbd/51712/dev", 6)], True),            # a node read, after its read
    ([event("/libxl/5/device/vbd", 6)], True),                      # a child of a listed directory
    ([event("/libxl/5/device", 6)], True),                          # the listed directory itself
    ([event("/local/domain/5/device/vbd/51712", 6)], True),         # a directory above a node read
    ([event("/local/domain/5/device/vbd/51712/state", 5)], False),  # the read's own answer came after
    ([event("/local/domain/5/device/vbd/51712/ring-ref", 6)], False),  # not read
    ([event("/libxl/5/device/vbd/51712/dev/x", 6)], False),         # below a node read
    ([event("/", 2), event("/local/domain/7/memory/target", 6), event("/libxl/5", 7)], True),
])
def test_changed_since_read(events, changed):
    assert _changed_since_read(RECORD, events) is changed


def test_nothing_read_nothing_changed():
    assert _changed_since_read({}, [event("/", 2), event("/a", 3)]) is False


def test_events_before_the_first_read_build_nothing(monkeypatch):
    def must_not_build(_record):
        raise AssertionError("the map of reads was built")
    monkeypatch.setattr(_xenstore, "_earliest_read_below", must_not_build)
    assert _changed_since_read(RECORD, [event("/", 2), event("/libxl/5", 1)]) is False
    # direct hits are decided without it too
    assert _changed_since_read(RECORD, [event("/", 2), event("/libxl/5/device/vbd/51712/dev", 9)]) is True


def test_earliest_read_below():
    assert _earliest_read_below(RECORD) == {
        "/": 3, "/libxl": 3, "/libxl/5": 3, "/libxl/5/device": 3, "/libxl/5/device/vbd": 4,
        "/libxl/5/device/vbd/51712": 4, "/local": 5, "/local/domain": 5, "/local/domain/5": 5,
        "/local/domain/5/device": 5, "/local/domain/5/device/vbd": 5, "/local/domain/5/device/vbd/51712": 5}
    assert _earliest_read_below({"/": 4, "/a": 7}) == {"/": 4}  # a listing of "/" is keyed "/"


def _reference_below(record):
    """Straight from the definition: each node's earliest read strictly below it (a listing
    counts for the directory itself)."""
    below = {}
    for read_path, read_seq in record.items():
        node = read_path.rstrip("/") or "/"
        ancestors = [node] if read_path.endswith("/") else []
        while node != "/":
            node = node.rsplit("/", 1)[0] or "/"
            ancestors.append(node)
        for key in ancestors:
            below[key] = min(below.get(key, read_seq), read_seq)
    return below


PATHS = st.lists(st.sampled_from("abc"), max_size=4).map(lambda parts: "/" + "/".join(parts))


@given(st.dictionaries(st.tuples(PATHS, st.booleans()).map(lambda p: p[0] + "/" if p[1] and p[0] != "/" else p[0]),
                       st.integers(1, 50), max_size=12))
def test_earliest_read_below_whatever_the_order_of_reads(record):
    assert _earliest_read_below(record) == _reference_below(record)
