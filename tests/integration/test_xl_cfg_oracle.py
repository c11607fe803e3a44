# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Differential test: _xl_cfg against Xen 4.17's own config parser (libxlutil).

A small C program, built here at test time with gcc against Debian's libxen-dev, reads each text
with xlu_cfg_readdata and lists the `disk` setting as xl's parse_config_data sees it
(xlu_cfg_get_list + xlu_cfg_get_listitem). A seeded generator writes xl.cfg texts (valid ones,
and mutations: stray characters, bad escapes, CRLF, a final comment without newline, `+=` of
mismatched types ...); the verdict, the disk list and, for lexical errors, the message must agree.

Accepted differences (each checked to be the only reason when verdicts differ):
- numeric escapes (`\\x41`, `\\101`): libxlutil 4.17 consumes their digits but stores nothing
  (or reports an error, depending on the digits that follow); _xl_cfg refuses them all, since
  silently dropped characters are never what the author meant.
- one stray character as the very last byte of the text (`...\n$`): flex enters its error state
  on it, then meets the end of input before the error rule can run, so xl says nothing; _xl_cfg
  reports the lexical error.
- a `disk` list holding a nested list: xl stops reading disks at the nested item; _xl_cfg
  refuses the setting. The generator never nests lists in `disk` (only in other settings).
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile

import pytest

from ansible_collections.xen.disks.plugins.module_utils._core.xl_cfg import XlCfgError, get_list_setting, parse_settings

pytestmark = pytest.mark.oracle

ORACLE_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxlutil.h>

static void hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
}

