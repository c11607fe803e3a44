# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The loop device adapter: the only code that asks the kernel about loop devices or runs losetup.

Private to the xen.disks collection: no compatibility promise.

Xen's block hotplug script attaches a file target of a `phy` disk to a loop device, and blkback
serves that device: after the file grows, `losetup -c` makes the loop device (and then blkback,
which republishes `sectors`) see the new size.
"""

from __future__ import annotations

import os
import re
import subprocess

LOSETUP = "losetup"
_LOOP_RE = re.compile(r"^/dev/loop(\d+)$")


class LoopError(Exception):
    """losetup failed, or the device is not the loop device of the file."""


def backing_file(device):
    """The file a loop device (`/dev/loopN`) serves, None when it is no loop device or is free."""
    match = _LOOP_RE.match(device or "")
    if not match:
        return None
    try:
        with open("/sys/block/loop%s/loop/backing_file" % match.group(1), "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape").rstrip("\n")
    except OSError:
        return None


def refresh(device, path):
    """`losetup -c device`, after checking that the loop device serves `path`; its new size."""
    served = backing_file(device)
    if served is None or os.path.realpath(served) != os.path.realpath(path):
        raise LoopError("%s is not the loop device of %s (it serves %s)" % (device, path, served or "nothing"))
    try:
        proc = subprocess.run([LOSETUP, "-c", device], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoopError("losetup -c %s: %s" % (device, exc)) from None
    if proc.returncode != 0:
        raise LoopError("losetup -c %s: %s" % (device, proc.stdout.decode("utf-8", "replace").strip()))
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
