/*
 * antispam - outbound spam scoring by an existing engine: rspamd or
 *     SpamAssassin's spamd
 *
 * Configuration (chain.d):
 *     engine = spamd | rspamd, server, timeout
 *     add_header, quarantine_score, reject_score, reject_with_rules,
 *     on_unchecked
 *
 * init() makes one engine (struct flt_as_engine_ops, antispam_int.h):
 * spamd (antispam_spamd.c) or rspamd (antispam_rspamd.c); it reads its
 * address from server and bounds every check by timeout. run() hands the
 * engine the message as it stands and its envelope (sender, recipients,
 * the client's address, name and HELO, the authenticated user), and gets
 * back a score, the engine's own threshold and the names of the rules
 * that hit. No rules of our own: the engine decides the score, the
 * stage the action.
 *
 * Actions by score: at or over reject_score the message is refused with
 * "554 5.7.1 Message refused as spam" (with reject_with_rules = yes the
 * rule names follow, which tells a sender which rules to dodge: off by
 * default); else at or over quarantine_score it is held in quarantine;
 * else it goes on. Either threshold may be left unset. With add_header =
 * yes every checked message that goes on (or into quarantine) carries
 * X-Spam-Score and X-Spam-Status, and any the client sent are removed
 * first: only our verdict travels.
 *
 * A message the engine could not check (down, out of time, an answer
 * that is not one) is never taken for a clean one: on_unchecked decides,
 * tempfail by default (451, the sender retries), or reject, quarantine,
 * or continue, which passes it unscanned and says so in the log.
 *
 * Log lines (the chain adds the stage name, the action and the time):
 *     6A0F3C21B7: antispam: continue, score=3.2/6.0, engine=spamd, 12ms
 *     6A0F3C21B7: antispam: reject, score=1000.0 (GTUBE), engine=spamd, 80ms
 *     6A0F3C21B7: antispam: tempfail, unchecked (spamd 127.0.0.1:783:
 *         connect: Connection refused), engine=spamd, 0ms
 *
 * The stage owns its engine; run() only reads it and the engine is
 * thread-safe, so run() may be called from any number of threads.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/antispam/antispam_int.h"
#include "filters/filters.h"
#include "util/log.h"

#define FLT_AS_RULES_NOTE 120  /* octets of rule names in a log note */
#define FLT_AS_RULES_REPLY 160 /* and in a reject reply */
#define FLT_AS_HEADER_LINE 76  /* fold X-Spam-Status before this */

enum flt_as_engine_kind { FLT_AS_SPAMD, FLT_AS_RSPAMD, FLT_AS_NENGINES };

static const char *const flt_as_engines[] = {
    [FLT_AS_SPAMD] = "spamd",
    [FLT_AS_RSPAMD] = "rspamd",
    [FLT_AS_NENGINES] = NULL,
};

static const struct flt_as_engine_ops *const flt_as_engine_table[] = {
    [FLT_AS_SPAMD] = &flt_as_spamd_ops,
    [FLT_AS_RSPAMD] = &flt_as_rspamd_ops,
};

/* The default server of each engine: where Debian's package listens. */
static const char *const flt_as_default_server[] = {
    [FLT_AS_SPAMD] = "127.0.0.1:783",
    [FLT_AS_RSPAMD] = "127.0.0.1:11333",
};

static const char *const flt_as_unchecked_choices[] = {
    [FLT_AS_CONTINUE] = "continue", [FLT_AS_QUARANTINE] = "quarantine",
    [FLT_AS_REJECT] = "reject",     [FLT_AS_TEMPFAIL] = "tempfail",
    [FLT_AS_NACTIONS] = NULL,
};

