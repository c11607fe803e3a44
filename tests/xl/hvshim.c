/*
 * Copyright: xen.disks contributors
 * GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
 *
 * LD_PRELOAD stand-in for the hypervisor, so Debian's unmodified `xl` (libxl 4.17, or Debian
 * 13's 4.20) runs its disk commands against a real xenstored on a machine without Xen (tests of
 * xen.disks). Built per version with XL_SHIM_XEN_MINOR (17 or 20) and that version's headers;
 * a block under `#if XL_SHIM_XEN_MINOR >= N` defines calls that exist from 4.N on.
 *
 * libxl reaches the hypervisor only through libxenctrl, libxenevtchn and libxenhypfs. This
 * file answers the calls the disk commands make, from xenstore:
 *   - a domain exists when /local/domain/D exists;
 *   - it is an HVM container (HVM or PVH) when /libxl/D/type is "hvm" or "pvh";
 *   - its handle is the uuid of its /vm/<uuid> node (libxl names its files after it);
 *   - its native protocol is x86_32-abi when D is listed in $XEN_DISKS_PV32_DOMIDS.
 * Every other xc_* / xenevtchn_* / xenhypfs_* function libxenlight and libxlutil import is
 * replaced by a stub generated at build time (tests/xl/harness.py) that prints its name and
 * fails with ENOSYS, so a fake handle never reaches the real libraries. The harness fails a
 * test whose xl printed such a line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenctrl.h>
#include <xenstore.h>
#include <xen/io/protocols.h>
#include <xen/version.h>

#ifndef XL_SHIM_XEN_MINOR
#error "build with -DXL_SHIM_XEN_MINOR=<minor> (tests/xl/harness.py does)"
#endif

static char fake_handle;
static struct xs_handle *xs;

long xl_shim_unimplemented(const char *name)
{
    fprintf(stderr, "xl-shim: unimplemented %s\n", name);
    errno = ENOSYS;
    return -1;
}

static struct xs_handle *store(void)
{
    if (!xs)
        xs = xs_open(0);
    return xs;
}

static char *read_node(const char *fmt, unsigned int domid)
{
    char path[128];
    unsigned int len;

    if (!store())
        return NULL;
    snprintf(path, sizeof(path), fmt, domid);
    return xs_read(xs, XBT_NULL, path, &len);
}

static int parse_uuid(const char *text, uint8_t out[16])
{
    int i = 0;

    for (const char *p = text; *p && i < 32; p++) {
        int v;

        if (*p == '-')
            continue;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            v = *p - 'A' + 10;
        else
            return -1;
        if (i % 2 == 0)
            out[i / 2] = v << 4;
        else
            out[i / 2] |= v;
        i++;
    }
    return i == 32 ? 0 : -1;
}

static int domain_exists(unsigned int domid)
{
    char path[64];
    unsigned int len;
    char *value;

    if (!store())
        return 0;
    snprintf(path, sizeof(path), "/local/domain/%u", domid);
    value = xs_read(xs, XBT_NULL, path, &len);
    if (!value)
        return 0;
    free(value);
    return 1;
}

static void fill_info(unsigned int domid, xc_domaininfo_t *info)
{
    char *type = read_node("/libxl/%u/type", domid);
    char *vm = read_node("/local/domain/%u/vm", domid);

    memset(info, 0, sizeof(*info));
    info->domain = domid;
    info->flags = XEN_DOMINF_running;
    if (type && (!strcmp(type, "hvm") || !strcmp(type, "pvh")))
        info->flags |= XEN_DOMINF_hvm_guest | XEN_DOMINF_hap;
    info->tot_pages = info->max_pages = 65536;
    info->nr_online_vcpus = 1;
    info->max_vcpu_id = 0;
    if (vm && !strncmp(vm, "/vm/", 4))
        parse_uuid(vm + 4, info->handle);
    free(type);
    free(vm);
}

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    return (xc_interface *)&fake_handle;
}

int xc_interface_close(xc_interface *xch)
{
    return 0;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
                          xc_domaininfo_t *info)
{
    unsigned int count = 0, num = 0;
    char **names;
    unsigned int *domids;

    if (!store()) {
        errno = EIO;
        return -1;
    }
    names = xs_directory(xs, XBT_NULL, "/local/domain", &num);
    if (!names)
        return 0;
    domids = calloc(num ? num : 1, sizeof(*domids));
    for (unsigned int i = 0; i < num; i++) {
        char *end;
        unsigned long d = strtoul(names[i], &end, 10);

        if (*end == '\0' && d >= first_domain && d < DOMID_FIRST_RESERVED)
            domids[count++] = d;
    }
    free(names);
    /* the hypervisor answers in domid order */
    for (unsigned int i = 1; i < count; i++)
        for (unsigned int j = i; j > 0 && domids[j - 1] > domids[j]; j--) {
            unsigned int t = domids[j];

            domids[j] = domids[j - 1];
            domids[j - 1] = t;
        }
    if (count > max_domains)
        count = max_domains;
    for (unsigned int i = 0; i < count; i++)
        fill_info(domids[i], &info[i]);
    free(domids);
    return count;
}

