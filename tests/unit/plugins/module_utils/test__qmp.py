# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QMP adapter's pure parts: libxl's message bytes and socket path (the wire is tested
against a real QEMU and real xl in tests/integration/test_qmp_*.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.xen.disks.plugins.module_utils._io.qmp import FIRST_ID, encode_command, socket_path


def test_libxl_message_bytes():
    assert encode_command("query-version", (), FIRST_ID) == b'{"execute":"query-version","id":2020372736}\r\n'
    assert encode_command("blockdev-change-medium", (("id", "ide-5632"), ("filename", "/dev/fdset/0"),
                                                     ("format", "raw")), FIRST_ID + 4) == (
        b'{"execute":"blockdev-change-medium","id":2020372740,"arguments":'
        b'{"id":"ide-5632","filename":"/dev/fdset/0","format":"raw"}}\r\n')


@pytest.mark.parametrize("path, encoded", [
    ('/a"b', b'"/a\\"b"'),
    ("/a\\b", b'"/a\\\\b"'),
    ("/a\nb\tc", b'"/a\\nb\\tc"'),
    ("/a\x1bb\x7f", b'"/a\\u001Bb\x7f"'),      # yajl: upper-case hex; DEL as it is
    ("/caf\u00e9", '"/caf\u00e9"'.encode()),    # UTF-8, not \u escapes
    ("/x\udcff", b'"/x\xff"'),                  # a path's undecodable byte, as the byte
])
def test_strings_as_yajl_writes_them(path, encoded):
    data = encode_command("add-fd", (("opaque", path),), 1)
    assert data == b'{"execute":"add-fd","id":1,"arguments":{"opaque":' + encoded + b"}}\r\n"


@given(st.text())
def test_valid_json_that_reads_back(text):
    data = encode_command("add-fd", (("opaque", "raw:" + text),), 7)
    assert data.endswith(b"}\r\n") and b"\r\n" not in data[:-2]
    decoded = json.loads(data.decode("utf-8", "surrogateescape"))
    assert decoded == {"execute": "add-fd", "id": 7, "arguments": {"opaque": "raw:" + text}}


def test_socket_path():
    assert socket_path(7) == "/var/run/xen/qmp-libxl-7"
    assert socket_path(12, "/tmp/run") == "/tmp/run/qmp-libxl-12"
