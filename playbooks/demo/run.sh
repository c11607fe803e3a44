#!/usr/bin/env bash
# The README's main job, on a machine without Xen: `./playbooks/demo/run.sh`.
# `./playbooks/demo/run.sh --real-xen` tells the same story on a real Xen host instead (Xen 4.17
# and a Debian PV dom0 inside QEMU, tests/xenvm/; a few minutes): see real-xen.sh.
# Installs what it needs (tests/setup.sh), starts two real xenstored daemons (two simulated dom0
# hosts) with simulated guests and a simulated backend driver, then runs the collection's playbooks
# against them: provision (live + xl.cfg), provision again (nothing changes), a drift check after a
# hand edit, and the report. The daemons are stopped on exit, on failure too.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$here"
case "${1:-}" in
  "") ;;
  --real-xen) exec "$here/playbooks/demo/real-xen.sh" ;;
  *) echo "usage: $0 [--real-xen]" >&2; exit 2 ;;
esac
env_file=$(./tests/setup.sh | tail -n 1)
# shellcheck disable=SC1090
. "$env_file"

demo=$(mktemp -d "${TMPDIR:-/tmp}/xen-disks-demo.XXXXXX")
export XEN_DISKS_DEMO=$demo
hosts=$demo/hosts
launcher=(python3 tests/xenstored/launcher.py)

cleanup() {
  local pidfile
  for pidfile in "$hosts"/host-*/backend_sim.pid; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  "${launcher[@]}" stop-many --base "$hosts" >/dev/null 2>&1 || true
  if [ -z "${XEN_DISKS_DEMO_KEEP:-}" ]; then rm -rf "$demo"; else echo "kept $demo"; fi
}
trap cleanup EXIT

banner() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }

banner "Two simulated dom0 hosts: real xenstored daemons, guests created as libxl does"
"${launcher[@]}" start-many --base "$hosts" --count 2
"${launcher[@]}" add-guest --rundir "$hosts/host-001" --name web1 --domid 1 --type pv
"${launcher[@]}" add-guest --rundir "$hosts/host-001" --name db1 --domid 2 --type hvm
"${launcher[@]}" add-guest --rundir "$hosts/host-002" --name app1 --domid 1 --type pvh
for h in "$hosts"/host-*; do
  python3 tests/xenstored/backend_sim.py --socket "$h/socket" --daemon --pidfile "$h/backend_sim.pid"
  mkdir -p "$h/xen"
done

# the directory only: xen_disk creates the images the inventory declares (size:, preallocation:)
mkdir -p "$demo/images"
# web1 already has a hand-written config file: only its disk setting will change.
cat > "$hosts/host-001/xen/web1.cfg" <<CFG
# web1: front-end web server (hand-written; the disk setting is managed by Ansible)
name = "web1"
type = "pv"
kernel = "/boot/vmlinuz"
memory = 2048     # MiB
vcpus = 2
disk = [ 'phy:$demo/images/web1-root.img,xvda,w',  # root file system
         # scratch space, retired by the declaration
         'file:/srv/old-scratch.img,xvdz,w',
       ]
vif = [ 'bridge=xenbr0' ]
CFG

playbook() { ansible-playbook -i playbooks/demo/inventory.yml "$@"; }

banner "Provision: disks attached live (xen_disk) and written to each guest's xl.cfg (xl_disks)"
playbook playbooks/provision.yml --diff

banner "Provision again: nothing changes"
playbook playbooks/provision.yml | tee "$demo/second-run.log" | tail -n 4
grep -Eq 'dom0-a +: ok=[0-9]+ +changed=0 ' "$demo/second-run.log"
grep -Eq 'dom0-b +: ok=[0-9]+ +changed=0 ' "$demo/second-run.log"

banner "web1.cfg: only the disk setting changed; comments and other settings kept"
cat "$hosts/host-001/xen/web1.cfg"

banner "Drift: a disk added by hand to app1's file is reported; check mode shows the fix, writes nothing"
printf "disk += [ '%s/images/extra.img,raw,xvdd,w' ]\n" "$demo" >> "$hosts/host-002/xen/app1.cfg"
playbook playbooks/provision.yml --check --diff --limit dom0-b

banner "Report: every guest's disks on every host, read back from xenstore"
playbook playbooks/report.yml

banner "The tree web1's xvda got on dom0-a (as libxl 4.17 writes it; backend moved to Connected)"
XENSTORED_PATH=$hosts/host-001/socket xenstore-ls -p /local/domain/0/backend/vbd/1/51712
XENSTORED_PATH=$hosts/host-001/socket xenstore-ls -p /libxl/1/device/vbd/51712

banner "Done: the collection worked against real xenstored daemons"
