/*
 * antispam - outbound spam scoring by an existing engine: rspamd or
 *     SpamAssassin's spamd
 *
 * Configuration (chain.d):
 *     engine = spamd | rspamd, server, timeout
 *     add_header, quarantine_score, reject_score, reject_with_rules,
 *     on_unchecked
 *     hold_user, hold_directory, hold_window, hold_factor, hold_floor_*,
 *     hold_max_*, hold_min_scored, notify_address, notify_next_hop
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
 * Compromised accounts (hold_user = tempfail | quarantine; off by
 * default): every message is counted for its authenticated user, or for
 * its client address when it relays without AUTH, in a tracker
 * (antispam_hold.c) that holds the key when its counts over hold_window
 * jump past hold_factor times its own baseline and the floors, or past
 * a ceiling. The message that trips it and every later one of that key
 * get 451 4.7.1 (or go to quarantine) without being scanned, until
 * "relaychain user release" removes its file in hold_directory. A hold
 * is logged at warning:
 *     6A0F3C21B7: antispam: hold user=alice: recipients 412 in 3600s >
 *         10x baseline 37.0 (floor 200)
 * and, with notify_address, told to the admin in a short notice sent
 * through the chain's notice service. The counts are per node and start
 * again at a reload; the holds are files and stay.
 *
 * The stage owns its engine and its tracker; run() only reads the
 * engine, which is thread-safe, and the tracker locks itself, so run()
 * may be called from any number of threads.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "chain/conf.h"
#include "filters/antispam/antispam_int.h"
#include "filters/filters.h"
#include "filters/filters_int.h"
#include "util/addr.h"
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

enum flt_as_hold_mode {
    FLT_AS_HOLD_NO,
    FLT_AS_HOLD_TEMPFAIL,
    FLT_AS_HOLD_QUARANTINE
};

static const char *const flt_as_hold_choices[] = {
    [FLT_AS_HOLD_NO] = "no",
    [FLT_AS_HOLD_TEMPFAIL] = "tempfail",
    [FLT_AS_HOLD_QUARANTINE] = "quarantine",
    NULL,
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
    /* ---- compromised accounts (hold_user) */
    {"hold_user", CFG_ENUM, "no",
     "hold an authenticated user (or a client relaying without AUTH) "
     "whose sending jumps past its own baseline or a ceiling: no, "
     "tempfail (451 4.7.1 for its mail until released) or quarantine",
     flt_as_hold_choices, 0, 0, 0},
    {"hold_clients", CFG_BOOL, "yes",
     "count the mail a client relays without AUTH by its address, too (no: "
     "authenticated users only; say no where that address says nothing, "
     "all mail coming from one MTA that sends no XFORWARD)",
     NULL, 0, 0, 0},
    {"hold_directory", CFG_PATH, CONF_SPOOL_DIR "/holds",
     "where each hold is kept as a file, which \"relaychain user release\" "
     "removes",
     NULL, 0, 0, 0},
    {"hold_window", CFG_TIME, "1h",
     "the sliding window the counts are taken over (and the baseline's "
     "unit)",
     NULL, 10 * 1000, 7LL * 24 * 3600 * 1000, 0},
    {"hold_factor", CFG_STRING, "10",
     "hold when a count is past this many times the key's own baseline "
     "(and past its floor)",
     NULL, 0, 0, 0},
    {"hold_floor_messages", CFG_INT, "100",
     "no hold by baseline at or below this many messages in the window", NULL,
     0, 100000000, 0},
    {"hold_floor_recipients", CFG_INT, "200",
     "no hold by baseline at or below this many distinct recipients in the "
     "window",
     NULL, 0, 100000000, 0},
    {"hold_floor_domains", CFG_INT, "50",
     "no hold by baseline at or below this many new destination domains in "
     "the window",
     NULL, 0, 100000000, 0},
    {"hold_max_messages", CFG_INT, "0",
     "hold past this many messages in the window, whatever the baseline "
     "(0: no ceiling)",
     NULL, 0, 100000000, 0},
    {"hold_max_recipients", CFG_INT, "0",
     "hold past this many distinct recipients in the window (0: no "
     "ceiling)",
     NULL, 0, 100000000, 0},
    {"hold_max_domains", CFG_INT, "0",
     "hold past this many new destination domains in the window (0: no "
     "ceiling)",
     NULL, 0, 100000000, 0},
    {"hold_max_spam_share", CFG_STRING, "0.5",
     "hold when more than this share of the key's scored messages in the "
     "window score at or over the engine's required score (1: never)",
     NULL, 0, 0, 0},
    {"hold_min_scored", CFG_INT, "10",
     "the spam share is judged from this many scored messages in the window",
     NULL, 1, 100000000, 0},
    {"hold_max_keys", CFG_INT, "4096",
     "users and client addresses remembered at most (about 3.5 KB each); the "
     "least recently seen is forgotten first",
     NULL, 16, 1000000, 0},
    {"notify_address", CFG_STRING, NULL,
     "address that gets a short notice for each new hold", NULL, 0, 0, 0},
    {"notify_next_hop", CFG_STRING, "smtp:[127.0.0.1]:25",
     "where hold notices are sent (smtp:[HOST]:PORT or lmtp:...)", NULL, 0, 0,
     0},
    CFG_OPTION_END,
};

