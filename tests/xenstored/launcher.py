# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run Debian's real C xenstored (Xen 4.17) without a hypervisor, for tests and demos.

An LD_PRELOAD shim (shim.c, compiled once with gcc) replaces the hypervisor calls; the daemon
itself is unmodified. One daemon per run directory: its socket is DIR/socket, its pid DIR/pid,
its log DIR/xenstored.log, and DIR/domids lists the domids that "exist" (the shim re-reads it,
so guests can be added while the daemon runs). See tests/xenstored/README.md.

CLI (standard library only, so it runs with any python3; prints socket paths on stdout):
  launcher.py start --rundir DIR [--domids 0-40]        start one daemon, print its socket
  launcher.py stop --rundir DIR                         stop it by pid and wait
  launcher.py status --rundir DIR                       exit 0 if running (prints pid, socket)
  launcher.py start-many --base DIR --count N [--domids ...]   DIR/host-001 ... (one per dom0)
  launcher.py stop-many --base DIR
  launcher.py add-guest --rundir DIR --name NAME --domid D --type pv|hvm|pvh [--width 64]
                        [--driver-domain]              create the domain as libxl does
  launcher.py remove-guest --rundir DIR --domid D      remove it as libxl's destroy does
  launcher.py libxl-dir --rundir DIR                   this dom0's stand-in for /var/lib/xen

The module API (start, stop, status, start_many, stop_many, add_guest, remove_guest) is what
tests/integration/conftest.py uses.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM_SOURCE = os.path.join(HERE, "shim.c")
XENSTORED_RELATIVE = "xen-utils/usr/lib/xen-4.17/bin/xenstored"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
GUEST_TYPES = ("pv", "hvm", "pvh")
HOST_DIR_FORMAT = "host-%03d"
DOMID_LIMIT = 0x7FF0  # DOMID_FIRST_RESERVED
SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class LauncherError(Exception):
    """A daemon could not be built, started, stopped or changed; str() says why."""


@dataclass(frozen=True)
class Daemon:
    """A running xenstored: its run directory, pid and socket path."""

    rundir: str
    pid: int
    socket: str


# -- locating and building -----------------------------------------------------------------

def cache_dir():
    return os.environ.get("XEN_DISKS_CACHE") or os.path.expanduser("~/.cache/xen-disks")


def find_xenstored():
    """$XEN_DISKS_XENSTORED, else the copy tests/setup.sh unpacks into the cache."""
    candidates = [os.environ.get("XEN_DISKS_XENSTORED"), os.path.join(cache_dir(), XENSTORED_RELATIVE)]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise LauncherError(
        "xenstored not found (looked at $XEN_DISKS_XENSTORED and %s): run tests/setup.sh"
        % candidates[1])


def build_shim(build_dir=None):
    """Compile shim.c once; the library name carries the source hash, so an edit rebuilds."""
    with open(SHIM_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    build_dir = build_dir or os.path.join(cache_dir(), "xenstored-shim")
    library = os.path.join(build_dir, "xenstored-shim-%s.so" % digest)
    if os.path.exists(library):
        return library
    os.makedirs(build_dir, exist_ok=True)
    # Concurrent builders each compile to their own file; the rename is atomic.
    fd, partial = tempfile.mkstemp(suffix=".so", dir=build_dir)
    os.close(fd)
    command = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-Wno-unused-parameter",
               "-o", partial, SHIM_SOURCE, "-ldl"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        os.unlink(partial)
        raise LauncherError("gcc not found: run tests/setup.sh") from None
    if result.returncode != 0:
        os.unlink(partial)
        raise LauncherError("building the xenstored shim failed:\n%s" % result.stderr.strip())
    os.replace(partial, library)
    return library


# -- the domid set -----------------------------------------------------------------------------

def parse_domids(text):
    """'0-3,7' -> {0, 1, 2, 3, 7}; raises LauncherError on anything else."""
    domids = set()
    for part in text.replace(",", " ").split():
        first, sep, last = part.partition("-")
        try:
            low, high = int(first), int(last if sep else first)
        except ValueError:
            raise LauncherError("bad domid list %r: use numbers and ranges like 0-40,55" % text) from None
        if not 0 <= low <= high < DOMID_LIMIT:
            raise LauncherError("bad domid range %r: domids are 0-%d" % (part, DOMID_LIMIT - 1))
        domids.update(range(low, high + 1))
    return domids


def format_domids(domids):
    """{0, 1, 2, 7} -> '0-2,7' (the shim's file format)."""
    out, ordered = [], sorted(domids)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else "%d-%d" % (ordered[i], ordered[j]))
        i = j + 1
    return ",".join(out)


