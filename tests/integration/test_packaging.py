# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as Galaxy and AWX users get it: `ansible-galaxy collection build` on a copy of
the checkout salted with the artefacts a test run leaves (so build_ignore is what keeps them out),
the tarball's listing and MANIFEST.json, an install from the tarball, and ansible-builder's own
`create` and introspection of the installed collection (no container engine needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What a test run, a build or a developer's tools leave in a checkout.
ARTEFACTS = [
    ".hypothesis/examples/0a1b/2c3d",
    ".pytest_cache/v/cache/nodeids",
    "tests/output/junit/python3.11-units.xml",
    "tests/output/.tmp/sanity/x.txt",
    "plugins/module_utils/__pycache__/_vdev.cpython-311.pyc",
    "tests/unit/plugins/__pycache__/conftest.cpython-311-pytest-9.2.0.pyc",
    "plugins/filter/stray.pyc",
    "xen-disks-0.0.9.tar.gz",
    "changelogs/.plugin-cache.yaml",
    ".cache/pip/x",
    ".venv/bin/python",
    ".ansible/collections/x",
]

# Path prefixes and names that must never ship: development configuration, CI, test artefacts,
# benchmarks, molecule scenarios, and the checkout-only runners (they need git and the dev venv).
FORBIDDEN_PREFIXES = (".hypothesis/", ".pytest_cache/", ".cache/", ".venv/", ".ansible/", ".ci/",
                      ".git/", "tests/output/", "tests/benchmarks/", "extensions/", "playbooks/demo/",
                      "tests/requirements.txt", "tests/docs/", "tests/demo/")
FORBIDDEN_NAMES = {"pytest.ini", ".ansible-lint", ".gitignore", ".plugin-cache.yaml", "__pycache__",
                   "run-all.sh", "setup.sh", "bench.sh", "matrix.py", "docs-site.sh", "ansible-test-get-pip.py"}
FORBIDDEN_SUFFIXES = (".pyc", ".tar.gz")


def run(args, **kwargs):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # else install says "already installed"
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False,
                          **kwargs)
    assert proc.returncode == 0, "%s\n%s%s" % (args, proc.stdout, proc.stderr)
    return proc.stdout


