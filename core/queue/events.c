/*
 * events - the events writer: a bounded buffer, one thread, a spool
 *
 * See events.h. The buffer is a ring of lines (malloc'd strings, owned
 * by the ring until the writer takes them) under ev->lock; the spool
 * file (append only) under ev->spool_lock. The writer swaps a batch out
 * of the ring, inserts it in one transaction, and on failure appends
 * it to the spool and fdatasyncs once. Replay renames the spool to
 * SPOOL.replay (so emitters keep appending to a fresh file), inserts
 * its lines in transactions of batch_max, and removes it when all went
 * in; a replay file left by a crash is replayed first at start.
 * After a failure the store is tried again after EVENTS_RETRY_MS,
 * doubled at each failure in a row up to EVENTS_RETRY_MAX_MS (the
 * connection is reopened: a store whose file was replaced or whose
 * permissions changed, or a PostgreSQL server that restarted, is seen
 * as it is now). The suppression lookups have EVENTS_READERS
 * connections of their own, so concurrent sessions do not queue behind
 * one round trip; one on which a lookup failed is reopened by the
 * writer thread, never by the SMTP thread asking: until then lookups
 * on it answer "failed" at once and the mail passes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "msg/msg.h"
#include "util/buf.h"
#include "util/cidr.h" /* ---- verp: fbl_clients */
#include "util/fdio.h"
#include "util/log.h"
#include "util/regmap.h"
#include "queue/events.h"
#include "queue/events_db.h"
#include "queue/events_int.h" /* ---- verp */

#define EVENTS_RETRY_MS 1000
#define EVENTS_RETRY_MAX_MS 16000
#define EVENTS_LINE_MAX 8192

static long long
events_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static long long
events_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int
events_bounce_is_hard(int code, const char *dsn)
{
    if (code / 100 != 5)
        return 0;
    /* 5.0.0 is what the log shows for a reply without an enhanced code */
    if (dsn != NULL && dsn[0] == '5' && dsn[1] == '.' &&
        strcmp(dsn, "5.0.0") != 0) {
        if (strncmp(dsn, "5.1.", 4) == 0 || strcmp(dsn, "5.2.1") == 0)
            return 1;
        return 0;
    }
    return code == 550 || code == 551 || code == 553;
}

/* ------------------------------------------------------------ helpers */

int
events_stream(const struct events *ev, const char *given,
              const char *auth_user, const char *sender, char *out, size_t n)
{
    struct buf b;
    struct err e;
    int rc = 0;

    out[0] = '\0';
    if (ev == NULL)
        return 0;
    if (ev->stream_header && given != NULL && given[0] != '\0') {
        snprintf(out, n, "%s", given);
        return 1;
    }
    /* without stream_map, mail with no believed header is on no stream
     * and untracked: checked against the whole suppression list, as
     * all mail is without streams */
    if (ev->streams == NULL)
        return 0;
    buf_init(&b, 1024);
    err_clear(&e);
    if (auth_user != NULL && auth_user[0] != '\0')
        rc = regmap_lookup(ev->streams, auth_user, &b, NULL, &e);
    if (rc == 0 && sender != NULL)
        rc = regmap_lookup(ev->streams, sender, &b, NULL, &e);
    if (rc == 1)
        snprintf(out, n, "%s", buf_str(&b));
    buf_fini(&b);
    return 1;
}

void
events_msgid(const struct iovec *iov, size_t niov, char *out, size_t n)
{
    char head[16384];
    size_t len = 0, i, k;

    for (i = 0; i < niov && len < sizeof(head); i++) {
        k = iov[i].iov_len < sizeof(head) - len ? iov[i].iov_len
                                                : sizeof(head) - len;
        memcpy(head + len, iov[i].iov_base, k);
        len += k;
    }
    (void)msg_raw_field(head, len, "Message-ID", out, n);
}

/* ------------------------------------------------------------- spool */

/* events_spool_append - lines[0..n) to the spool, with one fdatasync
 * when sync; the lines stay the caller's. 0, or -1 (logged). Called
 * with spool_lock held. */
