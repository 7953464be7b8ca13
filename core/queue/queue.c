/*
 * queue - the durable spool: file format, commit, scheduler, delivery
 *
 * See queue.h for the layout, queue_file.c for the file format. How it
 * works:
 *
 * The index is one struct queue_entry per message in queue/: its id and
 * the time of its next attempt (CLOCK_REALTIME, ms), in a hash table by
 * id and, while waiting, in a binary min-heap by time. An entry whose
 * attempt is running is out of the heap but still in the table, so a
 * rescan of queue/ never schedules it twice. Nothing of the message is
 * kept in memory between attempts.
 *
 * Workers take the earliest due entry and run one attempt: open
 * queue/QID, flock() it without waiting (an administration command that
 * holds it delays the attempt by a second), check that the name still
 * names the locked file, read and validate the whole file (a bad one is
 * moved to corrupt/), and deliver the pending recipients, grouped by
 * route, one SMTP transaction per route. Per recipient: 2xx delivered,
 * 5xx bounced, 4xx deferred, or bounced once the message is older than
 * maximal_queue_lifetime. The reply that counts is the one to RCPT when
 * it refused, else the one to the message: with SMTP one for all, with
 * LMTP each recipient's own (RFC 2033, smtpc_data_rcpts), so a mailbox
 * over quota defers or bounces its owner alone, with its own words in
 * the report. When the connection is lost part way through the LMTP
 * replies, the recipients whose reply came keep it and the rest are
 * deferred: they may have got the message, and the retry repeats it
 * for them. Notifications are committed as new queue files before the
 * recipients they report are marked, so a crash can repeat a
 * notification but never lose one. When nothing is pending the file is
 * removed; otherwise the marks are made durable with fdatasync() and the
 * entry goes back into the heap after a backoff of the message's age,
 * clamped between minimal_backoff_time and maximal_backoff_time (as in
 * Postfix: exponential, with no state to lose in a restart).
 *
 * A route whose connection failed is left alone ("delivery temporarily
 * suspended") for minimal_backoff_time, or until a flush, so that a
 * backlog behind a dead next hop costs no connection attempts.
 *
 * The trigger thread reads the FIFO (flush, rescan) and rescans queue/
 * every queue_run_delay; at start it removes what tmp/ holds, then
 * indexes queue/ in the background while the workers and the SMTP
 * sessions already run.
 *
 * Reload: what relaychain.conf may change (backoffs, lifetimes,
 * queue_run_delay, delivery_concurrency, queue_minfree, the routes with
 * their smtpc pools) is one struct queue_settings with a reference
 * count. q->set holds one reference; each attempt takes another under
 * q->lock when it starts and uses only that set, so a reload never
 * changes an attempt half way. The reloader thread builds the new set
 * (transport_map read, pools made) outside any lock; the swap is a
 * pointer exchange under q->lock, which also caps the waiting entries'
 * due times at the new maximal_backoff_time and wakes the workers; the
 * old set, with its pools and their idle connections, is freed by its
 * last user. Workers beyond a lowered delivery_concurrency leave when
 * they are next idle; more are started for a raised one. A route's
 * suspension lives in its set: a new next hop is tried at once.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/addr.h"
#include "util/esmtp.h"
#include "util/fdio.h"
#include "util/qid.h"
#include "util/log.h"
#include "queue/queue.h"
#include "net/smtpc.h"

#define QUEUE_PATH_MAX 3072
#define QUEUE_RELAY_MAX 300
#define QUEUE_LINE_MAX 1024             /* a transport_map line */
#define QUEUE_DEAD_MAX_MS (60 * 1000LL) /* longest suspension of a route */
#define QUEUE_LOCKED_RETRY_MS 1000
#define QUEUE_STACK (256 * 1024)

/* ------------------------------------------------------------ helpers */

static long long
queue_now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

static long long
queue_now_ms(void)
{
    return queue_now_us() / 1000;
}

/* ------------------------------------------------------------- daemon */

struct queue_entry {
    struct queue_entry *hnext;
    long long due_ms;
    size_t heap_at; /* SIZE_MAX while its attempt runs */
    char id[QUEUE_ID_MAX];
};

struct queue_route {
    char *nexthop;
    struct smtpc_pool *pool;
    /* under q->lock */
    long long dead_until_ms;
    int dead_code;
    char dead_why[512];
};

struct queue_transport {
    char *domain; /* "example.com", ".example.com" or "*" */
    size_t route;
};

/* What a reload may change. Read-only once built, except the routes'
 * suspension state (under q->lock); shared by reference: the queue holds
 * one, every attempt holds the one it started with. */
struct queue_settings {
    atomic_uint refs;
    long long min_backoff_ms, max_backoff_ms, lifetime_ms, warn_ms;
    long long run_delay_ms;
    unsigned long long minfree;
    unsigned concurrency;
    struct queue_route *routes; /* routes[0] is next_hop */
    size_t nroutes;
    struct queue_transport *transports;
    size_t ntransports;
};

struct queue {
    char dir[QUEUE_PATH_MAX];
    int dfd, tmp_fd, queue_fd, hold_fd, corrupt_fd, defer_fd;
    int lock_fd, fifo_fd;
    char hostname[256];
    size_t file_max;
    atomic_uint seq;

    pthread_mutex_t lock;       /* guards what follows and the routes' state */
    struct queue_settings *set; /* the current settings: one reference */
    unsigned workers;           /* worker threads running */
    pthread_cond_t wake;        /* workers: an entry may be due */
    pthread_cond_t gone;        /* a thread ended */
    struct queue_entry **heap;
    size_t nheap, heap_cap;
    struct queue_entry **table;
    size_t table_size, nentries;
    unsigned threads;
    int stopping;
};

enum queue_verdict { QUEUE_DROP, QUEUE_RETRY };

/* ------------------------------------------------------------- index */

static size_t
queue_hash(const char *id)
{
    uint32_t h = 2166136261u;

    while (*id != '\0') {
        h ^= (unsigned char)*id++;
        h *= 16777619u;
    }
    return h;
}

static struct queue_entry *
queue_find(const struct queue *q, const char *id)
{
    struct queue_entry *en;

    for (en = q->table[queue_hash(id) & (q->table_size - 1)]; en != NULL;
         en = en->hnext)
        if (strcmp(en->id, id) == 0)
            return en;
    return NULL;
}

