# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime's own pieces (_io.dom0, _runs): host I/O helpers on real files and processes, the
request model, the per-guest views of a snapshot, the decoding of what a backend published."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from ansible_collections.xen.disks.plugins.module_utils._io.dom0 import HotplugFailure, run_hotplug_script, stat_target
from ansible_collections.xen.disks.plugins.module_utils._runs.guest_requests import guest_requests
from ansible_collections.xen.disks.plugins.module_utils._runs.host_state import guest_views
from ansible_collections.xen.disks.plugins.module_utils._runs.info import published_of
from ansible_collections.xen.disks.plugins.module_utils._core.layout import cleanup_ops, DiskPlacement
from ansible_collections.xen.disks.plugins.module_utils._core.xs_tree import XsTree


def test_stat_target_kinds(tmp_path):
    image = tmp_path / "a.img"
    image.write_bytes(b"")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s"))
    try:
        paths = (str(image), str(tmp_path), str(tmp_path / "s"), str(tmp_path / "missing"), str(image) + "/x")
        assert [stat_target(p) for p in paths] == ["file", "other", "other", "missing", "missing"]
    finally:
        sock.close()
    if os.path.exists("/dev/loop0") and stat.S_ISBLK(os.stat("/dev/loop0").st_mode):
        assert stat_target("/dev/loop0") == "block"


SCRIPT = """#!/bin/sh
echo "args=$* XENBUS_PATH=$XENBUS_PATH"
exit {status}
"""


@pytest.mark.parametrize("status, body, message", [
    (0, SCRIPT, None),
    (4, SCRIPT, "{script} add exited with status 4: args=add XENBUS_PATH=backend/vbd/5/51712"),
    (0, "#!/bin/sh\nsleep 5\n", "{script} add did not finish within 0.3 s"),
])
def test_run_hotplug_script(tmp_path, status, body, message):
    script = tmp_path / "block"
    script.write_text(body.format(status=status))
    script.chmod(0o755)
    env = {"XENBUS_PATH": "backend/vbd/5/51712"}
    if message is None:
        run_hotplug_script(str(script), "add", env, 0.3 if "sleep" in body else 5)
        return
    with pytest.raises(HotplugFailure) as raised:
        run_hotplug_script(str(script), "add", env, 0.3 if "sleep" in body else 5)
    assert str(raised.value) == message.format(script=script)


def test_run_hotplug_script_that_cannot_start(tmp_path):
    with pytest.raises(HotplugFailure) as raised:
        run_hotplug_script(str(tmp_path / "none"), "remove", {}, 5)
    assert str(raised.value) == "%s remove could not be started: No such file or directory" % (tmp_path / "none")


def test_domains_entries_inherit_the_top_level_options():
    params = {"domain": None, "disks": ["x"], "state": "present", "exclusive": True, "keep": ["xvda"],
              "recreate": False, "force": True, "creating": False, "backend": "stor2", "width": 64,
              "domains": [{"domain": "a", "disks": None, "state": None, "exclusive": None, "keep": None,
                           "recreate": True, "force": None, "creating": None, "backend": None, "width": 32},
                          {"domain": 7, "disks": ["y"], "state": "absent", "exclusive": False, "keep": [],
                           "recreate": None, "force": False, "creating": None, "backend": None, "width": None}]}
    first, second = guest_requests(params)
    assert (first.domain, first.prefix, first.disks, first.exclusive, first.keep, first.recreate, first.force,
            first.backend, first.width) == ("a", "domains[0].", ["x"], True, ["xvda"], True, True, "stor2", 32)
    assert (second.domain, second.where, second.disks, second.state, second.exclusive, second.keep,
            second.force, second.width) == ("7", "domains[1].domain", ["y"], "absent", False, [], False, 64)


def _tree(paths):
    tree = XsTree()
    for path in paths:
        tree.values[path] = ""
    return tree


def test_guest_views_split_a_host_and_keep_shared_ancestors():
    host = _tree([
        "/local", "/local/domain", "/local/domain/0", "/local/domain/0/backend", "/local/domain/0/backend/vbd",
        "/local/domain/0/backend/vbd/5", "/local/domain/0/backend/vbd/5/51712",
        "/local/domain/0/backend/vbd/5/51712/state",
        "/local/domain/0/backend/vbd/9", "/local/domain/0/backend/vbd/9/51712",
        "/local/domain/5", "/local/domain/5/device", "/local/domain/5/device/vbd",
        "/local/domain/5/device/vbd/51712", "/local/domain/9/device/vbd/51712/state",
        "/libxl", "/libxl/5", "/libxl/5/type", "/libxl/5/device/vbd/51712/dev", "/libxl/9/device/vbd/51712/dev",
    ])
    views = guest_views(host, [5])
    five = sorted(views[5].values)
    assert "/local/domain/0/backend/vbd/9" in five  # another guest's directory is seen as existing
    assert not any(p.startswith(("/local/domain/0/backend/vbd/9/", "/local/domain/9/device/", "/libxl/9/"))
                   for p in five)
    assert "/libxl/5/device/vbd/51712/dev" in five and "/local/domain/0/backend/vbd/5/51712/state" in five
    # the walk-up after removing guest 5's only backend stops at .../backend/vbd (guest 9 is there)
    placement = DiskPlacement(5, 0, 51712, "vbd", "vbd")
    removed = [op.path for op in cleanup_ops(views[5], placement) if op.path.startswith("/local/domain/0")]
    assert removed == ["/local/domain/0/backend/vbd/5/51712", "/local/domain/0/backend/vbd/5"]


def test_published_nodes_decoded():
    tree = XsTree({"/b": "", "/b/sectors": "2048", "/b/sector-size": "4096", "/b/info": "7",
                   "/b/feature-flush-cache": "1", "/b/feature-discard": "0", "/b/feature-odd": "yes",
                   "/b/params": "/x"}, {})
    assert published_of(tree, "/b") == {
        "sectors": 2048, "sector_size": 4096, "size_bytes": 2048 * 512,
        "info": {"cdrom": True, "removable": True, "readonly": True},
        "features": {"discard": 0, "flush-cache": 1, "odd": "yes"}}
    assert published_of(XsTree({"/b": ""}, {}), "/b") == {}
