/*
 * testedit - a stage for the milter tests only: scripted edits and
 * verdicts
 *
 * Built into tests/relaychaind-test (listed by tests/milter/testregistry.c,
 * which takes the place of filters/registry.c there) and into the milter
 * unit tests and fuzzer, never into the installed programs. The stage makes exactly the edits its file
 * names, in this order, then gives its verdict:
 *
 *     header_change = NAME:INDEX:VALUE    msg_header_change
 *     header_delete = NAME:INDEX          msg_header_delete
 *     header_insert = POSITION:NAME:VALUE msg_header_insert
 *     header_add    = NAME:VALUE          msg_header_add
 *     body_size     = SIZE                a new body of SIZE octets of
 *                                         numbered 76-octet lines
 *     frontend_header = yes               X-Frontend: cli, smtp or milter
 *     delay         = TIME                sleep before deciding
 *     fail          = yes                 return an error (on_error)
 *     fail_after_edits = yes              make the edits, then return an
 *                                         error (a stage that dies half
 *                                         way: on_error = continue must
 *                                         undo them)
 *     verdict       = continue|reject|tempfail|discard|quarantine
 *     reply         = "550 5.7.1 text"
 *
 * "\n" in a VALUE becomes a fold (line end and a tab). The only stage
 * that edits headers by name and index on demand: it drives the
 * duplicate-header and insert-position cases no shipped stage produces.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "chain/stage.h"

static const char *const testedit_verdicts[] = {
    "continue", "reject", "tempfail", "discard", "quarantine", NULL};

static const struct cfg_option testedit_options[] = {
    {"header_change", CFG_STRING, NULL, "NAME:INDEX:VALUE", NULL, 0, 0, 0},
    {"header_delete", CFG_STRING, NULL, "NAME:INDEX", NULL, 0, 0, 0},
    {"header_insert", CFG_STRING, NULL, "POSITION:NAME:VALUE", NULL, 0, 0, 0},
    {"header_add", CFG_STRING, NULL, "NAME:VALUE", NULL, 0, 0, 0},
    {"body_size", CFG_SIZE, NULL, "replace the body with this many octets",
     NULL, 0, 64LL * 1024 * 1024, 0},
    {"frontend_header", CFG_BOOL, "no", "add X-Frontend", NULL, 0, 0, 0},
    {"delay", CFG_TIME, "0", "sleep this long", NULL, 0, 600000, 0},
    {"fail", CFG_BOOL, "no", "fail with an error", NULL, 0, 0, 0},
    {"fail_after_edits", CFG_BOOL, "no", "make the edits, then fail", NULL, 0,
     0, 0},
    {"verdict", CFG_ENUM, "continue", "the verdict", testedit_verdicts, 0, 0,
     0},
    {"reply", CFG_STRING, NULL, "SMTP reply for reject and tempfail", NULL, 0,
     0, 0},
    CFG_OPTION_END,
};

static int
testedit_init(struct stage *st, const struct cfg *c, struct err *e)
{
    (void)e;
    st->priv = (void *)c;
    return 0;
}

static void
testedit_free(struct stage *st)
{
    st->priv = NULL;
}

/* testedit_split - copy s into out and cut it at the first n-1 colons
 * into parts; returns 0 or -1. "\n" in the last part becomes a fold. */
static int
testedit_split(const char *s, char *out, size_t size, char **parts, int n)
{
    char *p, *q;
    int i;

    if (snprintf(out, size, "%s", s) >= (int)size)
        return -1;
    parts[0] = out;
    for (i = 1, p = out; i < n; i++) {
        if ((p = strchr(p, ':')) == NULL)
            return -1;
        *p++ = '\0';
        parts[i] = p;
    }
    for (q = parts[n - 1]; (q = strstr(q, "\\n")) != NULL; q += 2) {
        q[0] = '\n';
        q[1] = '\t';
    }
    return 0;
}

static int
testedit_run(const struct stage *st, struct msg *m, struct verdict *v,
             struct err *e)
{
    const struct cfg *c = st->priv;
    static const char *const fe[] = {"cli", "smtp", "milter"};
    char tmp[1024], *part[3];
    const char *s;
    long long ms;

    if ((ms = cfg_num(c, "delay")) > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

        nanosleep(&ts, NULL);
    }
    if (cfg_bool(c, "fail"))
        return err_set(e, ERR_TEMP, "%s: failing as configured", st->name);
    if ((s = cfg_str(c, "header_change")) != NULL &&
        (testedit_split(s, tmp, sizeof(tmp), part, 3) < 0 ||
         msg_header_change(m, st->name, part[0], strtoul(part[1], NULL, 10),
                           part[2], e) < 0))
        return err_set(e, ERR_INPUT, "header_change %s failed", s);
    if ((s = cfg_str(c, "header_delete")) != NULL &&
        (testedit_split(s, tmp, sizeof(tmp), part, 2) < 0 ||
         msg_header_delete(m, st->name, part[0], strtoul(part[1], NULL, 10),
                           e) < 0))
        return err_set(e, ERR_INPUT, "header_delete %s failed", s);
    if ((s = cfg_str(c, "header_insert")) != NULL &&
        (testedit_split(s, tmp, sizeof(tmp), part, 3) < 0 ||
         msg_header_insert(m, st->name, strtoul(part[0], NULL, 10), part[1],
                           part[2], e) < 0))
        return err_set(e, ERR_INPUT, "header_insert %s failed", s);
    if ((s = cfg_str(c, "header_add")) != NULL &&
        (testedit_split(s, tmp, sizeof(tmp), part, 2) < 0 ||
         msg_header_add(m, st->name, part[0], part[1], e) < 0))
        return err_set(e, ERR_INPUT, "header_add %s failed", s);
    if (cfg_bool(c, "frontend_header") &&
        msg_header_add(m, st->name, "X-Frontend", fe[msg_env(m)->frontend],
                       e) < 0)
        return -1;
    if (cfg_is_set(c, "body_size")) {
        size_t want = (size_t)cfg_num(c, "body_size"), line = 0;
        struct buf b;
        int rc;

        buf_init(&b, want + 128);
        while (b.len < want) {
            char l[96];
            int n = snprintf(l, sizeof(l), "%08zu %s\r\n", line++,
                             "relaychain milter body replacement test line "
                             "0123456789abcdef");

            if (buf_append(&b, l, (size_t)n, e) < 0) {
                buf_fini(&b);
                return -1;
            }
        }
        rc = msg_body_replace(m, st->name, b.data, want, e);
        buf_fini(&b);
        if (rc < 0)
            return -1;
    }
    if (cfg_bool(c, "fail_after_edits"))
        return err_set(e, ERR_TEMP, "%s: failing after the edits", st->name);
    return verdict_set(v, (enum verdict_kind)cfg_enum(c, "verdict"),
                       cfg_str(c, "reply"), "testedit");
}

const struct stage_type flt_testedit_type = {
    .name = "testedit",
    .summary = "scripted edits and verdicts, for tests",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY,
    .options = testedit_options,
    .init = testedit_init,
    .run = testedit_run,
    .free = testedit_free,
};
