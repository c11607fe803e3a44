#!/bin/sh
# The test guest's agent: dom0 (tests/xenvm/dom0/guest.py) writes a shell command into this
# guest's own data/ directory in xenstore (data/agent-cmd, then the request number in
# data/agent-req); the agent runs it and writes data/agent-out (stdout and stderr, at most
# 3000 bytes; values raw: -R), data/agent-rc, then data/agent-done = the request number. Relative xenstore paths
# are the guest's home, /local/domain/<domid>/. The same client lets a test play a hostile guest
# (write its own device/ nodes).
done_req=
xenstore-write -- data/agent-ready "$(uname -r)"
while :; do
  req=$(xenstore-read data/agent-req 2>/dev/null)
  if [ -n "$req" ] && [ "$req" != "$done_req" ]; then
    cmd=$(xenstore-read -R data/agent-cmd 2>/dev/null)
    sh -c "$cmd" > /tmp/agent.out 2>&1 < /dev/null
    rc=$?
    xenstore-write -R -- data/agent-out "$(head -c 3000 /tmp/agent.out)" data/agent-rc "$rc"
    xenstore-write -- data/agent-done "$req"
    done_req=$req
  else
    # a watch fires once when set and again on a change; the timeout covers a change made
    # between the read above and the watch being set
    timeout 3 xenstore-watch -n 2 data/agent-req > /dev/null 2>&1
  fi
done
