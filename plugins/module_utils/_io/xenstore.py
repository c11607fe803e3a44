# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xenstore adapter: the only code of xen.disks that talks to xenstore (over pyxs).

Private to the xen.disks collection: no compatibility promise. Python 3.8+.

- `XenstoreConnection.open(socket_path=None)` finds and opens the daemon's socket (or the
  xenbus device) with clear errors (`XenstoreConnectionError`).
- Reads are pipelined: a batch of requests is sent before the first answer is awaited
  (xenstored answers one connection's requests in order), so `read_values`, `read_perms`,
  `list_children`, `read_nodes` cost one round trip and `read_tree` one per tree level.
  `conn.requests` and `conn.round_trips` count what was sent.
- `snapshot(read_fn)`: read_fn's reads all saw one state of xenstore, still current when it
  returned (validated by a watch, at the cost of three requests; or by a transaction).
- `transaction(plan_fn)` reads through a reader bound to one transaction, applies the `XsOp`s
  plan_fn returns (pipelined, in order), commits, and on EAGAIN (something it read changed)
  re-reads, re-plans and retries with jittered backoff. Any failure aborts: nothing is
  half-written.
- `wait_for` / `wait_for_all` are driven by watches, never by polling.
- Every path, value and permission list is checked (`check_path`) before anything of the
  batch is sent.

pyxs provides the connection (socket or xenbus), the router thread and the protocol constants;
requests are framed here, because pyxs's Client refuses empty and non-ASCII values (an empty
value is a plain WRITE on the wire, not a MKDIR, which would keep an old value) and knows
neither batches nor XS_DIRECTORY_PART.
"""

from __future__ import annotations

import errno
import os
import queue
import random
import re
import select
import socket
import stat
import struct
import threading
import time
import traceback
from collections import namedtuple

from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import (
    MKDIR,
    RM,
    SET_PERMS,
    WRITE,
    XsOp,
    XsTree,
)

try:
    from pyxs._internal import NUL, Op, next_rq_id
    from pyxs.client import Router
    from pyxs.connection import UnixSocketConnection, XenBusConnection, _UnixSocketTransport, _XenBusTransport
except ImportError:
    HAS_PYXS = False
    PYXS_IMPORT_ERROR = traceback.format_exc()
    Router = UnixSocketConnection = XenBusConnection = _UnixSocketTransport = _XenBusTransport = object
else:
    HAS_PYXS = True
    PYXS_IMPORT_ERROR = None

# Where a dom0 finds xenstore when nothing is configured (libxenstore's order).
DEFAULT_SOCKETS = ("/run/xenstored/socket", "/var/run/xenstored/socket")
XENBUS_DEVICE = "/dev/xen/xenbus"
ENV_SOCKET = "XENSTORED_PATH"

# xs_wire.h (Xen 4.17): a request's payload, and paths. xenstored counts a path's length after
# a leading "/local/domain/<domid>/" and refuses more than XENSTORE_REL_PATH_MAX characters
# (EINVAL, verified against the real daemon); XENSTORE_ABS_PATH_MAX bounds the whole path.
XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 86400  # a day: longer waits are mistakes (and overflow the thread waits)
DEFAULT_RETRIES = 8
DEFAULT_OWNER_RETRIES = 3  # re-reads when only some owners' nodes changed (snapshot_by_owner)
# ... and for at least this long: a backend finishing a handshake (or another toolstack's
# attach) settles within it; a guest that keeps its dom0-side nodes changing does not.
DEFAULT_OWNER_WINDOW = 1.0
DEFAULT_BACKOFF = 0.02
BATCH_SIZE = 1024  # requests in flight at once
# snapshot records: a node read and found missing is also keyed path + MISSING (not a valid path)
MISSING = "/*"
PROBE_INTERVAL = 1.0  # a wait without events checks this often (at most) that xenstored answers

_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_@-]+$")
_VALID_PATH_RE = re.compile(r"(?:/[A-Za-z0-9_@-]+)+\Z")
_LOCAL_DOMAIN_RE = re.compile(r"^/local/domain/[0-9]{1,5}/")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PERM_RE = re.compile(r"^[nrwb](0|[1-9][0-9]{0,4})$")
_DOMID_MAX = 0x7FEF  # DOMID_FIRST_RESERVED - 1

_ERRNO_TEXT = {
    "EACCES": "permission denied",
    "ENOENT": "no such node",
    "EINVAL": "refused as invalid by xenstored",
    "E2BIG": "too large for one xenstore reply",
    "EAGAIN": "conflicting transaction",
    "ENOSPC": "xenstore quota exceeded",
    "EQUOTA": "xenstore quota exceeded",
    "EEXIST": "already exists",
    "EISDIR": "is a directory",
    "EBUSY": "xenstored is busy",
    "EPERM": "operation not permitted",
}


class XenstoreError(Exception):
    """A xenstore failure with a message fit for a user; `errno_name` when xenstored said it."""

    def __init__(self, message, path=None, errno_name=None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.errno_name = errno_name


class XenstoreConnectionError(XenstoreError):
    """No connection, or the connection was lost."""


class XenstorePathError(XenstoreError, ValueError):
    """A path, value or permission list refused before anything was sent."""


class XenstoreTimeout(XenstoreError):
    """wait_for ran out of time; `path`, `wanted` and `last` say what was awaited and seen."""

    def __init__(self, message, path, wanted, last):
        super().__init__(message, path)
        self.wanted = wanted
        self.last = last


class XenstoreConflict(XenstoreError):
    """A transaction kept conflicting with other writers (EAGAIN) beyond its retries."""


# -- checks (pure) ---------------------------------------------------------------------------

def _shown(text, limit=80):
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_path(path):
    """Return `path` if xenstored would accept it as an absolute node path, else raise.

    Refused: non-strings, relative paths, empty components ('//' or a trailing '/'), '.' and
    '..', control characters, characters other than letters, digits, '-', '_' and '@', and
    paths beyond xenstore's limits (2048 characters after '/local/domain/<domid>/' or from the
    root; 3072 in all).
    """
    if isinstance(path, str) and _VALID_PATH_RE.match(path) and len(path) <= XENSTORE_REL_PATH_MAX:
        return path  # the common case, in one match
    if not isinstance(path, str):
        raise XenstorePathError("invalid xenstore path %r: not a string" % (path,))
    if _CONTROL_RE.search(path):
        raise XenstorePathError("invalid xenstore path %s: contains a control character" % _shown(path), path)
    if not path.startswith("/"):
        raise XenstorePathError("invalid xenstore path %s: not absolute" % _shown(path), path)
    if path == "/":
        return path
    for part in path[1:].split("/"):
        if part in ("", ".", ".."):
            raise XenstorePathError(
                "invalid xenstore path %s: empty, '.' or '..' component" % _shown(path), path)
        if not _COMPONENT_RE.match(part):
            raise XenstorePathError(
                "invalid xenstore path %s: only letters, digits, '-', '_' and '@' are allowed"
                % _shown(path), path)
    local = _LOCAL_DOMAIN_RE.match(path)
    relative = len(path) - (local.end() if local else 0)
    if relative > XENSTORE_REL_PATH_MAX or len(path) > XENSTORE_ABS_PATH_MAX:
        raise XenstorePathError(
            "invalid xenstore path %s: %d characters, more than xenstore allows (%d below "
            "/local/domain/<domid>/ or from the root, %d in all)"
            % (_shown(path), len(path), XENSTORE_REL_PATH_MAX, XENSTORE_ABS_PATH_MAX), path)
    return path


def check_component(part):
    """Return `part` (str, or a non-negative int) as a checked path component, else raise."""
    if isinstance(part, bool) or not isinstance(part, (str, int)):
        raise XenstorePathError("invalid xenstore path component %r" % (part,))
    text = str(part)
    if isinstance(part, int) and part < 0 or not _COMPONENT_RE.match(text):
        raise XenstorePathError("invalid xenstore path component %s" % _shown(text), text)
    return text


def build_path(*parts):
    """'/' + checked components joined with '/'; the result is checked as a whole."""
    return check_path("/" + "/".join(check_component(p) for p in parts))


def check_perms(perms, path=None):
    """Return perms as a tuple if each is <n|r|w|b><domid> (the first names the owner)."""
    perms = tuple(perms)
    if not perms:
        raise XenstorePathError("empty permission list for %s" % path, path)
    for perm in perms:
        if not isinstance(perm, str) or not _PERM_RE.match(perm) or int(perm[1:]) > _DOMID_MAX:
            raise XenstorePathError(
                "invalid xenstore permission %r for %s: use n, r, w or b followed by a domid"
                % (perm, path), path)
    return perms


def _encode_value(path, value):
    if not isinstance(value, str):
        raise XenstorePathError("value for %s is not a string: %r" % (path, value), path)
    data = value.encode("utf-8", "surrogateescape")
    if len(path) + 1 + len(data) > XENSTORE_PAYLOAD_MAX:
        raise XenstorePathError(
            "value for %s is too large: %d bytes, a xenstore request carries at most %d with its path"
            % (path, len(data), XENSTORE_PAYLOAD_MAX), path)
    return data


def _decode(data):
    return data.decode("utf-8", "surrogateescape")


def _parse_perms(answer):
    return tuple(_decode(answer).rstrip("\0").split("\0"))


def _parse_names(answer):
    return sorted(n for n in _decode(answer).split("\0") if n)


def _unique(paths):
    return list(dict.fromkeys(paths))


def _describe_error(action, path, name):
    where = " " + path if path else ""
    return "xenstore %s%s: %s (%s)" % (action, where, name, _ERRNO_TEXT.get(name, "failed"))


# -- the transport ---------------------------------------------------------------------------

_LOST = object()  # set on every pending answer and watch when the connection ends
_SEND_TIMEOUT = object()  # send_batch: the daemon did not take the requests in time


class _OpenedUnixTransport(_UnixSocketTransport):
    """pyxs's socket transport around a socket we connected (so errors keep their errno)."""

    def __init__(self, sock):  # pylint: disable=super-init-not-called
        self.sock = sock

    def recv_some(self, size):
        return self.sock.recv(size)