def _atomic_write(path, text):
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(partial, path)


def read_domids(rundir):
    try:
        with open(os.path.join(rundir, "domids")) as f:
            return parse_domids(f.read())
    except FileNotFoundError:
        return {0}


def set_domids(rundir, domids):
    """Replace the set of existing domids (dom0 always exists); the daemon sees it at once."""
    _atomic_write(os.path.join(rundir, "domids"), format_domids(set(domids) | {0}) + "\n")


# -- a minimal wire client (standard library only) -------------------------------------------
# The collection's adapter speaks through pyxs; the launcher must also run from a bare python3
# (molecule prepare steps, the demo before its venv exists), so it carries this small client.

XS_CONTROL, XS_DIRECTORY, XS_READ, XS_GET_PERMS, XS_TRANSACTION_START, XS_TRANSACTION_END = 0, 1, 2, 3, 6, 7
XS_WRITE, XS_MKDIR, XS_RM, XS_SET_PERMS, XS_ERROR, XS_DIRECTORY_PART = 11, 12, 13, 14, 16, 22
_HEADER = struct.Struct("<IIII")


class WireError(Exception):
    def __init__(self, name, path):
        super().__init__("%s: %s" % (name, path))
        self.name = name


class WireClient:
    """Blocking, one request at a time; enough for readiness checks and creating domains."""

    def __init__(self, socket_path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(socket_path)
                break
            except BlockingIOError:
                # xenstored listens with a backlog of 1: wait for it to accept the others.
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise
                time.sleep(0.001)
            except OSError:
                self.sock.close()
                raise
        self.tx_id = 0
        self.rq_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv(self, size):
        chunks = []
        while size:
            chunk = self.sock.recv(size)
            if not chunk:
                raise ConnectionResetError("xenstored closed the connection")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def request(self, op, *args, tx_id=None):
        payload = b"".join(args)
        self.rq_id += 1
        tx = self.tx_id if tx_id is None else tx_id
        self.sock.sendall(_HEADER.pack(op, self.rq_id, tx, len(payload)) + payload)
        r_op, _rq, _tx, size = _HEADER.unpack(self._recv(_HEADER.size))
        body = self._recv(size) if size else b""
        if r_op == XS_ERROR:
            raise WireError(body.rstrip(b"\0").decode(), args[0].rstrip(b"\0").decode() if args else "")
        return body

    def read(self, path):
        return self.request(XS_READ, path.encode() + b"\0").decode()

    def write(self, path, value):
        self.request(XS_WRITE, path.encode() + b"\0", value.encode())

    def mkdir(self, path):
        self.request(XS_MKDIR, path.encode() + b"\0")

    def rm(self, path):
        try:
            self.request(XS_RM, path.encode() + b"\0")
        except WireError as e:
            if e.name != "ENOENT":
                raise

    def set_perms(self, path, perms):
        self.request(XS_SET_PERMS, path.encode() + b"\0", *(p.encode() + b"\0" for p in perms))

    def get_perms(self, path):
        body = self.request(XS_GET_PERMS, path.encode() + b"\0")
        return tuple(p.decode() for p in body.split(b"\0") if p)

    def list(self, path):
        try:
            body = self.request(XS_DIRECTORY, path.encode() + b"\0")
        except WireError as e:
            if e.name != "E2BIG":
                raise
            return self._list_in_parts(path)
        return [n.decode() for n in body.split(b"\0") if n]

    def _list_in_parts(self, path):
        """XS_DIRECTORY_PART: '<generation>\\0' then names from a byte offset; '\\0\\0' ends."""
        names, offset = [], 0
        while True:
            body = self.request(XS_DIRECTORY_PART, path.encode() + b"\0", b"%d\0" % offset)
            chunk = body.partition(b"\0")[2]
            names += [n.decode() for n in chunk.split(b"\0") if n]
            if chunk in (b"", b"\0") or chunk.endswith(b"\0\0"):
                return names
            offset += len(chunk)

    def transaction(self, body):
        """Run body(self) in a transaction, retried on EAGAIN."""
        for _attempt in range(100):
            self.tx_id = int(self.request(XS_TRANSACTION_START, b"\0").rstrip(b"\0"))
            try:
                body(self)
            except BaseException:
                self.request(XS_TRANSACTION_END, b"F\0")
                self.tx_id = 0
                raise
            try:
                self.request(XS_TRANSACTION_END, b"T\0")
                return
            except WireError as e:
                if e.name != "EAGAIN":
                    raise
            finally:
                self.tx_id = 0
        raise LauncherError("transaction kept conflicting (EAGAIN)")


# -- start, stop, status ------------------------------------------------------------------------

def _paths(rundir):
    rundir = os.path.abspath(rundir)
    return rundir, os.path.join(rundir, "socket"), os.path.join(rundir, "pid")


def _answers(socket_path):
    try:
        with WireClient(socket_path, timeout=1.0) as client:
            client.read("/tool/xenstored")
        return True
    except (OSError, WireError):
        return False


def _process_state(pid):
    """'running', 'zombie' or 'gone'."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "gone"
    return "zombie" if state in ("Z", "X") else "running"


def _is_our_daemon(pid, rundir):
    """The pid is a xenstored started for this run directory (not a recycled pid)."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            environ = f.read().split(b"\0")
        exe = os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        return False
    return exe == "xenstored" and ("XENSTORED_RUNDIR=%s" % rundir).encode() in environ


def _read_pid(pid_file):
    try:
        with open(pid_file) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _die_with_parent():
    # PR_SET_PDEATHSIG: the daemon gets SIGTERM if the test process dies, even by SIGKILL.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def status(rundir):
    """The Daemon running for this run directory, or None."""
    rundir, socket_path, pid_file = _paths(rundir)
    pid = _read_pid(pid_file)
    if pid is None or _process_state(pid) != "running" or not _is_our_daemon(pid, rundir):
        return None
    return Daemon(rundir, pid, socket_path)


def start(rundir, domids="0", *, die_with_parent=False, timeout=START_TIMEOUT, _wait=True):
    """Start xenstored for `rundir` (created if needed) and wait until it answers a request.

    `domids` (a '0-40,55' string or an iterable of ints) is the initial set of existing domids.
    `die_with_parent` ties the daemon's life to the calling thread (for pytest fixtures).
    """
    rundir, socket_path, pid_file = _paths(rundir)
    if len(socket_path.encode()) > SOCKET_PATH_MAX:
        raise LauncherError("run directory %s is too deep: its socket path would be %d bytes, a unix socket "
                            "allows %d; use a shorter --rundir" % (rundir, len(socket_path.encode()), SOCKET_PATH_MAX))
    if status(rundir) is not None:
        raise LauncherError("xenstored already running for %s (pid %d)" % (rundir, _read_pid(pid_file)))
    xenstored = find_xenstored()
    shim = build_shim()
    os.makedirs(rundir, exist_ok=True)
    for stale in (socket_path, os.path.join(rundir, "socket_ro"), pid_file):
        if os.path.lexists(stale):
            os.unlink(stale)
    set_domids(rundir, parse_domids(domids) if isinstance(domids, str) else domids)
    env = dict(os.environ)
    env.update(XENSTORED_RUNDIR=rundir, LD_PRELOAD=shim,
               XEN_DISKS_DOMIDS_FILE=os.path.join(rundir, "domids"))
    env.pop("XENSTORED_PATH", None)
    with open(os.path.join(rundir, "xenstored.log"), "ab") as log:
        process = subprocess.Popen(
            [xenstored, "-N"], cwd=rundir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, preexec_fn=_die_with_parent if die_with_parent else None)
    _atomic_write(pid_file, "%d\n" % process.pid)
    daemon = Daemon(rundir, process.pid, socket_path)
    _PROCESSES[process.pid] = process
    if _wait:
        wait_ready(daemon, timeout)
    return daemon


def init_dom0(socket_path):
    """What xen-init-dom0 writes at boot: dom0's domid and name."""
    with WireClient(socket_path) as client:
        client.write("/local/domain/0/domid", "0")
        client.write("/local/domain/0/name", "Domain-0")


# Popen objects of daemons this process started, so stop() reaps them (no zombies).
_PROCESSES = {}


def wait_ready(daemon, timeout=START_TIMEOUT):
    """Wait for a real answer (the socket exists before the database does), then set up dom0."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not _answers(daemon.socket):
        if _process_state(daemon.pid) != "running":
            _reap(daemon.pid)
            raise LauncherError("xenstored for %s exited at start; its log:\n%s"
                                % (daemon.rundir, _log_tail(daemon.rundir)))
        if time.monotonic() > deadline:
            _kill(daemon.pid)
            raise LauncherError("xenstored for %s did not answer within %.0f s; its log:\n%s"
                                % (daemon.rundir, timeout, _log_tail(daemon.rundir)))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    init_dom0(daemon.socket)
    return daemon


def _log_tail(rundir, lines=20):
    try:
        with open(os.path.join(rundir, "xenstored.log"), errors="replace") as f:
            return "".join(f.readlines()[-lines:]) or "(empty)"
    except FileNotFoundError:
        return "(no log)"


def _reap(pid):
    process = _PROCESSES.pop(pid, None)
    if process is not None:
        process.wait()


def _kill(pid, timeout=STOP_TIMEOUT):
    """SIGTERM, then SIGKILL after `timeout`; returns once the process is gone."""
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while True:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        if pid in _PROCESSES:
            try:
                _PROCESSES[pid].wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        if _process_state(pid) != "running":
            _reap(pid)
            return
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL:
                raise LauncherError("xenstored pid %d does not die" % pid)
            sig, deadline = signal.SIGKILL, time.monotonic() + timeout
        time.sleep(0.005)


def stop(rundir, timeout=STOP_TIMEOUT):
    """Stop the daemon of `rundir` by its pid and wait for it; True if one was running."""
    rundir, socket_path, pid_file = _paths(rundir)
    pid = _read_pid(pid_file)
    running = pid is not None and _process_state(pid) == "running" and _is_our_daemon(pid, rundir)
    if running:
        _kill(pid, timeout)
    elif pid is not None:
        _reap(pid)
    for leftover in (pid_file, socket_path, os.path.join(rundir, "socket_ro")):
        if os.path.lexists(leftover):
            os.unlink(leftover)
    return running


def stop_started():
    """Stop every daemon this process started and has not stopped; returns their run dirs."""
    left = []
    for pid, process in list(_PROCESSES.items()):
        if process.poll() is None:
            left.append(_rundir_of(pid))
            _kill(pid)
        _PROCESSES.pop(pid, None)
    return left


def _rundir_of(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"XENSTORED_RUNDIR="):
                    return item.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return "pid %d" % pid


def host_dirs(base):
    """Run directories of a fleet, sorted."""
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("host-"))
    except FileNotFoundError:
        return []
    return [os.path.join(os.path.abspath(base), n) for n in names]


def start_many(base, count, domids="0", *, die_with_parent=False, timeout=START_TIMEOUT):
    """One daemon per simulated dom0: BASE/host-001 ... BASE/host-NNN. All or none start."""
    if count < 1:
        raise LauncherError("count must be at least 1")
    daemons = []
    try:
        for i in range(1, count + 1):
            daemons.append(start(os.path.join(base, HOST_DIR_FORMAT % i), domids,
                                 die_with_parent=die_with_parent, _wait=False))
        for daemon in daemons:
            wait_ready(daemon, timeout)
    except BaseException:
        for daemon in daemons:
            stop(daemon.rundir)
        raise
    return daemons


def stop_many(base):
    """Stop every daemon under BASE; returns how many were running."""
    return sum(stop(rundir) for rundir in host_dirs(base))


# -- simulated guests ----------------------------------------------------------------------------

def _check_guest_args(name, domid, guest_type, width):
    if not name or any(c in name for c in "\0\n/") or len(name) > 256:
        raise LauncherError("bad guest name %r" % (name,))
    if not 1 <= domid < DOMID_LIMIT:
        raise LauncherError("bad domid %r: guests are 1-%d" % (domid, DOMID_LIMIT - 1))
    if guest_type not in GUEST_TYPES:
        raise LauncherError("bad guest type %r: one of %s" % (guest_type, ", ".join(GUEST_TYPES)))
    if width not in (32, 64):
        raise LauncherError("bad guest width %r: 32 or 64" % (width,))


def _guests_file(rundir):
    return os.path.join(rundir, "guests.json")


_TRACE_LINE = re.compile(r"^IN (\S+) \S+ \S+ (\S+) \((.*)\)$")


@contextlib.contextmanager
def request_trace(socket_path, trace_file):
    """The requests the daemon receives inside the `with` block, from its own trace (xenstored's
    `logfile` control command): a list, filled at the end, of (connection, op, path) in order
    (path: the first argument, "" for none). The control requests that switch it are left out."""
    requests = []
    with open(trace_file, "w", encoding="utf-8"):
        pass  # the daemon appends
    with WireClient(socket_path) as client:
        client.request(XS_CONTROL, b"logfile\0", trace_file.encode() + b"\0")
    try:
        yield requests
    finally:
        with WireClient(socket_path) as client:
            client.request(XS_CONTROL, b"logfile\0", b"/dev/null\0")
        with open(trace_file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _TRACE_LINE.match(line.rstrip("\n"))
                if match and match.group(2) != "CONTROL":
                    requests.append((match.group(1), match.group(2), match.group(3).split(" ")[0]))


def read_node(socket_path, path):
    """The value of `path` on the daemon at `socket_path`, or None when it does not exist."""
    with WireClient(socket_path) as client:
        try:
            return client.read(path)
        except WireError:
            return None


def dump_nodes(socket_path, roots=("/",), skip=None):
    """{path: (value, perms)} of every node at and below `roots`, leaving out `skip` and below.
    A node removed while the dump runs is left out (for trees other clients are changing)."""
    out = {}
    with WireClient(socket_path) as client:
        stack = list(roots)
        while stack:
            path = stack.pop()
            if skip is not None and (path == skip or path.startswith(skip + "/")):
                continue
            try:
                value, perms, names = client.read(path), client.get_perms(path), client.list(path)
            except WireError:
                continue
            out[path] = (value, perms)
            stack.extend(path.rstrip("/") + "/" + n for n in names)
    return out


def read_guests(rundir):
    """{domid: {"name", "type", "width", "driver_domain", "uuid"}} of guests added here."""
    try:
        with open(_guests_file(rundir)) as f:
            return {int(k): v for k, v in json.load(f).items()}
    except FileNotFoundError:
        return {}


# -- libxl's domain configuration file --------------------------------------------------------
# Each simulated dom0 has its own /var/lib/xen: DIR/var-lib-xen (the modules' libxl_dir option).
LIBXL_DIR_NAME = "var-lib-xen"
GUEST_MEMORY_MB = 128
GUEST_KERNEL = "/boot/vmlinuz"
DM_VERSION = "qemu_xen"


def libxl_dir(rundir):
    """The directory standing for this dom0's /var/lib/xen (libxl's userdata files and locks)."""
    return os.path.join(os.path.abspath(rundir), LIBXL_DIR_NAME)


def guest_xl_cfg(name, guest_type):
    """The xl.cfg the launcher's guests stand for (what `xl create` would be given)."""
    lines = ['name = "%s"' % name, 'type = "%s"' % guest_type, "memory = %d" % GUEST_MEMORY_MB]
    if guest_type != "hvm":
        lines.append('kernel = "%s"' % GUEST_KERNEL)
    return "\n".join(lines) + "\n"


