# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A simulated hostile guest: it rewrites its own frontend nodes, permissions and states.

Test infrastructure, private to xen.disks. A guest owns `/local/domain/<D>/device/` (libxl
gives it the frontend directories) and may rewrite, remove or re-create anything there,
permissions included. This process does exactly that, and nothing else: every write it makes
is below that directory (a unix-socket connection to xenstored is privileged, so the
restriction is this program's, not the daemon's).

Modes:
- `flap-state`: rewrite the `state` node of every frontend of the guest, `--rate` writes per
  second in total (xenstored's per-guest rate limit is about 200/s);
- `random`: seeded random mutations (`--seed`), a random pause of up to `--pause` s between
  them: states (valid or not), the `backend` node (removed, or pointing at another guest's
  backend), the whole directory (removed, re-created), its permissions, junk nodes, and fake
  devices pointing at other guests' backends.

CLI: hostile_guest.py --socket PATH --domid D [--mode flap-state|random] [--rate N]
                      [--seed S] [--pause S] [--ready-fd FD]
On SIGTERM it stops and prints `writes=N` (the mutations it made) on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time

from pyxs import Client, PyXSError

MODES = ("flap-state", "random")


class HostileGuest:
    """Mutations of guest `domid`'s own frontend nodes, over one pyxs connection."""

    def __init__(self, client, domid, rng, others=()):
        self.client = client
        self.domid = domid
        self.rng = rng
        self.others = list(others)  # other guests' domids (for perms and foreign backend paths)
        self.base = "/local/domain/%d/device" % domid
        self.writes = 0

    def frontends(self):
        out = []
        for kind in ("vbd", "virtio_disk"):
            try:
                names = self.client.list(("%s/%s" % (self.base, kind)).encode())
            except PyXSError:
                continue
            out += ["%s/%s/%s" % (self.base, kind, n.decode()) for n in names]
        return out

    def _do(self, action, path, *args):
        if not path.startswith(self.base + "/"):
            raise AssertionError("a guest only writes its own frontend nodes, not %s" % path)
        try:
            if action == "write":
                self.client.write(path.encode(), args[0].encode())
            elif action == "rm":
                self.client.delete(path.encode())
            else:
                self.client.set_perms(path.encode(), [p.encode() for p in args[0]])
        except (PyXSError, ValueError):
            return  # e.g. a node removed meanwhile: the guest does not care
        self.writes += 1

    def flap_state(self, front, value):
        self._do("write", front + "/state", value)

    def random_step(self):
        fronts = self.frontends()
        rng = self.rng
        front = rng.choice(fronts) if fronts else "%s/vbd/%d" % (self.base, 51712)
        other = rng.choice(self.others) if self.others else 0
        choice = rng.randrange(12)
        if choice <= 2:
            self._do("write", front + "/state", rng.choice("012345678") if choice else rng.choice(["x", " ", "-1", "09"]))
        elif choice == 3:
            self._do("rm", front + "/state")
        elif choice == 4:
            self._do("rm", front + "/backend")
        elif choice == 5:
            self._do("write", front + "/backend", "/local/domain/0/backend/vbd/%d/%s" % (other, front.rsplit("/", 1)[1]))
        elif choice == 6:
            self._do("rm", front)
        elif choice == 7:  # re-create what a frontend looks like, pointing where it should
            devid = front.rsplit("/", 1)[1]
            self._do("write", front + "/backend", "/local/domain/0/backend/vbd/%d/%s" % (self.domid, devid))
            self._do("write", front + "/state", "1")
        elif choice == 8:
            perms = rng.choice([["n%d" % self.domid], ["n%d" % self.domid, "r0"],
                                ["n%d" % self.domid, "r0", "r%d" % other], ["n%d" % self.domid, "b0"],
                                ["n0", "r%d" % self.domid], ["n%d" % self.domid, "w0"]])
            self._do("set_perms", front, perms)
        elif choice == 9:
            self._do("write", front + "/" + rng.choice(["virtual-device", "device-type", "backend-id"]),
                     rng.choice(["0", "51712", "cdrom", "x" * rng.randrange(1, 64), " "]))
        elif choice == 10:
            self._do("write", front + "/junk-%d" % rng.randrange(4), str(rng.random()))
        else:  # a fake device pointing at another guest's backend
            fake = "%s/vbd/%d" % (self.base, rng.choice([51760, 51776, 268439552]))
            self._do("write", fake + "/backend", "/local/domain/0/backend/vbd/%d/51712" % other)
            self._do("write", fake + "/state", rng.choice("1346"))


def serve(socket_path, domid, mode, rate, seed, pause, others, stop, ready=lambda: None):
    rng = random.Random(seed)
    with Client(unix_socket_path=socket_path) as client:
        guest = HostileGuest(client, domid, rng, others)
        ready()
        start = time.monotonic()
        count = 0
        fronts = []
        while not stop():
            if mode == "flap-state":
                if count % 50 == 0:  # the guest's devices, now and then (they may come and go)
                    fronts = guest.frontends()
                for front in fronts:
                    guest.flap_state(front, "34"[count % 2])
                count += 1
                # paced: `rate` writes per second in total, however long a write took
                delay = start + count * max(1, len(fronts)) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            else:
                guest.random_step()
                time.sleep(rng.uniform(0, pause))
        return guest.writes


@contextlib.contextmanager
def running(socket_path, domid, mode="random", rate=200.0, seed=0, pause=0.01, others=()):
    """Run a hostile guest as a child process for a `with` block; yields a dict that gets
    `writes` (the mutations it made) when the block ends."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--socket", socket_path,
                             "--domid", str(domid), "--mode", mode, "--rate", str(rate), "--seed", str(seed),
                             "--pause", str(pause), "--others", ",".join(str(o) for o in others),
                             "--ready-fd", "1"], stdout=subprocess.PIPE)
    stats = {"writes": 0}
    try:
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("hostile guest did not start (exit %s)" % proc.poll())
        yield stats
    finally:
        proc.terminate()
        try:
            out, _err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _err = proc.communicate()
        for text in out.decode().split():
            if text.startswith("writes="):
                stats["writes"] = int(text[len("writes="):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--domid", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="random")
    parser.add_argument("--rate", type=float, default=200.0, help="flap-state: writes per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pause", type=float, default=0.01, help="random: longest pause between mutations")
    parser.add_argument("--others", default="", help="other guests' domids, comma-separated")
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    others = [int(o) for o in args.others.split(",") if o]

    def ready():
        if args.ready_fd is not None:
            os.write(args.ready_fd, b"ready\n")
    writes = serve(args.socket, args.domid, args.mode, args.rate, args.seed, args.pause, others,
                   stop=lambda: bool(stopping), ready=ready)
    sys.stdout.write("writes=%d\n" % writes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
