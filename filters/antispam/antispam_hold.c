/*
 * antispam_hold - compromised accounts: per-key sending counts, a
 *     baseline, and the holds (hold_user)
 *
 * A key is "user:NAME" for an authenticated user, "client:ADDR" for a
 * client that relays without AUTH. For each the tracker keeps:
 *
 *   - a ring of up to FLT_AS_HOLD_BUCKETS time buckets over hold_window
 *     (a bucket is window/60 seconds, at least one), each counting
 *     messages, new distinct recipients, new destination domains,
 *     messages the engine scored and those at or over its required
 *     score; the window's counts are the sum of the live buckets;
 *   - the recipients it sent to (FLT_AS_HOLD_RCPTS hashes with the time
 *     each was last used): a recipient counts as distinct when it was
 *     not used within the window. Exact up to that many distinct
 *     recipients a window; past it the oldest are forgotten and may
 *     count again, so the count only errs high, where it is past any
 *     sane limit anyway;
 *   - the destination domains it used (FLT_AS_HOLD_DOMAINS hashes, the
 *     least recently used forgotten first): a domain not among them is
 *     new;
 *   - a baseline per measure: an exponential moving average (weight
 *     1/FLT_AS_HOLD_EMA) of its totals per whole window, windows without
 *     mail counting as zero; the window the key was first seen in is
 *     left out, as it was seen in part.
 *
 * flt_as_hold_judge() is the decision, a pure function of the counts:
 * past a fixed ceiling, or past max(floor, factor x baseline) once the
 * baseline has seen a whole window. A key first seen has no baseline:
 * only the ceilings apply to it until a whole window of it has passed.
 *
 * A held key is one file in hold_directory (written by rename, fsynced):
 *     key: user:alice
 *     since: 1765100000
 *     reason: recipients 412 in 3600s > 10x baseline 37.0 (floor 200)
 * named "user.alice" or "client.192.0.2.1" (octets other than letters,
 * digits and .-_@+ written %XX; a name past FLT_AS_HOLD_NAME_MAX octets
 * cut, with a hash of the whole key after a "#"). The file is looked at
 * (fstatat) only for a key held in memory, so "relaychain user release" (which
 * removes it) takes effect at the key's next message, with no reload; the
 * release starts the key's window again, and its baseline stays. A held
 * key's messages are not counted. The directory is read at start-up;
 * a key not in memory (evicted, or new) is looked for when it is first
 * seen.
 *
 * Memory is bounded: at most max_keys keys (about 3.5 KB each), the least
 * recently seen one not held evicted first, so an attacker's number of
 * client addresses costs nothing beyond that. One mutex guards the
 * tracker; nothing slow runs under it but the stat of a held key's file
 * and the writing of a new hold.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filters/antispam/antispam_int.h"
#include "util/cfg.h"
#include "util/log.h"

#define FLT_AS_HOLD_BUCKETS 60
#define FLT_AS_HOLD_RCPTS 128
#define FLT_AS_HOLD_DOMAINS 64
#define FLT_AS_HOLD_EMA 8         /* baseline weight 1/8 per window */
#define FLT_AS_HOLD_IDLE_MAX 64   /* empty windows folded in at most */
#define FLT_AS_HOLD_FILE_MAX 4096 /* octets of a hold file read */
#define FLT_AS_HOLD_NAME_MAX 240

struct flt_as_hold_bucket {
    int64_t slot; /* now / width when it was filled; stale otherwise */
    uint32_t n[FLT_AS_HM_N];
    uint32_t scored, spam;
};

struct flt_as_hold_seen {
    uint32_t hash;
    uint32_t when; /* 0: empty */
};

struct flt_as_hold_ent {
    struct flt_as_hold_ent *next;          /* hash chain */
    struct flt_as_hold_ent *older, *newer; /* the recency list */
    char *key;
    time_t last;
    int held;
    struct flt_as_hold_bucket b[FLT_AS_HOLD_BUCKETS];
    struct flt_as_hold_seen rcpt[FLT_AS_HOLD_RCPTS];
    struct flt_as_hold_seen dom[FLT_AS_HOLD_DOMAINS];
    int64_t period;             /* now / window of ptot */
    uint32_t ptot[FLT_AS_HM_N]; /* totals of that window */
    double ema[FLT_AS_HM_N];    /* the baseline */
    unsigned periods;           /* whole windows folded into it */
    int partial;                /* period began before the key was seen */
};

