# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The xl disk specification (xl-disk-configuration(5)) as Xen 4.17 reads it, and libxl's rules.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

`parse_disk_spec` reproduces `xlu_disk_parse` of Xen 4.17 (tools/libs/util/libxlu_disk_l.l and
libxlu_disk.c): the flex scanner picks the longest match at each position (ties go to the earlier
rule), `.` stops at a newline, trailing context counts towards the match length. The result is the
`libxl_device_disk` the parser leaves behind, as a `Disk`: format raw when none is given, a cdrom
read-only and removable (format empty without a target). One deliberate difference: `trusted` and
`untrusted` are flags, as the grammar and the man page say; the lexer shipped in 4.17 and 4.18 was
generated before they were added and takes them as positional parameters (fixed in 4.19).

Parser-stage errors read like libxlutil's (`unknown parameter: near `foo=b' in `...'`).
`check_libxl_rules` and `choose_backend` are the libxl stage (`libxl__device_disk_setdefault`,
`libxl__device_disk_set_backend`; docs/XENSTORE-LAYOUT.md §6); their messages say which
rule failed. `render_disk_spec` writes the canonical form that Xen's parser reads back to the same
disk. `disk_from_dict` / `disk_to_dict` are the structured (YAML) form, keyed by the xl option names.

Legacy prefixes (`phy:`, `file:`, `tap:aio:` ...) are recorded as the disk's `driver` and
`driver_subtype` (the driver split of libvirt's `<driver name='tap' type='aio'/>`). Xen 4.17 ignores
them (only format prefixes such as `qcow2:` and script prefixes such as `nbd:` mean something), so
they take no part in comparing disks: `phy:/dev/x,xvda,w` equals `vdev=xvda,target=/dev/x`.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field, fields, replace
from typing import Optional

from ansible_collections.xen.disks.plugins.module_utils._core.text import bounded_int, shown, text_problem
from ansible_collections.xen.disks.plugins.module_utils._core.vdev import VdevError, vdev_to_devid

FORMATS = ("raw", "qcow", "qcow2", "vhd", "empty", "qed")
BACKEND_TYPES = ("phy", "tap", "qdisk", "standalone")
SPECIFICATIONS = ("xen", "virtio")
TRANSPORTS = ("mmio",)
ACCESS_READ_ONLY = ("r", "ro")
ACCESS_READ_WRITE = ("rw", "w", "")
DEVTYPES = ("disk", "cdrom")
LEGACY_DRIVERS = ("phy", "file", "tap", "tap2", "tapdisk", "ioemu")
LEGACY_SUBTYPES = ("aio", "raw", "qcow", "qcow2", "vhd")
TARGET_KINDS = ("block", "file", "other", "missing", "unknown")
GUEST_TYPES = ("pv", "pvh", "hvm")

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1


class DiskSpecError(ValueError):
    """An invalid disk: `field` is the xl option at fault (or None), `value` the input quoted."""

    def __init__(self, field_name, value, message):
        self.field = field_name
        self.value = value
        super().__init__(message)


@dataclass(frozen=True)
class Disk:
    """One disk, fields named after xl-disk-configuration(5) (dashes as underscores).

    None means "not given" (libxl's default applies; see the `effective_*` properties).
    A parsed disk has `format`, `access` ("rw"/"ro") and `devtype` ("disk"/"cdrom") filled in as
    xl's parser does. `driver`/`driver_subtype` only record a legacy prefix and are not compared.
    """

    target: Optional[str] = None
    format: Optional[str] = None
    vdev: Optional[str] = None
    access: Optional[str] = None
    devtype: Optional[str] = None
    backendtype: Optional[str] = None
    backend: Optional[str] = None
    script: Optional[str] = None
    specification: Optional[str] = None
    discard: Optional[bool] = None
    direct_io_safe: bool = False
    trusted: Optional[bool] = None
    colo: Optional[bool] = None
    colo_host: Optional[str] = None
    colo_port: Optional[int] = None
    colo_export: Optional[str] = None
    active_disk: Optional[str] = None
    hidden_disk: Optional[str] = None
    transport: Optional[str] = None
    driver: Optional[str] = field(default=None, compare=False)
    driver_subtype: Optional[str] = field(default=None, compare=False)

    @property
    def is_cdrom(self) -> bool:
        return self.devtype == "cdrom"

    @property
    def removable(self) -> bool:
        """xl makes exactly the cdroms removable."""
        return self.is_cdrom

    @property
    def readwrite(self) -> bool:
        return not self.is_cdrom and self.access not in ACCESS_READ_ONLY

    @property
    def effective_format(self) -> str:
        if self.is_cdrom and not self.target:
            return "empty"
        return self.format or "raw"

    @property
    def effective_discard(self) -> bool:
        """libxl: discard defaults to on for read-write disks only."""
        return self.readwrite if self.discard is None else self.discard

    @property
    def effective_trusted(self) -> bool:
        return True if self.trusted is None else self.trusted

    @property
    def effective_colo(self) -> bool:
        return bool(self.colo)

    @property
    def effective_specification(self) -> str:
        return self.specification or "xen"

    @property
    def effective_transport(self) -> Optional[str]:
        """libxl forces mmio for virtio; a xen disk has no transport."""
        return "mmio" if self.effective_specification == "virtio" else self.transport

    @property
    def devid(self) -> int:
        """The device number of `vdev` (raises DiskSpecError for an invalid vdev)."""
        return _devid_of(self.vdev)

    @property
    def legacy_prefix(self) -> str:
        """The driver split written back as xm/xl's legacy prefix: `tap:aio:`, `phy:`, or ""."""
        return "".join(part + ":" for part in (self.driver, self.driver_subtype) if part)


# --------------------------------------------------------------------------------------------
# The scanner of libxlu_disk_l.l. Rule numbers are the rules' order in the flex file: the longest
# match wins and a tie goes to the lower number.

R_BLANKS, R_FORMAT, R_CDROM, R_DEVTYPE_CDROM, R_DEVTYPE_DISK, R_DEVTYPE_OTHER = 0, 1, 2, 3, 4, 5
R_ACCESS, R_BACKEND, R_BACKENDTYPE, R_SPECIFICATION, R_VDEV, R_SCRIPT = 6, 7, 8, 9, 10, 11
R_DIRECT_IO_SAFE, R_DISCARD, R_NO_DISCARD, R_COLO, R_NO_COLO = 12, 13, 14, 15, 16
R_COLO_HOST, R_COLO_PORT, R_COLO_EXPORT, R_ACTIVE_DISK, R_HIDDEN_DISK = 17, 18, 19, 20, 21
R_TRUSTED, R_UNTRUSTED, R_TARGET, R_UNKNOWN_PARAMETER = 22, 23, 24, 25
R_FORMAT_PREFIX, R_SCRIPT_PREFIX, R_TAPDISK, R_TAP, R_AIO, R_IOEMU, R_FILE, R_PHY = range(26, 34)
R_UNKNOWN_PREFIX, R_POSITIONAL, R_ANY = 34, 35, 36

_KEYED_RULES = {
    "format": R_FORMAT, "access": R_ACCESS, "backend": R_BACKEND, "backendtype": R_BACKENDTYPE,
    "specification": R_SPECIFICATION, "vdev": R_VDEV, "script": R_SCRIPT,
    "colo-host": R_COLO_HOST, "colo-port": R_COLO_PORT, "colo-export": R_COLO_EXPORT,
    "active-disk": R_ACTIVE_DISK, "hidden-disk": R_HIDDEN_DISK,
}
_FLAG_RULES = {
    "cdrom": R_CDROM, "direct-io-safe": R_DIRECT_IO_SAFE, "discard": R_DISCARD,
    "no-discard": R_NO_DISCARD, "colo": R_COLO, "no-colo": R_NO_COLO,
    "trusted": R_TRUSTED, "untrusted": R_UNTRUSTED,
}
_PREFIX_RULES = {
    "raw": R_FORMAT_PREFIX, "qcow": R_FORMAT_PREFIX, "qcow2": R_FORMAT_PREFIX, "vhd": R_FORMAT_PREFIX,
    "iscsi": R_SCRIPT_PREFIX, "nbd": R_SCRIPT_PREFIX, "enbd": R_SCRIPT_PREFIX, "drbd": R_SCRIPT_PREFIX,
    "tapdisk": R_TAPDISK, "tap": R_TAP, "tap2": R_TAP, "aio": R_AIO, "ioemu": R_IOEMU,
    "file": R_FILE, "phy": R_PHY,
}
# the string fields set by savestring(): rule -> (field, name in "... respecified")
_STRING_RULES = {
    R_BACKEND: ("backend", "backend"), R_VDEV: ("vdev", "vdev"), R_SCRIPT: ("script", "script"),
    R_COLO_HOST: ("colo_host", "colo-host"), R_COLO_EXPORT: ("colo_export", "colo-export"),
    R_ACTIVE_DISK: ("active_disk", "active-disk"), R_HIDDEN_DISK: ("hidden_disk", "hidden-disk"),
}

_NOT_EQUALS_OR_COMMA = re.compile(r"[^=,]*")
_NOT_COMMA = re.compile(r"[^,]*")
_BLANKS = re.compile(r"[ \t\n]*")
_WORD = re.compile(r"[a-z][a-z0-9]*")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_LOWER_OR_DIGIT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_BLANK = frozenset(" \t\n")
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_DEVTYPE_RULES = {"cdrom": R_DEVTYPE_CDROM, "disk": R_DEVTYPE_DISK}


class _ParseState:
    """The `libxl_device_disk` being filled plus the parse context (`DiskParseContext`)."""

    __slots__ = ("target", "format", "vdev", "readwrite", "is_cdrom", "backendtype", "backend",
                 "script", "specification", "discard", "direct_io_safe", "trusted", "colo",
                 "colo_host", "colo_port", "colo_export", "active_disk", "hidden_disk",
                 "had_depr_prefix", "access_set", "driver", "driver_subtype", "spec")

    def __init__(self):
        self.target = self.format = self.vdev = self.backendtype = self.backend = None
        self.script = self.specification = self.discard = self.trusted = self.colo = None
        self.colo_host = self.colo_port = self.colo_export = None
        self.active_disk = self.hidden_disk = self.driver = self.driver_subtype = None
        self.readwrite = True
        self.is_cdrom = self.direct_io_safe = self.had_depr_prefix = self.access_set = False
        self.spec = None

    def error(self, field_name, near, message):
        """xlu__disk_err: `<message>: near `<near>' in `<spec>'`."""
        if near is None:
            text = "%s in `%s'" % (message, self.spec)
        else:
            text = "%s: near `%s' in `%s'" % (message, near, self.spec)
        return DiskSpecError(field_name, self.spec, text)

    def save_string(self, attribute, what, value):
        current = getattr(self, attribute)
        if current:  # an empty string may be overwritten silently
            raise self.error(attribute.replace("_", "-"), value, what + " respecified")
        setattr(self, attribute, value)

    def set_enum(self, attribute, text, value, allowed, member):
        """setformat / setbackendtype / setspecification: `text` as written, `value` as meant."""
        if value not in allowed:
            raise self.error(attribute, text, "unknown value for " + attribute)
        current = getattr(self, attribute)
        if current is not None and current != value:
            raise self.error(attribute, text, member + " respecified")
        setattr(self, attribute, value)

    def set_format(self, text):
        """setformat: an empty value means raw."""
        self.set_enum("format", text, text or "raw", FORMATS, "format")

    def set_access(self, value):
        if value in ACCESS_READ_ONLY:
            self.readwrite = False
        elif value in ACCESS_READ_WRITE:
            self.readwrite = True
        else:
            raise self.error("access", value, "unknown value for access")

    def vdev_and_devtype(self, text):
        """The legacy `<vdev>:<devtype>` positional; False when there is no colon."""
        colon = text.rfind(":")
        if colon < 0:
            return False
        self.save_string("vdev", "vdev", text[:colon])
        devtype = text[colon + 1:]
        if devtype == "cdrom":
            self.is_cdrom = True
        elif devtype == "disk":
            self.is_cdrom = False
        else:
            raise self.error("devtype", devtype, "unknown deprecated type")
        return True

    def positional(self, text):
        if self.target is None:
            self.save_string("target", "target", text)
        elif not self.had_depr_prefix and self.format is None:
            if not self.target and self.vdev_and_devtype(text):
                self.format = "empty"
            else:
                self.set_format(text)
        elif self.vdev is None:
            if not self.vdev_and_devtype(text):
                self.save_string("vdev", "vdev", text)
        elif not self.access_set:
            self.access_set = True
            self.set_access(text)
        else:
            raise self.error(None, text, "too many positional parameters")


def _c_atoi(text):
    """glibc atoi: (int) strtol(text, NULL, 10), strtol saturating at the 64-bit limits."""
    match = _ATOI.match(text)
    if not match:
        return 0
    magnitude = bounded_int(match.group(2), 1 << 63)
    magnitude = 1 << 63 if magnitude is None else magnitude  # strtol saturates
    value = -magnitude if match.group(1) == "-" else min(magnitude, (1 << 63) - 1)
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value > INT_MAX else value


class _Ends:
    """Where the `[^=,]` run at a position ends, and where its line ends, each in amortised
    constant time: a spec of repeated prefixes (`phy:phy:...`) is scanned in linear time."""

    __slots__ = ("spec", "length", "newlines", "run_start", "run_end")

    def __init__(self, spec):
        self.spec = spec
        self.length = len(spec)
        self.newlines = [m.start() for m in _NEWLINE.finditer(spec)] if "\n" in spec else []
        self.run_start = self.run_end = -1

    def run(self, pos):
        """End of the `[^=,]*` run at `pos` (every position of one run shares it)."""
        if not self.run_start <= pos <= self.run_end:
            self.run_start, self.run_end = pos, _NOT_EQUALS_OR_COMMA.match(self.spec, pos).end()
        return self.run_end

    def line(self, start):
        """Index of the first newline at or after `start`, else the length (`.` stops there)."""
        index = bisect_left(self.newlines, start)
        return self.newlines[index] if index < len(self.newlines) else self.length


_NEWLINE = re.compile("\n")
_PARAMETER_NAME_RUN = re.compile(r"[a-z][-a-z0-9]*")
_LONGEST_KEYWORD = max(len(k) for k in list(_KEYED_RULES) + list(_FLAG_RULES) + ["target", "devtype"])


def _scan(state, spec):
    """Run the scanner over one string; raises DiskSpecError at the first error xl reports."""
    state.spec = spec
    length = len(spec)
    ends = _Ends(spec)
    pos = 0
    while pos < length:
        char = spec[pos]
        if char == "=":
            # `.` then `<LEXERR>.*`; at the very end flex meets end-of-file first and stops quietly
            if pos + 1 == length:
                return
            raise state.error(None, spec[pos:ends.line(pos + 1)], "bad disk syntax")
        run_end = ends.run(pos)
        comma = 1 if run_end < length and spec[run_end] == "," else 0
        best_length, best_rule = run_end - pos + comma, R_POSITIONAL
        if char in _BLANK:
            blanks_end = _BLANKS.match(spec, pos).end()
            if blanks_end == length or ends.line(blanks_end) - pos >= best_length:
                pos = blanks_end
                continue
        elif char in _LOWER:
            # no keyword is longer: a long run is never copied or hashed (linear time)
            key = spec[pos:run_end] if run_end - pos <= _LONGEST_KEYWORD else None
            end = run_end + comma  # end of the best match's text (without trailing context)
            rule = _FLAG_RULES.get(key)
            if rule is not None:
                best_rule = rule
            if comma == 0 and run_end < length:  # spec[run_end] == "="
                if key == "target":
                    line_end = ends.line(run_end)
                    best_length, best_rule, end = line_end - pos, R_TARGET, line_end
                else:
                    rule = _KEYED_RULES.get(key)
                    if rule is None and key == "devtype":
                        rule = R_DEVTYPE_OTHER
                    if rule is not None:
                        value_end = _NOT_COMMA.match(spec, run_end + 1).end()
                        end = value_end + (1 if value_end < length else 0)
                        best_length, best_rule = end - pos, rule
                        if rule == R_DEVTYPE_OTHER:
                            value = spec[run_end + 1:value_end]
                            best_rule = _DEVTYPE_RULES.get(value, rule)
                # `[a-z][-a-z0-9]*=[^,],?` can outrun `target=.*` when a newline follows the `=`
                if (run_end + 1 < length and spec[run_end + 1] != ","
                        and _PARAMETER_NAME_RUN.match(spec, pos, run_end).end() == run_end):
                    unknown_end = run_end + 2
                    # [^,] is one byte: after a multi-byte character the next byte is no comma
                    if unknown_end < length and spec[unknown_end] == "," and spec[run_end + 1] < "\x80":
                        unknown_end += 1
                    if unknown_end - pos > best_length:
                        best_length, best_rule, end = unknown_end - pos, R_UNKNOWN_PARAMETER, unknown_end
            # a prefix `<word>:` has its colon inside the [^=,] run
            word_end = _WORD.match(spec, pos).end()
            if word_end < length and spec[word_end] == ":":
                after = word_end + 1
                rule = _PREFIX_RULES.get(spec[pos:word_end])
                if rule is not None:
                    total = ends.line(after) - pos
                    if total > best_length or (total == best_length and rule < best_rule):
                        best_length, best_rule, end = total, rule, after
                if after < length and spec[after] not in _LOWER_OR_DIGIT:
                    total = ends.line(after + 1) - pos
                else:
                    total = after - pos
                if total > best_length or (total == best_length and R_UNKNOWN_PREFIX < best_rule):
                    raise state.error(None, spec[pos:after], "unknown deprecated disk prefix")
            if best_rule != R_POSITIONAL:
                _act(state, best_rule, spec, pos, run_end, end)
                pos = end
                continue
        state.positional(spec[pos:run_end])
        pos = run_end + comma


def _act(state, rule, spec, pos, key_end, end):
    """The action of a keyword, flag or prefix rule matching spec[pos:end]."""
    if rule <= R_HIDDEN_DISK and spec[key_end:key_end + 1] == "=":
        value = spec[key_end + 1:end - 1] if spec[end - 1] == "," else spec[key_end + 1:end]
    else:
        value = None
    if rule == R_TARGET:
        text = spec[pos:end]
        if text.endswith(","):
            text = text[:-1]
        state.save_string("target", "target", text[7:])
    elif rule == R_FORMAT:
        state.set_format(value)
    elif rule in _STRING_RULES:
        attribute, what = _STRING_RULES[rule]
        state.save_string(attribute, what, value)
    elif rule == R_ACCESS:
        state.set_access(value)
    elif rule == R_BACKENDTYPE:
        state.set_enum("backendtype", value, value, BACKEND_TYPES, "backend")
    elif rule == R_SPECIFICATION:
        state.set_enum("specification", value, value, SPECIFICATIONS, "specification")
    elif rule == R_COLO_PORT:
        port = _c_atoi(value)
        if not port:
            raise state.error("colo-port", value, "unknown value for colo_port")
        state.colo_port = port
    elif rule in (R_CDROM, R_DEVTYPE_CDROM):
        state.is_cdrom = True
    elif rule == R_DEVTYPE_DISK:
        state.is_cdrom = False
    elif rule == R_DEVTYPE_OTHER:
        raise state.error("devtype", spec[pos:end], "unknown value for type")
    elif rule == R_DIRECT_IO_SAFE:
        state.direct_io_safe = True
    elif rule in (R_DISCARD, R_NO_DISCARD):
        state.discard = rule == R_DISCARD
    elif rule in (R_COLO, R_NO_COLO):
        state.colo = rule == R_COLO
    elif rule in (R_TRUSTED, R_UNTRUSTED):
        state.trusted = rule == R_TRUSTED
    elif rule == R_UNKNOWN_PARAMETER:
        raise state.error(spec[pos:key_end], spec[pos:end], "unknown parameter")
    else:  # a legacy prefix: spec[pos:end] is "<word>:"
        word = spec[pos:end - 1]
        state.had_depr_prefix = True
        if rule == R_FORMAT_PREFIX:
            state.set_format(word)
            if state.driver is not None and state.driver_subtype is None:
                state.driver_subtype = word
        elif rule == R_SCRIPT_PREFIX:
            state.save_string("script", "script", "block-" + word)
        elif rule == R_AIO:
            state.driver_subtype = state.driver_subtype or word
        elif state.driver is None:
            state.driver = word


def parse_disk_spec(spec) -> Disk:
    """xlu_disk_parse: one xl disk string, or a list of strings forming one disk."""
    specs = [spec] if isinstance(spec, str) else spec
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, str) for s in specs):
        raise DiskSpecError(None, spec, "a disk specification is a string or a list of strings")
    if not specs:
        raise DiskSpecError(None, spec, "a disk specification needs at least one string")
    for text in specs:
        problem = text_problem(text)
        if problem:
            raise _text_error(specs, text, problem)
    state = _ParseState()
    for text in specs:
        _scan(state, text)
    return _finish(state, lambda f, v, m: state.error(f, None, m))


