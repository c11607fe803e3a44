# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build and run the Xen oracles: small C programs linked against Debian's Xen 4.17 libraries.

`xl_disk_oracle.c` runs libxlutil's xlu_disk_parse; `xl_vdev_oracle.c` runs libxl's vdev
numbering (through the exported libxl_vdev_to_device_disk). They are compiled at test time with
gcc, into $XEN_DISKS_CACHE/oracle (or a temporary folder), once per source version.
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


def build(name: str) -> str:
    """Compile tests/oracle/<name>.c (if not already built) and return the executable's path."""
    libraries, flags = PROGRAMS[name]
    source = os.path.join(HERE, name + ".c")
    with open(source, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    cache = os.environ.get("XEN_DISKS_CACHE") or os.path.join(tempfile.gettempdir(), "xen-disks")
    folder = os.path.join(cache, "oracle")
    os.makedirs(folder, exist_ok=True)
    binary = os.path.join(folder, "%s-%s" % (name, digest))
    if not os.access(binary, os.X_OK):
        partial = binary + ".%d" % os.getpid()
        command = ["gcc", "-O1", "-Wall", "-Werror", *flags, "-o", partial, source, *libraries]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
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
    result = subprocess.run([binary], input=b"".join(chunks), capture_output=True, timeout=300, check=True)
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
    result = subprocess.run([binary], input=data, capture_output=True, timeout=300, check=True)
    answers = result.stdout.decode().splitlines()
    if len(answers) != len(vdevs) or any(a.startswith("unexpected") for a in answers):
        raise RuntimeError("vdev oracle failed: %s %s" % (answers[-3:], result.stderr))
    return [None if answer == "invalid" else int(answer) for answer in answers]
