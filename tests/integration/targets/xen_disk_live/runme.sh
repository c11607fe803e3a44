#!/usr/bin/env bash
# xen_disk and xen_disk_info against Debian's REAL xenstored with a simulated backend driver
# (../setup_xenstored/start.sh): attach, converge, detach; then an independent read with Xen's own
# xenstore-read.
# shellcheck disable=SC2154  # work and socket: set by ../setup_xenstored/start.sh
set -eux

# shellcheck source=../setup_xenstored/start.sh
. ../setup_xenstored/start.sh
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