class _OpenedXenBusTransport(_XenBusTransport):
    def __init__(self, fd):  # pylint: disable=super-init-not-called
        self.fd = fd

    def recv_some(self, size):
        return os.read(self.fd, size)


class _OpenedUnixConnection(UnixSocketConnection):
    def __init__(self, path, sock):
        super(_OpenedUnixConnection, self).__init__(path)
        self._opened = sock

    def create_transport(self):
        return _OpenedUnixTransport(self._opened)


class _OpenedXenBusConnection(XenBusConnection):
    def __init__(self, path, fd):
        super(_OpenedXenBusConnection, self).__init__(path)
        self._opened = fd

    def create_transport(self):
        return _OpenedXenBusTransport(self._opened)


_Message = namedtuple("_Message", "op rq_id tx_id payload")
_Event = namedtuple("_Event", "path token seq")  # a watch event and its place among answers
_HEADER = struct.Struct("<IIII")  # xsd_sockmsg: type, req_id, tx_id, len
XS_DIRECTORY_PART = 22  # xs_wire.h; pyxs 0.4.1 does not know it


class _Router(Router):
    """pyxs's router with a faster loop: batches go out in one write, answers are parsed from
    large reads, and the end of the connection wakes every waiter instead of leaving it
    blocked forever (pyxs's loop dies silently and its waiters hang)."""

    def __init__(self, connection):
        super(_Router, self).__init__(connection)
        self.failure = None
        self.closed = False
        self.seq = 0  # messages received so far: orders answers and watch events

    def __call__(self):
        try:
            self._loop()
        except Exception as e:  # the daemon went away, or sent garbage
            self.failure = e
        finally:
            self.closed = True
            self.connection.close()
            with self.send_lock:
                for batch, index in list(self.rvars.values()):
                    batch.answers[index] = _LOST
                    batch.done.set()
                self.rvars.clear()
            for sinks in list(self.monitors.values()):
                for sink in list(sinks):
                    sink.events.put(_LOST)
            self.r_terminator.close()
            self.w_terminator.close()

    def _loop(self):
        transport = self.connection.transport
        buf = bytearray()
        size_of_header = _HEADER.size
        while True:
            ready, _w, _x = select.select([transport, self.r_terminator], [], [])
            if self.r_terminator in ready:
                return
            chunk = transport.recv_some(1 << 18)
            if not chunk:
                raise OSError(errno.ECONNRESET, "xenstored closed the connection")
            buf += chunk
            offset, end = 0, len(buf)
            while end - offset >= size_of_header:
                op, rq_id, tx_id, size = _HEADER.unpack_from(buf, offset)
                if end - offset - size_of_header < size:
                    break
                start = offset + size_of_header
                payload = bytes(buf[start:start + size])
                offset = start + size
                self.seq += 1
                if op == Op.WATCH_EVENT:
                    path, token = payload.split(NUL)[:2]
                    event = _Event(path, token, self.seq)
                    for sink in self.monitors.get(token, ()):
                        sink.events.put(event)
                    continue
                slot = self.rvars.pop(rq_id, None)
                if slot is None:
                    raise ValueError("xenstored answered request %d, which was not asked" % rq_id)
                batch, index = slot
                batch.answers[index] = _Message(op, rq_id, tx_id, payload)
                batch.seqs[index] = self.seq
                batch.remaining -= 1  # only this thread counts down
                if not batch.remaining:
                    batch.done.set()
            del buf[:offset]

    def send_batch(self, requests):
        """Register an answer slot for each (op, rq_id, tx_id, payload), then write them all
        at once. Returns the _Batch the answers arrive in, or None if the connection is gone."""
        batch = _Batch(len(requests))
        with self.send_lock:
            # the reader thread may close the connection (and drop its transport) at any moment
            transport = getattr(self.connection, "transport", None)
            if self.closed or transport is None:
                return None
            for index, request in enumerate(requests):
                self.rvars[request.rq_id] = (batch, index)
            data = b"".join(_HEADER.pack(r.op, r.rq_id, r.tx_id, len(r.payload)) + r.payload
                            for r in requests)
            try:
                transport.send(data)
            except socket.timeout:
                return _SEND_TIMEOUT  # part of the batch may be sent: the stream is unusable
            except OSError:
                return None
        return batch


