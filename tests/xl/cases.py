# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Differential cases: the same change made by real `xl` on one fresh host and by `xen_disk` on
another, prepared identically; what each tool itself wrote (from xenstored's trace) is compared.

Cases run concurrently (each host has its own daemon, backend simulator and mount namespace);
`run_cases` returns one `Outcome` per case, which the tests assert on one by one.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import pickle
import os
import time
import traceback
from dataclasses import dataclass, field

from ansible_collections.xen.disks.tests.xl.harness import DEFAULT_XEN_VERSION, XlHost, loop_devices

# The guests every host gets, created in this order (domid: name, type, width, driver domain).
GUESTS = [
    (2, "stor2", "pv", 64, True),
    (3, "guest3", "pvh", 64, False),
    (5, "guest5", "pv", 64, False),
    (6, "guest6", "pv", 32, False),
    (7, "guest7", "hvm", 64, False),
    (8, "guest8", "hvm", 64, False),  # its device model is qemu-traditional: no QMP (media change)
]
DEVICE_MODEL_VERSION = {8: "qemu_xen_traditional"}
IMAGES = {"a.img": 1 << 20, "b.img": 2 << 20, "c.qcow2": 1 << 20, "d.iso": 3 << 20, "e.iso": 1 << 20,
          "f.vhd": 1 << 20, "g,h.img": 1 << 20}
WORKERS = int(os.environ.get("XEN_DISKS_XL_WORKERS", "6"))


@dataclass
class Side:
    """One host's run of a case: results of each step and what the tool wrote at each."""

    host: XlHost = None
    results: list = field(default_factory=list)
    writes: list = field(default_factory=list)  # per step: (changed, removed)
    configs: list = field(default_factory=list)  # per step: libxl's JSON of the case's guest
    requests: list = field(default_factory=list)  # per step: the tool's own requests (diagnosis)
    transactions: list = field(default_factory=list)  # per step: its committed transactions' writes
    before_configs: list = field(default_factory=list)  # per step: libxl's JSON before it
    error: str = None


@dataclass
class Outcome:
    case: object
    xl: Side
    ours: Side


def make_images(directory):
    os.makedirs(directory, exist_ok=True)
    for name, size in IMAGES.items():
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            with open(path, "wb") as handle:
                handle.truncate(size)


def prepare(workdir, xen_version=DEFAULT_XEN_VERSION):
    host = XlHost(workdir, xen_version=xen_version)
    for domid, name, guest_type, width, driver in GUESTS:
        host.add_guest(name, domid, guest_type, width, driver_domain=driver,
                       dm_version=DEVICE_MODEL_VERSION.get(domid, "qemu_xen"))
    return host


def settle(host, timeout=30.0):
    """Wait until the simulated backends stop moving (no write for a while): the next step then
    starts from a quiet tree, as an administrator's next command would."""
    deadline = time.monotonic() + timeout
    last = host.dump("/local/domain")
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = host.dump("/local/domain")
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= 0.2:
            return
    raise AssertionError("backends still moving after %.0f s" % timeout)


def run_side(workdir, case, tool, xen_version=DEFAULT_XEN_VERSION):
    """Prepare a host of that Xen version and run the case's steps with `tool` ('xl' or 'ours')."""
    side = Side()
    try:
        side.host = prepare(workdir, xen_version)
        for step in case.setup:  # the same on both sides: made with xl
            result = side.host.xl(*step.xl_args(case), check=False)
            if result.returncode != 0:
                raise AssertionError("setup step %s failed: %s" % (step, result.stderr))
            settle(side.host)
        for index, step in enumerate(case.steps):
            if index:
                settle(side.host)
            before = side.host.dump("/")
            side.before_configs.append(_without_uuid(side.host.domain_config(case.domid),
                                                     side.host.guests[case.domid]["uuid"]))
            marker = side.host.mark("step%d" % index)
            if tool == "xl":
                result = side.host.xl(*step.xl_args(case), check=False)
                side.results.append(result)
            else:
                side.results.append(side.host.xen_disk(**step.module_args(case)))
            side.writes.append(side.host.own_writes(marker, before))
            side.requests.append(side.host.own_requests(marker))
            side.transactions.append(side.host.own_transactions(marker))
            side.configs.append(_without_uuid(side.host.domain_config(case.domid),
                                              side.host.guests[case.domid]["uuid"]))
    except Exception:  # noqa: BLE001 - reported per case by the test
        side.error = traceback.format_exc()
    return side


def _without_uuid(config, uuid):
    """The two hosts' guests differ only by their uuid."""
    if config is None:
        return None
    return json.loads(json.dumps(config).replace(uuid, "<uuid>"))


# Images with a loop device, named in cases as {a}, {b}, {d}: targets of phy disks.
LOOP_IMAGES = {"a": "a.img", "b": "b.img", "d": "d.iso"}


def run_cases(base, cases, workers=WORKERS, xen_version=DEFAULT_XEN_VERSION):
    """Run every case on two fresh hosts (xl, ours) of that Xen version concurrently;
    {case.id: Outcome}."""
    images = os.path.join(base, "images")
    make_images(images)
    paths = {name: os.path.join(images, image) for name, image in LOOP_IMAGES.items()}
    with loop_devices(paths.values()) as devices:
        for case in cases:
            case.images = images
            case.devices = {name: devices[path] for name, path in paths.items()}
        return _run_cases(base, cases, workers, xen_version)


def shared_outcomes(shared_dir, cases, workers=WORKERS, xen_version=DEFAULT_XEN_VERSION):
    """run_cases once for every process given the same `shared_dir` (pytest-xdist workers of
    one run): the first runs the batch, the others wait for it and read its outcomes."""
    os.makedirs(shared_dir, exist_ok=True)
    result = os.path.join(shared_dir, "outcomes.pickle")
    with open(os.path.join(shared_dir, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(result):
            outcomes = run_cases(os.path.join(shared_dir, "cases"), cases, workers, xen_version)
            with open(result + ".partial", "wb") as handle:
                pickle.dump(outcomes, handle)
            os.replace(result + ".partial", result)
        with open(result, "rb") as handle:
            return pickle.load(handle)


def _run_cases(base, cases, workers, xen_version):
    jobs = {}
    outcomes = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for case in cases:
            for tool in ("xl", "ours"):
                workdir = os.path.join(base, "%s-%s" % (case.id, tool))
                jobs[pool.submit(run_side, workdir, case, tool, xen_version)] = (case, tool)
        sides = {}
        for future in concurrent.futures.as_completed(jobs):
            case, tool = jobs[future]
            sides[(case.id, tool)] = future.result()
            other = sides.get((case.id, "ours" if tool == "xl" else "xl"))
            if other is not None:
                # both sides done: free the daemons and namespaces now, keep the records
                for side in (sides[(case.id, "xl")], sides[(case.id, "ours")]):
                    if side.host is not None:
                        side.host.close()
                        side.host = None
                outcomes[case.id] = Outcome(case, sides[(case.id, "xl")], sides[(case.id, "ours")])
    return outcomes


# -- steps ---------------------------------------------------------------------------------------

def _fill(case, text):
    for name, device in case.devices.items():
        text = text.replace("{%s}" % name, device)
    return text.replace("{i}", case.images)


@dataclass
class Attach:
    """`xl block-attach <domid> <tokens...>` against xen_disk with `disks` (and `args`)."""

    tokens: tuple
    disks: list = None  # default: the tokens joined by commas, as one xl disk spec string
    args: dict = field(default_factory=dict)
    fails: bool = False  # both tools must refuse it

    def xl_args(self, case):
        return ["block-attach", str(case.domid)] + [_fill(case, t) for t in self.tokens]

    def module_args(self, case):
        disks = self.disks if self.disks is not None else [",".join(self.tokens)]
        disks = [_fill(case, d) if isinstance(d, str) else {k: _fill(case, v) if isinstance(v, str) else v
                                                            for k, v in d.items()} for d in disks]
        return dict(self.args, domain=case.domain_name, disks=disks, width=case.width)


@dataclass
class Detach:
    vdev: str
    force: bool = False
    ours_vdev: str = None  # another spelling of the same device, for xen_disk

    def xl_args(self, case):
        return ["block-detach"] + (["-f"] if self.force else []) + [str(case.domid), self.vdev]

    def module_args(self, case):
        return dict(domain=case.domain_name, disks=[self.ours_vdev or self.vdev], state="absent", force=self.force,
                    width=case.width)


@dataclass
class Insert:
    """`xl cd-insert <domid> <vdev> <target>` against xen_disk declaring the cdrom's new medium."""

    vdev: str
    target: str
    declared: str  # the whole disk as declared to xen_disk
    fails: bool = False

    def xl_args(self, case):
        return ["cd-insert", str(case.domid), self.vdev, _fill(case, self.target)]

    def module_args(self, case):
        return dict(domain=case.domain_name, disks=[_fill(case, self.declared)], width=case.width)


@dataclass
class Eject:
    vdev: str
    declared: str

    def xl_args(self, case):
        return ["cd-eject", str(case.domid), self.vdev]

    def module_args(self, case):
        return dict(domain=case.domain_name, disks=[self.declared], width=case.width)


@dataclass
class Case:
    id: str
    domid: int
    steps: list
    setup: list = field(default_factory=list)  # steps made with xl on both hosts first
    images: str = None
    devices: dict = field(default_factory=dict)  # {"a": "/dev/loopN"}: loop devices on the images

    @property
    def guest(self):
        return next(g for g in GUESTS if g[0] == self.domid)

    @property
    def domain_name(self):
        return self.guest[1]

    @property
    def width(self):
        return self.guest[3]
