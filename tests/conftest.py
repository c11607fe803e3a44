"""Make `ansible_collections.xen.disks` importable from a plain checkout.

tests/setup.sh links the checkout into $XEN_DISKS_CACHE/collections/ansible_collections/xen/disks;
a checkout that already sits at .../ansible_collections/xen/disks is used as it is.
"""
import os
import sys

_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_parts = _here.split(os.sep)
if len(_parts) >= 3 and _parts[-3] == "ansible_collections":
    _root = os.sep.join(_parts[:-3])
else:
    _root = os.path.join(os.environ.get("XEN_DISKS_CACHE", os.path.expanduser("~/.cache/xen-disks")), "collections")
if _root not in sys.path:
    sys.path.insert(0, _root)
