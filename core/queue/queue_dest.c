/*
 * queue_dest - what the queue knows about each destination domain
 *
 * Postfix's destination_concurrency_limit and destination_rate_delay,
 * and a pause for a domain whose mail servers say to slow down: a
 * throttling reply (421, or 4.7.x: "too many messages", "rate limited";
 * not greylisting's 4.7.1) to one of its recipients stops deliveries to that
 * domain, and to it only, for destination_throttle_time, doubled at each
 * throttle in a row up to maximal_backoff_time and forgotten at the first
 * message it takes again. Until then one transaction at a time goes to it, as
 * a probe, so the end of a pause is not a burst of the queue's backlog.
 *
 * A destination is the recipient's domain, lower case. An attempt asks
 * before each transaction (queue_dest_take), once per domain in it, and
 * gives back what it took when the transaction is over
 * (queue_dest_give), with the recipients' outcomes, from which the
 * domain may be paused. A recipient whose domain is busy (concurrency
 * or rate) is not tried and stays pending without a log line, as in
 * Postfix's active queue; one whose domain is paused is deferred with
 * the reply that paused it. Either way the attempt says when the domain
 * is free again, and the message is tried then.
 *
 * The table lives in struct queue and survives reloads (a reload may
 * change the limits; the counts stand). q->lock guards it. Entries that
 * hold nothing (no transaction, no pause, no rate wait) are dropped when
 * the table is full; when it is full of busy entries a new domain is not
 * tracked (delivered without limits) and that is logged, so the table's
 * memory is bounded whatever domains clients send to.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "queue/queue_int.h"

#define QUEUE_DEST_MAX 20000
#define QUEUE_DEST_BUCKETS 1024

struct queue_dest {
    struct queue_dest *next;
    unsigned active;     /* transactions to it now */
    long long last_ms;   /* the last transaction's start */
    long long paused_ms; /* no transaction before this */
    long long pause_len; /* the last pause's length; 0: none in a row */
    char why[QUEUE_DEST_WHY_MAX];
    char domain[];
};

static unsigned
queue_dest_hash(const char *d)
{
    unsigned h = 5381;

    while (*d != '\0')
        h = h * 33 + (unsigned char)*d++;
    return h % QUEUE_DEST_BUCKETS;
}

/* queue_dest_idle - d holds nothing at now: no transaction, no rate
 * wait, and its last pause long over. */
static int
queue_dest_idle(const struct queue_dest *d, const struct queue_settings *set,
                long long now)
{
    return d->active == 0 && d->paused_ms + set->max_backoff_ms <= now &&
           d->last_ms + set->dest_delay_ms <= now;
}

/* queue_dest_sweep - drop the idle entries; under q->lock. */
static void
queue_dest_sweep(struct queue *q, const struct queue_settings *set,
                 long long now)
{
    size_t b;

    for (b = 0; b < QUEUE_DEST_BUCKETS; b++) {
        struct queue_dest **pp = &q->dests[b], *d;

        while ((d = *pp) != NULL) {
            if (queue_dest_idle(d, set, now)) {
                *pp = d->next;
                free(d);
                q->ndests--;
            } else {
                pp = &d->next;
            }
        }
    }
}

/* queue_dest_find - domain's entry, made when create is set and there is
 * room; NULL otherwise. Under q->lock. */
static struct queue_dest *
queue_dest_find(struct queue *q, const struct queue_settings *set,
                const char *domain, int create, long long now)
{
    unsigned h;
    struct queue_dest *d;
    size_t len;

    if (q->dests == NULL) {
        if (!create ||
            (q->dests = calloc(QUEUE_DEST_BUCKETS, sizeof(*q->dests))) == NULL)
            return NULL;
    }
    h = queue_dest_hash(domain);
    for (d = q->dests[h]; d != NULL; d = d->next)
        if (strcmp(d->domain, domain) == 0)
            return d;
    if (!create)
        return NULL;
    if (q->ndests >= QUEUE_DEST_MAX) {
        queue_dest_sweep(q, set, now);
        if (q->ndests >= QUEUE_DEST_MAX) {
            if (!q->dests_full_logged)
                log_warning(NULL,
                            "%d destinations busy at once: %s and others "
                            "delivered without destination limits",
                            QUEUE_DEST_MAX, domain);
            q->dests_full_logged = 1;
            return NULL;
        }
    }
    len = strlen(domain);
    if ((d = calloc(1, sizeof(*d) + len + 1)) == NULL)
        return NULL;
    memcpy(d->domain, domain, len + 1);
    d->next = q->dests[h];
    q->dests[h] = d;
    q->ndests++;
    return d;
}

