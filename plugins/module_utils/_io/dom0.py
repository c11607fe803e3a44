# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dom0's own facts and processes, as libxl meets them: the stat of a local target, the hotplug
script runner (XENSTORE-LAYOUT.md §3.4), the architecture. Injectable into the runs
(`stat_target`, `run_hotplug_script`) so tests can stand in for the host.

Private to the xen.disks collection: no compatibility promise. Standard library only.
"""

from __future__ import annotations

import os
import platform
import stat
import subprocess


def stat_target(path):
    """What libxl's stat of a local target finds: block, file, other, missing or unknown."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError:
        return "unknown"
    if stat.S_ISBLK(mode):
        return "block"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


class HotplugFailure(Exception):
    """A hotplug script failed or did not finish in time; `str()` says how."""


def run_hotplug_script(script, action, env, timeout):
    """Run `script action` as libxl does (§3.4): stdin /dev/null, libxl's environment, a timeout."""
    full_env = dict(os.environ)
    full_env.update(env)
    try:
        proc = subprocess.run([script, action], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=full_env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HotplugFailure("%s %s did not finish within %g s" % (script, action, timeout)) from None
    except OSError as exc:
        raise HotplugFailure("%s %s could not be started: %s" % (script, action, exc.strerror)) from None
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace").strip()
        raise HotplugFailure("%s %s exited with status %d%s" % (
            script, action, proc.returncode, (": " + output[-2000:]) if output else ""))


def host_arch():
    """libxl's virtio-mmio allocation differs on Arm; everything else is treated as x86."""
    machine = platform.machine().lower()
    return "arm" if machine.startswith(("arm", "aarch64")) else "x86"
