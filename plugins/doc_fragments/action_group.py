# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The action group every module of the collection belongs to (meta/runtime.yml)."""

    DOCUMENTATION = r"""
attributes:
  action_group:
    support: full
    description: Use C(group/xen.disks.xen) in C(module_defaults).
    membership:
      - xen.disks.xen
"""
