# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vdev <-> devid: the worked examples and rules of docs/XENSTORE-LAYOUT.md §2.

(The same functions are checked against libxl's own code in tests/integration/test_xl_oracle.py.)
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.xen.disks.plugins.module_utils._core.vdev import (
    VdevError,
    devid_to_vdev,
    index_to_letters,
    letters_to_index,
    same_device,
    vdev_to_devid,
)

# §2.4, rows 1-25 (computed by the compiled 4.17 function)
WORKED_EXAMPLES = [
    ("xvda", 51712), ("xvdb", 51728), ("xvda1", 51713), ("xvdp15", 51967), ("xvdq", 268439552),
    ("xvda16", 268435472), ("xvdz", 268441856), ("xvdaa", 268442112), ("xvdtq37", 268572709),
    ("xvdzzz", 273114368), ("d0p0", 51712), ("d1p2", 51730), ("d16p0", 268439552),
    ("d536p37", 268572709), ("d1048575p255", 536870911), ("hda", 768), ("hdb3", 835), ("hdc", 5632),
    ("hdd63", 5759), ("sda", 2048), ("sdb3", 2067), ("sdp15", 2303), ("51712", 51712),
    ("0xca00", 51712), ("xvdbgqcv255", 536870911), ("0", 0), ("2147483647", 2147483647),
]


@pytest.mark.parametrize("vdev, devid", WORKED_EXAMPLES)
def test_worked_examples(vdev, devid):
    assert vdev_to_devid(vdev) == devid


NOT_A_FORM = ("expected xvd<letters>[<partition>], d<disk>p<partition>, hd[a-d][<partition>], "
              "sd[a-p][<partition>] or a device number")

REFUSED = [
    ("d1048576p0", "disk 1048576 is above 1048575"),
    ("d0p256", "partition 256 is above 255"),
    ("hde", "disk letters beyond hdd"),
    ("sdq", "disk letters beyond sdp"),
    ("xvdbgqcw", "disk letters beyond xvdbgqcv"),
    ("xvdaaaaaa", "disk letters beyond xvdbgqcv"),
    ("xvda256", "partition 256 is above 255"),
    ("hda64", "partition 64 is above 63"),
    ("sda16", "partition 16 is above 15"),
    ("xvda0", "a partition number has no leading zero (the whole disk has none)"),
    ("xvda01", "a partition number has no leading zero (the whole disk has none)"),
    ("2147483648", "device number above 2147483647"),
    # libxl takes these sloppy spellings (§2.3); we refuse them
    ("d0", NOT_A_FORM), ("xvd", NOT_A_FORM), ("", NOT_A_FORM), (" ", NOT_A_FORM), ("xvdA", NOT_A_FORM),
    ("xvda+1", NOT_A_FORM), ("xvda 1", NOT_A_FORM), ("d 2p 3", NOT_A_FORM), ("+7", NOT_A_FORM),
    ("-1", NOT_A_FORM), ("d-1p0", NOT_A_FORM), ("d0x10p0", NOT_A_FORM), ("d010p0", NOT_A_FORM),
    ("d0p00", NOT_A_FORM), ("0312", NOT_A_FORM), ("xvda\n", NOT_A_FORM),
]


@pytest.mark.parametrize("vdev, reason", REFUSED)
def test_refused_with_reason(vdev, reason):
    with pytest.raises(VdevError) as info:
        vdev_to_devid(vdev)
    assert str(info.value) == "invalid vdev %r: %s" % (vdev, reason)
    assert (info.value.vdev, info.value.reason) == (vdev, reason)


def test_refuses_non_strings():
    with pytest.raises(VdevError, match=r"^invalid vdev 51712: a vdev is a string, not int$"):
        vdev_to_devid(51712)


@pytest.mark.parametrize("devid, vdev", [
    (51712, "xvda"), (51713, "xvda1"), (51967, "xvdp15"), (268439552, "xvdq"), (268435472, "xvda16"),
    (536870911, "xvdbgqcv255"), (768, "xvda"), (5632, "xvda"), (2048, "xvda"), (0, "xvda"),
])
def test_devid_to_vdev(devid, vdev):
    """libxl__devid_to_vdev ignores the major: hd/sd numbers decode to xvd names (§2.5)."""
    assert devid_to_vdev(devid) == vdev


@pytest.mark.parametrize("devid", [-1, 2147483648, "51712", True, 1.5])
def test_devid_to_vdev_refuses(devid):
    with pytest.raises(VdevError, match=r"^invalid vdev .*: a device number is an integer from 0 to 2147483647$"):
        devid_to_vdev(devid)


@pytest.mark.parametrize("a, b, same", [
    ("xvda", "d0p0", True), ("xvda", "51712", True), ("xvda", "0xca00", True), ("xvdq", "d16p0", True),
    ("xvda", "xvdb", False), ("hda", "xvda", False), ("sda", "xvda", False), ("xvda1", "xvda", False),
])
def test_same_device(a, b, same):
    assert same_device(a, b) is same


def test_same_device_refuses_invalid():
    with pytest.raises(VdevError, match=r"^invalid vdev 'xvda0': "):
        same_device("xvda", "xvda0")


@given(st.integers(min_value=0, max_value=(1 << 20) - 1))
def test_letters_are_bijective_base_26(index):
    letters = index_to_letters(index)
    assert letters_to_index(letters) == index
    assert letters.isalpha() and letters.islower()


@given(st.integers(min_value=0, max_value=(1 << 20) - 1), st.integers(min_value=0, max_value=255))
def test_xvd_names_and_numbers_round_trip(disk, partition):
    vdev = "xvd" + index_to_letters(disk) + (str(partition) if partition else "")
    devid = vdev_to_devid(vdev)
    assert devid == vdev_to_devid("d%dp%d" % (disk, partition))
    assert devid_to_vdev(devid) == vdev
    small = disk <= 15 and partition <= 15
    assert (devid >> 8 == 202) if small else (devid >> 28 == 1)
