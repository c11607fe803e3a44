#!/usr/bin/env bash
# Dom0's side of the test guest's agent (tests/xenvm/guest-agent.sh), run over SSH by vm.py:
#   guest.sh wait NAME TIMEOUT [OLD_DOMID]  wait until the guest's agent is up (in a domain other
#                                          than OLD_DOMID: after xl reboot); print its kernel
#   guest.sh run NAME TIMEOUT COMMAND       run a shell command in the guest, print what it
#                                          printed, exit with its status (124: no answer in time)
# Shell and xenstore-utils rather than Python: a Python start costs seconds in an emulated dom0.
set -u
deadline=$((SECONDS + ${3%.*}))
case $1 in
wait)
  while :; do
    domid=$(xl domid "$2" 2>/dev/null)
    if [ -n "$domid" ] && [ "$domid" != "${4:-}" ] &&
       ready=$(xenstore-read "/local/domain/$domid/data/agent-ready" 2>/dev/null); then
      echo "$ready"; exit 0
    fi
    [ $SECONDS -ge $deadline ] && { echo "guest $2: no agent after $3 s" >&2; exit 124; }
    sleep 0.3
  done ;;
run)
  domid=$(xl domid "$2" 2>/dev/null) || { echo "guest $2: not running" >&2; exit 125; }
  d=/local/domain/$domid/data
  # a request id never used before: an earlier request that timed out may still be running
  req=$(date +%s%N)
  xenstore-write -R "$d/agent-cmd" "$4" && xenstore-write "$d/agent-req" "$req" || exit 126
  until [ "$(xenstore-read "$d/agent-done" 2>/dev/null)" = "$req" ]; do
    [ $SECONDS -ge $deadline ] && { echo "guest $2: no answer to request $req in $3 s" >&2; exit 124; }
    timeout 2 xenstore-watch -n 2 "$d/agent-done" > /dev/null 2>&1
  done
  xenstore-read -R "$d/agent-out"
  exit "$(xenstore-read "$d/agent-rc")" ;;
*) echo "usage: guest.sh wait|run NAME TIMEOUT ..." >&2; exit 2 ;;
esac