class _Batch(object):
    """The answers of one batch of requests; `done` is set when all arrived (or on loss)."""

    __slots__ = ("answers", "seqs", "remaining", "done")

    def __init__(self, size):
        self.answers = [None] * size
        self.seqs = [0] * size
        self.remaining = size
        self.done = threading.Event()


class _WatchSink(object):
    """Receives the watch events of one token from the router thread."""

    def __init__(self):
        self.events = queue.Queue()


class TransactionResult(object):
    """What `transaction` did: the plan_fn's result, its ops, the attempts made, and whether
    the ops were applied (False in plan-only mode)."""

    def __init__(self, result, ops, attempts, applied):
        self.result = result
        self.ops = ops
        self.attempts = attempts
        self.applied = applied

    def __repr__(self):
        return "TransactionResult(ops=%d, attempts=%d, applied=%r)" % (
            len(self.ops), self.attempts, self.applied)


# -- reading ---------------------------------------------------------------------------------

_ACTIONS = {2: "read", 3: "get_perms", 1: "directory"}  # Op.READ, Op.GET_PERMS, Op.DIRECTORY


OwnedSnapshot = namedtuple("OwnedSnapshot", "value unsettled attempts")
OwnedSnapshot.__doc__ = """What `snapshot_by_owner` returns: read_fn's value, the owners whose reads
did not settle (frozenset), and how many times read_fn ran."""