_NUL_MARK, _SURROGATE_MARK = "\x01", "\ufffd"  # lexed as a NUL and a surrogate are


def _text_error(specs, text, problem):
    """A NUL (which would end xl's C string) or a lone surrogate (no UTF-8): located at the
    option that holds it, found by parsing a copy where such characters are marks."""
    def marked(value):
        return "".join(_NUL_MARK if c == "\0" else _SURROGATE_MARK if "\ud800" <= c <= "\udfff" else c
                       for c in value)

    field_name = None
    try:
        disk = parse_disk_spec([marked(t) for t in specs])
    except DiskSpecError:
        disk = None
    if disk is not None:
        for name in ("target", "vdev", "backend", "script", "colo_host", "colo_export", "active_disk",
                     "hidden_disk"):
            value = getattr(disk, name)
            if value is not None and (_NUL_MARK in value or _SURROGATE_MARK in value):
                field_name = name.replace("_", "-")
                break
    return DiskSpecError(field_name, text, "%s: %s in %s" % (field_name or "spec", problem, shown(text)))


def _finish(values, error):
    """What xlu_disk_parse does after the scan, shared by the structured form."""
    fmt = values.format or "raw"
    target = values.target
    readwrite = values.readwrite
    if values.is_cdrom:
        readwrite = False
        if not target:
            fmt = "empty"
            target = None  # libxl treats an empty target and none alike for a cdrom
    if values.vdev is None:
        raise error("vdev", None, "no vdev specified")
    if target is None and not values.is_cdrom:
        raise error("target", None, "no target specified (and device not removable)")
    # Filling __dict__ gives the same object as Disk(...) at a fifth of the cost of the frozen
    # dataclass's __init__ (one object.__setattr__ per field); parsing speed matters (benchmark).
    disk = object.__new__(Disk)
    disk.__dict__.update(
        target=target, format=fmt, vdev=values.vdev, access="rw" if readwrite else "ro",
        devtype="cdrom" if values.is_cdrom else "disk", backendtype=values.backendtype,
        backend=values.backend, script=values.script, specification=values.specification,
        discard=values.discard, direct_io_safe=values.direct_io_safe, trusted=values.trusted,
        colo=values.colo, colo_host=values.colo_host, colo_port=values.colo_port,
        colo_export=values.colo_export, active_disk=values.active_disk,
        hidden_disk=values.hidden_disk, transport=getattr(values, "transport", None),
        driver=values.driver, driver_subtype=values.driver_subtype)
    return disk


