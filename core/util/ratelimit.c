/*
 * ratelimit - the rules of a rate_limits file and the sliding window
 *
 * The parser reads the whole file (at most RATELIMIT_FILE_MAX octets)
 * and checks each line strictly: a rule is three or four words, and
 * anything it does not understand is an error naming the line, never a
 * rule quietly dropped. The set owns its rules and their networks.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cidr.h"
#include "util/ratelimit.h"

#define RATELIMIT_FILE_MAX (1024 * 1024)
#define RATELIMIT_LINE_MAX 1024

static const struct {
    const char *prefix;
    enum ratelimit_who who;
} ratelimit_whos[] = {
    {"client:", RATELIMIT_CLIENT},
    {"user:", RATELIMIT_USER},
    {"sender_domain:", RATELIMIT_SENDER_DOMAIN},
    {"rcpt_domain:", RATELIMIT_RCPT_DOMAIN},
    {"stream:", RATELIMIT_STREAM},
};

int
ratelimit_parse_period(const char *s, long long *ms)
{
    unsigned long long v = 0;
    const char *p = s;
    long long unit;

    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (unsigned long long)(*p++ - '0');
        if (v > 1000000000ULL)
            return -1;
    }
    if (p[0] == '\0' || p[1] != '\0')
        return -1;
    switch (p[0]) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000;
        break;
    default:
        return -1;
    }
    if (v == 0 || (long long)v > RATELIMIT_PERIOD_MAX / unit)
        return -1;
    *ms = (long long)v * unit;
    return 0;
}

long long
ratelimit_window(long long now_ms, long long period_ms)
{
    return now_ms / period_ms;
}

double
ratelimit_estimate(long long prev, long long cur, long long now_ms,
                   long long period_ms)
{
    long long into = now_ms % period_ms;

    return (double)cur +
           (double)prev * (double)(period_ms - into) / (double)period_ms;
}

int
ratelimit_allows(long long prev, long long cur, long long n, long long count,
                 long long now_ms, long long period_ms)
{
    return ratelimit_estimate(prev, cur, now_ms, period_ms) + (double)n <=
           (double)count;
}

/* ratelimit_word - the next word of *p into out; 0, or -1 when there is
 * none or it does not fit. */
static int
ratelimit_word(const char **p, char *out, size_t n)
{
    const char *s = *p;
    size_t k;

    while (*s == ' ' || *s == '\t')
        s++;
    k = strcspn(s, " \t");
    if (k == 0 || k >= n)
        return -1;
    memcpy(out, s, k);
    out[k] = '\0';
    *p = s + k;
    return 0;
}

/* ratelimit_count - "COUNT/PERIOD". */
static int
ratelimit_count(const char *s, struct ratelimit_rule *r, char *why, size_t n)
{
    const char *slash = strchr(s, '/');
    long long v = 0;
    const char *p;

    if (slash == NULL || slash == s) {
        snprintf(why, n, "'%.64s' is not COUNT/PERIOD (100/1m)", s);
        return -1;
    }
    for (p = s; p < slash; p++) {
        if (!isdigit((unsigned char)*p) ||
            (v = v * 10 + (*p - '0')) > RATELIMIT_COUNT_MAX) {
            snprintf(why, n, "'%.64s': count is not 1 to %lld", s,
                     RATELIMIT_COUNT_MAX);
            return -1;
        }
    }
    if (v < 1) {
        snprintf(why, n, "'%.64s': count is not 1 to %lld", s,
                 RATELIMIT_COUNT_MAX);
        return -1;
    }
    if (ratelimit_parse_period(slash + 1, &r->period_ms) < 0) {
        snprintf(why, n,
                 "'%.64s': period is not a number with s, m, h or d, at most "
                 "7d",
                 s);
        return -1;
    }
    r->count = v;
    return 0;
}

/* ratelimit_who - "who:value" into r. */
static int
ratelimit_who(const char *s, struct ratelimit_rule *r, char *why, size_t n)
{
    const char *v = NULL;
    size_t i, k;
    struct err e;

    for (i = 0; i < sizeof(ratelimit_whos) / sizeof(ratelimit_whos[0]); i++) {
        k = strlen(ratelimit_whos[i].prefix);
        if (strncmp(s, ratelimit_whos[i].prefix, k) == 0) {
            v = s + k;
            r->who = ratelimit_whos[i].who;
            break;
        }
    }
    if (v == NULL) {
        snprintf(why, n,
                 "'%.64s': not client:, user:, sender_domain:, "
                 "rcpt_domain: or stream:",
                 s);
        return -1;
    }
    if (*v == '\0' || strlen(v) > RATELIMIT_VALUE_MAX) {
        snprintf(why, n, "'%.64s': empty or too long", s);
        return -1;
    }
    for (k = 0; v[k] != '\0'; k++)
        if ((unsigned char)v[k] < 0x21 || (unsigned char)v[k] > 0x7e) {
            snprintf(why, n, "'%.64s': control or non-ASCII octet", s);
            return -1;
        }
    snprintf(r->value, sizeof(r->value), "%s", v);
    if (r->who == RATELIMIT_SENDER_DOMAIN || r->who == RATELIMIT_RCPT_DOMAIN) {
        if (strchr(v, '@') != NULL || v[0] == '.' || strchr(v, '.') == NULL) {
            snprintf(why, n, "'%.64s': not a domain", s);
            return -1;
        }
        for (k = 0; r->value[k] != '\0'; k++)
            r->value[k] = (char)tolower((unsigned char)r->value[k]);
    }
    if (r->who == RATELIMIT_CLIENT) {
        const char *item = r->value;

        if ((r->net = cidr_list_new(&item, 1, &e)) == NULL) {
            snprintf(why, n, "'%.64s': %.300s", s, e.text);
            return -1;
        }
    }
    return 0;
}

