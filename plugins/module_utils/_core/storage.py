# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage behind a disk: declared size, creation, growth and removal of file images, as values.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O): the
caller inspects images (`_io.qemu_img.inspect`) and passes the facts in; `plan_image` decides what to
do as an `ImageStep` that `_runs.images` executes through `_io.qemu_img`.

- `parse_size(value)`: bytes of `20G`, `512MiB`, `1.5T`, `1048576`. K/M/G/T/P/E and KiB...EiB are
  powers of 1024 (as qemu-img and xl read them), KB/MB/GB/TB/PB/EB powers of 1000 (SI); rounded up to
  whole 512-byte sectors, as qemu-img does.
- `split_storage(item)`: a disk dict's storage keys apart from its xl options.
- `storage_spec(storage, disk, label)`: the checked `ImageSpec` of a disk, or located errors.
- `plan_image(spec, facts, attached)`: create / grow / leave / shrink / refuse, as an `ImageStep`.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Optional

from ansible_collections.xen.disks.plugins.module_utils._core.text import shown, text_problem

STORAGE_KEYS = ("size", "create", "preallocation", "backing_file", "backing_format", "mode", "owner",
                "group", "allow_shrink", "format_mismatch", "remove_storage")
PREALLOCATIONS = ("off", "metadata", "falloc", "full")
MISMATCH_POLICIES = ("error", "ignore")
# xl format -> qemu-img format of the images this module creates and grows
CREATABLE = {"raw": "raw", "qcow2": "qcow2", "vhd": "vpc"}
# what qemu-img accepts for each format's preallocation (qemu 7.2)
PREALLOCATION_OF = {"raw": PREALLOCATIONS[:1] + PREALLOCATIONS[2:], "qcow2": PREALLOCATIONS,
                    "vpc": ("off",)}
BACKING_FORMATS = ("raw", "qcow2", "vpc", "vhdx", "qed", "qcow")
SECTOR = 512
MAX_SIZE = (1 << 63) - SECTOR  # qemu-img's limit (INT64_MAX) to whole sectors
_UNITS = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _UNITS[_letter] = 1024 ** _power
    _UNITS[_letter + "ib"] = 1024 ** _power
    _UNITS[_letter + "b"] = 1000 ** _power
_SIZE_RE = re.compile(r"^\s*([+-]?)\s*(\d{1,30}(?:\.\d{1,30})?|\.\d{1,30})\s*([A-Za-z]{0,3})\s*$")

CREATE, GROW, LEAVE, SHRINK = "create", "grow", "unchanged", "shrink"


class SizeError(ValueError):
    """A size that is not a number of bytes this module can give an image."""


