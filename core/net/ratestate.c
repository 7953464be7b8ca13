/*
 * ratestate - where the rate limit counters live: this process, or Redis
 *
 * The memory store is an open-addressed table of RATESTATE_SLOTS
 * counters, each "rule key, period" with its window and the counts of
 * that window and the one before; a full neighbourhood gives up its
 * stalest counter, so a flood of distinct keys can make a limit forget,
 * never refuse mail wrongly. The Redis store holds RATESTATE_CONNS
 * connections, each under its own lock, so that checks of different
 * sessions overlap; a check takes a free one or waits for one. When one
 * connection finds Redis gone, the others are stale (st->gen) and
 * connect again before their next use. Its keys are
 * "relaychain:rl:WHO:VALUE:PERIOD:WINDOW" and expire two periods after their
 * window. The memory table also serves as the fallback while Redis is away.
 */
#include "config.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "util/log.h"
#include "util/ratelimit.h"
#include "net/netio.h"
#include "net/ratestate.h"

#define RATESTATE_PROBE 8       /* slots a key may land in */
#define RATESTATE_RETRY_MS 1000 /* between attempts to reach Redis */
#define RATESTATE_KEY_MAX 400
#define RATESTATE_CONNS 4 /* connections to Redis */
#define RATESTATE_HOST_MAX 255

/* The window arithmetic of util/ratelimit.c, over Redis' clock. KEYS are
 * the counters' prefixes; ARGV period, count and amount per key. A
 * negative amount gives back what a message took (never refused; a
 * counter never goes below 0). Returns 0 when all were counted, else
 * the 1-based key that would go over. */
static const char ratestate_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "for i = 1, #KEYS do\n"
    "  local period = tonumber(ARGV[3 * i - 2])\n"
    "  local count = tonumber(ARGV[3 * i - 1])\n"
    "  local n = tonumber(ARGV[3 * i])\n"
    "  local w = math.floor(now / period)\n"
    "  local cur = tonumber(redis.call('GET', KEYS[i] .. ':' .. w) or '0')\n"
    "  local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (w - 1)) "
    "or '0')\n"
    "  local into = now % period\n"
    "  if n > 0 and cur + prev * (period - into) / period + n > count then\n"
    "    return i\n"
    "  end\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  local period = tonumber(ARGV[3 * i - 2])\n"
    "  local k = KEYS[i] .. ':' .. math.floor(now / period)\n"
    "  if redis.call('INCRBY', k, tonumber(ARGV[3 * i])) < 0 then\n"
    "    redis.call('SET', k, 0)\n"
    "  end\n"
    "  redis.call('PEXPIRE', k, 2 * period + 1000)\n"
    "end\n"
    "return 0\n";

struct ratestate_slot {
    char key[RATESTATE_KEY_MAX];
    long long window, cur, prev;
};

/* One connection to Redis, used by one check at a time. */
struct ratestate_conn {
    pthread_mutex_t lock;
    redisContext *rc;
    char sha[41];
    unsigned gen; /* st->gen when it connected */
};

struct ratestate {
    pthread_mutex_t lock; /* the memory table and the fields below it */
    struct ratestate_slot *slots;
    /* Redis; host[0] == '\0': memory only */
    char host[RATESTATE_HOST_MAX + 1];
    int port, db, timeout_ms;
    enum ratestate_on_error on_error;
    int down;           /* logged as away, not yet as back */
    long long retry_at; /* netio_now_ms() of the next attempt */
    unsigned gen;       /* counts the drops: older connections are stale */
    atomic_uint next;   /* where the next check starts looking */
    struct ratestate_conn conns[RATESTATE_CONNS];
};

static int
ratestate_parse(const char *spec, char *host, size_t hn, int *port, int *db,
                struct err *e)
{
    const char *p, *colon, *slash;
    unsigned long v;
    char *end;
    size_t k;