static int
queue_table_add(struct queue *q, struct queue_entry *en)
{
    size_t h;

    if (q->nentries >= q->table_size) {
        size_t size = q->table_size * 2, i;
        struct queue_entry **t = calloc(size, sizeof(*t)), *x, *next;

        if (t == NULL)
            return -1;
        for (i = 0; i < q->table_size; i++)
            for (x = q->table[i]; x != NULL; x = next) {
                next = x->hnext;
                h = queue_hash(x->id) & (size - 1);
                x->hnext = t[h];
                t[h] = x;
            }
        free(q->table);
        q->table = t;
        q->table_size = size;
    }
    h = queue_hash(en->id) & (q->table_size - 1);
    en->hnext = q->table[h];
    q->table[h] = en;
    q->nentries++;
    return 0;
}

static void
queue_table_remove(struct queue *q, struct queue_entry *en)
{
    struct queue_entry **pp =
        &q->table[queue_hash(en->id) & (q->table_size - 1)];

    for (; *pp != NULL; pp = &(*pp)->hnext)
        if (*pp == en) {
            *pp = en->hnext;
            q->nentries--;
            return;
        }
}

static void
queue_heap_set(struct queue *q, size_t i, struct queue_entry *en)
{
    q->heap[i] = en;
    en->heap_at = i;
}

static void
queue_heap_up(struct queue *q, size_t i)
{
    struct queue_entry *en = q->heap[i];

    while (i > 0 && q->heap[(i - 1) / 2]->due_ms > en->due_ms) {
        queue_heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    queue_heap_set(q, i, en);
}

static void
queue_heap_down(struct queue *q, size_t i)
{
    struct queue_entry *en = q->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= q->nheap)
            break;
        if (c + 1 < q->nheap && q->heap[c + 1]->due_ms < q->heap[c]->due_ms)
            c++;
        if (q->heap[c]->due_ms >= en->due_ms)
            break;
        queue_heap_set(q, i, q->heap[c]);
        i = c;
    }
    queue_heap_set(q, i, en);
}

static int
queue_heap_push(struct queue *q, struct queue_entry *en)
{
    if (q->nheap == q->heap_cap) {
        size_t cap = q->heap_cap ? q->heap_cap * 2 : 1024;
        struct queue_entry **h = realloc(q->heap, cap * sizeof(*h));

        if (h == NULL)
            return -1;
        q->heap = h;
        q->heap_cap = cap;
    }
    q->heap[q->nheap] = en;
    en->heap_at = q->nheap++;
    queue_heap_up(q, en->heap_at);
    return 0;
}

static struct queue_entry *
queue_heap_pop(struct queue *q)
{
    struct queue_entry *top = q->heap[0];

    if (--q->nheap > 0) {
        queue_heap_set(q, 0, q->heap[q->nheap]);
        queue_heap_down(q, 0);
    }
    top->heap_at = SIZE_MAX;
    return top;
}

/* queue_schedule - index id (when it is not) with its next attempt at
 * due_ms, or bring a waiting attempt forward to due_ms. */
static void
queue_schedule(struct queue *q, const char *id, long long due_ms)
{
    struct queue_entry *en;

    pthread_mutex_lock(&q->lock);
    if ((en = queue_find(q, id)) != NULL) {
        if (en->heap_at != SIZE_MAX && due_ms < en->due_ms) {
            en->due_ms = due_ms;
            queue_heap_up(q, en->heap_at);
            pthread_cond_signal(&q->wake);
        }
        pthread_mutex_unlock(&q->lock);
        return;
    }
    if ((en = calloc(1, sizeof(*en))) != NULL)
        snprintf(en->id, sizeof(en->id), "%s", id);
    if (en == NULL || queue_table_add(q, en) < 0) {
        free(en);
        pthread_mutex_unlock(&q->lock);
        /* on disk all the same: the next rescan indexes it */
        log_warning(id, "out of memory: scheduled at the next queue scan");
        return;
    }
    en->due_ms = due_ms;
    if (queue_heap_push(q, en) < 0) {
        queue_table_remove(q, en);
        free(en);
        pthread_mutex_unlock(&q->lock);
        log_warning(id, "out of memory: scheduled at the next queue scan");
        return;
    }
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
}

/* queue_flush - every waiting attempt now, routes no longer suspended. */
static void
queue_flush(struct queue *q, const char *id)
{
    size_t i;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < q->set->nroutes; i++)
        q->set->routes[i].dead_until_ms = 0;
    if (id == NULL) {
        long long now = queue_now_ms();

        /* all equal: still a heap */
        for (i = 0; i < q->nheap; i++)
            if (q->heap[i]->due_ms > now)
                q->heap[i]->due_ms = now;
        for (i = q->nheap / 2; i-- > 0;)
            queue_heap_down(q, i);
        pthread_cond_broadcast(&q->wake);
    }
    pthread_mutex_unlock(&q->lock);
    if (id != NULL)
        queue_schedule(q, id, queue_now_ms());
}

/* ------------------------------------------------------------- commit */

/* queue_write_msg - the message octets, from data or piece by piece. */
static int
queue_write_msg(int fd, const struct queue_msg *m)
{
    size_t i;

    if (m->iov == NULL)
        return fdio_write_all(fd, m->data, m->len);
    for (i = 0; i < m->niov; i++)
        if (fdio_write_all(fd, m->iov[i].iov_base, m->iov[i].iov_len) < 0)
            return -1;
    return 0;
}

