# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The layers of plugins/module_utils import only downwards: `_runs` -> `_io` -> `_core`.

`_core` (pure) imports nothing but the standard library and `_core` (no Ansible, no pyxs, no
adapter, no run); `_io` (the adapters) never imports `_runs`. Every import statement counts,
also those inside functions. The rule is checked on the collection's own files, and shown to
fail on synthetic modules and on a bad tree written to a temporary directory."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MODULE_UTILS = os.path.join(ROOT, "plugins", "module_utils")
PACKAGE = "ansible_collections.xen.disks.plugins.module_utils"
LAYERS = ("_core", "_io", "_runs")
# what each layer may import of the collection's module_utils
ALLOWED = {"_core": {"_core"}, "_io": {"_core", "_io"}, "_runs": {"_core", "_io", "_runs"}}


def is_stdlib(name):
    """Whether top-level module `name` is part of Python's standard library."""
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return name in names
    if name in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(name)
    stdlib = sysconfig.get_paths()["stdlib"]
    return spec is not None and spec.origin is not None and spec.origin.startswith(stdlib) \
        and "site-packages" not in spec.origin


def imported_modules(source, module):
    """Absolute dotted names `source` (the text of dotted module `module`) imports: `import a.b`
    gives a.b; `from a import b` gives a.b (b may be a module); relative imports are resolved."""
    package = module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            out += [base + "." + alias.name for alias in node.names]
    return out


def layer_of(dotted):
    """`_core`, `_io`, `_runs`, `""` (module_utils itself, or a file outside the layers) or None
    (not the collection's module_utils)."""
    if dotted != PACKAGE and not dotted.startswith(PACKAGE + "."):
        return None
    rest = dotted[len(PACKAGE) + 1:].split(".")
    return rest[0] if rest[0] in LAYERS else ""


def violations(files):
    """Messages for every import against the layering, of `files` ({path below module_utils:
    source})."""
    out = []
    for path, source in sorted(files.items()):
        parts = path[:-len(".py")].split("/")
        layer = parts[0]
        if layer not in LAYERS:
            out.append("%s: not in a layer (%s)" % (path, ", ".join(LAYERS)))
            continue
        module = ".".join([PACKAGE] + parts)
        for name in imported_modules(source, module):
            target = layer_of(name)
            if target is None:
                top = name.split(".")[0]
                if layer == "_core" and not is_stdlib(top):
                    out.append("%s imports %s: the core imports only the standard library and _core" % (path, name))
                continue
            if target not in ALLOWED[layer]:
                out.append("%s imports %s: %s may import only %s" % (path, name, layer, ", ".join(sorted(ALLOWED[layer]))))
    return out


def read_tree(base):
    files = {}
    for folder, _dirs, names in os.walk(base):
        if "__pycache__" in folder:
            continue
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    files[os.path.relpath(path, base).replace(os.sep, "/")] = handle.read()
    return files


def test_the_collection_imports_only_downwards():
    files = read_tree(MODULE_UTILS)
    assert {path.split("/")[0] for path in files} == set(LAYERS)
    assert {"_core/plan.py", "_io/xenstore.py", "_runs/live.py"} <= set(files)
    assert violations(files) == []


def test_every_layer_is_a_package():
    """AnsiballZ ships a package's __init__.py with the modules that import from it."""
    for layer in LAYERS:
        assert os.path.isfile(os.path.join(MODULE_UTILS, layer, "__init__.py")), layer


BAD = [
    ("_core/plan.py", "from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import XenstoreError\n",
     "_core may import only _core"),
    ("_core/plan.py", "from ansible_collections.xen.disks.plugins.module_utils._io import qmp as _qmp\n",
     "_core may import only _core"),
    ("_core/plan.py", "def f():\n    from ansible_collections.xen.disks.plugins.module_utils import _runs\n",
     "_core may import only _core"),
    ("_core/plan.py", "from .._runs.live import run_xen_disk\n", "_core may import only _core"),
    ("_core/plan.py", "from ansible.module_utils.basic import AnsibleModule\n", "only the standard library"),
    ("_core/plan.py", "import pyxs\n", "only the standard library"),
    ("_io/qmp.py", "from ansible_collections.xen.disks.plugins.module_utils._runs.failures import ReconcileError\n",
     "_io may import only _core, _io"),
    ("_io/qmp.py", "from .._runs import failures\n", "_io may import only _core, _io"),
    ("_plan.py", "import os\n", "not in a layer"),
]

GOOD = [
    ("_core/plan.py", "import os\nfrom collections import namedtuple\nfrom . import layout\n"),
    ("_core/plan.py", "from ansible_collections.xen.disks.plugins.module_utils._core.vdev import vdev_to_devid\n"),
    ("_io/xenstore.py", "import pyxs\nfrom ansible_collections.xen.disks.plugins.module_utils._core import xs_tree\n"),
    ("_runs/live.py", "from ansible_collections.xen.disks.plugins.module_utils._io import qmp\n"
                      "from ansible_collections.xen.disks.plugins.module_utils._core.plan import plan_guest\n"
                      "from ansible_collections.xen.disks.plugins.module_utils._runs.failures import Failures\n"),
]


@pytest.mark.parametrize("path, source, message", BAD)
def test_a_wrong_import_is_found(path, source, message):
    found = violations({path: source})
    assert len(found) == 1 and message in found[0], found


@pytest.mark.parametrize("path, source", GOOD)
def test_a_downward_import_passes(path, source):
    assert violations({path: source}) == []


def test_a_bad_tree_on_disk_fails(tmp_path):
    """The collection's module_utils copied, then one core module made to import a run."""
    files = read_tree(MODULE_UTILS)
    for path, source in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(source, encoding="utf-8")
    assert violations(read_tree(str(tmp_path))) == []
    with open(tmp_path / "_core" / "vdev.py", "a", encoding="utf-8") as handle:
        handle.write("\n\ndef _late():\n    from ansible_collections.xen.disks.plugins.module_utils._runs import live\n"
                     "    return live\n")
    assert violations(read_tree(str(tmp_path))) == [
        "_core/vdev.py imports ansible_collections.xen.disks.plugins.module_utils._runs.live: "
        "_core may import only _core"]