def parse_size(value):
    """Bytes of a declared size (int, or text with an optional unit); SizeError says why not."""
    if isinstance(value, bool):
        raise SizeError("a size, not a boolean")
    if isinstance(value, int):
        number = Decimal(value) if value.bit_length() < 80 else Decimal(MAX_SIZE + 1)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise SizeError("%r is not a size" % value)
        number = Decimal(repr(value)) if abs(value) < 1e30 else Decimal(MAX_SIZE + 1)
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise SizeError("%s is not a size (a number of bytes, or a number and a unit: 20G, 512MiB, "
                            "1.5T, 100GB)" % shown(value))
        sign, digits, unit = match.groups()
        factor = _UNITS.get(unit.lower())
        if factor is None:
            raise SizeError("%s: unknown unit %r (B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB are powers of "
                            "1024; KB, MB, GB, TB, PB, EB powers of 1000)" % (shown(value), unit))
        try:
            number = Decimal(digits) * factor
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            raise SizeError("%s is not a size" % shown(value)) from None
        if sign == "-":
            number = -number
    else:
        raise SizeError("a size (a number of bytes or text such as 20G), not %s" % type(value).__name__)
    if number < 0:
        raise SizeError("%s: a size cannot be negative" % shown(value))
    if number != number.to_integral_value():
        raise SizeError("%s is not a whole number of bytes (%s)" % (shown(value), number))
    size = int(number)
    if size > MAX_SIZE:
        raise SizeError("%s is above the largest image size qemu-img can make (%d bytes, 8 EiB)"
                        % (shown(value), MAX_SIZE))
    if size == 0:
        raise SizeError("%s: an image needs at least one %d-byte sector" % (shown(value), SECTOR))
    return -(-size // SECTOR) * SECTOR  # whole sectors, rounded up as qemu-img does


def human_size(size):
    """`20 GiB`, `1.5 TiB`, `512 B`: a byte count for messages."""
    if size is None:
        return "unknown"
    for unit, power in (("EiB", 6), ("PiB", 5), ("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if size >= 1024 ** power:
            text = ("%.2f" % (size / 1024 ** power)).rstrip("0").rstrip(".")
            return "%s %s" % (text, unit)
    return "%d B" % size


def split_storage(item):
    """(the disk without storage keys, {storage key: value}) of a declared disk item (only a dict
    has storage keys; `-` spellings are taken as `_`)."""
    if not isinstance(item, dict):
        return item, {}
    disk, storage = {}, {}
    for key, value in item.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name in STORAGE_KEYS:
            storage[name] = value
        else:
            disk[key] = value
    return disk, storage


@dataclass(frozen=True)
class ImageSpec:
    """A disk's checked storage options (`size` in bytes, None: not declared)."""

    label: str
    path: str
    format: str                      # the xl format
    size: Optional[int] = None
    create: bool = False
    preallocation: Optional[str] = None
    backing_file: Optional[str] = None
    backing_format: Optional[str] = None
    mode: Optional[int] = None
    owner: Optional[str] = None
    group: Optional[str] = None
    allow_shrink: bool = False
    format_mismatch: str = "error"
    remove_storage: bool = False

    @property
    def qemu_format(self):
        return CREATABLE.get(self.format, self.format)

    @property
    def manages_image(self):
        """Whether the module looks at this image at all (else it is left to the user)."""
        return self.size is not None or self.create or self.mode is not None or self.owner is not None \
            or self.group is not None or self.remove_storage or self.backing_file is not None


def _mode_of(value):
    if isinstance(value, bool):
        raise ValueError("an octal mode such as '0640', not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.match(r"^0?[0-7]{3,4}$", value):
        number = int(value, 8)
    else:
        raise ValueError("%s is not an octal mode such as '0640' (quote it in YAML)" % shown(value))
    if not 0 <= number <= 0o7777:
        raise ValueError("%s is not a file mode (0 to 07777)" % shown(value))
    return number


def storage_spec(storage, disk, label, *, file_target=True):
    """(ImageSpec or None, [errors]) of one disk's storage keys. `disk` is the parsed Disk; a disk
    with no storage keys gives (None, [])."""
    if not storage:
        return None, []
    errors = []

    def bad(key, message):
        errors.append("%s.%s: %s" % (label, key, message))

    def boolean(key, default=False):
        value = storage.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            bad(key, "%s is not a boolean" % shown(value))
            return default
        return value

    def text(key):
        value = storage.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            bad(key, "%s is not a non-empty string" % shown(value))
            return None
        problem = text_problem(value)
        if problem:
            bad(key, problem)
            return None
        return value

    size = None
    if storage.get("size") is not None:
        try:
            size = parse_size(storage["size"])
        except SizeError as exc:
            bad("size", str(exc))
    create = boolean("create", default=storage.get("size") is not None or storage.get("backing_file") is not None)
    allow_shrink = boolean("allow_shrink")
    remove_storage = boolean("remove_storage")
    preallocation = text("preallocation")
    backing_file = text("backing_file")
    backing_format = text("backing_format")
    owner, group = text("owner"), text("group")
    mismatch = storage.get("format_mismatch")
    if mismatch is None:
        mismatch = "error"
    elif mismatch not in MISMATCH_POLICIES:
        bad("format_mismatch", "%s is not one of %s" % (shown(mismatch), ", ".join(MISMATCH_POLICIES)))
        mismatch = "error"
    mode = None
    if storage.get("mode") is not None:
        try:
            mode = _mode_of(storage["mode"])
        except ValueError as exc:
            bad("mode", str(exc))

    target = disk.target
    fmt = disk.effective_format
    if not target or fmt == "empty":
        errors.append("%s: storage options (%s) need a target file" % (label, ", ".join(sorted(storage))))
        return None, errors
    if not target.startswith("/"):
        errors.append("%s.target: %s is not an absolute path: the module creates and grows only files it can "
                      "name without a working directory" % (label, shown(target)))
    if not file_target:
        errors.append("%s: storage options (%s) are for file targets: %s is a block device (LVM volumes: "
                      "community.general.lvol before xen_disk)" % (label, ", ".join(sorted(storage)), target))
    qemu_format = CREATABLE.get(fmt)
    if (create or size is not None) and qemu_format is None:
        bad("format", "%s images are not created or grown by this module (raw, qcow2 and vhd are)" % fmt)
    if preallocation is not None:
        if preallocation not in PREALLOCATIONS:
            bad("preallocation", "%s is not one of %s" % (shown(preallocation), ", ".join(PREALLOCATIONS)))
        elif qemu_format and preallocation not in PREALLOCATION_OF[qemu_format]:
            bad("preallocation", "qemu-img cannot preallocate %s images with %s (it can: %s)"
                % (fmt, preallocation, ", ".join(PREALLOCATION_OF[qemu_format])))
    if backing_file is not None:
        if fmt != "qcow2":
            bad("backing_file", "only qcow2 overlays have a backing file (format is %s)" % fmt)
        if backing_format is None:
            bad("backing_format", "required with backing_file (qemu-img must not guess the backing file's "
                "format: a guest-written header would choose it)")
        if posixpath.normpath(backing_file) == posixpath.normpath(target):
            bad("backing_file", "an image cannot be its own backing file")
        if preallocation not in (None, "off", "metadata"):
            bad("preallocation", "an overlay is preallocated with off or metadata only")
    if backing_format is not None:
        if backing_file is None:
            bad("backing_format", "given without backing_file")
        elif backing_format not in BACKING_FORMATS:
            bad("backing_format", "%s is not one of %s" % (shown(backing_format), ", ".join(BACKING_FORMATS)))
    if create and size is None and backing_file is None and storage.get("size") is None:
        bad("size", "required to create %s (create: true): the size of the new image" % target)
    if errors:
        return None, errors
    return ImageSpec(label=label, path=target, format=fmt, size=size, create=create,
                     preallocation=preallocation, backing_file=backing_file, backing_format=backing_format,
                     mode=mode, owner=owner, group=group, allow_shrink=allow_shrink, format_mismatch=mismatch,
                     remove_storage=remove_storage), []


@dataclass(frozen=True)
class ImageFacts:
    """What the adapter found at a path (`kind`: file, directory, block, other, missing)."""

    path: str
    kind: str
    format: Optional[str] = None           # qemu-img's name (raw, qcow2, vpc, vhdx, ...)
    virtual_size: Optional[int] = None
    actual_size: Optional[int] = None
    backing_file: Optional[str] = None
    mode: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    parent_kind: str = "directory"         # of the directory that would hold a new image


@dataclass(frozen=True)
class ImageStep:
    """What to do with one image; `action` is create, grow, shrink or unchanged."""

    spec: ImageSpec
    action: str
    size_before: Optional[int] = None
    size_after: Optional[int] = None
    attributes: tuple = ()                 # ("mode", 0o640) / ("uid", 0) / ("gid", 0) to set
    warnings: tuple = field(default=())

    @property
    def changed(self):
        return self.action != LEAVE or bool(self.attributes)

    def describe(self):
        spec = self.spec
        if self.action == CREATE:
            text = "create %s image %s of %s" % (spec.format, spec.path, human_size(self.size_after)
                                                 if self.size_after else "its backing file's size")
            if spec.backing_file:
                text += " over %s (%s)" % (spec.backing_file, spec.backing_format)
            if spec.preallocation and spec.preallocation != "off":
                text += ", preallocation=%s" % spec.preallocation
        elif self.action in (GROW, SHRINK):
            text = "%s %s from %s to %s" % (self.action, spec.path, human_size(self.size_before),
                                            human_size(self.size_after))
        else:
            text = "%s: %s" % (spec.path, human_size(self.size_before))
        for name, value in self.attributes:
            text += ", %s %s" % (name, ("%04o" % value) if name == "mode" else value)
        return text


PATH_MAX = 4096  # a path in a message is shown whole (a qcow2 header's backing name has at most 1023 bytes)


def backing_path(image, backing_file):
    """The backing file a qcow2 header names, as a normalised path (a relative name is relative to
    the overlay's directory, as QEMU opens it); None for no backing file."""
    if not backing_file:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(image), backing_file))


def format_mismatch(declared, found):
    """The message when an image's header says another format than the declaration, or None."""
    wanted = CREATABLE.get(declared, declared)
    if found is None or found == wanted:
        return None
    return ("declared %s but the file is a %s image%s" % (
        declared, found, "; the guest writes a raw image's first sector, so a raw image that reads as "
        "another format may have been written by the guest to make dom0 open a file of its choosing"
        if declared == "raw" else ""))


def plan_image(spec, facts, *, attached=False, uid=None, gid=None):
    """The ImageStep of one declared image, or raises ValueError with a located message.

    `facts`: ImageFacts of the path; `attached`: the disk is attached to its guest now (a shrink
    is then refused whatever `allow_shrink` says); `uid`/`gid`: the resolved owner and group."""
    where = spec.label
    if facts.kind == "directory":
        raise ValueError("%s.target: %s is a directory, not an image file" % (where, spec.path))
    if facts.kind in ("block", "other"):
        raise ValueError("%s.target: %s is a %s, not an image file: storage options are for files (block devices and "
                         "LVM volumes are not created or grown here: community.general.lvol before xen_disk)"
                         % (where, spec.path, "block device" if facts.kind == "block" else "special file"))
    if facts.kind == "missing":
        if facts.parent_kind != "directory":
            raise ValueError("%s.target: %s cannot be created: its directory %s %s"
                             % (where, spec.path, posixpath.dirname(spec.path),
                                "does not exist" if facts.parent_kind == "missing" else "is not a directory"))
        if not spec.create:
            raise ValueError("%s.target: %s does not exist (create: false)" % (where, spec.path))
        attributes = tuple((n, v) for n, v in (("mode", spec.mode), ("uid", uid), ("gid", gid)) if v is not None)
        return ImageStep(spec, CREATE, None, spec.size, attributes)
    mismatch = format_mismatch(spec.format, facts.format)
    warnings = ()
    if mismatch:
        if spec.format_mismatch != "ignore":
            raise ValueError("%s.format: %s: %s (format_mismatch: ignore accepts it; the image is then "
                             "neither grown nor shrunk)" % (where, spec.path, mismatch))
        warnings = ("%s: %s: %s (format_mismatch: ignore): its size is left alone" % (where, spec.path, mismatch),)
    if spec.backing_file is not None and not mismatch and facts.format == "qcow2" \
            and backing_path(spec.path, facts.backing_file) != posixpath.normpath(spec.backing_file):
        warnings += ("%s.backing_file: %s has %s, not the declared %s: left as it is (qemu-img rebase is not "
                     "run: a wrong backing file would corrupt the guest's data)"
                     % (where, spec.path, "the backing file %s" % shown(facts.backing_file, PATH_MAX)
                        if facts.backing_file else "no backing file", shown(spec.backing_file, PATH_MAX)),)
    attributes = []
    for name, wanted, found in (("mode", spec.mode, facts.mode), ("uid", uid, facts.uid), ("gid", gid, facts.gid)):
        if wanted is not None and wanted != found:
            attributes.append((name, wanted))
    before = facts.virtual_size
    if spec.size is None or mismatch or before is None or spec.size == before:
        return ImageStep(spec, LEAVE, before, before, tuple(attributes), warnings)
    if spec.size > before and spec.qemu_format == "vpc":
        raise ValueError("%s.size: %s is %s, smaller than the declared %s: qemu-img cannot resize vhd images "
                         "(convert it, or declare its size)" % (where, spec.path, human_size(before), human_size(spec.size)))
    if spec.size > before:
        return ImageStep(spec, GROW, before, spec.size, tuple(attributes), warnings)
    if spec.qemu_format == "vpc":
        # qemu-img rounds a VHD up to its CHS geometry: a larger image is the declared one
        return ImageStep(spec, LEAVE, before, before, tuple(attributes), warnings)
    if not spec.allow_shrink:
        raise ValueError("%s.size: %s is %s (%d bytes), larger than the declared %s (%d bytes): images are never "
                         "shrunk (allow_shrink: true shrinks a detached disk; the data past the new end is lost)"
                         % (where, spec.path, human_size(before), before, human_size(spec.size), spec.size))
    if attached:
        raise ValueError("%s.size: %s is attached to its guest: a shrink is refused even with allow_shrink (the "
                         "guest's file system would lose its end while it uses it)" % (where, spec.path))
    return ImageStep(spec, SHRINK, before, spec.size, tuple(attributes), warnings)


def emulated_disk_index(vdev, devid):
    """libxl__device_disk_dev_number's `disk` (the emulated disk number) of a vdev, or None."""
    major = (devid >> 8) & 0xFFFFF
    if devid & (1 << 28):
        return (devid & ((1 << 28) - 1)) >> 8
    if major == 202:
        return (devid & 0xFF) >> 4
    if major == 3:
        return (devid & 0xFF) // 64
    if major == 22:
        return 2 + (devid & 0xFF) // 64
    if major == 8 and vdev.startswith("sd"):
        return (devid & 0xFF) >> 4
    return None


def emulated_drive_id(vdev, devid, hdtype="ide"):
    """The QEMU drive id libxl 4.17 gives an HVM guest's emulated hard disk (libxl_dm.c, qemu-xen,
    no COLO): `scsi0-hd<disk>` for sd*, `ahcidisk-<disk>` (hdtype ahci, disk < 6), else QEMU's own
    name of `if=ide,index=<disk>` (`ide<bus>-hd<unit>`, disk < 4); None when QEMU has no such drive."""
    disk = emulated_disk_index(vdev, devid)
    if disk is None:
        return None
    if vdev.startswith("sd"):
        return "scsi0-hd%d" % disk
    if hdtype == "ahci":
        return "ahcidisk-%d" % disk if disk < 6 else None
    if disk < 4:
        return "ide%d-hd%d" % (disk // 2, disk % 2)
    return None
