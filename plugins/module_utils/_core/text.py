# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input text as the parsers and messages may use it: bounded numbers, UTF-8, short quotes.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

- `bounded_int(digits, maximum, base=10)`: the number of a digit string, or None when it is above
  `maximum`, decided on the length first (Python refuses int() of more than 4,300 decimal digits,
  and converting is slow long before that).
- `text_problem(value)`: why a string cannot reach xenstore, libxl or a file name (a NUL ends a C
  string; a lone surrogate is no UTF-8), or None.
- `shown(value)`: a value quoted for a message, shortened when long (never str() of a huge int).
"""

from __future__ import annotations

SHOWN_LIMIT = 80


def bounded_int(digits, maximum, base=10):
    """int(digits, base) for a string of digits (no sign, no blanks), or None when above `maximum`."""
    significant = digits.lstrip("0")
    width = 0
    rest = maximum
    while rest:
        rest //= base
        width += 1
    if len(significant) > width:
        return None
    value = int(significant, base) if significant else 0
    return value if value <= maximum else None


def text_problem(value):
    """Why `value` cannot be a string of xenstore, libxl or the file system, or None."""
    nul = value.find("\0")
    if nul >= 0:
        return "a NUL character at offset %d (xl and libxl strings end there)" % nul
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return "not UTF-8 text: a lone surrogate %s at offset %d" % (
            ascii(value[exc.start])[1:-1], exc.start)
    return None


def shown(value, limit=SHOWN_LIMIT):
    """`value` for a message: repr of a string (shortened past `limit` characters), a number's
    digits (shortened the same way), the type name of anything else."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 3 * limit:
            return "an integer of about %d digits" % int(value.bit_length() * 0.30103)
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if len(value) > limit:
            return "%s... (%d characters)" % (ascii(value[:limit])[:-1], len(value))
        return ascii(value) if text_problem(value) else repr(value)
    return type(value).__name__
