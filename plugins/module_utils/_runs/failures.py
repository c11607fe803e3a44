# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a run fails: `ReconcileError` (the module's `fail_json`), `Failures` (the run's failure
messages and the guests they stopped), `exit_module` (the one place a module turns either into
its result).

Private to the xen.disks collection: no compatibility promise. Standard library only.
"""

from __future__ import annotations


class Failures(list):
    """The failure messages of a run (a list), and the declared guests they stopped: a failure
    added with `add(guest, ...)` is that guest's alone; one appended without a guest is the run's."""

    def __init__(self):
        super().__init__()
        self.guests = []         # GuestRequest.domain of each guest that failed, first failure first
        self.of_run = False      # some failure belongs to no single guest

    def append(self, message):
        self.of_run = True
        super().append(message)

    def add(self, guest, message):
        super().append(message)
        if guest.domain not in self.guests:
            self.guests.append(guest.domain)

    def failed_domains(self):
        """The declared guests that failed, or None when a failure is the whole run's."""
        return None if self.of_run else list(self.guests)


class ReconcileError(Exception):
    """A failure for the module to report: `str()` is the message, `details` extra result keys."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def exit_module(module, run):
    """End an AnsibleModule with `run()`'s result, or with the ReconcileError it raised (its
    message, and its details as result keys); `warnings` of either become the module's warnings."""
    try:
        result = run()
    except ReconcileError as exc:
        details = dict(exc.details)
        for warning in details.pop("warnings", []):
            module.warn(warning)
        module.fail_json(msg=str(exc), **details)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


def check_params(errors):
    """The module's early checks (`_core.argspec`): any error fails the run before xenstore is read."""
    if errors:
        raise ReconcileError("\n".join(errors), errors=errors)
