#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: xl_cfg_files
short_description: Set the disk setting of many Xen guests' xl.cfg files in one run
version_added: 0.1.0
description:
  - Sets the C(disk = [ ... ]) setting of the xl.cfg(5) files of any number of guests of a host in
    one module run, one canonical spec per line, quoted as xl's config parser requires (the text
    the P(xen.disks.xl_cfg_set_disks#filter) filter gives). The roles
    P(xen.disks.xl_disks#role) and P(xen.disks.guest_disks#role) write their files with it, so a
    host costs one module run whatever its number of guests.
  - Without O(files[].content), only the disk setting of an existing file changes; every other line
    and comment is kept byte for byte. With it, the file becomes that text (for example rendered from
    a template on the controller) with its disk setting set.
  - A file whose disks already mean the declared ones (whatever their spelling) is left as it is.
  - "Every file and every disk is checked first, then every new file is validated with Xen's own
    parser (C(xl create --dryrun)) where C(xl) is installed; one error means no file is written, and
    the error names the file and the disk (for example C(files[1] (/etc/xen/web1.cfg): disks[2].vdev))."
  - A file whose O(files[].disks) are not given is only read, for its disks and text in the result.
author:
  - xen.disks contributors (@xen-disks)
attributes:
  check_mode:
    support: full
    description: Reads and checks every file, validates the new files with C(xl) (in a temporary
      folder), and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: The text of each changed file, before and after.
  platform:
    platforms: posix
    support: full
    description: Runs on the host that holds the guests' files (the dom0).
extends_documentation_fragment:
  - xen.disks.action_group
options:
  files:
    description: The files, each with the disks of its guest.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: The guest's xl.cfg file.
        type: path
        required: true
      name:
        description: The guest's name, repeated in the result (for the caller's reports).
        type: str
      disks:
        description:
          - "The guest's disks in order, each an xl disk spec string (as in xl.cfg, e.g.
            C(/dev/vg0/web1,raw,xvda,rw)), a list of strings forming one disk, or a dict keyed by the
            xl option names (e.g. C({target: /dev/vg0/web1, vdev: xvda, access: rw}))."
          - The setting becomes exactly this list; an empty list writes C(disk = []).
          - Unset means the file is only read.
        type: list
        elements: raw
      content:
        description:
          - The whole file's text (its disk setting is replaced by O(files[].disks)). Unset means only
            the disk setting of the existing file changes.
        type: str
      create:
        description:
          - Without O(files[].content), create a missing file holding only the disk setting instead
            of failing. Such a file is not a whole guest configuration, so C(xl) does not validate it.
          - Defaults to O(create).
        type: bool
      owner:
        description: Owner of the file; unset keeps an existing file's owner. Defaults to O(owner).
          Owner, group and mode are left alone on a file only read.
        type: str
      group:
        description: Group of the file; unset keeps an existing file's group. Defaults to O(group).
        type: str
      mode:
        description: Mode of the file (e.g. C("0644")); unset keeps an existing file's mode (a new
          file gets the umask's). Defaults to O(mode).
        type: raw
  create:
    description: Default of O(files[].create).
    type: bool
    default: false
  owner:
    description: Default of O(files[].owner).
    type: str
  group:
    description: Default of O(files[].group).
    type: str
  mode:
    description: Default of O(files[].mode).
    type: raw
  backup:
    description: Keep a timestamped copy of each file before changing it.
    type: bool
    default: false
  validate:
    description:
      - Validate every new file with Xen's own parser (O(validate_command)) before any file is
        written. V(auto) when O(xl_path) exists, V(always) requires it, V(never) skips it.
      - The collection's own checks (every disk, the whole file's syntax) always run.
    type: str
    choices: [auto, always, never]
    default: auto
  xl_path:
    description: Where xl is installed.
    type: path
    default: /usr/sbin/xl
  validate_command:
    description:
      - The validation command; C(%s) stands for the new file (a temporary copy). It must succeed
        for the file to be written. Unset means C(<xl_path> create --dryrun --quiet %s).
    type: str
  xenstore_socket:
    description:
      - Not used (this module reads no xenstore). Accepted, as O(libxl_dir) is, so that
        C(module_defaults) given to C(group/xen.disks.xen) for the other modules of the group apply
        to this one too.
    type: path
  libxl_dir:
    description:
      - Not used (see O(xenstore_socket)).
    type: path
    default: /var/lib/xen
notes:
  - Files are replaced atomically (a temporary file in the same folder, then a rename); an existing
    file keeps its owner, group and mode unless they are set.
seealso:
  - module: xen.disks.xen_disk
  - name: xl.cfg(5)
    description: The xl domain configuration file syntax.
    link: https://xenbits.xen.org/docs/4.17-testing/man/xl.cfg.5.html
"""

EXAMPLES = r"""
- name: The disks of every guest of the host, in their files
  xen.disks.xl_cfg_files:
    backup: true
    files:
      - path: /etc/xen/web1.cfg
        disks:
          - /dev/vg0/web1,raw,xvda,rw
          - {target: /dev/vg0/web1-data, vdev: xvdb, access: rw}
      - path: /etc/xen/db1.cfg
        disks:
          - vdev=xvda,access=rw,target=/dev/vg0/db1
          - ",,hdc:cdrom,r"

- name: A whole file rendered from a template on the controller
  xen.disks.xl_cfg_files:
    files:
      - path: /etc/xen/app1.cfg
        content: "{{ lookup('ansible.builtin.template', 'app1.cfg.j2') }}"
        mode: "0644"
        disks:
          - /dev/vg0/app1,raw,xvda,rw

- name: Read files only (their disks as xl reads them)
  xen.disks.xl_cfg_files:
    files:
      - path: /etc/xen/web1.cfg
      - path: /etc/xen/db1.cfg
  register: xl_files
"""

RETURN = r"""
changed:
  description: Whether any file was (or, in check mode, would be) written or had its owner, group or
    mode changed.
  returned: always
  type: bool
files:
  description: One entry per file, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /etc/xen/web1.cfg
    name:
      description: O(files[].name) as given, or null.
      type: str
      sample: web1
    changed:
      description: Whether this file was (or would be) written or had its attributes changed.
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
      sample: /etc/xen/web1.cfg.12345.2026-12-01@10:00:00~
    exists:
      description: Whether the file exists after the run (in check mode, now).
      type: bool
    content:
      description: The file's text after the run (in check mode, as it is now); empty when it does
        not exist.
      type: str
      sample: "name = 'web1'\ndisk = [\n    'format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1',\n]\n"
    disks:
      description: The file's disk setting as xl reads it, after the run (in check mode, as it is
        now); empty when the file does not exist or has no disk setting.
      type: list
      elements: str
      sample: [format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1]
errors:
  description: On failure, every error, one per item.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._io.xl_cfg_files import FILE_DEFAULTS, ConfigFiles


def main():
    module = AnsibleModule(argument_spec=_argspec.xl_cfg_files_argument_spec(), supports_check_mode=True)
    params = module.params
    files = ConfigFiles(module, params["files"], defaults={name: params[name] for name in FILE_DEFAULTS},
                        backup=params["backup"], validate=params["validate"], xl_path=params["xl_path"],
                        validate_command=params["validate_command"])
    try:
        errors = files.plan() or files.stage()
        if errors:
            module.fail_json(msg="\n".join(errors), errors=errors)
        results, diffs = files.commit()
    finally:
        files.cleanup()
    output = {"changed": any(r["changed"] for r in results), "files": results}
    if module._diff:
        output["diff"] = diffs
    module.exit_json(**output)


if __name__ == "__main__":
    main()
