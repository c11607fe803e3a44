# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image adapter: the only code that runs qemu-img or reads an image's header.

Private to the xen.disks collection: no compatibility promise.

- `inspect(path)`: `_storage.ImageFacts` from stat() and the first sector (raw and qcow2 need no
  qemu-img; vpc/vhdx/qed run `qemu-img info` once, with the format the header says).
- `info(path, fmt)`: `qemu-img info --output=json --backing-chain -U -f fmt` (one run per file; the
  format is given, never probed, so a guest-written header cannot choose what dom0 opens).
- `create(...)`: `qemu-img create` to a temporary name in the same directory, mode and owner set on
  it, then linked to the real name (which fails if the name appeared meanwhile: never overwritten)
  and the temporary name removed; a failure leaves no file behind.
- `resize(path, fmt, size, ...)`, `block_size(path)`, `remove(path)`.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess

from ansible_collections.xen.disks.plugins.module_utils._core.storage import ImageFacts

QEMU_IMG = "qemu-img"
QCOW_MAGIC = b"QFI\xfb"
QED_MAGIC = b"QED\x00"
VHDX_MAGIC = b"vhdxfile"
VPC_MAGIC = b"conectix"
TIMEOUT = 600.0


class ImageError(Exception):
    """qemu-img failed, or an image could not be read or written; `str()` says which and why."""


def _kind(mode):
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISBLK(mode):
        return "block"
    return "other"


def _parent_kind(path):
    try:
        return "directory" if stat.S_ISDIR(os.stat(os.path.dirname(path) or ".").st_mode) else "other"
    except (FileNotFoundError, NotADirectoryError):
        return "missing"


def header_format(head, tail=b""):
    """qemu-img's format name of an image from its first sector (and, for fixed VHD, its last
    512 bytes); raw when no known magic is there."""
    if head[:4] == QCOW_MAGIC:
        version = struct.unpack(">I", head[4:8])[0] if len(head) >= 8 else 0
        return "qcow" if version == 1 else "qcow2"
    if head[:4] == QED_MAGIC:
        return "qed"
    if head[:8] == VHDX_MAGIC:
        return "vhdx"
    if head[:8] == VPC_MAGIC or tail[:8] == VPC_MAGIC:
        return "vpc"
    return "raw"


def probe_format(path):
    """The format an existing regular file's header says (no qemu-img run), or None for anything
    else (missing, a directory, a device, unreadable: the declaration's checks report those)."""
    try:
        with open(path, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            head = handle.read(512)
            tail = b""
            size = os.fstat(handle.fileno()).st_size
            if head[:8] != VPC_MAGIC and size >= 1024:
                handle.seek(size - 512)
                tail = handle.read(512)
    except OSError:
        return None
    return header_format(head, tail)


def _qcow2_facts(head, handle):
    """(virtual size, backing file name or None) from a qcow2 header (QEMU's docs/interop/qcow2.txt)."""
    backing_offset, backing_size, _bits, size = struct.unpack(">QIIQ", head[8:32])
    backing = None
    if backing_offset and 0 < backing_size <= 1023:
        handle.seek(backing_offset)
        backing = handle.read(backing_size).decode("utf-8", "replace")
    return size, backing


def inspect(path):
    """ImageFacts of `path` (follows symlinks, as libxl and QEMU do)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ImageFacts(path, "missing", parent_kind=_parent_kind(path))
    except OSError as exc:
        raise ImageError("%s: %s" % (path, exc.strerror)) from None
    kind = _kind(st.st_mode)
    common = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind == "block":
        return ImageFacts(path, kind, virtual_size=block_size(path), **common)
    if kind != "file":
        return ImageFacts(path, kind, **common)
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
            tail = b""
            if head[:8] != VPC_MAGIC and st.st_size >= 1024:
                handle.seek(st.st_size - 512)
                tail = handle.read(512)
            fmt = header_format(head, tail)
            backing = None
            if fmt == "qcow2" and len(head) >= 32:
                size, backing = _qcow2_facts(head, handle)
            elif fmt == "raw":
                size = st.st_size
            else:
                size = None
    except OSError as exc:
        raise ImageError("%s: %s" % (path, exc.strerror)) from None
    if size is None:
        size = info(path, fmt)[0].get("virtual-size")
    return ImageFacts(path, kind, format=fmt, virtual_size=size, actual_size=st.st_blocks * 512,
                      backing_file=backing, **common)


def _run(args, what):
    try:
        proc = subprocess.run([QEMU_IMG] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise ImageError("%s: qemu-img is not installed on this host (Debian: qemu-utils)" % what) from None
    except subprocess.TimeoutExpired:
        raise ImageError("%s: qemu-img did not finish within %g s" % (what, TIMEOUT)) from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip() or "exit status %d" % proc.returncode
        raise ImageError("%s: %s" % (what, message[-2000:]))
    return proc.stdout


def info(path, fmt):
    """The `qemu-img info` entries of `path` and its backing chain, the top image first."""
    out = _run(["info", "--output=json", "--backing-chain", "-U", "-f", fmt, path], "qemu-img info %s" % path)
    data = json.loads(out.decode("utf-8", "replace"))
    return data if isinstance(data, list) else [data]


def create(path, fmt, size, *, preallocation=None, backing_file=None, backing_format=None, mode=None,
           uid=None, gid=None):
    """A new image at `path` (which must not exist), made under a temporary name first."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, ".%s.xen-disks-%d.tmp" % (name, os.getpid()))
    args = ["create", "-q", "-f", fmt]
    if preallocation and preallocation != "off":
        args += ["-o", "preallocation=%s" % preallocation]
    if backing_file:
        args += ["-b", backing_file, "-F", backing_format]
    args.append(temporary)
    if size is not None:
        args.append(str(size))
    try:
        _run(args, "qemu-img create %s" % path)
        if mode is not None:
            os.chmod(temporary, mode)
        if uid is not None or gid is not None:
            os.chown(temporary, -1 if uid is None else uid, -1 if gid is None else gid)
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise ImageError("%s: appeared while this run created it: left as it is" % path) from None
        except OSError as exc:
            raise ImageError("%s: %s" % (path, exc.strerror)) from None
    except OSError as exc:
        raise ImageError("%s: %s" % (path, exc.strerror)) from None
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


def resize(path, fmt, size, *, shrink=False, preallocation=None):
    """Set the virtual size of `path` (a growth unless `shrink`)."""
    args = ["resize", "-q", "-f", fmt]
    if shrink:
        args.append("--shrink")
    if preallocation and preallocation != "off" and not shrink:
        args.append("--preallocation=%s" % preallocation)
    _run(args + [path, str(size)], "qemu-img resize %s" % path)


def set_attributes(path, mode=None, uid=None, gid=None):
    try:
        if mode is not None:
            os.chmod(path, mode)
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    except OSError as exc:
        raise ImageError("%s: %s" % (path, exc.strerror)) from None


def block_size(path):
    """Bytes of a block device (its end, as the kernel reports it now)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ImageError("%s: %s" % (path, exc.strerror)) from None
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ImageError("%s: %s" % (path, exc.strerror)) from None
