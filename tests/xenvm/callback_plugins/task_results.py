# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback for the real Xen host's tests: writes every task result, in order, as JSON lines
{"task", "host", "status" (ok, changed, failed, unreachable, skipped), "result"} to the file named
by $XEN_DISKS_TASK_RESULTS, so that a test reads what the module returned over SSH."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: task_results
type: aggregate
short_description: Record task results as JSON lines (xen.disks real Xen host tests)
description:
  - Appends one JSON line per task result to the file named by E(XEN_DISKS_TASK_RESULTS).
requirements:
  - enabled with C(ANSIBLE_CALLBACKS_ENABLED=task_results)
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_results"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, status):
        path = os.environ.get("XEN_DISKS_TASK_RESULTS")
        if not path:
            return
        data = result._result  # pylint: disable=protected-access
        if status == "ok" and data.get("changed"):
            status = "changed"
        line = {"task": result._task.get_name(), "host": result._host.get_name(),  # pylint: disable=protected-access
                "status": status, "result": data}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._write(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")
