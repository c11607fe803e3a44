# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guests of a xen_disk call as the runs see them (`GuestRequest`): the module's options per
guest (`domains:` entries inherit the top-level ones), and what the run learns about the guest.

Private to the xen.disks collection: no compatibility promise. Standard library only.
"""

from __future__ import annotations

from collections import namedtuple

from ansible_collections.xen.disks.plugins.module_utils._core import storage as _storage

GUEST_OPTIONS = ("disks", "state", "exclusive", "keep", "recreate", "force", "creating", "backend", "width")


AbsentDisk = namedtuple("AbsentDisk", "devid name vdev")
AbsentDisk.__doc__ = """A disk declared absent: only its device number matters (`name` labels messages)."""


class GuestRequest:
    """One guest of a xen_disk call: its options, and how messages name it."""

    def __init__(self, domain, options, prefix):
        self.domain = domain
        self.prefix = prefix        # "" or "domains[1]."
        # storage keys (size, create, ...) apart from the xl options: `storage[i]` is disks[i]'s
        split = [_storage.split_storage(item) for item in (options.get("disks") or [])]
        self.disks = [disk for disk, _keys in split]
        self.storage = [keys for _disk, keys in split]
        self.state = options.get("state") or "present"
        self.exclusive = bool(options.get("exclusive"))
        self.keep = list(options.get("keep") or [])
        self.recreate = bool(options.get("recreate"))
        self.force = bool(options.get("force"))
        self.creating = bool(options.get("creating"))
        self.backend = options.get("backend")
        self.width = options.get("width") or 64
        self.domid = None
        self.name = None
        self.guest_type = None
        self.desired = ()
        self.view = None         # the guest's part of the host snapshot
        self.vm_path = None      # /local/domain/D/vm: names libxl's files
        self.files = None        # _io.libxl_config.DomainFiles, None when they cannot be named
        self.config = None       # libxl's domain configuration as read (None: no file)
        self.config_steps = {}   # id(change) -> [_libxl_json.ConfigStep]

    @property
    def where(self):
        return (self.prefix + "domain") if self.prefix else "domain"


def guest_requests(params, labels=None):
    """GuestRequests of the module's parameters; `domains:` entries inherit top-level values.
    `labels`: how messages name each entry (default `domains[i].`)."""
    if params.get("domains"):
        out = []
        for index, entry in enumerate(params["domains"]):
            options = {name: params.get(name) for name in GUEST_OPTIONS}
            options.update({k: v for k, v in entry.items() if v is not None and k != "domain"})
            out.append(GuestRequest(str(entry["domain"]), options,
                                    labels[index] if labels else "domains[%d]." % index))
        return out
    return [GuestRequest(str(params["domain"]), params, "")]