# --------------------------------------------------------------------------------------------
# Canonical rendering

_RENDERED_STRINGS = (("backend", "backend"), ("script", "script"))
_RENDERED_COLO = (("colo_host", "colo-host"), ("colo_port", "colo-port"),
                  ("colo_export", "colo-export"), ("active_disk", "active-disk"),
                  ("hidden_disk", "hidden-disk"))
_FLAG_WORDS = (("discard", "discard", "no-discard"), ("trusted", "trusted", "untrusted"),
               ("colo", "colo", "no-colo"))


def render_disk_spec(disk: Disk) -> str:
    """The canonical xl string: key=value in a fixed order, `target=` last.

    Xen's parser reads it back to the same disk. A target holding a newline (possible only as a
    positional, which never holds `,` or `=`) is written first, as a positional, since `target=`
    stops at a newline. `transport` has no xl spelling; mmio is implied by virtio.
    """
    if disk.transport is not None and not (disk.transport == "mmio" and disk.specification == "virtio"):
        raise DiskSpecError("transport", disk.transport,
                            "transport=%s cannot be written in xl syntax (xl implies mmio for "
                            "specification=virtio)" % disk.transport)
    parts = ["format=" + disk.effective_format, "vdev=" + (disk.vdev or ""),
             "access=" + ("rw" if disk.readwrite else "ro")]
    if disk.is_cdrom:
        parts.append("devtype=cdrom")
    if disk.backendtype is not None:
        parts.append("backendtype=" + disk.backendtype)
    for attribute, name in _RENDERED_STRINGS:
        value = getattr(disk, attribute)
        if value is not None:
            parts.append(name + "=" + value)
    if disk.specification is not None:
        parts.append("specification=" + disk.specification)
    if disk.direct_io_safe:
        parts.append("direct-io-safe")
    for attribute, on, off in _FLAG_WORDS:
        value = getattr(disk, attribute)
        if value is not None:
            parts.append(on if value else off)
    for attribute, name in _RENDERED_COLO:
        value = getattr(disk, attribute)
        if value is not None:
            parts.append("%s=%s" % (name, value))
    for attribute in _KEYED_STRINGS:
        value = getattr(disk, attribute)
        if value is not None and ("," in value or "\0" in value):
            raise _unwritable(attribute, value, "a comma or a NUL")
    target = disk.target
    if target is None:
        return ",".join(parts)
    if "\0" in target:
        raise _unwritable("target", target, "a NUL")
    if "\n" in target:
        rendered = target + "," + ",".join(parts)
        # only a target the parser itself produced from a positional is sure to read back
        if "," in target or "=" in target or _target_read_back(rendered) != target:
            raise _unwritable("target", target, "a newline here")
        return rendered
    # xl strips one trailing comma from `target=...`: keep a target's own
    parts.append("target=" + target + ("," if target.endswith(",") else ""))
    return ",".join(parts)


