#!/usr/bin/env bash
# The collection's documentation site, built as collections publish theirs: antsibull-docs writes a
# Sphinx project (sphinx-init) and the RST pages of every plugin and role from their own
# documentation (collection --use-current), beside README.md, docs/DESIGN.md and
# docs/XENSTORE-LAYOUT.md (Markdown, read by myst-parser); Sphinx builds the HTML with every
# warning an error (nitpicky: a reference that resolves nowhere fails the build).
# Offline: no intersphinx inventory is downloaded (a closed network would fail the build). The few
# labels of Ansible's own documentation that the generated pages refer to are listed below, in an
# inventory written here: a new outside reference fails the build until it is added.
#   ./tests/docs-site.sh [DEST]   DEST defaults to $XEN_DISKS_CACHE/docs-site/<checkout key>;
#                                 the site is DEST/build/html/index.html
# Needs tests/setup.sh's environment (ANSIBLE_COLLECTIONS_PATH, the venv with antsibull-docs and
# Sphinx from tests/requirements.txt).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
key=$(printf '%s' "$here" | sha1sum | cut -c1-12)
dest=${1:-${XEN_DISKS_CACHE:?source the environment tests/setup.sh prints}/docs-site/$key}

rm -rf "$dest"
mkdir -p "$dest"
antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error --no-add-antsibull-docs-version \
  --project xen.disks --copyright 'xen.disks developers' \
  --title 'xen.disks: Xen guest disks for Ansible' --html-short-title xen.disks \
  --dest-dir "$dest" xen.disks >/dev/null
# label in Ansible's documentation -> its page there
python3 - "$dest/ansible.inv" <<'PY'
import sys, zlib
labels = {
    "ansible_configuration_settings": "reference_appendices/config.html#ansible-configuration-settings",
    "common_return_values": "reference_appendices/common_return_values.html#common-return-values",
    "ansible_collections.community.general.lvol_module":
        "collections/community/general/lvol_module.html#ansible-collections-community-general-lvol-module",
}
body = "".join("%s std:label -1 %s -\n" % item for item in sorted(labels.items()))
with open(sys.argv[1], "wb") as inv:
    inv.write(b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
              b"# The remainder of this file is compressed using zlib.\n" + zlib.compress(body.encode()))
PY
cat >> "$dest/conf.py" <<'PY'

# --- added by tests/docs-site.sh ---
# Offline: Ansible's labels from the local inventory tests/docs-site.sh writes, nothing downloaded.
import os  # noqa: E402
intersphinx_mapping = {'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/',
                                        os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ansible.inv'))}
# README.md and docs/*.md, as written.
extensions.append('myst_parser')
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 3
PY

# The collection's own pages, then its prose pages beside them.
mkdir -p "$dest/rst"
chmod og-w "$dest/rst"  # antsibull-docs wants that directory writable only by its owner
antsibull-docs --config-file "$dest/antsibull-docs.cfg" collection --cleanup everything --fail-on-error \
  --use-current --squash-hierarchy --no-add-antsibull-docs-version --dest-dir "$dest/rst" xen.disks >/dev/null
cp "$here/README.md" "$dest/rst/readme.md"
cp "$here/docs/DESIGN.md" "$dest/rst/design.md"
cp "$here/docs/XENSTORE-LAYOUT.md" "$dest/rst/xenstore-layout.md"
cat >> "$dest/rst/index.rst" <<'RST'

.. toctree::
   :maxdepth: 1
   :caption: Guides

   readme
   design
   xenstore-layout
RST

sphinx-build -q -b html -c "$dest" -W --keep-going -n "$dest/rst" "$dest/build/html"
echo "$dest/build/html/index.html"