/* The hold keys, refused when hold_user = no: they would do nothing. */
static const char *const flt_as_hold_keys[] = {
    "hold_clients",       "hold_directory",      "hold_window",
    "hold_factor",        "hold_floor_messages", "hold_floor_recipients",
    "hold_floor_domains", "hold_max_messages",   "hold_max_recipients",
    "hold_max_domains",   "hold_max_spam_share", "hold_min_scored",
    "hold_max_keys",      "notify_address",      "notify_next_hop",
};

struct flt_as {
    const struct flt_as_engine_ops *ops;
    void *engine;
    struct flt_as_thresholds t;
    int add_header;
    int reject_with_rules;
    enum flt_as_action on_unchecked;
    /* hold_user */
    enum flt_as_hold_mode hold_mode;
    struct flt_as_hold *hold; /* NULL: off (or check only) */
    int hold_clients;
    char *notify_address;
    struct stage_notifier *notify;
    void (*notifier_free)(struct stage_notifier *n);
    char hostname[256];
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
    flt_as_hold_free(fa->hold);
    if (fa->notify != NULL)
        fa->notifier_free(fa->notify);
    free(fa->notify_address);
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

/* flt_as_real_key - a number key of c (hold_factor, hold_max_spam_share)
 * into *v, which must lie in [min, max]. */
static int
flt_as_real_key(const struct cfg *c, const char *key, double min, double max,
                double *v, struct err *e)
{
    int has;

    if (flt_as_score_key(c, key, &has, v, e) < 0)
        return -1;
    if (!has || *v < min || *v > max)
        return cfg_err(e, c, key, "'%s' is not a number from %g to %g",
                       cfg_str(c, key) ? cfg_str(c, key) : "", min, max);
    return 0;
}

/* flt_as_init_hold - the hold_* keys: the tracker, its directory (made
 * when missing; read for the holds of an earlier run) and the notifier. */
static int
flt_as_init_hold(struct stage *st, struct flt_as *fa, const struct cfg *c,
                 struct err *e)
{
    struct flt_as_hold_limits l;
    const char *addr, *dir;
    char why[256];
    size_t i;
    long n;
    int dfd = -1;