_KEYED_STRINGS = ("vdev", "backend", "script", "colo_host", "colo_export", "active_disk", "hidden_disk")


def _unwritable(attribute, value, what):
    name = attribute.replace("_", "-")
    return DiskSpecError(name, value, "%s cannot be written in xl syntax with %s: near `%s'" % (name, what, value))


def _target_read_back(rendered):
    try:
        return parse_disk_spec(rendered).target
    except DiskSpecError:
        return None


# --------------------------------------------------------------------------------------------
# Structured form

_DICT_STRINGS = ("target", "vdev", "backend", "script", "colo-host", "colo-export",
                 "active-disk", "hidden-disk")
_DICT_BOOLEANS = ("discard", "direct-io-safe", "trusted", "colo")
_DICT_KEYS = ("target", "format", "vdev", "access", "devtype", "backendtype", "backend", "script",
              "specification", "discard", "direct-io-safe", "trusted", "colo", "colo-host",
              "colo-port", "colo-export", "active-disk", "hidden-disk", "transport", "driver",
              "driver_subtype")
_DICT_CHOICES = {
    "format": (FORMATS, "format"), "access": (ACCESS_READ_ONLY + ACCESS_READ_WRITE, "access"),
    "devtype": (DEVTYPES, "type"), "backendtype": (BACKEND_TYPES, "backendtype"),
    "specification": (SPECIFICATIONS, "specification"), "transport": (TRANSPORTS, "transport"),
    "driver": (LEGACY_DRIVERS, "driver"), "driver_subtype": (LEGACY_SUBTYPES, "driver_subtype"),
}


