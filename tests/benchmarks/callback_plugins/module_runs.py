# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback for bench_fleet.py: counts, per host, the module runs on the host (task results that
carry a module's `invocation`; controller-side actions such as set_fact, debug or assert do not)
and writes {host: count} as JSON to $XEN_DISKS_MODULE_RUNS at the end of the playbook."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: module_runs
type: aggregate
short_description: Count module runs per host (xen.disks benchmarks)
description:
  - Writes the number of module runs of each host as JSON to E(XEN_DISKS_MODULE_RUNS).
requirements:
  - enabled with C(ANSIBLE_CALLBACKS_ENABLED=module_runs)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "module_runs"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.runs = {}

    def _count(self, result):
        data = result._result  # pylint: disable=protected-access
        items = data.get("results") if isinstance(data.get("results"), list) else [data]
        ran = sum(1 for item in items if isinstance(item, dict) and "invocation" in item)
        host = result._host.get_name()  # pylint: disable=protected-access
        self.runs[host] = self.runs.get(host, 0) + ran

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("XEN_DISKS_MODULE_RUNS")
        if path:
            with open(path, "w") as handle:
                json.dump(self.runs, handle)
