"""The version matrix: every ansible-core release and every dom0 Python the collection supports.

- ansible-core x controller Python: `ansible-test sanity` and `ansible-test units` of each
  ansible-core minor release (its newest patch release) in its own virtual environment, on a
  controller Python that release supports.
- module code x dom0 Python: the module code (plugins/module_utils, plugins/modules) compiled and
  imported (`ansible-test sanity --test compile --test import`) and its unit tests
  (tests/unit/plugins/module_utils) run on each dom0 Python, with the suite's own ansible-core,
  whose ansible-test supports every one of these Pythons as a target.

A cell whose interpreter is missing is listed as NOT RUN with the reason and counts as no pass;
the run then fails unless XEN_DISKS_MATRIX_MISSING_OK=1 (a machine that cannot have them, such as
a Debian 12 host with only its own Python 3.11). Cells run in parallel (--jobs, default 2).

Run by tests/run-all.sh with tests/setup.sh's environment; by hand:
    . "$(./tests/setup.sh | tail -n 1)" && python tests/matrix.py [--jobs N] [--only CELL ...]
"""
import argparse
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

# (ansible-core release, controller Python). None: the suite's own ansible-core
# (tests/requirements.txt), which the rest of run-all uses; 2.20 and later need Python 3.12+.
CONTROLLER_CELLS = (
    ("2.17.14", "3.10"),
    ("2.18.19", "3.11"),
    (None, "3.11"),
    ("2.20.10", "3.12"),
    ("2.21.5", "3.13"),
)
# From the oldest Python the collection claims for dom0 hosts (README.md) to the newest tested.
DOM0_PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("XEN_DISKS_CACHE") or os.path.expanduser("~/.cache/xen-disks")
MATRIX = os.path.join(CACHE, "matrix")
KEY = hashlib.sha1(HERE.encode()).hexdigest()[:12]
GET_PIP = os.path.join(HERE, "tests", "ansible-test-get-pip.py")


class Cell:
    def __init__(self, kind, core, python):
        self.kind = kind              # "controller" or "dom0"
        self.core = core              # an ansible-core version, or None for the suite's own
        self.python = python          # "3.11"
        self.results = {}             # step -> "ok" | "FAILED"
        self.python_full = ""         # "3.11.2", once found
        self.core_full = core or ""
        self.not_run = ""             # why the cell could not run
        self.seconds = 0
        self.name = ("core-%s-py%s" % (core or "default", python) if kind == "controller"
                     else "dom0-py%s" % python)
        self.log = os.path.join(MATRIX, "logs", KEY, self.name + ".log")

    @property
    def passed(self):
        return not self.not_run and self.results and all(v == "ok" for v in self.results.values())


def find_python(version):
    """The interpreter for `version`: the system's first, then pyenv's (newest patch release)."""
    name = "python" + version
    for directory in ("/usr/bin", "/usr/local/bin"):
        if os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(pyenv, "versions", version + ".*", "bin", name)),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1].split("/")[0])])
    if found:
        return found[-1]
    return shutil.which(name)


def python_links(cells):
    """A folder of pythonX.Y links to the interpreters found, first on ansible-test's PATH."""
    links = os.path.join(MATRIX, "bin")
    os.makedirs(links, exist_ok=True)
    for version in sorted({c.python for c in cells}):
        target = find_python(version)
        link = os.path.join(links, "python" + version)
        if os.path.lexists(link):
            os.unlink(link)
        if target:
            os.symlink(target, link)
    return links


def run(cell, argv, log, **kwargs):
    log.write("\n$ %s\n" % " ".join(argv))
    log.flush()
    return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          check=False, **kwargs).returncode