class _DictValues:
    """Attribute view of a validated dict, shaped like _ParseState for _finish."""

    def __init__(self, values):
        self.__dict__.update(values)


def _dict_error(field_name, value, message):
    if value is None:
        return DiskSpecError(field_name, None, message)
    near = value if isinstance(value, str) and len(value) <= 200 and not text_problem(value) else shown(value)
    return DiskSpecError(field_name, value, "%s: near `%s'" % (message, near))


def disk_from_dict(data) -> Disk:
    """A disk from its structured form: keys are xl option names (`-` or `_`), None = not given."""
    if not isinstance(data, dict):
        raise DiskSpecError(None, data, "a disk must be a dict, not %s" % type(data).__name__)
    values = {}
    for raw_key, value in data.items():
        if not isinstance(raw_key, str):
            raise DiskSpecError(None, raw_key, "unknown parameter: near `%s'" % (raw_key,))
        key = raw_key if raw_key in ("driver_subtype",) else raw_key.replace("_", "-")
        if key not in _DICT_KEYS:
            raise _dict_error(raw_key, raw_key, "unknown parameter")
        if key in values:
            raise _dict_error(key, raw_key, "%s respecified" % key)
        values[key] = value
    attrs = {"readwrite": True, "is_cdrom": False, "direct_io_safe": False}
    for key, value in values.items():
        attribute = key.replace("-", "_")
        if value is None:
            continue
        if key in _DICT_STRINGS:
            _check_string(key, value, allow_comma=key == "target")
            attrs[attribute] = value
        elif key in _DICT_BOOLEANS:
            if not isinstance(value, bool):
                raise _dict_error(key, value, "unknown value for %s (a boolean)" % key)
            attrs[attribute] = value
        elif key == "colo-port":
            port = _check_port(value)
            attrs[attribute] = port
        else:
            allowed, member = _DICT_CHOICES[key]
            if not isinstance(value, str) or value not in allowed:
                raise _dict_error(key, value, "unknown value for " + member)
            if key == "access":
                attrs["readwrite"] = value not in ACCESS_READ_ONLY
            elif key == "devtype":
                attrs["is_cdrom"] = value == "cdrom"
            else:
                attrs[attribute] = value
    for attribute in ("target", "format", "vdev", "backendtype", "backend", "script",
                      "specification", "discard", "trusted", "colo", "colo_host", "colo_port",
                      "colo_export", "active_disk", "hidden_disk", "transport", "driver",
                      "driver_subtype"):
        attrs.setdefault(attribute, None)
    subtype = attrs["driver_subtype"]
    if subtype in FORMATS:  # as in `tap:qcow2:`, a format sub-type is the format
        if attrs["format"] not in (None, subtype):
            raise _dict_error("driver_subtype", subtype, "format respecified")
        attrs["format"] = subtype
    _check_transport(attrs["specification"], attrs["transport"])
    if attrs["transport"] == "mmio" and attrs["specification"] == "virtio":
        attrs["transport"] = None  # implied: the same disk as one written in xl syntax
    return _finish(_DictValues(attrs), _dict_error)