static const struct cfg_option flt_as_options[] = {
    {"engine", CFG_ENUM, NULL,
     "spamd (SpamAssassin, its SYMBOLS command over its socket) or rspamd "
     "(its HTTP /checkv2)",
     flt_as_engines, 0, 0, CFG_REQUIRED},
    {"server", CFG_STRING, NULL,
     "the engine's address: HOST:PORT, [IPV6]:PORT or unix:/PATH (default: "
     "127.0.0.1:783 for spamd, 127.0.0.1:11333 for rspamd)",
     NULL, 0, 0, 0},
    {"timeout", CFG_TIME, "30s",
     "the most one check may take, connect and answer included; a check "
     "out of time is unchecked (on_unchecked)",
     NULL, 1, 3600LL * 1000, 0},
    {"add_header", CFG_BOOL, "yes",
     "add X-Spam-Score and X-Spam-Status to every checked message that "
     "goes on, after removing any the client sent",
     NULL, 0, 0, 0},
    {"quarantine_score", CFG_STRING, NULL,
     "quarantine a message whose score is at least this (a number such as "
     "6.0; unset: never by score)",
     NULL, 0, 0, 0},
    {"reject_score", CFG_STRING, NULL,
     "reject a message whose score is at least this with 554 5.7.1 (a "
     "number such as 15; unset: never by score)",
     NULL, 0, 0, 0},
    {"reject_with_rules", CFG_BOOL, "no",
     "name the rules that hit in the reject reply (no: \"554 5.7.1 "
     "Message refused as spam\" only, which tells a spammer less)",
     NULL, 0, 0, 0},
    {"on_unchecked", CFG_ENUM, "tempfail",
     "a message the engine could not check (down, out of time, a bad "
     "answer): tempfail (451, the sender retries), reject, quarantine or "
     "continue (passed unscanned, and logged so)",
     flt_as_unchecked_choices, 0, 0, 0},
    CFG_OPTION_END,
};

struct flt_as {
    const struct flt_as_engine_ops *ops;
    void *engine;
    struct flt_as_thresholds t;
    int add_header;
    int reject_with_rules;
    enum flt_as_action on_unchecked;
};

enum flt_as_action
flt_as_decide(const struct flt_as_thresholds *t, double score)
{
    if (isnan(score))
        return FLT_AS_TEMPFAIL;
    if (t->has_reject && score >= t->reject)
        return FLT_AS_REJECT;
    if (t->has_quarantine && score >= t->quarantine)
        return FLT_AS_QUARANTINE;
    return FLT_AS_CONTINUE;
}

const char *
flt_as_client_name(const char *name)
{
    if (name == NULL || name[0] == '\0' || name[0] == '[' ||
        strcasecmp(name, "unknown") == 0)
        return NULL;
    return name;
}

static void
flt_as_free(struct stage *st)
{
    struct flt_as *fa = st->priv;

    if (fa == NULL)
        return;
    if (fa->engine != NULL)
        fa->ops->destroy(fa->engine);
    free(fa);
    st->priv = NULL;
}

/* flt_as_score_key - a score key of c into *v; *has 0 when unset. */
static int
flt_as_score_key(const struct cfg *c, const char *key, int *has, double *v,
                 struct err *e)
{
    const char *s = cfg_str(c, key), *p;
    char *end;

    *has = 0;
    if (s == NULL)
        return 0;
    for (p = s; *p != '\0'; p++)
        if ((*p < '0' || *p > '9') && *p != '.' && *p != '-' && *p != '+')
            return cfg_err(e, c, key, "'%s' is not a number", s);
    *v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(*v))
        return cfg_err(e, c, key, "'%s' is not a number", s);
    *has = 1;
    return 0;
}

static int
flt_as_init(struct stage *st, const struct cfg *c, struct err *e)
{
    enum flt_as_engine_kind kind;
    struct flt_as *fa;
    const char *server;

    if ((fa = calloc(1, sizeof(*fa))) == NULL)
        return err_nomem(e);
    st->priv = fa;
    kind = (enum flt_as_engine_kind)cfg_enum(c, "engine");
    fa->ops = flt_as_engine_table[kind];
    fa->add_header = cfg_bool(c, "add_header");
    fa->reject_with_rules = cfg_bool(c, "reject_with_rules");
    fa->on_unchecked = (enum flt_as_action)cfg_enum(c, "on_unchecked");
    if (flt_as_score_key(c, "quarantine_score", &fa->t.has_quarantine,
                         &fa->t.quarantine, e) < 0 ||
        flt_as_score_key(c, "reject_score", &fa->t.has_reject, &fa->t.reject,
                         e) < 0)
        goto fail;
    if (fa->t.has_quarantine && fa->t.has_reject &&
        fa->t.quarantine >= fa->t.reject) {
        cfg_err(e, c, "quarantine_score",
                "%s is not below reject_score (%s): nothing would ever be "
                "quarantined",
                cfg_str(c, "quarantine_score"), cfg_str(c, "reject_score"));
        goto fail;
    }
    if (!fa->t.has_quarantine && !fa->t.has_reject && !fa->add_header) {
        err_set(e, ERR_CONFIG,
                "%s: the stage would do nothing: set reject_score, "
                "quarantine_score or add_header = yes",
                cfg_path(c));
        goto fail;
    }
    server = cfg_str(c, "server");
    if (server == NULL)
        server = flt_as_default_server[kind];
    fa->engine = fa->ops->create(server, (int)cfg_num(c, "timeout"), e);
    if (fa->engine == NULL) {
        err_prefix(e, "%s:%u: %s", cfg_path(c),
                   cfg_is_set(c, "server") ? cfg_line(c, "server")
                                           : cfg_line(c, "engine"),
                   cfg_is_set(c, "server") ? "server" : "engine");
        goto fail;
    }
    if (!fa->add_header)
        st->flags &= ~STAGE_EDITS_HEADERS;
    return 0;

fail:
    flt_as_free(st);
    return -1;
}

