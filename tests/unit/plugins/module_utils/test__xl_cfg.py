"""xl.cfg reading and editing (_xl_cfg): grammar of libxlutil 4.17, one-setting edits."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.xen.disks.plugins.module_utils._core import xl_cfg as _xl_cfg
from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg import (
    XlCfgError,
    effective_value,
    get_list_setting,
    parse_settings,
    quote_string,
    set_list_setting,
)

GUEST = """\
# guest web1: managed by hand except disks
name = "web1"
memory = 2048   # MiB
vcpus = 2
disk = [ 'phy:/dev/vg0/web1,xvda,w',   # root
  # data volume
  'file:/srv/web1-data.img,xvdb,w'
  # keep last
]
vif = [ 'bridge=xenbr0' ]
"""


def vdev_key(spec):
    """Identity of a test disk: its vdev, the third positional or vdev=."""
    m = re.search(r"vdev=([^,]+)", spec)
    if m:
        return m.group(1)
    parts = spec.split(",")
    if len(parts) < 2:
        raise ValueError(spec)
    return parts[1].split(":")[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("disk = [ 'a', 'b' ]\n", ["a", "b"]),
        ("disk = ['a',]", ["a"]),
        ("disk = []\n", []),
        ("disk = [\n\n]\n", []),
        ('disk = [ "x\\"y", \'p\\\'q\' ]\n', ['x"y', "p'q"]),
        ("disk = [ 'a\\tb\\n' ]\n", ["a\tb\n"]),
        ("disk = [ 12, 0x1f ]\n", ["12", "0x1f"]),
        ("disk = ['a']\ndisk = ['b']\n", ["b"]),
        ("disk = ['a']\ndisk += ['b', 'c']\n", ["a", "b", "c"]),
        ("disk += ['b']\n", ["b"]),
        ("disk = ['a'] ; name = 'x'", ["a"]),
        ("disk = [ # c1\n 'a' # c2\n , # c3\n 'b'\n # c4\n ]\n", ["a", "b"]),
        ("name = 'x # not a comment'\ndisk = [ 'a#b' ]\n", ["a#b"]),
        ("name = 'g'\n", None),
        ("", None),
    ],
)
def test_get_list_setting(text, expected):
    assert get_list_setting(text, "disk") == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("a = (1)\n", r"^g\.cfg:1: config parsing error near `\(1\)': lexical error$"),
        ("Disk = ['a']\n", r"^g\.cfg:1: config parsing error near `Disk': lexical error$"),
        ("a = 1\nb = 2 # no newline", r"^g\.cfg:2: config parsing error near `#': lexical error$"),
        ("a = 1\r\n", r"^g\.cfg:1: config parsing error near `\r': lexical error$"),
        ("a = 'open\n", r"^g\.cfg:1: config parsing error near `'open': lexical error$"),
        ("disk = [ 'a' 'b' ]\n",
         r"^g\.cfg:1: config parsing error near `'b'': syntax error, unexpected STRING, expecting ',' or '\]'$"),
        ("a = 1\nb =\n",
         r"^g\.cfg:2: config parsing error near <newline>: syntax error, unexpected NEWLINE, "
         r"expecting STRING or NUMBER or '\['$"),
        ("a 1\n", r"^g\.cfg:1: config parsing error near `1': syntax error, unexpected NUMBER, "
                  r"expecting \+= or '='$"),
        ("a = [ 'x'\n",
         r"^g\.cfg:1: config parsing error near `': syntax error, unexpected \$end, expecting ',' or '\]'$"),
        ("a = ", r"^g\.cfg:1: config parsing error near `': syntax error, unexpected \$end, "
                 r"expecting STRING or NUMBER or '\['$"),
        ("a = 1 2\n", r"^g\.cfg:1: config parsing error near `2': syntax error, unexpected NUMBER, "
                      r"expecting NEWLINE or ';'$"),
        ("a = 'x\\q'\n",
         r"^g\.cfg:1: config parsing error near `'x\\q'': invalid character after backlash in quoted string$"),
        ("a = 'x\\101'\n",
         r"^g\.cfg:1: config parsing error near `'x\\101'': numeric character escapes are lost by xl's "
         r"parser \(Xen 4\.17\)$"),
        ("a = 's'\na += ['l']\n",
         r"^g\.cfg:2: config parsing error: can't add \[list\] to \"string\" or vice versa$"),
        ("a = '\0'\n", r"^g\.cfg:1: config parsing error: NUL character in config$"),
    ],
)
def test_refused_texts(text, message):
    with pytest.raises(XlCfgError, match=message):
        parse_settings(text, "g.cfg")


@pytest.mark.parametrize(
    "text, message",
    [
        ("disk = 'phy:/dev/x,xvda,w'\n",
         r"^g\.cfg:1: config parsing error near `disk': `disk' is a single value but should be a list$"),
        ("disk = [ 'a', [ 'b' ] ]\n",
         r"^g\.cfg:1: config parsing error near `disk': `disk'\[1\] is a list but should be a string$"),
    ],
)
def test_disk_setting_shape_errors(text, message):
    with pytest.raises(XlCfgError, match=message):
        get_list_setting(text, "disk", "g.cfg")


def test_replace_keeps_every_other_line_and_item_comments():
    new = set_list_setting(
        GUEST, "disk",
        ["format=raw,vdev=xvdb,access=rw,target=/srv/web1-data.img", "format=raw,vdev=xvdc,target=/dev/vg0/logs"],
        key=vdev_key)
    assert new == """\