/* queue_write - tmp/QID, fsync, rename to queue/QID, fsync queue/. */
static int
queue_write(struct queue *q, const struct queue_msg *m, struct err *e)
{
    char tail[QUEUE_TAIL_LEN];
    struct buf head;
    int fd, saved;
    const char *what = "write";

    if (!qid_is_valid(m->qid, QUEUE_ID_MAX))
        return err_set(e, ERR_INTERNAL, "bad queue id '%.40s'", m->qid);
    buf_init(&head, 0);
    if (queue_file_head(m, queue_now_us(), &head, e) < 0) {
        buf_fini(&head);
        return -1;
    }
    queue_file_tail(m, head.data, head.len, tail);
    fd = openat(q->tmp_fd, m->qid, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                0600);
    if (fd < 0) {
        buf_fini(&head);
        return err_sys(e, ERR_IO, "create %s/tmp/%s", q->dir, m->qid);
    }
    if (fdio_write_all(fd, head.data, head.len) < 0 ||
        queue_write_msg(fd, m) < 0 ||
        fdio_write_all(fd, tail, sizeof(tail)) < 0)
        goto fail;
    what = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    what = "close";
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    what = "rename";
    if (renameat2(q->tmp_fd, m->qid, q->queue_fd, m->qid, RENAME_NOREPLACE) <
        0) {
        if (errno != EINVAL && errno != ENOSYS)
            goto fail;
        /* no RENAME_NOREPLACE here: link() refuses to replace too */
        if (linkat(q->tmp_fd, m->qid, q->queue_fd, m->qid, 0) < 0)
            goto fail;
        unlinkat(q->tmp_fd, m->qid, 0);
    }
    if (fsync(q->queue_fd) < 0) {
        saved = errno;
        unlinkat(q->queue_fd, m->qid, 0);
        errno = saved;
        buf_fini(&head);
        return err_sys(e, ERR_IO, "fsync %s/queue", q->dir);
    }
    buf_fini(&head);
    return 0;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlinkat(q->tmp_fd, m->qid, 0);
    buf_fini(&head);
    errno = saved;
    return err_sys(e, ERR_IO, "%s %s/tmp/%s", what, q->dir, m->qid);
}

int
queue_commit(struct queue *q, const struct queue_msg *m, struct err *e)
{
    if (queue_write(q, m, e) < 0)
        return -1;
    queue_schedule(q, m->qid, queue_now_ms());
    return 0;
}

const char *
queue_commit_reply(const struct err *e)
{
    if (e->sys_errno == ENOSPC || e->sys_errno == EDQUOT ||
        e->sys_errno == EFBIG)
        return "452 4.3.1 Error: insufficient system storage";
    return "451 4.3.0 Error: queue file write error";
}

int
queue_has_space(struct queue *q, unsigned long long size)
{
    struct statvfs sv;
    unsigned long long avail, minfree;

    if (fstatvfs(q->queue_fd, &sv) < 0)
        return 1; /* the write itself will tell */
    pthread_mutex_lock(&q->lock);
    minfree = q->set->minfree;
    pthread_mutex_unlock(&q->lock);
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    return avail >= minfree + size + size / 2;
}

/* ----------------------------------------------------------- delivery */

struct queue_outcome {
    int code;
    char text[512];
    char relay[QUEUE_RELAY_MAX];
    long long conn_us, xfer_us;
    int hop_dsn;     /* the next hop takes NOTIFY itself */
    char reply[528]; /* "550 5.1.1 text", for a notification */
};

struct queue_job {
    struct queue *q;
    struct queue_settings *set; /* held for the whole attempt */
    const char *id;
    struct queue_file qf;
    struct queue_outcome *out; /* per recipient */
    size_t *route;             /* per recipient */
    long long start_us;
};

static void
queue_outcome_set(struct queue_outcome *o, const struct smtpc_reply *r,
                  const char *relay)
{
    o->code = r->code;
    snprintf(o->text, sizeof(o->text), "%s", r->text);
    snprintf(o->relay, sizeof(o->relay), "%s", relay);
}

/* queue_route_for - the route of rcpt: transport_map by domain, then
 * its parent domains (".example.com" entries), then "*", then
 * next_hop. */
static size_t
queue_route_for(const struct queue_settings *set, const char *rcpt)
{
    const char *dom = addr_domain(rcpt), *p;
    size_t i;

    if (dom != NULL) {
        for (i = 0; i < set->ntransports; i++)
            if (set->transports[i].domain[0] != '.' &&
                strcasecmp(set->transports[i].domain, dom) == 0)
                return set->transports[i].route;
        for (p = strchr(dom, '.'); p != NULL; p = strchr(p + 1, '.'))
            for (i = 0; i < set->ntransports; i++)
                if (set->transports[i].domain[0] == '.' &&
                    strcasecmp(set->transports[i].domain, p) == 0)
                    return set->transports[i].route;
    }
    for (i = 0; i < set->ntransports; i++)
        if (strcmp(set->transports[i].domain, "*") == 0)
            return set->transports[i].route;
    return 0;
}

/* queue_suspend - the route failed to connect: no attempts on it for a
 * while; returns nothing, logs nothing (the recipients' lines say it). */
static void
queue_suspend(struct queue *q, const struct queue_settings *set,
              struct queue_route *rt, const struct smtpc_reply *r)
{
    long long d = set->min_backoff_ms < QUEUE_DEAD_MAX_MS ? set->min_backoff_ms
                                                          : QUEUE_DEAD_MAX_MS;

    pthread_mutex_lock(&q->lock);
    rt->dead_until_ms = queue_now_ms() + d;
    rt->dead_code = r->code;
    snprintf(rt->dead_why, sizeof(rt->dead_why), "%s", r->text);
    pthread_mutex_unlock(&q->lock);
}

/* queue_deliver_route - one transaction on route ri for the recipients
 * idx[0..n) of j; fills their outcomes. accepted and each are scratch
 * arrays of n entries or more: the recipients RCPT accepted and their
 * replies to the message. */