/* ----------------------------------------------------------------- run */

/* flt_as_cut - s into out (size n), cut at a comma to fit, with ",..."
 * when cut. */
static const char *
flt_as_cut(const char *s, char *out, size_t n)
{
    size_t len = strlen(s), k;

    if (len < n) {
        memcpy(out, s, len + 1);
        return out;
    }
    k = n > 5 ? n - 5 : 0;
    while (k > 0 && s[k] != ',')
        k--;
    memcpy(out, s, k);
    snprintf(out + k, n - k, "%s", k > 0 ? ",..." : "...");
    return out;
}

/* flt_as_status - the X-Spam-Status value: "Yes, score=14.1
 * required=5.0 tests=A,B" folded at commas before FLT_AS_HEADER_LINE. */
static int
flt_as_status(struct buf *b, const struct flt_as_answer *a, const char *eol,
              struct err *e)
{
    const char *s = a->symbols, *comma;
    size_t col, n;

    if (buf_printf(b, e, "%s, score=%.1f required=%.1f tests=",
                   a->score >= a->required ? "Yes" : "No", a->score,
                   a->required) < 0)
        return -1;
    col = b->len + sizeof("X-Spam-Status: ") - 1;
    if (*s == '\0')
        return buf_printf(b, e, "none");
    while (*s != '\0') {
        comma = strchr(s, ',');
        n = comma != NULL ? (size_t)(comma - s) + 1 : strlen(s);
        if (col + n > FLT_AS_HEADER_LINE && col > 8) {
            if (buf_printf(b, e, "%s\t", eol) < 0)
                return -1;
            col = 8;
        }
        if (buf_append(b, s, n, e) < 0)
            return -1;
        col += n;
        s += n;
    }
    return 0;
}

static int
flt_as_headers(const struct stage *st, struct msg *m,
               const struct flt_as_answer *a, struct err *e)
{
    static const char *const names[] = {"X-Spam-Status", "X-Spam-Score"};
    char score[64];
    struct buf status;
    size_t i, k;
    int rc;

    /* A message without a header (all body, as Postfix reads it) is left
     * as it is: a field added would turn all of it into body text. */
    if (msg_header_count(m) == 0)
        return 0;
    for (i = 0; i < 2; i++)
        for (k = msg_header_name_count(m, names[i]); k > 0; k--)
            if (msg_header_delete(m, st->name, names[i], k, e) < 0)
                return -1;
    if (a == NULL)
        return 0;
    buf_init(&status, 0);
    snprintf(score, sizeof(score), "%.1f", a->score);
    rc = flt_as_status(&status, a, msg_eol(m), e);
    if (rc == 0)
        rc = msg_header_add(m, st->name, names[0], status.data, e);
    if (rc == 0)
        rc = msg_header_add(m, st->name, names[1], score, e);
    buf_fini(&status);
    return rc;
}

/* flt_as_unchecked - on_unchecked for a message the engine could not
 * check, with why in the note and the reply. */
static int
flt_as_unchecked(const struct stage *st, const struct flt_as *fa,
                 struct msg *m, const struct err *why, struct verdict *v,
                 struct err *e)
{
    const char *eng = fa->ops->name;

