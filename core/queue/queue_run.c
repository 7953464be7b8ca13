/*
 * queue_run - the queue daemon's threads: workers, trigger, reload
 *
 * Workers take the earliest due entry of the index (queue.c) and run one
 * attempt (queue_deliver.c); the entry goes back into the heap with the
 * time of the next attempt the attempt chose, or leaves the index when
 * the file is gone.
 *
 * The trigger thread reads the FIFO (flush, rescan) and rescans queue/
 * every queue_run_delay; at start it removes what tmp/ holds, then
 * indexes queue/ in the background while the workers and the SMTP
 * sessions already run.
 *
 * Reload: what relaychain.conf may change (backoffs, lifetimes,
 * queue_run_delay, delivery_concurrency, queue_minfree, the routes with
 * their smtpc pools) is one struct queue_settings with a reference
 * count (queue_route.c). q->set holds one reference; each attempt takes
 * another under q->lock when it starts and uses only that set, so a reload
 * never changes an attempt half way. The reloader thread builds the new set
 * (transport_map read, pools made) outside any lock; the swap is a
 * pointer exchange under q->lock, which also caps the waiting entries'
 * due times at the new maximal_backoff_time and wakes the workers; the
 * old set, with its pools and their idle connections, is freed by its
 * last user. Workers beyond a lowered delivery_concurrency leave when
 * they are next idle; more are started for a raised one. A route's
 * suspension lives in its set: a new next hop is tried at once.
 *
 * The threads are detached; queue_stop() waits for them a bounded time
 * and says how many are left, and only then may queue_free() run.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/qid.h"
#include "util/log.h"
#include "queue/queue_int.h"

#define QUEUE_STACK (256 * 1024)

/* ------------------------------------------------------------ threads */

static void
queue_thread_end(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->threads--;
    pthread_cond_broadcast(&q->gone);
    pthread_mutex_unlock(&q->lock);
}

static void *
queue_worker(void *arg)
{
    struct queue *q = arg;
    struct queue_entry *en;
    long long next;
    int verdict;

    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        long long now;

        if (q->workers > q->set->concurrency)
            break; /* a reload lowered delivery_concurrency */
        if (q->nheap == 0) {
            pthread_cond_wait(&q->wake, &q->lock);
            continue;
        }
        now = queue_now_ms();
        if (q->heap[0]->due_ms > now) {
            struct timespec ts;

            ts.tv_sec = (time_t)(q->heap[0]->due_ms / 1000);
            ts.tv_nsec = (long)(q->heap[0]->due_ms % 1000) * 1000000L;
            pthread_cond_timedwait(&q->wake, &q->lock, &ts);
            continue;
        }
        en = queue_heap_pop(q);
        pthread_mutex_unlock(&q->lock);
        verdict = queue_attempt(q, en->id, &next);
        pthread_mutex_lock(&q->lock);
        if (verdict == QUEUE_DROP) {
            queue_table_remove(q, en);
            free(en);
            continue;
        }
        en->due_ms = next;
        if (queue_heap_push(q, en) < 0) {
            /* still on disk: the next rescan finds it */
            queue_table_remove(q, en);
            free(en);
        }
    }
    q->workers--;
    pthread_mutex_unlock(&q->lock);
    queue_thread_end(q);
    return NULL;
}

/* queue_revive - every route usable again, and every destination a
 * throttle paused, before a flush looks for new
 * files: a file the scan finds is due at once, and a worker that took it
 * while its route was still suspended would defer it for a whole
 * backoff, the flush notwithstanding. */
static void
queue_revive(struct queue *q)
{
    size_t i;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < q->set->nroutes; i++)
        q->set->routes[i].dead_until_ms = 0;
    pthread_mutex_unlock(&q->lock);
    queue_dest_resume(q);
}

/* queue_trigger_line - one command from the FIFO. */
static void
queue_trigger_line(struct queue *q, const char *line)
{
    if (strcmp(line, "F") == 0) {
        log_info(NULL, "flush: every deferred message is tried now");
        queue_revive(q);
        queue_scan(q, 0);
        queue_flush(q, NULL);
    } else if (strncmp(line, "F ", 2) == 0 &&
               qid_is_valid(line + 2, QUEUE_ID_MAX)) {
        queue_revive(q);
        queue_scan(q, 0);
        queue_flush(q, line + 2);
    } else if (strcmp(line, "S") == 0) {
        queue_scan(q, 0);
    }
}

