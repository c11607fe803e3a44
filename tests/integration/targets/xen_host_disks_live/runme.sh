#!/usr/bin/env bash
# xen_host_disks against Debian's REAL xenstored, started here with the collection's launcher
# (tests/xenstored/launcher.py; tests/setup.sh installs the daemon), with a simulated backend
# driver answering the XenbusState handshake: one running guest, one declared guest that is not
# running, their xl.cfg files in a folder of their own. Stopped on exit, on failure too. Then an
# independent read with Xen's own xenstore-read.
set -eux

collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/xen/disks
launcher=$collection/tests/xenstored/launcher.py
# A short run directory: a unix socket path may not exceed 107 bytes.
work=$(mktemp -d /tmp/xen-disks-it.XXXXXX)
cleanup() {
  if [ -f "$work/backend_sim.pid" ]; then kill "$(cat "$work/backend_sim.pid")" 2>/dev/null || true; fi
  python "$launcher" stop --rundir "$work/host" || true
  rm -rf "$work"
}
trap cleanup EXIT

socket=$(python "$launcher" start --rundir "$work/host")
python "$launcher" add-guest --rundir "$work/host" --name web5 --domid 5 --type pv
python "$collection/tests/xenstored/backend_sim.py" --socket "$socket" --daemon --pidfile "$work/backend_sim.pid"
truncate -s 16M "$work/root.img" "$work/spare.img"
mkdir "$work/xen"
printf "name = 'web5'\ntype = 'pv'\nmemory = 512\ndisk = [ 'phy:/dev/vg0/old,xvdz,w' ]   # the old disk\n" \
  > "$work/xen/web5.cfg"

# the launcher's stand-in for /var/lib/xen: web5's libxl domain configuration, as xl create writes it
ansible-playbook -i "$INVENTORY_PATH" playbook.yml -e "socket=$socket" -e "work=$work" \
  -e "libxl_dir=$work/host/var-lib-xen" "$@"

# What the play left, read by Xen's own tool: web5's xvda (51712) attached
export XENSTORED_PATH=$socket
test "$(xenstore-read /local/domain/0/backend/vbd/5/51712/params)" = "$work/root.img"
test "$(xenstore-read /libxl/5/device/vbd/51712/dev)" = xvda
