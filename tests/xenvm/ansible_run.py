# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection on the real Xen host as a fleet does: ansible-playbook on this machine
(the controller), dom0 reached over SSH (AnsiballZ, dom0's /usr/bin/python3 and Debian's pyxs).
Each run's task results come back through the task_results callback (callback_plugins/)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class PlaybookRun:
    def __init__(self, proc, results, seconds):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.results = results          # [{"task", "host", "status", "result"}], in order
        self.seconds = seconds
        recap = re.search(r"^dom0\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                          proc.stdout, re.M)
        self.recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, recap.groups()))) \
            if recap else None

    @property
    def result(self):
        """The last task's result (the module's return values)."""
        return self.results[-1]["result"] if self.results else {}

    @property
    def status(self):
        return self.results[-1]["status"] if self.results else None

    def __str__(self):
        return f"ansible-playbook rc={self.rc} ({self.seconds:.1f} s)\n{self.stdout[-6000:]}\n{self.stderr[-3000:]}"


class Controller:
    """ansible-playbook against one dom0 inventory."""

    def __init__(self, inventory, workdir):
        self.inventory = inventory
        self.workdir = workdir

    def env(self, results_path):
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": "task_results",
            "XEN_DISKS_TASK_RESULTS": results_path,
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PIPELINING": "1", "ANSIBLE_SSH_RETRIES": "3", "ANSIBLE_TIMEOUT": "120",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
        })
        return env

    def playbook(self, plays, extra_args=(), timeout=1200):
        """Run plays (a list of dicts, or a path); a PlaybookRun."""
        fd, results_path = tempfile.mkstemp(prefix="results-", suffix=".jsonl", dir=self.workdir)
        os.close(fd)
        if isinstance(plays, str):
            path = plays
        else:
            fd, path = tempfile.mkstemp(prefix="play-", suffix=".yml", dir=self.workdir)
            with os.fdopen(fd, "w") as f:
                json.dump(plays, f, indent=1)  # YAML is a superset of JSON
        start = time.monotonic()
        proc = subprocess.run(["ansible-playbook", "-i", self.inventory, path, *extra_args],
                              capture_output=True, text=True, env=self.env(results_path), timeout=timeout, check=False)
        seconds = time.monotonic() - start
        with open(results_path, encoding="utf-8") as f:
            results = [json.loads(line) for line in f if line.strip()]
        return PlaybookRun(proc, results, seconds)

    def module(self, name, args, check=False, diff=False, timeout=1200):
        """One task of module `name` (FQCN) on dom0."""
        task = {"name": name, name: args}
        if check:
            task["check_mode"] = True
        if diff:
            task["diff"] = True
        return self.playbook([{"name": name, "hosts": "dom0", "gather_facts": False, "tasks": [task]}],
                             timeout=timeout)