/* stdin: "<length>\n<bytes>" per case; stdout per case: verdict, report (hex), disk rc, items (hex) */
int main(void) {
    size_t length;
    while (scanf("%zu", &length) == 1) {
        getchar();
        char *data = malloc(length + 1);
        if (fread(data, 1, length, stdin) != length) return 2;
        char *report = NULL; size_t report_len = 0;
        FILE *rep = open_memstream(&report, &report_len);
        XLU_Config *cfg = xlu_cfg_init(rep, "g.cfg");
        int rc = xlu_cfg_readdata(cfg, data, (int)length);
        XLU_ConfigList *list = NULL; int count = 0;
        int lrc = rc ? -1 : xlu_cfg_get_list(cfg, "disk", &list, &count, 1);
        fflush(rep);
        printf("%s ", rc ? "error" : "ok");
        hex(report, report_len);
        printf(" %d", lrc);
        if (!rc && !lrc) {
            const char *item;
            for (int i = 0; (item = xlu_cfg_get_listitem(list, i)) != NULL; i++) {
                printf(" x");
                hex(item, strlen(item));
            }
        }
        printf("\n");
        fflush(stdout);
        xlu_cfg_destroy(cfg);
        fclose(rep); free(report); free(data);
    }
    return 0;
}
"""

CASES = 600
SEED = 20260417


@pytest.fixture(scope="module")
def oracle():
    folder = tempfile.mkdtemp(prefix="xl-cfg-oracle-")
    source = os.path.join(folder, "xl_cfg_oracle.c")
    binary = os.path.join(folder, "xl_cfg_oracle")
    with open(source, "w") as handle:
        handle.write(ORACLE_SOURCE)
    build = subprocess.run(["gcc", "-O1", "-Wall", "-o", binary, source, "-lxlutil", "-lxenlight", "-lxentoollog"],
                           capture_output=True, text=True, check=False)
    assert build.returncode == 0, "building the oracle failed (tests/setup.sh installs gcc, libxen-dev):\n" + build.stderr
    return binary


def run_oracle(binary, texts):
    payload = b"".join(b"%d\n%s" % (len(t.encode()), t.encode()) for t in texts)
    out = subprocess.run([binary], input=payload, capture_output=True, timeout=300, check=True).stdout.decode()
    results = []
    for line in out.splitlines():
        parts = line.split(" ")
        verdict, report, disk_rc = parts[0], bytes.fromhex(parts[1]).decode("utf-8", "replace"), int(parts[2])
        items = [bytes.fromhex(p[1:]).decode("utf-8", "replace") for p in parts[3:]]
        results.append((verdict, report, disk_rc, items))
    assert len(results) == len(texts)
    return results


# --- a seeded generator of xl.cfg texts -------------------------------------------------------------

_SPEC_WORDS = ["phy:/dev/vg0/web1", "xvda", "w", "/srv/a b.img", "hdc:cdrom", "format=raw", "vdev=xvdb",
               "target=/x,y=z", "it's", 'say "hi"', "back\\slash", "#not-a-comment", "tab\there", "é"]
_ESCAPES = ["\\n", "\\t", "\\\\", "\\'", '\\"', "\\a", "\\r", "\\q", "\\x41", "\\x4142", "\\101", "\\0", "\\8"]


def _string(rng):
    body = ",".join(rng.choice(_SPEC_WORDS) for _index in range(rng.randint(0, 3)))
    if rng.random() < 0.06:
        body += rng.choice(_ESCAPES)
    quote = rng.choice("'\"")
    escaped = body.replace("\\", "\\\\") if rng.random() < 0.5 else body
    escaped = escaped.replace(quote, "\\" + quote)
    return quote + escaped + quote


def _value(rng, depth=0, nested=True):
    roll = rng.random()
    if roll < 0.4:
        return _string(rng)
    if roll < 0.55:
        return rng.choice(["0", "2048", "0x1f", "1e", "12abc"])
    items = [(_value(rng, depth + 1, nested) if nested and depth < 1 and rng.random() < 0.2 else _string(rng))
             for _index in range(rng.randint(0, 4))]
    out = "["
    for item in items:
        out += rng.choice(["", " ", "\n    ", "\n  # comment\n    "]) + item + rng.choice([",", " ,", ",  # c\n"])
    if items and rng.random() < 0.5:
        out = out.rstrip(",")
    return out + rng.choice(["", " ", "\n"]) + "]"


def _statement(rng):
    name = rng.choice(["disk", "disk", "disk", "name", "memory", "vif", "extra", "on_crash", "a.b_c", "x9"])
    if rng.random() < 0.02:
        name = "Disk"
    op = " += " if rng.random() < 0.2 else rng.choice([" = ", "=", "  =  "])
    value = _value(rng, nested=name != "disk")
    if name == "disk" and rng.random() < 0.6:
        value = "[ " + ", ".join(_string(rng) for _index in range(rng.randint(0, 3))) + " ]"
    end = rng.choice(["\n", "\n", "; ", ";\n", "  # trailing\n"])
    return name + op + value + end


def generate(rng):
    text = "".join(_statement(rng) if rng.random() < 0.8 else rng.choice(["\n", "# comment\n", "\t\n"])
                   for _index in range(rng.randint(1, 7)))
    mutation = rng.random()
    if mutation < 0.12:
        pos = rng.randint(0, len(text))
        text = text[:pos] + rng.choice(["(", ")", ":", "-", "+", ".", "{", "$", "\r", "'", '"', "[", "]", ",", "="]) + text[pos:]
    elif mutation < 0.18:
        text = text.rstrip("\n") + rng.choice(["", " # final comment"])
    elif mutation < 0.22:
        text = text.replace("\n", "\r\n")
    return text


def _stray_last_character(text, message):
    return message.endswith("near `%s': lexical error" % text[-1]) and text[-2:-1] in ("\n", " ", "\t", ";", ",")


def _ours(text):
    try:
        parse_settings(text, "g.cfg")
    except XlCfgError as exc:
        return "error", str(exc), None
    try:
        return "ok", "", get_list_setting(text, "disk", "g.cfg")
    except XlCfgError as exc:
        return "ok", str(exc), "not-a-list"


def test_corpus_is_varied():
    rng = random.Random(SEED)
    texts = [generate(rng) for _index in range(CASES)]
    ours = [_ours(t) for t in texts]
    assert sum(verdict == "error" for verdict, _message, _disks in ours) >= 100
    assert sum(verdict == "ok" and isinstance(disks, list) and len(disks) > 0
               for verdict, _message, disks in ours) >= 100


def test_against_xen(oracle):
    rng = random.Random(SEED)
    texts = [generate(rng) for _index in range(CASES)]
    xen = run_oracle(oracle, texts)
    disagreements = []
    for text, (verdict, report, disk_rc, items) in zip(texts, xen):
        our_verdict, our_message, our_disks = _ours(text)
        if our_verdict != verdict:
            if our_verdict == "error" and "numeric character escapes" in our_message:
                continue  # accepted difference (module docstring)
            if our_verdict == "error" and _stray_last_character(text, our_message):
                continue  # accepted difference (module docstring)
            disagreements.append((text, verdict, report, our_verdict, our_message))
            continue
        if verdict == "error":
            first = report.splitlines()[0]
            if first.endswith(": lexical error") and first != our_message:
                disagreements.append((text, verdict, first, our_verdict, our_message))
            continue
        if disk_rc == 0:
            expected = items
        elif disk_rc == 3:  # ESRCH: no disk setting
            expected = None
        else:  # EINVAL: a single value
            expected = "not-a-list"
        if our_disks != expected:
            disagreements.append((text, verdict, expected, our_verdict, our_disks))
    assert disagreements == []
