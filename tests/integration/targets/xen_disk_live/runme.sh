#!/usr/bin/env bash
# xen_disk and xen_disk_info against Debian's REAL xenstored, started here with the collection's
# launcher (tests/xenstored/launcher.py; tests/setup.sh installs the daemon), with a simulated
# backend driver answering the XenbusState handshake. The daemon and the simulator are stopped on
# exit, on failure too. Then an independent read with Xen's own xenstore-read.
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
truncate -s 16M "$work/root.img" "$work/data.img"

ansible-playbook -i "$INVENTORY_PATH" playbook.yml \
  -e "socket=$socket" -e "root_image=$work/root.img" -e "data_image=$work/data.img" "$@"

# What the play left, read by Xen's own tool: xvda (51712) attached, xvdb (51728) detached.
export XENSTORED_PATH=$socket
test "$(xenstore-read /local/domain/0/backend/vbd/5/51712/params)" = "$work/root.img"
test "$(xenstore-read /local/domain/5/device/vbd/51712/virtual-device)" = 51712
test "$(xenstore-read /libxl/5/device/vbd/51712/dev)" = xvda
if xenstore-read /libxl/5/device/vbd/51728/dev 2>/dev/null; then
  echo "xvdb is still recorded after its detach" >&2
  exit 1
fi