static void
queue_deliver_route(struct queue_job *j, size_t ri, const size_t *idx,
                    size_t n, size_t *accepted, struct smtpc_reply *each)
{
    static const char *const mail_keys[] = {"BODY", "SMTPUTF8", "RET", "ENVID",
                                            NULL};
    static const char *const rcpt_keys[] = {"NOTIFY", "ORCPT", NULL};
    struct queue *q = j->q;
    struct queue_route *rt = &j->set->routes[ri];
    const struct queue_file *qf = &j->qf;
    char params[1024], relay[QUEUE_RELAY_MAX];
    struct smtpc_reply r;
    struct smtpc_conn *c;
    struct msg_env env;
    long long t0 = queue_now_us(), t1;
    size_t i, k, nacc = 0;
    int rc, dead;
    struct err e;

    err_clear(&e);
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&q->lock);
    dead = rt->dead_until_ms > queue_now_ms();
    if (dead) {
        size_t skip = strspn(rt->dead_why, "0123456789.");

        /* "4.4.1 Connection refused by ..." without its code */
        skip = rt->dead_why[skip] == ' ' ? skip + 1 : 0;
        r.code = rt->dead_code / 100 == 4 ? rt->dead_code : 451;
        snprintf(r.text, sizeof(r.text),
                 "4.4.1 delivery temporarily suspended: %.400s",
                 rt->dead_why + skip);
    }
    pthread_mutex_unlock(&q->lock);
    if (dead) {
        for (i = 0; i < n; i++)
            queue_outcome_set(&j->out[idx[i]], &r, "none");
        return;
    }
    c = smtpc_get(rt->pool, &r, &e);
    t1 = queue_now_us();
    if (c == NULL) {
        if (r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.3.0 %.480s", e.text);
        }
        if (r.code / 100 == 4)
            queue_suspend(q, j->set, rt, &r);
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, "none");
            j->out[idx[i]].conn_us = t1 - t0;
        }
        return;
    }
    snprintf(relay, sizeof(relay), "%s", smtpc_relay_name(c));
    memset(&env, 0, sizeof(env));
    env.frontend = MSG_FE_SMTP;
    env.qid = (char *)j->id;
    env.client_addr = (char *)qf->client_addr;
    env.client_name = (char *)qf->client_name;
    env.helo = (char *)qf->helo;
    esmtp_params_pick(qf->sender_params, mail_keys, params, sizeof(params));
    /* the size of what leaves; smtpc drops it where SIZE is not offered */
    k = strlen(params);
    snprintf(params + k, sizeof(params) - k, "%sSIZE=%zu", k ? " " : "",
             qf->len);
    rc = smtpc_mail(c, &env, qf->sender, params, &r, &e);
    if (rc < 0 || r.code / 100 != 2) {
        if (r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.4.2 lost connection with %s",
                     relay);
        }
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, relay);
            j->out[idx[i]].conn_us = t1 - t0;
        }
        smtpc_put(rt->pool, c, rc == 0);
        return;
    }
    for (i = 0; i < n; i++) {
        const struct queue_file_rcpt *rp = &qf->rcpts[idx[i]];

        esmtp_params_pick(rp->params, rcpt_keys, params, sizeof(params));
        rc = smtpc_rcpt(c, rp->addr, params[0] ? params : NULL, &r, &e);
        if (rc < 0) {
            /* the connection broke: nobody got it */
            if (r.code == 0)
                r.code = 451;
            for (k = 0; k < n; k++)
                queue_outcome_set(&j->out[idx[k]], &r, relay);
            smtpc_put(rt->pool, c, 0);
            return;
        }
        queue_outcome_set(&j->out[idx[i]], &r, relay);
        j->out[idx[i]].conn_us = t1 - t0;
        if (r.code / 100 == 2)
            accepted[nacc++] = idx[i];
    }
    if (nacc == 0) {
        smtpc_put(rt->pool, c, 1);
        return;
    }
    /* with LMTP each recipient has its own reply to the message */
    rc = smtpc_data_rcpts(c, qf->data, qf->len, each, nacc, &r, &e);
    if (r.code == 0) {
        r.code = 451;
        snprintf(r.text, sizeof(r.text),
                 "4.4.2 lost connection with %s "
                 "while sending the message",
                 relay);
    }
    t0 = queue_now_us();
    for (i = 0; i < nacc; i++) {
        queue_outcome_set(&j->out[accepted[i]],
                          each[i].code != 0 ? &each[i] : &r, relay);
        j->out[accepted[i]].xfer_us = t0 - t1;
        j->out[accepted[i]].hop_dsn = smtpc_has_dsn(c);
    }
    smtpc_put(rt->pool, c, rc == 0);
}

/* queue_dsn_code - "5.1.1" from the reply text when it starts with an
 * enhanced status code, else "5.0.0" from the reply code. */
static void
queue_dsn_code(int code, const char *text, char *out, size_t n)
{
    size_t a = strspn(text + 2, "0123456789"), b;

    if ((text[0] == '2' || text[0] == '4' || text[0] == '5') &&
        text[1] == '.' && a >= 1 && a <= 3 && text[2 + a] == '.' &&
        (b = strspn(text + 3 + a, "0123456789")) >= 1 && b <= 3 &&
        (text[3 + a + b] == ' ' || text[3 + a + b] == '\0')) {
        snprintf(out, n, "%.*s", (int)(3 + a + b), text);
        return;
    }
    snprintf(out, n, "%d.0.0",
             code / 100 >= 2 && code / 100 <= 5 ? code / 100 : 4);
}

/* queue_notice - commit a notification for list[0..n) of j; logs it. */
static int
queue_notice(struct queue_job *j, const char *action,
             const struct queue_dsn_rcpt *list, size_t n, const char *what)
{
    struct queue *q = j->q;
    struct queue_msg m;
    struct msg_rcpt rcpt;
    char id[QUEUE_ID_MAX];
    struct buf out;
    struct err e;
    long long now = queue_now_us();
    int tries, rc = -1;

    err_clear(&e);
    buf_init(&out, 0);
    if (queue_dsn_build(&j->qf, j->id, q->hostname, action, list, n, now,
                        j->qf.arrival_us + j->set->lifetime_ms * 1000, &out,
                        &e) < 0) {
        log_error(j->id, "cannot build the %s: %s", what, e.text);
        buf_fini(&out);
        return -1;
    }
    memset(&m, 0, sizeof(m));
    rcpt.addr = (char *)j->qf.sender;
    rcpt.params = NULL;
    m.arrival_us = now;
    m.client_addr = "127.0.0.1";
    m.client_name = "localhost";
    m.helo = q->hostname;
    m.sender = "";
    m.sender_params = "";
    m.rcpts = &rcpt;
    m.nrcpts = 1;
    m.orig = &rcpt;
    m.norig = 1;
    m.data = out.data;
    m.len = out.len;
    for (tries = 0; tries < 3 && rc < 0; tries++) {
        qid_new(&q->seq, id, sizeof(id));
        m.qid = id;
        err_clear(&e);
        rc = queue_write(q, &m, &e);
        if (rc < 0 && e.sys_errno != EEXIST)
            break;
    }
    buf_fini(&out);
    if (rc < 0) {
        log_error(j->id, "cannot queue the %s: %s", what, e.text);
        return -1;
    }
    log_info(j->id, "sender %s: %s", what, id);
    log_info(id, "from=<>, size=%zu, nrcpt=1 (queue active)", m.len);
    queue_schedule(q, id, queue_now_ms());
    return 0;
}