static int
events_spool_append(struct events *ev, char *const *lines, size_t n, int sync)
{
    size_t i;

    if (ev->spool_fd < 0) {
        ev->spool_fd =
            open(ev->spool, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (ev->spool_fd < 0) {
            log_error(NULL, "events: cannot open the spool %s: %s", ev->spool,
                      strerror(errno));
            return -1;
        }
    }
    for (i = 0; i < n; i++) {
        if (fdio_write_all(ev->spool_fd, lines[i], strlen(lines[i])) < 0) {
            log_error(NULL, "events: cannot write the spool %s: %s", ev->spool,
                      strerror(errno));
            return -1;
        }
        ev->spool_lines++;
    }
    if (sync && fdatasync(ev->spool_fd) < 0) {
        log_error(NULL, "events: fdatasync %s: %s", ev->spool,
                  strerror(errno));
        return -1;
    }
    ev->spool_dirty = !sync;
    return 0;
}

/* ------------------------------------------------------------ emitter */

void
events_emit(struct events *ev, const struct events_rec *r)
{
    char uid[64], *line;
    struct buf b;
    struct err e;
    int spooled = 0;

    if (ev == NULL)
        return;
    snprintf(uid, sizeof(uid), "%llx.%lx.%x",
             (unsigned long long)events_now_us(), (unsigned long)getpid(),
             atomic_fetch_add(&ev->seq, 1));
    buf_init(&b, EVENTS_LINE_MAX);
    err_clear(&e);
    if (events_line(&b, uid, r->time_us ? r->time_us : events_now_us(), r,
                    &e) < 0 ||
        (line = buf_steal(&b, NULL)) == NULL) {
        buf_fini(&b);
        pthread_mutex_lock(&ev->lock);
        ev->lost++;
        pthread_mutex_unlock(&ev->lock);
        log_error(r->qid, "events: %s event lost: %s",
                  events_type_name(r->type), e.text);
        return;
    }
    pthread_mutex_lock(&ev->lock);
    if (ev->n < ev->cap && !ev->spill) {
        ev->ring[(ev->head + ev->n) % ev->cap] = line;
        ev->n++;
        if (ev->n == 1 || ev->n >= ev->batch_max)
            pthread_cond_signal(&ev->wake);
        pthread_mutex_unlock(&ev->lock);
        return;
    }
    pthread_mutex_unlock(&ev->lock);
    /* the buffer is full: the spool, synced by the writer's next turn
     * (at once when the daemon stops) */
    pthread_mutex_lock(&ev->spool_lock);
    spooled = events_spool_append(ev, &line, 1, ev->spill) == 0;
    pthread_mutex_unlock(&ev->spool_lock);
    free(line);
    pthread_mutex_lock(&ev->lock);
    if (!spooled) {
        ev->lost++;
        log_error(r->qid,
                  "events: buffer full and spool failing: %s event "
                  "lost",
                  events_type_name(r->type));
    }
    pthread_cond_signal(&ev->wake);
    pthread_mutex_unlock(&ev->lock);
}

/* ------------------------------------------------------------- writer */

static void
events_fail(struct events *ev, const struct err *e)
{
    pthread_mutex_lock(&ev->lock);
    if (ev->store_ok || strcmp(ev->last_error, e->text) != 0)
        log_warning(NULL, "events: store %s failing, events go to %s: %s",
                    ev->store, ev->spool, e->text);
    ev->store_ok = 0;
    snprintf(ev->last_error, sizeof(ev->last_error), "%s", e->text);
    pthread_mutex_unlock(&ev->lock);
    events_db_close(ev->db);
    ev->db = NULL;
    ev->retry_step = ev->retry_step < EVENTS_RETRY_MS ? EVENTS_RETRY_MS
                     : ev->retry_step * 2 > EVENTS_RETRY_MAX_MS
                         ? EVENTS_RETRY_MAX_MS
                         : ev->retry_step * 2;
    ev->retry_ms = events_mono_ms() + ev->retry_step;
}

/* events_pw - the password file, or NULL */
static const char *
events_pw(const struct events *ev)
{
    return ev->password_file[0] ? ev->password_file : NULL;
}

/* events_rdb_heal - in the writer: reopen the lookups' connections
 * after a lookup failed on one, at most once per EVENTS_RETRY_MS */
static void
events_rdb_heal(struct events *ev)
{
    struct events_db *fresh, *old;
    struct err e;
    int i, bad, healed = 0;

    if (events_mono_ms() < ev->rdb_retry_ms)
        return;
    for (i = 0; i < ev->nreaders; i++) {
        struct events_reader *r = &ev->readers[i];

        pthread_mutex_lock(&r->lock);
        bad = r->bad;
        pthread_mutex_unlock(&r->lock);
        if (!bad)
            continue;
        ev->rdb_retry_ms = events_mono_ms() + EVENTS_RETRY_MS;
        err_clear(&e);
        if ((fresh = events_db_open_auth(ev->store, events_pw(ev),
                                         EVENTS_DB_READONLY, &e)) == NULL)
            return;
        pthread_mutex_lock(&r->lock);
        old = r->db;
        r->db = fresh;
        r->bad = 0;
        pthread_mutex_unlock(&r->lock);
        events_db_close(old);
        healed = 1;
    }
    if (healed)
        log_info(NULL, "events: suppression lookups in %s working again",
                 ev->store);
}

/* events_db_ready - the writer's connection, reopened after a failure
 * once its retry time came; NULL while the store is failing. */
static struct events_db *
events_db_ready(struct events *ev)
{
    struct err e;

    if (ev->db != NULL)
        return ev->db;
    if (events_mono_ms() < ev->retry_ms)
        return NULL;
    err_clear(&e);
    if ((ev->db = events_db_open_auth(ev->store, events_pw(ev),
                                      EVENTS_DB_CREATE, &e)) == NULL) {
        events_fail(ev, &e);
        return NULL;
    }
    return ev->db;
}

/* events_insert - lines[0..n) in one transaction; 0, or -1 (the store
 * failed: marked so). */
static int
events_insert(struct events *ev, char **lines, size_t n)
{
    struct events_db *db = events_db_ready(ev);
    struct err e;
    size_t i;

    if (db == NULL)
        return -1;
    err_clear(&e);
    if (events_db_begin(db, &e) < 0)
        goto fail;
    for (i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        char *copy = strdup(lines[i]); /* the line may go to the spool */
        int rc;

        if (copy == NULL) {
            err_nomem(&e);
            goto fail;
        }
        rc = events_db_put(db, copy, len, ev->suppress_stream,
                           ev->suppress_expiry, &e);
        free(copy);
        if (rc < 0)
            goto fail;
        if (rc == 1)
            log_warning(NULL, "events: malformed event line skipped");
    }
    if (events_db_commit(db, &e) < 0)
        goto fail;
    pthread_mutex_lock(&ev->lock);
    if (!ev->store_ok)
        log_info(NULL, "events: store %s working again", ev->store);
    ev->store_ok = 1;
    ev->retry_step = 0;
    ev->last_error[0] = '\0';
    pthread_mutex_unlock(&ev->lock);
    return 0;
fail:
    events_db_rollback(db);
    events_fail(ev, &e);
    return -1;
}

/* events_replay_file - insert the lines of the replay file, batch by
 * batch; remove it when all are in. 0, or -1 (it stays). */
static int
events_replay_file(struct events *ev)
{
    char **batch = NULL, *line = NULL;
    size_t n = 0, cap = 0, i, total = 0;
    ssize_t got;
    FILE *fp;
    int rc = 0;

    if ((fp = fopen(ev->replay, "re")) == NULL)
        return errno == ENOENT ? 0 : -1;
    if ((batch = calloc(ev->batch_max, sizeof(*batch))) == NULL) {
        fclose(fp);
        return -1;
    }
    while (rc == 0 && (got = getline(&line, &cap, fp)) >= 0) {
        if (got == 0 || line[got - 1] != '\n')
            continue; /* a torn last line of a crash */
        if ((batch[n] = strdup(line)) == NULL) {
            rc = -1;
            break;
        }
        if (++n == ev->batch_max) {
            rc = events_insert(ev, batch, n);
            total += rc == 0 ? n : 0;
            for (i = 0; i < n; i++)
                free(batch[i]);
            n = 0;
        }
    }
    if (rc == 0 && n > 0) {
        rc = events_insert(ev, batch, n);
        total += rc == 0 ? n : 0;
    }
    for (i = 0; i < n; i++)
        free(batch[i]);
    free(batch);
    free(line);
    fclose(fp);
    pthread_mutex_lock(&ev->lock);
    ev->replayed += total;
    pthread_mutex_unlock(&ev->lock);
    if (rc == 0) {
        unlink(ev->replay);
        pthread_mutex_lock(&ev->spool_lock);
        ev->replay_lines = 0;
        pthread_mutex_unlock(&ev->spool_lock);
        if (total > 0)
            log_info(NULL, "events: %zu spooled events replayed into %s",
                     total, ev->store);
    }
    return rc;
}

/* events_replay - when the store works: replay what the spool holds. */
static void
events_replay(struct events *ev)
{
    struct stat st;
    int have;

    if (events_db_ready(ev) == NULL)
        return;
    if (stat(ev->replay, &st) == 0 && events_replay_file(ev) < 0)
        return;
    pthread_mutex_lock(&ev->spool_lock);
    have =
        ev->spool_lines > 0 || (stat(ev->spool, &st) == 0 && st.st_size > 0);
    if (have) {
        if (ev->spool_fd >= 0) {
            if (ev->spool_dirty)
                (void)fdatasync(ev->spool_fd);
            close(ev->spool_fd);
            ev->spool_fd = -1;
        }
        if (rename(ev->spool, ev->replay) < 0)
            have = 0;
        else
            ev->replay_lines += ev->spool_lines;
        ev->spool_lines = 0;
        ev->spool_dirty = 0;
    }
    pthread_mutex_unlock(&ev->spool_lock);
    if (have)
        (void)events_replay_file(ev);
}

/* events_deadline - ts = now + ms on the clock of the condition */
static void
events_deadline(struct timespec *ts, long long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static void *
events_writer(void *arg)
{
    struct events *ev = arg;
    char **batch = calloc(ev->batch_max, sizeof(*batch));
    size_t n, i;

    if (batch == NULL) {
        log_error(NULL, "events: out of memory: the writer stops");
        return NULL;
    }
    for (;;) {
        struct timespec ts;
        int stop;

        pthread_mutex_lock(&ev->lock);
        ev->busy = 0;
        pthread_cond_broadcast(&ev->idle);
        /* a first event, or a turn (the spool's sync and replay) */
        events_deadline(&ts, ev->batch_ms);
        if (!ev->stopping && ev->n == 0)
            pthread_cond_timedwait(&ev->wake, &ev->lock, &ts);
        /* then a full batch, or batch_ms after the first event */
        events_deadline(&ts, ev->batch_ms);
        while (!ev->stopping && ev->n > 0 && ev->n < ev->batch_max &&
               pthread_cond_timedwait(&ev->wake, &ev->lock, &ts) == 0)
            ;
        ev->busy = 1;
        stop = ev->stopping;
        for (n = 0; n < ev->batch_max && ev->n > 0; n++) {
            batch[n] = ev->ring[ev->head];
            ev->head = (ev->head + 1) % ev->cap;
            ev->n--;
        }
        pthread_mutex_unlock(&ev->lock);

        pthread_mutex_lock(&ev->spool_lock);
        if (ev->spool_dirty && ev->spool_fd >= 0) {
            if (fdatasync(ev->spool_fd) < 0)
                log_error(NULL, "events: fdatasync %s: %s", ev->spool,
                          strerror(errno));
            ev->spool_dirty = 0;
        }
        pthread_mutex_unlock(&ev->spool_lock);
        if (n > 0 && events_insert(ev, batch, n) == 0) {
            pthread_mutex_lock(&ev->lock);
            ev->written += n;
            pthread_mutex_unlock(&ev->lock);
        } else if (n > 0) {
            int ok;

            pthread_mutex_lock(&ev->spool_lock);
            ok = events_spool_append(ev, batch, n, 1) == 0;
            pthread_mutex_unlock(&ev->spool_lock);
            if (!ok) {
                pthread_mutex_lock(&ev->lock);
                ev->lost += n;
                pthread_mutex_unlock(&ev->lock);
                log_error(NULL,
                          "events: %zu events lost: the store and the "
                          "spool both fail",
                          n);
            }
        }
        for (i = 0; i < n; i++)
            free(batch[i]);
        events_replay(ev);
        events_rdb_heal(ev);
        if (stop) {
            pthread_mutex_lock(&ev->lock);
            n = ev->n;
            pthread_mutex_unlock(&ev->lock);
            if (n == 0)
                break;
        }
    }
    free(batch);
    pthread_mutex_lock(&ev->lock);
    ev->busy = 0;
    pthread_cond_broadcast(&ev->idle);
    pthread_mutex_unlock(&ev->lock);
    return NULL;
}

/* -------------------------------------------------------------- setup */

static size_t
events_count_lines(const char *path)
{
    char buf[8192];
    size_t n = 0;
    ssize_t k, i;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    while ((k = read(fd, buf, sizeof(buf))) > 0)
        for (i = 0; i < k; i++)
            n += buf[i] == '\n';
    close(fd);
    return n;
}

static int
events_readers_open(struct events *ev, struct err *e)
{
    for (ev->nreaders = 0; ev->nreaders < EVENTS_READERS; ev->nreaders++)
        if ((ev->readers[ev->nreaders].db = events_db_open_auth(
                 ev->store, events_pw(ev), EVENTS_DB_READONLY, e)) == NULL)
            return -1;
    return 0;
}

struct events *
events_open(const struct events_settings *s, struct err *e)
{
    struct events *ev;
    const char *path = NULL;
    int i;

    if (events_db_is_pg(s->store)) {
        if (s->spool == NULL) {
            err_set(e, ERR_CONFIG,
                    "events_spool: needed with a PostgreSQL store");
            return NULL;
        }
    } else if ((path = events_db_path(s->store, e)) == NULL) {
        return NULL;
    }
    if ((ev = calloc(1, sizeof(*ev))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    ev->spool_fd = -1;
    pthread_mutex_init(&ev->lock, NULL);
    pthread_mutex_init(&ev->spool_lock, NULL);
    for (i = 0; i < EVENTS_READERS; i++)
        pthread_mutex_init(&ev->readers[i].lock, NULL);
    pthread_cond_init(&ev->wake, NULL);
    pthread_cond_init(&ev->idle, NULL);
    snprintf(ev->store, sizeof(ev->store), "%s", s->store);
    if (s->password_file != NULL)
        snprintf(ev->password_file, sizeof(ev->password_file), "%s",
                 s->password_file);
    if (s->spool != NULL)
        snprintf(ev->spool, sizeof(ev->spool), "%s", s->spool);
    else
        snprintf(ev->spool, sizeof(ev->spool), "%s.spool", path);
    snprintf(ev->replay, sizeof(ev->replay), "%s.replay", ev->spool);
    ev->suppress_stream = s->suppress_stream;
    ev->suppress_expiry = s->suppress_expiry > 0 ? s->suppress_expiry : 0;
    ev->drop = s->drop;
    ev->cap = s->buffer_max > 0 ? s->buffer_max : 1;
    ev->batch_max = s->batch_max > 0 ? s->batch_max : 500;
    ev->batch_ms = s->batch_ms > 0 ? s->batch_ms : 200;
    ev->store_ok = 1;
    if ((ev->ring = calloc(ev->cap, sizeof(*ev->ring))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    if (s->stream_map != NULL &&
        (ev->streams = regmap_load(s->stream_map, e)) == NULL)
        goto fail;
    ev->stream_header = s->stream_header;
    /* ---- verp */
    if (s->verp_domain != NULL) {
        snprintf(ev->verp_domain, sizeof(ev->verp_domain), "%s",
                 s->verp_domain);
        if (verp_key_load(s->verp_key_file ? s->verp_key_file : "",
                          &ev->verp_key, e) < 0) {
            err_prefix(e, "verp_key_file");
            goto fail;
        }
    }
    if (s->fbl_address != NULL)
        snprintf(ev->fbl_address, sizeof(ev->fbl_address), "%s",
                 s->fbl_address);
    if (s->fbl_match_header != NULL)
        snprintf(ev->fbl_header, sizeof(ev->fbl_header), "%s",
                 s->fbl_match_header);
    if ((ev->fbl_clients =
             cidr_list_new(s->fbl_clients, s->nfbl_clients, e)) == NULL) {
        err_prefix(e, "fbl_clients");
        goto fail;
    }
    /* ---- end verp */
    /* The store must work at start: a wrong path is a configuration
     * error, told now rather than spooled for ever. */
    if ((ev->db = events_db_open_auth(s->store, events_pw(ev),
                                      EVENTS_DB_CREATE, e)) == NULL ||
        events_readers_open(ev, e) < 0) {
        err_prefix(e, "events_store");
        goto fail;
    }
    ev->spool_lines = events_count_lines(ev->spool);
    ev->replay_lines = events_count_lines(ev->replay);
    if (pthread_create(&ev->thread, NULL, events_writer, ev) != 0) {
        err_set(e, ERR_TEMP, "events: cannot start the writer");
        goto fail;
    }
    ev->started = 1;
    return ev;
fail:
    events_close(ev);
    return NULL;
}

void
events_close(struct events *ev)
{
    size_t i;

    if (ev == NULL)
        return;
    if (ev->started) {
        pthread_mutex_lock(&ev->lock);
        ev->stopping = 1;
        pthread_cond_signal(&ev->wake);
        pthread_mutex_unlock(&ev->lock);
        pthread_join(ev->thread, NULL);
    }
    for (i = 0; i < ev->n; i++)
        free(ev->ring[(ev->head + i) % ev->cap]);
    free(ev->ring);
    if (ev->spool_fd >= 0) {
        if (ev->spool_dirty)
            (void)fdatasync(ev->spool_fd);
        close(ev->spool_fd);
    }
    events_db_close(ev->db);
    for (i = 0; i < (size_t)ev->nreaders; i++)
        events_db_close(ev->readers[i].db);
    regmap_free(ev->streams);
    verp_key_wipe(&ev->verp_key); /* ---- verp */
    cidr_list_free(ev->fbl_clients);
    pthread_mutex_destroy(&ev->lock);
    pthread_mutex_destroy(&ev->spool_lock);
    for (i = 0; i < EVENTS_READERS; i++)
        pthread_mutex_destroy(&ev->readers[i].lock);
    pthread_cond_destroy(&ev->wake);
    pthread_cond_destroy(&ev->idle);
    free(ev);
}

void
events_drain(struct events *ev, long long wait_ms)
{
    long long until = events_mono_ms() + wait_ms;
    char **lines;
    size_t n = 0, i;
    int ok;

    if (ev == NULL)
        return;
    pthread_mutex_lock(&ev->lock);
    ev->spill = 1;
    while (ev->busy && events_mono_ms() < until) {
        struct timespec ts;

        events_deadline(&ts, 50);
        pthread_cond_timedwait(&ev->idle, &ev->lock, &ts);
    }
    lines = calloc(ev->n + 1, sizeof(*lines));
    while (lines != NULL && ev->n > 0) {
        lines[n++] = ev->ring[ev->head];
        ev->head = (ev->head + 1) % ev->cap;
        ev->n--;
    }
    pthread_mutex_unlock(&ev->lock);
    if (n == 0) {
        free(lines);
        return;
    }
    pthread_mutex_lock(&ev->spool_lock);
    ok = events_spool_append(ev, lines, n, 1) == 0;
    pthread_mutex_unlock(&ev->spool_lock);
    if (ok)
        log_info(NULL, "events: %zu buffered events written to %s at stop", n,
                 ev->spool);
    else
        log_error(NULL, "events: %zu buffered events lost at stop", n);
    for (i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

int
events_flush(struct events *ev, long long wait_ms)
{
    long long until = events_mono_ms() + wait_ms;
    int done = 0;

    while (!done && events_mono_ms() < until) {
        struct timespec ts = {0, 20 * 1000000L};

        pthread_mutex_lock(&ev->lock);
        pthread_cond_signal(&ev->wake);
        pthread_mutex_unlock(&ev->lock);
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&ev->lock);
        pthread_mutex_lock(&ev->spool_lock);
        done = ev->n == 0 && !ev->busy && ev->spool_lines == 0 &&
               ev->replay_lines == 0;
        pthread_mutex_unlock(&ev->spool_lock);
        pthread_mutex_unlock(&ev->lock);
    }
    return done ? 0 : -1;
}

void
events_stats(struct events *ev, struct events_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&ev->lock);
    st->buffered = ev->n;
    st->written = ev->written;
    st->replayed = ev->replayed;
    st->lost = ev->lost;
    st->store_ok = ev->store_ok;
    snprintf(st->last_error, sizeof(st->last_error), "%s", ev->last_error);
    pthread_mutex_unlock(&ev->lock);
    pthread_mutex_lock(&ev->spool_lock);
    st->spooled = ev->spool_lines + ev->replay_lines;
    pthread_mutex_unlock(&ev->spool_lock);
}

int
events_drops(const struct events *ev)
{
    return ev != NULL && ev->drop;
}

struct events_reader *
events_reader_take(struct events *ev)
{
    struct events_reader *r = NULL;
    unsigned first;
    int i;

    first = atomic_fetch_add(&ev->next_reader, 1);
    for (i = 0; i < ev->nreaders; i++) {
        r = &ev->readers[(first + i) % (unsigned)ev->nreaders];
        if (pthread_mutex_trylock(&r->lock) == 0)
            break;
    }
    if (i == ev->nreaders) {
        r = &ev->readers[first % (unsigned)ev->nreaders];
        pthread_mutex_lock(&r->lock);
    }
    if (r->bad) {
        pthread_mutex_unlock(&r->lock);
        return NULL;
    }
    return r;
}

void
events_reader_give(struct events_reader *r, int failed)
{
    if (failed)
        r->bad = 1;
    pthread_mutex_unlock(&r->lock);
}

int
events_suppressed(struct events *ev, const char *rcpt, const char *stream,
                  char *why, size_t n)
{
    struct events_reader *r;
    struct err e;
    int rc;

    if (ev == NULL)
        return 0;
    err_clear(&e);
    if ((r = events_reader_take(ev)) == NULL)
        return -1; /* told once, when it broke; the writer reopens it */
    rc = events_db_suppress_find(r->db, rcpt, stream, why, n, &e);
    events_reader_give(r, rc < 0);
    if (rc < 0)
        log_warning(NULL,
                    "events: suppression lookup for <%s> failed, mail "
                    "passes until the store answers again: %s",
                    rcpt, e.text);
    return rc;
}

/* ---- verp */
int
events_spool_durable(struct events *ev, char *const *lines, size_t n)
{
    int rc;

    pthread_mutex_lock(&ev->spool_lock);
    rc = events_spool_append(ev, lines, n, 1);
    pthread_mutex_unlock(&ev->spool_lock);
    pthread_mutex_lock(&ev->lock);
    pthread_cond_signal(&ev->wake);
    pthread_mutex_unlock(&ev->lock);
    return rc;
}

int
events_emit_sync(struct events *ev, const struct events_rec *r, struct err *e)
{
    char uid[64], *line;
    struct buf b;

    snprintf(uid, sizeof(uid), "%llx.%lx.%x",
             (unsigned long long)events_now_us(), (unsigned long)getpid(),
             atomic_fetch_add(&ev->seq, 1));
    buf_init(&b, EVENTS_LINE_MAX);
    if (events_line(&b, uid, r->time_us ? r->time_us : events_now_us(), r, e) <
            0 ||
        (line = buf_steal(&b, NULL)) == NULL) {
        buf_fini(&b);
        if (e->code == ERR_NONE)
            err_nomem(e);
        return -1;
    }
    if (events_spool_durable(ev, &line, 1) < 0) {
        free(line);
        return err_set(e, ERR_TEMP, "events: cannot write the spool %s",
                       ev->spool);
    }
    free(line);
    return 0;
}

int
events_verp_sender(struct events *ev, const char *qid, const char *given,
                   const char *auth_user, const char *sender, const char *rcpt,
                   char *out, size_t n)
{
    char stream[256];

    if (ev == NULL || ev->verp_domain[0] == '\0' || sender == NULL ||
        sender[0] == '\0')
        return 0; /* the null sender (bounces) is never rewritten */
    if (events_stream(ev, given, auth_user, sender, stream, sizeof(stream)) &&
        stream[0] == '\0')
        return 0; /* streams are tracked, and this mail is on none */
    if (verp_sender(&ev->verp_key, ev->verp_domain, qid, rcpt, out, n) < 0) {
        log_warning(qid,
                    "verp: no token for queue id %s: sent with its own "
                    "sender",
                    qid);
        return 0;
    }
    return 1;
}

int
events_inbound_rcpt(const struct events *ev, const char *rcpt)
{
    const char *at;

    if (ev == NULL)
        return 0;
    if (ev->fbl_address[0] != '\0' && strcasecmp(rcpt, ev->fbl_address) == 0)
        return 1;
    at = strrchr(rcpt, '@');
    return ev->verp_domain[0] != '\0' && at != NULL &&
           strcasecmp(at + 1, ev->verp_domain) == 0;
}

void
events_inbound_counts(struct events *ev, struct events_inbound_counts *c)
{
    pthread_mutex_lock(&ev->lock);
    *c = ev->in;
    pthread_mutex_unlock(&ev->lock);
}
/* ---- end verp */
