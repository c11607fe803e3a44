# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_text: bounded numbers, text that can reach xenstore, values shown in messages."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.xen.disks.plugins.module_utils._core.text import bounded_int, shown, text_problem


@given(st.integers(0, 10 ** 30), st.integers(0, 10 ** 30), st.integers(0, 3))
def test_bounded_int_is_int_below_the_bound(value, maximum, zeros):
    digits = "0" * zeros + str(value)
    assert bounded_int(digits, maximum) == (value if value <= maximum else None)
    assert bounded_int("0" * zeros + format(value, "x"), maximum, 16) == (value if value <= maximum else None)


def test_bounded_int_never_converts_thousands_of_digits():
    assert bounded_int("9" * 100000, 2 ** 31) is None
    assert bounded_int("0" * 100000 + "7", 10) == 7
    assert bounded_int("", 5) == 0


@pytest.mark.parametrize("value, problem", [
    ("/x", None), ("é☃", None),
    ("/x\0y", "a NUL character at offset 2 (xl and libxl strings end there)"),
    ("ab\ud800", "not UTF-8 text: a lone surrogate \\ud800 at offset 2"),
])
def test_text_problem(value, problem):
    assert text_problem(value) == problem


def test_shown_is_short_and_safe():
    assert shown("xvda") == "'xvda'"
    assert shown(10 ** 5000) == "an integer of about 5000 digits"
    assert shown("a" * 1000) == "'" + "a" * 80 + "... (1000 characters)"
    assert shown("\ud800") == "'\\ud800'"
    assert shown([1]) == "list"