def guest_domain_config(name, guest_type, vm_uuid):
    """libxl_domain_config of guest_xl_cfg() exactly as Debian's xl 4.17 `-N create` prints it
    (checked against real xl; keys in libxl's IDL order, defaults left out), with the domain's
    uuid: what libxl stores in userdata-d.<domid>.<uuid>.libxl-json when it creates the guest."""
    type_info = {"vga": {}, "vnc": {}, "sdl": {}, "spice": {}, "rdm": {}} if guest_type == "hvm" else {}
    b_info = {"max_memkb": GUEST_MEMORY_MB * 1024, "target_memkb": GUEST_MEMORY_MB * 1024,
              "sched_params": {}, "claim_mode": "True"}
    if guest_type != "hvm":
        b_info["kernel"] = GUEST_KERNEL
    b_info["type." + guest_type] = type_info
    b_info.update({"arch_arm": {}, "arch_x86": {}})
    return {
        "c_info": {"type": guest_type, "name": name, "uuid": vm_uuid, "run_hotplug_scripts": "True"},
        "b_info": b_info,
        "on_reboot": "restart",
        "on_soft_reset": "soft_reset",
    }


def _json_string(value):
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\b": "\\b"}
    return '"%s"' % "".join(escapes.get(c, c) if ord(c) >= 0x20 or c in escapes else "\\u00%02X" % ord(c)
                            for c in value)


