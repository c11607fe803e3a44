#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: xen_disk_info
short_description: Report the virtual disks of Xen guests as the toolstack recorded them
version_added: 0.1.0
description:
  - Reads the virtual disks of one guest, several guests, or every guest of a Xen dom0 from one
    xenstore snapshot (one read of the host), the way libxl reads them back
    (C(xl block-list)), and adds what the backend and the guest published.
  - For each disk, the structured settings and the canonical xl specification, the device number,
    the backend domain and kind, the frontend and backend XenbusState, what the backend published
    (size, sector size, info flags, features), the hotplug script status, and warnings about
    stale or half-written devices, guests mixing C(vbd) and C(virtio_disk) devices (which libxl
    cannot list), and backend nodes that differ from the toolstack's own copy.
author:
  - xen.disks contributors (@xen-disks)
requirements:
  - pyxs (Python library) on the managed dom0
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  platform:
    platforms: posix
    support: full
    description: Runs on the Xen toolstack domain (dom0).
extends_documentation_fragment:
  - xen.disks.action_group
options:
  domain:
    description:
      - One guest, by name or domain id. Without O(domain) and O(domains), every guest of the host
        (dom0 included) is reported.
    type: str
  domains:
    description: Several guests, by name or domain id.
    type: list
    elements: str
  xenstore_socket:
    description:
      - Path of the xenstored unix socket. Unset means the E(XENSTORED_PATH) environment variable,
        then C(/run/xenstored/socket), C(/var/run/xenstored/socket), then the xenbus device.
    type: path
  libxl_dir:
    description:
      - libxl's state directory (its C(XEN_LIB_DIR)), holding each guest's domain configuration
        C(userdata-d.<domid>.<uuid>.libxl-json), read (never written) to report libxl's record of
        each disk. Only tests and simulated hosts change it.
    type: path
    default: /var/lib/xen
