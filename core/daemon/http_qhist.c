/*
 * http_qhist - the queue size over the last two days, for the dashboard
 *
 * With delivery = queue and the dashboard on, one thread counts the
 * messages in the queue directory (http_queue_scan) when it starts and
 * then every HTTP_QHIST_EVERY seconds, into a ring of HTTP_QHIST_N
 * samples (48 hours at one a minute; older ones are overwritten).
 * /api/queue-history (authenticated as /api/report) serves the ring as
 * JSON, oldest first, with a count taken at the request as its last
 * point, marked "now": [{"t": SECONDS, "messages": N}, ...,
 * {"t": SECONDS, "messages": N, "now": true}]. A directory that cannot
 * be read gives no sample (and no "now" point); nothing is logged for
 * it here, /healthz already says so.
 *
 * The object owns its thread, the ring and a copy of the directory's
 * name; http_qhist_free stops the thread (at once: it waits on a
 * condition, not in sleep) and frees all. The ring has its own mutex.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon_int.h"

#define HTTP_QHIST_EVERY 60
#define HTTP_QHIST_N (48 * 60)

struct http_qhist_sample {
    long long t;
    long messages;
};

struct http_qhist {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    char dir[PATH_MAX];
    size_t head, n; /* the next slot to write; samples held */
    struct http_qhist_sample s[HTTP_QHIST_N];
};

/* http_qhist_take - one sample into the ring (none when dir cannot be
 * read). Called without the lock. */
static void
http_qhist_take(struct http_qhist *q)
{
    long long oldest;
    long n = http_queue_scan(q->dir, &oldest);

    if (n < 0)
        return;
    pthread_mutex_lock(&q->lock);
    q->s[q->head].t = (long long)time(NULL);
    q->s[q->head].messages = n;
    q->head = (q->head + 1) % HTTP_QHIST_N;
    if (q->n < HTTP_QHIST_N)
        q->n++;
    pthread_mutex_unlock(&q->lock);
}

static void *
http_qhist_run(void *arg)
{
    struct http_qhist *q = arg;
    struct timespec at;

    clock_gettime(CLOCK_MONOTONIC, &at);
    for (;;) {
        http_qhist_take(q);
        at.tv_sec += HTTP_QHIST_EVERY;
        pthread_mutex_lock(&q->lock);
        while (!q->stop &&
               pthread_cond_timedwait(&q->wake, &q->lock, &at) != ETIMEDOUT)
            ;
        if (q->stop) {
            pthread_mutex_unlock(&q->lock);
            return NULL;
        }
        pthread_mutex_unlock(&q->lock);
    }
}

struct http_qhist *
http_qhist_new(const char *queue_dir, struct err *e)
{
    struct http_qhist *q;
    pthread_condattr_t ca;
    int rc;

    if ((q = calloc(1, sizeof(*q))) == NULL)
        return err_sys(e, ERR_TEMP, "queue history"), NULL;
    if ((size_t)snprintf(q->dir, sizeof(q->dir), "%s/queue", queue_dir) >=
        sizeof(q->dir)) {
        free(q);
        err_set(e, ERR_CONFIG, "queue history: queue_directory too long");
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->wake, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = pthread_create(&q->thread, NULL, http_qhist_run, q)) != 0) {
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->lock);
        free(q);
        err_set(e, ERR_TEMP, "queue history: thread: %s", strerror(rc));
        return NULL;
    }
    return q;
}

void
http_qhist_free(struct http_qhist *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stop = 1;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

int
http_qhist_json(struct http_qhist *q, struct buf *out, struct err *e)
{
    struct http_qhist_sample *copy;
    long long oldest;
    size_t n, i, first;
    long now;
    int rc = 0;

    /* Copied under the lock, written without it: the buffer may grow. */
    if ((copy = malloc(sizeof(q->s))) == NULL)
        return err_sys(e, ERR_TEMP, "queue history");
    pthread_mutex_lock(&q->lock);
    n = q->n;
    first = (q->head + HTTP_QHIST_N - n) % HTTP_QHIST_N;
    for (i = 0; i < n; i++)
        copy[i] = q->s[(first + i) % HTTP_QHIST_N];
    pthread_mutex_unlock(&q->lock);
    now = http_queue_scan(q->dir, &oldest);
    if (buf_putc(out, '[', e) < 0)
        rc = -1;
    for (i = 0; rc == 0 && i < n; i++)
        rc = buf_printf(out, e, "%s{\"t\": %lld, \"messages\": %ld}",
                        i > 0 ? ",\n " : "", copy[i].t, copy[i].messages);
    if (rc == 0 && now >= 0)
        rc = buf_printf(out, e,
                        "%s{\"t\": %lld, \"messages\": %ld, \"now\": true}",
                        n > 0 ? ",\n " : "", (long long)time(NULL), now);
    if (rc == 0)
        rc = buf_puts(out, "]\n", e);
    free(copy);
    return rc < 0 ? -1 : 0;
}
