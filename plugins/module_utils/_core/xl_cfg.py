# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""xl.cfg(5) files as Xen 4.17's libxlutil reads them, and an editor for one list setting.

Private to the xen.disks collection: no compatibility promise. Pure (standard library, no I/O).

The lexer and grammar follow `tools/libs/util/libxlu_cfg_l.l`, `libxlu_cfg_y.y` and
`libxlu_cfg.c` of Xen 4.17:
- identifiers `[a-z][._0-9a-z]*`, numbers `[0-9][0-9a-fx]*`, strings in '...' or "..." with
  backslash escapes and no raw newline, `#` comments that end at a newline (a comment on the
  last line without a newline is a lexical error, as in xl), `;` or a newline ends a statement;
- `name = value` and `name += value` (string + string or list + list); a list is `[ ... ]`
  with newlines and comments allowed anywhere inside and an optional trailing comma;
- the last `=` of a name wins; `+=` appends to the value before it.

`set_list_setting` replaces the effective value of one list setting (e.g. `disk`) and keeps
every other byte of the text: other settings, blank lines, comments, and the comments
attached to list items that survive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

IDENT = "IDENT"
NUMBER = "NUMBER"
STRING = "STRING"
NEWLINE = "NEWLINE"
OP_ADD = "+="

# Longest match first, as flex does; equal lengths resolved by rule order (below).
_TOKEN_RE = re.compile(
    r"(?P<IDENT>[a-z][._0-9a-z]*)"
    r"|(?P<NUMBER>[0-9][0-9a-fx]*)"
    r"|(?P<BLANK>[ \t]+)"
    r"|(?P<OP_ADD>\+=)"
    r"|(?P<PUNCT>[,\[\]=;])"
    r"|(?P<NEWLINE>\n|\#[^\n]*\n)"
    r"|(?P<STRING>'(?:[^'\\\n]|\\[^\n])*'|\"(?:[^\"\\\n]|\\[^\n])*\")"
)
# Lists nested deeper are refused (xl uses two levels at most, e.g. vnuma; bison's own stack
# gives up past a few thousand): the parser and its readers recurse once per level.
MAX_LIST_DEPTH = 64
_LEXERR_RUN_RE = re.compile(r"[^ \t\n]*")
_STATEMENT_TAIL_RE = re.compile(r"[ \t]*;?[ \t]*")
_SIMPLE_ESCAPES = {
    '"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
    "n": "\n", "r": "\r", "t": "\t", "v": "\v",
}
_OCTAL_DIGITS = frozenset("01234567")

# What the lexer cannot carry inside a quoted string: only NUL (C strings end there).
_QUOTE_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n"}


class XlCfgError(ValueError):
    """A text xl's config parser would refuse; `line` is 1-based; str() reads like libxlutil."""

    def __init__(self, source, line, near, message):
        self.source = source
        self.line = line
        self.near = near
        self.reason = message
        if near is None:
            text = "%s:%d: config parsing error: %s" % (source, line, message)
        else:
            shown = near if near == "`'" else "`%s'" % near if near else "<newline>"
            text = "%s:%d: config parsing error near %s: %s" % (source, line, shown, message)
        super().__init__(text)


@dataclass(frozen=True)
class Token:
    kind: str    # IDENT NUMBER STRING NEWLINE or the punctuation itself
    text: str    # raw text (a NEWLINE token includes its comment)
    start: int
    end: int
    line: int


@dataclass
class Value:
    """A parsed value: `items` is None for an atom (then `text` is its string)."""

    start: int
    end: int
    line: int
    text: str = ""
    items: list = None  # list[Item] for a list

    @property
    def is_list(self):
        return self.items is not None

    def plain(self):
        """The value as Python data: a str, or a list of plain values."""
        if self.items is None:
            return self.text
        return [item.value.plain() for item in self.items]


@dataclass
class Item:
    """One element of a list with the comments that belong to it in the text."""

    value: Value
    leading: list = field(default_factory=list)   # full comment lines just above the item
    trailing: str = ""                            # comment on the item's line, after it


