# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""In-memory xenstore trees and the operations that change them.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

A `XsTree` is a snapshot of part of xenstore: path -> value and path -> permissions.
An `XsOp` is one xenstore request of a plan. `XsTree.apply` carries an op out with the
semantics of the C xenstored (construct_node: implicitly created parents and nodes written
without set_perms copy their parent's permission list), so "plan applied to a copy of
before" is exactly what the daemon will hold after the transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Permissions in xenstore wire notation: first entry is the owner (and default access).
Perms = tuple  # tuple[str, ...], e.g. ("n5", "r0")

ROOT_PERMS = ("n0",)

WRITE = "write"
MKDIR = "mkdir"
SET_PERMS = "set_perms"
RM = "rm"
ACTIONS = (WRITE, MKDIR, SET_PERMS, RM)


@dataclass(frozen=True)
class XsOp:
    """One xenstore request: write a value, mkdir, set permissions, or remove a subtree."""

    action: str
    path: str
    value: str = ""
    perms: Perms = ()

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError("unknown xenstore action %r" % (self.action,))

    def describe(self):
        if self.action == WRITE:
            return "write %s = %r" % (self.path, self.value)
        if self.action == SET_PERMS:
            return "set_perms %s [%s]" % (self.path, ",".join(self.perms))
        return "%s %s" % (self.action, self.path)


def parent_of(path):
    if path == "/":
        return None
    head = path.rsplit("/", 1)[0]
    return head or "/"


def join(*parts):
    """Join checked path components (callers build paths only from validated parts)."""
    return "/" + "/".join(str(p).strip("/") for p in parts if str(p).strip("/"))


@dataclass
class XsTree:
    """A snapshot of xenstore nodes under one or more roots."""

    values: dict = field(default_factory=dict)
    perms: dict = field(default_factory=dict)
    _children: dict = field(default=None, repr=False, compare=False)

    def copy(self):
        return XsTree(dict(self.values), dict(self.perms))

    # -- reading ---------------------------------------------------------------------------
    def __contains__(self, path):
        return path in self.values

    def get(self, path, default=None):
        return self.values.get(path, default)

    def _index(self):
        if self._children is None:
            index = {}
            for path in self.values:
                parent = parent_of(path)
                if parent is not None:
                    index.setdefault(parent, []).append(path.rsplit("/", 1)[1])
            for names in index.values():
                names.sort()
            self._children = index
        return self._children

    def children(self, path):
        """Names of the direct children of `path`, sorted."""
        return list(self._index().get(path, ()))

    def subtree(self, path):
        """{relative path: value} of everything strictly below `path`."""
        out = {}
        stack = [path]
        while stack:
            p = stack.pop()
            for name in self.children(p):
                child = p.rstrip("/") + "/" + name
                out[child[len(path) + 1:]] = self.values[child]
                stack.append(child)
        return out

    def perms_of(self, path):
        """Effective permissions: the node's own, else those it would inherit."""
        p = path
        while p is not None:
            if p in self.perms:
                return self.perms[p]
            p = parent_of(p)
        return ROOT_PERMS

    # -- changing ----------------------------------------------------------------------------
    def _create(self, path):
        parent = parent_of(path)
        if parent is not None and parent not in self.values and parent != "/":
            self._create(parent)
        self.values[path] = ""
        self.perms[path] = self.perms_of(parent) if parent else ROOT_PERMS
        if self._children is not None and parent is not None:
            names = self._children.setdefault(parent, [])
            names.append(path.rsplit("/", 1)[1])
            names.sort()

    def apply(self, op):
        if op.action in (WRITE, MKDIR, SET_PERMS) and op.path not in self.values:
            if op.action == SET_PERMS:
                raise KeyError("set_perms on a missing node: %s" % op.path)
            self._create(op.path)
        if op.action == WRITE:
            self.values[op.path] = op.value
        elif op.action == SET_PERMS:
            self.perms[op.path] = tuple(op.perms)
        elif op.action == RM:
            self._remove(op.path)

    def _remove(self, path):
        if path not in self.values:
            return
        prefix = path.rstrip("/") + "/"
        for p in [p for p in self.values if p == path or p.startswith(prefix)]:
            del self.values[p]
            self.perms.pop(p, None)
        self._children = None

    def apply_all(self, ops):
        for op in ops:
            self.apply(op)
        return self