def _check_string(key, value, allow_comma):
    if not isinstance(value, str):
        raise DiskSpecError(key, value, "%s must be a string, not %s" % (key, type(value).__name__))
    problem = text_problem(value)
    if problem and "\0" not in value:
        raise _dict_error(key, value, "%s: %s" % (key, problem))
    if "\0" in value or "\n" in value:
        raise _dict_error(key, value.replace("\0", "\\0").replace("\n", "\\n"),
                          "%s must not contain a NUL or a newline" % key)
    if not allow_comma and "," in value:
        raise _dict_error(key, value, "%s must not contain a comma (only target may)" % key)


def _check_port(value):
    given = value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _dict_error("colo-port", value, "unknown value for colo_port")
    if isinstance(value, str):
        if not value.isdigit() or not value.isascii():
            raise _dict_error("colo-port", value, "unknown value for colo_port")
        value = bounded_int(value, 65535)
    if value is None or not 1 <= value <= 65535:
        raise _dict_error("colo-port", given, "unknown value for colo_port (1-65535)")
    return value


def _check_transport(specification, transport):
    if transport is not None and specification != "virtio":
        raise DiskSpecError("transport", transport,
                            "transport: Transport is only supported for specification virtio")


def disk_to_dict(disk: Disk) -> dict:
    """The structured form, keyed by the xl option names (dashes), every key present."""
    result = {}
    for item in fields(Disk):
        name = item.name if item.name == "driver_subtype" else item.name.replace("_", "-")
        result[name] = getattr(disk, item.name)
    return result


