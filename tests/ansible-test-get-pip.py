"""ansible-test's pip bootstrap, without the download ansible-test would make for it.

ansible-test fetches get-pip-<version>.py from a host that is not a package registry, and looks in
~/.ansible/test/cache/get_pip_<version>.py first: tests/setup.sh and tests/matrix.py copy this file
there for each pip version the installed ansible-test releases ask for. It bootstraps pip from the
interpreter's own ensurepip, then installs the requested packages (pip==<version>, ...) from PyPI.
"""
import subprocess
import sys

# ensurepip in a child process: run in this one, it clears pip's configuration (PIP_* variables,
# pip.conf) for the rest of the process, and the install below would ignore the site's index and
# certificate settings.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
                      stdout=subprocess.DEVNULL)
packages = [a for a in sys.argv[1:] if not a.startswith("--")]
if not packages:
    sys.exit("usage: %s pip==VERSION [PACKAGE==VERSION ...]" % sys.argv[0])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *packages])
