#!/usr/bin/env bash
# Install everything the demo and the tests need on a fresh Debian bookworm host (root):
# Debian packages (Xen 4.17 libraries, xenstore tools, gcc, Chromium), an unpacked xenstored,
# a Python venv with the pinned tools, and the ansible_collections/xen/disks layout.
# Idempotent: a second run only checks. Prints the environment to source on stdout's last lines.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${XEN_DISKS_CACHE:-$HOME/.cache/xen-disks}
venv=$cache/venv
mkdir -p "$cache"

# chromium and chromium-driver: the documentation site's test looks at it in a real browser.
apt_packages=(gcc libc6-dev libxen-dev libxenmisc4.17 libxenevtchn1 libxengnttab1 xenstore-utils
              python3-venv git rsync shellcheck qemu-system-x86 qemu-utils chromium chromium-driver)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# xenstored itself comes from xen-utils-4.17, unpacked only (installing it would pull in a
# hypervisor and start services). Pinned to the installed libraries' version.
xen_root=$cache/xen-utils
if [ ! -x "$xen_root/usr/lib/xen-4.17/bin/xenstored" ]; then
  version=$(dpkg-query -W -f='${Version}' libxenmisc4.17)
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "xen-utils-4.17=$version")
  rm -rf "$xen_root"; mkdir -p "$xen_root"
  dpkg -x "$tmp"/xen-utils-4.17_*.deb "$xen_root"
  rm -rf "$tmp"
fi
# The same package's `xl` and xen-utils-common's /etc/xen (xl.conf, hotplug scripts) are the
# test oracle of tests/xl/; the common files go into the same private root.
if [ ! -x "$xen_root/etc/xen/scripts/block" ]; then
  version=$(dpkg-query -W -f='${Version}' libxenmisc4.17)
  tmp=$(mktemp -d)
  sandbox=(); [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
  (cd "$tmp" && apt-get download -qq "${sandbox[@]}" "xen-utils-common=$version")
  dpkg -x "$tmp"/xen-utils-common_*.deb "$xen_root"
  rm -rf "$tmp"
fi

# Xen 4.20's xl (Debian 13, trixie), the second oracle version, beside the host's 4.17: unpacked
# from trixie's archive with a private apt configuration (the host's sources are not touched).
xen420_root=$cache/xen-4.20
"$here/tests/xl/fetch-xen-4.20.sh" "$xen420_root"

if [ ! -x "$venv/bin/python" ]; then
  py=/usr/bin/python3.11; [ -x "$py" ] || py=python3
  "$py" -m venv "$venv"
fi
req=$here/tests/requirements.txt
stamp=$venv/.requirements.sha
if [ ! -f "$stamp" ] || [ "$(sha256sum < "$req")" != "$(cat "$stamp")" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$req"
  sha256sum < "$req" > "$stamp"
fi

# ansible-test fetches a pip bootstrap script from a host this network cannot reach; it looks
# for a cached copy first: ours (tests/ansible-test-get-pip.py) bootstraps pip from ensurepip, then
# installs the version ansible-test asks for. tests/matrix.py does the same for the other releases.
getpip=$HOME/.ansible/test/cache/get_pip_24_2.py
if ! cmp -s "$here/tests/ansible-test-get-pip.py" "$getpip"; then
  mkdir -p "$(dirname "$getpip")"
  cp "$here/tests/ansible-test-get-pip.py" "$getpip"
fi

# Ansible finds the collection only under .../ansible_collections/<namespace>/<name>. One link per
# checkout (keyed by its path), so several checkouts (git worktrees) can share the cache.
key=$(printf '%s' "$here" | sha1sum | cut -c1-12)
collections=$cache/collections/$key
mkdir -p "$collections/ansible_collections/xen"
link=$collections/ansible_collections/xen/disks
if [ "$(readlink "$link" 2>/dev/null)" != "$here" ]; then
  rm -rf "$link"; ln -s "$here" "$link"
fi

cat > "$cache/env-$key.sh" <<ENV
export XEN_DISKS_CACHE="$cache"
export PATH="$venv/bin:\$PATH"
export ANSIBLE_COLLECTIONS_PATH="$collections"
export XEN_DISKS_XENSTORED="$xen_root/usr/lib/xen-4.17/bin/xenstored"
export XEN_DISKS_XEN_ROOT="$xen_root"
export XEN_DISKS_XEN_420_ROOT="$xen420_root"
export XEN_DISKS_COLLECTION="$link"
ENV
echo "$cache/env-$key.sh"