notes:
  - A guest that does not exist is an error when it is named, as an administrator would expect
    (unlike C(xl block-list), which exits 0).
  - "Three planes are reported per guest, read without a lock: the live xenstore devices, libxl's
    domain configuration (what C(xl list -l), save, migration and xl's reboot use), and how they
    pair. The guest's xl.cfg is not read (the P(xen.disks.xl_disks#role) role and the
    P(xen.disks.guest_disks#role) role's drift report compare it)."
seealso:
  - module: xen.disks.xen_disk
"""

EXAMPLES = r"""
- name: Disks of one guest
  xen.disks.xen_disk_info:
    domain: web1
  register: web1_disks

- name: Fail when a disk of web1 is not connected
  ansible.builtin.assert:
    that: item.backend_state.number == 4
    fail_msg: "{{ item.vdev }} is {{ item.backend_state.name }}"
  loop: "{{ web1_disks.guests[0].disks }}"

- name: Every guest of the host, from one read
  xen.disks.xen_disk_info:
  register: host_disks

- name: Canonical xl specs of every guest, e.g. to compare with xl.cfg
  ansible.builtin.debug:
    msg: "{{ host_disks.guests | items2dict(key_name='domain', value_name='disks') }}"
"""

RETURN = r"""
guests:
  description: One entry per guest, in domain id order.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The guest's name (empty if it has none).
      type: str
      sample: web1
    domid:
      description: The guest's domain id.
      type: int
      sample: 5
    type:
      description: The guest's domain type recorded by the toolstack (V(pv), V(hvm), V(pvh)), or
        null when unknown.
      type: str
      sample: pv
    specs:
      description: The canonical xl specifications of the guest's disks, in device-number order.
      type: list
      elements: str
    warnings:
      description: Problems of the guest as a whole (e.g. mixed C(vbd) and C(virtio_disk), or no
        libxl domain configuration file for a guest with disks).
      type: list
      elements: str
    libxl_config_path:
      description: The guest's libxl domain configuration file that was read, or null when it has
        none (or it could not be read; see RV(guests[].warnings)).
      type: str
      sample: /var/lib/xen/userdata-d.5.42e1153e-b226-5cfc-828b-0389963afd97.libxl-json
    libxl_only:
      description: Entries of libxl's C(disks) array with no xenstore device (left by a detach,
        as libxl 4.17 leaves them; libxl ignores them).
      type: list
      elements: dict
      contains:
        vdev:
          description: The entry's vdev.
          type: str
        entry:
          description: The entry as libxl stores it (libxl_device_disk fields, defaults left out).
          type: dict
    disks:
      description: The guest's disks, in device-number order.
      type: list
      elements: dict
      contains:
        vdev:
          description: The vdev as the toolstack stored it (C(dev)).
          type: str
          sample: xvda
        devid:
          description: The device number.
          type: int
          sample: 51712
        kind:
          description: The frontend device kind.
          type: str
          choices: [vbd, virtio_disk]
        spec:
          description: The canonical xl specification, or null when the entry cannot be read
            back (see RV(guests[].disks[].warnings)).
          type: str
          sample: format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1
        settings:
          description: The structured settings, keyed by the xl option names (as the
            P(xen.disks.xl_disk_parse#filter) filter returns them).
          type: dict
        backend_domid:
          description: The domain serving the disk.
          type: int
          sample: 0
        backend_kind:
          description: The backend kind.
          type: str
          choices: [vbd, qdisk, virtio_disk]
        frontend_path:
          description: The frontend directory.
          type: str
        backend_path:
          description: The backend directory.
          type: str
        frontend_state:
          description: The frontend XenbusState.
          type: dict
          contains:
            number:
              description: 0 to 8 (0 when the node is missing).
              type: int
            name:
              description: Unknown, Initialising, InitWait, Initialised, Connected, Closing,
                Closed, Reconfiguring or Reconfigured.
              type: str
        backend_state:
          description: The backend XenbusState, as RV(guests[].disks[].frontend_state).
          type: dict
        image:
          description:
            - The storage behind a disk served by dom0 (absent for other disks).
            - For a file, C(kind=file), C(format) (what its header says, as qemu-img names it),
              C(declared_format), C(virtual_size) and C(actual_size) in bytes, C(backing_chain) (the
              backing files, nearest first, each with C(filename), C(format), C(virtual_size),
              C(actual_size)), C(dirty) and C(corrupt) (qcow2 flags), and C(format_mismatch) (why the
              header contradicts the declared format, or null; the backing chain is then not followed,
              and the disk's RV(guests[].disks[].warnings) say so).
            - For a block device (an LVM volume, a loop device), C(kind=block) and C(size) in bytes;
              C(kind=missing) when the target does not exist.
            - Raw files are read with stat() alone, other formats with one C(qemu-img info) per file.
          type: dict
          returned: for disks whose backend is dom0 and that have a target
        published:
          description: What the backend published (absent keys were not published).
          type: dict
          contains:
            sectors:
              description: Size in 512-byte sectors.
              type: int
            sector_size:
              description: Logical sector size in bytes.
              type: int
            physical_sector_size:
              description: Physical sector size in bytes.
              type: int
            size_bytes:
              description: Size in bytes (sectors x 512).
              type: int
            info:
              description: The C(info) flags, decoded.
              type: dict
              sample: {cdrom: false, removable: false, readonly: false}
            features:
              description: The C(feature-*) nodes, without the prefix, as integers.
              type: dict
              sample: {flush-cache: 1, discard: 1, persistent: 1}
        hotplug_status:
          description: The C(hotplug-status) the hotplug script (or QEMU) wrote, or null.
          type: str
          sample: connected
        hotplug_error:
          description: The C(hotplug-error) message, or null.
          type: str
        attach_unfinished:
          description: Whether the disk's attach did not finish (the backend is still
            Initialising and never reached InitWait). The next M(xen.disks.xen_disk) run that
            declares the disk resumes it.
          type: bool
        frontend_observed:
          description: What differs in the guest's own frontend directory from what the
            toolstack wrote (nodes removed or rewritten, its permissions). The guest may rewrite
            these nodes, so they are reported, never used to judge the disk.
          type: list
          elements: str
        warnings:
          description: Problems of this disk (stale, half-written, backend differing from the
            toolstack's copy, no entry in libxl's domain configuration, an unfinished attach or
            detach, what the guest changed in its frontend directory).
          type: list
          elements: str
        libxl_config:
          description: The disk's entry in libxl's domain configuration (paired by the vdev
            string, as libxl does), or null when there is none.
          type: dict
          sample: {pdev_path: /dev/vg0/web1-data, vdev: xvdb, format: raw, readwrite: 1}
        survives_xl_reboot:
          description: Whether the disk is both in xenstore and in libxl's domain configuration,
            so that C(xl reboot), C(xl save)/C(xl restore) and C(xl migrate) keep it (libxl drops a
            xenstore disk without an entry). Null when the guest has no domain configuration file
            (a guest xl did not create, so there is no libxl record to keep in step, and the drift
            report does not count it).
          type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import HAS_PYXS, PYXS_IMPORT_ERROR
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import exit_module
from ansible_collections.xen.disks.plugins.module_utils._runs.info import run_xen_disk_info


def main():
    module = AnsibleModule(
        argument_spec=_argspec.xen_disk_info_argument_spec(),
        mutually_exclusive=_argspec.XEN_DISK_INFO_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    if not HAS_PYXS:
        module.fail_json(msg=missing_required_lib("pyxs"), exception=PYXS_IMPORT_ERROR)
    exit_module(module, lambda: dict(run_xen_disk_info(module.params), changed=False))


if __name__ == "__main__":
    main()
