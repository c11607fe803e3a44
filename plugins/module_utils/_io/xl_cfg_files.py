# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guests' xl.cfg files of one module run: the adapter between the pure edit plan
(`_xl_cfg_disks.plan_file`) and the host's file system.

Private to the xen.disks collection: no compatibility promise. Used by the xl_cfg_files and
xen_host_disks modules. Three phases, so a caller can check everything before it writes anything:
`plan` reads and checks every file, `stage` writes each new text to a temporary file and has xl
validate it, `commit` moves the new files into place (with backups). File operations go through
the AnsibleModule (atomic_move, backup_local, owner/group/mode), as every Ansible file module does.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import tempfile

from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg_disks as _xl_cfg_disks

FILE_DEFAULTS = ("create", "owner", "group", "mode")


def _read(path):
    """The file's text, or None when it does not exist (ValueError when it is not UTF-8 text)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text (byte %d)" % exc.start) from None


_SYMBOLIC_MODE = re.compile(r"[ugoa]*[-+=](?:[rwxXst]*|[ugo])(?:,[ugoa]*[-+=](?:[rwxXst]*|[ugo]))*\Z")


def _attribute_errors(entry):
    """Owner, group and mode that could not be set: known before any file is written."""
    errors = []
    for name, lookup in (("owner", pwd.getpwnam), ("group", grp.getgrnam)):
        value = entry.get(name)
        if value and not value.isdigit():
            try:
                lookup(value)
            except KeyError:
                errors.append("%s: no %s named %r on this host" % (name, "user" if name == "owner" else "group", value))
    mode = entry.get("mode")
    if mode is not None and not (isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777):
        text = str(mode) if isinstance(mode, str) else ""
        if not (re.fullmatch(r"[0-7]{1,5}", text) and int(text, 8) <= 0o7777) and not _SYMBOLIC_MODE.match(text):
            errors.append("mode: %r is neither an octal mode nor a symbolic one (e.g. u=rw,g=r)" % (mode,))
    return errors


def _message(exc, path):
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename in (None, path) else "%s: %s" % (exc.filename, exc.strerror)
    return str(exc)


class ConfigFiles:
    """Files to edit in one run. `entries`: dicts with path, name, disks (None: only read the
    file), content, create, owner, group, mode (None: the run's default from `defaults`), and
    `where` (how messages name the entry, e.g. `files[1]`)."""

    def __init__(self, module, entries, *, defaults=None, backup=False, validate="auto", xl_path="/usr/sbin/xl",
                 validate_command=None, report_unreadable=False):
        self.module = module
        self.entries = []
        for entry in entries:
            entry = dict(entry)
            for name in FILE_DEFAULTS:
                if entry.get(name) is None:
                    entry[name] = (defaults or {}).get(name)
            self.entries.append(entry)
        self.backup = backup
        self.policy = validate
        self.xl_path = xl_path
        self.validate_command = validate_command
        self.edits = []
        self.temp = {}  # index -> temporary file holding the new text
        self.validated = set()
        # a file only read that xl could not read: an `error` in its result instead of a failure
        self.report_unreadable = report_unreadable
        self.unreadable = {}  # index -> message

    def where(self, index):
        entry = self.entries[index]
        return "%s (%s)" % (entry.get("where") or "files[%d]" % index, entry["path"])

    def plan(self):
        """Every file read and its new text computed; all errors together (nothing written)."""
        errors = []
        seen = {}
        for index, entry in enumerate(self.entries):
            path = os.path.abspath(entry["path"])
            where = self.where(index)
            if path in seen:
                errors.append("%s: the same file as %s" % (where, seen[path]))
                continue
            seen[path] = where
            problems = _attribute_errors(entry) if entry["disks"] is not None else []  # a file only read keeps its own
            if problems:
                errors += ["%s: %s" % (where, problem) for problem in problems]
                continue
            try:
                old_text = _read(path)
                edit = _xl_cfg_disks.plan_file(path, old_text, entry["disks"], content=entry.get("content"),
                                               create=bool(entry["create"]))
                if edit.write and not os.path.isdir(os.path.dirname(path)):
                    raise ValueError("its folder does not exist")
            except (OSError, ValueError) as exc:
                if self.report_unreadable and entry["disks"] is None:
                    self.unreadable[index] = "%s: %s" % (where, _message(exc, path))
                    self.edits.append((index, entry, _xl_cfg_disks.FileEdit(path, None, None, False, False)))
                    continue
                errors.append("%s: %s" % (where, _message(exc, path)))
                continue
            self.edits.append((index, entry, edit))
        return errors

    def validator(self):
        """The validation command as argv with a %s placeholder, or None when not validating;
        (None, error) when it cannot be."""
        if self.policy == "never":
            return None, None
        if not os.path.exists(self.xl_path):
            if self.policy == "always":
                return None, "validate is always but %s is not installed" % self.xl_path
            return None, None
        command = self.validate_command or "%s create --dryrun --quiet %%s" % shlex.quote(self.xl_path)
        argv = shlex.split(command)
        if not any("%s" in arg for arg in argv):
            return None, "validate_command must contain %%s (the new file): %s" % command
        return argv, None

    def stage(self):
        """Each new text written to a temporary file and validated; errors for every file."""
        argv = None
        errors = []
        for index, entry, edit in self.edits:
            if not edit.write:
                continue
            folder = self.module.tmpdir if self.module.check_mode else os.path.dirname(edit.path)
            try:
                fd, temp = tempfile.mkstemp(dir=folder, prefix=".%s." % os.path.basename(edit.path))
                with os.fdopen(fd, "wb") as handle:
                    handle.write(edit.new_text.encode("utf-8"))
            except OSError as exc:
                errors.append("%s: %s" % (self.where(index), _message(exc, edit.path)))
                continue
            self.temp[index] = temp
            if not edit.validate:
                continue
            if argv is None:
                argv, problem = self.validator()
                if problem:
                    return [problem]
                argv = argv or []
            if not argv:
                continue
            rc, out, err = self.module.run_command([arg.replace("%s", temp) for arg in argv])
            if rc != 0:
                report = (err or out).strip().replace(temp, edit.path)
                errors.append("%s: xl refuses the new file (rc %d): %s" % (self.where(index), rc, report))
            else:
                self.validated.add(index)
        return errors

    def _attributes(self, path, entry, changed):
        """Owner, group and mode as set (check mode: whether they would change)."""
        module = self.module
        changed = module.set_owner_if_different(path, entry["owner"], changed) if entry["owner"] else changed
        changed = module.set_group_if_different(path, entry["group"], changed) if entry["group"] else changed
        if entry["mode"] is not None:
            changed = module.set_mode_if_different(path, entry["mode"], changed)
        return changed

    def commit(self, with_content=True, hold=()):
        """The new files moved into place (check mode: nothing); (results, diffs) in entry order.
        The files of the guests named in `hold` are left as they are (`held` true)."""
        module = self.module
        results, diffs = [], []
        for index, entry, edit in self.edits:
            held = entry.get("name") in hold and edit.write
            write = edit.write and not held
            result = {"path": entry["path"], "name": entry.get("name"), "changed": write, "created": write and edit.created,
                      "validated": index in self.validated, "backup_file": None}
            if held:
                result["held"] = True
            if write:
                if module._diff:
                    diffs.append({"before_header": entry["path"], "after_header": entry["path"],
                                  "before": edit.old_text or "", "after": edit.new_text})
                if not module.check_mode:
                    if edit.old_text is not None and self.backup:
                        result["backup_file"] = module.backup_local(edit.path)
                    module.atomic_move(self.temp.pop(index), edit.path)
            exists = edit.old_text is not None or (write and not module.check_mode)
            if exists and entry["disks"] is not None and not held:  # a file only read keeps its attributes
                result["changed"] = self._attributes(edit.path, entry, result["changed"])
            text = edit.old_text if module.check_mode or held else edit.text
            result["exists"] = exists
            if index in self.unreadable:
                result.update(exists=os.path.exists(edit.path), error=self.unreadable[index])
            if with_content:
                result["content"] = text or ""
            result["disks"] = _xl_cfg_disks.file_disks(text, edit.path) if text else []
            results.append(result)
        return results, diffs

    def cleanup(self):
        for temp in self.temp.values():
            if os.path.exists(temp):
                os.unlink(temp)
