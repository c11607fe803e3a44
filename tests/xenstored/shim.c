/*
 * Copyright: xen.disks contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 *
 * LD_PRELOAD library that lets Debian's unmodified C xenstored (Xen 4.17) run on a machine
 * without a hypervisor, for tests and demos of xen.disks (see tests/xenstored/README.md).
 *
 * It replaces the 17 libxen* functions xenstored imports, so the real libraries are never
 * reached with a fake handle, and wraps open() for the two /proc/xen files dom0_init() reads.
 *
 * Which domids "exist" (xc_domain_getinfo) is read from the file named by
 * $XEN_DISKS_DOMIDS_FILE: domids and ranges separated by commas, blanks or newlines
 * ("0-40,55"). The file is re-read whenever it changes, so guests can be added while the
 * daemon runs. Without the variable only dom0 exists. xenstored refuses a node whose owner
 * or permissions name a domain that does not exist, as on a real host.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

#define MAX_DOMID 0x7FF0 /* DOMID_FIRST_RESERVED: domids at or above are not domains */

/* Any non-NULL pointer serves as a handle: xenstored only passes them back to us. */
static char fake_handle;
static int never_ready_fd = -1;
static evtchn_port_t next_port = 2;

/* ---- the set of existing domids ------------------------------------------------------- */

static unsigned char domid_exists[MAX_DOMID];
static struct stat domids_seen; /* identity of the file last parsed */
static int domids_loaded;

static void parse_domids(const char *text)
{
    const char *p = text;

    memset(domid_exists, 0, sizeof(domid_exists));
    while (*p) {
        char *end;
        unsigned long first, last;

        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        first = strtoul(p, &end, 10);
        last = first;
        p = end;
        if (*p == '-' && p[1] >= '0' && p[1] <= '9') {
            last = strtoul(p + 1, &end, 10);
            p = end;
        }
        for (unsigned long d = first; d <= last && d < MAX_DOMID; d++)
            domid_exists[d] = 1;
    }
}

static void load_domids(void)
{
    const char *path = getenv("XEN_DISKS_DOMIDS_FILE");
    struct stat st;
    char buf[65536];
    ssize_t len;
    int fd;

    if (!path || stat(path, &st) != 0) {
        if (!domids_loaded) {
            parse_domids("0");
            domids_loaded = 1;
        }
        return;
    }
    /* The launcher replaces the file by rename: a new inode, size or mtime means re-read. */
    if (domids_loaded && st.st_ino == domids_seen.st_ino && st.st_size == domids_seen.st_size &&
        st.st_mtim.tv_sec == domids_seen.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == domids_seen.st_mtim.tv_nsec)
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len < 0)
        return;
    buf[len] = '\0';
    parse_domids(buf);
    domids_seen = st;
    domids_loaded = 1;
}

/* ---- libxenctrl ------------------------------------------------------------------------- */

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    return (xc_interface *)&fake_handle;
}

int xc_interface_close(xc_interface *xch)
{
    return 0;
}

/* Enumerates existing domains from first_domid on; none of them is dying or shut down. */
int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                      xc_dominfo_t *info)
{
    unsigned int found = 0;

    load_domids();
    for (uint32_t d = first_domid; d < MAX_DOMID && found < max_doms; d++) {
        if (!domid_exists[d])
            continue;
        memset(&info[found], 0, sizeof(info[found]));
        info[found].domid = d;
        info[found].running = 1;
        found++;
    }
    return (int)found;
}

/* ---- libxenevtchn: no events ever arrive ------------------------------------------------ */

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger, unsigned int flags)
{
    return (xenevtchn_handle *)&fake_handle;
}

xenevtchn_handle *xenevtchn_fdopen(struct xentoollog_logger *logger, int fd, unsigned open_flags)
{
    return (xenevtchn_handle *)&fake_handle;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
    return 0;
}

/* A descriptor that never becomes readable, so the event handler never runs. */
int xenevtchn_fd(xenevtchn_handle *xce)
{
    if (never_ready_fd < 0)
        never_ready_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return never_ready_fd;
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce, uint32_t domid,
                                                     evtchn_port_t remote_port)
{
    return next_port++;
}

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle *xce, unsigned int virq)
{
    return 1;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
    errno = EAGAIN;
    return -1;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
    return 0;
}

/* ---- libxengnttab: a guest's ring is a blank page --------------------------------------- */

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger, unsigned open_flags)
{
    return (xengnttab_handle *)&fake_handle;
}

int xengnttab_close(xengnttab_handle *xgt)
{
    return 0;
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
    return 0;
}

void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref, int prot)
{
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return page == MAP_FAILED ? NULL : page;
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
    return munmap(start_address, (size_t)count * 4096);
}

/* ---- libc open(): the two files dom0_init() reads ---------------------------------------- */

static int memfd_with(const char *name, const void *data, size_t len, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);

    if (fd < 0)
        return -1;
    if ((len && write(fd, data, len) != (ssize_t)len) || ftruncate(fd, (off_t)size) != 0 ||
        lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int open(const char *path, int flags, ...)
{
    static int (*real_open)(const char *, int, ...);
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        return memfd_with("xsd_port", "1", 1, 1);
    if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        return memfd_with("xsd_kva", NULL, 0, 4096);
    if (!real_open)
        real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    return real_open(path, flags, mode);
}