    if (strncmp(spec, "redis://", 8) != 0)
        return err_set(e, ERR_CONFIG,
                       "'%.100s' is not memory or redis://host:port/db", spec);
    p = spec + 8;
    slash = strchr(p, '/');
    colon = strchr(p, ':');
    if (colon != NULL && slash != NULL && colon > slash)
        colon = NULL;
    k = colon != NULL ? (size_t)(colon - p)
                      : (slash != NULL ? (size_t)(slash - p) : strlen(p));
    if (k == 0 || k >= hn || strcspn(p, "@[]?#") < k)
        return err_set(e, ERR_CONFIG, "'%.100s': no host, or not host:port",
                       spec);
    memcpy(host, p, k);
    host[k] = '\0';
    *port = 6379;
    *db = 0;
    if (colon != NULL) {
        v = strtoul(colon + 1, &end, 10);
        if (end == colon + 1 || v < 1 || v > 65535 ||
            (*end != '\0' && *end != '/'))
            return err_set(e, ERR_CONFIG, "'%.100s': port is not 1 to 65535",
                           spec);
        *port = (int)v;
    }
    if (slash != NULL && slash[1] != '\0') {
        v = strtoul(slash + 1, &end, 10);
        if (*end != '\0' || v > 1000)
            return err_set(e, ERR_CONFIG,
                           "'%.100s': database is not 0 to 1000", spec);
        *db = (int)v;
    }
    return 0;
}

int
ratestate_spec_check(const char *spec, struct err *e)
{
    char host[RATESTATE_HOST_MAX + 1];
    int port, db;

    if (strcmp(spec, "memory") == 0)
        return 0;
    return ratestate_parse(spec, host, sizeof(host), &port, &db, e);
}

static void ratestate_destroy(struct ratestate *st);

/* The memory store is one for the process, shared by the runtimes a
 * reload makes (the new one is made before the old one is freed), so a
 * reload keeps the counts as Redis does; freed with its last user. */
static pthread_mutex_t ratestate_memory_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ratestate *ratestate_memory;
static unsigned ratestate_memory_refs;

/* ratestate_make - a new store for spec */
static struct ratestate *
ratestate_make(const char *spec, enum ratestate_on_error on_error,
               int timeout_ms, struct err *e)
{
    struct ratestate *st;
    size_t i;

    if ((st = calloc(1, sizeof(*st))) == NULL ||
        (st->slots = calloc(RATESTATE_SLOTS, sizeof(*st->slots))) == NULL) {
        free(st);
        err_nomem(e);
        return NULL;
    }
    if (strcmp(spec, "memory") != 0 &&
        ratestate_parse(spec, st->host, sizeof(st->host), &st->port, &st->db,
                        e) < 0) {
        free(st->slots);
        free(st);
        return NULL;
    }
    st->on_error = on_error;
    st->timeout_ms = timeout_ms;
    pthread_mutex_init(&st->lock, NULL);
    for (i = 0; i < RATESTATE_CONNS; i++)
        pthread_mutex_init(&st->conns[i].lock, NULL);
    return st;
}

struct ratestate *
ratestate_new(const char *spec, enum ratestate_on_error on_error,
              int timeout_ms, struct err *e)
{
    struct ratestate *st;

    if (strcmp(spec, "memory") != 0)
        return ratestate_make(spec, on_error, timeout_ms, e);
    pthread_mutex_lock(&ratestate_memory_lock);
    if (ratestate_memory == NULL &&
        (ratestate_memory = ratestate_make(spec, on_error, timeout_ms, e)) !=
            NULL)
        ratestate_memory_refs = 0;
    if ((st = ratestate_memory) != NULL)
        ratestate_memory_refs++;
    pthread_mutex_unlock(&ratestate_memory_lock);
    return st;
}

void
ratestate_free(struct ratestate *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&ratestate_memory_lock);
    if (st == ratestate_memory) {
        if (--ratestate_memory_refs > 0) {
            pthread_mutex_unlock(&ratestate_memory_lock);
            return;
        }
        ratestate_memory = NULL;
    }
    pthread_mutex_unlock(&ratestate_memory_lock);
    ratestate_destroy(st);
}