@dataclass
class Setting:
    """One assignment statement: `name = value` or `name += value`."""

    name: str
    op: str      # "=" or "+="
    value: Value
    start: int   # offset of the name
    end: int     # offset just after the value
    line: int
    closing: list = field(default_factory=list)  # comment lines before a list's `]`


def _unquote(raw, source, line):
    """xlu__cfgl_dequote: the string a quoted token stands for.

    Xen 4.17's numeric escapes (`\\x..`, `\\0..`) consume their digits but store nothing; we
    refuse them instead of silently dropping characters the author meant.
    """
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nc = body[i + 1]
        if nc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nc])
            i += 2
        elif nc == "x" or nc in _OCTAL_DIGITS:
            raise XlCfgError(source, line, raw, "numeric character escapes are lost by xl's parser (Xen 4.17)")
        else:
            raise XlCfgError(source, line, raw, "invalid character after backlash in quoted string")
    return "".join(out)


def tokenize(text, source="config"):
    """The token stream of `text`, blanks dropped; raises XlCfgError at the first lexical error."""
    tokens = []
    pos = 0
    line = 1
    size = len(text)
    match = _TOKEN_RE.match
    while pos < size:
        m = match(text, pos)
        if m is None:
            run = _LEXERR_RUN_RE.match(text, pos)
            raise XlCfgError(source, line, run.group(0).rstrip("\r") or text[pos], "lexical error")
        kind = m.lastgroup
        end = m.end()
        raw = m.group(kind)
        if kind == "PUNCT":
            kind = raw
        elif kind == "OP_ADD":
            kind = OP_ADD
        if kind != "BLANK":
            tokens.append(Token(kind, raw, pos, end, line))
        if kind == NEWLINE:
            line += 1
        pos = end
    return tokens


class _Parser:
    """Recursive descent over libxlu_cfg_y.y (the grammar is LL(1) once newlines are tokens)."""

    def __init__(self, text, source):
        self.text = text
        self.source = source
        self.tokens = tokenize(text, source)
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def fail(self, token, expecting):
        """A syntax error worded as bison's verbose errors in libxlutil are (token names as there)."""
        if token is None:
            line = self.tokens[-1].line if self.tokens else 1
            raise XlCfgError(self.source, line, "`'", "syntax error, unexpected $end, expecting %s" % expecting)
        if token.kind == NEWLINE:
            near = token.text.rstrip("\n").rstrip(" \t")
            raise XlCfgError(self.source, token.line, near,
                             "syntax error, unexpected NEWLINE, expecting %s" % expecting)
        raise XlCfgError(self.source, token.line, token.text,
                         "syntax error, unexpected %s, expecting %s" % (_token_name(token.kind), expecting))

    def take(self, kind, expecting):
        token = self.peek()
        if token is None or token.kind != kind:
            self.fail(token, expecting)
        self.pos += 1
        return token

    def skip_newlines(self, comments=None):
        """nlok: any newlines; full-line comments are collected into `comments`."""
        while True:
            token = self.peek()
            if token is None or token.kind != NEWLINE:
                return
            if comments is not None and token.text.startswith("#"):
                comments.append(token)
            self.pos += 1

    def parse(self):
        settings = []
        while True:
            token = self.peek()
            if token is None:
                return settings
            if token.kind in (NEWLINE, ";"):
                self.pos += 1
                continue
            if token.kind != IDENT:
                self.fail(token, "IDENT")
            settings.append(self.assignment())
            end = self.peek()
            if end is None:
                return settings  # file: stmts assignment (no final newline)
            if end.kind not in (NEWLINE, ";"):
                self.fail(end, "NEWLINE or ';'")
            self.pos += 1

    def assignment(self):
        name = self.take(IDENT, "IDENT")
        op = self.peek()
        if op is None or op.kind not in ("=", OP_ADD):
            self.fail(op, "+= or '='")
        self.pos += 1
        setting = Setting(name.text, op.kind, None, name.start, 0, name.line)
        setting.value = self.value(setting, 1)
        setting.end = setting.value.end
        return setting

    def value(self, setting, depth):
        token = self.peek()
        if token is not None and token.kind == STRING:
            self.pos += 1
            return Value(token.start, token.end, token.line, _unquote(token.text, self.source, token.line))
        if token is not None and token.kind == NUMBER:
            self.pos += 1
            return Value(token.start, token.end, token.line, token.text)
        if token is None or token.kind != "[":
            self.fail(token, "STRING or NUMBER or '['")
        if depth > MAX_LIST_DEPTH:
            raise XlCfgError(self.source, token.line, token.text,
                             "lists nested more than %d deep are not read" % MAX_LIST_DEPTH)
        self.pos += 1
        items = []
        comments = []
        self.skip_newlines(comments)
        while True:
            token = self.peek()
            if token is not None and token.kind == "]":
                self.pos += 1
                if setting is not None:
                    setting.closing = [c.text.rstrip("\n") for c in comments]
                return Value(token.start, token.end, token.line, "", items)
            item = Item(self.value(None, depth + 1), [c.text.rstrip("\n") for c in comments])
            items.append(item)
            comments = []
            self.attach_trailing(item)
            self.skip_newlines(comments)
            token = self.peek()
            if token is not None and token.kind == ",":
                self.pos += 1
                self.attach_trailing(item)
                self.skip_newlines(comments)
                continue
            if token is None or token.kind != "]":
                self.fail(token, "',' or ']'")

    def attach_trailing(self, item):
        """A comment on the item's own line (before or after its comma) belongs to the item."""
        token = self.peek()
        if token is None or token.kind != NEWLINE:
            return
        if token.line == item.value.line and token.text.startswith("#") and not item.trailing:
            item.trailing = token.text.rstrip("\n")
        self.pos += 1
        while True:
            token = self.peek()
            if token is None or token.kind != NEWLINE or token.text.startswith("#"):
                return
            self.pos += 1


