# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A seeded generator of xl disk specs for the differential tests against Xen's parser.

Cases mix the forms xl accepts (positional, key=value, legacy and stacked prefixes, vdev:cdrom,
empty cdroms, several strings forming one disk) with the mistakes people make (wrong order,
unknown keys and values, respecified options, upper case, stray `=`, blanks, newlines), and
random mutations of both. About half are rejected by Xen.

Each case is a `Case(strings, without_trusted)`: `without_trusted` is the same disk with every
`trusted`/`untrusted` flag left out (Xen 4.17's lexer does not know them; see the test).
"""

from __future__ import annotations

import random
from typing import List, NamedTuple, Optional

BAD_CHANCE = 0.12  # how often a field gets one of the values after the first few valid ones

TARGETS = ["/dev/vg0/guest-root", "/srv/xen/web1.img", "/srv/iso/debian 12.iso", "/dev/sdb",
           "", "host:3260", "/x", "/srv/a:b", "/dev/mapper/a-b_c.d", "/srv/öl.img", "relative.img"]
FORMATS = ["raw", "qcow", "qcow2", "vhd", "qed", "empty", "", "QCOW2", "vmdk", "xvda"]
VDEVS = ["xvda", "xvdb1", "xvdq", "hda", "hdc", "sda", "d0p1", "51712", "hdc:cdrom", "xvdb:disk",
         "sdc:floppy", "xvda0", ""]
ACCESS = ["r", "ro", "w", "rw", "", "RW", "x", "readonly"]
KEYED = [
    ("format", FORMATS), ("vdev", VDEVS), ("access", ACCESS),
    ("devtype", ["cdrom", "disk", "floppy", "", "CDROM"]),
    ("backendtype", ["phy", "qdisk", "tap", "standalone", "", "qemu"]),
    ("backend", ["dom0", "storage-dd", ""]),
    ("specification", ["xen", "virtio", "", "Xen"]),
    ("script", ["block-iscsi", "/etc/xen/scripts/block-drbd", ""]),
    ("colo-host", ["10.0.0.2", ""]), ("colo-port", ["9000", "0", "abc", "-7", "12x", " 80"]),
    ("colo-export", ["export1"]), ("active-disk", ["/srv/active"]), ("hidden-disk", ["/srv/hidden"]),
]
FLAGS = ["direct-io-safe", "discard", "no-discard", "colo", "no-colo", "cdrom"]
TRUSTED = ["trusted", "untrusted"]
UNKNOWN = ["transport=mmio", "foo=bar", "grant_usage=1", "Format=raw", "mode=w", "x=", "=w",
           "discard=1", "cdrom=1"]
PREFIXES = ["phy:", "file:", "tap:", "tap2:", "tap:aio:", "tap2:aio:", "aio:", "tapdisk:aio:",
            "ioemu:", "raw:", "qcow2:", "tap:qcow2:", "vhd:", "nbd:", "iscsi:", "drbd:", "enbd:",
            "foo:", "phy:qcow2:", "qcow:raw:"]
NOISE = [" ", "  ", "\t", ",", "=", ":", "\n", "a", "Z", "é", ",,", "target="]


class Case(NamedTuple):
    strings: List[str]
    without_trusted: List[str]
    trusted: Optional[bool]   # the last trusted/untrusted flag, None when none was written


def _pick(rng, values, valid=None):
    """Mostly one of the leading (valid) values, sometimes any value."""
    valid = valid or max(1, (len(values) + 1) // 2)
    return rng.choice(values) if rng.random() < BAD_CHANCE else rng.choice(values[:valid])


def _positional(rng):
    parts = [rng.choice(PREFIXES) + rng.choice(TARGETS) if rng.random() < 0.4 else rng.choice(TARGETS)]
    count = rng.choice([1, 2, 3, 3, 4, 4, 4, 5])
    fields = [FORMATS, VDEVS, ACCESS, ACCESS]
    for index in range(1, count):
        if parts[0].split(":")[0] + ":" in PREFIXES and index == 1 and rng.random() < 0.7:
            parts.append(_pick(rng, VDEVS, 10))  # after a prefix, the second positional is the vdev
        else:
            parts.append(_pick(rng, fields[index - 1], 7))
    return parts


def _keyed(rng):
    chosen = rng.sample(KEYED, rng.randint(1, 5))
    parts = ["%s=%s" % (key, _pick(rng, values)) for key, values in chosen]
    if rng.random() < 0.8 and not any(p.startswith("vdev=") for p in parts):
        parts.append("vdev=" + _pick(rng, VDEVS, 10))
    parts += rng.sample(FLAGS, rng.randint(0, 2))
    if rng.random() < 0.15:
        parts.append(rng.choice(UNKNOWN))
    rng.shuffle(parts)
    if rng.random() < 0.85:
        parts.append("target=" + rng.choice(TARGETS + ["/srv/a,b=c", "x,y:z", "/srv/a,,"]))
    return parts


def _mutate(rng, text):
    for unused_step in range(rng.randint(1, 3)):
        position = rng.randint(0, len(text))
        action = rng.random()
        if action < 0.5:
            text = text[:position] + rng.choice(NOISE) + text[position:]
        elif action < 0.8:
            text = text[:position] + text[position + 1:]
        else:
            text = text[:position] + text[position:].upper()
    return text


def generate(count: int, seed: int = 4170) -> List[Case]:
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        parts = _positional(rng) if rng.random() < 0.45 else _keyed(rng)
        if rng.random() < 0.3:  # mix: keyed parameters among positionals
            parts[1:1] = rng.sample(FLAGS + ["access=ro", "format=qcow2", "backendtype=qdisk"], 1)
        trusted_flags = []
        if rng.random() < 0.15:
            trusted_flags = rng.sample(TRUSTED, rng.randint(1, 2))
        tokens = list(parts)
        # A flag goes before some other token and never right after a blank token or a bare prefix,
        # so that leaving it out ("A,flag,B" -> "A,B") changes nothing else.
        for flag in trusted_flags:
            spots = [i for i in range(len(tokens))
                     if i == 0 or (tokens[i - 1].strip() and not tokens[i - 1].endswith(":"))]
            tokens.insert(rng.choice(spots), flag)
        if rng.random() < 0.2:
            tokens = [(" " * rng.randint(1, 2)) + t if rng.random() < 0.5 else t for t in tokens]
        mutated = rng.random() < 0.25 and not trusted_flags
        cuts = [i for i in range(1, len(tokens)) if tokens[i - 1].strip() not in TRUSTED]
        if rng.random() < 0.15 and len(tokens) > 2 and cuts and not mutated:
            cut = rng.choice(cuts)
            groups = [tokens[:cut], tokens[cut:]]
        else:
            groups = [tokens]
        strings = [",".join(group) for group in groups]
        if mutated:
            strings = [_mutate(rng, s) for s in strings]
        without = [",".join(t for t in group if t.strip() not in TRUSTED) for group in groups]
        if mutated:
            without = strings
        trusted = None
        for token in tokens:  # the last flag written wins
            if token.strip() in TRUSTED:
                trusted = token.strip() == "trusted"
        cases.append(Case(strings, without, trusted))
    return cases


# Pieces of the scanner's vocabulary, glued together without separators: exercises longest-match
# ties, trailing context, newlines, stray `=`, and multi-byte characters. (No `trusted`: see above.)
SOUP = ["phy:", "tap:", "aio:", "qcow2:", "nbd:", "foo:", "cdrom", "discard", "colo", "target=", "vdev=",
        "format=", "access=", "devtype=", "x=", "=", ",", ":", "\n", " ", "\t", "a", "/x", "xvda", "hdc",
        "raw", "r", "w", "1", "-", "colo-port=", "direct-io-safe", "no-colo", "é"]


def generate_soup(count: int, seed: int = 17) -> List[List[str]]:
    """Cases of one to three strings, each up to ten SOUP pieces long."""
    rng = random.Random(seed)
    return [["".join(rng.choice(SOUP) for unused_piece in range(rng.randint(0, 10)))
             for unused_string in range(rng.randint(1, 3))] for unused_case in range(count)]
