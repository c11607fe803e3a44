# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Xen toolstack a dom0 runs, and what that changes in what libxl writes.

The collection writes what the host's own `xl` writes. Xen 4.17 (Debian 12) and 4.20 (Debian 13)
are the versions proven against their real `xl` (tests/xl/); they differ for disks in three
places (XENSTORE-LAYOUT.md §9):
- an empty cdrom of a PV or PVH guest: 4.17 serves it with qdisk (`params=aio:`); 4.20 chooses
  phy without `params`, which its block script cannot attach (`xl block-attach` fails): refused;
- `trusted`/`untrusted`: 4.20's xl reads them; 4.17's does not (the collection reads them on both);
- `xl cd-insert`'s first transaction writes `params` as "" (4.17) or the new path (4.20).

The version comes from, in order: the `xen_version` option; the running hypervisor
(/sys/hypervisor/version, as Debian's toolstack wrapper chooses its tools); the one installed
toolstack (/usr/lib/xen-<X.Y>/bin/xl, Debian's layout); the one installed libxenlight.so.<X.Y>.
A wrong or missing answer is never silent: `resolve` fails on an option contradicting the
running hypervisor, and an unknown or untested version fails the first decision that depends on
it (`XenVersion.rules`), naming what was found and the option that settles it.

Private to the xen.disks collection: no compatibility promise. Standard library only, no I/O:
the facts are read by `_io.dom0.xen_version_facts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

SUPPORTED = ("4.17", "4.20")


class XenVersionError(ValueError):
    """The host's Xen version is unknown, untested or contradicted; `str()` says what to do."""


def parse_version(text):
    """"4.20" (also "4.20.4", "4.20-rc") -> "4.20"; None when `text` is not a version."""
    if not isinstance(text, str):
        return None
    match = re.match(r"\A\s*(\d+)\.(\d+)", text)
    return "%d.%d" % (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class XenRules:
    """What libxl of one version does differently for disks."""

    version: str
    pv_empty_cdrom_backend: Optional[str]   # "qdisk", or None: libxl cannot attach it (refused)
    insert_first_params_is_path: bool       # cd-insert's first transaction writes the bare path

    def insert_first_params(self, path):
        """`params` of libxl_cdrom_insert's first (eject) transaction for new medium `path`."""
        return path if (self.insert_first_params_is_path and path) else ""


RULES = {
    "4.17": XenRules("4.17", pv_empty_cdrom_backend="qdisk", insert_first_params_is_path=False),
    "4.20": XenRules("4.20", pv_empty_cdrom_backend=None, insert_first_params_is_path=True),
}


@dataclass(frozen=True)
class XenVersion:
    """The answer of `resolve`: `version` ("4.20", or None when nothing told), where it came
    from (`source`), and `problem` (why it cannot be used) for an unknown or untested one."""

    version: Optional[str]
    source: str
    problem: str = ""

    @property
    def supported(self):
        return self.version in RULES

    def rules(self, need):
        """The rules of this version, for a decision described by `need` ("an empty cdrom of a
        PV guest"); XenVersionError when the version is unknown or untested."""
        if self.version in RULES:
            return RULES[self.version]
        raise XenVersionError("%s depends on the Xen version, and %s; set the option xen_version "
                              "(%s are supported)" % (need, self.problem, " or ".join(SUPPORTED)))

    def as_result(self):
        return {"version": self.version, "source": self.source, "supported": self.supported}


def resolve(option=None, hypervisor=None, toolstacks=(), libraries=()):
    """The host's Xen toolstack version, from the `xen_version` option and the facts read on the
    host: `hypervisor` ("4.20", the running one, or None), `toolstacks` (the X.Y of each
    /usr/lib/xen-X.Y/bin/xl), `libraries` (the X.Y of each libxenlight.so.X.Y).

    Returns (XenVersion, warnings). Raises XenVersionError when the option is not a supported
    version, or contradicts the running hypervisor (the toolstack always matches it).
    """
    warnings = []
    toolstacks = sorted(set(v for v in toolstacks if v))
    libraries = sorted(set(v for v in libraries if v))
    if option is not None:
        version = parse_version(option)
        if version is None or version != str(option).strip() or version not in RULES:
            raise XenVersionError("xen_version: %r is not a supported Xen version (%s)"
                                  % (option, ", ".join(SUPPORTED)))
        if hypervisor and hypervisor != version:
            raise XenVersionError("xen_version: %s was given, but this dom0 runs Xen %s "
                                  "(/sys/hypervisor/version): its toolstack is %s's"
                                  % (version, hypervisor, hypervisor))
        if not hypervisor and toolstacks and version not in toolstacks:
            warnings.append("xen_version %s was given, but the toolstack installed is %s "
                            "(/usr/lib/xen-*/bin/xl): writing what xl %s writes"
                            % (version, ", ".join(toolstacks), version))
        return XenVersion(version, "option"), warnings
    if hypervisor:
        return _found(hypervisor, "hypervisor"), warnings
    if len(toolstacks) == 1:
        return _found(toolstacks[0], "toolstack"), warnings
    if len(toolstacks) > 1:
        return XenVersion(None, "toolstack", "several toolstacks are installed (%s) and no hypervisor "
                          "says which runs" % ", ".join(toolstacks)), warnings
    if len(libraries) == 1:
        return _found(libraries[0], "libxenlight"), warnings
    if len(libraries) > 1:
        return XenVersion(None, "libxenlight", "several libxenlight versions are installed (%s)"
                          % ", ".join(libraries)), warnings
    return XenVersion(None, "none", "no running hypervisor (/sys/hypervisor/version), toolstack "
                      "(/usr/lib/xen-*/bin/xl) or libxenlight says which Xen this host has"), warnings


def _found(version, source):
    if version in RULES:
        return XenVersion(version, source)
    return XenVersion(version, source, "Xen %s (%s) is not a version xen.disks is tested with"
                      % (version, source))


def toolstack_version(path):
    """The X.Y of a Debian toolstack directory (/usr/lib/xen-4.20/...); None otherwise."""
    match = re.search(r"/xen-(\d+\.\d+)(?:/|\Z)", path)
    return parse_version(match.group(1)) if match else None


def library_version(name):
    """The X.Y of a libxenlight file name (libxenlight.so.4.20, libxenlight-4.20.so)."""
    match = re.match(r"\Alibxenlight(?:\.so\.|-)(\d+\.\d+)", name)
    return parse_version(match.group(1)) if match else None


def hypervisor_version(major, minor):
    """/sys/hypervisor/version/{major,minor} contents -> "X.Y" (None when unreadable)."""
    try:
        return "%d.%d" % (int(str(major).strip()), int(str(minor).strip()))
    except (TypeError, ValueError):
        return None
