#!/usr/bin/env bash
# The demo's story on a real Xen host: `./playbooks/demo/run.sh --real-xen`.
# Builds (or restores from the cache) the test host of tests/xenvm/ (Xen 4.17, a Debian PV dom0,
# inside qemu-system-x86_64; no KVM needed), boots it, starts two busybox PV guests (web1, db1),
# then runs the collection's playbooks against dom0 over SSH: provision (live + xl.cfg), provision
# again (nothing changes), a drift check after a hand edit, the report, and what each guest's own
# kernel sees. The host is powered off on exit. XENVM_DIR=DIR uses a host already booted there
# (tests/xenvm/vm.py up --dir DIR) and leaves it running.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$here"
env_file=$(./tests/setup.sh | tail -n 1)
# shellcheck disable=SC1090
. "$env_file"
banner() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
vm() { python3 tests/xenvm/vm.py "$@"; }

banner "The real Xen host's images (built once, then cached)"
./tests/xenvm/build.sh > /dev/null
dir=${XENVM_DIR:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/xen-disks-demo-xen.XXXXXX")
  trap 'vm down --dir "$dir"; rm -rf "$dir"' EXIT
  banner "Boot Xen 4.17 + a Debian PV dom0 in QEMU (TCG): a minute or two"
  vm up --dir "$dir"
fi
XEN_DISKS_DEMO_PORT=$(vm port --dir "$dir")
XEN_DISKS_DEMO_KEY=$dir/id_ed25519
export XEN_DISKS_DEMO_PORT XEN_DISKS_DEMO_KEY
dom0() { vm ssh --dir "$dir" -- "$@"; }

banner "Two guests, started with xl from their hand-written files"
dom0 'mkdir -p /var/lib/xen/images && qemu-img create -q -f qcow2 /var/lib/xen/images/web1-root.qcow2 32M'
for g in web1 db1; do
  case $g in
    web1) disk="disk = [ 'format=qcow2,vdev=xvda,access=rw,target=/var/lib/xen/images/web1-root.qcow2' ]" ;;
    db1) disk="disk = [ ]   # given by Ansible" ;;
  esac
  dom0 "cat > /etc/xen/$g.cfg" <<CFG
# $g (hand-written; the disk setting is managed by Ansible)
name = "$g"
type = "pv"
kernel = "/payload/guest/vmlinuz"
ramdisk = "/payload/guest/initrd-guest.cpio.gz"
extra = "console=hvc0 xenvm=guest"
memory = 160
$disk
CFG
  dom0 "xl domid $g >/dev/null 2>&1 || xl create /etc/xen/$g.cfg"
done
for g in web1 db1; do dom0 "/payload/guest.sh wait $g 300" > /dev/null; done
dom0 xl list

playbook() { ansible-playbook -i playbooks/demo/inventory-real-xen.yml "$@"; }
banner "Provision: disks attached live (xen_disk over SSH) and written to each guest's xl.cfg"
playbook playbooks/provision.yml --diff

banner "Provision again: nothing changes"
log=$(mktemp)
playbook playbooks/provision.yml | tee "$log" | tail -n 3
grep -Eq 'xen-vm +: ok=[0-9]+ +changed=0 ' "$log"
rm -f "$log"

banner "What the guests' own kernels see (their /sys/block: name, 512-byte sectors, read-only)"
for g in web1 db1; do
  echo "$g:"
  dom0 "/payload/guest.sh run $g 300 'for b in /sys/block/xvd*; do echo \"  \${b##*/} \$(cat \$b/size) ro=\$(cat \$b/ro)\"; done'"
  echo
done

banner "web1.cfg: only the disk setting changed"
dom0 cat /etc/xen/web1.cfg

banner "Drift: a disk added by hand to db1's file is reported; check mode shows the fix"
dom0 "echo \"disk += [ '/var/lib/xen/images/extra.img,raw,xvde,w' ]\" >> /etc/xen/db1.cfg"
playbook playbooks/provision.yml --check --diff

banner "Report: every guest's disks, read back from xenstore"
playbook playbooks/report.yml

banner "The same disks as xl lists them"
dom0 'xl block-list web1; xl block-list db1'

banner "Done: the collection worked on a real Xen hypervisor, kernel blkback and QEMU's qdisk"
