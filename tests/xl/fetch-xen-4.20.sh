#!/usr/bin/env bash
# Xen 4.20's tools as Debian 13 (trixie) ships them, unpacked into a private root for the xl
# oracle of tests/xl/ (a second Xen version beside the host's 4.17): xen-utils-4.20 (xl),
# xen-utils-common (/etc/xen: xl.conf, hotplug scripts), libxen-dev (headers for the hypervisor
# shim) and the shared libraries they load, trixie's glibc and its loader included.
#   fetch-xen-4.20.sh ROOT
# The host's apt sources stay as they are: a private apt configuration (its own sources, lists,
# cache and an empty dpkg status) downloads the packages, `dpkg -x` unpacks them; nothing is
# installed or configured. Idempotent: a root that already has xl is left alone.
set -euo pipefail
root=${1:?usage: $0 ROOT}
suite=trixie
xl=$root/usr/lib/xen-4.20/bin/xl
[ -x "$xl" ] && [ -f "$root/.packages" ] && exit 0

# An explicit list, not apt's resolver: the dependency closure of xen-utils-4.20 would bring
# systemd, udev and python (xen-utils-common's hotplug services); xl and libxl load only these.
packages=(xen-utils-4.20 xen-utils-common libxen-dev libxenmisc4.20 libxencall1 libxendevicemodel1
          libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxenhypfs1 libxenstore4 libxentoolcore1
          libxentoollog1 libyajl2 libc6 libgcc-s1 libncurses6 libtinfo6 libext2fs2t64 libcom-err2
          liblzma5 libuuid1 libzstd1 zlib1g)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt=$work/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/sources.list.d" \
         "$apt/etc/preferences.d" "$apt/etc/apt.conf.d" "$work/debs"
: > "$apt/status"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$apt/etc/sources.list" <<SOURCES
deb [signed-by=$keyring] http://deb.debian.org/debian $suite main
deb [signed-by=$keyring] http://deb.debian.org/debian-security $suite-security main
SOURCES
cat > "$apt/apt.conf" <<CONF
Dir::State "$apt";
Dir::State::Lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
Dir::Etc::SourceList "$apt/etc/sources.list";
Dir::Etc::SourceParts "$apt/etc/sources.list.d";
Dir::Etc::Preferences "$apt/etc/preferences";
Dir::Etc::PreferencesParts "$apt/etc/preferences.d";
Dir::Etc::Parts "$apt/etc/apt.conf.d";
APT::Architecture "amd64";
Acquire::Languages "none";
CONF
[ "$(id -u)" -ne 0 ] || echo 'APT::Sandbox::User "root";' >> "$apt/apt.conf"
export APT_CONFIG=$apt/apt.conf
apt-get update -qq
(cd "$work/debs" && apt-get download -qq "${packages[@]}")

rm -rf "$root.partial"
mkdir -p "$root.partial"
for deb in "$work"/debs/*.deb; do
  dpkg -x "$deb" "$root.partial"
  # shellcheck disable=SC2016 # dpkg-deb expands ${Package}, not the shell
  dpkg-deb -W --showformat '${Package} ${Version}\n' "$deb" >> "$root.partial/.packages"
done
[ -x "$root.partial/usr/lib/xen-4.20/bin/xl" ] || { echo "fetch-xen-4.20: no xl in the packages" >&2; exit 1; }
rm -rf "$root"
mv "$root.partial" "$root"