# Spellings of libxl's own choice: dom0 serves a disk without `backend=`, and the default hotplug
# script is `block` in libxl's script directory.
DOM0_BACKENDS = ("0", "Domain-0")
DEFAULT_SCRIPTS = ("block", "/etc/xen/scripts/block")


def canonical_disk(disk: Disk) -> Disk:
    """The disk as every comparison sees it (xen_disk's plan, xen_disk_info's read-back, the
    drift and xl.cfg filters): without its record of legacy spelling, and with each option that
    spells out libxl's default unset, since libxl builds the same disk either way: `discard` on a
    read-write disk (`no-discard` on a read-only one), `trusted`, `no-colo`, `specification=xen`,
    `script=block`, `backend=0` or `backend=Domain-0`.

    Only for comparing and for what was read back: the declaration is validated as written
    (libxl's backend choice looks at whether `script=` was given at all)."""
    return replace(
        disk, driver=None, driver_subtype=None,
        specification=None if disk.specification == "xen" else disk.specification,
        discard=None if disk.discard == disk.readwrite else disk.discard,
        trusted=None if disk.trusted is True else disk.trusted,
        colo=None if disk.colo is False else disk.colo,
        script=None if disk.script in DEFAULT_SCRIPTS else disk.script,
        backend=None if disk.backend in DOM0_BACKENDS else disk.backend)


# --------------------------------------------------------------------------------------------
# libxl stage


def _devid_of(vdev):
    try:
        return vdev_to_devid(vdev)
    except VdevError as exc:
        raise DiskSpecError("vdev", vdev, str(exc)) from None


