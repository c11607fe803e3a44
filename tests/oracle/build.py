# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build and run the Xen oracles: small C programs linked against Debian's Xen libraries, 4.17
(the host's, Debian 12) or 4.20 (Debian 13's, unpacked by tests/xl/fetch-xen-4.20.sh).

`xl_disk_oracle.c` runs libxlutil's xlu_disk_parse; `xl_vdev_oracle.c` runs libxl's vdev
numbering (through the exported libxl_vdev_to_device_disk). They are compiled at test time with
gcc, into $XEN_DISKS_CACHE/oracle (or a temporary folder), once per source and Xen version. A
4.20 oracle is compiled by the host's gcc against trixie's headers and libraries and runs through
trixie's loader (its libraries need trixie's glibc); `command(binary)` gives the argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = {
    "xl_disk_oracle": (["-lxlutil", "-lxenlight", "-lxentoollog"], []),
    # -rdynamic exports our xs_read so that libxenlight's calls reach it
    "xl_vdev_oracle": (["-lxenlight", "-lxentoollog", "-lxenstore"], ["-rdynamic"]),
}


XEN_VERSIONS = ("4.17", "4.20")


def _cache():
    return os.environ.get("XEN_DISKS_CACHE") or os.path.join(tempfile.gettempdir(), "xen-disks")


def xen_libdir(version):
    """None for the host's own Xen (4.17), else the unpacked root's library folder."""
    if version == "4.17":
        return None
    if version not in XEN_VERSIONS:
        raise ValueError("no oracle for Xen %r" % (version,))
    root = os.environ.get("XEN_DISKS_XEN_420_ROOT") or os.path.join(_cache(), "xen-4.20")
    libdir = os.path.join(root, "usr/lib/x86_64-linux-gnu")
    if not os.path.exists(os.path.join(libdir, "libxlutil.so.4.20")):
        raise RuntimeError("Xen 4.20's libraries are not unpacked in %s: run tests/setup.sh" % root)
    return libdir


def command(binary: str):
    """The argv that runs an oracle binary built by `build` (its Xen version is in its name)."""
    libdir = xen_libdir("4.20") if os.path.basename(binary).split("-")[-2] == "4.20" else None
    if libdir is None:
        return [binary]
    return [os.path.join(libdir, "ld-linux-x86-64.so.2"), "--library-path", libdir, binary]


def build(name: str, version: str = "4.17") -> str:
    """Compile tests/oracle/<name>.c against Xen `version` (if not already built) and return the
    executable's path; run it with `command(path)`."""
    libraries, flags = PROGRAMS[name]
    libdir = xen_libdir(version)
    if libdir is not None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(libdir)))
        # trixie's libraries need symbols of trixie's glibc, which the link does not check
        flags = flags + ["-I", os.path.join(root, "usr/include"), "-L", libdir, "-Wl,-rpath-link," + libdir,
                         "-Wl,--allow-shlib-undefined"]
    source = os.path.join(HERE, name + ".c")
    with open(source, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    folder = os.path.join(_cache(), "oracle")
    os.makedirs(folder, exist_ok=True)
    binary = os.path.join(folder, "%s-%s-%s" % (name, version, digest))
    if not os.access(binary, os.X_OK):
        partial = binary + ".%d" % os.getpid()
        argv = ["gcc", "-O1", "-Wall", "-Werror", *flags, "-o", partial, source, *libraries]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError("building %s failed (are gcc and libxen-dev installed? tests/setup.sh "
                               "installs them):\n%s" % (name, result.stderr))
        os.replace(partial, binary)
    return binary


def run_disk_oracle(binary: str, cases):
    """Each case is a list of strings forming one disk; returns Xen's verdict and fields per case."""
    chunks = []
    for strings in cases:
        chunks.append(b"%d\n" % len(strings))
        for text in strings:
            data = text.encode("utf-8")
            chunks.append(b"%d\n%s\n" % (len(data), data))
    result = subprocess.run(command(binary), input=b"".join(chunks), capture_output=True, timeout=300, check=True)
    lines = result.stdout.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) != len(cases):
        raise RuntimeError("oracle answered %d of %d cases: %s" % (len(lines), len(cases), result.stderr))
    return [json.loads(line) for line in lines]


def run_vdev_oracle(binary: str, vdevs):
    """libxl's device number for each vdev (None when libxl refuses it)."""
    for vdev in vdevs:
        if "\n" in vdev or "\0" in vdev:
            raise ValueError("one vdev per line: %r" % vdev)
    data = "".join(vdev + "\n" for vdev in vdevs).encode("utf-8")
    result = subprocess.run(command(binary), input=data, capture_output=True, timeout=300, check=True)
    answers = result.stdout.decode().splitlines()
    if len(answers) != len(vdevs) or any(a.startswith("unexpected") for a in answers):
        raise RuntimeError("vdev oracle failed: %s %s" % (answers[-3:], result.stderr))
    return [None if answer == "invalid" else int(answer) for answer in answers]