static void
queue_defer_note(struct queue_job *j, const char *status)
{
    struct buf b;
    struct err e;
    size_t i;
    int fd;

    buf_init(&b, 0);
    for (i = 0; i < j->qf.nrcpts; i++)
        if (status[i] == QUEUE_RCPT_PENDING &&
            buf_printf(&b, &e, "%s\t%d %s\n", j->qf.rcpts[i].addr,
                       j->out[i].code, j->out[i].text) < 0)
            break;
    fd = openat(j->q->defer_fd, j->id,
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)fdio_write_all(fd, b.data ? b.data : "", b.len);
        close(fd);
    }
    buf_fini(&b);
}

static int
queue_mark(int fd, size_t off, char value)
{
    return pwrite(fd, &value, 1, (off_t)off) == 1 ? 0 : -1;
}

/* queue_finish - decide each recipient's fate from its outcome, send the
 * notifications, mark the file, and say whether it stays. */
static int
queue_finish(struct queue_job *j, int fd, long long *next_ms)
{
    struct queue *q = j->q;
    const struct queue_settings *set = j->set;
    struct queue_file *qf = &j->qf;
    struct queue_dsn_rcpt *failed = NULL, *relayed = NULL, *delayed = NULL;
    size_t nfailed = 0, nrelayed = 0, ndelayed = 0, i, pending = 0;
    long long now = queue_now_us(), age_ms = (now - qf->arrival_us) / 1000;
    int expired = age_ms >= set->lifetime_ms, changed = 0, verdict;
    char *status = NULL;
    struct stat st;

    if ((status = malloc(qf->nrcpts + 1)) == NULL ||
        (failed = calloc(qf->nrcpts, sizeof(*failed))) == NULL ||
        (relayed = calloc(qf->nrcpts, sizeof(*relayed))) == NULL ||
        (delayed = calloc(qf->nrcpts, sizeof(*delayed))) == NULL) {
        /* the outcomes are lost: try again, perhaps twice for some */
        log_error(j->id, "out of memory after a delivery attempt");
        verdict = QUEUE_RETRY;
        *next_ms = queue_now_ms() + set->min_backoff_ms;
        goto out;
    }
    for (i = 0; i < qf->nrcpts; i++) {
        struct queue_outcome *o = &j->out[i];
        const char *st_name, *note = "";
        char dsn[16], lifetime[64] = "";
        int cls = o->code / 100;

        status[i] = qf->rcpts[i].status;
        if (status[i] != QUEUE_RCPT_PENDING)
            continue;
        snprintf(o->reply, sizeof(o->reply), "%d %s", o->code, o->text);
        if (cls == 2) {
            st_name = "sent";
            status[i] = QUEUE_RCPT_DONE;
            if (esmtp_notify_wants(qf->rcpts[i].params, "SUCCESS") &&
                !o->hop_dsn)
                relayed[nrelayed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        } else if (cls == 5 || expired) {
            st_name = "bounced";
            status[i] = QUEUE_RCPT_BOUNCED;
            if (cls != 5) {
                snprintf(lifetime, sizeof(lifetime),
                         "; message expired after %llds in the queue",
                         age_ms / 1000);
                note = lifetime;
            }
            if (esmtp_notify_wants(qf->rcpts[i].params, "FAILURE"))
                failed[nfailed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        } else {
            st_name = "deferred";
            pending++;
            if (esmtp_notify_wants(qf->rcpts[i].params, "DELAY"))
                delayed[ndelayed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        }
        queue_dsn_code(o->code, o->text, dsn, sizeof(dsn));
        log_info(j->id,
                 "to=<%s>, relay=%s, delay=%.2f, delays=%.2f/%.2f/%.2f/%.2f, "
                 "dsn=%s, status=%s (%d %s%s)",
                 qf->rcpts[i].addr, o->relay,
                 (double)(now - qf->arrival_us) / 1e6,
                 (double)(qf->queued_us - qf->arrival_us) / 1e6,
                 (double)(j->start_us - qf->queued_us) / 1e6,
                 (double)o->conn_us / 1e6, (double)o->xfer_us / 1e6, dsn,
                 st_name, o->code, o->text, note);
    }
    if (fstat(fd, &st) == 0 && st.st_nlink == 0) {
        /* "relaychain queue delete" won while the attempt ran */
        log_info(j->id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    /* Notifications first, then the marks: a crash in between repeats
     * the notification, never loses it. A null sender gets none. */
    if (qf->sender[0] != '\0' && nfailed > 0 &&
        queue_notice(j, "failed", failed, nfailed,
                     "non-delivery notification") < 0) {
        for (i = 0; i < nfailed; i++) {
            status[failed[i].idx] = QUEUE_RCPT_PENDING;
            pending++;
        }
    }
    if (qf->sender[0] != '\0' && nrelayed > 0)
        (void)queue_notice(j, "relayed", relayed, nrelayed,
                           "delivery status notification");
    if (pending == 0) {
        if (unlinkat(q->queue_fd, j->id, 0) < 0 && errno != ENOENT)
            log_error(j->id, "cannot remove the queue file: %s",
                      strerror(errno));
        unlinkat(q->defer_fd, j->id, 0);
        log_info(j->id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    for (i = 0; i < qf->nrcpts; i++)
        if (status[i] != qf->rcpts[i].status) {
            if (queue_mark(fd, qf->rcpts[i].status_off, status[i]) < 0)
                log_error(j->id, "cannot mark <%s>: %s", qf->rcpts[i].addr,
                          strerror(errno));
            changed = 1;
        }
    if (changed && fdatasync(fd) < 0)
        log_error(j->id,
                  "fdatasync: %s: recipients done may be tried "
                  "again",
                  strerror(errno));
    if (set->warn_ms > 0 && qf->warned == '-' && age_ms >= set->warn_ms &&
        ndelayed > 0 && qf->sender[0] != '\0' &&
        queue_notice(j, "delayed", delayed, ndelayed, "delay notification") ==
            0 &&
        (queue_mark(fd, qf->warned_off, 'W') < 0 || fdatasync(fd) < 0))
        log_error(j->id, "cannot note the delay warning: %s", strerror(errno));
    queue_defer_note(j, status);
    {
        long long backoff = age_ms;

        if (backoff < set->min_backoff_ms)
            backoff = set->min_backoff_ms;
        if (backoff > set->max_backoff_ms)
            backoff = set->max_backoff_ms;
        *next_ms = queue_now_ms() + backoff;
    }
    verdict = QUEUE_RETRY;
out:
    free(status);
    free(failed);
    free(relayed);
    free(delayed);
    return verdict;
}

/* queue_attempt_with - one delivery attempt of queue/ID with the
 * settings set (held by the caller). */
static int
queue_attempt_with(struct queue *q, struct queue_settings *set, const char *id,
                   long long *next_ms)
{
    struct queue_job j;
    struct stat st, st2;
    struct buf raw;
    size_t *idx = NULL, *acc = NULL, i, r, n, pending = 0;
    struct smtpc_reply *each = NULL;
    int fd, verdict = QUEUE_RETRY;
    struct err e;

    err_clear(&e);
    *next_ms = queue_now_ms() + set->min_backoff_ms;
    if ((fd = openat(q->queue_fd, id, O_RDWR | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            return QUEUE_DROP; /* delivered, deleted or on hold */
        log_error(id, "open %s/queue/%s: %s", q->dir, id, strerror(errno));
        return QUEUE_RETRY;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        /* an administration command has it */
        close(fd);
        *next_ms = queue_now_ms() + QUEUE_LOCKED_RETRY_MS;
        return QUEUE_RETRY;
    }
    /* the name must still name what we locked: hold/release move it */
    if (fstat(fd, &st) < 0 || fstatat(q->queue_fd, id, &st2, 0) < 0 ||
        st.st_ino != st2.st_ino || st.st_dev != st2.st_dev) {
        close(fd);
        return QUEUE_DROP;
    }
    memset(&j, 0, sizeof(j));
    j.q = q;
    j.set = set;
    j.id = id;
    j.start_us = queue_now_us();
    buf_init(&raw, q->file_max);
    if (queue_read_fd(fd, q->file_max, &raw, &e) < 0 ||
        queue_file_parse(raw.data ? raw.data : "", raw.len, 0, &j.qf, &e) <
            0) {
        if (e.code == ERR_NOMEM) {
            log_error(id, "out of memory reading the queue file");
            goto out;
        }
        if (renameat(q->queue_fd, id, q->corrupt_fd, id) < 0)
            log_error(id,
                      "corrupt queue file (%s), and cannot move it to "
                      "corrupt/: %s",
                      e.text, strerror(errno));
        else
            log_error(id, "corrupt queue file moved to %s/corrupt: %s", q->dir,
                      e.text);
        unlinkat(q->defer_fd, id, 0);
        verdict = QUEUE_DROP;
        goto out;
    }
    for (i = 0; i < j.qf.nrcpts; i++)
        if (j.qf.rcpts[i].status == QUEUE_RCPT_PENDING)
            pending++;
    if (pending == 0) {
        unlinkat(q->queue_fd, id, 0);
        unlinkat(q->defer_fd, id, 0);
        log_info(id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    if ((j.out = calloc(j.qf.nrcpts, sizeof(*j.out))) == NULL ||
        (j.route = calloc(j.qf.nrcpts, sizeof(*j.route))) == NULL ||
        (idx = calloc(j.qf.nrcpts, sizeof(*idx))) == NULL ||
        (acc = calloc(j.qf.nrcpts, sizeof(*acc))) == NULL ||
        (each = calloc(j.qf.nrcpts, sizeof(*each))) == NULL) {
        log_error(id, "out of memory for a delivery attempt");
        goto out;
    }
    for (i = 0; i < j.qf.nrcpts; i++)
        j.route[i] = queue_route_for(set, j.qf.rcpts[i].addr);
    for (r = 0; r < set->nroutes; r++) {
        for (n = 0, i = 0; i < j.qf.nrcpts; i++)
            if (j.qf.rcpts[i].status == QUEUE_RCPT_PENDING && j.route[i] == r)
                idx[n++] = i;
        if (n > 0)
            queue_deliver_route(&j, r, idx, n, acc, each);
    }
    verdict = queue_finish(&j, fd, next_ms);
out:
    close(fd);
    free(idx);
    free(acc);
    free(each);
    free(j.out);
    free(j.route);
    queue_file_fini(&j.qf);
    buf_fini(&raw);
    return verdict;
}

/* queue_settings_hold - the current settings, with a reference. */
static struct queue_settings *
queue_settings_hold(struct queue *q)
{
    struct queue_settings *set;

    pthread_mutex_lock(&q->lock);
    set = q->set;
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&q->lock);
    return set;
}

void
queue_settings_release(struct queue_settings *set)
{
    size_t i;

    if (set == NULL || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    /* the last user: the pools close their idle connections */
    for (i = 0; i < set->nroutes; i++) {
        smtpc_pool_free(set->routes[i].pool);
        free(set->routes[i].nexthop);
    }
    free(set->routes);
    for (i = 0; i < set->ntransports; i++)
        free(set->transports[i].domain);
    free(set->transports);
    free(set);
}

/* queue_attempt - one delivery attempt of queue/ID, with the settings
 * current when it starts: a reload meanwhile does not touch it. */
static int
queue_attempt(struct queue *q, const char *id, long long *next_ms)
{
    struct queue_settings *set = queue_settings_hold(q);
    int verdict;

    verdict = queue_attempt_with(q, set, id, next_ms);
    queue_settings_release(set);
    return verdict;
}

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

/* queue_scan - index every file of queue/ not indexed yet. At start-up
 * (recovery) a file whose end record is missing is removed; later such
 * a file (damaged under us) goes to corrupt/. Returns the count added. */
static size_t
queue_scan(struct queue *q, int recovery)
{
    struct dirent *de;
    size_t added = 0;
    DIR *d;
    int dfd;

    if ((dfd = dup(q->queue_fd)) < 0 || (d = fdopendir(dfd)) == NULL) {
        if (dfd >= 0)
            close(dfd);
        log_error(NULL, "scan %s/queue: %s", q->dir, strerror(errno));
        return 0;
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        char tail[QUEUE_TAIL_LEN];
        struct stat st;
        int known, fd, ok;

        if (!qid_is_valid(de->d_name, QUEUE_ID_MAX))
            continue;
        pthread_mutex_lock(&q->lock);
        known = queue_find(q, de->d_name) != NULL;
        pthread_mutex_unlock(&q->lock);
        if (known)
            continue;
        if ((fd = openat(q->queue_fd, de->d_name, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
             st.st_size >= QUEUE_TAIL_LEN &&
             pread(fd, tail, sizeof(tail),
                   (off_t)(st.st_size - QUEUE_TAIL_LEN)) ==
                 (ssize_t)sizeof(tail) &&
             queue_file_tail_ok(tail, sizeof(tail), (size_t)st.st_size);
        close(fd);
        if (!ok && recovery) {
            if (unlinkat(q->queue_fd, de->d_name, 0) == 0)
                log_warning(de->d_name,
                            "removed a torn queue file "
                            "(%lld octets, no end record)",
                            (long long)st.st_size);
            unlinkat(q->defer_fd, de->d_name, 0);
            continue;
        }
        if (!ok) {
            if (renameat(q->queue_fd, de->d_name, q->corrupt_fd, de->d_name) ==
                0)
                log_error(de->d_name,
                          "queue file without an end record "
                          "moved to %s/corrupt",
                          q->dir);
            continue;
        }
        queue_schedule(q, de->d_name, queue_now_ms());
        added++;
    }
    closedir(d);
    return added;
}

/* queue_clean - at start-up: what tmp/ holds was never acknowledged;
 * deferral notes of messages that are gone. */
static void
queue_clean(struct queue *q)
{
    struct dirent *de;
    DIR *d;
    int dfd;

    if ((dfd = dup(q->tmp_fd)) >= 0 && (d = fdopendir(dfd)) != NULL) {
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.' &&
                unlinkat(q->tmp_fd, de->d_name, 0) == 0)
                log_warning(de->d_name, "removed an incomplete queue file "
                                        "(the relay stopped while "
                                        "receiving it)");
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
    if ((dfd = dup(q->defer_fd)) >= 0 && (d = fdopendir(dfd)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            struct stat st;

            if (de->d_name[0] != '.' &&
                fstatat(q->queue_fd, de->d_name, &st, 0) < 0 &&
                fstatat(q->hold_fd, de->d_name, &st, 0) < 0)
                unlinkat(q->defer_fd, de->d_name, 0);
        }
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
}

/* queue_trigger_line - one command from the FIFO. */
/* queue_revive - every route usable again, before a flush looks for new
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
}

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
queue_subdir(struct queue *q, const char *name, int *fd, struct err *e)
{
    if (mkdirat(q->dfd, name, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "queue_directory: mkdir %s/%s", q->dir,
                       name);
    if ((*fd = openat(q->dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "queue_directory: %s/%s", q->dir, name);
    return 0;
}

static int
queue_add_route(struct queue_settings *set, const struct cfg *c,
                const char *hop, size_t *out, struct err *e)
{
    struct smtpc_settings s;
    struct queue_route *grown;
    size_t i;

    for (i = 0; i < set->nroutes; i++)
        if (strcmp(set->routes[i].nexthop, hop) == 0) {
            *out = i;
            return 0;
        }
    grown = realloc(set->routes, (set->nroutes + 1) * sizeof(*grown));
    if (grown == NULL)
        return err_nomem(e);
    set->routes = grown;
    memset(&set->routes[set->nroutes], 0, sizeof(*grown));
    if (smtpc_settings_from_cfg(c, hop, &s, e) < 0)
        return -1;
    s.max_idle = set->concurrency;
    if ((set->routes[set->nroutes].nexthop = strdup(hop)) == NULL)
        return err_nomem(e);
    if ((set->routes[set->nroutes].pool = smtpc_pool_new(&s, e)) == NULL) {
        free(set->routes[set->nroutes].nexthop);
        return -1;
    }
    *out = set->nroutes++;
    return 0;
}

/* queue_transport_load - "domain nexthop" lines, Postfix transport(5)
 * style: "example.com", ".example.com" (its subdomains) or "*". */
static int
queue_transport_load(struct queue_settings *set, const struct cfg *c,
                     const char *path, struct err *e)
{
    char line[QUEUE_LINE_MAX + 2];
    unsigned lineno = 0;
    FILE *fp;

    if ((fp = fopen(path, "re")) == NULL)
        return cfg_err(e, c, "transport_map", "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *key, *hop, *rest, *p;
        struct queue_transport *grown;
        size_t len = strlen(line), r;

        lineno++;
        if (len > QUEUE_LINE_MAX) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s:%u: line too long", path,
                           lineno);
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        p = line + strspn(line, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        key = p;
        p += strcspn(p, " \t");
        if (*p != '\0')
            *p++ = '\0';
        p += strspn(p, " \t");
        hop = p;
        p += strcspn(p, " \t");
        rest = p + strspn(p, " \t");
        *p = '\0';
        if (*hop == '\0' || (*rest != '\0' && *rest != '#')) {
            fclose(fp);
            return err_set(e, ERR_CONFIG,
                           "%s:%u: expected \"domain "
                           "next-hop\"",
                           path, lineno);
        }
        if (strcmp(key, "*") != 0 && strspn(key, ".") > 1) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s:%u: bad domain '%.100s'", path,
                           lineno, key);
        }
        if (queue_add_route(set, c, hop, &r, e) < 0) {
            fclose(fp);
            /* e->text is the reason: err_set() would write over it while
             * reading it. */
            err_prefix(e, "%s:%u", path, lineno);
            e->code = ERR_CONFIG;
            return -1;
        }
        grown =
            realloc(set->transports, (set->ntransports + 1) * sizeof(*grown));
        if (grown == NULL) {
            fclose(fp);
            return err_nomem(e);
        }
        set->transports = grown;
        if ((grown[set->ntransports].domain = strdup(key)) == NULL) {
            fclose(fp);
            return err_nomem(e);
        }
        grown[set->ntransports++].route = r;
    }
    fclose(fp);
    return 0;
}

/* queue_settings_new - the reloadable settings of c, routes and pools
 * built; NULL with e set when c is not usable. */
static struct queue_settings *
queue_settings_new(const struct cfg *c, struct err *e)
{
    struct queue_settings *set;
    const char *s;
    size_t r;

    if ((set = calloc(1, sizeof(*set))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    atomic_init(&set->refs, 1);
    set->min_backoff_ms = cfg_num(c, "minimal_backoff_time");
    set->max_backoff_ms = cfg_num(c, "maximal_backoff_time");
    set->lifetime_ms = cfg_num(c, "maximal_queue_lifetime");
    set->warn_ms = cfg_num(c, "delay_warning_time");
    set->run_delay_ms = cfg_num(c, "queue_run_delay");
    set->minfree = (unsigned long long)cfg_num(c, "queue_minfree");
    set->concurrency = (unsigned)cfg_num(c, "delivery_concurrency");
    if (set->max_backoff_ms < set->min_backoff_ms) {
        cfg_err(e, c, "maximal_backoff_time",
                "shorter than minimal_backoff_time");
        goto fail;
    }
    if ((s = cfg_str(c, "next_hop")) == NULL) {
        cfg_err(e, c, "next_hop", "delivery = queue needs a next_hop");
        goto fail;
    }
    if (queue_add_route(set, c, s, &r, e) < 0) {
        if (e->code == ERR_CONFIG)
            cfg_err(e, c, "next_hop", "%s", e->text);
        goto fail;
    }
    if ((s = cfg_str(c, "transport_map")) != NULL &&
        queue_transport_load(set, c, s, e) < 0)
        goto fail;
    return set;
fail:
    queue_settings_release(set);
    return NULL;
}

struct queue *
queue_open(const struct cfg *c, struct err *e)
{
    struct queue *q;
    const char *s;
    struct stat st;

    if ((q = calloc(1, sizeof(*q))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    q->dfd = q->tmp_fd = q->queue_fd = q->hold_fd = q->corrupt_fd = -1;
    q->defer_fd = q->lock_fd = q->fifo_fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->gone, NULL);
    atomic_init(&q->seq, ((unsigned)getpid() << 8) ^ 0x8000000u);
    if ((q->table = calloc(1024, sizeof(*q->table))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    q->table_size = 1024;
    if ((s = cfg_str(c, "myhostname")) != NULL)
        snprintf(q->hostname, sizeof(q->hostname), "%s", s);
    else if (gethostname(q->hostname, sizeof(q->hostname) - 1) < 0)
        snprintf(q->hostname, sizeof(q->hostname), "localhost");
    q->file_max = 2 * (size_t)cfg_num(c, "message_size_limit") + (64u << 20);
    if ((q->set = queue_settings_new(c, e)) == NULL)
        goto fail;
    s = cfg_str(c, "queue_directory");
    if (snprintf(q->dir, sizeof(q->dir), "%s", s) >= (int)sizeof(q->dir)) {
        cfg_err(e, c, "queue_directory", "name too long");
        goto fail;
    }
    if (mkdir(q->dir, 0700) < 0 && errno != EEXIST) {
        cfg_err(e, c, "queue_directory", "mkdir %s: %s", q->dir,
                strerror(errno));
        goto fail;
    }
    if ((q->dfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        cfg_err(e, c, "queue_directory", "%s: %s", q->dir, strerror(errno));
        goto fail;
    }
    if (queue_subdir(q, "tmp", &q->tmp_fd, e) < 0 ||
        queue_subdir(q, "queue", &q->queue_fd, e) < 0 ||
        queue_subdir(q, "hold", &q->hold_fd, e) < 0 ||
        queue_subdir(q, "corrupt", &q->corrupt_fd, e) < 0 ||
        queue_subdir(q, "defer", &q->defer_fd, e) < 0)
        goto fail;
    if ((q->lock_fd =
             openat(q->dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        err_sys(e, ERR_IO, "queue_directory: %s/lock", q->dir);
        goto fail;
    }
    if (flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        err_set(e, ERR_CONFIG,
                "queue_directory %s is in use by another "
                "relaychaind",
                q->dir);
        goto fail;
    }
    if (mkfifoat(q->dfd, "trigger", 0600) < 0 && errno != EEXIST) {
        err_sys(e, ERR_IO, "queue_directory: mkfifo %s/trigger", q->dir);
        goto fail;
    }
    if (fstatat(q->dfd, "trigger", &st, 0) < 0 || !S_ISFIFO(st.st_mode)) {
        err_set(e, ERR_CONFIG, "queue_directory: %s/trigger is not a FIFO",
                q->dir);
        goto fail;
    }
    if ((q->fifo_fd =
             openat(q->dfd, "trigger", O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
        err_sys(e, ERR_IO, "queue_directory: %s/trigger", q->dir);
        goto fail;
    }
    return q;
fail:
    queue_free(q);
    return NULL;
}

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
    return left;
}

void
queue_free(struct queue *q)
{
    size_t i;

    if (q == NULL)
        return;
    for (i = 0; i < q->table_size && q->table != NULL; i++) {
        struct queue_entry *en, *next;

        for (en = q->table[i]; en != NULL; en = next) {
            next = en->hnext;
            free(en);
        }
    }
    free(q->table);
    free(q->heap);
    queue_settings_release(q->set);
    if (q->fifo_fd >= 0)
        close(q->fifo_fd);
    if (q->lock_fd >= 0)
        close(q->lock_fd);
    if (q->defer_fd >= 0)
        close(q->defer_fd);
    if (q->corrupt_fd >= 0)
        close(q->corrupt_fd);
    if (q->hold_fd >= 0)
        close(q->hold_fd);
    if (q->queue_fd >= 0)
        close(q->queue_fd);
    if (q->tmp_fd >= 0)
        close(q->tmp_fd);
    if (q->dfd >= 0)
        close(q->dfd);
    pthread_cond_destroy(&q->gone);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

struct queue_settings *
queue_settings_load(struct queue *q, const struct cfg *c, struct err *e)
{
    const char *dir = cfg_str(c, "queue_directory");

    if (dir == NULL || strcmp(dir, q->dir) != 0)
        log_warning(NULL,
                    "queue_directory changed; restart relaychaind to use "
                    "it (still %s)",
                    q->dir);
    return queue_settings_new(c, e);
}

int
queue_settings_check(const struct cfg *c, struct err *e)
{
    struct queue_settings *set;

    if ((set = queue_settings_new(c, e)) == NULL)
        return -1;
    queue_settings_release(set);
    return 0;
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

int
queue_trigger_at(int dfd, const char *line)
{
    int fd = openat(dfd, "trigger",
                    O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    size_t len = strlen(line);
    struct stat st;
    ssize_t n;

    /* ENXIO: a FIFO nobody reads, the daemon is not running. */
    if (fd < 0 && errno != ELOOP)
        return -1;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return -2;
    }
    n = write(fd, line, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}