static void *
queue_trigger(void *arg)
{
    struct queue *q = arg;
    char in[4096];
    size_t have = 0;
    long long next_scan;
    long long run_delay;
    int stop;

    log_info(NULL, "queue %s: %zu message(s) found at start-up", q->dir,
             queue_scan(q, 1));
    pthread_mutex_lock(&q->lock);
    run_delay = q->set->run_delay_ms;
    pthread_mutex_unlock(&q->lock);
    next_scan = queue_now_ms() + run_delay;
    for (;;) {
        struct pollfd p = {q->fifo_fd, POLLIN, 0};
        ssize_t n;

        pthread_mutex_lock(&q->lock);
        stop = q->stopping;
        if (q->set->run_delay_ms != run_delay) {
            /* a reload: the new queue_run_delay counts from now */
            run_delay = q->set->run_delay_ms;
            next_scan = queue_now_ms() + run_delay;
        }
        pthread_mutex_unlock(&q->lock);
        if (stop)
            break;
        if (poll(&p, 1, 500) > 0 &&
            (n = read(q->fifo_fd, in + have, sizeof(in) - 1 - have)) > 0) {
            char *line = in, *nl;

            have += (size_t)n;
            in[have] = '\0';
            while ((nl = memchr(line, '\n', have - (size_t)(line - in))) !=
                   NULL) {
                *nl = '\0';
                queue_trigger_line(q, line);
                line = nl + 1;
            }
            have -= (size_t)(line - in);
            memmove(in, line, have);
            if (have == sizeof(in) - 1)
                have = 0; /* no line end in 4 KiB: junk */
        }
        if (queue_now_ms() >= next_scan) {
            queue_scan(q, 0);
            next_scan = queue_now_ms() + run_delay;
        }
    }
    queue_thread_end(q);
    return NULL;
}

/* --------------------------------------------------------- life cycle */

static int
queue_spawn(struct queue *q, void *(*fn)(void *), struct err *e)
{
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, QUEUE_STACK);
    pthread_mutex_lock(&q->lock);
    q->threads++;
    pthread_mutex_unlock(&q->lock);
    if ((rc = pthread_create(&tid, &attr, fn, q)) != 0) {
        pthread_attr_destroy(&attr);
        queue_thread_end(q);
        errno = rc;
        return err_sys(e, ERR_IO, "cannot start a queue thread");
    }
    pthread_attr_destroy(&attr);
    return 0;
}

static int
queue_spawn_worker(struct queue *q, struct err *e)
{
    pthread_mutex_lock(&q->lock);
    q->workers++;
    pthread_mutex_unlock(&q->lock);
    if (queue_spawn(q, queue_worker, e) < 0) {
        pthread_mutex_lock(&q->lock);
        q->workers--;
        pthread_mutex_unlock(&q->lock);
        return -1;
    }
    return 0;
}

int
queue_start(struct queue *q, struct err *e)
{
    unsigned i;

    queue_clean(q);
    if (queue_spawn(q, queue_trigger, e) < 0)
        return -1;
    for (i = 0; i < q->set->concurrency; i++)
        if (queue_spawn_worker(q, e) < 0)
            return -1;
    log_info(NULL, "queue %s: %u delivery worker(s), next hop %s%s", q->dir,
             q->set->concurrency, q->set->routes[0].nexthop,
             q->set->ntransports > 0 ? ", transport_map routes" : "");
    return 0;
}

unsigned
queue_stop(struct queue *q, long long wait_ms)
{
    long long deadline = queue_now_ms() + wait_ms;
    unsigned left;

    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->wake);
    while (q->threads > 0 && queue_now_ms() < deadline) {
        struct timespec ts;
        long long until = queue_now_ms() + 100;

        ts.tv_sec = (time_t)(until / 1000);
        ts.tv_nsec = (long)(until % 1000) * 1000000L;
        pthread_cond_timedwait(&q->gone, &q->lock, &ts);
    }
    left = q->threads;
    pthread_mutex_unlock(&q->lock);
    /* ---- events: the process may exit without queue_free() */
    events_drain(q->events, 1000);
    return left;
}

void
queue_settings_apply(struct queue *q, struct queue_settings *set)
{
    struct queue_settings *old;
    unsigned more = 0, i;
    long long latest = queue_now_ms() + set->max_backoff_ms;
    size_t k;
    struct err e;

    pthread_mutex_lock(&q->lock);
    old = q->set;
    q->set = set;
    /* no waiting message waits longer than the new maximal_backoff_time;
     * lowered times keep the heap order only after a heapify */
    for (k = 0; k < q->nheap; k++)
        if (q->heap[k]->due_ms > latest)
            q->heap[k]->due_ms = latest;
    for (k = q->nheap / 2; k-- > 0;)
        queue_heap_down(q, k);
    if (!q->stopping && set->concurrency > q->workers)
        more = set->concurrency - q->workers;
    pthread_cond_broadcast(&q->wake); /* fewer workers: some leave */
    pthread_mutex_unlock(&q->lock);
    queue_settings_release(old);
    err_clear(&e);
    for (i = 0; i < more; i++)
        if (queue_spawn_worker(q, &e) < 0) {
            log_error(NULL, "reload: %s", e.text);
            break;
        }
    log_info(NULL, "queue %s: reloaded: %u delivery worker(s), next hop %s%s",
             q->dir, set->concurrency, set->routes[0].nexthop,
             set->ntransports > 0 ? ", transport_map routes" : "");
}
