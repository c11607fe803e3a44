# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Debian's real QEMU (`qemu-system-x86_64`, TCG, paused) as the device model of a simulated
HVM guest, started with libxl 4.17's own options for its QMP socket and its emulated cdroms
(libxl_dm.c), plus two test tools that never use the collection's code:

- `DeviceModel.query(...)`: a second monitor (`qmp-test-<domid>`, as libxl's own
  `qmp-libxenstat-<domid>`) so tests can ask QEMU (`query-block`, `query-fdsets`) at any time
  without touching libxl's socket, which QEMU serves to one client at a time;
- `RecordingProxy`: a unix socket that relays a QMP client to QEMU and records every byte the
  client sends, with the file descriptors passed and the byte they came with.
Standard library only.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

QEMU = "qemu-system-x86_64"
START_TIMEOUT = 30.0


def available():
    return shutil.which(QEMU) is not None


def disk_index(devid):
    """libxl__device_disk_dev_number's `disk` for an emulated hd* vdev (devid 768 + 64 * n ...)."""
    major, minor = devid >> 8, devid & 0xFF
    first = {3: 0, 22: 2}[major]
    return first + minor // 64


def cdrom_args(devid, target=None, fmt="raw"):
    """libxl_dm.c's arguments for an emulated cdrom (qemu-xen, no stub domain)."""
    drive_id = "ide-%d" % devid
    drive = "if=none,readonly=on,id=%s" % drive_id
    if target:
        drive += ",file=%s,format=%s" % (target, fmt)
    disk = disk_index(devid)
    return ["-drive", drive, "-device", "ide-cd,id=%s,drive=%s,bus=ide.%d,unit=%d"
            % (drive_id, drive_id, disk // 2, disk % 2)]


def device_model_args(domid, run_dir, cdroms=()):
    """A paused TCG machine with libxl's QMP monitor `<run_dir>/qmp-libxl-<domid>`, the test
    monitor `<run_dir>/qmp-test-<domid>` and `cdroms` ((devid, target or None), ...)."""
    args = [QEMU, "-machine", "pc,accel=tcg", "-S", "-display", "none", "-nodefaults", "-m", "16",
            "-chardev", "socket,id=libxl-cmd,path=%s/qmp-libxl-%d,server=on,wait=off" % (run_dir, domid),
            "-mon", "chardev=libxl-cmd,mode=control",
            "-chardev", "socket,id=test-cmd,path=%s/qmp-test-%d,server=on,wait=off" % (run_dir, domid),
            "-mon", "chardev=test-cmd,mode=control"]
    for devid, target in cdroms:
        args += cdrom_args(devid, target)
    return args


class QmpTestClient:
    """A minimal blocking QMP client of the tests (independent of the collection's adapter)."""

    def __init__(self, path, timeout=20.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = self._read()
        self.call("qmp_capabilities")

    def _read(self):
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("QEMU closed the test monitor")
            message = json.loads(line)
            if "event" not in message:
                return message

    def call(self, command, **arguments):
        message = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\r\n")
        answer = self._read()
        if "error" in answer:
            raise RuntimeError("%s: %s" % (command, answer["error"]))
        return answer["return"]

    def close(self):
        self.file.close()
        self.sock.close()


class DeviceModel:
    """One QEMU process; `stop()` kills it (by pid) and waits."""

    def __init__(self, domid, run_dir, cdroms=(), log_path=None):
        self.domid = domid
        self.run_dir = str(run_dir)
        self.args = device_model_args(domid, self.run_dir, cdroms)
        self.log_path = log_path or os.path.join(self.run_dir, "qemu-dm-%d.log" % domid)
        self.proc = None
        self._client = None

    @property
    def qmp_socket(self):
        return os.path.join(self.run_dir, "qmp-libxl-%d" % self.domid)

    @property
    def test_socket(self):
        return os.path.join(self.run_dir, "qmp-test-%d" % self.domid)

    def start(self):
        for path in (self.qmp_socket, self.test_socket):  # left by a QEMU that was killed
            if os.path.exists(path):
                os.unlink(path)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while not (os.path.exists(self.qmp_socket) and os.path.exists(self.test_socket)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path, errors="replace") as log:
                    raise RuntimeError("QEMU did not start (%s): %s" % (" ".join(self.args), log.read()[-2000:]))
            time.sleep(0.02)
        return self

    def query(self, command, **arguments):
        if self._client is None:
            self._client = QmpTestClient(self.test_socket)
        return self._client.call(command, **arguments)

    def medium(self, devid):
        """(file name, virtual size) of the medium in cdrom `ide-<devid>`, or None when empty."""
        for device in self.query("query-block"):
            if device.get("qdev") == "ide-%d" % devid:
                inserted = device.get("inserted")
                if inserted is None:
                    return None
                return inserted["file"], inserted["image"]["virtual-size"]
        raise LookupError("no cdrom ide-%d in query-block" % devid)

    def fdset_files(self):
        """{fdset-id: [(opaque, the file the fd is open on)]} (QEMU's fds read from /proc)."""
        out = {}
        for fdset in self.query("query-fdsets"):
            files = []
            for fd in fdset["fds"]:
                try:
                    target = os.readlink("/proc/%d/fd/%d" % (self.proc.pid, fd["fd"]))
                except OSError:
                    target = None
                files.append((fd.get("opaque"), target))
            out[fdset["fdset-id"]] = files
        return out

    def pause(self):
        """SIGSTOP, and wait until every thread of QEMU is stopped (state T in /proc)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + START_TIMEOUT
        task_dir = "/proc/%d/task" % self.proc.pid
        while time.monotonic() < deadline:
            states = []
            for tid in os.listdir(task_dir):
                with open("%s/%s/stat" % (task_dir, tid)) as handle:
                    states.append(handle.read().rsplit(")", 1)[1].split()[0])
            if all(state in ("T", "t") for state in states):
                return
            time.sleep(0.01)
        raise RuntimeError("QEMU %d did not stop" % self.proc.pid)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self):
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(timeout=30)


class RecordingProxy:
    """Listens on `path`, relays each client to the QMP socket `target` (fds included) and
    records what clients send: `messages()` is a list of (text, fd_at, fd_files) per CRLF
    message, `fd_at` the byte offset within the message that carried file descriptors (or
    None), `fd_files` the files they were open on."""

    def __init__(self, path, target):
        self.path = path
        self.target = target
        self.sent = bytearray()
        self.fds = []            # (offset in `sent`, [file, ...])
        self.received = bytearray()
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            with client:
                self._relay(client)

    def _relay(self, client):
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.target)
        done = threading.Event()

        def down():
            while True:
                try:
                    data = upstream.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                self.received += data
                try:
                    client.sendall(data)
                except OSError:
                    break
            done.set()

        thread = threading.Thread(target=down, daemon=True)
        thread.start()
        with upstream:
            while True:
                fds = array.array("i")
                try:
                    data, ancdata, _flags, _addr = client.recvmsg(65536, socket.CMSG_SPACE(16 * fds.itemsize))
                except OSError:
                    break
                if not data:
                    break
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[:len(payload) - (len(payload) % fds.itemsize)])
                offset = len(self.sent)
                self.sent += data
                if fds:
                    files = [os.readlink("/proc/self/fd/%d" % fd) for fd in fds]
                    self.fds.append((offset, files))
                    upstream.sendmsg([data[:1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                    upstream.sendall(data[1:])
                    for fd in fds:
                        os.close(fd)
                else:
                    upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)
            done.wait(10)

    def messages(self):
        out, start = [], 0
        text = bytes(self.sent)
        while True:
            end = text.find(b"\r\n", start)
            if end < 0:
                break
            fd_at, fd_files = None, []
            for offset, files in self.fds:
                if start <= offset <= end:
                    fd_at, fd_files = offset - start, files
            out.append((text[start:end + 2].decode("utf-8"), fd_at, fd_files))
            start = end + 2
        return out

    def close(self):
        self._stop.set()
        self._listener.close()
        self._thread.join(10)
        try:
            os.unlink(self.path)
        except OSError:
            pass
