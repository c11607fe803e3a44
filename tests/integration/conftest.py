# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures that run Debian's REAL xenstored (tests/xenstored/launcher.py); never a fake.

- `xenstored`: a fresh daemon for one test (starting one takes milliseconds). A `XenstoredHost`:
  `.rundir`, `.socket`, `.pid`, `.env` (XENSTORED_PATH for subprocesses such as
  ansible-playbook or xenstore-ls), `.add_guest(name, domid, type="pv", width=64,
  driver_domain=False)`, `.remove_guest(domid)`, `.set_domids(...)`, `.dump(root)` (an
  independent read of the tree, {path: (value, perms)}, not through the adapter),
  `.connect()` (a new adapter connection), `.stop()`.
- `xenstored_session`: one daemon shared by a whole session (tests must use their own domids
  or paths).
- `xenstored_factory`: `start(count=1, domids="0") -> [XenstoredHost]` for fleets.
- `xs_client`: a connected pyxs.Client on the `xenstored` daemon.
- `xs_conn`: the collection's adapter (`_xenstore.XenstoreConnection`) on the `xenstored` daemon.

Every daemon is stopped at teardown, on failure too, and dies with the test process even if
that is killed (PR_SET_PDEATHSIG). A daemon that died during a test, without the test
stopping it, makes the test error at teardown.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.xen.disks.tests.xenstored import launcher


class XenstoredHost:
    """One real xenstored (a simulated dom0 host) started for tests."""

    def __init__(self, daemon):
        self.rundir = daemon.rundir
        self.socket = daemon.socket
        self.pid = daemon.pid
        self.stopped = False

    def __repr__(self):
        return "XenstoredHost(%r, pid=%d)" % (self.rundir, self.pid)

    @property
    def env(self):
        """Environment for subprocesses: os.environ plus XENSTORED_PATH of this daemon."""
        return dict(os.environ, XENSTORED_PATH=self.socket)

    @property
    def running(self):
        return launcher.status(self.rundir) is not None

    @property
    def libxl_dir(self):
        """This dom0's stand-in for /var/lib/xen (the modules' libxl_dir)."""
        return launcher.libxl_dir(self.rundir)

    def add_guest(self, name, domid, type="pv", width=64, driver_domain=False, **kwargs):  # noqa: A002
        """Create a domain as libxl does at creation (with its libxl domain configuration file
        unless libxl_config=False); it exists for xenstored from now on."""
        return launcher.add_guest(self.rundir, name, domid, type, width, driver_domain=driver_domain, **kwargs)

    def domain_config(self, domid):
        """The guest's libxl domain configuration as stored (parsed), or None."""
        return launcher.read_domain_config(self.rundir, domid)

    def remove_guest(self, domid):
        launcher.remove_guest(self.rundir, domid)

    def set_domids(self, domids):
        launcher.set_domids(self.rundir, launcher.parse_domids(domids) if isinstance(domids, str) else domids)

    def dump(self, root="/"):
        """{path: (value, perms tuple)} of every node at and below `root` (raw wire client)."""
        out = {}
        with launcher.WireClient(self.socket) as client:
            stack = [root]
            while stack:
                path = stack.pop()
                value = client.read(path)
                out[path] = (value, client.get_perms(path))
                for name in client.list(path):
                    stack.append(path.rstrip("/") + "/" + name)
        return out

    def connect(self, **kwargs):
        """A new adapter connection (XenstoreConnection) to this daemon; the caller closes it."""
        from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreConnection

        return XenstoreConnection.open(self.socket, **kwargs)

    def stop(self):
        self.stopped = True
        return launcher.stop(self.rundir)


def _teardown(hosts):
    died = [h for h in hosts if not h.stopped and not h.running]
    for host in hosts:
        launcher.stop(host.rundir)
    if died:
        pytest.fail("xenstored died during the test: %s; log of the first:\n%s"
                    % (", ".join(h.rundir for h in died), launcher._log_tail(died[0].rundir)))


def pytest_sessionfinish(session, exitstatus):
    """The net under the fixtures: a daemon this test run started and left running is
    stopped here, and the run fails."""
    left = launcher.stop_started()
    if left:
        print("\nxenstored left running by the tests, now stopped: %s" % ", ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def xenstored(tmp_path):
    host = XenstoredHost(launcher.start(str(tmp_path / "xenstored"), die_with_parent=True))
    try:
        yield host
    finally:
        _teardown([host])


@pytest.fixture(scope="session")
def xenstored_session(tmp_path_factory):
    host = XenstoredHost(launcher.start(str(tmp_path_factory.mktemp("xenstored-session")),
                                        die_with_parent=True))
    try:
        yield host
    finally:
        _teardown([host])


@pytest.fixture
def xenstored_factory(tmp_path):
    hosts = []

    def start(count=1, domids="0"):
        base = tmp_path / ("fleet-%d" % len(hosts))
        started = [XenstoredHost(d) for d in
                   launcher.start_many(str(base), count, domids, die_with_parent=True)]
        hosts.extend(started)
        return started

    try:
        yield start
    finally:
        _teardown(hosts)


@pytest.fixture
def xs_client(xenstored):
    import pyxs

    client = pyxs.Client(unix_socket_path=xenstored.socket)
    client.connect()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def xs_conn(xenstored):
    conn = xenstored.connect()
    try:
        yield conn
    finally:
        conn.close()
