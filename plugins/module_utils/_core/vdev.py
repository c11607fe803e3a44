# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Virtual device names (vdevs) <-> virtual-device numbers (devids), as libxl 4.17 computes them.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

References: xen-vbd-interface(7); libxl's `libxl__device_disk_dev_number` and
`libxl__devid_to_vdev` (tools/libs/light/libxl_device.c); docs/XENSTORE-LAYOUT.md §2.

Only the strict spellings are accepted (§2.7): `xvd<letters>[<partition>]`, `d<disk>p<partition>`,
`hd[a-d][<partition>]`, `sd[a-p][<partition>]` and a plain device number (decimal, or hexadecimal
with `0x`). Numbers are plain decimal without a sign, blanks or leading zeros. libxl also takes
sloppy spellings (`xvda+1`, `d010p0` read as octal, `xvd` giving a negative devid); those are
refused here with a message that says why. On everything accepted, the number is libxl's.
"""

from __future__ import annotations

import re

from ansible_collections.xen.disks.plugins.module_utils._core.text import bounded_int, shown

XVD_MAJOR = 202
EXTENDED = 1 << 28
MAX_XVD_DISK = (1 << 20) - 1
MAX_XVD_PARTITION = 255
SMALL_LIMIT = 15          # disk and partition both <= 15 fit the major-202 form
INT_MAX = 2147483647

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DECIMAL = r"(?:0|[1-9][0-9]*)"
_NAMED = re.compile(r"(xvd|hd|sd)([a-z]+)([0-9]*)\Z")
_DISK_PART = re.compile(r"d(%s)p(%s)\Z" % (_DECIMAL, _DECIMAL))
_NUMBER = re.compile(r"(?:%s|0[xX][0-9a-fA-F]+)\Z" % _DECIMAL)

# per prefix: highest disk index, highest partition
_LIMITS = {"xvd": (MAX_XVD_DISK, MAX_XVD_PARTITION), "hd": (3, 63), "sd": (15, 15)}


class VdevError(ValueError):
    """A vdev libxl would not accept (or accepts only in a sloppy spelling)."""

    def __init__(self, vdev, reason):
        self.vdev = vdev
        self.reason = reason
        super().__init__("invalid vdev %s: %s" % (_quote(vdev), reason))


def _quote(value):
    return shown(value)


def _number_text(digits):
    """Digits for a message (a number too long to repeat is described)."""
    return digits if len(digits) <= 20 else "of %d digits" % len(digits)


def letters_to_index(letters: str) -> int:
    """Bijective base 26: a=0 ... z=25, aa=26 ... (the disk index of an xvd/hd/sd name)."""
    index = -1
    for char in letters:
        index = (index + 1) * 26 + (ord(char) - 97)
    return index


def index_to_letters(index: int) -> str:
    """Inverse of letters_to_index (libxl's encode_disk_name)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = _LETTERS[rest] + letters
    return letters


def _xvd_number(disk: int, partition: int) -> int:
    if disk <= SMALL_LIMIT and partition <= SMALL_LIMIT:
        return (XVD_MAJOR << 8) | (disk << 4) | partition
    return EXTENDED | (disk << 8) | partition


def vdev_to_devid(vdev: str) -> int:
    """The device number libxl gives `vdev` (strict spellings only); VdevError otherwise."""
    if not isinstance(vdev, str):
        raise VdevError(vdev, "a vdev is a string, not %s" % type(vdev).__name__)
    match = _NAMED.match(vdev)
    if match:
        prefix, letters, partition_text = match.groups()
        max_disk, max_partition = _LIMITS[prefix]
        if len(letters) > 5:  # more letters than 2**20 disks need; avoids huge numbers
            raise VdevError(vdev, "disk letters beyond %s" % (prefix + index_to_letters(max_disk)))
        disk = letters_to_index(letters)
        if disk > max_disk:
            raise VdevError(vdev, "disk letters beyond %s" % (prefix + index_to_letters(max_disk)))
        if partition_text.startswith("0"):
            raise VdevError(vdev, "a partition number has no leading zero (the whole disk has none)")
        partition = bounded_int(partition_text, max_partition) if partition_text else 0
        if partition is None:
            raise VdevError(vdev, "partition %s is above %d" % (_number_text(partition_text), max_partition))
        if prefix == "xvd":
            return _xvd_number(disk, partition)
        if prefix == "hd":
            return ((3 if disk < 2 else 22) << 8) | ((disk & 1) << 6) | partition
        return (8 << 8) | (disk << 4) | partition
    match = _DISK_PART.match(vdev)
    if match:
        disk = bounded_int(match.group(1), MAX_XVD_DISK)
        partition = bounded_int(match.group(2), MAX_XVD_PARTITION)
        if disk is None:
            raise VdevError(vdev, "disk %s is above %d" % (_number_text(match.group(1)), MAX_XVD_DISK))
        if partition is None:
            raise VdevError(vdev, "partition %s is above %d" % (_number_text(match.group(2)), MAX_XVD_PARTITION))
        return _xvd_number(disk, partition)
    if _NUMBER.match(vdev):
        hexadecimal = vdev[:2] in ("0x", "0X")
        number = bounded_int(vdev[2:], INT_MAX, 16) if hexadecimal else bounded_int(vdev, INT_MAX)
        if number is None:
            raise VdevError(vdev, "device number above %d" % INT_MAX)
        return number
    raise VdevError(vdev, "expected xvd<letters>[<partition>], d<disk>p<partition>, "
                          "hd[a-d][<partition>], sd[a-p][<partition>] or a device number")


def devid_to_vdev(devid: int) -> str:
    """libxl__devid_to_vdev: the xvd name of a device number (the major is ignored)."""
    if isinstance(devid, bool) or not isinstance(devid, int) or not 0 <= devid <= INT_MAX:
        raise VdevError(devid, "a device number is an integer from 0 to %d" % INT_MAX)
    if devid & EXTENDED:
        minor, partitions = devid & ~EXTENDED, 256
    else:
        minor, partitions = devid & 0xFF, 16
    disk, partition = divmod(minor, partitions)
    return "xvd" + index_to_letters(disk) + (str(partition) if partition else "")


def same_device(vdev_a: str, vdev_b: str) -> bool:
    """True when two vdevs name the same device (same devid, e.g. `xvda` and `d0p0`)."""
    return vdev_to_devid(vdev_a) == vdev_to_devid(vdev_b)