def libxl_json_text(value, depth=0):
    """`value` as libxl's yajl generator prints it (four-space indent; an empty map or array spans
    a blank line)."""
    pad = "    "
    if isinstance(value, dict):
        items = [pad * (depth + 1) + _json_string(k) + ": " + libxl_json_text(v, depth + 1) for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad * depth + "}"
    if isinstance(value, list):
        items = [pad * (depth + 1) + libxl_json_text(v, depth + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad * depth + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "%d" % value
    return _json_string(value)


def domain_config_path(rundir, domid, vm_uuid):
    return os.path.join(libxl_dir(rundir), "userdata-d.%d.%s.libxl-json" % (domid, vm_uuid))


def write_domain_config(rundir, domid, doc):
    """Store `doc` as libxl__userdata_store does: the text, a NUL, mode 0600, a rename."""
    directory = libxl_dir(rundir)
    os.makedirs(directory, exist_ok=True)
    path = domain_config_path(rundir, domid, doc["c_info"]["uuid"])
    partial = os.path.join(directory, "userdata-n.%d.%s.libxl-json" % (domid, doc["c_info"]["uuid"]))
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write((libxl_json_text(doc) + "\n\0").encode())
    os.rename(partial, path)
    return path


def read_domain_config(rundir, domid):
    """The guest's libxl domain configuration (parsed), or None when it has none."""
    info = read_guests(rundir).get(domid)
    if info is None:
        return None
    try:
        with open(domain_config_path(rundir, domid, info["uuid"]), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return json.loads(data.rstrip(b"\0").decode())


def add_guest(rundir, name, domid, guest_type, width=64, *, driver_domain=False, libxl_config=True,
              dm_pid=None):
    """Create domain `domid` as libxl__domain_make does, and make it exist for the shim.

    Nodes and permissions as libxl_create.c writes them (docs/XENSTORE-LAYOUT.md §1.4):
    /local/domain/D [n0,rD] with vm, name, domid and its standard subdirectories
    (device [n0,rD], control [n0,rD], data/drivers/feature/attr/error [nD], ...),
    /vm/UUID [n0,rD], /libxl/D and /libxl/D/device [n0], /libxl/D/type. A driver domain also
    gets ~/libxl and ~/device-model [nD]. The guest's width is not in xenstore on a real host
    either (libxl asks the hypervisor); it is recorded in DIR/guests.json.

    As libxl also: /libxl/D/dm-version (qemu_xen, written for every guest), for an HVM guest
    /local/domain/D/image/device-model-pid (`dm_pid`, default the launcher's own daemon: a live
    process standing for QEMU), and libxl's domain configuration file in libxl_dir(rundir)
    (guest_domain_config; `libxl_config=False` leaves it out, as for a guest xl did not create).
    """
    _check_guest_args(name, domid, guest_type, width)
    rundir, socket_path, _pid_file = _paths(rundir)
    if status(rundir) is None:
        raise LauncherError("no xenstored running for %s" % rundir)
    guests = read_guests(rundir)
    for other, info in guests.items():
        if info["name"] == name and other != domid:
            raise LauncherError("a guest named %r already exists (domid %d)" % (name, other))
    set_domids(rundir, read_domids(rundir) | {domid})
    vm_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, "xen-disks:%s:%d:%s" % (rundir, domid, name)))
    dom, vm, lib = "/local/domain/%d" % domid, "/vm/%s" % vm_uuid, "/libxl/%d" % domid
    roperm, rwperm, noperm = ["n0", "r%d" % domid], ["n%d" % domid], ["n0"]

    def create(xs):
        for path, perms in ((dom, roperm), (vm, roperm), (lib, noperm)):
            xs.rm(path)
            xs.mkdir(path)
            xs.set_perms(path, perms)
        xs.mkdir(lib + "/device")
        xs.set_perms(lib + "/device", noperm)
        xs.write(dom + "/vm", vm)
        xs.write(dom + "/name", name)
        xs.write(vm + "/name", name)
        xs.write(vm + "/uuid", vm_uuid)
        nodes = [("cpu", roperm), ("memory", roperm), ("device", roperm),
                 ("device/suspend/event-channel", rwperm), ("control", roperm)]
        if guest_type == "hvm":
            nodes.append(("hvmloader", roperm))
        controls = ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend"]
        if guest_type == "hvm":
            controls += ["feature-s3", "feature-s4"]
        nodes += [("control/" + c, rwperm) for c in controls + ["sysrq"]]
        nodes += [(n, rwperm) for n in ("data", "drivers", "feature", "attr", "error")]
        if driver_domain:
            nodes += [("libxl", rwperm), ("device-model", rwperm)]
        for node, perms in nodes:
            xs.mkdir(dom + "/" + node)
            xs.set_perms(dom + "/" + node, perms)
        xs.write(dom + "/control/platform-feature-multiprocessor-suspend", "1")
        xs.write(dom + "/control/platform-feature-xs_reset_watches", "1")
        xs.write(lib + "/type", guest_type)
        xs.write(lib + "/dm-version", DM_VERSION)
        # libxl__build_pre: the memory xl list -l reads back (KiB, as in the JSON file)
        for node in ("static-max", "target"):
            xs.write(dom + "/memory/" + node, str(GUEST_MEMORY_MB * 1024))
        if guest_type == "hvm":
            xs.write(dom + "/image/device-model-pid", str(dm_pid if dm_pid is not None else status(rundir).pid))
        # Written once the domain is built (libxl__build_post).
        xs.write(dom + "/domid", str(domid))

    _remove_userdata(rundir, domid)
    if libxl_config:
        write_domain_config(rundir, domid, guest_domain_config(name, guest_type, vm_uuid))
    with WireClient(socket_path) as client:
        client.transaction(create)
    guests[domid] = {"name": name, "type": guest_type, "width": width,
                     "driver_domain": driver_domain, "uuid": vm_uuid}
    _atomic_write(_guests_file(rundir), json.dumps({str(k): v for k, v in sorted(guests.items())}, indent=1))
    return guests[domid]


def _path_cleanup(xs, path):
    """libxl__xs_path_cleanup: remove `path`, then each parent that is empty-valued and
    childless, up to the first that is not (docs/XENSTORE-LAYOUT.md §4.2)."""
    xs.rm(path)
    parent = path.rsplit("/", 1)[0]
    while parent:
        try:
            if xs.read(parent) != "" or xs.list(parent):
                return
        except WireError:
            return
        xs.rm(parent)
        parent = parent.rsplit("/", 1)[0]


def _remove_userdata(rundir, domid):
    """libxl__userdata_destroyall: every userdata-?.D.* file but the userdata lock."""
    directory = libxl_dir(rundir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        parts = name.split(".")
        if len(parts) >= 4 and parts[0].startswith("userdata-") and len(parts[0]) == 10 \
                and parts[1] == str(domid) and not name.endswith(".domain-userdata-lock"):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def remove_guest(rundir, domid):
    """Destroy the domain as libxl does (§4.3, with FORCE_ON): the backend directories its
    libxl records name (with their empty parents), /vm/UUID, /local/domain/D, /libxl/D. The
    domid stops existing."""
    rundir, socket_path, _pid_file = _paths(rundir)
    guests = read_guests(rundir)
    info = guests.pop(domid, None)
    lib = "/libxl/%d" % domid

    def destroy(xs):
        try:
            kinds = xs.list(lib + "/device")
        except WireError:
            kinds = []
        for kind in kinds:
            for devid in xs.list("%s/device/%s" % (lib, kind)):
                try:
                    backend = xs.read("%s/device/%s/%s/backend" % (lib, kind, devid))
                except WireError:
                    continue
                if backend.startswith("/local/domain/"):
                    _path_cleanup(xs, backend)
        vm = None
        try:
            vm = xs.read("/local/domain/%d/vm" % domid)
        except WireError:
            pass
        for path in filter(None, (vm, info and "/vm/%s" % info["uuid"])):
            xs.rm(path)
        xs.rm("/local/domain/%d" % domid)
        xs.rm(lib)

    with WireClient(socket_path) as client:
        client.transaction(destroy)
    _remove_userdata(rundir, domid)
    set_domids(rundir, read_domids(rundir) - {domid})
    _atomic_write(_guests_file(rundir), json.dumps({str(k): v for k, v in sorted(guests.items())}, indent=1))


# -- CLI -------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="Real xenstored daemons for tests and demos.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start", help="start one daemon; prints its socket path")
    p.add_argument("--rundir", required=True)
    p.add_argument("--domids", default="0", help="existing domids, e.g. 0-40,55 (default 0)")
    p = sub.add_parser("stop", help="stop the daemon of a run directory")
    p.add_argument("--rundir", required=True)
    p = sub.add_parser("status", help="exit 0 and print pid and socket if running, else exit 3")
    p.add_argument("--rundir", required=True)
    p = sub.add_parser("start-many", help="one daemon per simulated dom0 under BASE/host-NNN")
    p.add_argument("--base", required=True)
    p.add_argument("--count", required=True, type=int)
    p.add_argument("--domids", default="0")
    p = sub.add_parser("stop-many", help="stop every daemon under BASE")
    p.add_argument("--base", required=True)
    p = sub.add_parser("add-guest", help="create a domain as libxl does")
    p.add_argument("--rundir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--domid", required=True, type=int)
    p.add_argument("--type", required=True, choices=GUEST_TYPES)
    p.add_argument("--width", type=int, default=64, choices=(32, 64))
    p.add_argument("--driver-domain", action="store_true", help="a guest that serves backends")
    p.add_argument("--no-libxl-config", action="store_true",
                   help="no libxl domain configuration file (a guest xl did not create)")
    p.add_argument("--dm-pid", type=int, help="device model pid of an HVM guest")
    p = sub.add_parser("libxl-dir", help="print the directory standing for this dom0's /var/lib/xen")
    p.add_argument("--rundir", required=True)
    p = sub.add_parser("remove-guest", help="remove a domain as libxl's destroy does")
    p.add_argument("--rundir", required=True)
    p.add_argument("--domid", required=True, type=int)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            print(start(args.rundir, args.domids).socket)
        elif args.command == "stop":
            if not stop(args.rundir):
                print("no xenstored was running for %s" % os.path.abspath(args.rundir), file=sys.stderr)
        elif args.command == "status":
            daemon = status(args.rundir)
            if daemon is None:
                print("stopped")
                return 3
            print("running pid %d socket %s" % (daemon.pid, daemon.socket))
        elif args.command == "start-many":
            for daemon in start_many(args.base, args.count, args.domids):
                print("%s %s" % (os.path.basename(daemon.rundir), daemon.socket))
        elif args.command == "stop-many":
            print("stopped %d" % stop_many(args.base))
        elif args.command == "add-guest":
            add_guest(args.rundir, args.name, args.domid, args.type, args.width,
                      driver_domain=args.driver_domain, libxl_config=not args.no_libxl_config,
                      dm_pid=args.dm_pid)
        elif args.command == "libxl-dir":
            print(libxl_dir(args.rundir))
        elif args.command == "remove-guest":
            remove_guest(args.rundir, args.domid)
    except (LauncherError, WireError, OSError) as e:
        print("launcher: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