static void
ratestate_destroy(struct ratestate *st)
{
    size_t i;

    for (i = 0; i < RATESTATE_CONNS; i++) {
        if (st->conns[i].rc != NULL)
            redisFree(st->conns[i].rc);
        pthread_mutex_destroy(&st->conns[i].lock);
    }
    pthread_mutex_destroy(&st->lock);
    free(st->slots);
    free(st);
}

/* ----------------------------------------------------------- memory */

static unsigned long
ratestate_hash(const char *s)
{
    unsigned long h = 5381;

    while (*s != '\0')
        h = h * 33 + (unsigned char)*s++;
    return h;
}

/* ratestate_slot - the counter of key, rolled to window w; under lock. */
static struct ratestate_slot *
ratestate_slot(struct ratestate *st, const char *key, long long w)
{
    unsigned long h = ratestate_hash(key);
    struct ratestate_slot *sl, *victim = NULL;
    size_t i;

    for (i = 0; i < RATESTATE_PROBE; i++) {
        sl = &st->slots[(h + i) % RATESTATE_SLOTS];
        if (strcmp(sl->key, key) == 0)
            break;
        if (victim == NULL || sl->key[0] == '\0' ||
            (victim->key[0] != '\0' && sl->window < victim->window))
            victim = sl;
        sl = NULL;
    }
    if (sl == NULL) {
        sl = victim;
        snprintf(sl->key, sizeof(sl->key), "%s", key);
        sl->window = w;
        sl->cur = sl->prev = 0;
    }
    if (sl->window == w - 1) {
        sl->prev = sl->cur;
        sl->cur = 0;
    } else if (sl->window != w) {
        sl->prev = sl->cur = 0;
    }
    sl->window = w;
    return sl;
}

/* ratestate_key - the counter of rule r: two rules on the same subject
 * and period, one on messages and one on recipients, count apart. */
static void
ratestate_key(const struct ratelimit_rule *r, char *out, size_t n)
{
    snprintf(out, n, "relaychain:rl:%s:%lld:%s", r->key, r->period_ms,
             r->unit == RATELIMIT_MESSAGES ? "msg" : "rcpt");
}

static long long
ratestate_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ratestate_take_memory - the check in this process; under lock. */
static int
ratestate_take_memory(struct ratestate *st, const struct ratelimit_set *set,
                      const size_t *idx, const long long *amount, size_t nidx,
                      size_t *over)
{
    long long now = ratestate_wall_ms();
    char key[RATESTATE_KEY_MAX];
    size_t i;

    for (i = 0; i < nidx; i++) {
        const struct ratelimit_rule *r = &set->rules[idx[i]];
        struct ratestate_slot *sl;

        ratestate_key(r, key, sizeof(key));
        sl = ratestate_slot(st, key, ratelimit_window(now, r->period_ms));
        if (amount[i] > 0 && !ratelimit_allows(sl->prev, sl->cur, amount[i],
                                               r->count, now, r->period_ms)) {
            *over = idx[i];
            return RATESTATE_OVER;
        }
    }
    for (i = 0; i < nidx; i++) {
        const struct ratelimit_rule *r = &set->rules[idx[i]];
        struct ratestate_slot *sl;

        ratestate_key(r, key, sizeof(key));
        sl = ratestate_slot(st, key, ratelimit_window(now, r->period_ms));
        sl->cur = sl->cur + amount[i] > 0 ? sl->cur + amount[i] : 0;
    }
    return RATESTATE_TAKEN;
}

/* ------------------------------------------------------------ redis */

/* ratestate_drop - c failed for why: close it, make every other
 * connection stale, and say once that Redis is away. c locked. */
static void
ratestate_drop(struct ratestate *st, struct ratestate_conn *c, const char *why)
{
    if (c->rc != NULL) {
        redisFree(c->rc);
        c->rc = NULL;
    }
    pthread_mutex_lock(&st->lock);
    st->gen++;
    st->retry_at = netio_now_ms() + RATESTATE_RETRY_MS;
    if (!st->down) {
        st->down = 1;
        log_warning(NULL,
                    "state store redis://%s:%d/%d: %s; rate limits are %s "
                    "until it is back",
                    st->host, st->port, st->db, why,
                    st->on_error == RATESTATE_LOCAL ? "counted on this node"
                                                    : "answered 4xx");
    }
    pthread_mutex_unlock(&st->lock);
}