class XenstoreReader(object):
    """Pipelined reads, bound to one transaction or to none (tx 0); `record` is kept by
    snapshot() to know what was read and when."""

    def __init__(self, conn, tx_id=0, record=None):
        self.conn = conn
        self.tx_id = tx_id
        self.record = record  # {path: sequence number of its first read}, for snapshot()

    def _batch(self, op, paths):
        """One round trip of the same request for each path: answers (bytes), None if missing."""
        return self._mixed([(op, path) for path in paths])

    def read_values(self, paths):
        """{path: value or None if missing} in one round trip."""
        paths = _unique(paths)
        answers = self._batch(Op.READ, paths)
        return {p: (None if a is None else _decode(a)) for p, a in zip(paths, answers)}

    def read_value(self, path):
        return self.read_values([path])[path]

    def read_perms(self, paths):
        """{path: permission tuple or None if missing} in one round trip."""
        paths = _unique(paths)
        answers = self._batch(Op.GET_PERMS, paths)
        return {p: (None if a is None else _parse_perms(a)) for p, a in zip(paths, answers)}

    def list_children(self, paths):
        """{path: sorted child names or None if missing} in one round trip."""
        paths = _unique(paths)
        answers = self._batch(Op.DIRECTORY, paths)
        return {p: (None if a is None else _parse_names(a)) for p, a in zip(paths, answers)}

    def read_nodes(self, paths, perms_of=()):
        """An XsTree of exactly the named nodes that exist (values), plus the permissions of
        `perms_of`: one round trip, one request per path."""
        paths, perms_of = _unique(paths), _unique(perms_of)
        requests = [(Op.READ, p) for p in paths] + [(Op.GET_PERMS, p) for p in perms_of]
        tree = XsTree()
        for (op, path), answer in zip(requests, self._mixed(requests)):
            if answer is None:
                continue
            if op == Op.READ:
                tree.values[path] = _decode(answer)
            else:
                tree.perms[path] = _parse_perms(answer)
        return tree

    def _mixed(self, requests):
        """One round trip of (op, path) reads: answers (bytes) in order, None if missing.
        A directory too large for one reply (E2BIG) is then listed in parts."""
        for _op, path in requests:
            check_path(path)
        seqs = [] if self.record is not None else None
        answers = self.conn._exchange([(op, path.encode() + NUL) for op, path in requests], self.tx_id, seqs)
        if seqs is not None:
            for (op, path), seq in zip(requests, seqs):
                # A listing also depends on the children: keyed by the directory plus "/".
                key = path.rstrip("/") + "/" if op == Op.DIRECTORY else path
                self.record.setdefault(key, seq)
        out = []
        for index, ((op, path), answer) in enumerate(zip(requests, answers)):
            if isinstance(answer, XenstoreError):
                if answer.errno_name == "ENOENT":
                    answer = None
                    if seqs is not None and op == Op.READ:
                        # found missing: a node created at or below it later is a change too
                        self.record.setdefault(path.rstrip("/") + MISSING, seqs[index])
                elif answer.errno_name == "E2BIG" and op == Op.DIRECTORY:
                    answer = self._directory_in_parts(path)
                else:
                    raise XenstoreError(_describe_error(_ACTIONS[op], path, answer.errno_name),
                                        path, answer.errno_name)
            out.append(answer)
        return out

    def _directory_in_parts(self, path, attempts=8):
        """A DIRECTORY answer (names, each NUL-terminated) fetched with XS_DIRECTORY_PART;
        restarted if the node's generation changes between parts. None if missing."""
        key = path.encode() + NUL
        for _attempt in range(attempts):
            names, offset, generation = [], 0, None
            while True:
                answer = self.conn._exchange([(XS_DIRECTORY_PART, key + str(offset).encode() + NUL)], self.tx_id)[0]
                if isinstance(answer, XenstoreError):
                    if answer.errno_name == "ENOENT":
                        return None
                    raise XenstoreError(_describe_error("directory", path, answer.errno_name),
                                        path, answer.errno_name)
                part_generation, _sep, chunk = answer.partition(NUL)
                if generation is not None and part_generation != generation:
                    break  # changed meanwhile: list again from the start
                generation = part_generation
                names.extend(n for n in chunk.split(NUL) if n)
                if chunk in (b"", NUL) or chunk.endswith(NUL + NUL):
                    return b"".join(n + NUL for n in names)
                offset += len(chunk)
        raise XenstoreError("xenstore directory %s kept changing while it was listed in parts" % path, path)

    def read_tree(self, roots, with_perms=True):
        """XsTree of every node at and below `roots`, breadth first: one round trip per level
        (READ + DIRECTORY, and GET_PERMS when asked, for every node of the level)."""
        if isinstance(roots, str):
            roots = [roots]
        tree = XsTree()
        level = _unique(roots)
        ops = [Op.READ, Op.DIRECTORY] + ([Op.GET_PERMS] if with_perms else [])
        while level:
            requests = [(op, path) for path in level for op in ops]
            answers = self._mixed(requests)
            next_level = []
            width = len(ops)
            for i, path in enumerate(level):
                value, children = answers[i * width], answers[i * width + 1]
                perms = answers[i * width + 2] if with_perms else b""
                if value is None or children is None or perms is None:
                    # absent; or, outside a transaction, removed between this node's requests
                    # (a watch-validated snapshot sees that change and reads again)
                    continue
                tree.values[path] = _decode(value)
                if with_perms:
                    tree.perms[path] = _parse_perms(perms)
                base = path.rstrip("/") + "/"
                next_level.extend(base + n for n in _parse_names(children))
            level = next_level
        return tree

    # -- domains -----------------------------------------------------------------------------
    def domains(self):
        """{domid: name or None} of every domain under /local/domain (two round trips)."""
        children = self.list_children(["/local/domain"])["/local/domain"] or []
        domids = sorted(int(c) for c in children if c.isdigit())
        names = self.read_values(["/local/domain/%d/name" % d for d in domids])
        return {d: names["/local/domain/%d/name" % d] for d in domids}

    def domid_of(self, domain):
        """The domid of a domain given by name (`/local/domain/*/name`) or by domid."""
        if isinstance(domain, int) and not isinstance(domain, bool) or (
                isinstance(domain, str) and domain.isascii() and domain.isdigit()):
            domid = int(domain)
            if domid > _DOMID_MAX or self.read_value(build_path("local", "domain", domid)) is None:
                raise XenstoreError("no domain with domid %s (no /local/domain/%s)" % (domid, domid))
            return domid
        if not isinstance(domain, str) or not domain:
            raise XenstoreError("invalid domain %r: give a name or a domid" % (domain,))
        matches = [d for d, name in self.domains().items() if name == domain]
        if not matches:
            raise XenstoreError("no domain named %r on this host" % (domain,))
        if len(matches) > 1:
            raise XenstoreError("several domains are named %r: domids %s; give a domid"
                                % (domain, ", ".join(str(d) for d in matches)))
        return matches[0]

    def domain_type(self, domid):
        """'pv', 'hvm' or 'pvh' from libxl's /libxl/<domid>/type; None if libxl has no record."""
        return self.read_value(build_path("libxl", check_component(domid), "type"))


# -- the connection --------------------------------------------------------------------------

