#!/usr/bin/env bash
# xen_host_disks against Debian's REAL xenstored with a simulated backend driver
# (../setup_xenstored/start.sh): one running guest (web5, with libxl's domain configuration), one
# declared guest that is not running, their xl.cfg files in a folder of their own; then an
# independent read with Xen's own xenstore-read.
# shellcheck disable=SC2154  # work and socket: set by ../setup_xenstored/start.sh
set -eux

# shellcheck source=../setup_xenstored/start.sh
. ../setup_xenstored/start.sh
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