def _token_name(kind):
    if kind in (IDENT, NUMBER, STRING, NEWLINE):
        return kind
    if kind == OP_ADD:
        return "+="
    return "'%s'" % kind


def parse_settings(text, source="config"):
    """Every assignment of `text`, in order (raises XlCfgError as xl would refuse the file)."""
    if not isinstance(text, str):
        raise TypeError("an xl config must be a str, not %s" % type(text).__name__)
    if "\0" in text:
        raise XlCfgError(source, text.count("\n", 0, text.index("\0")) + 1, None, "NUL character in config")
    settings = _Parser(text, source).parse()
    _check_additions(settings, source)
    return settings


def _check_additions(settings, source):
    """xlu__cfg_concat_vals: `+=` needs the same type on both sides."""
    last_kind = {}
    for setting in settings:
        kind = setting.value.is_list
        if setting.op == OP_ADD and setting.name in last_kind and last_kind[setting.name] != kind:
            raise XlCfgError(source, setting.value.line, None, "can't add [list] to \"string\" or vice versa")
        last_kind[setting.name] = kind


def effective_value(settings, name):
    """The value xl sees for `name` (str, list, or None when unset): last `=` wins, `+=` appends."""
    current = None  # a list, or the parts of a string: many `+=` statements stay linear
    for setting in settings:
        if setting.name != name:
            continue
        value = setting.value.plain()
        if setting.op == OP_ADD and current is not None:
            current.extend(value if isinstance(value, list) else [value])
        else:
            current = value if isinstance(value, list) else [value]
            is_list = isinstance(value, list)
    if current is None or is_list:
        return current
    return "".join(current)


def get_list_setting(text, name, source="config"):
    """The strings of list setting `name` as xl reads them (None when unset).

    Raises XlCfgError when the setting is a single value or holds a nested list: xl would
    ignore the setting, or every item from the nested list on, which is never what is meant.
    """
    settings = parse_settings(text, source)
    value = effective_value(settings, name)
    if value is None:
        return None
    last = [s for s in settings if s.name == name][-1]
    if not isinstance(value, list):
        raise XlCfgError(source, last.line, name, "`%s' is a single value but should be a list" % name)
    for index, item in enumerate(value):
        if isinstance(item, list):
            raise XlCfgError(source, last.line, name, "`%s'[%d] is a list but should be a string" % (name, index))
    return value