def galaxy():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{tarball, names (members), src (the salted copy)} of a build from a copy of the checkout."""
    base = tmp_path_factory.mktemp("pack")
    src = base / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), src / name)
    for name in ARTEFACTS:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("artefact\n")
    out = base / "dist"
    run(["ansible-galaxy", "collection", "build", "--output-path", str(out)], cwd=str(src))
    tarball = out / ("xen-disks-%s.tar.gz" % galaxy()["version"])
    with tarfile.open(tarball) as tar:
        names = [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]
    return {"tarball": tarball, "names": names, "src": src}


def test_no_test_artefact_or_dev_config_ships(built):
    names, src = built["names"], built["src"]
    assert all((src / a).exists() for a in ARTEFACTS)  # the salt was there to be left out
    unwanted = [n for n in names
                if n.startswith(FORBIDDEN_PREFIXES) or n.rstrip("/").endswith(FORBIDDEN_SUFFIXES)
                or set(n.rstrip("/").split("/")) & FORBIDDEN_NAMES]
    assert unwanted == []


def test_no_empty_directory_ships(built):
    names = built["names"]
    dirs = [n for n in names if n.endswith("/")]
    files = [n for n in names if not n.endswith("/")]
    assert [d for d in dirs if not any(f.startswith(d) for f in files)] == []


def test_everything_a_user_needs_ships(built):
    names = built["names"]
    tracked = subprocess.run(["git", "ls-files", "plugins", "roles", "playbooks", "docs", "meta",
                              "tests/unit", "tests/integration", "tests/xenstored"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    required = {"LICENSE", "README.md", "CHANGELOG.rst", "changelogs/changelog.yaml",
                "requirements.txt", "bindep.txt", "meta/runtime.yml",
                "meta/execution-environment.yml", "docs/XENSTORE-LAYOUT.md"}
    tracked = {t for t in tracked if os.path.exists(os.path.join(ROOT, t)) and "/__pycache__/" not in t
               and not t.startswith("playbooks/demo/")}
    missing = (required | tracked) - set(names)
    assert sorted(missing) == []


def test_license_and_manifest(built):
    tarball = built["tarball"]
    with tarfile.open(tarball) as tar:
        license_text = tar.extractfile("LICENSE").read().decode()
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    assert license_text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE\n                       Version 3,")
    assert "END OF TERMS AND CONDITIONS" in license_text
    info = manifest["collection_info"]
    assert info["license"] == ["GPL-3.0-or-later"]
    for key in ("repository", "documentation", "issues", "homepage"):  # real links or none
        assert info[key] is None or re.match(r"^https://(?!example\.)[^/]+\.[a-z]+/", info[key]), info[key]


def test_release_history_and_next_version():
    with open(os.path.join(ROOT, "changelogs", "changelog.yaml")) as handle:
        releases = yaml.safe_load(handle)["releases"]
    assert "0.1.0" in releases

    def key(version):
        return tuple(int(p) for p in version.split("."))
    # fragments written after a release go to the version galaxy.yml names, which is not released yet
    assert key(galaxy()["version"]) > max(key(v) for v in releases)


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    tarball = built["tarball"]
    dest = tmp_path_factory.mktemp("installed")
    run(["ansible-galaxy", "collection", "install", "--offline", "-p", str(dest), str(tarball)])
    return dest


def test_installed_collection_loads(installed):
    env_root = str(installed)
    out = subprocess.run(["ansible-doc", "-t", "role", "-l", "xen.disks"], capture_output=True,
                         text=True, env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=env_root), check=True)
    assert "xen.disks.guest_disks" in out.stdout and "xen.disks.xl_disks" in out.stdout


def test_execution_environment_build_context(built, installed, tmp_path):
    """`ansible-builder create` for an EE that installs the tarball, then the builder's own
    introspection script (what the image build runs) on the installed collection."""
    tarball = built["tarball"]
    definition = {
        "version": 3,
        "images": {"base_image": {"name": "quay.io/fedora/fedora:40"}},
        "dependencies": {
            "ansible_core": {"package_pip": "ansible-core>=2.17"},
            "ansible_runner": {"package_pip": "ansible-runner"},
            "galaxy": {"collections": [{"name": "collections/" + tarball.name, "type": "file"}]},
        },
        "additional_build_files": [{"src": str(tarball), "dest": "collections"}],
    }
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump(definition))
    context = tmp_path / "context"
    run(["ansible-builder", "create", "-f", "execution-environment.yml", "-c", str(context),
         "--output-filename", "Containerfile"], cwd=str(tmp_path))
    containerfile = (context / "Containerfile").read_text()
    assert "introspect" in containerfile and "install-from-bindep" in containerfile
    assert (context / "_build" / "collections" / tarball.name).is_file()
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements["collections"][0]["name"] == "collections/" + tarball.name

    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
         "--write-pip", str(pip_out), "--write-bindep", str(bindep_out), str(installed)])
    assert pip_out.read_text().split("\n")[0].startswith("pyxs>=")
    assert "python3-pyxs [platform:dpkg]" in bindep_out.read_text()
    assert "xen.disks" in pip_out.read_text()  # attributed to this collection


def tracked_texts():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in names:
        try:
            with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
                yield name, handle.read()
        except (OSError, UnicodeDecodeError):  # deleted in the work tree, or binary
            continue


def test_the_repository_points_at_nothing_outside_it():
    """No machine paths and no documents of a surrounding directory: what the project cites, it carries."""
    pieces = ("../" + "shared", "shared" + "/docs", "/wo" + "rk/")  # split so this line does not match
    outside = re.compile("|".join(re.escape(p) for p in pieces))
    hits = ["%s: %s" % (name, line.strip()) for name, text in tracked_texts() for line in text.splitlines()
            if outside.search(line)]
    assert hits == []


def test_every_cited_section_exists_in_the_layout_reference():
    """`§1.3`-style references in code, tests and docs name sections of docs/XENSTORE-LAYOUT.md."""
    with open(os.path.join(ROOT, "docs", "XENSTORE-LAYOUT.md"), encoding="utf-8") as handle:
        sections = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\.? ", handle.read(), re.M))
    dangling = sorted("%s: §%s" % (name, number) for name, text in tracked_texts()
                      if name != "docs/XENSTORE-LAYOUT.md"
                      for number in re.findall(r"§\s?(\d+(?:\.\d+)*)", text) if number not in sections)
    assert dangling == []
