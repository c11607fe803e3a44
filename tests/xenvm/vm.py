# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real Xen test host: Xen + a Debian PV dom0 inside qemu-system-x86_64 (TCG, no KVM needed),
reached over SSH through a forwarded localhost port, with busybox PV test guests.

Images come from tests/xenvm/build.sh ($XEN_DISKS_CACHE/xenvm/<release>/). Each boot gets a work
directory holding its payload disk (dom0's init, a fresh SSH key, the guest kernels), QEMU's
serial log and the copy-on-write overlay of the root image (attached with snapshot=on: runs never
change the cached image).

From Python (pytest fixtures, benchmarks)::

    host = XenHost(workdir, xenstored="oxenstored")
    host.boot()                      # retried: only booting is
    host.ssh("xl info")
    guest = host.create_guest("g1")  # a busybox PV guest; guest.run("cat /sys/block/xvdb/size")
    host.poweroff()

From a shell (molecule, the demo)::

    python3 tests/xenvm/vm.py up --dir DIR [--xenstored xenstored]   # boots, leaves it running
    python3 tests/xenvm/vm.py ssh --dir DIR -- xl list
    python3 tests/xenvm/vm.py guest --dir DIR NAME [--kernel 5.10] [--disk SPEC]...
    python3 tests/xenvm/vm.py diagnostics --dir DIR
    python3 tests/xenvm/vm.py down --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RELEASE = os.environ.get("XENVM_RELEASE", "bookworm")
CACHE = os.environ.get("XEN_DISKS_CACHE", os.path.expanduser("~/.cache/xen-disks"))
IMAGES = os.path.join(CACHE, "xenvm", RELEASE)
XENSTORED_FLAVOURS = ("oxenstored", "xenstored")

# Generous: the machine is shared, TCG is slow and its speed varies ~2x with the load.
BOOT_TIMEOUT = float(os.environ.get("XENVM_BOOT_TIMEOUT", 420))
GUEST_BOOT_TIMEOUT = float(os.environ.get("XENVM_GUEST_TIMEOUT", 300))
COMMAND_TIMEOUT = 600


class XenHostError(RuntimeError):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(msg):
    print(f"[xenvm {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class XenHost:
    """One real Xen host (a QEMU process). State is kept in `workdir/state.json` so that another
    process (molecule's destroy, `vm.py down`) can reach the same host."""

    def __init__(self, workdir, xenstored="oxenstored", images=IMAGES, memory=3072, cpus=2,
                 dom0_memory="1024M", cpu_model=None):
        if xenstored not in XENSTORED_FLAVOURS:
            raise ValueError(f"xenstored must be one of {XENSTORED_FLAVOURS}")
        self.workdir = os.path.abspath(workdir)
        self.xenstored = xenstored
        self.images = images
        self.memory = memory
        self.cpus = cpus
        self.dom0_memory = dom0_memory
        # qemu64, not max: under TCG max's SMAP/SMEP crash dom0 at its first page fault; +npt
        # gives Xen HAP for HVM guests (Debian's Xen has no shadow paging for them)
        self.cpu_model = cpu_model or os.environ.get("XENVM_CPU", "qemu64,+npt")
        self.port = None
        self.pid = None
        self.boot_seconds = None
        self.key = os.path.join(self.workdir, "id_ed25519")
        self.serial_log = os.path.join(self.workdir, "serial.log")

    # ---- state shared with other processes
    @classmethod
    def attach(cls, workdir):
        with open(os.path.join(workdir, "state.json")) as f:
            state = json.load(f)
        host = cls(workdir, xenstored=state["xenstored"], images=state["images"])
        host.port, host.pid = state["port"], state["pid"]
        return host

    def _save_state(self):
        with open(os.path.join(self.workdir, "state.json"), "w") as f:
            json.dump({"xenstored": self.xenstored, "images": self.images, "port": self.port,
                       "pid": self.pid, "key": self.key}, f)

    # ---- boot
    def _check_images(self):
        for name in ("xen", "vmlinuz", "initrd-dom0.cpio.gz", "rootfs.ext4", "initrd-guest.cpio.gz"):
            if not os.path.exists(os.path.join(self.images, name)):
                raise XenHostError(f"{self.images}/{name} is missing: run tests/xenvm/build.sh first")

    def _payload(self):
        """The run's second disk: dom0's init, the SSH key to trust, the guests' kernels."""
        tree = os.path.join(self.workdir, "payload")
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(os.path.join(tree, "guest"))
        for name in ("dom0-init.sh", "poweroff.sh", "guest.sh"):
            shutil.copy2(os.path.join(HERE, "dom0", name), tree)
        if not os.path.exists(self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xenvm", "-f", self.key],
                           check=True)
        shutil.copy(self.key + ".pub", os.path.join(tree, "authorized_keys"))
        for name in ("vmlinuz", "initrd-guest.cpio.gz", "vmlinuz-5.10", "initrd-guest-5.10.cpio.gz"):
            if os.path.exists(os.path.join(self.images, name)):
                shutil.copy(os.path.join(self.images, name), os.path.join(tree, "guest"))
        image = os.path.join(self.workdir, "payload.ext4")
        if os.path.exists(image):
            os.unlink(image)
        subprocess.run(["mkfs.ext4", "-q", "-L", "xenvm-payload", "-d", tree, image, "160M"], check=True,
                       capture_output=True)
        return image

    def _qemu_argv(self, payload):
        xen_args = (f"console=com1 com1=115200,8n1 dom0_mem={self.dom0_memory},max:{self.dom0_memory} "
                    f"dom0_max_vcpus={self.cpus} loglvl=all guest_loglvl=all console_timestamps=boot "
                    "bootscrub=0")
        dom0_args = f"console=hvc0 earlyprintk=xen xenvm=dom0 xenvm.xenstored={self.xenstored}"
        img = self.images
        return [
            os.environ.get("XENVM_QEMU", "qemu-system-x86_64"),
            "-machine", "pc", "-accel", "tcg,thread=multi", "-cpu", self.cpu_model,
            "-smp", str(self.cpus), "-m", str(self.memory),
            "-display", "none", "-monitor", "none", "-nodefaults", "-no-reboot",
            "-serial", f"file:{self.serial_log}", "-pidfile", os.path.join(self.workdir, "qemu.pid"),
            # QEMU's multiboot loader: -kernel is Xen, -initrd the modules ("file args,file")
            "-kernel", f"{img}/xen", "-append", xen_args,
            "-initrd", f"{img}/vmlinuz {dom0_args},{img}/initrd-dom0.cpio.gz",
            "-drive", f"file={img}/rootfs.ext4,format=raw,if=virtio,snapshot=on",
            "-drive", f"file={payload},format=raw,if=virtio",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=net0",
        ]

    def _boot_once(self, timeout):
        self.port = free_port()
        payload = self._payload()
        if os.path.exists(self.serial_log):
            os.unlink(self.serial_log)
        env = dict(os.environ, TMPDIR=self.workdir)  # snapshot=on's overlay
        with open(os.path.join(self.workdir, "qemu.out"), "w") as out:
            proc = subprocess.Popen(self._qemu_argv(payload), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = proc.pid
        self._save_state()
        start = time.monotonic()
        deadline = start + timeout
        while True:
            text = self.serial_text()
            if "XENVM-DOM0-READY" in text:
                break
            for bad in ("XENVM-DOM0-FAILED", "Dom0 crashed", "Panic on CPU", "FATAL:"):
                if bad in text:
                    raise XenHostError(f"dom0 failed to boot ({bad!r} on the serial console)")
            if proc.poll() is not None:
                raise XenHostError(f"QEMU exited with status {proc.returncode} during the boot")
            if time.monotonic() > deadline:
                raise XenHostError(f"dom0 not ready after {timeout:.0f} s")
            time.sleep(0.5)
        while True:
            if self.ssh("true", timeout=60, check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise XenHostError(f"no SSH to dom0 after {timeout:.0f} s")
            time.sleep(1)
        self.boot_seconds = time.monotonic() - start
        _log(f"dom0 ready ({self.xenstored}) after {self.boot_seconds:.1f} s, SSH on 127.0.0.1:{self.port}")

    def boot(self, attempts=int(os.environ.get("XENVM_BOOT_ATTEMPTS", 3)), timeout=BOOT_TIMEOUT):
        """Boot until dom0 answers over SSH. Only this is retried: a boot that fails (TCG under
        load, a port taken meanwhile) is logged and tried again from scratch."""
        self._check_images()
        os.makedirs(self.workdir, exist_ok=True)
        for attempt in range(1, attempts + 1):
            try:
                self._boot_once(timeout)
                return self
            except XenHostError as e:
                _log(f"boot attempt {attempt}/{attempts} failed: {e}\n--- serial console (tail)\n"
                     + "\n".join(self.serial_text().splitlines()[-40:]))
                self.kill()
                if attempt == attempts:
                    raise
        return self

    def serial_text(self):
        try:
            with open(self.serial_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ---- commands
    def ssh_argv(self):
        return ["ssh", "-F", "/dev/null", "-i", self.key, "-p", str(self.port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=60", "-o", "ServerAliveInterval=20",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.workdir}/ssh-ctl",
                "-o", "ControlPersist=300", "root@127.0.0.1"]

    def ssh(self, command, timeout=COMMAND_TIMEOUT, check=True, input=None):
        """Run a shell command in dom0; CompletedProcess (text). check: raise on a non-zero status."""
        try:
            proc = subprocess.run(self.ssh_argv() + ["--", command], capture_output=True, text=True,
                                  timeout=timeout, input=input, check=False)
        except subprocess.TimeoutExpired as e:
            raise XenHostError(f"dom0: {command!r} did not finish in {timeout} s") from e
        if check and proc.returncode != 0:
            raise XenHostError(f"dom0: {command!r} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def put(self, path, content, mode="0644"):
        self.ssh(f"install -D -m {mode} /dev/stdin {shlex.quote(path)}", input=content)

    def ansible_inventory(self, path, host="dom0", extra_vars=None):
        """An Ansible inventory (YAML) reaching dom0 as a fleet reaches a host: SSH, dom0's Python."""
        hostvars = {
            "ansible_host": "127.0.0.1", "ansible_port": self.port, "ansible_user": "root",
            "ansible_ssh_private_key_file": self.key,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_pipelining": True,
        }
        hostvars.update(extra_vars or {})
        with open(path, "w") as f:
            json.dump({"xen_hosts": {"hosts": {host: hostvars}}}, f, indent=1)
        return path

    # ---- guests
    def create_guest(self, name, kernel="6.1", disks=(), memory=160, timeout=GUEST_BOOT_TIMEOUT, attempts=3,
                     hvm=False):
        """Create a busybox guest (`xl create`) and wait for its agent. disks: xl disk specs of
        its config file (a qcow2 one makes libxl start a QEMU that serves the guest's qdisks).
        hvm: an HVM guest (QEMU's emulated machine, direct kernel boot, its console in
        /var/log/xen/console/guest-NAME.log) instead of a PV one."""
        suffix = "" if kernel == "6.1" else "-" + kernel
        disk_list = ", ".join(repr(d) for d in disks)
        boot = (f'kernel = "/payload/guest/vmlinuz{suffix}"\n'
                f'ramdisk = "/payload/guest/initrd-guest{suffix}.cpio.gz"\n')
        if hvm:
            kind = ('type = "hvm"\ncmdline = "console=ttyS0 xenvm=guest"\nvnc = 0\nsdl = 0\n'
                    f'serial = "file:/var/log/xen/console/guest-{name}.log"\n')
        else:
            kind = 'type = "pv"\nextra = "console=hvc0 xenvm=guest"\n'
        cfg = (f'name = "{name}"\n{kind}{boot}'
               f"memory = {memory}\nvcpus = 1\non_crash = \"preserve\"\ndisk = [ {disk_list} ]\n")
        self.put(f"/root/guests/{name}.cfg", cfg)
        start = time.monotonic()
        # Booting a guest is retried, as booting the host is (never a test's assertion): libxl's
        # fixed 10 s for a QMP answer from the guest's QEMU is tight when TCG runs under load.
        for attempt in range(1, attempts + 1):
            proc = self.ssh(f"xl create /root/guests/{name}.cfg", timeout=timeout, check=False)
            if proc.returncode == 0:
                break
            _log(f"xl create {name}: attempt {attempt}/{attempts} failed:\n{proc.stdout}{proc.stderr}")
            self.ssh(f"xl destroy {name}", check=False)
            if attempt == attempts:
                raise XenHostError(f"xl create {name} failed {attempts} times\n{proc.stdout}{proc.stderr}")
        guest = Guest(self, name)
        guest.kernel = self.ssh(f"/payload/guest.sh wait {name} {timeout:.0f}",
                                timeout=timeout + 60).stdout.strip()
        guest.boot_seconds = time.monotonic() - start
        _log(f"guest {name} ({guest.kernel}) up after {guest.boot_seconds:.1f} s")
        return guest

    def domid(self, name):
        proc = self.ssh(f"xl domid {name}", check=False)
        return int(proc.stdout) if proc.returncode == 0 else None

    def wait_guest(self, name, old_domid=None, timeout=GUEST_BOOT_TIMEOUT):
        """Wait for a guest's agent (in a domain other than old_domid: after xl reboot/restore)."""
        old = "" if old_domid is None else str(old_domid)
        self.ssh(f"/payload/guest.sh wait {name} {timeout:.0f} {old}", timeout=timeout + 60)
        return Guest(self, name)

    def destroy_guest(self, name):
        self.ssh(f"xl destroy {name}", check=False)

    # ---- evidence
    def diagnostics(self):
        """What a failure needs: xl's view, the hypervisor's log, the guests' consoles, the hotplug
        log, the backends in xenstore, dom0's kernel log. Falls back to the serial console."""
        script = r"""
            echo '--- xl list'; xl list
            echo '--- xl dmesg (tail)'; xl dmesg | tail -n 40
            for f in /var/log/xen/console/guest-*.log; do [ -e "$f" ] && { echo "--- $f (tail)"; tail -n 40 "$f"; }; done
            for f in /var/log/xen/xl-*.log /var/log/xen/qemu-dm-*.log; do [ -e "$f" ] && { echo "--- $f (tail)"; tail -n 20 "$f"; }; done
            echo '--- /var/log/xen/xen-hotplug.log (tail)'; tail -n 40 /var/log/xen/xen-hotplug.log 2>&1
            echo '--- backends'; xenstore-ls -f /local/domain/0/backend 2>&1 |
                grep -E '/(state|params|online|hotplug-status|physical-device|mode|sectors)' | tail -n 60
            echo '--- losetup'; losetup -a
            echo '--- dmesg (tail)'; dmesg | tail -n 30
        """
        try:
            proc = self.ssh(script, timeout=120, check=False)
            return proc.stdout + proc.stderr
        except (XenHostError, OSError) as e:
            return f"(no SSH to dom0: {e})\n--- serial console (tail)\n" + \
                "\n".join(self.serial_text().splitlines()[-60:])

    # ---- end
    def alive(self):
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        # the pid is ours only while it is still a QEMU
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                return b"qemu" in f.read()
        except OSError:
            return False

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            for _attempt in range(50):
                if not self.alive():
                    break
                time.sleep(0.1)
        subprocess.run(["ssh", "-o", f"ControlPath={self.workdir}/ssh-ctl", "-O", "exit", "x"],
                       capture_output=True, check=False)

    def poweroff(self, timeout=60):
        """Destroy the guests and reset the machine from dom0; QEMU exits (-no-reboot). Killed
        after `timeout` seconds if it did not."""
        if self.alive():
            try:
                self.ssh("/payload/poweroff.sh", timeout=timeout, check=False)
            except XenHostError:
                pass
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.5)
        self.kill()


class Guest:
    """A test guest, driven through its xenstore agent (tests/xenvm/guest-agent.sh)."""

    def __init__(self, host, name):
        self.host = host
        self.name = name
        self.kernel = None
        self.boot_seconds = None

    def run(self, command, timeout=300, check=True):
        """Run a shell command in the guest; (status, output)."""
        proc = self.host.ssh(f"/payload/guest.sh run {self.name} {timeout} {shlex.quote(command)}",
                             timeout=timeout + 60, check=False)
        if check and proc.returncode != 0:
            raise XenHostError(f"guest {self.name}: {command!r} exited {proc.returncode}\n"
                               f"{proc.stdout}{proc.stderr}")
        return proc.returncode, proc.stdout

    def disks(self):
        """{name: {"bytes": size, "ro": bool}} from the guest's own /sys/block."""
        _status, out = self.run('for b in /sys/block/xvd*; do [ -e "$b" ] && '
                                'echo "${b##*/} $(cat $b/size) $(cat $b/ro)"; done; true')
        found = {}
        for line in out.splitlines():
            name, sectors, ro = line.split()
            found[name] = {"bytes": int(sectors) * 512, "ro": ro == "1"}
        return found

    def wait_disk(self, name, size=None, present=True, timeout=180):
        """Wait (in the guest) until /sys/block/<name> is there with `size` bytes, or gone; True
        when it happened in time."""
        if present:
            cond = f'[ -e /sys/block/{name} ]' + \
                (f' && [ "$(cat /sys/block/{name}/size)" = {size // 512} ]' if size is not None else "")
        else:
            cond = f'[ ! -e /sys/block/{name} ]'
        status, _out = self.run(f'end=$(($(date +%s) + {int(timeout)})); until {cond}; do '
                                '[ $(date +%s) -ge $end ] && exit 1; usleep 200000; done',
                                timeout=timeout + 90, check=False)
        return status == 0


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="boot a host and leave it running")
    up.add_argument("--dir", required=True)
    up.add_argument("--xenstored", choices=XENSTORED_FLAVOURS, default="oxenstored")
    up.add_argument("--inventory", help="also write an Ansible inventory for dom0 here")
    for name in ("down", "diagnostics", "port"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
    s = sub.add_parser("ssh", help="run a command in dom0")
    s.add_argument("--dir", required=True)
    s.add_argument("command", nargs=argparse.REMAINDER)
    g = sub.add_parser("guest", help="create a test guest and wait for it")
    g.add_argument("--dir", required=True)
    g.add_argument("name")
    g.add_argument("--kernel", default="6.1", choices=["6.1", "5.10"])
    g.add_argument("--disk", action="append", default=[])
    r = sub.add_parser("guest-run", help="run a command in a test guest")
    r.add_argument("--dir", required=True)
    r.add_argument("name")
    r.add_argument("command")
    args = parser.parse_args(argv)

    if args.cmd == "up":
        os.makedirs(args.dir, exist_ok=True)
        host = XenHost(args.dir, xenstored=args.xenstored).boot()
        if args.inventory:
            host.ansible_inventory(args.inventory)
        return 0
    host = XenHost.attach(args.dir)
    if args.cmd == "down":
        host.poweroff()
        return 0
    if args.cmd == "port":
        print(host.port)
        return 0
    if args.cmd == "diagnostics":
        print(host.diagnostics())
        return 0
    if args.cmd == "ssh":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        proc = host.ssh(" ".join(command), check=False)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    if args.cmd == "guest":
        host.create_guest(args.name, kernel=args.kernel, disks=args.disk)
        return 0
    if args.cmd == "guest-run":
        status, out = Guest(host, args.name).run(args.command, check=False)
        sys.stdout.write(out)
        return status
    return 2


if __name__ == "__main__":
    sys.exit(_main())