void
queue_dest_domain(const char *rcpt, char *out, size_t n)
{
    const char *at = strrchr(rcpt, '@');
    size_t i;

    out[0] = '\0';
    if (at == NULL || n == 0)
        return;
    for (i = 0; at[1 + i] != '\0' && i + 1 < n; i++)
        out[i] = (char)tolower((unsigned char)at[1 + i]);
    out[i] = '\0';
}

int
queue_dest_take(struct queue *q, const struct queue_settings *set,
                const char *domain, long long now, long long *free_ms,
                char *why, size_t n)
{
    struct queue_dest *d;
    int rc = QUEUE_DEST_TAKEN;

    if (domain[0] == '\0')
        return QUEUE_DEST_UNTRACKED;
    pthread_mutex_lock(&q->lock);
    d = queue_dest_find(q, set, domain, 1, now);
    if (d == NULL) {
        rc = QUEUE_DEST_UNTRACKED;
    } else if (d->paused_ms > now) {
        *free_ms = d->paused_ms;
        snprintf(why, n, "%s", d->why);
        rc = QUEUE_DEST_PAUSED;
    } else if ((d->pause_len > 0 && d->active > 0) ||
               (set->dest_limit > 0 && d->active >= set->dest_limit)) {
        /* after a pause, one transaction probes the domain alone */
        /* tried again soon: a transaction of its own ends meanwhile */
        *free_ms = now + QUEUE_DEST_BUSY_RETRY_MS;
        rc = QUEUE_DEST_BUSY;
    } else if (set->dest_delay_ms > 0 && d->last_ms > 0 &&
               d->last_ms + set->dest_delay_ms > now) {
        *free_ms = d->last_ms + set->dest_delay_ms;
        rc = QUEUE_DEST_BUSY;
    } else {
        d->active++;
        d->last_ms = now;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int
queue_dest_throttles(int code, const char *text)
{
    static const char *const grey[] = {"greylist",  "graylist",  "grey-list",
                                       "gray-list", "grey list", "gray list"};
    size_t i;

    if (code == 421)
        return 1;
    if (code / 100 != 4 || strncmp(text, "4.7.", 4) != 0)
        return 0;
    /* greylisting (450/451 4.7.1 "Greylisted") is about one triplet of
     * client, sender and recipient, not a domain telling us to slow down */
    for (i = 0; i < sizeof(grey) / sizeof(grey[0]); i++)
        if (strcasestr(text, grey[i]) != NULL)
            return 0;
    return 1;
}

long long
queue_dest_give(struct queue *q, const struct queue_settings *set,
                const char *domain, long long now, int took, int throttle_code,
                const char *throttle_text, int delivered)
{
    struct queue_dest *d;
    long long pause = 0;

    pthread_mutex_lock(&q->lock);
    d = q->dests != NULL ? queue_dest_find(q, set, domain, 0, now) : NULL;
    if (d != NULL) {
        if (took && d->active > 0)
            d->active--;
        if (throttle_code != 0) {
            pause = d->pause_len > 0 ? d->pause_len * 2 : set->throttle_ms;
            if (pause > set->max_backoff_ms)
                pause = set->max_backoff_ms;
            if (pause < set->throttle_ms)
                pause = set->throttle_ms;
            d->pause_len = pause;
            d->paused_ms = now + pause;
            snprintf(d->why, sizeof(d->why), "%d %.400s", throttle_code,
                     throttle_text);
        } else if (delivered) {
            d->pause_len = 0;
        }
    }
    pthread_mutex_unlock(&q->lock);
    if (pause > 0)
        log_warning(NULL,
                    "%s: throttled by its mail server (%d %.400s): no "
                    "delivery to it for %llds",
                    domain, throttle_code, throttle_text, pause / 1000);
    return pause;
}

void
queue_dest_resume(struct queue *q)
{
    size_t b;

    pthread_mutex_lock(&q->lock);
    for (b = 0; q->dests != NULL && b < QUEUE_DEST_BUCKETS; b++) {
        struct queue_dest *d;

        for (d = q->dests[b]; d != NULL; d = d->next)
            d->paused_ms = 0; /* the doubling stands */
    }
    pthread_mutex_unlock(&q->lock);
}

void
queue_dest_free(struct queue *q)
{
    size_t b;

    for (b = 0; q->dests != NULL && b < QUEUE_DEST_BUCKETS; b++) {
        struct queue_dest *d, *next;

        for (d = q->dests[b]; d != NULL; d = next) {
            next = d->next;
            free(d);
        }
    }
    free(q->dests);
    q->dests = NULL;
    q->ndests = 0;
}
