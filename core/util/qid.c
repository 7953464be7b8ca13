/*
 * qid - queue ids: made by the SMTP front end and the queue, checked
 * wherever one names a file
 *
 * See qid.h. The time comes from gettimeofday() (wall clock seconds, as
 * the ids have always had); the counter is atomic, so sessions and queue
 * workers need no lock to take a number.
 */
#include "config.h"

#include <stdio.h>
#include <sys/time.h>

#include "util/qid.h"

void
qid_new(atomic_uint *seq, char *out, size_t n)
{
    struct timeval tv;
    unsigned s = atomic_fetch_add(seq, 1);

    gettimeofday(&tv, NULL);
    snprintf(out, n, "%05lX%07X", (unsigned long)(tv.tv_sec & 0xfffff),
             s & 0xfffffff);
}

int
qid_is_valid(const char *id, size_t size)
{
    size_t i;

    for (i = 0; id[i] != '\0'; i++)
        if (!((id[i] >= '0' && id[i] <= '9') ||
              (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= 'a' && id[i] <= 'z')))
            return 0;
    return i > 0 && i < size;
}