def _connect_unix(path, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            break
        except BlockingIOError:
            # xenstored listens with a short backlog; it is full until the daemon accepts.
            if time.monotonic() < deadline:
                time.sleep(0.001)
                continue
            sock.close()
            raise XenstoreConnectionError(
                "xenstored at %s did not accept the connection within %g s" % (path, timeout), path) from None
        except OSError as e:
            sock.close()
            raise _open_error(path, e) from None
    # The router reads only after select() says there is something to read; the timeout
    # bounds the sends, which block when a stopped daemon no longer reads its socket.
    sock.settimeout(timeout)
    return sock


def _file_kind(mode):
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe")):
        if test(mode):
            return kind
    return "of another kind"


def _open_error(path, e):
    hint = "is xenstored running? is this a dom0?"
    if e.errno in (errno.EACCES, errno.EPERM):
        return XenstoreConnectionError(
            "permission denied opening xenstore at %s: run as root (become: true)" % path, path)
    if e.errno == errno.ENOENT:
        return XenstoreConnectionError("xenstore socket %s does not exist: %s" % (path, hint), path)
    if e.errno == errno.ECONNREFUSED:
        return XenstoreConnectionError(
            "cannot connect to xenstore at %s: connection refused: %s" % (path, hint), path)
    return XenstoreConnectionError("cannot connect to xenstore at %s: %s: %s" % (path, e.strerror, hint), path)


class XenstoreConnection(XenstoreReader):
    """One connection to xenstored. Its own reader API reads outside any transaction;
    `snapshot()` and `transaction()` give readers bound to one transaction."""

    def __init__(self, router, path, timeout=DEFAULT_TIMEOUT):
        super(XenstoreConnection, self).__init__(self, 0)
        self._router = router
        self.path = path
        self.timeout = timeout
        self.requests = 0
        self.round_trips = 0
        self._tokens = 0
        self._broken = None  # the error that made this connection unusable (a timeout)

    @classmethod
    def candidates(cls, socket_path=None, environ=None):
        """Where to look, in order: the option, else $XENSTORED_PATH, else the dom0 defaults."""
        environ = os.environ if environ is None else environ
        if socket_path:
            return [socket_path]
        if environ.get(ENV_SOCKET):
            return [environ[ENV_SOCKET]]
        return list(DEFAULT_SOCKETS) + [XENBUS_DEVICE]

    @classmethod
    def open(cls, socket_path=None, timeout=DEFAULT_TIMEOUT, environ=None):
        """Connect to xenstored; raises XenstoreConnectionError with what to check.

        `timeout` (seconds) bounds the connection and every later request: a daemon that does
        not answer within it is reported, and the connection is not used again."""
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0 < timeout <= MAX_TIMEOUT:
            raise XenstoreConnectionError(
                "invalid xenstore timeout %r: give a number of seconds above 0 and at most %d"
                % (timeout, MAX_TIMEOUT))
        if not HAS_PYXS:
            raise XenstoreConnectionError("the pyxs Python library is required to talk to xenstore")
        candidates = cls.candidates(socket_path, environ)
        explicit = len(candidates) == 1
        for path in candidates:
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _open_error(path, e) from None
            if stat.S_ISCHR(mode):
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                except OSError as e:
                    raise _open_error(path, e) from None
                connection = _OpenedXenBusConnection(path, fd)
            elif not stat.S_ISSOCK(mode):
                raise XenstoreConnectionError(
                    "xenstore socket %s is %s, not a socket: give xenstored's socket (e.g. %s)"
                    % (path, _file_kind(mode), DEFAULT_SOCKETS[0]), path)
            else:
                connection = _OpenedUnixConnection(path, _connect_unix(path, timeout))
            router = _Router(connection)
            router.start()
            return cls(router, path, timeout)
        if explicit:
            raise _open_error(candidates[0], FileNotFoundError(errno.ENOENT, "No such file"))
        raise XenstoreConnectionError(
            "no xenstore found (tried %s): is xenstored running? is this a dom0?" % ", ".join(candidates))

    def close(self):
        try:
            self._router.terminate()
        except OSError:
            pass  # the router ended by itself meanwhile

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def stats(self):
        return {"requests": self.requests, "round_trips": self.round_trips}

    # -- the wire ----------------------------------------------------------------------------
    def _lost(self):
        if self._broken is not None:
            return XenstoreConnectionError(self._broken, self.path)
        reason = self._router.failure
        if isinstance(reason, OSError) and reason.errno == errno.ECONNRESET:
            detail = ""  # the end of the stream: nothing more to say
        elif isinstance(reason, OSError):
            detail = ": %s" % (reason.strerror or reason)
        else:
            detail = ": %s" % reason if reason is not None else ""
        return XenstoreConnectionError(
            "lost the connection to xenstored at %s (the daemon stopped or closed the connection%s)"
            % (self.path, detail), self.path)

    def _give_up(self, message):
        """Stop using this connection after a timeout: its late answers, or a batch sent in
        part, would be out of step. Closing it also ends its transactions in xenstored. Returns
        the error to raise; every later request fails at once with the same message."""
        self._broken = message
        self.close()
        return XenstoreConnectionError(message, self.path)

    def _exchange(self, requests, tx_id, seqs=None):
        """Send (op, payload) requests in batches, then collect the answers in order: the
        payload (bytes, trailing NUL kept) or a XenstoreError carrying the errno name. `seqs`,
        a list, receives each answer's place in the stream of received messages."""
        answers = []
        for start in range(0, len(requests), BATCH_SIZE):
            chunk = [_Message(op, next_rq_id(), tx_id, payload)
                     for op, payload in requests[start:start + BATCH_SIZE]]
            if self._broken is not None:
                raise self._lost()
            batch = self._router.send_batch(chunk)
            if batch is _SEND_TIMEOUT:
                raise self._give_up("xenstored at %s did not take requests within %g s: is it stopped "
                                    "or overloaded?" % (self.path, self.timeout))
            if batch is None:
                raise self._lost()
            self.requests += len(chunk)
            self.round_trips += 1
            if not batch.done.wait(self.timeout):
                if self._router.closed:
                    raise self._lost()
                raise self._give_up("xenstored at %s did not answer within %g s: is it stopped or "
                                    "overloaded?" % (self.path, self.timeout))
            if seqs is not None:
                seqs.extend(batch.seqs)
            for request, reply in zip(chunk, batch.answers):
                if reply is _LOST:
                    raise self._lost()
                if reply.op == Op.ERROR:
                    name = _decode(reply.payload.rstrip(NUL))
                    answers.append(XenstoreError(name, None, name))
                elif reply.op != request.op:
                    raise XenstoreConnectionError(
                        "unexpected answer from xenstored at %s (op %d to op %d)"
                        % (self.path, reply.op, request.op), self.path)
                else:
                    answers.append(reply.payload)
        return answers

    def _control(self, op, payload, tx_id, action):
        answer = self._exchange([(op, payload)], tx_id)[0]
        if isinstance(answer, XenstoreError):
            raise XenstoreError(_describe_error(action, None, answer.errno_name), None, answer.errno_name)
        return answer

    # -- transactions ------------------------------------------------------------------------
    def _start(self):
        return int(self._control(Op.TRANSACTION_START, NUL, 0, "transaction_start").rstrip(NUL))

    def _end(self, tx_id, commit):
        """True if committed; False on EAGAIN (conflict)."""
        answer = self._exchange([(Op.TRANSACTION_END, (b"T" if commit else b"F") + NUL)], tx_id)[0]
        if isinstance(answer, XenstoreError):
            if answer.errno_name == "EAGAIN":
                return False
            raise XenstoreError(_describe_error("transaction_end", None, answer.errno_name),
                                None, answer.errno_name)
        return True

    def _abort(self, tx_id):
        try:
            self._end(tx_id, commit=False)
        except XenstoreError:
            pass  # a lost connection discards the transaction anyway

    @staticmethod
    def _encode_ops(ops):
        """Check every op and encode it; raises before anything is sent."""
        requests = []
        for op in ops:
            if not isinstance(op, XsOp):
                raise XenstorePathError("not a xenstore operation: %r" % (op,))
            path = check_path(op.path)
            key = path.encode() + NUL
            if op.action == WRITE:
                requests.append((Op.WRITE, key + _encode_value(path, op.value)))
            elif op.action == MKDIR:
                requests.append((Op.MKDIR, key))
            elif op.action == SET_PERMS:
                perms = check_perms(op.perms, path)
                requests.append((Op.SET_PERMS, key + b"".join(p.encode() + NUL for p in perms)))
            elif op.action == RM:
                if path == "/":
                    raise XenstorePathError("refusing to remove the xenstore root", path)
                requests.append((Op.RM, key))
        return requests

    def apply(self, ops, tx_id):
        """Apply ops inside transaction `tx_id`, pipelined in order; raises on the first error
        (rm of a missing node is fine). Callers abort the transaction on error."""
        ops = list(ops)
        answers = self._exchange(self._encode_ops(ops), tx_id)
        for op, answer in zip(ops, answers):
            if isinstance(answer, XenstoreError):
                if op.action == RM and answer.errno_name == "ENOENT":
                    continue
                raise XenstoreError(_describe_error(op.action, op.path, answer.errno_name),
                                    op.path, answer.errno_name)

    def transaction(self, plan_fn, max_retries=DEFAULT_RETRIES, backoff=DEFAULT_BACKOFF, apply=True):
        """Run plan_fn(reader) in a transaction and apply the XsOps it returns, atomically.

        plan_fn returns a list of XsOp, or an object with an `ops` attribute (a Plan). On EAGAIN
        (at commit, or from any request; or another error once, see _retrying)
        everything is re-read and re-planned, up to
        `max_retries` more times, after a jittered, doubling pause starting at `backoff` s.
        With apply=False nothing is written, but the commit still checks that every read saw
        one state of xenstore (check mode). Any exception aborts the transaction: nothing is
        half-written. Returns a TransactionResult.
        """
        def attempt(reader):
            result = plan_fn(reader)
            ops = list(getattr(result, "ops", result) or ())
            if apply:
                self.apply(ops, reader.tx_id)
            return result, ops

        (result, ops), attempts = self._retrying(attempt, max_retries, backoff)
        return TransactionResult(result, ops, attempts, apply)

    def snapshot(self, read_fn, max_retries=DEFAULT_RETRIES, backoff=DEFAULT_BACKOFF, method="watch",
                 observed=None):
        """read_fn(reader)'s result, where every read saw the same state of xenstore.

        read_fn must only read. It runs again (up to `max_retries` more times, with a jittered
        backoff) when something it read changed while it read.

        method="watch" (default): plain pipelined reads under a watch on "/". xenstored sends
        a connection its watch events and answers in the order the changes and reads happened,
        so a change to a node after it was read (or to a directory after it was listed, or the
        removal of a node above one read) shows as an event behind that read's answer. When
        read_fn returns, one more request marks the end: no such event before its answer, and
        every value read was still current when read_fn returned. Changes to nodes not read
        do not count. Cost: three requests (watch, end mark, unwatch), whatever the size.

        method="transaction": the reads run in a transaction whose commit fails with EAGAIN
        when a node read has changed. xenstored 4.17 keeps a transaction's accessed nodes in a
        list searched on every access, so the cost grows with the square of the nodes read
        (measured: 1,000 reads ~20,000/s, 16,000 reads ~1,700/s): for small reads only.

        observed(path) -> bool (watch method only): nodes read as observations, whose changes
        never invalidate the view (a guest's own frontend nodes: it may rewrite them at will).
        """
        if method == "transaction":
            return self._retrying(read_fn, max_retries, backoff)[0]
        if method != "watch":
            raise ValueError("snapshot method must be 'watch' or 'transaction', got %r" % (method,))
        return self.snapshot_by_owner(read_fn, None, max_retries, backoff, observed=observed).value

    def snapshot_by_owner(self, read_fn, owner_of, max_retries=DEFAULT_RETRIES, backoff=DEFAULT_BACKOFF,
                          observed=None, owner_retries=DEFAULT_OWNER_RETRIES, owner_window=DEFAULT_OWNER_WINDOW):
        """A watch-validated snapshot (see `snapshot`) whose consistency is checked per owner.

        owner_of(path) -> key or None: each read belongs to an owner (a guest), or to no one
        (shared). A change to a shared node read re-runs read_fn, up to `max_retries` times,
        then raises XenstoreConflict. A change to an owner's nodes only re-runs read_fn up to
        `owner_retries` times and for at least `owner_window` seconds (bounded steps of
        backoff); after that, the result of the last run is returned with the
        owners whose reads still changed under it in `unsettled`: every other owner's reads
        (and the shared ones) saw one state of xenstore. One owner that keeps changing its
        nodes thus never stops the others. Changes to `observed` nodes never count.
        Returns OwnedSnapshot(value, unsettled (frozenset), attempts).
        """
        self._tokens += 1
        token = ("xen-disks-snapshot-%d-%d" % (os.getpid(), self._tokens)).encode()
        sink = _WatchSink()
        self._router.subscribe(token, sink)
        try:
            self._watch_all({token: "/"}, Op.WATCH)
            attempt = owner_attempts = 0
            started = time.monotonic()
            while True:
                attempt += 1
                record = {}
                value = read_fn(XenstoreReader(self, 0, record))
                # The events of every change made until now arrive before this answer, so
                # the view is checked as of read_fn's end, as a transaction's commit would.
                self._exchange([(Op.READ, b"/" + NUL)], 0)
                events = []
                while True:
                    try:
                        events.append(sink.events.get_nowait())
                    except queue.Empty:
                        break
                if any(e is _LOST for e in events):
                    raise self._lost()
                if observed is not None:
                    events = [e for e in events if not (isinstance(e, _Event) and observed(_decode(e.path)))]
                changed = _owners_changed(record, events, owner_of)
                if not changed:
                    return OwnedSnapshot(value, frozenset(), attempt)
                if None not in changed:
                    owner_attempts += 1
                    if owner_attempts > owner_retries and time.monotonic() - started >= owner_window:
                        return OwnedSnapshot(value, frozenset(changed), attempt)
                    time.sleep(random.uniform(0.5, 1.0) * min(backoff * (2 ** min(owner_attempts - 1, 6)), 0.2))
                    continue
                if attempt > max_retries:
                    raise XenstoreConflict(
                        "xenstore kept changing under a snapshot: still changing after %d attempts" % attempt)
                time.sleep(random.uniform(0.5, 1.0) * backoff * (2 ** min(attempt - 1, 6)))
        finally:
            self._router.unsubscribe(token, sink)
            if not self._router.closed:
                try:
                    self._watch_all({token: "/"}, Op.UNWATCH)
                except XenstoreError:
                    pass

    def _retrying(self, fn, max_retries, backoff):
        """(fn(reader), attempts) with fn run in a transaction until its commit succeeds."""
        # A request may also fail because another writer changed what the transaction read:
        # xenstored 4.17 answers an rm EIO when the directory, as the transaction saw it, lists
        # a child removed since, and EINVAL when the node's parent was removed since (verified
        # against the daemon; the commit would fail with EAGAIN). Such an error goes away when
        # the transaction is re-read and re-planned; a real one comes back: the same error on
        # the same path twice in a row is raised.
        attempt = 0
        last = None
        while True:
            attempt += 1
            tx_id = self._start()
            try:
                value = fn(XenstoreReader(self, tx_id))
            except XenstoreError as e:
                self._abort(tx_id)
                if isinstance(e, XenstoreConnectionError) or e.errno_name is None:
                    raise
                if e.errno_name != "EAGAIN" and last is not None and \
                        (last.errno_name, last.path, str(last)) == (e.errno_name, e.path, str(e)):
                    raise
                committed, last = False, e
            except BaseException:
                self._abort(tx_id)
                raise
            else:
                committed = self._end(tx_id, commit=True)
            if committed:
                return value, attempt
            if attempt > max_retries:
                raise XenstoreConflict(
                    "xenstore transaction still conflicting with other writers after %d attempts%s"
                    % (attempt, " (last: %s)" % last if last is not None and last.errno_name != "EAGAIN" else ""))
            time.sleep(random.uniform(0.5, 1.0) * backoff * (2 ** min(attempt - 1, 6)))

    # -- watches -----------------------------------------------------------------------------
    def wait_for(self, path, values, timeout):
        """Wait until `path` holds one of `values` (None stands for "missing"); return it."""
        return self.wait_for_all({path: values}, timeout)[path]

    def wait_for_all(self, conditions, timeout):
        """Wait until every path of {path: values} holds one of its values; {path: value}.

        Watch driven: one watch per path, the current values read once after the watches are
        set, then only what the events name is read again: an event received before the
        answer of the path's last read (the watch's own first event, a change that read
        already saw) is not read again. Raises XenstoreTimeout naming the first path still
        waited for, the values wanted and the last value seen.
        """
        wanted = {check_path(p): set(v) for p, v in conditions.items()}
        if not wanted:
            return {}
        tokens = {}
        sink = _WatchSink()
        for path in wanted:
            self._tokens += 1
            tokens[("xen-disks-%d-%d" % (os.getpid(), self._tokens)).encode()] = path
        for token in tokens:
            self._router.subscribe(token, sink)
        deadline = time.monotonic() + timeout
        seen, done = {}, {}
        probe = _Probe(self, min(PROBE_INTERVAL, timeout / 4.0))
        try:
            self._watch_all(tokens, Op.WATCH)
            to_read = list(wanted)
            read_at = {}  # path -> place of its last read's answer among received messages
            while True:
                record = {}
                seen.update(XenstoreReader(self, 0, record).read_values(to_read))
                read_at.update((p, record[p]) for p in to_read)
                for path in to_read:
                    if path not in done and seen[path] in wanted[path]:
                        done[path] = seen[path]
                if len(done) == len(wanted):
                    return done
                to_read = self._next_events(sink, tokens, deadline, probe, read_at)
                if to_read is None:
                    silent = probe.silent(self.timeout)
                    if silent is not None:  # the daemon, not the backend, stopped answering
                        raise self._give_up(
                            "xenstored at %s did not answer for %.1f s (timeout %g s) while waiting for %s: is "
                            "it stopped or overloaded?"
                            % (self.path, silent, self.timeout, next(p for p in wanted if p not in done)))
                    path = next(p for p in wanted if p not in done)
                    shown = "missing" if seen[path] is None else repr(seen[path])
                    raise XenstoreTimeout(
                        "timed out after %g s waiting for %s to be %s (last value: %s)"
                        % (timeout, path, _describe_wanted(wanted[path]), shown),
                        path, sorted(wanted[path], key=str), seen[path])
                to_read = [p for p in to_read if p not in done]
        finally:
            for token in tokens:
                self._router.unsubscribe(token, sink)
            if not self._router.closed:
                try:
                    self._watch_all(tokens, Op.UNWATCH)
                except XenstoreError:
                    pass

    def _watch_all(self, tokens, op):
        requests = [(op, path.encode() + NUL + token + NUL) for token, path in tokens.items()]
        for answer, path in zip(self._exchange(requests, 0), tokens.values()):
            if isinstance(answer, XenstoreError):
                raise XenstoreError(_describe_error("watch", path, answer.errno_name), path, answer.errno_name)

    def _next_events(self, sink, tokens, deadline, probe, read_at):
        """Paths named by the next events (all that are queued) and not read since (`read_at`:
        path -> place of its last read); None at the deadline. While no event comes, `probe`
        checks now and then that the daemon still answers."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                events = [sink.events.get(timeout=min(remaining, probe.interval))]
                break
            except queue.Empty:
                probe.send()
        while True:
            try:
                events.append(sink.events.get_nowait())
            except queue.Empty:
                break
        if any(e is _LOST for e in events):
            raise self._lost()
        return _unique(tokens[e.token] for e in events
                       if isinstance(e, _Event) and e.token in tokens and e.seq > read_at.get(tokens[e.token], 0))


class _Probe(object):
    """A long wait's check that xenstored still answers: every `interval` without a watch event,
    one READ of "/" is sent (not waited for while the wait goes on); at the wait's end,
    `silent(limit)` tells a stopped daemon from a slow one."""

    def __init__(self, conn, interval):
        self.conn = conn
        self.interval = interval
        self.batch = None
        self.sent = None

    def send(self):
        if self.batch is not None and not self.batch.done.is_set():
            return  # one at a time: the oldest unanswered one says how long the daemon is silent
        batch = self.conn._router.send_batch([_Message(Op.READ, next_rq_id(), 0, b"/" + NUL)])
        if batch is not None and batch is not _SEND_TIMEOUT:
            self.conn.requests += 1
            self.batch, self.sent = batch, time.monotonic()

    def silent(self, limit):
        """How long the probe still unanswered has waited, once it had `limit` (the connection's
        request timeout) to be answered: waits for its answer until then. None when answered
        (or none was sent): a daemon slower than the wait's end, as under load, is not a
        stopped one, and the wait's own timeout is then what the caller reports."""
        if self.batch is None:
            return None
        remaining = self.sent + limit - time.monotonic()
        if remaining > 0:
            self.batch.done.wait(remaining)
        if self.batch.done.is_set():
            return None
        return time.monotonic() - self.sent


def _owners_changed(record, events, owner_of):
    """The owners (None: shared) whose reads an event shows changed after they were read."""
    if not events or not record:
        return set()
    if owner_of is None:
        return {None} if _changed_since_read(record, events) else set()
    parts = {}
    for path, seq in record.items():
        parts.setdefault(owner_of(path.rstrip("/") or "/"), {})[path] = seq
    return {owner for owner, part in parts.items() if _changed_since_read(part, events)}


def _changed_since_read(record, events):
    """Whether a watch event shows a change to something read after it was read.

    record: {path: sequence number of its first read}; a listed directory is keyed
    "path/", a node found missing also "path" + MISSING. An event at P (sequence s) matters
    if P was read before s, if P's parent was listed before s (a child came or went), if a
    node below P was read before s (P was removed or replaced with its subtree), or if an
    ancestor of P was found missing before s (xenstored creates missing parents silently:
    the event names only P). Events before the first read cannot matter: the watch's
    registration event (for "/" itself) is one, and is dropped before any work."""
    if not events or not record:
        return False
    first_read = min(record.values())
    events = [e for e in events if isinstance(e, _Event) and e.seq > first_read]
    below = None
    missing = None
    for event in events:
        path = _decode(event.path)
        seq = event.seq
        first = record.get(path)
        if first is not None and first < seq:
            return True
        parent = path.rsplit("/", 1)[0] + "/" if path != "/" else None
        first = record.get(parent) if parent else None
        if first is not None and first < seq:
            return True
        if below is None:  # built once, and only when some event needs it
            below = _earliest_read_below(record)
        first = below.get(path)
        if first is not None and first < seq:
            return True
        if missing is None:
            missing = {p[:-len(MISSING)]: s for p, s in record.items() if p.endswith(MISSING)}
        node = path
        while missing and node not in ("", "/"):
            node = node.rsplit("/", 1)[0]
            first = missing.get(node)
            if first is not None and first < seq:
                return True
    return False


def _earliest_read_below(record):
    """{node: sequence number of the earliest read below it} (a listed directory counts as
    read below itself). A node's entry is never later than its children's, so each walk up
    stops at the first ancestor already read no later: linear in the reads, as they share
    their parents."""
    below = {}
    for read_path, read_seq in record.items():
        if read_path.endswith("/"):  # a listing: the directory itself
            node = read_path.rstrip("/") or "/"
        else:
            node = read_path.rsplit("/", 1)[0] or "/"
        while True:
            have = below.get(node)
            if have is not None and have <= read_seq:
                break
            below[node] = read_seq
            if node == "/":
                break
            node = node.rsplit("/", 1)[0] or "/"
    return below


def _describe_wanted(values):
    shown = sorted(("missing" if v is None else repr(v)) for v in values)
    return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
