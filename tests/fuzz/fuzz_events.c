/*
 * fuzz_events - the Message-ID reader and the event line, on any bytes
 *
 * events_msgid() reads the header of messages clients send; the input,
 * split at arbitrary points into three pieces, is such a header. The
 * target traps when the id is not a NUL-terminated string shorter than
 * its buffer or holds a line feed, or when the pieces give another id
 * than the whole. The input (up to its first NUL) is then inserted as a
 * line of the events spool into an in-memory store (events_db_put: 0,
 * 1 for a malformed line, never a crash), and its lines become the
 * fields of an event whose line, written by events_line(), must always
 * be read back as a well-formed event.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "queue/events.h"
#include "queue/events_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct events_db *fuzz_db;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[128], whole[128], *text, *f[6], *p;
    struct iovec v[3];
    struct events_rec r;
    struct buf line;
    struct err e;
    size_t a, b, i, n;
    int rc;

    if (fuzz_db == NULL &&
        (fuzz_db = events_db_open("sqlite::memory:", EVENTS_DB_CREATE, &e)) ==
            NULL)
        __builtin_trap();
    a = size > 0 ? data[0] % (size + 1) : 0;
    b = size > 1 ? a + data[1] % (size - a + 1) : a;
    v[0] = (struct iovec){(void *)data, a};
    v[1] = (struct iovec){(void *)(data + a), b - a};
    v[2] = (struct iovec){(void *)(data + b), size - b};
    events_msgid(v, 3, id, sizeof(id));
    if (memchr(id, '\0', sizeof(id)) == NULL || strchr(id, '\n') != NULL)
        __builtin_trap();
    v[0] = (struct iovec){(void *)data, size};
    events_msgid(v, 1, whole, sizeof(whole));
    if (strcmp(id, whole) != 0)
        __builtin_trap();

    if ((text = malloc(size + 1)) == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    n = strlen(text);
    {
        char *copy = strdup(text);

        if (copy != NULL) {
            rc = events_db_put(fuzz_db, copy, n, 0, 0, &e);
            if (rc != 0 && rc != 1)
                __builtin_trap();
            free(copy);
        }
    }
    /* the input's lines as the fields of an event */
    for (p = text, i = 0; i < 6; i++) {
        f[i] = p;
        if (p != NULL && (p = strchr(p, '\n')) != NULL)
            *p++ = '\0';
    }
    memset(&r, 0, sizeof(r));
    r.type = (enum events_type)(size % EVENTS_NTYPES);
    r.qid = f[0];
    r.msgid = f[1];
    r.sender = f[2];
    r.rcpt = f[3];
    r.stream = f[4];
    r.text = f[5];
    r.code = (int)(size % 600);
    r.hard = (int)(size & 1);
    buf_init(&line, 0);
    if (events_line(&line, "fuzz", 1, &r, &e) == 0) {
        /* one uid for every run: INSERT OR IGNORE keeps the first, and
         * what is checked is that the line reads back */
        rc = events_db_put(fuzz_db, line.data, line.len, 0, 0, &e);
        if (rc != 0)
            __builtin_trap();
    }
    buf_fini(&line);
    free(text);
    return 0;
}