/* ratestate_connect - c connected, with the script loaded; 0, or -1
 * (dropped and logged, or Redis not to be tried yet). c locked. */
static int
ratestate_connect(struct ratestate *st, struct ratestate_conn *c)
{
    struct timeval tv = {st->timeout_ms / 1000,
                         (st->timeout_ms % 1000) * 1000};
    redisReply *r;
    char why[300];
    unsigned gen;
    int wait;

    pthread_mutex_lock(&st->lock);
    gen = st->gen;
    wait = st->down && netio_now_ms() < st->retry_at;
    pthread_mutex_unlock(&st->lock);
    if (c->rc != NULL && c->gen == gen)
        return 0;
    if (c->rc != NULL) {
        /* another connection saw Redis go: this one may be dead too */
        redisFree(c->rc);
        c->rc = NULL;
    }
    if (wait)
        return -1;
    c->rc = redisConnectWithTimeout(st->host, st->port, tv);
    if (c->rc == NULL || c->rc->err) {
        snprintf(why, sizeof(why), "connect: %s",
                 c->rc != NULL ? c->rc->errstr : "out of memory");
        ratestate_drop(st, c, why);
        return -1;
    }
    redisSetTimeout(c->rc, tv);
    if (st->db != 0) {
        r = redisCommand(c->rc, "SELECT %d", st->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, sizeof(why), "SELECT %d: %s", st->db,
                     r != NULL ? r->str : c->rc->errstr);
            freeReplyObject(r);
            ratestate_drop(st, c, why);
            return -1;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c->rc, "SCRIPT LOAD %s", ratestate_script);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD: %s",
                 r == NULL                      ? c->rc->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                                                : "unexpected reply");
        freeReplyObject(r);
        ratestate_drop(st, c, why);
        return -1;
    }
    memcpy(c->sha, r->str, 40);
    c->sha[40] = '\0';
    freeReplyObject(r);
    pthread_mutex_lock(&st->lock);
    c->gen = st->gen;
    if (st->down) {
        st->down = 0;
        log_info(NULL,
                 "state store redis://%s:%d/%d is back; rate limits "
                 "are shared again",
                 st->host, st->port, st->db);
    }
    pthread_mutex_unlock(&st->lock);
    return 0;
}

/* ratestate_take_redis - the check in Redis: RATESTATE_TAKEN or
 * RATESTATE_OVER, or -1 when Redis did not answer (dropped, logged).
 * c locked. */
static int
ratestate_take_redis(struct ratestate *st, struct ratestate_conn *c,
                     const struct ratelimit_set *set, const size_t *idx,
                     const long long *amount, size_t nidx, size_t *over,
                     struct err *e)
{
    size_t argc = 3 + 4 * nidx, i, a = 0; /* EVALSHA sha n keys triples */
    const char **argv;
    size_t *argvlen;
    char(*num)[24], (*keys)[RATESTATE_KEY_MAX];
    char nkeys[24], why[300];
    redisReply *r = NULL;
    int tries, rc = -1;