/* ratelimit_line - one non-comment line into r; 0, or -1 with why. */
static int
ratelimit_line(const char *line, struct ratelimit_rule *r, char *why, size_t n)
{
    char who[RATELIMIT_VALUE_MAX + 32], count[64], unit[32], extra[8];
    const char *p = line;

    if (ratelimit_word(&p, who, sizeof(who)) < 0 ||
        ratelimit_word(&p, count, sizeof(count)) < 0) {
        snprintf(why, n, "not WHO COUNT/PERIOD [messages|recipients]");
        return -1;
    }
    r->unit = RATELIMIT_MESSAGES;
    if (ratelimit_word(&p, unit, sizeof(unit)) == 0) {
        if (strcmp(unit, "messages") == 0) {
            r->unit = RATELIMIT_MESSAGES;
        } else if (strcmp(unit, "recipients") == 0) {
            r->unit = RATELIMIT_RECIPIENTS;
        } else {
            snprintf(why, n, "'%.32s' is not messages or recipients", unit);
            return -1;
        }
        if (ratelimit_word(&p, extra, sizeof(extra)) == 0 || *p != '\0') {
            snprintf(why, n, "text after the unit");
            return -1;
        }
    } else if (*p != '\0' && strspn(p, " \t") != strlen(p)) {
        snprintf(why, n, "'%.32s' is not messages or recipients", p);
        return -1;
    }
    if (ratelimit_count(count, r, why, n) < 0)
        return -1;
    return ratelimit_who(who, r, why, n);
}

void
ratelimit_set_free(struct ratelimit_set *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++)
        cidr_list_free(s->rules[i].net);
    free(s->rules);
    free(s->path);
    free(s);
}

struct ratelimit_set *
ratelimit_parse_text(const char *name, const char *text, size_t len,
                     struct err *e)
{
    struct ratelimit_set *s;
    const char *p = text, *end = text + len;
    unsigned lineno = 0;
    char why[ERR_TEXT_MAX - 64];

    if ((s = calloc(1, sizeof(*s))) == NULL ||
        (s->path = strdup(name)) == NULL) {
        free(s);
        err_nomem(e);
        return NULL;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        char line[RATELIMIT_LINE_MAX];
        struct ratelimit_rule *r;
        size_t i;

        lineno++;
        if (k >= sizeof(line)) {
            err_set(e, ERR_CONFIG, "%s:%u: line too long", name, lineno);
            goto fail;
        }
        memcpy(line, p, k);
        line[k] = '\0';
        p += k + (nl != NULL);
        if (k > 0 && line[k - 1] == '\r')
            line[--k] = '\0';
        if (memchr(line, '\0', k) != NULL) {
            err_set(e, ERR_CONFIG, "%s:%u: NUL octet", name, lineno);
            goto fail;
        }
        i = strspn(line, " \t");
        if (line[i] == '\0' || line[i] == '#')
            continue;
        if (s->n >= RATELIMIT_RULES_MAX) {
            err_set(e, ERR_CONFIG, "%s:%u: more than %d rules", name, lineno,
                    RATELIMIT_RULES_MAX);
            goto fail;
        }
        if (s->n % 16 == 0) {
            struct ratelimit_rule *nr =
                realloc(s->rules, (s->n + 16) * sizeof(*nr));

            if (nr == NULL) {
                err_nomem(e);
                goto fail;
            }
            s->rules = nr;
        }
        r = &s->rules[s->n];
        memset(r, 0, sizeof(*r));
        if (ratelimit_line(line + i, r, why, sizeof(why)) < 0) {
            cidr_list_free(r->net);
            err_set(e, ERR_CONFIG, "%s:%u: %s", name, lineno, why);
            goto fail;
        }
        r->line = lineno;
        snprintf(r->key, sizeof(r->key), "%s%s", ratelimit_whos[r->who].prefix,
                 r->value);
        snprintf(r->id, sizeof(r->id), "%.200s:%u %s", name, lineno, r->key);
        s->n++;
    }
    return s;

fail:
    ratelimit_set_free(s);
    return NULL;
}

