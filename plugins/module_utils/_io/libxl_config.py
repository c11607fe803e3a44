# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The adapter to libxl's domain configuration file and its locks (libxl 4.17).

Private to the xen.disks collection: no compatibility promise. Standard library only; the only
code that touches `<libxl_dir>/userdata-*` files. What the file holds and how it changes is pure
code in `_core.libxl_json`.

As libxl (libxl_dom.c, libxl_internal.c):
- paths: `<dir>/userdata-<wh>.<domid>.<uuid>.<userid>`, `wh` d (data), n (new data), l (lock);
  the uuid is the domain's (`/vm/<uuid>` in xenstore);
- store (libxl__userdata_store): the bytes written to the `n` file (O_RDWR|O_CREAT|O_TRUNC,
  0600), closed, renamed over the `d` file;
- the userdata lock `domain-userdata-lock` (libxl__lock_domain_userdata / libxl__lock_file),
  the device lock `libxl-device-changes-lock` (libxl__ev_devlock) and the QMP lock
  `qmp-socket-lock` (libxl__ev_qmplock, held while a QMP connection is open): open O_RDWR|O_CREAT
  0666, flock(LOCK_EX), then fstat(fd) against stat(path): another holder may have unlinked the
  file meanwhile, then it is tried again; once held, the domain must still exist. Release: the
  userdata lock unlinks then closes, the device lock unlinks, LOCK_UN, closes.
libxl waits for a lock without a limit; here the wait is bounded by `timeout` (then
LibxlLockTimeout), so a stuck holder cannot hang a run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time

DEFAULT_LIBXL_DIR = "/var/lib/xen"
CONFIG_USERID = "libxl-json"
USERDATA_LOCK = "domain-userdata-lock"
DEVICE_LOCK = "libxl-device-changes-lock"
QMP_LOCK = "qmp-socket-lock"
DEFAULT_LOCK_TIMEOUT = 60.0

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class LibxlFileError(Exception):
    """A libxl file could not be read, written or locked; `str()` says which and why."""


class LibxlLockTimeout(LibxlFileError):
    """A lock was not obtained in time (another toolstack process holds it)."""


def uuid_of_vm_path(vm_path):
    """The domain's uuid from `/local/domain/D/vm` (`/vm/<uuid>`), else None."""
    if not vm_path or not vm_path.startswith("/vm/"):
        return None
    uuid = vm_path[len("/vm/"):]
    return uuid.lower() if _UUID.match(uuid) else None


def userdata_path(directory, domid, uuid, userid, wh):
    """libxl__userdata_path."""
    return os.path.join(directory, "userdata-%s.%d.%s.%s" % (wh, domid, uuid, userid))


class DomainFiles:
    """One domain's configuration file and lock files under `directory`."""

    def __init__(self, directory, domid, uuid):
        self.directory = directory
        self.domid = domid
        self.uuid = uuid
        self.path = userdata_path(directory, domid, uuid, CONFIG_USERID, "d")
        self.new_path = userdata_path(directory, domid, uuid, CONFIG_USERID, "n")

    def lock_path(self, userid):
        return userdata_path(self.directory, self.domid, self.uuid, userid, "l")

    def read(self):
        """The file's bytes, or None when there is none (libxl: ERROR_JSON_CONFIG_EMPTY)."""
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LibxlFileError("cannot read %s: %s" % (self.path, exc.strerror)) from None

    def store(self, data):
        """libxl__userdata_store: write the `n` file, close it, rename it over the file."""
        try:
            fd = os.open(self.new_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(self.new_path, self.path)
        except OSError as exc:
            raise LibxlFileError("cannot write/rename %s for %s: %s"
                                 % (self.new_path, self.path, exc.strerror)) from None

    def userdata_lock(self, alive=None, timeout=DEFAULT_LOCK_TIMEOUT):
        return FileLock(self.lock_path(USERDATA_LOCK), alive, timeout, unlock_first=False)

    def device_lock(self, alive=None, timeout=DEFAULT_LOCK_TIMEOUT):
        return FileLock(self.lock_path(DEVICE_LOCK), alive, timeout, unlock_first=True)

    def qmp_lock(self, alive=None, timeout=DEFAULT_LOCK_TIMEOUT):
        """libxl__ev_qmp's lock, held while connected to the guest's QMP socket."""
        return FileLock(self.lock_path(QMP_LOCK), alive, timeout, unlock_first=True)


class FileLock:
    """An exclusive flock on a libxl lock file, taken and released as libxl does.

    `alive()` (optional) says whether the domain still exists once the lock is held; when it
    does not, the lock is released and LibxlFileError raised (libxl: ERROR_LOCK_FAIL)."""

    def __init__(self, path, alive=None, timeout=DEFAULT_LOCK_TIMEOUT, *, unlock_first=False):
        self.path = path
        self.alive = alive
        self.timeout = timeout
        self.unlock_first = unlock_first   # ev_slowlock: LOCK_UN before close
        self.fd = None
        self.waited = 0.0

    def acquire(self):
        start = time.monotonic()
        delay = 0.0005
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise LibxlFileError("cannot open lockfile %s: %s" % (self.path, exc.strerror)) from None
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                            raise LibxlFileError("cannot lock %s: %s" % (self.path, exc.strerror)) from None
                    if time.monotonic() - start > self.timeout:
                        raise LibxlLockTimeout("timed out after %g s waiting for libxl's lock %s (another xl or "
                                               "libxl process holds it)" % (self.timeout, self.path))
                    time.sleep(delay)
                    delay = min(delay * 2, 0.02)
                held = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                    same = (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                self.fd = fd
                break
            # the holder unlinked it between our open and our flock: lock the new file
            if self.unlock_first:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self.waited = time.monotonic() - start
        if self.alive is not None and not self.alive():
            self.release()
            raise LibxlFileError("the domain is gone (checked once %s was held)" % self.path)
        return self

    def release(self):
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        if self.unlock_first:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
