/*
 * metrics - the process's counters for /metrics, lock-free
 *
 * One static table of atomics (see metrics.h for why it is process-wide).
 * Counting uses relaxed atomic adds: a scrape may see one series a
 * moment ahead of another, never a torn value. A stage slot is claimed
 * once by compare-and-swap on its state (free, being named, named);
 * readers skip a slot until it is named, and a thread that finds a slot
 * being named waits for it, so one name never gets two slots.
 *
 * A histogram's buckets are kept per bucket (not cumulative) with one
 * overflow bucket; the rendered _count is their sum, so +Inf and _count
 * always agree within a scrape.
 */
#include "config.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "util/metrics.h"

static const long long metrics_bounds_usec[METRICS_BUCKETS] = {
    500,    1000,   2500,   5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static const char *const metrics_verdict_names[METRICS_VERDICT_COUNT] = {
    "continue", "reject", "tempfail", "discard", "quarantine",
};

static const char *const metrics_fe_names[METRICS_FE_COUNT] = {"smtpd",
                                                               "milter"};

static const char *const metrics_outcome_names[METRICS_MSG_COUNT] = {
    "passed", "rejected", "tempfailed", "discarded", "quarantined",
};

enum { SLOT_FREE, SLOT_NAMING, SLOT_NAMED };

struct metrics_stage_slot {
    atomic_int state;
    char name[METRICS_STAGE_NAME_MAX];
    atomic_ullong bucket[METRICS_BUCKETS + 1]; /* the last: over all */
    atomic_ullong sum_usec;
    atomic_ullong verdict[METRICS_VERDICT_COUNT];
};

static struct {
    atomic_ullong counter[METRICS_COUNTER_COUNT];
    atomic_ullong message[METRICS_FE_COUNT][METRICS_MSG_COUNT];
    struct metrics_stage_slot stage[METRICS_STAGE_MAX + 1]; /* +1: other */
    atomic_llong archive_backlog; /* records in the archive spools */
} metrics_table;

void
metrics_archive_backlog(long long delta)
{
    atomic_fetch_add_explicit(&metrics_table.archive_backlog, delta,
                              memory_order_relaxed);
}

void
metrics_add(enum metrics_counter c, unsigned long long n)
{
    if ((unsigned)c < METRICS_COUNTER_COUNT)
        atomic_fetch_add_explicit(&metrics_table.counter[c], n,
                                  memory_order_relaxed);
}

unsigned long long
metrics_get(enum metrics_counter c)
{
    if ((unsigned)c >= METRICS_COUNTER_COUNT)
        return 0;
    return atomic_load_explicit(&metrics_table.counter[c],
                                memory_order_relaxed);
}

void
metrics_message(enum metrics_frontend fe, enum metrics_outcome o)
{
    if ((unsigned)fe < METRICS_FE_COUNT && (unsigned)o < METRICS_MSG_COUNT)
        atomic_fetch_add_explicit(&metrics_table.message[fe][o], 1,
                                  memory_order_relaxed);
}

unsigned long long
metrics_messages(enum metrics_frontend fe, enum metrics_outcome o)
{
    if ((unsigned)fe >= METRICS_FE_COUNT || (unsigned)o >= METRICS_MSG_COUNT)
        return 0;
    return atomic_load_explicit(&metrics_table.message[fe][o],
                                memory_order_relaxed);
}

const char *
metrics_outcome_name(enum metrics_outcome o)
{
    return (unsigned)o < METRICS_MSG_COUNT ? metrics_outcome_names[o] : "";
}

void
metrics_nexthop_reply(int code)
{
    if (code >= 200 && code <= 599)
        metrics_add(METRICS_NEXTHOP_1XX + (code / 100 - 1), 1);
}

void
metrics_http_reply(int status)
{
    if (status >= 200 && status <= 599)
        metrics_add(METRICS_HTTP_2XX + (status / 100 - 2), 1);
}

/* metrics_slot - the slot of name, claimed when it has none yet; the
 * "other" slot when the table is full. */
static struct metrics_stage_slot *
metrics_slot(const char *name)
{
    struct metrics_stage_slot *other = &metrics_table.stage[METRICS_STAGE_MAX];
    size_t i;

    for (i = 0; i < METRICS_STAGE_MAX; i++) {
        struct metrics_stage_slot *s = &metrics_table.stage[i];
        int st = atomic_load_explicit(&s->state, memory_order_acquire);

        if (st == SLOT_FREE) {
            int want = SLOT_FREE;

            if (atomic_compare_exchange_strong(&s->state, &want,
                                               SLOT_NAMING)) {
                snprintf(s->name, sizeof(s->name), "%s", name);
                atomic_store_explicit(&s->state, SLOT_NAMED,
                                      memory_order_release);
                return s;
            }
            st = want;
        }
        /* Being named by another thread: a copy of a short string. */
        while (st == SLOT_NAMING) {
            sched_yield();
            st = atomic_load_explicit(&s->state, memory_order_acquire);
        }
        if (strncmp(s->name, name, sizeof(s->name) - 1) == 0)
            return s;
    }
    if (atomic_load_explicit(&other->state, memory_order_acquire) !=
        SLOT_NAMED) {
        int want = SLOT_FREE;

        if (atomic_compare_exchange_strong(&other->state, &want,
                                           SLOT_NAMING)) {
            snprintf(other->name, sizeof(other->name), "other");
            atomic_store_explicit(&other->state, SLOT_NAMED,
                                  memory_order_release);
        }
    }
    return other;
}

void
metrics_stage(const char *name, long long usec, int verdict)
{
    struct metrics_stage_slot *s = metrics_slot(name);
    size_t b;

    if (usec < 0)
        usec = 0;
    for (b = 0; b < METRICS_BUCKETS && usec > metrics_bounds_usec[b]; b++)
        ;
    atomic_fetch_add_explicit(&s->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_usec, (unsigned long long)usec,
                              memory_order_relaxed);
    if (verdict >= 0 && verdict < METRICS_VERDICT_COUNT)
        atomic_fetch_add_explicit(&s->verdict[verdict], 1,
                                  memory_order_relaxed);
}

void
metrics_label_escape(const char *v, char *out, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return;
    for (; *v != '\0'; v++) {
        const char *rep = NULL;
        size_t k;

        if (*v == '\\')
            rep = "\\\\";
        else if (*v == '"')
            rep = "\\\"";
        else if (*v == '\n')
            rep = "\\n";
        k = rep != NULL ? 2 : 1;
        if (o + k >= n)
            break;
        if (rep != NULL)
            memcpy(out + o, rep, 2);
        else
            out[o] = *v;
        o += k;
    }
    out[o] = '\0';
}

int
metrics_family(struct buf *out, const char *name, const char *type,
               const char *help, struct err *e)
{
    return buf_printf(out, e, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                      type);
}

int
metrics_value(struct buf *out, const char *name, const char *labels,
              double value, struct err *e)
{
    if (labels[0] == '\0')
        return buf_printf(out, e, "%s %.17g\n", name, value);
    return buf_printf(out, e, "%s{%s} %.17g\n", name, labels, value);
}

static unsigned long long
metrics_load(atomic_ullong *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

/* metrics_counter_pair - one labelled sample of a counter. */
static int
metrics_sample(struct buf *out, const char *name, const char *key,
               const char *val, unsigned long long v, struct err *e)
{
    return buf_printf(out, e, "%s{%s=\"%s\"} %llu\n", name, key, val, v);
}

static int
metrics_render_counters(struct buf *out, struct err *e)
{
    static const char *const nh[] = {"2xx", "3xx", "4xx", "5xx"};
    static const char *const http[] = {"2xx", "3xx", "4xx", "5xx"};
    const char *n;
    size_t f, o;

    n = "relaychain_messages_total";
    if (metrics_family(out, n, "counter",
                       "Messages a front end took to the end of their data, "
                       "by what became of them.",
                       e) < 0)
        return -1;
    for (f = 0; f < METRICS_FE_COUNT; f++)
        for (o = 0; o < METRICS_MSG_COUNT; o++)
            if (buf_printf(out, e, "%s{frontend=\"%s\",outcome=\"%s\"} %llu\n",
                           n, metrics_fe_names[f], metrics_outcome_names[o],
                           metrics_load(&metrics_table.message[f][o])) < 0)
                return -1;
    n = "relaychain_smtpd_connections_total";
    if (metrics_family(out, n, "counter",
                       "Connections accepted by the SMTP listeners.", e) < 0 ||
        metrics_value(out, n, "",
                      (double)metrics_get(METRICS_SMTPD_CONNECTIONS), e) < 0)
        return -1;
    n = "relaychain_milter_connections_total";
    if (metrics_family(out, n, "counter",
                       "Connections of the MTA to the milter front end.",
                       e) < 0 ||
        metrics_value(out, n, "",
                      (double)metrics_get(METRICS_MILTER_CONNECTIONS), e) < 0)
        return -1;
    n = "relaychain_smtpd_tls_handshakes_total";
    if (metrics_family(out, n, "counter",
                       "STARTTLS handshakes of SMTP clients, by result.",
                       e) < 0 ||
        metrics_sample(out, n, "result", "ok",
                       metrics_get(METRICS_SMTPD_TLS_OK), e) < 0 ||
        metrics_sample(out, n, "result", "failed",
                       metrics_get(METRICS_SMTPD_TLS_FAILED), e) < 0)
        return -1;
    n = "relaychain_smtpd_auth_attempts_total";
    if (metrics_family(out, n, "counter",
                       "SMTP AUTH attempts whose credentials were checked, "
                       "by result.",
                       e) < 0 ||
        metrics_sample(out, n, "result", "success",
                       metrics_get(METRICS_SMTPD_AUTH_OK), e) < 0 ||
        metrics_sample(out, n, "result", "failure",
                       metrics_get(METRICS_SMTPD_AUTH_FAILED), e) < 0)
        return -1;
    n = "relaychain_nexthop_replies_total";
    if (metrics_family(out, n, "counter",
                       "Replies read from next hops (every command's), by "
                       "class.",
                       e) < 0)
        return -1;
    for (f = 0; f < 4; f++)
        if (metrics_sample(out, n, "class", nh[f],
                           metrics_get(METRICS_NEXTHOP_2XX + f), e) < 0)
            return -1;
    n = "relaychain_http_responses_total";
    if (metrics_family(out, n, "counter",
                       "Responses of the HTTP listener, by status class.",
                       e) < 0)
        return -1;
    for (f = 0; f < 4; f++)
        if (metrics_sample(out, n, "class", http[f],
                           metrics_get(METRICS_HTTP_2XX + f), e) < 0)
            return -1;
    n = "relaychain_archive_backlog_records";
    if (metrics_family(out, n, "gauge",
                       "Archive records in the spools of archive stages with "
                       "required = no or a journal store, waiting to be "
                       "shipped (as the shippers last counted).",
                       e) < 0 ||
        metrics_value(
            out, n, "",
            (double)atomic_load_explicit(&metrics_table.archive_backlog,
                                         memory_order_relaxed),
            e) < 0)
        return -1;
    return 0;
}

static int
metrics_render_stages(struct buf *out, struct err *e)
{
    const char *h = "relaychain_stage_duration_seconds",
               *v = "relaychain_stage_verdicts_total";
    char name[METRICS_STAGE_NAME_MAX * 2];
    size_t i, b;

    if (metrics_family(out, h, "histogram",
                       "Time a stage took to run over one message.", e) < 0)
        return -1;
    for (i = 0; i <= METRICS_STAGE_MAX; i++) {
        struct metrics_stage_slot *s = &metrics_table.stage[i];
        unsigned long long cum = 0;

        if (atomic_load_explicit(&s->state, memory_order_acquire) !=
            SLOT_NAMED)
            continue;
        metrics_label_escape(s->name, name, sizeof(name));
        for (b = 0; b < METRICS_BUCKETS; b++) {
            cum += metrics_load(&s->bucket[b]);
            if (buf_printf(out, e, "%s_bucket{stage=\"%s\",le=\"%g\"} %llu\n",
                           h, name, metrics_bounds_usec[b] / 1e6, cum) < 0)
                return -1;
        }
        cum += metrics_load(&s->bucket[METRICS_BUCKETS]);
        if (buf_printf(out, e, "%s_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n", h,
                       name, cum) < 0 ||
            buf_printf(out, e, "%s_sum{stage=\"%s\"} %.6f\n", h, name,
                       (double)metrics_load(&s->sum_usec) / 1e6) < 0 ||
            buf_printf(out, e, "%s_count{stage=\"%s\"} %llu\n", h, name, cum) <
                0)
            return -1;
    }
    if (metrics_family(out, v, "counter",
                       "Verdicts of each stage, continue included.", e) < 0)
        return -1;
    for (i = 0; i <= METRICS_STAGE_MAX; i++) {
        struct metrics_stage_slot *s = &metrics_table.stage[i];

        if (atomic_load_explicit(&s->state, memory_order_acquire) !=
            SLOT_NAMED)
            continue;
        metrics_label_escape(s->name, name, sizeof(name));
        for (b = 0; b < METRICS_VERDICT_COUNT; b++)
            if (buf_printf(out, e, "%s{stage=\"%s\",verdict=\"%s\"} %llu\n", v,
                           name, metrics_verdict_names[b],
                           metrics_load(&s->verdict[b])) < 0)
                return -1;
    }
    return 0;
}

int
metrics_render(struct buf *out, struct err *e)
{
    if (metrics_render_counters(out, e) < 0)
        return -1;
    return metrics_render_stages(out, e);
}

void
metrics_reset(void)
{
    memset(&metrics_table, 0, sizeof(metrics_table));
}
