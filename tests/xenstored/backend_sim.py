# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A simulated block backend driver (blkback / QEMU xen-block / a virtio daemon) AND guest frontend.

Test infrastructure, private to xen.disks. It plays, against a real xenstored, every party of the
XenbusState handshake that is not the toolstack (docs/XENSTORE-LAYOUT.md §3.3, §3.5, §4.2):

- backend state 1 with online=1 -> probe nodes (feature-max-indirect-segments,
  multi-queue-max-queues, max-ring-page-order; qdisk: hotplug-status=connected; vbd, unless
  --no-udev: what udev's run of the hotplug script writes, physical-device,
  physical-device-path, hotplug-status=connected) and state 2;
- frontend state 1 while the backend is 2 -> ring-ref, event-channel, protocol,
  feature-persistent, frontend state 3;
- frontend 3 while the backend is 2 (vbd: once physical-device exists, as blkback needs) ->
  feature-*, sectors, sector-size, physical-sector-size, info, backend state 4;
- backend 4 -> frontend 4;
- a connected vbd whose `physical-device-path` is a real block device (a loop device): its size
  checked again while idle, and `sectors` republished when it changed, as blkback's
  xen_vbd_resize does after `losetup -c` (a fake path such as /dev/dm-3 is never re-read, and
  idle checks cost nothing for it: they read only the backends that have a real device, so the
  simulator's work per event or idle tick does not grow with the number of disks on the host);
- backend 5 (libxl's close) -> frontend 5 then 6 -> backend 6 (also when the frontend directory
  was removed, as FORCE_ON does); in a driver domain (B != 0), a Closed backend with online=0 is
  then removed, as `xl devd` does.

It only ever writes foreign nodes (never libxl's owned nodes). Modes: `connect` (default), `slow`
(each step after --delay seconds), `never` (answers nothing: timeouts and force).

With --no-udev, a vbd backend waits for the hotplug script the toolstack runs (xen_disk's
hotplug_scripts=run) to write physical-device, as blkback does.

CLI: backend_sim.py --socket PATH [--mode connect|never|slow] [--delay S] [--no-udev]
                    [--devd-delay S] [--pidfile F] [--daemon]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import time

from pyxs import Client, PyXSError

MODES = ("connect", "never", "slow")
WATCH_ROOT = "/local/domain"
_TOKEN = b"xen-disks-backend-sim"

_BACKEND_RE = re.compile(r"^/local/domain/(\d+)/backend/(vbd|qdisk|virtio_disk)/(\d+)/(\d+)(?:/|$)")
_FRONTEND_RE = re.compile(r"^/local/domain/(\d+)/device/(vbd|virtio_disk)/(\d+)(?:/|$)")

# blkif.h info flags
VDISK_CDROM, VDISK_REMOVABLE, VDISK_READONLY = 1, 2, 4
DEFAULT_SECTORS = 2097152  # 1 GiB of 512-byte sectors when the target cannot be sized


def _sectors_of(target):
    try:
        with open(target, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
    except OSError:
        return DEFAULT_SECTORS
    return size // 512 or DEFAULT_SECTORS


def _device_sectors(device):
    """Sectors of `device` when it is a real block device (a loop device), else None."""
    if not device or not device.startswith("/dev/"):
        return None
    try:
        if not stat.S_ISBLK(os.stat(device).st_mode):
            return None
        with open(device, "rb") as handle:
            return handle.seek(0, os.SEEK_END) // 512
    except OSError:
        return None


def kind_connected(items):
    """Whether a step's writes move a vbd backend to Connected."""
    return any(path.endswith("/state") and value == "4" and "/backend/vbd/" in path for path, value in items)


def info_flags(device_type, removable, mode):
    """blkif `info` bit flags from the backend's own nodes."""
    flags = 0
    if device_type == "cdrom":
        flags |= VDISK_CDROM
    if removable == "1":
        flags |= VDISK_REMOVABLE
    if mode != "w":
        flags |= VDISK_READONLY
    return flags


class BackendSimulator:
    """Watch /local/domain and move every disk device along the XenbusState handshake."""

    def __init__(self, socket_path, mode="connect", delay=0.2, udev=True, devd_delay=0.0):
        if mode not in MODES:
            raise ValueError("mode must be one of %s, got %r" % (", ".join(MODES), mode))
        self.socket_path = socket_path
        self.mode = mode
        self.delay = delay
        self.udev = udev
        self.devd_delay = devd_delay
        self.client = None
        self.monitor = None
        self.connected = set()   # vbd backends moved to Connected
        self.devices = {}        # those of them served by a real block device: bpath -> device path

    # -- xenstore helpers (privileged dom0 client) ---------------------------------------------
    def _read(self, path):
        try:
            return self.client.read(path.encode()).decode()
        except PyXSError as exc:
            if exc.args and exc.args[0] == errno.ENOENT:
                return None
            raise

    # -- the state machine ------------------------------------------------------------------
    def step_backend(self, bpath):
        """Advance one device, identified by its backend directory, by one step; True if it wrote.

        Reads and writes happen in one transaction, so a step decided on states that changed
        meanwhile (libxl closing the device, say) conflicts at commit and is decided again."""
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.devd_delay and bpath.split("/")[3] != "0" and self._read(bpath + "/state") == "6" \
                and self._read(bpath + "/online") == "0":
            # `xl devd` takes a while before it removes a closed backend (its hotplug script);
            # libxl, still waiting to read Closed, would otherwise find the backend gone
            time.sleep(self.devd_delay)
        for _attempt in range(50):
            self.client.transaction()
            try:
                items = self._decide(bpath)
                for path, value in items:
                    if value is None:
                        self.client.delete(path.encode())
                    elif value == "":
                        self.client.mkdir(path.encode())
                    else:
                        self.client.write(path.encode(), value.encode())
            except PyXSError as exc:
                self.client.rollback()
                if exc.args and exc.args[0] == errno.EAGAIN:
                    continue
                raise
            except BaseException:
                self.client.rollback()
                raise
            if self.client.commit():
                if kind_connected(items):
                    self.connected.add(bpath)
                    self._track_device(bpath)
                return bool(items)
        return False

    def _block_sectors(self, bpath):
        """Sectors of the backend's physical device when it is a real block device, else None."""
        return _device_sectors(self._read(bpath + "/physical-device-path"))

    def _track_device(self, bpath):
        """Note (or forget) a connected backend's real block device, whose size is then watched.
        Called at the connect and whenever its `physical-device-path` is written afterwards."""
        device = self._read(bpath + "/physical-device-path")
        if _device_sectors(device) is None:
            self.devices.pop(bpath, None)
        else:
            self.devices[bpath] = device

    def republish_sizes(self):
        """blkback's xen_vbd_resize: a Connected vbd whose device changed size publishes it.
        Only backends with a real block device are read (none on a host of fake paths)."""
        for bpath, device in sorted(self.devices.items()):
            if self._read(bpath + "/state") != "4":
                self.devices.pop(bpath)
                self.connected.discard(bpath)
                continue
            sectors = _device_sectors(device)
            if sectors is not None and str(sectors) != self._read(bpath + "/sectors"):
                self.client.write((bpath + "/sectors").encode(), str(sectors).encode())

    def _decide(self, bpath):
        """The nodes the next step writes (in order), from the current states; [] for none."""
        bstate = self._read(bpath + "/state")
        if bstate is None:
            return []
        kind = bpath.split("/")[5]
        fpath = self._read(bpath + "/frontend")
        fstate = self._read(fpath + "/state") if fpath else None
        online = self._read(bpath + "/online")

        if bstate == "1" and online == "1":
            probe = [(bpath + "/feature-max-indirect-segments", "256"),
                     (bpath + "/multi-queue-max-queues", "2"),
                     (bpath + "/max-ring-page-order", "4")]
            if kind == "qdisk":
                probe.append((bpath + "/hotplug-status", "connected"))
            if kind == "vbd" and self.udev and self._read(bpath + "/physical-device") is None:
                probe += [(bpath + "/physical-device", "fd:3"),
                          (bpath + "/physical-device-path", "/dev/dm-3"),
                          (bpath + "/hotplug-status", "connected")]
            return probe + [(bpath + "/state", "2")]

        if bstate == "2" and fpath and fstate == "1":
            return [(fpath + "/ring-ref", "8"),
                    (fpath + "/event-channel", "12"),
                    (fpath + "/protocol", "x86_64-abi"),
                    (fpath + "/feature-persistent", "1"),
                    (fpath + "/state", "3")]

        if bstate == "2" and fstate == "3":
            if kind == "vbd" and self._read(bpath + "/physical-device") is None:
                return []  # blkback waits for the hotplug script
            return self._connect_nodes(bpath, kind) + [(bpath + "/state", "4")]

        if bstate == "4" and fstate == "3":
            return [(fpath + "/state", "4")]

        if bstate == "5":
            if fstate in ("1", "2", "3", "4"):
                return [(fpath + "/state", "5")]
            if fstate == "5":
                return [(fpath + "/state", "6")]
            # frontend Closed, or gone (FORCE_ON removed it): the backend closes too
            return [(bpath + "/state", "6")]

        if bstate == "6" and online == "0" and bpath.split("/")[3] != "0":
            # a driver domain's `xl devd` removes its own backend directory once closed (§4.5)
            return [(bpath, None)]
        return []

    def _connect_nodes(self, bpath, kind):
        params = self._read(bpath + "/params") or ""
        target = params.split(":", 1)[1] if kind == "qdisk" and ":" in params else params
        nodes = []
        discard = self._read(bpath + "/discard-enable") == "1"
        nodes += [(bpath + "/feature-flush-cache", "1"),
                  (bpath + "/feature-barrier", "0" if kind == "qdisk" else "1"),
                  (bpath + "/feature-discard", "1" if discard else "0")]
        if discard:
            nodes += [(bpath + "/discard-granularity", "4096"),
                      (bpath + "/discard-alignment", "0"),
                      (bpath + "/discard-secure", "0")]
        info = info_flags(self._read(bpath + "/device-type"), self._read(bpath + "/removable"),
                          self._read(bpath + "/mode"))
        sectors = 0 if params in ("", "aio:") else _sectors_of(target)
        if kind == "vbd" and self._block_sectors(bpath) is not None:
            sectors = self._block_sectors(bpath)
        nodes += [(bpath + "/feature-persistent", "1"),
                  (bpath + "/sectors", str(sectors)),
                  (bpath + "/sector-size", "512"),
                  (bpath + "/physical-sector-size", "512"),
                  (bpath + "/info", str(info))]
        return nodes

    def _backends_under(self, path):
        """Backend directories touched by an event on `path`."""
        match = _BACKEND_RE.match(path)
        if match:
            return {"/local/domain/%s/backend/%s/%s/%s" % match.groups()}
        match = _FRONTEND_RE.match(path)
        if match:
            fdir = "/local/domain/%s/device/%s/%s" % match.groups()
            bpath = self._read(fdir + "/backend")
            return {bpath} if bpath and _BACKEND_RE.match(bpath) else set()
        return set()

    def _all_backends(self):
        found = set()
        for dom in self._list(WATCH_ROOT):
            base = "%s/%s/backend" % (WATCH_ROOT, dom)
            for kind in self._list(base):
                for front in self._list("%s/%s" % (base, kind)):
                    for dev in self._list("%s/%s/%s" % (base, kind, front)):
                        path = "%s/%s/%s/%s" % (base, kind, front, dev)
                        if _BACKEND_RE.match(path):
                            found.add(path)
        return found

    def _list(self, path):
        try:
            return [c.decode() for c in self.client.list(path.encode())]
        except PyXSError:
            return []

    # -- main loop --------------------------------------------------------------------------
    def serve(self, stop=None):
        """Run until `stop()` returns true (or forever). Blocks."""
        self.client = Client(unix_socket_path=self.socket_path)
        self.client.connect()
        self.monitor = self.client.monitor()
        self.monitor.watch(WATCH_ROOT.encode(), _TOKEN)
        try:
            while not (stop and stop()):
                try:
                    event = self.monitor.events.get(timeout=0.2)
                except queue.Empty:
                    if not self.client.router.thread.is_alive():
                        return  # xenstored went away: nothing left to simulate
                    if self.devices and self.mode != "never":
                        with contextlib.suppress(PyXSError):
                            self.republish_sizes()
                    continue
                paths = {event[0].decode()}
                while True:  # coalesce a burst (one transaction fires many events)
                    try:
                        paths.add(self.monitor.events.get_nowait()[0].decode())
                    except queue.Empty:
                        break
                if self.mode == "never":
                    continue
                for path in paths:
                    # a device written after the connect (a test's loop device): watch its size
                    if path.endswith("/physical-device-path"):
                        bpath = path[:-len("/physical-device-path")]
                        if bpath in self.connected:
                            with contextlib.suppress(PyXSError):
                                self._track_device(bpath)
                if WATCH_ROOT in paths:
                    backends = self._all_backends()
                else:
                    backends = set()
                    for path in paths:
                        backends |= self._backends_under(path)
                for bpath in sorted(backends):
                    while self.step_backend(bpath):
                        pass
        finally:
            with contextlib.suppress(Exception):
                self.client.close()


@contextlib.contextmanager
def running(socket_path, mode="connect", delay=0.2, udev=True, devd_delay=0.0):
    """Run the simulator as a child process for the duration of a `with` block (tests)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--socket", socket_path,
                             "--mode", mode, "--delay", str(delay), "--ready-fd", "1",
                             "--devd-delay", str(devd_delay)]
                            + ([] if udev else ["--no-udev"]),
                            stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("backend simulator did not start (exit %s)" % proc.poll())
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _daemonize(pidfile):
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if pidfile:
        with open(pidfile, "w") as handle:
            handle.write("%d\n" % os.getpid())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--socket", required=True, help="xenstored socket path")
    parser.add_argument("--mode", choices=MODES, default="connect")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per step in slow mode")
    parser.add_argument("--no-udev", dest="udev", action="store_false",
                        help="vbd backends wait for the toolstack's hotplug script")
    parser.add_argument("--devd-delay", type=float, default=0.0,
                        help="seconds a driver domain's xl devd takes before removing a closed backend")
    parser.add_argument("--pidfile", help="write the simulator's pid here")
    parser.add_argument("--daemon", action="store_true", help="detach into the background")
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not os.path.exists(args.socket):
        parser.error("no xenstored socket at %s" % args.socket)
    if args.daemon:
        _daemonize(args.pidfile)
    elif args.pidfile:
        with open(args.pidfile, "w") as handle:
            handle.write("%d\n" % os.getpid())

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    sim = BackendSimulator(args.socket, args.mode, args.delay, args.udev, args.devd_delay)
    announce = _announce(args.ready_fd) if args.ready_fd is not None else (lambda: False)
    # stop() is first called after the watch is registered: "ready" means nothing is missed
    sim.serve(stop=lambda: announce() or bool(stopping))
    if args.pidfile:
        with contextlib.suppress(OSError):
            os.unlink(args.pidfile)
    return 0


def _announce(fd):
    """A stop() callback that prints 'ready' once, on its first call (after the watch is set)."""
    done = []

    def check():
        if not done:
            os.write(fd, b"ready\n")
            done.append(True)
        return False
    return check


if __name__ == "__main__":
    sys.exit(main())
