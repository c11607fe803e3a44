# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP adapter: the only code of the collection that speaks to a guest's QEMU.

Private to the xen.disks collection: no compatibility promise. Standard library only (no
Ansible imports); Python 3.8+.

A `QmpSession` is libxl 4.17's QMP client (`libxl__ev_qmp`, libxl_qmp.c) for one operation:
it connects to `<libxl_run_dir>/qmp-libxl-<domid>` on its first command, reads QEMU's greeting,
negotiates with `qmp_capabilities`, then sends each command and waits for its answer; events
are ignored. Messages are libxl's byte for byte: compact JSON `{"execute":..,"id":..,
"arguments":{..}}` and CRLF, ids counted from libxl's 0x786c7100 ("xlq\\0") with the first
command's id taken before the greeting's `qmp_capabilities` (libxl queues the command while it
connects). A file descriptor goes over SCM_RIGHTS with the first byte of its command, as
libxl sends it. One deadline covers the whole session (libxl's cdrom-insert timer).

Errors are `QmpError`s whose `str()` says what happened in the administrator's terms:
`QmpUnavailable` (no socket, refused: QEMU is not running), `QmpCommandError` (QEMU refused a
command: its error class and description), `QmpTimeout`, `QmpProtocolError` (closed
connection, unparsable answer).
"""

from __future__ import annotations

import array
import errno
import json
import os
import socket
import stat
import time

from ansible_collections.xen.disks.plugins.module_utils._core.libxl_json import yajl_string

DEFAULT_RUN_DIR = "/var/run/xen"
SOCKET_NAME = "qmp-libxl-%d"
FIRST_ID = 0x786C7100            # libxl__ev_qmp_init: "xlq\0"
MAX_MESSAGE = 1024 * 1024        # libxl's QMP_MAX_SIZE_RX_BUF


def socket_path(domid, run_dir=None):
    """libxl__qemu_qmp_path: the QMP socket libxl's device model of `domid` listens on."""
    return os.path.join(run_dir or DEFAULT_RUN_DIR, SOCKET_NAME % domid)


def socket_listening_path(path):
    """Whether `path` is a unix socket (what check mode can tell without connecting)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _yajl(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "%d" % value
    return yajl_string(str(value))


def encode_command(execute, arguments, message_id):
    """One command as libxl's qmp_prepare_cmd writes it: yajl's compact JSON (control characters
    as upper-case \\u00XX, `/` and non-ASCII as they are), `arguments` in their order, CRLF.
    A path's undecodable bytes (surrogate escapes) go out as the bytes they were."""
    parts = ['"execute":' + _yajl(execute), '"id":' + _yajl(message_id)]
    if arguments:
        parts.append('"arguments":{%s}' % ",".join(_yajl(k) + ":" + _yajl(v) for k, v in arguments))
    return ("{" + ",".join(parts) + "}\r\n").encode("utf-8", "surrogateescape")


class QmpError(Exception):
    """A QMP failure; `str()` is the message for the administrator."""

    def __init__(self, message, path=""):
        super().__init__(message)
        self.path = path


class QmpUnavailable(QmpError):
    """Nothing answers on the QMP socket (missing, not a socket, refused)."""


class QmpTimeout(QmpError):
    """QEMU did not answer before the session's deadline."""


class QmpProtocolError(QmpError):
    """The connection broke or QEMU sent something libxl would reject."""


class QmpCommandError(QmpError):
    """QEMU answered a command with an error: `error_class` and `desc` are QEMU's."""

    def __init__(self, message, path="", command="", error_class="", desc=""):
        super().__init__(message, path)
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QmpSession:
    """One QMP connection, opened by the first `execute`; `close()` (or `with`) ends it."""

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.version = None          # (major, minor, micro) from the greeting
        self._sock = None
        self._buffer = b""
        self._next_id = FIRST_ID

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- commands -----------------------------------------------------------------------------
    def execute(self, command, arguments=(), fd_path=None):
        """Send `command` with `arguments` ((name, value) pairs, in order) and return QEMU's
        `return` value. With `fd_path`, the file is opened read-only and its descriptor sent
        with the message's first byte (closed once QEMU answered, as libxl does)."""
        message_id = self._take_id()
        if self._sock is None:
            self._connect()
        data = encode_command(command, arguments, message_id)
        fd = None
        if fd_path is not None:
            try:
                fd = os.open(fd_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise QmpError("cannot open %s to pass it to QEMU: %s" % (fd_path, exc.strerror), self.path) from None
        try:
            self._send(data, fd, command)
            answer = self._answer(message_id, command)
        finally:
            if fd is not None:
                os.close(fd)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            error_class, desc = str(error.get("class", "")), str(error.get("desc", ""))
            raise QmpCommandError("QEMU refused %s: %s: %s" % (_describe(command, arguments), error_class, desc),
                                  self.path, command, error_class, desc)
        return answer.get("return")

    def version_at_least(self, major, minor, micro=0):
        """libxl__qmp_ev_qemu_compare_version(...) >= 0 (after the first command)."""
        return self.version is not None and self.version >= (major, minor, micro)

    # -- the wire -------------------------------------------------------------------------------
    def _take_id(self):
        """libxl numbers the first command before the greeting's qmp_capabilities."""
        message_id = self._next_id
        self._next_id += 1
        return message_id

    def _remaining(self, what):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout(what)
        return remaining

    def _timeout(self, what):
        return QmpTimeout("no answer from QEMU on %s within %g s (waiting for %s)" % (self.path, self.timeout, what),
                          self.path)

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._remaining("the connection"))
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise self._connect_error(exc) from None
        self._sock = sock
        greeting = self._message("its greeting")
        qmp = greeting.get("QMP")
        if not isinstance(qmp, dict):
            raise QmpProtocolError("%s: expected QEMU's QMP greeting, got %s" % (self.path, _short(greeting)), self.path)
        try:
            qemu = qmp["version"]["qemu"]
            self.version = (int(qemu["major"]), int(qemu["minor"]), int(qemu["micro"]))
        except (KeyError, TypeError, ValueError):
            self.version = (-1, -1, -1)
        message_id = self._take_id()
        self._send(encode_command("qmp_capabilities", (), message_id), None, "qmp_capabilities")
        answer = self._answer(message_id, "qmp_capabilities")
        if "error" in answer:
            raise QmpProtocolError("%s: capability negotiation failed: %s" % (self.path, _short(answer)), self.path)

    def _connect_error(self, exc):
        if isinstance(exc, socket.timeout):
            return self._timeout("the connection")
        if exc.errno == errno.ENOENT:
            return QmpUnavailable("no QMP socket %s: the guest's device model (QEMU) is not running, or not "
                                  "with libxl's QMP socket" % self.path, self.path)
        if exc.errno == errno.ECONNREFUSED:
            return QmpUnavailable("QMP socket %s refused the connection: no QEMU is listening on it (the "
                                  "guest's device model has exited?)" % self.path, self.path)
        return QmpUnavailable("cannot connect to QMP socket %s: %s" % (self.path, exc.strerror or exc), self.path)

    def _send(self, data, fd, what):
        try:
            self._sock.settimeout(self._remaining(what))
            if fd is not None:
                fds = array.array("i", [fd])
                sent = self._sock.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                data = data[sent:]
            self._sock.sendall(data)
        except socket.timeout:
            raise self._timeout("it to take %s" % what) from None
        except OSError as exc:
            raise QmpProtocolError("sending %s to QEMU on %s failed: %s" % (what, self.path, exc.strerror or exc),
                                   self.path) from None

    def _answer(self, message_id, command):
        """The answer to `message_id`; events are skipped, as libxl does."""
        while True:
            message = self._message("the answer to %s" % command)
            if "event" in message:
                continue
            if "return" not in message and "error" not in message:
                raise QmpProtocolError("%s: unexpected message from QEMU: %s" % (self.path, _short(message)), self.path)
            if message.get("id") != message_id:
                if "error" in message and "id" not in message:
                    raise QmpProtocolError("QEMU rejected %s on %s before reading it: %s"
                                           % (command, self.path, _short(message)), self.path)
                raise QmpProtocolError("%s: answer with unexpected id %r (waiting for %s, id %d)"
                                       % (self.path, message.get("id"), command, message_id), self.path)
            return message

    def _message(self, what):
        """The next JSON message (QEMU ends each with CRLF)."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_MESSAGE:
                raise QmpProtocolError("%s: QMP message larger than %d bytes" % (self.path, MAX_MESSAGE), self.path)
            try:
                self._sock.settimeout(self._remaining(what))
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise self._timeout(what) from None
            except OSError as exc:
                raise QmpProtocolError("reading QMP socket %s failed: %s" % (self.path, exc.strerror or exc),
                                       self.path) from None
            if not chunk:
                raise QmpProtocolError("QEMU closed the QMP connection on %s while %s was expected"
                                       % (self.path, what), self.path)
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line.decode("utf-8"))
        except ValueError:
            raise QmpProtocolError("%s: unparsable QMP message %r" % (self.path, line[:200]), self.path) from None
        if not isinstance(message, dict):
            raise QmpProtocolError("%s: unexpected QMP message %s" % (self.path, _short(message)), self.path)
        return message


def _describe(command, arguments):
    return " ".join([command] + ["%s=%s" % (k, v) for k, v in arguments])


def _short(message):
    text = json.dumps(message, sort_keys=True)
    return text if len(text) <= 300 else text[:297] + "..."


class QmpRun:
    """The QMP connection of one guest's apply: opened by its first QMP command under libxl's
    qmp-socket-lock (`lock`, not yet held, or None), shared by the guest's media changes (QEMU
    serves one client at a time), closed after the last of them or after a broken connection.
    One deadline (`timeout`) from the opening covers the lock wait and every answer."""

    def __init__(self, path, timeout, lock=None):
        self.path = path
        self.timeout = timeout
        self.lock = lock
        self.session = None
        self.fdsets = {}         # id(change) -> the fd set of its add-fd

    def open(self):
        if self.session is None:
            self.session = QmpSession(self.path, self.timeout)
            if self.lock is not None:
                self.lock.timeout = self.timeout
                self.lock.acquire()
        return self.session

    def close(self):
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.lock is not None:
            self.lock.release()