def core_venv(cell, log):
    """The cell's ansible-core in its own virtual environment (cached); its bin folder."""
    if cell.core is None:
        return os.path.dirname(shutil.which("ansible-test"))
    venv = os.path.join(MATRIX, "venvs", "ansible-core-%s-py%s" % (cell.core, cell.python))
    stamp = os.path.join(venv, ".installed")
    wanted = "ansible-core==%s\n" % cell.core
    if not (os.path.exists(stamp) and open(stamp).read() == wanted):
        shutil.rmtree(venv, ignore_errors=True)
        if run(cell, [os.path.join(MATRIX, "bin", "python" + cell.python), "-m", "venv", venv], log):
            raise RuntimeError("python%s -m venv failed" % cell.python)
        if run(cell, [os.path.join(venv, "bin", "pip"), "install", "-q", wanted.strip()], log):
            raise RuntimeError("pip install %s failed" % wanted.strip())
        with open(stamp, "w") as handle:
            handle.write(wanted)
    return os.path.join(venv, "bin")


def provide_get_pip(bin_dir):
    """ansible-test's pip bootstrap script for the pip version this ansible-test asks for."""
    python = os.path.join(bin_dir, "python")
    source = subprocess.run(
        [python, "-c", "import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__),"
         " '_internal', 'python_requirements.py'))"],
        stdout=subprocess.PIPE, check=True, text=True).stdout.strip()
    with open(source) as handle:
        versions = set(re.findall(r"\bpip\s*=\s*'([0-9.]+)'", handle.read()))
    for version in versions:
        cached = os.path.expanduser("~/.ansible/test/cache/get_pip_%s.py" % version.replace(".", "_"))
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        with open(GET_PIP, "rb") as src:
            content = src.read()
        if not os.path.exists(cached) or open(cached, "rb").read() != content:
            with open(cached + ".tmp", "wb") as dst:
                dst.write(content)
            os.replace(cached + ".tmp", cached)


def scratch_copy(cell, log):
    """ansible-test needs a real .../ansible_collections/xen/disks: the files git would ship."""
    scratch = os.path.join(MATRIX, "scratch", KEY, cell.name, "ansible_collections", "xen", "disks")
    os.makedirs(scratch, exist_ok=True)
    if run(cell, ["rsync", "-a", "--delete", "--exclude=/.git", "--exclude=/tests/output/",
                  "--filter=:- .gitignore", HERE + "/", scratch + "/"], log):
        raise RuntimeError("rsync to the scratch copy failed")
    shutil.rmtree(os.path.join(scratch, ".hypothesis"), ignore_errors=True)
    return scratch


def run_cell(cell, links, locks):
    start = time.monotonic()
    try:
        return _run_cell(cell, links, locks)
    finally:
        cell.seconds = time.monotonic() - start


def _run_cell(cell, links, locks):
    os.makedirs(os.path.dirname(cell.log), exist_ok=True)
    with open(cell.log, "w") as log:
        interpreter = os.path.join(links, "python" + cell.python)
        if not os.path.exists(interpreter):
            cell.not_run = "no python%s on this machine (looked in /usr/bin, /usr/local/bin, pyenv, PATH)" % cell.python
            log.write(cell.not_run + "\n")
            return cell
        cell.python_full = subprocess.run(
            [interpreter, "-c", "import platform; print(platform.python_version())"],
            stdout=subprocess.PIPE, text=True, check=False).stdout.strip()
        # Cells of one ansible-core on one Python share ansible-test's cached environments.
        with locks[(cell.core, cell.python)]:
            try:
                bin_dir = core_venv(cell, log)
                provide_get_pip(bin_dir)
                scratch = scratch_copy(cell, log)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                cell.results["set-up"] = "FAILED"
                log.write("set-up failed: %s\n" % exc)
                return cell
            cell.core_full = subprocess.run(
                [os.path.join(bin_dir, "python"), "-c", "import ansible.release as r; print(r.__version__)"],
                stdout=subprocess.PIPE, text=True, check=False).stdout.strip()
            env = dict(os.environ, PATH=os.pathsep.join([bin_dir, links, os.environ["PATH"]]))
            ansible_test = [os.path.join(bin_dir, "ansible-test")]
            common = ["--venv", "--python", cell.python, "--color", "no"]
            if cell.kind == "controller":
                steps = (("sanity", ansible_test + ["sanity"] + common),
                         ("units", ansible_test + ["units"] + common + ["--num-workers", "1"]))
            else:
                steps = (("compile+import", ansible_test + ["sanity", "--test", "compile", "--test", "import"] + common),
                         ("units", ansible_test + ["units"] + common + ["--num-workers", "1",
                                                                        "tests/unit/plugins/module_utils/"]))
            for step, argv in steps:
                rc = run(cell, argv, log, cwd=scratch, env=env)
                cell.results[step] = "ok" if rc == 0 else "FAILED"
    return cell


