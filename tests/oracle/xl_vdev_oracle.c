/* libxl's own vdev -> devid code as an oracle for tests (xen.disks).
 *
 * libxl__device_disk_dev_number is not exported. The exported libxl_vdev_to_device_disk calls it
 * first and then reads /libxl/<domid>/device/vbd/<devid>/backend from xenstore. This program
 * defines xs_read itself (the executable's definition wins over libxenstore's), answers "absent"
 * for the directory probes and, at the first path that names a devid, records the number and
 * jumps back. The libxl_ctx is a zeroed block: libxl only keeps its address in the gc here.
 *
 * Input: one vdev per line. Output: one line per vdev, the devid or "invalid". */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxl.h>
#include <libxl_utils.h>
#include <xenstore.h>

static jmp_buf back;
static long long seen_devid;

void *xs_read(struct xs_handle *handle, xs_transaction_t transaction, const char *path,
              unsigned int *length)
{
    const char *prefix = "/libxl/0/device/vbd/";
    (void)handle; (void)transaction; (void)length;
    if (!strncmp(path, prefix, strlen(prefix))) {
        seen_devid = strtoll(path + strlen(prefix), NULL, 10);
        longjmp(back, 1);
    }
    errno = ENOENT;
    return NULL;
}

int main(void)
{
    static char line[4096];
    void *fake_ctx = calloc(1, 1 << 16);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        libxl_device_disk disk;
        if (setjmp(back)) {
            printf("%lld\n", seen_devid);
        } else {
            int rc = libxl_vdev_to_device_disk((libxl_ctx *)fake_ctx, 0, line, &disk);
            if (rc == ERROR_INVAL) printf("invalid\n");
            else printf("unexpected %d\n", rc);
        }
        fflush(stdout);
    }
    return 0;
}
