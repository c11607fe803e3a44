#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xen.disks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: xen_disk
short_description: Attach, detach and converge the virtual disks of running Xen guests
version_added: 0.1.0
description:
  - Converges the xenstore entries of one or several guests' virtual disks on a Xen dom0 to a
    declaration, writing exactly what the Xen 4.17 toolstack (libxl, as used by C(xl block-attach)
    and C(xl block-detach)) writes, with the same permissions, in one transaction per guest.
  - A disk is identified by its guest and its device number (the vdev, e.g. C(xvda); C(xvda) and
    C(d0p0) are the same device). Equivalent spellings of a disk compare equal, so a second run
    reports no change.
  - The host is read once, from one snapshot, and only the nodes the comparison needs are read.
    The whole declaration is validated before anything is written; one bad disk means nothing is
    written, and the error names it (for example C(disks[2].vdev) followed by the problem).
  - Attach follows libxl's hot-plug handshake; it waits for the backend (InitWait) and runs the
    backend's hotplug script on the dom0 where libxl would. Detach asks the backend to close, waits
    for it, runs the script's remove step, then removes the device's directories.
  - A disk whose settings differ from the declaration is never silently re-created; see O(recreate).
    A cdrom whose medium differs is changed in place, as C(xl cd-insert) and C(xl cd-eject) do.
  - A media change of an HVM guest whose device model is QEMU (C(/libxl/<domid>/dm-version) is
    C(qemu_xen), which libxl writes) also tells QEMU, over its QMP socket
    C(<libxl_run_dir>/qmp-libxl-<domid>), with the commands libxl 4.17 sends, in the same order around
    the two xenstore transactions; C(query-version), C(eject) of the emulated drive C(ide-<devid>)
    (no C(force), as libxl) before the eject is written to xenstore, then C(add-fd) passing the new
    image's file descriptor and C(blockdev-change-medium) on C(/dev/fdset/<N>) before the new medium
    is written. An empty new medium is only ejected. If QEMU is not running, refuses or does not
    answer within libxl's 40 seconds, the module fails naming the socket, or QEMU's error class and
    description; a failure before the eject changes nothing, a failure after it leaves the drive
    empty (as libxl does) and a next run inserts the declared medium. Check mode lists the commands
    and warns when the QMP socket is not there.
  - Without C(dm-version) or with C(qemu_xen_traditional), libxl assumes qemu-traditional and only
    xenstore changes, as here. A guest whose device model runs in a stub domain is refused, as
    libxl 4.17 refuses C(cd-insert) there.
  - Nodes written by the backend driver, the hotplug scripts, QEMU or the guest are read but never
    written or removed (except when a device is removed or re-created, as libxl does).
  - Disks added this way are recorded where xl records them (xenstore and libxl's domain
    configuration, so they survive C(xl reboot), C(xl save)/C(xl restore) and C(xl migrate)), but
    not in the guest's xl.cfg; persist them there with the P(xen.disks.xl_disks#role) role (or the
    P(xen.disks.guest_disks#role) role, which does both).
author:
  - xen.disks contributors (@xen-disks)
requirements:
  - pyxs (Python library) on the managed dom0
  - a xenstore daemon reachable from the managed host (a Xen dom0, or a test daemon)
attributes:
  check_mode:
    support: full
    description: Plans from the same snapshot a real run would read and reports per disk what an
      apply would need (nothing, the guest's cooperation, O(force), or a guest restart).
  diff_mode:
    support: full
    description: Canonical xl disk specifications, the xenstore nodes, and the C(disks) array of
      libxl's domain configuration file, before and after; and the QMP commands a media change
      sends to the guest's QEMU.
  platform:
    platforms: posix
    support: full
    description: Runs on the Xen toolstack domain (dom0).
extends_documentation_fragment:
  - xen.disks.action_group
options:
  domain:
    description:
      - The guest, by name (as in C(xl list)) or by domain id.
      - Exactly one of O(domain) and O(domains) is required.
    type: str
  disks:
    description:
      - The guest's declared disks. Each item is an xl disk specification string, as in
        C(xl block-attach) and the C(disk=) setting of xl.cfg (see xl-disk-configuration(5)), or a
        dictionary keyed by the xl option names (C(target), C(format), C(vdev), C(access),
        C(devtype), C(backendtype), C(backend), C(script), C(specification), C(discard),
        C(direct-io-safe), C(trusted), C(colo) ..., plus C(transport) and C(driver_subtype)).
      - With O(state=absent) only the C(vdev) of each item matters; a plain vdev string such as
        C(xvdb) is accepted there.
      - "A dictionary may also declare the storage behind a dom0 file target (formats raw, qcow2 and
        vhd; qemu-img of Debian's C(qemu-utils) must be installed):
        C(size) (bytes, or a number and a unit: C(20G), C(512MiB), C(1.5T); K, M, G, T, P, E and
        KiB ... EiB are powers of 1024, KB ... EB powers of 1000; rounded up to 512-byte sectors),
        C(create) (default true when C(size) or C(backing_file) is given: a missing image is created
        with qemu-img under a temporary name in the same directory, then linked to its name),
        C(preallocation) (off, metadata (qcow2), falloc, full),
        C(backing_file) and C(backing_format) (a qcow2 overlay; the backing format is required; an
        existing overlay is never rebased, and one whose header names another backing file is
        reported in a warning),
        C(mode), C(owner), C(group) (of the image file),
        C(allow_shrink) (a smaller C(size) is an error unless true, and is refused for an attached disk),
        C(format_mismatch) (C(error) (default) or C(ignore): an image whose header names another
        format than the declared one is an error, so that a guest that wrote a qcow2 header into its
        raw image never makes dom0 open a backing file of the guest's choosing; checked for every dom0
        file target), and, with O(state=absent), C(remove_storage) (remove the image file after the
        detach; refused while another disk of the host or of the declaration uses it)."
      - A smaller image is grown (C(qemu-img resize)), a larger one is never shrunk without
        C(allow_shrink). After growing the image of an attached C(phy) disk served by a loop device,
        the module runs C(losetup -c) on it and waits (bounded by O(timeout)) until the backend
        publishes the new C(sectors). The image of an attached C(qdisk) disk of an HVM guest whose
        device model is qemu-xen is grown by QEMU itself (QMP C(block_resize) of the drive libxl named,
        C(ide0-hd1) for C(hdb), C(scsi0-hd<n>), C(ahcidisk-<n>)); where QEMU cannot be told
        (qemu-traditional, a PV guest's qdisk, a stub domain) the result says so and qemu-img is
        tried, which QEMU's lock on the image refuses while it runs.
      - Block devices and LVM volumes are not created (use M(community.general.lvol) before this module).
      - Storage options are checked and images inspected before anything is written; images are
        created and grown before the guest's xenstore transaction; check and diff modes show the steps.
    type: list
    elements: raw
    default: []
  state:
    description:
      - V(present) attaches the declared disks that are missing and checks the others.
      - V(absent) detaches the declared disks (by vdev) that are attached.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With O(state=present), also detach every attached disk of the guest that is not declared,
        except those listed in O(keep).
    type: bool
    default: false
  keep:
    description:
      - Vdevs that O(exclusive) never detaches (e.g. the root disk). Aliases count (C(d0p0) keeps
        C(xvda)).
    type: list
    elements: str
    default: []
  recreate:
    description:
      - A disk attached with different settings (target, format, access, backend ...) can only be
        changed by detaching and re-attaching it. Without O(recreate) the module fails and names
        the differing fields; with it, the disk is detached and attached again.
    type: bool
    default: false
  force:
    description:
      - Detach without the guest's cooperation, as C(xl block-detach -f) does (the frontend
        directory is removed first and the backend's answer is not required).
      - A detach left unfinished (the backend Closing, as a detach that timed out leaves it,
        whatever the guest's frontend says) is never cleaned up without O(force). A run that
        removes the disk continues that detach; a run that declares it present fails naming
        it, and with O(force) detaches it by force and attaches it again.
    type: bool
    default: false
  creating:
    description:
      - The guest is being built and not yet running (it is paused before its first start).
        Only then may virtio disks (C(specification=virtio)) be added or removed; Xen
        cannot hot-plug or hot-unplug them.
    type: bool
    default: false
  backend:
    description:
      - Default backend domain (name or id) for disks that do not set C(backend). Unset means
        dom0, the toolstack domain.
    type: str
  width:
    description:
      - PV guests only; the guest's word size, which gives the frontend C(protocol) node
        (C(x86_64-abi) or C(x86_32-abi)). libxl asks the hypervisor; xenstore does not record it.
    type: int
    choices: [32, 64]
    default: 64
  arch:
    description:
      - The host architecture for virtio disks' virtio-mmio C(base) and C(irq) (allocated by
        libxl on V(arm), zero on V(x86)). Unset means the architecture of the managed host.
    type: str
    choices: [x86, arm]
  domains:
    description:
      - Several guests of the host in one call. The host is read once and each guest is changed in
        its own transaction. Each entry takes O(domain) and the per-guest options O(disks),
        O(state), O(exclusive), O(keep), O(recreate), O(force), O(creating) and O(backend); an
        entry's unset option takes the top-level value. O(width) may also be set per entry.
      - Errors name the entry, for example C(domains[1].disks[0].target).
    type: list
    elements: dict
    suboptions:
      domain:
        description: The guest, by name or domain id.
        type: str
        required: true
      disks:
        description: As the top-level O(disks).
        type: list
        elements: raw
      state:
        description: As the top-level O(state).
        type: str
        choices: [present, absent]
      exclusive:
        description: As the top-level O(exclusive).
        type: bool
      keep:
        description: As the top-level O(keep).
        type: list
        elements: str
      recreate:
        description: As the top-level O(recreate).
        type: bool
      force:
        description: As the top-level O(force).
        type: bool
      creating:
        description: As the top-level O(creating).
        type: bool
      backend:
        description: As the top-level O(backend).
        type: str
      width:
        description: As the top-level O(width).
        type: int
        choices: [32, 64]
  wait:
    description:
      - Wait for the backend handshake after an attach (the backend reaching InitWait) and for the
        backend to close on detach, and run the hotplug scripts, as libxl does.
      - Unlike libxl, an attach to a running guest also waits for a QEMU (C(qdisk)) backend to reach
        InitWait, so that a disk nothing serves is not reported as attached. A PV guest created
        without a QEMU-served disk has no QEMU (libxl starts one only at creation), and QEMU may
        refuse a disk (Debian 12's QEMU 7.2 refuses a read-only qcow2). The run then fails naming
        the disk; the entries stay, as libxl leaves them (C(xen_disk_info) reports the disk as
        C(attach_unfinished)). With O(creating) there is no such wait (QEMU starts after the disks).
      - With V(false) the entries are written and the module returns at once (detach then only
        removes the entries, as a forced detach).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each backend state change, for each hotplug script, for QEMU during one
        cdrom media change (connection, answers), and for each answer of xenstored. Unset means libxl's own timeouts
        (10 seconds for the handshake and the close, 40 seconds for a hotplug script and for a
        media change's QMP session) and 30 seconds for xenstored.
      - A number above 0 and at most 86400 (a day); anything else (C(.inf), C(nan), 0, a negative
        number) fails the run before anything is read or written.
      - A xenstored that stops answering (stopped, hung) is reported after this time, naming it,
        also during a wait for a backend (the wait checks now and then that xenstored answers);
        one that dies is reported at once. The message says what the run was doing and whether
        it had already written changes.
    type: float
  hotplug_scripts:
    description:
      - Who runs the backend's hotplug script (C(/etc/xen/scripts/block) by default) for disks
        served by kernel blkback in this domain.
      - V(run) runs it from the module, as libxl does (C(add) after the handshake, C(remove) after
        the close), with libxl's environment.
      - V(skip) never runs it, for hosts where udev runs the scripts.
      - V(auto) runs the C(add) step unless the backend has already reported C(hotplug-status)
        by the time the handshake is done (udev ran it), and the C(remove) step when the script is
        on the host; a script missing from the host is reported as a warning instead of failing.
        Hosts where udev always runs the scripts should use V(skip).
    type: str
    choices: [auto, run, skip]
    default: auto
  script_dir:
    description:
      - Directory of relative hotplug script names (libxl's C(XEN_SCRIPT_DIR)).
    type: path
    default: /etc/xen/scripts
  libxl_run_dir:
    description:
      - libxl's run directory (C(XEN_RUN_DIR)), where each qemu-xen device model listens on its QMP
        socket C(qmp-libxl-<domid>). Change it only for test or demo device models.
    type: path
    default: /var/run/xen
  xen_version:
    description:
      - The Xen toolstack version of the host, when its detection is to be overridden. Where Xen
        4.17 and 4.20 write disks differently (an empty cdrom of a PV or PVH guest, the first
        transaction of a cdrom media change), the module writes what the host's own C(xl) writes.
      - Unset means detected on the host, in this order - the running hypervisor
        (C(/sys/hypervisor/version)), the one toolstack installed as C(/usr/lib/xen-<X.Y>/bin/xl)
        (Debian's layout), the one C(libxenlight.so.<X.Y>) installed. RV(xen) says which and where from.
      - A value that contradicts the running hypervisor fails the run before anything is read. When
        the version is unknown or not among these, a change that depends on it is refused (with
        this option named) and the others are made, with a warning.
    type: str
    choices: ["4.17", "4.20"]
  missing_domains:
    description:
      - What to do with a declared guest that is not on the host (not running).
      - V(fail) fails the run before anything is written.
      - V(skip) leaves it out and names it in RV(missing_domains); the other guests are converged.
        This suits a fleet declaration that lists every guest of a host, running or not.
    type: str
    choices: [fail, skip]
    default: fail
  read_back:
    description:
      - After the run, read every declared guest's disks back from xenstore, from one snapshot, and
        return them in RV(guests) as M(xen.disks.xen_disk_info) reports them (in check mode, as they
        are). This saves a separate M(xen.disks.xen_disk_info) run, for example for a drift report.
    type: bool
    default: false
  xenstore_socket:
    description:
      - Path of the xenstored unix socket. Unset means the E(XENSTORED_PATH) environment variable,
        then C(/run/xenstored/socket), C(/var/run/xenstored/socket), then the xenbus device.
    type: path
  libxl_dir:
    description:
      - libxl's state directory (its C(XEN_LIB_DIR)), holding each guest's domain configuration
        C(userdata-d.<domid>.<uuid>.libxl-json) and libxl's lock files. Only tests and
        simulated hosts change it.
    type: path
    default: /var/lib/xen
notes:
  - "Kept in step with libxl 4.17, as C(xl block-attach), C(xl block-detach), C(xl cd-insert) and
    C(xl cd-eject) do: the xenstore entries, and the C(disks) array of libxl's domain
    configuration file (what C(xl list -l), C(xl save), C(xl migrate) and xl's reboot use). An
    attach or re-create stores the disk's entry (as xl's parser builds it from the same
    specification) before committing the xenstore transaction, under libxl's
    C(domain-userdata-lock); a media change holds C(libxl-device-changes-lock) throughout and the
    userdata lock around its steps, as C(libxl_cdrom_insert); the file is replaced as libxl does
    (new file, rename; trailing NUL). An attached declared disk that has no entry gets one (libxl
    would drop it at the guest's next xl reboot, save or migration)."
  - "Not changed, as libxl 4.17 does not change it either: a detach (also O(state=absent), O(exclusive))
    leaves the disk's entry in the file; libxl ignores entries without a xenstore device."
  - "Not kept in step: the guest's xl.cfg file (see the P(xen.disks.xl_disks#role) role). A guest without libxl's
    file (not created by xl/libxl) gets a warning and xenstore only; no file is invented."
  - Detaching never touches the backing storage.
  - Concurrent runs (or C(xl)) on one guest are safe. Each transaction of a guest first checks,
    inside itself as libxl does, that the guest's disk records (and their backends' C(online)
    nodes) are still those its plan was made from. If another writer changed them before this
    run wrote anything for the guest, the guest is planned again on a fresh read (reported in
    RV(xenstore_replans)); a declaration that no longer fits then fails as it would in a new run
    (for example the same vdev now attached with another target). If they change after this run's
    first write, the run stops for the guest and fails, naming the change. Each guest is applied
    in its own transactions, so with several guests each ends as one run's declaration.
  - Concurrent runs attaching one image to two guests are safe too. A run that puts a dom0 target
    into a backend (attach, re-create, media change) first takes a lock on that target (a file
    C(xen-disks-target-<hash>.lock) in O(libxl_dir), removed when released, as libxl removes its
    own), then checks the read-write sharing rule again on a fresh read of the host, and holds the
    lock until its guests are applied. So at most one of two runs sharing an image with a writer
    attaches it; the other fails before writing anything. C(xl) itself does not check sharing (the
    block hotplug script refuses a busy device; QEMU's qdisk does not).
seealso:
  - module: xen.disks.xen_disk_info
  - name: xl-disk-configuration(5)
    description: The xl disk specification syntax.
    link: https://xenbits.xen.org/docs/4.17-testing/man/xl-disk-configuration.5.html
"""

EXAMPLES = r"""
- name: Attach a data disk to guest web1 (xl syntax)
  xen.disks.xen_disk:
    domain: web1
    disks:
      - /dev/vg0/web1-data,raw,xvdb,rw

- name: The same disk, structured
  xen.disks.xen_disk:
    domain: web1
    disks:
      - target: /dev/vg0/web1-data
        vdev: xvdb
        access: rw
        discard: true

- name: Exactly these disks, never detaching the root disk
  xen.disks.xen_disk:
    domain: web1
    exclusive: true
    keep:
      - xvda
    disks:
      - /dev/vg0/web1-data,,xvdb
      - /srv/iso/debian.iso,raw,hdc,cdrom

- name: Insert an installer ISO in the cdrom of HVM guest win1 (QEMU is told over QMP)
  xen.disks.xen_disk:
    domain: win1
    disks:
      - /srv/iso/installer.iso,raw,hdc,cdrom

- name: Eject it again
  xen.disks.xen_disk:
    domain: win1
    disks:
      - ",raw,hdc,cdrom"

- name: Detach a disk even if the guest does not answer
  xen.disks.xen_disk:
    domain: web1
    state: absent
    force: true
    disks:
      - xvdb

- name: Preview what a change would need (guest cooperation, force, restart)
  xen.disks.xen_disk:
    domain: web1
    disks:
      - /dev/vg0/web1-data,raw,xvdb,ro
  check_mode: true
  register: preview

- name: Several guests of a host in one read, one transaction per guest
  xen.disks.xen_disk:
    domains:
      - domain: web1
        disks:
          - /dev/vg0/web1-data,,xvdb
      - domain: db1
        disks:
          - target: /var/lib/xen/db1.qcow2
            format: qcow2
            vdev: xvdb
      - domain: "12"
        state: absent
        disks:
          - xvdc

- name: Create (or grow) a 20 GiB qcow2 image and attach it
  xen.disks.xen_disk:
    domain: web1
    disks:
      - target: /var/lib/xen/images/web1-data.qcow2
        format: qcow2
        vdev: xvdb
        size: 20G
        preallocation: metadata
        mode: "0600"

- name: A qcow2 overlay over a shared read-only base image
  xen.disks.xen_disk:
    domain: web2
    disks:
      - target: /var/lib/xen/images/web2-root.qcow2
        format: qcow2
        vdev: xvda
        backing_file: /var/lib/xen/images/debian-base.qcow2
        backing_format: qcow2

- name: An LVM volume is made by community.general.lvol, then attached
  block:
    - name: The logical volume
      community.general.lvol:
        vg: vg0
        lv: web1-logs
        size: 10g
    - name: Attached to web1
      xen.disks.xen_disk:
        domain: web1
        disks:
          - /dev/vg0/web1-logs,raw,xvdc,w

- name: Detach a disk and remove its image file
  xen.disks.xen_disk:
    domain: web1
    state: absent
    disks:
      - vdev: xvdb
        target: /var/lib/xen/images/web1-data.qcow2
        remove_storage: true

- name: Disk served by the storage driver domain stor1, on hosts where udev runs the scripts
  xen.disks.xen_disk:
    domain: web1
    backend: stor1
    hotplug_scripts: skip
    disks:
      - /dev/vg1/web1-archive,,xvdd
"""

RETURN = r"""
changed:
  description: Whether anything was (or, in check mode, would be) written.
  returned: always
  type: bool
images:
  description:
    - One entry per disk with storage options, then one per disk declared absent with C(remove_storage).
    - In check mode, what the run would do.
  returned: always
  type: list
  elements: dict
  contains:
    label:
      description: The disk's place in the declaration.
      type: str
      sample: disks[0]
    path:
      description: The image file.
      type: str
      sample: /var/lib/xen/images/web1-data.qcow2
    action:
      description: V(create), V(grow), V(shrink), V(remove) or V(unchanged).
      type: str
      sample: grow
    size_before:
      description: Virtual size in bytes before the run (null for a new image).
      type: int
      sample: 10737418240
    size_after:
      description: Virtual size in bytes after the run.
      type: int
      sample: 21474836480
    attributes:
      description: File attributes set (C(mode), C(uid), C(gid)).
      type: dict
    description:
      description: The step in words (as diff mode shows it).
      type: str
    backend:
      description:
        - For a grown image of an attached disk, what its backend was told (C(told), e.g.
          C(losetup -c /dev/loop3), or null with a C(note)), and C(sectors_before) / C(sectors_after)
          as the backend published them.
      type: dict
disks:
  description:
    - One entry per disk considered, for every guest, in guest then device-number order.
    - Undeclared disks appear only when O(exclusive) detaches them or when they are stale.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The guest's name.
      type: str
      sample: web1
    domid:
      description: The guest's domain id.
      type: int
      sample: 5
    vdev:
      description: The vdev as declared (or as stored by the toolstack for undeclared disks).
      type: str
      sample: xvdb
    devid:
      description: The device number (the directory name in xenstore).
      type: int
      sample: 51728
    action:
      description:
        - What was (or would be) done. V(repair) rewrites toolstack-owned frontend or backend nodes
          (or the backend directory's permissions) that drifted from the toolstack's own record;
          V(absent) is a disk declared absent that is not attached.
        - V(resume) continues an attach that did not finish (its backend never reached
          InitWait, see RV(disks[].attach_unfinished)); the run waits for the backend again and
          runs the hotplug script, as the attach would have; it counts as a change.
      type: str
      choices: [attach, detach, media_change, recreate, repair, resume, unchanged, absent]
      sample: attach
    kind:
      description: The frontend device kind.
      type: str
      choices: [vbd, virtio_disk]
    spec:
      description: The canonical xl specification of the disk (declared, with the backend type
        libxl chooses made explicit; or read back for detached disks).
      type: str
      sample: format=raw,vdev=xvdb,access=rw,backendtype=phy,target=/dev/vg0/web1-data
    backend_kind:
      description: The backend kind chosen as libxl chooses it.
      type: str
      choices: [vbd, qdisk, virtio_disk]
    backend_domid:
      description: The domain serving the disk.
      type: int
      sample: 0
    differing:
      description: The settings that differ from the attached disk (for V(recreate),
        V(media_change) and V(repair)).
      type: list
      elements: str
      sample: [access]
    needs:
      description: What the action needs from the guest or the operator (reported in check mode
        too). V(guest_cooperation) is a detach of a disk the guest is using (its frontend must
        close it); V(force) a detach that will not wait for it; V(restart) a virtio disk change,
        which Xen can only make when the guest is created; V(recreate) a change that needs
        O(recreate=true).
      type: str
      choices: [nothing, guest_cooperation, force, restart, recreate]
      sample: guest_cooperation
    stale:
      description: Stale entries of this device cleaned before it is attached, with the reasons.
      type: list
      elements: str
    notes:
      description: Informational remarks (e.g. a frontend C(protocol) the guest rewrote).
      type: list
      elements: str
    error:
      description: Why this disk's change is refused (the module then fails), or null.
      type: str
    frontend_state:
      description: The frontend XenbusState after the run (0 when the device is gone).
      type: int
      sample: 4
    backend_state:
      description: The backend XenbusState after the run (0 when the device is gone).
      type: int
      sample: 4
    hotplug:
      description: What happened to the hotplug script for this disk (V(udev) means the
        backend already reported C(hotplug-status), so it was not run again; V(failed) makes the
        module fail).
      type: str
      choices: [ran, skipped, udev, none, failed]
    libxl_config:
      description: The disk in libxl's domain configuration file. V(written) means this run
        stores (or, in check mode, would store) its entry; V(recorded) an entry for it is there
        (after a detach it stays, as with xl); V(missing) there is none; V(no_file) the guest has
        no such file.
      type: str
      choices: [written, recorded, missing, no_file]
    qmp:
      description:
        - The QMP commands of a media change sent to (or, in check mode, planned for) the guest's
          QEMU, in order, C(name=value) arguments; C(/dev/fdset/<fdset-id>) in check mode stands
          for the fd set QEMU numbers at the C(add-fd). Empty when QEMU is not involved. After a
          failure, the commands QEMU accepted.
      type: list
      elements: str
      sample: [query-version, eject id=ide-5632]
    qmp_socket:
      description: The QMP socket of those commands, or null.
      type: str
      sample: /var/run/xen/qmp-libxl-7
    attach_unfinished:
      description: Whether the run found this disk's attach unfinished (the toolstack record
        and the backend exist, the backend is still Initialising and never reached InitWait,
        e.g. no backend driver answered a previous attach). A declared disk is then resumed
        (V(resume)) and a warning says so; with O(wait=false) it is not resumed (the warning
        says so, the action is V(unchanged)).
      type: bool
    frontend_observed:
      description:
        - What the run saw in the guest's own frontend directory that differs from what the
          toolstack wrote (a node removed or rewritten, the directory's permissions changed).
        - The guest may rewrite every node there, permissions included, so these are reported
          only; nothing is decided from them (a disk whose backend is live is attached, and
          counts for the read-write sharing rule, whatever its frontend says).
      type: list
      elements: str
      sample: ["the frontend node /local/domain/7/device/vbd/51728/backend is missing"]
stale:
  description: Stale device entries (a closed backend, a toolstack record without a backend, a
    half-written device), cleaned before an attach (V(cleaned)) or only reported. Only dom0's
    nodes make an entry stale, never the guest's frontend; a closed backend whose directory
    remains is torn down with its hotplug C(remove) before it is cleaned.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: The guest's name.
      type: str
    domid:
      description: The guest's domain id.
      type: int
    entry:
      description: The vdev (or toolstack path) of the entry.
      type: str
    reasons:
      description: Why the entry is stale.
      type: list
      elements: str
    cleaned:
      description: Whether the run removed it (or would, in check mode).
      type: bool
missing_domains:
  description: The declared guests that are not on the host, as declared (with
    O(missing_domains=skip)).
  returned: always
  type: list
  elements: str
  sample: [spare1]
guests:
  description:
    - With O(read_back), every declared guest on the host and its disks after the run, in the
      format of RV(xen.disks.xen_disk_info#module:guests).
  returned: when O(read_back) is true
  type: list
  elements: dict
  contains:
    domain:
      description: The guest's name.
      type: str
    domid:
      description: The guest's domain id.
      type: int
    specs:
      description: The canonical xl spec of each readable disk.
      type: list
      elements: str
    disks:
      description: Each disk, as RV(xen.disks.xen_disk_info#module:guests[].disks) describes it.
      type: list
      elements: dict
xenstore_requests:
  description: The number of xenstore requests the run sent (reads, writes, transactions,
    watches), for capacity planning.
  returned: always
  type: int
xen:
  description:
    - The host's Xen toolstack version, as detected or as given by O(xen_version).
  returned: always
  type: dict
  contains:
    version:
      description: C(X.Y), or V(null) when nothing on the host says.
      type: str
      sample: "4.20"
    source:
      description: Where the version came from - V(option), V(hypervisor) (C(/sys/hypervisor/version)),
        V(toolstack) (C(/usr/lib/xen-<X.Y>/bin/xl)), V(libxenlight) (the installed library), or V(none).
      type: str
      sample: toolstack
    supported:
      description: Whether the collection is tested with this version (4.17 and 4.20).
      type: bool
      sample: true
xenstore_retries:
  description: Transactions re-planned because another xenstore client changed what they read
    (EAGAIN).
  returned: always
  type: int
xenstore_replans:
  description:
    - Guests planned again because another writer (another run, C(xl)) attached, changed or
      detached one of their disks between this run's read and its first transaction for the guest.
  returned: always
  type: int
failed_domains:
  description: On failure, the declared guests the failures stopped (a guest fails alone, the others
    are applied); null when a failure was the whole run's (xenstored lost, invalid input).
  returned: failure
  type: list
  elements: str
  sample: [web1]
errors:
  description: On failure, every error, one per item.
  returned: failure
  type: list
  elements: str
warnings:
  description: Through Ansible's warnings, anything a Xen administrator should know (e.g. a
    read-write target also attached read-only to another guest).
  returned: when there are some
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.xen.disks.plugins.module_utils._core import argspec as _argspec
from ansible_collections.xen.disks.plugins.module_utils._io.xenstore import HAS_PYXS, PYXS_IMPORT_ERROR
from ansible_collections.xen.disks.plugins.module_utils._runs.failures import exit_module
from ansible_collections.xen.disks.plugins.module_utils._runs.live import run_xen_disk


def main():
    module = AnsibleModule(
        argument_spec=_argspec.xen_disk_argument_spec(),
        mutually_exclusive=_argspec.XEN_DISK_MUTUALLY_EXCLUSIVE,
        required_one_of=_argspec.XEN_DISK_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    if not HAS_PYXS:
        module.fail_json(msg=missing_required_lib("pyxs"), exception=PYXS_IMPORT_ERROR)
    exit_module(module, lambda: run_xen_disk(module.params, check_mode=module.check_mode, want_diff=module._diff))


if __name__ == "__main__":
    main()