const char *xc_domain_get_native_protocol(xc_interface *xch, uint32_t domid)
{
    const char *list = getenv("XEN_DISKS_PV32_DOMIDS");

    if (!domain_exists(domid))
        return NULL;
    for (const char *p = list; p && *p;) {
        char *end;
        unsigned long d = strtoul(p, &end, 10);

        if (end == p) {
            p++;
            continue;
        }
        if (d == domid)
            return XEN_IO_PROTO_ABI_X86_32;
        p = end;
    }
    return XEN_IO_PROTO_ABI_X86_64;
}

/* ---- what `xl -N create` (libxl's domain configuration, for a new guest) asks ---------------- */

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    switch (cmd) {
    case XENVER_version:
        return (4 << 16) | XL_SHIM_XEN_MINOR;
    case XENVER_extraversion:
        snprintf(arg, sizeof(xen_extraversion_t), XL_SHIM_XEN_MINOR >= 20 ? ".4" : ".7");
        return 0;
    case XENVER_capabilities:
        snprintf(arg, sizeof(xen_capabilities_info_t),
                 "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_pagesize:
        return 4096;
    case XENVER_compile_info:
        memset(arg, 0, sizeof(xen_compile_info_t));
        return 0;
    case XENVER_changeset:
        memset(arg, 0, sizeof(xen_changeset_info_t));
        return 0;
    case XENVER_commandline:
        memset(arg, 0, sizeof(xen_commandline_t));
        return 0;
    case XENVER_platform_parameters:
        memset(arg, 0, sizeof(xen_platform_parameters_t));
        return 0;
    case XENVER_build_id:
        errno = ENODATA; /* as a hypervisor built without a build id */
        return -1;
    case XENVER_get_features:
        ((xen_feature_info_t *)arg)->submap = 0;
        return 0;
    }
    fprintf(stderr, "xl-shim: unimplemented xc_version %d\n", cmd);
    errno = ENOSYS;
    return -1;
}

#if XL_SHIM_XEN_MINOR >= 18
/* 4.18 replaced xc_domain_getinfo by this one-domain call (libxl's domain info and type). */
int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid, xc_domaininfo_t *info)
{
    if (!domain_exists(domid)) {
        errno = ESRCH;
        return -1;
    }
    fill_info(domid, info);
    return 0;
}

/* 4.18's string forms of xc_version: malloc'ed, the caller frees them. */
char *xc_xenver_extraversion(xc_interface *xch)
{
    return strdup(".4");
}

char *xc_xenver_capabilities(xc_interface *xch)
{
    return strdup("xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
}

char *xc_xenver_changeset(xc_interface *xch)
{
    return strdup("");
}

char *xc_xenver_commandline(xc_interface *xch)
{
    return strdup("");
}

char *xc_xenver_buildid(xc_interface *xch)
{
    return strdup(""); /* as a hypervisor built without a build id */
}
#endif

long xc_sharing_freed_pages(xc_interface *xch)
{
    return 0;
}

long xc_sharing_used_frames(xc_interface *xch)
{
    return 0;
}

int xc_get_max_cpus(xc_interface *xch)
{
    return 2;
}

int xc_get_max_nodes(xc_interface *xch)
{
    return 1;
}

int xc_physinfo(xc_interface *xch, xc_physinfo_t *info)
{
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = 2;
    info->nr_cpus = 2;
    info->max_cpu_id = 1;
    info->nr_nodes = 1;
    info->cpu_khz = 2000000;
    info->capabilities = XEN_SYSCTL_PHYSCAP_hvm | XEN_SYSCTL_PHYSCAP_pv | XEN_SYSCTL_PHYSCAP_hap |
                         XEN_SYSCTL_PHYSCAP_shadow | XEN_SYSCTL_PHYSCAP_gnttab_v1;
    info->total_pages = info->free_pages = 1 << 20;
    info->max_mfn = 1 << 20;
    return 0;
}

/* A hypervisor without the FLASK security module answers ENOSYS: libxl expects it. */
int xc_flask_sid_to_context(xc_interface *xch, int sid, char *buf, uint32_t size)
{
    errno = ENOSYS;
    return -1;
}

/* One cpupool (Pool-0, all cpus, credit2), as a freshly booted host has: `xl list -l`. */
xc_cpupoolinfo_t *xc_cpupool_getinfo(xc_interface *xch, uint32_t poolid)
{
    xc_cpupoolinfo_t *info;

    if (poolid != 0) {
        errno = ENOENT;
        return NULL;
    }
    info = calloc(1, sizeof(*info) + 8);
    info->cpupool_id = 0;
    info->sched_id = XEN_SCHEDULER_CREDIT2;
    info->n_dom = 1;
    info->cpumap = (xc_cpumap_t)(info + 1);
    info->cpumap[0] = 0x3;
    return info;
}

void xc_cpupool_infofree(xc_interface *xch, xc_cpupoolinfo_t *info)
{
    free(info);
}

int xc_sched_credit2_domain_get(xc_interface *xch, uint32_t domid, struct xen_domctl_sched_credit2 *sdom)
{
    sdom->weight = 256;
    sdom->cap = 0;
    return 0;
}
