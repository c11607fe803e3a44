/* Xen's own disk-spec parser as an oracle for tests (xen.disks): reads cases on stdin, runs each
 * through libxlutil's xlu_disk_parse and prints the resulting libxl_device_disk as one JSON line.
 * No hypervisor needed: libxl_ctx_alloc is never called.
 *
 * Input, repeated: "<number of strings>\n", then per string "<byte length>\n<bytes>\n".
 * Output, per case: {"rc":..,"report":"..",<fields>} on one line, or {"jammed":true,"report":".."}
 * when the flex scanner gave up and exited the process ("flex scanner jammed"; each case runs in a
 * child, whose exit handler prints what had been reported until then). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <libxl.h>
#include <libxlutil.h>

static void put_string(const char *name, const char *value)
{
    printf(",\"%s\":", name);
    if (!value) { fputs("null", stdout); return; }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void put_defbool(const char *name, libxl_defbool value)
{
    printf(",\"%s\":%s", name, libxl_defbool_is_default(value) ? "null"
                              : libxl_defbool_val(value) ? "true" : "false");
}

static FILE *report_stream;
static char **report_text;  /* open_memstream's buffer pointer, current after fflush */

static void report_jam(void)
{
    fflush(report_stream);
    fputs("{\"jammed\":true", stdout);
    put_string("report", *report_text);
    fputs("}\n", stdout);
    fflush(stdout);
}

static char *read_bytes(size_t length)
{
    char *buffer = malloc(length + 1);
    if (!buffer || fread(buffer, 1, length, stdin) != length) exit(3);
    buffer[length] = 0;
    if (getchar() != '\n') exit(4);
    return buffer;
}

int main(void)
{
    int count;
    while (scanf("%d", &count) == 1) {
        char **specs = calloc(count ? count : 1, sizeof(*specs));
        getchar();
        for (int i = 0; i < count; i++) {
            size_t length;
            if (scanf("%zu", &length) != 1) return 2;
            getchar();
            specs[i] = read_bytes(length);
        }
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) return 5;
        if (child > 0) {
            int status;
            if (waitpid(child, &status, 0) < 0) return 6;
            if (!WIFEXITED(status) || (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2))
                return 7;  /* only flex's exit(2) is expected */
            fflush(stdout);
            for (int i = 0; i < count; i++) free(specs[i]);
            free(specs);
            continue;
        }
        char *report = NULL;
        size_t report_size = 0;
        FILE *stream = open_memstream(&report, &report_size);
        report_stream = stream;
        report_text = &report;
        atexit(report_jam);
        XLU_Config *config = xlu_cfg_init(stream, "spec");
        libxl_device_disk disk;
        libxl_device_disk_init(&disk);
        int rc = xlu_disk_parse(config, count, (const char *const *)specs, &disk);
        fclose(stream);
        printf("{\"rc\":%d", rc);
        put_string("report", report);
        put_string("target", disk.pdev_path);
        put_string("vdev", disk.vdev);
        put_string("format", libxl_disk_format_to_string(disk.format));
        put_string("backendtype", libxl_disk_backend_to_string(disk.backend));
        put_string("backend", disk.backend_domname);
        put_string("script", disk.script);
        put_string("specification", libxl_disk_specification_to_string(disk.specification));
        put_string("transport", libxl_disk_transport_to_string(disk.transport));
        printf(",\"readwrite\":%d,\"is_cdrom\":%d,\"removable\":%d,\"direct_io_safe\":%d",
               disk.readwrite, disk.is_cdrom, disk.removable, disk.direct_io_safe ? 1 : 0);
        put_defbool("discard", disk.discard_enable);
        put_defbool("colo", disk.colo_enable);
        put_defbool("trusted", disk.trusted);
        put_string("colo_host", disk.colo_host);
        printf(",\"colo_port\":%d", disk.colo_port);
        put_string("colo_export", disk.colo_export);
        put_string("active_disk", disk.active_disk);
        put_string("hidden_disk", disk.hidden_disk);
        printf("}\n");
        fflush(stdout);
        _exit(0);
    }
    return 0;
}