    switch (fa->on_unchecked) {
    case FLT_AS_CONTINUE:
        /* A client's own X-Spam-Status would pass for ours: it goes. */
        if (fa->add_header && flt_as_headers(st, m, NULL, e) < 0)
            return -1;
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "unchecked (%s), engine=%s, passed (on_unchecked "
                           "= continue)",
                           why->text, eng);
    case FLT_AS_QUARANTINE:
        if (fa->add_header && flt_as_headers(st, m, NULL, e) < 0)
            return -1;
        return verdict_set(v, VERDICT_QUARANTINE, NULL,
                           "unchecked (%s), engine=%s", why->text, eng);
    case FLT_AS_REJECT:
        return verdict_set(v, VERDICT_REJECT,
                           "554 5.7.0 Message could not be checked for spam",
                           "unchecked (%s), engine=%s", why->text, eng);
    default:
        return verdict_set(v, VERDICT_TEMPFAIL,
                           "451 4.7.1 Message could not be checked for "
                           "spam, try again later",
                           "unchecked (%s), engine=%s", why->text, eng);
    }
}

static int
flt_as_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    const struct flt_as *fa = st->priv;
    const struct msg_env *env = msg_env(m);
    const char *eng = fa->ops->name;
    const char **rcpts = NULL;
    struct flt_as_query q;
    struct flt_as_answer a;
    struct err why;
    char rules[FLT_AS_RULES_REPLY], reply[VERDICT_REPLY_MAX];
    size_t i;
    int rc;

    memset(&q, 0, sizeof(q));
    if ((q.data = msg_flat(m, &q.len, e)) == NULL)
        goto fail;
    if (env->nrcpts > 0 &&
        (rcpts = calloc(env->nrcpts, sizeof(*rcpts))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    for (i = 0; i < env->nrcpts; i++)
        rcpts[i] = env->rcpts[i].addr;
    q.qid = env->qid;
    q.sender = env->sender != NULL ? env->sender : "";
    q.rcpts = rcpts;
    q.nrcpts = env->nrcpts;
    q.client_addr = env->client_addr;
    q.client_name = flt_as_client_name(env->client_name);
    q.helo = env->helo;
    q.auth_user = env->auth_user;

    memset(&a, 0, sizeof(a));
    err_clear(&why);
    rc = fa->ops->check(fa->engine, &q, &a, &why);
    free(rcpts);
    if (rc == 0 && (!isfinite(a.score) || !isfinite(a.required))) {
        rc = err_set(&why, ERR_TEMP, "%s: the score is not a number", eng);
    }
    if (rc < 0) {
        if (why.text[0] == '\0')
            err_set(&why, ERR_TEMP, "%s: no reason given", eng);
        if (flt_as_unchecked(st, fa, m, &why, v, e) < 0)
            goto fail;
        return 0;
    }
    a.symbols[sizeof(a.symbols) - 1] = '\0';

    switch (flt_as_decide(&fa->t, a.score)) {
    case FLT_AS_REJECT:
        if (fa->reject_with_rules && a.symbols[0] != '\0')
            snprintf(reply, sizeof(reply),
                     "554 5.7.1 Message refused as spam (%s)",
                     flt_as_cut(a.symbols, rules, sizeof(rules)));
        else
            snprintf(reply, sizeof(reply),
                     "554 5.7.1 Message refused as spam");
        return verdict_set(
            v, VERDICT_REJECT, reply, "score=%.1f (%s), engine=%s", a.score,
            flt_as_cut(a.symbols, rules, FLT_AS_RULES_NOTE), eng);
    case FLT_AS_QUARANTINE:
        if (fa->add_header && flt_as_headers(st, m, &a, e) < 0)
            goto fail;
        return verdict_set(
            v, VERDICT_QUARANTINE, NULL, "score=%.1f (%s), engine=%s", a.score,
            flt_as_cut(a.symbols, rules, FLT_AS_RULES_NOTE), eng);
    default:
        if (fa->add_header && flt_as_headers(st, m, &a, e) < 0)
            goto fail;
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "score=%.1f/%.1f, engine=%s", a.score, a.required,
                           eng);
    }

fail:
    err_prefix(e, "%s", st->name);
    return -1;
}

const struct stage_type flt_antispam_type = {
    .name = "antispam",
    .summary = "outbound spam scoring by rspamd or SpamAssassin's spamd: "
               "headers, quarantine or reject by score",
    .flags = STAGE_EDITS_HEADERS,
    .options = flt_as_options,
    .init = flt_as_init,
    .run = flt_as_run,
    .free = flt_as_free,
};