# guest web1: managed by hand except disks
name = "web1"
memory = 2048   # MiB
vcpus = 2
disk = [
    # data volume
    'format=raw,vdev=xvdb,access=rw,target=/srv/web1-data.img',
    'format=raw,vdev=xvdc,target=/dev/vg0/logs',
    # keep last
]
vif = [ 'bridge=xenbr0' ]
"""
    assert get_list_setting(new, "disk") == [
        "format=raw,vdev=xvdb,access=rw,target=/srv/web1-data.img", "format=raw,vdev=xvdc,target=/dev/vg0/logs"]


def test_trailing_comment_follows_its_item():
    text = "disk = [ 'p,xvda,w', # root\n  'q,xvdb,w' ]\n"
    assert set_list_setting(text, "disk", ["q,xvdb,w", "p,xvda,w"], key=vdev_key) == (
        "disk = [\n    'q,xvdb,w',\n    'p,xvda,w', # root\n]\n")


def test_later_statements_of_the_setting_are_removed():
    text = "disk = ['a,xvda']\nname = 'g'\ndisk += ['b,xvdb']\nvcpus = 1; disk = ['c,xvdc'];  memory = 5\n"
    assert set_list_setting(text, "disk", ["z,xvdz"], key=vdev_key) == (
        "disk = [\n    'z,xvdz',\n]\nname = 'g'\nvcpus = 1; memory = 5\n")


def test_unchanged_when_equal():
    assert set_list_setting(GUEST, "disk", ["phy:/dev/vg0/web1,xvda,w", "file:/srv/web1-data.img,xvdb,w"]) is GUEST


def test_unchanged_when_equal_by_callback():
    def same_vdevs(old, new):
        return [vdev_key(o) for o in old] == [vdev_key(n) for n in new]

    assert set_list_setting(GUEST, "disk", ["x,xvda", "y,xvdb"], equal=same_vdevs) is GUEST
    assert set_list_setting(GUEST, "disk", ["x,xvda"], equal=same_vdevs) != GUEST


def test_setting_appended_when_missing():
    assert set_list_setting("name = 'g'", "disk", ["a"]) == "name = 'g'\ndisk = [\n    'a',\n]\n"
    assert set_list_setting("", "disk", []) == "disk = []\n"


def test_empty_list_keeps_closing_comments():
    assert set_list_setting("disk = [ 'a' # gone\n # stays\n]\n", "disk", []) == "disk = [\n    # stays\n]\n"


def test_idempotent_after_edit():
    values = ["format=raw,vdev=xvda,access=rw,target=/dev/vg0/web1"]
    once = set_list_setting(GUEST, "disk", values, key=vdev_key)
    assert set_list_setting(once, "disk", values, key=vdev_key) is once


def test_refuses_bad_text_before_editing():
    with pytest.raises(XlCfgError, match=r"^config:1: config parsing error near `\(': lexical error$"):
        set_list_setting("disk = ( 'a' )\n", "disk", ["b"])


def test_refuses_nul_value():
    with pytest.raises(ValueError, match=r"^an xl config string cannot hold a NUL character$"):
        set_list_setting("", "disk", ["a\0b"])


@pytest.mark.parametrize(
    "value, quoted",
    [
        ("phy:/dev/x,xvda,w", "'phy:/dev/x,xvda,w'"),
        ("it's", "'it\\'s'"),
        ('a"b', "'a\"b'"),
        ("c:\\d", "'c:\\\\d'"),
        ("l1\nl2", "'l1\\nl2'"),
        ("tab\there", "'tab\there'"),
    ],
)
def test_quote_string(value, quoted):
    assert quote_string(value) == quoted


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40),
                max_size=6))
def test_any_values_round_trip_through_the_text(values):
    text = set_list_setting(GUEST, "disk", values)
    assert get_list_setting(text, "disk") == values
    # every other setting is untouched
    others = [(s.name, s.value.plain()) for s in parse_settings(text) if s.name != "disk"]
    assert others == [(s.name, s.value.plain()) for s in parse_settings(GUEST) if s.name != "disk"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_xlcfgerror(text):
    try:
        _xl_cfg.parse_settings(text)
    except XlCfgError as exc:
        assert str(exc).startswith("config:")


def test_lists_nested_too_deep_are_a_message_not_a_recursion_error():
    deep = "a = " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(XlCfgError, match=r"^c:1: config parsing error near `\[': lists nested more than 64 deep"):
        parse_settings(deep, "c")
    ok = "a = " + "[" * 64 + "]" * 64 + "\n"
    assert len(parse_settings(ok, "c")) == 1


def test_many_additions_are_folded_in_one_pass():
    text = "disk = ['a,xvda']\n" + "disk += ['b,xvdb']\n" * 3000 + "memory = 1\n"
    assert get_list_setting(text, "disk") == ["a,xvda"] + ["b,xvdb"] * 3000
    assert set_list_setting(text, "disk", ["c,xvdc"]) == "disk = [\n    'c,xvdc',\n]\nmemory = 1\n"
    assert effective_value(parse_settings("e = 'a'\ne += 'b'\ne += 'c'\n"), "e") == "abc"
