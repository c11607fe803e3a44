# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module runs in their own processes, for the concurrency and fault suites: each run is the
real xen_disk module (AnsibleModule main(), as `test_xen_disk_helpers.run_module` runs it) in a
forked child, so runs are truly concurrent, can be killed with SIGKILL, and any traceback is
caught as such instead of failing the test process.

- `start_run(args)` -> `Run` (a child process running one xen_disk call): `.result(timeout)`,
  `.kill()`.
- `RunPool(count)`: `count` workers that start their runs together (a barrier), for races.
- `outcome(result)`: "ok", "failed" (a clean failure: a message, no traceback) or "traceback".
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import traceback

from ansible_collections.xen.disks.plugins.modules import xen_disk
from ansible_collections.xen.disks.tests.integration.test_xen_disk_helpers import run_module

_FORK = multiprocessing.get_context("fork")  # children inherit the imported modules: fast starts


def _call(args, check=False):
    try:
        return run_module(xen_disk.main, args, check=check)
    except BaseException:  # noqa: B036  what a module process would print as a traceback
        return {"failed": True, "traceback": traceback.format_exc()}


def outcome(result):
    """'ok', 'failed' (a message and no traceback) or 'traceback'."""
    if "traceback" in result or "exception" in result or "Traceback" in str(result.get("msg", "")):
        return "traceback"
    if result.get("failed"):
        return "failed" if result.get("msg") else "traceback"
    return "ok"


def _child(pipe, args):
    pipe.send(_call(args))
    pipe.close()


class Run:
    """One xen_disk call in a child process."""

    def __init__(self, args):
        self._pipe, child = _FORK.Pipe(duplex=False)
        self.started = time.monotonic()
        self.process = _FORK.Process(target=_child, args=(child, args), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.is_alive()

    def kill(self):
        """SIGKILL, as an OOM killer or a lost SSH session with a killed python would."""
        try:
            os.kill(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.join()

    def result(self, timeout=120):
        """The module's result, or None if the process died without one (it was killed)."""
        if self._pipe.poll(timeout):
            try:
                value = self._pipe.recv()
            except EOFError:
                value = None
        else:
            value = None
        self.process.join(5)
        if self.process.is_alive():
            self.kill()
            raise AssertionError("a module run did not finish within %g s" % timeout)
        return value


def start_run(args):
    return Run(args)


def _worker(pipe, barrier, seed):
    jitter = random.Random(seed)
    while True:
        task = pipe.recv()
        if task is None:
            return
        args, delay = task
        barrier.wait()
        time.sleep(jitter.uniform(0, delay))
        pipe.send(_call(args))


class RunPool:
    """`count` module processes that start each batch of runs together (one barrier), each
    after its own small random delay, so that their reads, plans and transactions interleave."""

    def __init__(self, count, seed=0):
        self.count = count
        self._barrier = _FORK.Barrier(count)
        self._pipes, self._procs = [], []
        for index in range(count):
            parent, child = _FORK.Pipe()
            proc = _FORK.Process(target=_worker, args=(child, self._barrier, seed * 1000 + index), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    def run(self, args_list, delay=0.03, timeout=120):
        """One run per worker, started together; their results in order."""
        assert len(args_list) == self.count
        for pipe, args in zip(self._pipes, args_list):
            pipe.send((args, delay))
        results = []
        for pipe in self._pipes:
            if not pipe.poll(timeout):
                raise AssertionError("a concurrent module run did not finish within %g s" % timeout)
            results.append(pipe.recv())
        return results

    def close(self):
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
