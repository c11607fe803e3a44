# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one of the collection's modules as a target host does: arguments as JSON on stdin, the
module's JSON result on stdout (used by tests/xl/harness.py inside a case's mount namespace)."""

import importlib
import json
import sys

from ansible.module_utils.testing import patch_module_args


def main():
    module = importlib.import_module("ansible_collections.xen.disks.plugins.modules." + sys.argv[1])
    with patch_module_args(json.load(sys.stdin)):
        try:
            module.main()
        except SystemExit as exc:
            return exc.code or 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