def all_cells():
    cells = [Cell("controller", core, py) for core, py in CONTROLLER_CELLS]
    cells += [Cell("dom0", None, py) for py in DOM0_PYTHONS]
    return cells


def table(cells):
    lines = ["ansible-core x controller Python (ansible-test sanity, units):",
             "  %-18s %-18s %-8s %-8s %s" % ("ansible-core", "controller Python", "sanity", "units", "wall s")]
    for c in cells:
        if c.kind != "controller":
            continue
        core = c.core_full or c.core or "(default)"
        if c.not_run:
            lines.append("  %-18s %-18s NOT RUN: %s" % (core, c.python, c.not_run))
            continue
        lines.append("  %-18s %-18s %-8s %-8s %d%s" % (
            core + (" (default)" if c.core is None else ""), c.python_full or c.python,
            c.results.get("sanity", "-"), c.results.get("units", "-"), c.seconds,
            "  set-up FAILED" if "set-up" in c.results else ""))
    lines += ["module code x dom0 Python (compile and import of plugins/modules and plugins/module_utils,"
              " unit tests of module_utils):",
              "  %-10s %-16s %-8s %-16s %s" % ("dom0", "compile+import", "units", "ansible-test", "wall s")]
    for c in cells:
        if c.kind != "dom0":
            continue
        if c.not_run:
            lines.append("  %-10s NOT RUN: %s" % (c.python, c.not_run))
            continue
        lines.append("  %-10s %-16s %-8s %-16s %d%s" % (
            c.python_full or c.python, c.results.get("compile+import", "-"), c.results.get("units", "-"),
            c.core_full, c.seconds, "  set-up FAILED" if "set-up" in c.results else ""))
    passed = sum(1 for c in cells if c.passed)
    not_run = [c for c in cells if c.not_run]
    failed = len(cells) - passed - len(not_run)
    lines.append("cells: %d passed, %d failed, %d not run" % (passed, failed, len(not_run)))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("XEN_DISKS_MATRIX_JOBS", "2")))
    parser.add_argument("--only", nargs="*", help="cell names (core-2.17.14-py3.10, dom0-py3.8, ...)")
    parser.add_argument("--table", help="also write the table to this file")
    args = parser.parse_args()
    cells = all_cells()
    if args.only:
        cells = [c for c in cells if c.name in args.only]
    links = python_links(cells)
    locks = {(c.core, c.python): threading.Lock() for c in cells}
    # The longest cells first (controller cells run all of sanity), so the two queues end together.
    order = sorted(cells, key=lambda c: c.kind != "controller")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done in as_completed([pool.submit(run_cell, c, links, locks) for c in order]):
            cell = done.result()
            state = ("NOT RUN (%s)" % cell.not_run if cell.not_run
                     else "ok" if cell.passed else "FAILED " + ", ".join(k for k, v in cell.results.items() if v != "ok"))
            print("%-26s %s (%d s; log %s)" % (cell.name, state, cell.seconds, cell.log), flush=True)
    for cell in cells:
        if not cell.passed and not cell.not_run:
            with open(cell.log, errors="replace") as handle:
                tail = [line for line in handle if not line.startswith("WARNING: Location ")][-40:]
            print("\n---- %s: the last lines of %s\n%s" % (cell.name, cell.log, "".join(tail).rstrip()))
    text = table(cells)
    print("\n" + text)
    if args.table:
        with open(args.table, "w") as handle:
            handle.write(text + "\n")
    missing = [c for c in cells if c.not_run]
    if missing and os.environ.get("XEN_DISKS_MATRIX_MISSING_OK") != "1":
        print("\n%d cell(s) could not run (no interpreter): this fails the run; set XEN_DISKS_MATRIX_MISSING_OK=1"
              " on a machine that cannot have them" % len(missing))
        return 1
    return 0 if all(c.passed or c.not_run for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