    argv = calloc(argc, sizeof(*argv));
    argvlen = calloc(argc, sizeof(*argvlen));
    num = calloc(3 * nidx, sizeof(*num));
    keys = calloc(nidx, sizeof(*keys));
    if (argv == NULL || argvlen == NULL || num == NULL || keys == NULL) {
        rc = err_nomem(e);
        goto out;
    }
    argv[a++] = "EVALSHA";
    argv[a++] = c->sha;
    snprintf(nkeys, sizeof(nkeys), "%zu", nidx);
    argv[a++] = nkeys;
    for (i = 0; i < nidx; i++) {
        ratestate_key(&set->rules[idx[i]], keys[i], sizeof(keys[i]));
        argv[a++] = keys[i];
    }
    for (i = 0; i < nidx; i++) {
        snprintf(num[3 * i], sizeof(num[0]), "%lld",
                 set->rules[idx[i]].period_ms);
        snprintf(num[3 * i + 1], sizeof(num[0]), "%lld",
                 set->rules[idx[i]].count);
        snprintf(num[3 * i + 2], sizeof(num[0]), "%lld", amount[i]);
        argv[a++] = num[3 * i];
        argv[a++] = num[3 * i + 1];
        argv[a++] = num[3 * i + 2];
    }
    assert(a == argc);
    for (i = 0; i < a; i++)
        argvlen[i] = strlen(argv[i]);
    for (tries = 0; tries < 2; tries++) {
        if (ratestate_connect(st, c) < 0)
            goto out;
        argv[1] = c->sha;
        argvlen[1] = strlen(c->sha);
        r = redisCommandArgv(c->rc, (int)a, argv, argvlen);
        if (r == NULL) {
            snprintf(why, sizeof(why), "EVALSHA: %s", c->rc->errstr);
            ratestate_drop(st, c, why);
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR &&
            strncmp(r->str, "NOSCRIPT", 8) == 0) {
            /* flushed or restarted: load it again, once */
            freeReplyObject(r);
            r = NULL;
            redisFree(c->rc);
            c->rc = NULL;
            continue;
        }
        break;
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0 ||
        (size_t)r->integer > nidx) {
        snprintf(why, sizeof(why), "EVALSHA: %s",
                 r != NULL && r->type == REDIS_REPLY_ERROR ? r->str
                                                           : "unexpected "
                                                             "reply");
        ratestate_drop(st, c, why);
        goto out;
    }
    if (r->integer == 0) {
        rc = RATESTATE_TAKEN;
    } else {
        *over = idx[r->integer - 1];
        rc = RATESTATE_OVER;
    }
out:
    freeReplyObject(r);
    free(keys);
    free(num);
    free(argvlen);
    free(argv);
    return rc;
}

/* ratestate_conn - a connection for one check, locked: a free one if
 * any, else the next in turn once it is free. */
static struct ratestate_conn *
ratestate_conn(struct ratestate *st)
{
    unsigned first = atomic_fetch_add(&st->next, 1u) % RATESTATE_CONNS;
    size_t k;

    for (k = 0; k < RATESTATE_CONNS; k++) {
        struct ratestate_conn *c = &st->conns[(first + k) % RATESTATE_CONNS];

        if (pthread_mutex_trylock(&c->lock) == 0)
            return c;
    }
    pthread_mutex_lock(&st->conns[first].lock);
    return &st->conns[first];
}

int
ratestate_shared(const struct ratestate *st)
{
    return st != NULL && st->host[0] != '\0';
}

int
ratestate_take(struct ratestate *st, const struct ratelimit_set *set,
               const size_t *idx, const long long *amount, size_t nidx,
               size_t *over, struct err *e)
{
    int rc;

    if (nidx == 0)
        return RATESTATE_TAKEN;
    err_clear(e);
    if (st->host[0] != '\0') {
        struct ratestate_conn *c = ratestate_conn(st);

        rc = ratestate_take_redis(st, c, set, idx, amount, nidx, over, e);
        pthread_mutex_unlock(&c->lock);
        if (rc >= 0 || e->code == ERR_NOMEM)
            return rc;
        if (st->on_error == RATESTATE_TEMPFAIL)
            return RATESTATE_UNAVAILABLE;
    }
    pthread_mutex_lock(&st->lock);
    rc = ratestate_take_memory(st, set, idx, amount, nidx, over);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int
ratestate_give(struct ratestate *st, const struct ratelimit_set *set,
               const size_t *idx, const long long *amount, size_t nidx,
               struct err *e)
{
    long long *neg;
    size_t i, over;
    int rc;

    if (nidx == 0)
        return 0;
    if ((neg = calloc(nidx, sizeof(*neg))) == NULL)
        return err_nomem(e);
    for (i = 0; i < nidx; i++)
        neg[i] = -amount[i];
    rc = ratestate_take(st, set, idx, neg, nidx, &over, e);
    free(neg);
    return rc == RATESTATE_TAKEN ? 0 : -1;
}