    fa->hold_mode = (enum flt_as_hold_mode)cfg_enum(c, "hold_user");
    if (fa->hold_mode == FLT_AS_HOLD_NO) {
        for (i = 0; i < sizeof(flt_as_hold_keys) / sizeof(*flt_as_hold_keys);
             i++)
            if (cfg_is_set(c, flt_as_hold_keys[i]))
                return cfg_err(e, c, flt_as_hold_keys[i],
                               "set hold_user too (tempfail or quarantine)");
        return 0;
    }
    fa->hold_clients = cfg_bool(c, "hold_clients");
    memset(&l, 0, sizeof(l));
    l.window = cfg_num(c, "hold_window") / 1000;
    if (flt_as_real_key(c, "hold_factor", 1.01, 1000000, &l.factor, e) < 0 ||
        flt_as_real_key(c, "hold_max_spam_share", 0, 1, &l.max_spam_share, e) <
            0)
        return -1;
    l.floor[FLT_AS_HM_MESSAGES] =
        (unsigned long)cfg_num(c, "hold_floor_messages");
    l.floor[FLT_AS_HM_RCPTS] =
        (unsigned long)cfg_num(c, "hold_floor_recipients");
    l.floor[FLT_AS_HM_DOMAINS] =
        (unsigned long)cfg_num(c, "hold_floor_domains");
    l.ceiling[FLT_AS_HM_MESSAGES] =
        (unsigned long)cfg_num(c, "hold_max_messages");
    l.ceiling[FLT_AS_HM_RCPTS] =
        (unsigned long)cfg_num(c, "hold_max_recipients");
    l.ceiling[FLT_AS_HM_DOMAINS] =
        (unsigned long)cfg_num(c, "hold_max_domains");
    l.min_scored = (unsigned long)cfg_num(c, "hold_min_scored");
    l.max_keys = (size_t)cfg_num(c, "hold_max_keys");

