/*
 * fuzz_archive_remote - what the archive's remote stores read from
 * outside: an S3 ListObjectsV2 answer and a spool file
 *
 * The first octet picks the reader, the rest is its input. 'L': the
 * input is a ListObjectsV2 answer for the key prefix "p/w/" (names
 * after "p/"); every name handed on must start with "w/", have more
 * after it, and come in ascending order; a continuation token is set
 * only for an answer that said it was truncated, never empty. Other
 * octets: the input is a spool file named by the hex of "w/1"; what
 * parses must be a record of that name whose octets lie inside the
 * input. A broken promise traps.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/archive/archive_remote.h"
#include "filters/archive/archive_spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_walk {
    char last[1024];
    int have;
};

static int
fuzz_name(void *arg, const char *name)
{
    struct fuzz_walk *w = arg;

    if (strncmp(name, "w/", 2) != 0 || name[2] == '\0')
        __builtin_trap();
    if (w->have && strcmp(name, w->last) <= 0)
        __builtin_trap();
    if (strlen(name) < sizeof(w->last)) {
        memcpy(w->last, name, strlen(name) + 1);
        w->have = 1;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e;

    if (size < 1)
        return 0;
    if (data[0] == 'L') {
        struct fuzz_walk w;
        struct buf last, token;
        size_t keys = 0;
        int rc;

        memset(&w, 0, sizeof(w));
        buf_init(&last, 0);
        buf_init(&token, 0);
        rc = arc_s3_list_parse((const char *)data + 1, size - 1, "p/w/", 2,
                               NULL, &last, &token, &keys, fuzz_name, &w, &e);
        if (rc == 0 && token.len > 0 && strlen(buf_str(&token)) == 0)
            __builtin_trap();
        buf_fini(&last);
        buf_fini(&token);
    } else {
        char *copy = malloc(size);
        const char *name = NULL;
        const unsigned char *p = NULL;
        size_t n = 0;

        if (copy == NULL)
            return 0;
        memcpy(copy, data + 1, size - 1);
        if (arc_spool_record_parse("772f31", copy, size - 1, &name, &p, &n,
                                   &e) == 0) {
            if (strcmp(name, "w/1") != 0 || p < (unsigned char *)copy ||
                p + n > (unsigned char *)copy + size - 1)
                __builtin_trap();
        }
        free(copy);
    }
    return 0;
}