def _static_rejection(disk, backend):
    """disk_try_backend's checks that need no host facts: the reason `backend` is refused."""
    virtio = disk.effective_specification == "virtio"
    if virtio != (backend == "standalone"):
        return "backend %s not compatible with specification %s" % (backend, disk.effective_specification)
    fmt = disk.effective_format
    if backend in ("phy", "standalone") and fmt != "raw":
        return "backend %s unsuitable due to format %s" % (backend, fmt)
    if backend in ("qdisk", "standalone") and disk.script is not None:
        return "backend %s not compatible with script=..." % backend
    if backend in ("phy", "standalone") and disk.effective_colo:
        return "backend %s not compatible with colo" % backend
    if backend == "tap":
        return "backend tap unsuitable because blktap is not available (Xen 4.17)"
    return None


_AUTOMATIC_ORDER = ("phy", "qdisk", "tap", "standalone")


def check_libxl_rules(disk: Disk, *, hotplug: bool) -> None:
    """The libxl-stage rules that need no host facts; raises DiskSpecError naming the rule."""
    _devid_of(disk.vdev)
    _check_transport(disk.specification, disk.transport)
    virtio = disk.effective_specification == "virtio"
    if hotplug and virtio:
        raise DiskSpecError("specification", disk.specification,
                            "specification: virtio disks cannot be hot-plugged or unplugged "
                            "(libxl: Hotplug isn't supported for specification virtio)")
    _check_empty(disk)
    if disk.effective_colo:
        # libxl would write "(null)" and 0 into the backend for what is missing
        missing = [name for attribute, name in _RENDERED_COLO if getattr(disk, attribute) is None]
        if missing:
            raise DiskSpecError("colo", disk.colo, "colo: a COLO disk needs %s (missing: %s)"
                                % (", ".join(name for unused, name in _RENDERED_COLO), ", ".join(missing)))
    if disk.colo_port is not None and not 1 <= disk.colo_port <= 65535:
        # xl's parser takes atoi()'s answer; QEMU's NBD server needs a TCP port
        raise DiskSpecError("colo-port", disk.colo_port, "colo-port: %d is not a TCP port (1-65535)" % disk.colo_port)
    if disk.backendtype is not None:
        reason = _static_rejection(disk, disk.backendtype)
        if reason:
            raise DiskSpecError("backendtype", disk.backendtype, "backendtype: Disk vdev=%s, %s"
                                % (disk.vdev, reason))
    elif all(_static_rejection(disk, backend) for backend in _AUTOMATIC_ORDER):
        raise DiskSpecError("backendtype", None, "backendtype: no suitable backend for disk %s (%s)"
                            % (disk.vdev, "; ".join(_static_rejection(disk, b) for b in _AUTOMATIC_ORDER)))


def _check_empty(disk):
    if disk.effective_format == "empty":
        if not disk.is_cdrom:
            raise DiskSpecError("format", disk.format, "format: Disk vdev=%s is empty but not cdrom" % disk.vdev)
        if disk.target:
            raise DiskSpecError("target", disk.target, "target: Disk vdev=%s is empty but an image has "
                                "been provided: %s" % (disk.vdev, disk.target))


def choose_backend(disk: Disk, *, backend_domid: int, target_kind: str, guest_type: str) -> str:
    """libxl__device_disk_setdefault + libxl__device_disk_set_backend: phy, qdisk or standalone.

    `target_kind` is what stat() says of the target on the backend host (`block`, `file`,
    `other`, `missing`), or `unknown` when the caller could not look (then it is assumed usable).
    """
    if target_kind not in TARGET_KINDS:
        raise ValueError("target_kind must be one of %s" % ", ".join(TARGET_KINDS))
    if guest_type not in GUEST_TYPES:
        raise ValueError("guest_type must be one of %s" % ", ".join(GUEST_TYPES))
    _check_transport(disk.specification, disk.transport)
    backendtype = disk.backendtype
    if disk.is_cdrom and guest_type == "hvm":
        if backendtype not in (None, "qdisk"):
            raise DiskSpecError("backendtype", backendtype,
                                "backendtype: Backend for CD devices on HVM guests must be Qdisk")
        backendtype = "qdisk"
    in_dom0 = backend_domid == 0
    if disk.effective_format == "empty":
        _check_empty(disk)
        target_kind = "other"  # libxl zeroes the stat buffer
    elif backendtype in (None, "phy", "standalone") and in_dom0 and disk.script is None:
        if target_kind == "missing":
            raise DiskSpecError("target", disk.target, "target: Disk vdev=%s failed to stat: %s"
                                % (disk.vdev, disk.target))
    usable_path = target_kind in ("block", "file", "unknown")
    reasons = []
    for backend in (backendtype,) if backendtype else _AUTOMATIC_ORDER:
        reason = _static_rejection(disk, backend)
        if reason is None and backend in ("phy", "standalone"):
            if not (not in_dom0 or (backend == "phy" and disk.script is not None) or usable_path):
                reason = "backend %s unsuitable as phys path not a block device" % backend
        if reason is None:
            return backend
        reasons.append(reason)
    raise DiskSpecError("backendtype", backendtype, "backendtype: no suitable backend for disk %s (%s)"
                        % (disk.vdev, "; ".join(reasons)))
