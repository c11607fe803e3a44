# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the pure-core unit tests: snapshots of a host as libxl leaves it."""

from __future__ import annotations

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsTree


def domain_created(*guests, driver_domains=()):
    """A host right after libxl created `guests` ((domid, type), ...) and the driver domains
    (docs/XENSTORE-LAYOUT.md §1.4):
    `/local/domain/D` and `~/device` [n0,rD] with `name`, `/libxl/D` and `/libxl/D/device` [n0]
    with `/libxl/D/type`."""
    tree = XsTree()
    for path, value in (("/local", ""), ("/local/domain", ""), ("/libxl", ""), ("/local/domain/0", ""),
                        ("/local/domain/0/name", "Domain-0")):
        tree.values[path] = value
        tree.perms[path] = ("n0",)
    for domid, guest_type in tuple(guests) + tuple((b, "pv") for b in driver_domains):
        readable = ("n0", "r%d" % domid)
        dom = "/local/domain/%d" % domid
        for path, value, perms in ((dom, "", readable), (dom + "/name", "guest%d" % domid, readable),
                                   (dom + "/device", "", readable), ("/libxl/%d" % domid, "", ("n0",)),
                                   ("/libxl/%d/device" % domid, "", ("n0",)),
                                   ("/libxl/%d/type" % domid, guest_type, ("n0",))):
            tree.values[path] = value
            tree.perms[path] = perms
    return tree


@pytest.fixture
def host():
    """Factory: host(*(domid, type), driver_domains=()) -> XsTree in the domain-creation state."""
    return domain_created