def quote_string(value):
    """`value` as one xl config string token that xlu__cfgl_dequote turns back into `value`."""
    if "\0" in value:
        raise ValueError("an xl config string cannot hold a NUL character")
    return "'" + "".join(_QUOTE_ESCAPES.get(c, c) for c in value) + "'"


def render_value(value):
    """A Python value as xl config text: str quoted, bool 1/0, int as is, list as `[ a, b ]`."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if value < 0:
            raise ValueError("xl config numbers cannot be negative (write %d as a string)" % value)
        return str(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, (list, tuple)):
        return "[ " + ", ".join(render_value(v) for v in value) + " ]" if value else "[]"
    raise ValueError("an xl config value must be a string, number, boolean or list, not %s" % type(value).__name__)


def render_list_setting(name, values, comments=None, closing=(), indent="    "):
    """`name = [` one quoted value per line `]`; `comments` maps an index to (leading, trailing)."""
    if not values and not closing:
        return "%s = []" % name
    lines = ["%s = [" % name]
    for index, value in enumerate(values):
        leading, trailing = (comments or {}).get(index, ((), ""))
        lines.extend(indent + c for c in leading)
        lines.append(indent + quote_string(value) + "," + (" " + trailing if trailing else ""))
    lines.extend(indent + c for c in closing)
    lines.append("]")
    return "\n".join(lines)


def _statement_span(text, setting):
    """Span to delete for a redundant setting: the statement, its `;`, and its line if left empty."""
    start, end = setting.start, setting.end
    rest = _STATEMENT_TAIL_RE.match(text, end)
    end = rest.end()
    line_start = text.rfind("\n", 0, start) + 1
    newline = text.find("\n", end)
    line_end = len(text) if newline < 0 else newline + 1
    if not text[line_start:start].strip(" \t") and not text[end:line_end].strip(" \t\n"):
        return line_start, line_end
    return start, end


def set_list_setting(text, name, values, *, key=None, equal=None, source="config"):
    """Text with the effective list setting `name` set to `values` (strings); nothing else changes.

    - The first `name` statement is rewritten in place, one value per line; later `name`
      statements (`=` or `+=`) are removed, since they would change the result.
    - Comments inside the old list stay with the items whose `key(value)` matches a new value
      (e.g. a disk's device number), and comments before `]` stay before `]`.
    - When the setting already holds `values` (compared with `equal(old_list, new_list)` when
      given, else as strings) the text is returned unchanged.
    - A file without the setting gets it appended at the end.
    """
    values = [str(v) for v in values]
    for v in values:
        quote_string(v)  # refuse what cannot be written, before anything else
    settings = parse_settings(text, source)
    ours = [s for s in settings if s.name == name]
    current = effective_value(settings, name) if ours else None
    if isinstance(current, list) and all(isinstance(v, str) for v in current):
        same = equal(current, values) if equal is not None else current == values
        if same:
            return text
    if not ours:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        return prefix + render_list_setting(name, values) + "\n"

    key = key or (lambda v: v)
    kept = {}
    closing = []
    for setting in ours:
        closing.extend(setting.closing)
        for item in setting.value.items or ():
            if item.value.is_list:
                continue
            try:
                item_key = key(item.value.text)
            except ValueError:
                continue
            kept.setdefault(item_key, (item.leading, item.trailing))
    comments = {}
    for index, value in enumerate(values):
        try:
            found = kept.get(key(value))
        except ValueError:
            found = None
        if found:
            comments[index] = found
    replacement = render_list_setting(name, values, comments, closing)

    edits = [(ours[0].start, ours[0].end, replacement)]
    edits.extend(_statement_span(text, s) + ("",) for s in ours[1:])
    pieces, done = [], 0  # one pass: many `disk +=` statements must not cost quadratic time
    for start, end, new in sorted(edits):
        pieces += [text[done:start], new]
        done = end
    pieces.append(text[done:])
    return "".join(pieces)