    if (gethostname(fa->hostname, sizeof(fa->hostname) - 1) < 0 ||
        fa->hostname[0] == '\0')
        snprintf(fa->hostname, sizeof(fa->hostname), "localhost");
    if ((addr = cfg_str(c, "notify_address")) != NULL) {
        if (!addr_is_valid(addr, 0, why, sizeof(why)))
            return cfg_err(e, c, "notify_address",
                           "'%s' is not an address: %s", addr, why);
        if ((fa->notify_address = strdup(addr)) == NULL)
            return err_nomem(e);
        if (st->env == NULL || st->env->notifier_new == NULL ||
            st->env->notify == NULL || st->env->notifier_free == NULL)
            return cfg_err(e, c, "notify_address",
                           "this program sends no notices");
        fa->notifier_free = st->env->notifier_free;
        if ((fa->notify = st->env->notifier_new(cfg_str(c, "notify_next_hop"),
                                                fa->hostname, e)) == NULL)
            return flt_cfg_prefix(e, c, "notify_next_hop");
    } else if (cfg_is_set(c, "notify_next_hop")) {
        return cfg_err(e, c, "notify_next_hop", "set notify_address too");
    }
    /* A check ("relaychain check", the CLI) neither makes the directory
     * nor counts anything. */
    if (st->check_only)
        return 0;
    dir = cfg_str(c, "hold_directory");
    if ((dfd = flt_as_hold_dir(dir, 1, e)) < 0)
        return flt_cfg_prefix(e, c, "hold_directory");
    if ((fa->hold = flt_as_hold_new(&l, dfd, e)) == NULL) {
        close(dfd);
        return flt_cfg_prefix(e, c, "hold_user");
    }
    if ((n = flt_as_hold_load(fa->hold, time(NULL), e)) < 0)
        return flt_cfg_prefix(e, c, "hold_directory");
    if (n > 0)
        log_info(NULL, "%s: %ld held in %s", st->name, n, dir);
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
    if (flt_as_init_hold(st, fa, c, e) < 0)
        goto fail;
    if (!fa->t.has_quarantine && !fa->t.has_reject && !fa->add_header &&
        fa->hold_mode == FLT_AS_HOLD_NO) {
        err_set(e, ERR_CONFIG,
                "%s: the stage would do nothing: set reject_score, "
                "quarantine_score, add_header = yes or hold_user",
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

/* flt_as_key_print - "user:alice" as the log says it: "user=alice". */
static const char *
flt_as_key_print(const char *key, char *out, size_t n)
{
    const char *colon = strchr(key, ':');

    if (colon == NULL)
        snprintf(out, n, "%s", key);
    else
        snprintf(out, n, "%.*s=%s", (int)(colon - key), key, colon + 1);
    return out;
}

/* flt_as_hold_notify - tell notify_address of a new hold of key: a short
 * text notice, no part of the message. Failures are logged only. */
static void
flt_as_hold_notify(const struct stage *st, const struct flt_as *fa,
                   const struct msg *m, const char *key, const char *who,
                   const char *why)
{
    /* What "relaychain user release" takes: a user's bare name. */
    const char *arg = strncmp(key, "user:", 5) == 0 ? key + 5 : key;
    char date[64];
    struct stage_reply r;
    struct buf b;
    struct err e;
    time_t now = time(NULL);
    struct tm tm;

    err_clear(&e);
    buf_init(&b, 8192);
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_printf(&b, &e,
               "From: relaychain antispam <MAILER-DAEMON@%s>\r\n"
               "To: <%s>\r\n"
               "Subject: sending held: %s\r\n"
               "Date: %s\r\n"
               "Message-ID: <%s.%lld.hold@%s>\r\n"
               "Auto-Submitted: auto-generated\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n"
               "\r\n"
               "The %s stage holds the mail of %s: its sending jumped\r\n"
               "past its usual rate or a limit, as a compromised account's\r\n"
               "does. Its further mail gets %s until an admin runs\r\n"
               "\r\n"
               "    relaychain user release %s\r\n"
               "\r\n"
               "Reason:    %s\r\n"
               "Queue ID:  %s\r\n",
               fa->hostname, fa->notify_address, who, date, msg_qid(m),
               (long long)now, fa->hostname, st->name, who,
               fa->hold_mode == FLT_AS_HOLD_QUARANTINE ? "quarantined"
                                                       : "451 4.7.1",
               arg, why, msg_qid(m));
    if (e.code != ERR_NONE) {
        log_warning(msg_qid(m), "%s: notice to %s not sent: %s", st->name,
                    fa->notify_address, e.text);
    } else if (st->env->notify(fa->notify, fa->notify_address, &b, &r) == 0) {
        log_info(msg_qid(m), "%s: notice sent to %s (%d %s)", st->name,
                 fa->notify_address, r.code, r.text);
    } else {
        log_warning(msg_qid(m), "%s: notice to %s not sent: %d %s", st->name,
                    fa->notify_address, r.code, r.text);
    }
    buf_fini(&b);
}

/* flt_as_held - the verdict for a held key's message. */
static int
flt_as_held(const struct flt_as *fa, const char *who, struct verdict *v)
{
    if (fa->hold_mode == FLT_AS_HOLD_QUARANTINE)
        return verdict_set(v, VERDICT_QUARANTINE, NULL,
                           "held, %s (hold_user = quarantine)", who);
    return verdict_set(v, VERDICT_TEMPFAIL,
                       "451 4.7.1 Sending from this account is on hold, "
                       "try again later",
                       "held, %s (hold_user = tempfail)", who);
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
    char keybuf[FLT_AS_HOLD_KEY_MAX], who[FLT_AS_HOLD_KEY_MAX + 8];
    char why_hold[FLT_AS_HOLD_WHY_MAX];
    const char *key = NULL;
    struct flt_as_hold_obs o;
    size_t i;
    int rc;

    if (fa->hold != NULL &&
        (key = flt_as_hold_key(env->auth_user,
                               fa->hold_clients ? env->client_addr : NULL,
                               keybuf, sizeof(keybuf))) != NULL) {
        flt_as_key_print(key, who, sizeof(who));
        /* A held key's mail is not scanned, and not counted. */
        if (flt_as_hold_is_held(fa->hold, key, time(NULL)))
            return flt_as_held(fa, who, v);
    }
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
    if (rc == 0 && (!isfinite(a.score) || !isfinite(a.required))) {
        rc = err_set(&why, ERR_TEMP, "%s: the score is not a number", eng);
    }
    if (key != NULL) {
        memset(&o, 0, sizeof(o));
        o.rcpts = rcpts;
        o.nrcpts = env->nrcpts;
        o.scored = rc == 0;
        o.spam = rc == 0 && a.score >= a.required;
        if (flt_as_hold_record(fa->hold, key, &o, time(NULL), why_hold,
                               sizeof(why_hold))) {
            free(rcpts);
            log_warning(msg_qid(m), "%s: hold %s: %s", st->name, who,
                        why_hold);
            if (fa->notify != NULL)
                flt_as_hold_notify(st, fa, m, key, who, why_hold);
            return flt_as_held(fa, who, v);
        }
    }
    free(rcpts);
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
