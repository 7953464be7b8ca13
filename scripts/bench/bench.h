/*
 * bench.h - what the in-process benchmark programs share
 *
 * Wall-clock time in microseconds, and reading a whole message file into
 * a struct buf. Header-only: each bench program is one source file.
 */
#ifndef RC_BENCH_H
#define RC_BENCH_H

#include <stdio.h>
#include <time.h>

#include "util/buf.h"

static inline double
bench_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* bench_read_file - append the file to b; -1 (with a message on stderr)
 * when it cannot be read. */
static inline int
bench_read_file(const char *path, struct buf *b)
{
    char chunk[65536];
    struct err e;
    size_t n;
    FILE *fp;

    if ((fp = fopen(path, "rb")) == NULL) {
        perror(path);
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(b, chunk, n, &e) < 0) {
            fprintf(stderr, "%s: %s\n", path, e.text);
            fclose(fp);
            return -1;
        }
    if (ferror(fp)) {
        perror(path);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    return 0;
}

#endif
