"""Make `ansible_collections.xen.disks` importable from a plain checkout.

tests/setup.sh links the checkout into
$XEN_DISKS_CACHE/collections/<key>/ansible_collections/xen/disks (key: the first 12 hex digits of
the sha1 of the checkout's path, so several checkouts share one cache); a checkout that already
sits at .../ansible_collections/xen/disks is used as it is.
"""
import hashlib
import os
import sys

_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_parts = _here.split(os.sep)
if len(_parts) >= 3 and _parts[-3] == "ansible_collections":
    _root = os.sep.join(_parts[:-3])
else:
    _key = hashlib.sha1(_here.encode()).hexdigest()[:12]
    _root = os.path.join(os.environ.get("XEN_DISKS_CACHE", os.path.expanduser("~/.cache/xen-disks")),
                         "collections", _key)
if _root not in sys.path:
    sys.path.insert(0, _root)
