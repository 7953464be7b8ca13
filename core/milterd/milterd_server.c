/*
 * milterd_server - what the milter sessions share: the progress ticker
 * and the count of ends of message under way
 *
 * A progress thread sends smfi_progress for every session whose chain
 * has run longer than the interval; it holds the server lock while it
 * does, and a session leaves the busy list under that lock before it
 * replays its edits, so the two never write to the MTA at once. The same
 * lock counts the ends of message under way, which milterd_drain() waits
 * for; once it has been called, a new end of message is refused. The
 * server owns its thread; milterd_server_free() stops and joins it.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "net/netio.h"
#include "milterd/milterd_int.h"

/* --------------------------------------------------------- draining */

/* milterd_inflight_enter - count an end of message under way; -1 when
 * the daemon is stopping, and the chain must not start. */
int
milterd_inflight_enter(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;
    int rc = 0;

    if (srv == NULL)
        return 0;
    pthread_mutex_lock(&srv->lock);
    if (srv->draining)
        rc = -1;
    else
        srv->inflight++;
    pthread_mutex_unlock(&srv->lock);
    return rc;
}

void
milterd_inflight_leave(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->inflight--;
    pthread_mutex_unlock(&srv->lock);
}

/* --------------------------------------------------------- progress */

void
milterd_busy_enter(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    s->t_last = netio_now_ms();
    s->busy_next = srv->busy;
    srv->busy = s;
    pthread_mutex_unlock(&srv->lock);
}

void
milterd_busy_leave(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;
    struct milterd_session **pp;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    for (pp = &srv->busy; *pp != NULL; pp = &(*pp)->busy_next)
        if (*pp == s) {
            *pp = s->busy_next;
            break;
        }
    s->busy_next = NULL;
    pthread_mutex_unlock(&srv->lock);
}

static void *
milterd_progress_thread(void *arg)
{
    struct milterd_server *srv = arg;
    long tick = srv->interval_ms / 4 > 10 ? srv->interval_ms / 4 : 10;

    pthread_mutex_lock(&srv->lock);
    while (!srv->stop) {
        struct milterd_session *s;
        struct timespec ts;
        long long now;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += tick / 1000;
        ts.tv_nsec += (tick % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&srv->cond, &srv->lock, &ts);
        now = netio_now_ms();
        for (s = srv->busy; s != NULL; s = s->busy_next)
            if (now - s->t_last >= srv->interval_ms) {
                (void)s->ops->progress(s->ctx);
                s->t_last = now;
            }
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

struct milterd_server *
milterd_server_new(long interval_ms, struct err *e)
{
    struct milterd_server *srv;

    if ((srv = calloc(1, sizeof(*srv))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    srv->interval_ms = interval_ms > 0 ? interval_ms : MILTERD_PROGRESS_MS;
    if (pthread_create(&srv->tid, NULL, milterd_progress_thread, srv) != 0) {
        err_set(e, ERR_TEMP, "cannot start the milter progress thread");
        pthread_cond_destroy(&srv->cond);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return NULL;
    }
    srv->started = 1;
    return srv;
}

void
milterd_server_set_memlimit(struct milterd_server *srv, struct memlimit *ml)
{
    srv->mem = ml;
}

void
milterd_server_free(struct milterd_server *srv)
{
    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->stop = 1;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    if (srv->started)
        pthread_join(srv->tid, NULL);
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}