struct flt_as_hold {
    struct flt_as_hold_limits l;
    long long width; /* seconds a bucket */
    int nb;          /* buckets in the window */
    int dfd;
    uint32_t seed;
    pthread_mutex_t lock;
    size_t nhash, nkeys;
    struct flt_as_hold_ent **hash;
    struct flt_as_hold_ent *oldest, *newest;
};

/* ---------------------------------------------------------------- keys */

static uint32_t
flt_as_hold_hash(uint32_t seed, const char *s, size_t len)
{
    uint32_t h = 2166136261u ^ seed;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 'A' && c <= 'Z') /* addresses compare without case */
            c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 16777619u;
    }
    return h != 0 ? h : 1;
}

const char *
flt_as_hold_key(const char *auth_user, const char *client_addr, char *out,
                size_t n)
{
    char *p;
    int len;

    if (auth_user != NULL && auth_user[0] != '\0')
        len = snprintf(out, n, "user:%s", auth_user);
    else if (client_addr != NULL && client_addr[0] != '\0')
        len = snprintf(out, n, "client:%s", client_addr);
    else
        return NULL;
    if (len < 0 || (size_t)len >= n)
        return NULL;
    /* The key is a line of the hold file and of the log: a control
     * octet in a login name would break either. */
    for (p = out; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return out;
}

/* flt_as_hold_file_name - the file name of key into out (size n, at
 * least FLT_AS_HOLD_NAME_MAX + 1): "user:alice" -> "user.alice", octets
 * other than letters, digits and .-_@+ as %XX. A name that would be
 * longer than FLT_AS_HOLD_NAME_MAX is cut and ends in "#" and 16 hex
 * digits of a hash of the whole key (FNV-1a, 64 bits, unseeded: the
 * same in every run). The key itself is inside the file. NULL for a key
 * without a kind. */
static const char *
flt_as_hold_file_name(const char *key, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *colon = strchr(key, ':'), *p;
    size_t k, room = FLT_AS_HOLD_NAME_MAX - 17;
    uint64_t fnv = 14695981039346656037ull;

    if (colon == NULL || colon == key || (size_t)(colon - key) + 2 > room ||
        n < FLT_AS_HOLD_NAME_MAX + 1)
        return NULL;
    memcpy(out, key, (size_t)(colon - key));
    k = (size_t)(colon - key);
    out[k++] = '.';
    for (p = colon + 1; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '@' ||
            c == '+' || (c == '.' && p != colon + 1)) {
            if (k + 1 > room)
                break;
            out[k++] = (char)c;
        } else {
            if (k + 3 > room)
                break;
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    if (*p != '\0') {
        for (p = key; *p != '\0'; p++)
            fnv = (fnv ^ (unsigned char)*p) * 1099511628211ull;
        snprintf(out + k, n - k, "#%016llx", (unsigned long long)fnv);
        return out;
    }
    out[k] = '\0';
    return out;
}

/* ------------------------------------------------------------- tracker */

struct flt_as_hold *
flt_as_hold_new(const struct flt_as_hold_limits *l, int dfd, struct err *e)
{
    struct flt_as_hold *h;

    if (l->window < 10 || l->max_keys == 0 || !(l->factor > 1.0)) {
        err_set(e, ERR_CONFIG,
                "hold: window under 10s, no keys or a factor not over 1");
        return NULL;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    h->l = *l;
    h->width = (l->window + FLT_AS_HOLD_BUCKETS - 1) / FLT_AS_HOLD_BUCKETS;
    h->nb = (int)((l->window + h->width - 1) / h->width);
    h->dfd = dfd;
    h->seed = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^
              (uint32_t)(uintptr_t)h;
    for (h->nhash = 64; h->nhash < l->max_keys * 2; h->nhash *= 2)
        ;
    if ((h->hash = calloc(h->nhash, sizeof(*h->hash))) == NULL) {
        free(h);
        err_nomem(e);
        return NULL;
    }
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h->hash);
        free(h);
        err_set(e, ERR_TEMP, "hold: pthread_mutex_init failed");
        return NULL;
    }
    return h;
}

void
flt_as_hold_free(struct flt_as_hold *h)
{
    struct flt_as_hold_ent *x, *nx;
    size_t i;

    if (h == NULL)
        return;
    for (i = 0; i < h->nhash; i++)
        for (x = h->hash[i]; x != NULL; x = nx) {
            nx = x->next;
            free(x->key);
            free(x);
        }
    free(h->hash);
    pthread_mutex_destroy(&h->lock);
    if (h->dfd >= 0)
        close(h->dfd);
    free(h);
}

size_t
flt_as_hold_nkeys(struct flt_as_hold *h)
{
    size_t n;

    pthread_mutex_lock(&h->lock);
    n = h->nkeys;
    pthread_mutex_unlock(&h->lock);
    return n;
}

static struct flt_as_hold_ent **
flt_as_hold_slot(struct flt_as_hold *h, const char *key)
{
    struct flt_as_hold_ent **pp;

    pp =
        &h->hash[flt_as_hold_hash(h->seed, key, strlen(key)) & (h->nhash - 1)];
    while (*pp != NULL && strcmp((*pp)->key, key) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void
flt_as_hold_unlink(struct flt_as_hold *h, struct flt_as_hold_ent *x)
{
    if (x->older != NULL)
        x->older->newer = x->newer;
    else
        h->oldest = x->newer;
    if (x->newer != NULL)
        x->newer->older = x->older;
    else
        h->newest = x->older;
    x->older = x->newer = NULL;
}

static void
flt_as_hold_push(struct flt_as_hold *h, struct flt_as_hold_ent *x)
{
    x->older = h->newest;
    x->newer = NULL;
    if (h->newest != NULL)
        h->newest->newer = x;
    else
        h->oldest = x;
    h->newest = x;
}

/* flt_as_hold_evict - drop the least recently seen key, one not held
 * when there is one: the walk passes over held keys only, which are few
 * (each is an incident an admin is told of). */
static void
flt_as_hold_evict(struct flt_as_hold *h)
{
    struct flt_as_hold_ent *x, **pp;

    for (x = h->oldest; x != NULL && x->held; x = x->newer)
        ;
    if (x == NULL && (x = h->oldest) == NULL)
        return;
    pp = flt_as_hold_slot(h, x->key);
    *pp = x->next;
    flt_as_hold_unlink(h, x);
    free(x->key);
    free(x);
    h->nkeys--;
}

/* flt_as_hold_file_exists - 1 when key has a hold file, 0 when not; a
 * directory that cannot be looked at keeps what memory says (keep). */
static int
flt_as_hold_file_exists(const struct flt_as_hold *h, const char *key, int keep)
{
    char name[FLT_AS_HOLD_NAME_MAX + 16];
    struct stat sb;

    if (h->dfd < 0 || flt_as_hold_file_name(key, name, sizeof(name)) == NULL)
        return keep;
    if (fstatat(h->dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return errno == ENOENT ? 0 : keep;
}

/* flt_as_hold_get - key's entry, made (and its file looked for) when
 * missing; NULL when out of memory. */
static struct flt_as_hold_ent *
flt_as_hold_get(struct flt_as_hold *h, const char *key, time_t now)
{
    struct flt_as_hold_ent **pp = flt_as_hold_slot(h, key), *x;

    if (*pp != NULL) {
        (*pp)->last = now;
        if (*pp != h->newest) {
            flt_as_hold_unlink(h, *pp);
            flt_as_hold_push(h, *pp);
        }
        return *pp;
    }
    if (h->nkeys >= h->l.max_keys) {
        flt_as_hold_evict(h);
        pp = flt_as_hold_slot(h, key);
    }
    if ((x = calloc(1, sizeof(*x))) == NULL)
        return NULL;
    if ((x->key = strdup(key)) == NULL) {
        free(x);
        return NULL;
    }
    x->last = now;
    x->period = (int64_t)now / h->l.window;
    x->partial = (int64_t)now % h->l.window != 0;
    x->held = flt_as_hold_file_exists(h, key, 0);
    *pp = x;
    flt_as_hold_push(h, x);
    h->nkeys++;
    return x;
}

/* flt_as_hold_roll - fold the windows that ended before now into x's
 * baseline. */
static void
flt_as_hold_roll(const struct flt_as_hold *h, struct flt_as_hold_ent *x,
                 time_t now)
{
    int64_t cur = (int64_t)now / h->l.window, k;
    int i;

    if (cur <= x->period)
        return;
    for (k = 0; k < cur - x->period && k < FLT_AS_HOLD_IDLE_MAX; k++) {
        /* The window the key was first seen in was seen in part: as a
         * baseline it would make the key's usual rate look like a jump. */
        if (k == 0 && x->partial) {
            x->partial = 0;
            continue;
        }
        for (i = 0; i < FLT_AS_HM_N; i++) {
            double v = k == 0 ? (double)x->ptot[i] : 0.0;

            if (x->periods == 0)
                x->ema[i] = v;
            else
                x->ema[i] += (v - x->ema[i]) / FLT_AS_HOLD_EMA;
        }
        x->periods++;
    }
    memset(x->ptot, 0, sizeof(x->ptot));
    x->period = cur;
}

/* flt_as_hold_bucket - the bucket of now, emptied when stale. */
static struct flt_as_hold_bucket *
flt_as_hold_bucket(const struct flt_as_hold *h, struct flt_as_hold_ent *x,
                   time_t now)
{
    int64_t slot = (int64_t)now / h->width;
    struct flt_as_hold_bucket *b = &x->b[slot % h->nb];

    if (b->slot != slot) {
        memset(b, 0, sizeof(*b));
        b->slot = slot;
    }
    return b;
}

static void
flt_as_hold_sum(const struct flt_as_hold *h, const struct flt_as_hold_ent *x,
                time_t now, struct flt_as_hold_counts *c)
{
    int64_t slot = (int64_t)now / h->width;
    int i, m;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < h->nb; i++) {
        const struct flt_as_hold_bucket *b = &x->b[i];

        if (b->slot > slot - h->nb && b->slot <= slot) {
            for (m = 0; m < FLT_AS_HM_N; m++)
                c->n[m] += b->n[m];
            c->scored += b->scored;
            c->spam += b->spam;
        }
    }
    for (m = 0; m < FLT_AS_HM_N; m++)
        c->baseline[m] = x->ema[m];
    c->periods = x->periods;
}

/* flt_as_hold_seen - note hash in set (n entries) at now; 1 when it was
 * not there, or not used since since. */
static int
flt_as_hold_seen(struct flt_as_hold_seen *set, size_t n, uint32_t hash,
                 uint32_t now, uint32_t since)
{
    size_t i, old = 0;

    for (i = 0; i < n; i++) {
        if (set[i].when != 0 && set[i].hash == hash) {
            int fresh = set[i].when < since;

            set[i].when = now;
            return fresh;
        }
        if (set[i].when < set[old].when)
            old = i;
    }
    set[old].hash = hash;
    set[old].when = now;
    return 1;
}

static void
flt_as_hold_reset(struct flt_as_hold_ent *x)
{
    memset(x->b, 0, sizeof(x->b));
    memset(x->ptot, 0, sizeof(x->ptot));
}

int
flt_as_hold_judge(const struct flt_as_hold_limits *l,
                  const struct flt_as_hold_counts *c, char *why, size_t n)
{
    static const char *const names[FLT_AS_HM_N] = {
        [FLT_AS_HM_MESSAGES] = "messages",
        [FLT_AS_HM_RCPTS] = "recipients",
        [FLT_AS_HM_DOMAINS] = "new domains",
    };
    int m;

    for (m = 0; m < FLT_AS_HM_N; m++)
        if (l->ceiling[m] > 0 && c->n[m] > l->ceiling[m]) {
            snprintf(why, n, "%s %lu in %llds > ceiling %lu", names[m],
                     c->n[m], l->window, l->ceiling[m]);
            return 1;
        }
    if (l->max_spam_share < 1.0 && c->scored >= l->min_scored &&
        c->scored > 0 &&
        (double)c->spam > l->max_spam_share * (double)c->scored) {
        snprintf(why, n, "spam %lu of %lu scored in %llds > share %.2f",
                 c->spam, c->scored, l->window, l->max_spam_share);
        return 1;
    }
    if (c->periods == 0)
        return 0;
    for (m = 0; m < FLT_AS_HM_N; m++)
        if (c->n[m] > l->floor[m] &&
            (double)c->n[m] > l->factor * c->baseline[m]) {
            snprintf(why, n, "%s %lu in %llds > %gx baseline %.1f (floor %lu)",
                     names[m], c->n[m], l->window, l->factor, c->baseline[m],
                     l->floor[m]);
            return 1;
        }
    return 0;
}

/* flt_as_hold_write - key's hold file, written whole by rename. */
static int
flt_as_hold_write(const struct flt_as_hold *h, const char *key, time_t now,
                  const char *why, struct err *e)
{
    char name[FLT_AS_HOLD_NAME_MAX + 16], tmp[FLT_AS_HOLD_NAME_MAX + 64];
    char text[FLT_AS_HOLD_KEY_MAX + FLT_AS_HOLD_WHY_MAX + 64];
    int fd, len, rc = 0;

    if (flt_as_hold_file_name(key, name, sizeof(name)) == NULL)
        return err_set(e, ERR_INPUT, "'%s' is not a key", key);
    len = snprintf(text, sizeof(text), "key: %s\nsince: %lld\nreason: %s\n",
                   key, (long long)now, why);
    if (len < 0 || (size_t)len >= sizeof(text))
        return err_set(e, ERR_INPUT, "the hold record is too long");
    snprintf(tmp, sizeof(tmp), ".tmp.%ld.%s", (long)getpid(), name);
    fd = openat(h->dfd, tmp,
                O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0)
        return err_sys(e, ERR_IO, "%s", tmp);
    if (write(fd, text, (size_t)len) != len || fsync(fd) < 0)
        rc = err_sys(e, ERR_IO, "%s", tmp);
    if (close(fd) < 0 && rc == 0)
        rc = err_sys(e, ERR_IO, "%s", tmp);
    if (rc == 0 && renameat(h->dfd, tmp, h->dfd, name) < 0)
        rc = err_sys(e, ERR_IO, "%s", name);
    if (rc < 0) {
        unlinkat(h->dfd, tmp, 0);
        return -1;
    }
    if (fsync(h->dfd) < 0)
        return err_sys(e, ERR_IO, "fsync of the directory");
    return 0;
}

int
flt_as_hold_is_held(struct flt_as_hold *h, const char *key, time_t now)
{
    struct flt_as_hold_ent *x;
    int held = 0;

    pthread_mutex_lock(&h->lock);
    if ((x = flt_as_hold_get(h, key, now)) != NULL && x->held) {
        if (h->dfd >= 0 && !flt_as_hold_file_exists(h, key, 1)) {
            x->held = 0;
            flt_as_hold_roll(h, x, now);
            flt_as_hold_reset(x);
            log_info(NULL, "antispam: hold released, %s", key);
        }
        held = x->held;
    }
    pthread_mutex_unlock(&h->lock);
    return held;
}

int
flt_as_hold_record(struct flt_as_hold *h, const char *key,
                   const struct flt_as_hold_obs *o, time_t now, char *why,
                   size_t n)
{
    struct flt_as_hold_ent *x;
    struct flt_as_hold_bucket *b;
    struct flt_as_hold_counts c;
    uint32_t t = (uint32_t)now, since;
    struct err e;
    size_t i;
    int held = 0;

    since = now > h->l.window ? (uint32_t)(now - h->l.window) + 1 : 1;
    pthread_mutex_lock(&h->lock);
    if ((x = flt_as_hold_get(h, key, now)) == NULL) {
        pthread_mutex_unlock(&h->lock);
        log_warning(NULL, "antispam: hold: out of memory, %s not counted",
                    key);
        return 0;
    }
    if (x->held) { /* held by another thread meanwhile: not counted */
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    flt_as_hold_roll(h, x, now);
    b = flt_as_hold_bucket(h, x, now);
    b->n[FLT_AS_HM_MESSAGES]++;
    x->ptot[FLT_AS_HM_MESSAGES]++;
    for (i = 0; i < o->nrcpts; i++) {
        const char *r = o->rcpts[i], *at = strrchr(r, '@');

        if (flt_as_hold_seen(x->rcpt, FLT_AS_HOLD_RCPTS,
                             flt_as_hold_hash(h->seed, r, strlen(r)), t,
                             since)) {
            b->n[FLT_AS_HM_RCPTS]++;
            x->ptot[FLT_AS_HM_RCPTS]++;
        }
        if (at != NULL &&
            flt_as_hold_seen(x->dom, FLT_AS_HOLD_DOMAINS,
                             flt_as_hold_hash(h->seed, at + 1, strlen(at + 1)),
                             t, 1)) {
            b->n[FLT_AS_HM_DOMAINS]++;
            x->ptot[FLT_AS_HM_DOMAINS]++;
        }
    }
    if (o->scored) {
        b->scored++;
        if (o->spam)
            b->spam++;
    }
    flt_as_hold_sum(h, x, now, &c);
    if (flt_as_hold_judge(&h->l, &c, why, n)) {
        held = x->held = 1;
        err_clear(&e);
        if (h->dfd >= 0 && flt_as_hold_write(h, key, now, why, &e) < 0) {
            /* Not held past this message: without its file no admin
             * could release it. The next message is judged again. */
            x->held = 0;
            log_error(NULL, "antispam: hold of %s not recorded: %s", key,
                      e.text);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return held;
}

int
flt_as_hold_release(struct flt_as_hold *h, const char *key, time_t now)
{
    struct flt_as_hold_ent **pp;
    int rc = -1;

    pthread_mutex_lock(&h->lock);
    if (*(pp = flt_as_hold_slot(h, key)) != NULL) {
        (*pp)->held = 0;
        flt_as_hold_roll(h, *pp, now);
        flt_as_hold_reset(*pp);
        rc = 0;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int
flt_as_hold_counts(struct flt_as_hold *h, const char *key, time_t now,
                   struct flt_as_hold_counts *c)
{
    struct flt_as_hold_ent **pp;
    int rc = -1;

    pthread_mutex_lock(&h->lock);
    if (*(pp = flt_as_hold_slot(h, key)) != NULL) {
        flt_as_hold_roll(h, *pp, now);
        flt_as_hold_sum(h, *pp, now, c);
        rc = 0;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* ---------------------------------------------------------- directory */

int
flt_as_hold_dir(const char *path, int create, struct err *e)
{
    char parent[4096];
    struct stat sb, pb;
    const char *slash;
    int fd, made = 0;

    if (create) {
        if (mkdir(path, 0750) == 0)
            made = 1;
        else if (errno != EEXIST)
            return err_sys(e, ERR_CONFIG, "%s", path);
    }
    if ((fd = cfg_open_dir(path, e)) < 0)
        return -1;
    /* Made by root (relaychain filter, a daemon that runs as root): the
     * directory goes to whoever owns the one it is in, the spool's owner,
     * so that the daemon's user can write its holds. */
    if (made && geteuid() == 0 && (slash = strrchr(path, '/')) != NULL &&
        (size_t)(slash - path) < sizeof(parent)) {
        memcpy(parent, path, (size_t)(slash - path));
        parent[slash - path] = '\0';
        if (stat(slash == path ? "/" : parent, &pb) == 0 && pb.st_uid != 0 &&
            fchown(fd, pb.st_uid, pb.st_gid) < 0)
            log_warning(NULL, "%s: chown: %s", path, strerror(errno));
    }
    if (fstat(fd, &sb) < 0) {
        err_sys(e, ERR_CONFIG, "%s", path);
        close(fd);
        return -1;
    }
    /* A hold is a user's mail stopped, or let go: nobody else may write
     * one. */
    if (sb.st_mode & S_IWOTH) {
        err_set(e, ERR_CONFIG, "%s: writable by everyone (mode %04o)", path,
                (unsigned)(sb.st_mode & 07777));
        close(fd);
        return -1;
    }
    if (create && faccessat(fd, ".", W_OK | X_OK, AT_EACCESS) < 0) {
        err_sys(e, ERR_CONFIG, "%s: holds could not be written", path);
        close(fd);
        return -1;
    }
    return fd;
}

long
flt_as_hold_load(struct flt_as_hold *h, time_t now, struct err *e)
{
    char text[FLT_AS_HOLD_FILE_MAX + 1], *k, *nl;
    struct flt_as_hold_ent *x;
    struct dirent *de;
    long n = 0;
    ssize_t got;
    DIR *d;
    int dfd, fd;

    if (h->dfd < 0)
        return 0;
    if ((dfd = dup(h->dfd)) < 0 || (d = fdopendir(dfd)) == NULL) {
        if (dfd >= 0)
            close(dfd);
        return err_sys(e, ERR_IO, "hold_directory");
    }
    rewinddir(d);
    pthread_mutex_lock(&h->lock);
    while ((de = readdir(d)) != NULL && (size_t)n < h->l.max_keys) {
        if (de->d_name[0] == '.')
            continue;
        fd = openat(h->dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        got = read(fd, text, FLT_AS_HOLD_FILE_MAX);
        close(fd);
        if (got <= 0)
            continue;
        text[got] = '\0';
        if (strncmp(text, "key: ", 5) != 0 ||
            (nl = strchr(text + 5, '\n')) == NULL)
            continue;
        *nl = '\0';
        k = text + 5;
        if ((strncmp(k, "user:", 5) != 0 && strncmp(k, "client:", 7) != 0) ||
            strlen(k) >= FLT_AS_HOLD_KEY_MAX)
            continue;
        if ((x = flt_as_hold_get(h, k, now)) != NULL && x->held)
            n++;
    }
    pthread_mutex_unlock(&h->lock);
    closedir(d);
    return n;
}
