#!/usr/bin/python3
"""Dom0's side of the test guest's agent (tests/xenvm/guest-agent.sh), run over SSH by vm.py.

    guest.py wait NAME TIMEOUT          wait until the guest's agent is up; print its kernel
    guest.py run NAME TIMEOUT COMMAND   run a shell command in the guest; print what it printed,
                                        exit with its status (124: no answer in TIMEOUT seconds)

Talks to xenstored with Debian's python3-pyxs: it writes the command under the guest's own
/local/domain/<id>/data/ and polls for the answer.
"""
import sys
import time

from pyxs import Client


def domid_of(client, name):
    for domid in client.list(b"/local/domain"):
        path = b"/local/domain/" + domid + b"/name"
        if client.exists(path) and client.read(path).decode() == name:
            return domid.decode()
    return None


def node(client, path):
    return client.read(path).decode(errors="replace") if client.exists(path) else None


def wait(client, name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        domid = domid_of(client, name)
        if domid is not None:
            ready = node(client, f"/local/domain/{domid}/data/agent-ready".encode())
            if ready:
                print(ready)
                return 0
        time.sleep(0.3)
    print(f"guest {name}: no agent after {timeout} s", file=sys.stderr)
    return 124


def run(client, name, timeout, command):
    domid = domid_of(client, name)
    if domid is None:
        print(f"guest {name}: not running", file=sys.stderr)
        return 125
    data = f"/local/domain/{domid}/data/"
    req = str(int(node(client, (data + "agent-done").encode()) or 0) + 1)
    client.write((data + "agent-cmd").encode(), command.encode())
    client.write((data + "agent-req").encode(), req.encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node(client, (data + "agent-done").encode()) == req:
            sys.stdout.write(node(client, (data + "agent-out").encode()) or "")
            return int(node(client, (data + "agent-rc").encode()) or 1)
        time.sleep(0.2)
    print(f"guest {name}: no answer to request {req} in {timeout} s", file=sys.stderr)
    return 124


def main(argv):
    with Client() as client:
        if argv[1] == "wait":
            return wait(client, argv[2], float(argv[3]))
        if argv[1] == "run":
            return run(client, argv[2], float(argv[3]), argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