struct ratelimit_set *
ratelimit_load(const char *path, struct err *e)
{
    struct ratelimit_set *s;
    FILE *fp;
    char *text;
    size_t len;

    if ((fp = fopen(path, "r")) == NULL) {
        err_sys(e, ERR_CONFIG, "%s", path);
        return NULL;
    }
    if ((text = malloc(RATELIMIT_FILE_MAX + 1)) == NULL) {
        fclose(fp);
        err_nomem(e);
        return NULL;
    }
    len = fread(text, 1, RATELIMIT_FILE_MAX + 1, fp);
    if (ferror(fp)) {
        err_sys(e, ERR_CONFIG, "%s: read", path);
        s = NULL;
    } else if (len > RATELIMIT_FILE_MAX) {
        err_set(e, ERR_CONFIG, "%s: over %d octets", path, RATELIMIT_FILE_MAX);
        s = NULL;
    } else {
        s = ratelimit_parse_text(path, text, len, e);
    }
    fclose(fp);
    free(text);
    return s;
}

const struct ratelimit_rule *
ratelimit_first_of(const struct ratelimit_set *s, enum ratelimit_who who)
{
    size_t i;

    for (i = 0; s != NULL && i < s->n; i++)
        if (s->rules[i].who == who)
            return &s->rules[i];
    return NULL;
}

const char *
ratelimit_domain(const char *addr, char *out, size_t n)
{
    const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
    size_t i;

    out[0] = '\0';
    if (at == NULL || n == 0)
        return out;
    snprintf(out, n, "%s", at + 1);
    for (i = 0; out[i] != '\0'; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
    return out;
}

size_t
ratelimit_match(const struct ratelimit_set *s,
                const struct ratelimit_event *ev, size_t *out, size_t max)
{
    size_t i, k = 0;

    if (s == NULL)
        return 0;
    for (i = 0; i < s->n && k < max; i++) {
        const struct ratelimit_rule *r = &s->rules[i];
        int hit = 0;

        if (!ev->at_rcpt && r->unit != RATELIMIT_MESSAGES)
            continue;
        if (ev->at_rcpt && r->unit == RATELIMIT_MESSAGES &&
            (r->who != RATELIMIT_RCPT_DOMAIN || !ev->first_of_domain))
            continue;
        switch (r->who) {
        case RATELIMIT_CLIENT:
            hit = ev->client_addr != NULL &&
                  cidr_list_contains(r->net, ev->client_addr);
            break;
        case RATELIMIT_USER:
            hit = ev->user != NULL && strcmp(ev->user, r->value) == 0;
            break;
        case RATELIMIT_SENDER_DOMAIN:
            hit = ev->sender_domain != NULL &&
                  strcasecmp(ev->sender_domain, r->value) == 0;
            break;
        case RATELIMIT_RCPT_DOMAIN:
            hit = ev->at_rcpt && ev->rcpt_domain != NULL &&
                  strcasecmp(ev->rcpt_domain, r->value) == 0;
            break;
        case RATELIMIT_STREAM:
            hit = ev->stream != NULL && strcmp(ev->stream, r->value) == 0;
            break;
        }
        if (hit)
            out[k++] = i;
    }
    return k;
}

int
ratelimit_message(const struct ratelimit_set *s,
                  const struct ratelimit_event *msg,
                  const char *(*rcpt)(const void *, size_t), const void *arg,
                  size_t nrcpts, size_t *idx, long long *amount, size_t *n,
                  struct err *e)
{
    struct ratelimit_event ev = *msg;
    size_t *hit, k, j, i;
    long long *per_rule;
    char dom[256];

    *n = 0;
    if (s == NULL || s->n == 0)
        return 0;
    per_rule = calloc(s->n, sizeof(*per_rule));
    hit = calloc(s->n, sizeof(*hit));
    if (per_rule == NULL || hit == NULL) {
        free(per_rule);
        free(hit);
        return err_nomem(e);
    }
    ev.at_rcpt = 0;
    ev.rcpt_domain = NULL;
    k = ratelimit_match(s, &ev, hit, s->n);
    for (j = 0; j < k; j++)
        per_rule[hit[j]]++;
    ev.at_rcpt = 1;
    ev.first_of_domain = 1; /* capped below: one domain a rule */
    for (i = 0; i < nrcpts; i++) {
        ev.rcpt_domain = ratelimit_domain(rcpt(arg, i), dom, sizeof(dom));
        k = ratelimit_match(s, &ev, hit, s->n);
        for (j = 0; j < k; j++)
            per_rule[hit[j]]++;
    }
    for (i = 0; i < s->n; i++) {
        if (per_rule[i] == 0)
            continue;
        if (s->rules[i].unit == RATELIMIT_MESSAGES)
            per_rule[i] = 1; /* a message counts once toward each */
        idx[*n] = i;
        amount[*n] = per_rule[i];
        (*n)++;
    }
    free(hit);
    free(per_rule);
    return 0;
}
