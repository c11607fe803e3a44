#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: xen_host_disks
short_description: Declare the disks of every guest of a Xen host, live and in their xl.cfg files, in one run
version_added: 0.2.0
description:
  - One module run for a whole dom0, whatever its number of guests. For each declared guest it
    applies the disks to the running guest (as M(xen.disks.xen_disk) does, all guests from one read
    of xenstore), writes them to the guest's xl.cfg file (as M(xen.disks.xl_cfg_files) does), then
    reads the running guests back and reports, per guest, how the live disks, libxl's record and the
    file differ (as the P(xen.disks.xl_disks_drift#filter) filter does).
  - A declared guest that is not running gets only its file written, and is named in
    RV(not_running).
  - "The order keeps bad input harmless: every guest, every disk and every file is checked, and every
    new file is validated with C(xl create --dryrun) where C(xl) is installed, before anything is
    written; one error fails the run with nothing written. The live disks are applied next, then the
    guests are read back, and only then are the files moved into place."
  - "A guest whose live disks fail on their own (a hotplug script that fails, a backend that does not
    answer, a guest whose nodes keep changing while the host is read) holds back only its own file:
    the other guests' files are written, the run fails naming it in RV(failed_domains), and its
    file is written by the run that applies its disks. A failure of the whole run (xenstored lost)
    writes no file, and is reported with what the live plane had written, as
    M(xen.disks.xen_disk) reports it."
  - The role P(xen.disks.guest_disks#role) runs this module once per host.
author:
  - xen.disks contributors (@xen-disks)
attributes:
  check_mode:
    support: full
    description: Plans the live changes and the files (validated with C(xl) in a temporary
      folder) and reports them; writes nothing. The drift report then describes the host as it is.
  diff_mode:
    support: full
    description: The xenstore nodes, libxl's domain configuration and image steps of each live
      change, and the text of each changed file, before and after.
  platform:
    platforms: posix
    support: full
    description: Runs on the Xen toolstack domain (dom0).
extends_documentation_fragment:
  - xen.disks.action_group
options:
  guests:
    description: The host's guests and their disks.
    type: list
    elements: dict
    required: true
    suboptions:
      domain:
        description: The guest, by name (as in C(xl list)). Each guest is declared once.
        type: str
        required: true
      disks:
        description:
          - The guest's disks in order, xl spec strings or dicts, as
            O(xen.disks.xen_disk#module:disks) takes them (a dict may also declare the storage behind
            its file target; the xl.cfg line carries only the xl options).
          - The file's disk setting becomes exactly this list.
          - Required for a guest applied live or persisted (an empty list must be said), so that a
            forgotten key never empties a guest; a guest only compared for drift needs none.
        type: list
        elements: raw
      exclusive:
        description: Detach live disks not declared here (defaults to O(exclusive)).
        type: bool
      keep:
        description: vdevs never detached by O(guests[].exclusive).
        type: list
        elements: str
      recreate:
        description: Re-create attached disks whose settings differ (defaults to O(recreate)).
        type: bool
      force:
        description: Detach without the guest's cooperation (defaults to O(force)).
        type: bool
      backend:
        description: Default backend domain of the guest's disks.
        type: str
      live:
        description: Apply this guest's disks to the running guest (defaults to O(live)).
        type: bool
      persist:
        description: Write this guest's file (defaults to O(persist)).
        type: bool
      config:
        description: The guest's xl.cfg file; unset means C(<config_dir>/<domain>.cfg).
        type: path
      content:
        description:
          - The whole file's text (for example rendered from a template on the controller); its
            disk setting is set to O(guests[].disks) and it replaces the file.
          - Unset, only the disk setting of the existing file changes; every other line and comment
            is kept byte for byte.
        type: str
  live:
    description: Apply the disks to the running guests.
    type: bool
    default: true
  persist:
    description: Write the disks to the guests' xl.cfg files.
    type: bool
    default: true
  exclusive:
    description: Default of O(guests[].exclusive).
    type: bool
    default: false
  recreate:
    description: Default of O(guests[].recreate).
    type: bool
    default: false
  force:
    description: Default of O(guests[].force).
    type: bool
    default: false
  config_dir:
    description: Directory of the guests' xl.cfg files.
    type: path
    default: /etc/xen
  create_config:
    description: Create a missing file holding only the disk setting (when O(guests[].content) is unset).
    type: bool
    default: false
  config_owner:
    description: Owner of each file written; unset keeps an existing file's owner. Files only read
      keep theirs.
    type: str
  config_group:
    description: Group of each file written; unset keeps an existing file's group.
    type: str
  config_mode:
    description: Mode of each file written (e.g. C("0644")); unset keeps an existing file's mode (a
      new file gets the umask's).
    type: raw
  backup:
    description: Keep a timestamped copy of each file before changing it.
    type: bool
    default: false
  validate:
    description:
      - Validate each new whole file with C(xl create --dryrun) before writing anything.
      - V(auto) validates when O(xl_path) exists, V(always) fails when it does not, V(never) skips it.
    type: str
    choices: [auto, always, never]
    default: auto
  xl_path:
    description: The C(xl) command used for validation.
    type: path
    default: /usr/sbin/xl
  validate_command:
    description: The validation command instead of C(xl create --dryrun --quiet %s); C(%s) is the new file.
    type: str
  report_drift:
    description:
      - After the run, read every declared running guest's disks back (one read of xenstore, no
        image inspection) and compare them with its file, by device number (RV(drift)).
    type: bool
    default: true
  fail_on_drift:
    description: Fail when a running guest's live disks, libxl's record and file disagree (after
      applying; in check mode, as the host is).
    type: bool
    default: false
  wait:
    description: Wait for the hot-plug handshake (see O(xen.disks.xen_disk#module:wait)).
    type: bool
    default: true
  timeout:
    description: Seconds per backend state change and xenstored answer (see
      O(xen.disks.xen_disk#module:timeout)); unset means libxl's timeouts.
    type: float
  hotplug_scripts:
    description: Who runs the backend hotplug scripts (see O(xen.disks.xen_disk#module:hotplug_scripts)).
    type: str
    choices: [auto, run, skip]
    default: auto
  script_dir:
    description: Directory of relative hotplug script names (libxl's C(XEN_SCRIPT_DIR)).
    type: path
    default: /etc/xen/scripts
  libxl_run_dir:
    description: libxl's run directory, where each qemu-xen device model listens on its QMP socket.
    type: path
    default: /var/run/xen
  xenstore_socket:
    description: Path of the xenstored unix socket (see O(xen.disks.xen_disk#module:xenstore_socket)).
    type: path
  libxl_dir:
    description: libxl's state directory, holding the guests' domain configuration files and libxl's locks.
    type: path
    default: /var/lib/xen
notes:
  - The live plane is exactly M(xen.disks.xen_disk)'s (libxl's JSON domain configuration and locks,
    QMP media changes, images, the trust rules for guest-writable nodes); the files are exactly
    M(xen.disks.xl_cfg_files)' (one canonical spec per line, other lines kept).
  - A guest whose live disks change in a way the guest must cooperate with (a detach) is handled as
    M(xen.disks.xen_disk) handles it; O(guests[].force) and O(guests[].recreate) are per guest.
seealso:
  - module: xen.disks.xen_disk
  - module: xen.disks.xl_cfg_files
  - module: xen.disks.xen_disk_info
"""

EXAMPLES = r"""
- name: Every guest of this dom0, live and in /etc/xen/<name>.cfg
  xen.disks.xen_host_disks:
    guests:
      - domain: web1
        disks:
          - /dev/vg0/web1-root,raw,xvda,rw
          - {target: /dev/vg0/web1-data, vdev: xvdb, access: rw}
        exclusive: true
      - domain: db1
        disks: ["/srv/xen/db1.qcow2,qcow2,xvda,rw", "vdev=hdc,devtype=cdrom"]
        config: /etc/xen/guests/db1.cfg
    fail_on_drift: true
  register: host_disks

- name: Guests not running had only their files written
  ansible.builtin.debug:
    var: host_disks.not_running

- name: Report only (nothing written; the drift report describes the host as it is)
  xen.disks.xen_host_disks:
    guests: "{{ xen_guests }}"
  check_mode: true
"""

RETURN = r"""
disks:
  description: The live plane's result per declared disk of the running guests applied live, as
    M(xen.disks.xen_disk) returns it (RV(xen.disks.xen_disk#module:disks)).
  returned: always
  type: list
  elements: dict
images:
  description: The image steps (created, grown), as RV(xen.disks.xen_disk#module:images).
  returned: always
  type: list
  elements: dict
stale:
  description: Stale disk records found, as RV(xen.disks.xen_disk#module:stale).
  returned: always
  type: list
  elements: dict
files:
  description: Each guest's file (persisted, or only read for the drift report), in the guests' order.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /etc/xen/web1.cfg
    name:
      description: The guest's name.
      type: str
      sample: web1
    changed:
      description: Whether the file (or its owner, group or mode) changed (would change, in check mode).
      type: bool
    created:
      description: Whether the file did not exist and was (or would be) created.
      type: bool
    validated:
      description: Whether C(xl) validated the new file.
      type: bool
    backup_file:
      description: The copy made before the change, or null.
      type: str
    exists:
      description: Whether the file exists after the run (in check mode, now).
      type: bool
    error:
      description: Why a file only read (O(guests[].persist) false) could not be read as xl reads
        it; its guest's drift then says so. A persisted file that cannot be read fails the run.
      type: str
      returned: when the file could not be read
    held:
      description: The file was not written because its guest's live disks failed (see RV(failed_domains)).
      type: bool
      returned: when true
    disks:
      description: The file's disk setting as xl reads it after the run (in check mode, as it is now).
      type: list
      elements: str
      sample: [format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1]
not_running:
  description: The declared guests that are not running (only their files were written).
  returned: always
  type: list
  elements: str
  sample: [spare1]
drift:
  description:
    - Per running declared guest (keyed by its name as declared), the drift of its live disks from
      its file as the P(xen.disks.xl_disks_drift#filter) filter reports it (C(in_sync),
      C(only_live), C(only_persistent), C(different), C(unreadable_live), C(not_in_libxl_config)),
      or C(in_sync) false and an C(error) when the file cannot be read as xl would.
    - Empty when O(report_drift) is false.
  returned: always
  type: dict
  sample: {web1: {in_sync: false, only_live: [], only_persistent: ["format=raw,vdev=xvdd,access=rw,target=/srv/extra.img"],
                  different: [], unreadable_live: [], not_in_libxl_config: []}}
in_sync:
  description: Whether every running declared guest is in sync (true when nothing was compared).
  returned: always
  type: bool
failed_domains:
  description: On failure, the guests whose live disks failed on their own (their files were held
    back, the others' written); absent when the failure was the whole run's.
  returned: failure
  type: list
  elements: str
  sample: [web1]
errors:
  description: On failure, every error, one per item.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import HAS_PYXS, PYXS_IMPORT_ERROR
from ansible_collections.xen.disks.plugins.module_utils._runs import host as _host_disks
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import exit_module


def main():
    module = AnsibleModule(argument_spec=_argspec.xen_host_disks_argument_spec(), supports_check_mode=True)
    if _host_disks.needs_xenstore(module.params) and not HAS_PYXS:
        module.fail_json(msg=missing_required_lib("pyxs"), exception=PYXS_IMPORT_ERROR)
    exit_module(module, lambda: _host_disks.run(module))


if __name__ == "__main__":
    main()
