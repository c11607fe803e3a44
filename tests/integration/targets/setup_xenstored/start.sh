# shellcheck shell=bash
# Sourced by a target's runme.sh: Debian's REAL xenstored, started with the collection's launcher
# (tests/xenstored/launcher.py; tests/setup.sh installs the daemon), guest web5 (PV, domid 5) as
# libxl creates it, and a simulated backend driver answering the XenbusState handshake. Sets
# $collection, $launcher, $work (a short temporary folder: a unix socket path may not exceed 107
# bytes) and $socket; everything is stopped and removed on exit, on failure too.
collection=${ANSIBLE_COLLECTIONS_PATH%%:*}/ansible_collections/xen/disks
launcher=$collection/tests/xenstored/launcher.py
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
