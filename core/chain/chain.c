/*
 * chain - load the chain.d stages and run a message through them
 *
 * Loading: the directory is read once, names sorted with strcmp() (the C
 * locale's order, whatever the process locale), and each *.conf file
 * becomes one struct stage. A file is parsed, its "stage" key picks the
 * type, and the file is validated against the common keys (stage,
 * on_error, match_*) plus the type's own table before the type's init()
 * runs. Any failure stops the load with "path:line: reason"; a half-built
 * chain is freed, never used.
 *
 * Order rule: no stage that edits the header or body may follow a stage
 * that signs (a disclaimer after DKIM is the classic broken signature),
 * nor one that encrypts, unless it is a signer (DKIM signs the encrypted
 * form).
 *
 * Running: each stage's journal entries are checked against the flags it
 * declared, so a stage cannot change what the order rule assumed it
 * would not. A stage error is turned into its on_error policy here and
 * nowhere else. A stage with on_error = continue runs under a message
 * mark (msg_mark): when it fails, its edits are rolled back, so the next
 * stage, the journal the milter front end replays and the message the
 * SMTP front end writes are as if it had not run; a half-done edit set
 * (a body re-encoded without its new Content-Transfer-Encoding) never
 * goes on. Rolling back cannot fail. Other stages are not marked: their
 * error stops the chain, unless chain_run_opts() was asked to undo a
 * hold: then every stage is marked, and a stage that quarantines has its
 * own edits rolled back (its error still stops the chain). A release
 * (resume_after) starts at the stage after the one that held the message.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "chain/chain.h"
#include "util/log.h"
#include "util/metrics.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "chain/registry.h"

#define CHAIN_MAX_STAGES 256

struct chain {
    struct stage **stages;
    size_t nstages;
    enum chain_ambiguous_action ambiguous;
    unsigned flags;
    int check_only; /* CHAIN_LOAD_CHECK: never run */
};

static const char *const chain_on_error_choices[] = {
    [STAGE_ON_ERROR_TEMPFAIL] = "tempfail",
    [STAGE_ON_ERROR_CONTINUE] = "continue",
    NULL};

const struct cfg_option chain_common_options[] = {
    {"stage", CFG_STRING, NULL, "stage type: rewrite, ...", NULL, 0, 0,
     CFG_REQUIRED},
    {"on_error", CFG_ENUM, "tempfail",
     "what a stage error becomes: tempfail (4xx) or continue (undo the "
     "stage's edits and pass the message on as if it had not run)",
     chain_on_error_choices, 0, 0, 0},
    CFG_OPTION_END,
};

static void
chain_stage_free(struct stage *st)
{
    if (st == NULL)
        return;
    if (st->type != NULL && st->type->free != NULL && st->priv != NULL)
        st->type->free(st);
    match_free(st->match);
    cfg_free(st->cfg);
    free(st->name);
    free(st->file);
    free(st);
}

void
chain_free(struct chain *ch)
{
    size_t i;

    if (ch == NULL)
        return;
    for (i = 0; i < ch->nstages; i++)
        chain_stage_free(ch->stages[i]);
    free(ch->stages);
    free(ch);
}

static int
chain_name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int
chain_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* chain_instance_name - "10-rewrite.conf" gives "rewrite"; a name already
 * taken by an earlier stage keeps its number ("20-rewrite") so log lines
 * stay unambiguous. */
static char *
chain_instance_name(const struct chain *ch, const char *file)
{
    const char *p = file;
    size_t len, i;
    char *name;

    while (*p >= '0' && *p <= '9')
        p++;
    if (p != file && *p == '-' && p[1] != '.')
        p++;
    else
        p = file;
    len = strlen(p) - strlen(".conf");
    for (i = 0; i < ch->nstages; i++)
        if (strlen(ch->stages[i]->name) == len &&
            strncmp(ch->stages[i]->name, p, len) == 0) {
            p = file;
            len = strlen(p) - strlen(".conf");
            break;
        }
    if ((name = malloc(len + 1)) == NULL)
        return NULL;
    memcpy(name, p, len);
    name[len] = '\0';
    return name;
}

static int
chain_types_list(char *out, size_t n, chain_type_lookup lookup)
{
    const struct stage_type *const *types;
    size_t i, count, used = 0;

    out[0] = '\0';
    if (lookup != registry_find)
        return 0;
    count = registry_all(&types);
    for (i = 0; i < count && used < n; i++) {
        int k = snprintf(out + used, n - used, "%s%s", i ? ", " : "",
                         types[i]->name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return 0;
}

static struct stage *
chain_stage_load(struct chain *ch, const char *dir, const char *file,
                 chain_type_lookup lookup, struct err *e)
{
    const struct cfg_option *tables[4];
    const struct stage_type *type;
    struct stage *st;
    const char *tname;
    char path[4096];

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >=
        sizeof(path)) {
        err_set(e, ERR_CONFIG, "%s/%s: path too long", dir, file);
        return NULL;
    }
    if ((st = calloc(1, sizeof(*st))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((st->file = strdup(path)) == NULL ||
        (st->name = chain_instance_name(ch, file)) == NULL) {
        err_nomem(e);
        goto fail;
    }
    if ((st->cfg = cfg_parse(path, e)) == NULL)
        goto fail;

    tname = cfg_raw(st->cfg, "stage");
    type = tname != NULL ? lookup(tname) : NULL;
    if (tname != NULL && type == NULL) {
        char known[256];

        chain_types_list(known, sizeof(known), lookup);
        err_set(e, ERR_CONFIG, "%s:%u: unknown stage type '%s'%s%s%s", path,
                cfg_raw_line(st->cfg, "stage"), tname,
                known[0] ? " (known: " : "", known, known[0] ? ")" : "");
        goto fail;
    }
    tables[0] = chain_common_options;
    tables[1] = match_options;
    tables[2] = type != NULL ? type->options : NULL;
    tables[3] = NULL;
    if (cfg_validate(st->cfg, tables, e) < 0)
        goto fail;

    st->type = type;
    st->flags = type->flags;
    st->check_only = ch->check_only;
    st->env = registry_env();
    st->on_error = (enum stage_on_error)cfg_enum(st->cfg, "on_error");
    if ((st->match = match_new(st->cfg, e)) == NULL)
        goto fail;
    if (type->init != NULL && type->init(st, st->cfg, e) < 0) {
        if (strncmp(e->text, path, strlen(path)) != 0)
            err_prefix(e, "%s", path);
        e->code = ERR_CONFIG;
        goto fail;
    }
    if (st->flags & ~type->flags) {
        err_set(e, ERR_INTERNAL,
                "%s: stage type %s widened its flags in init()", path,
                type->name);
        goto fail;
    }
    return st;

fail:
    chain_stage_free(st);
    return NULL;
}

/* chain_check_order - refuse an editing stage after a signing one. */
static int
chain_check_order(const struct chain *ch, struct err *e)
{
    const unsigned edits = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY;
    size_t i, j;

    /* ---- encrypt: after an encrypting stage only signers may edit */
    for (i = 0; i < ch->nstages; i++) {
        const struct stage *enc = ch->stages[i];

        if (!(enc->flags & STAGE_ENCRYPTS))
            continue;
        for (j = i + 1; j < ch->nstages; j++) {
            const struct stage *ed = ch->stages[j];

            if ((ed->flags & edits) && !(ed->flags & STAGE_SIGNS))
                return err_set(
                    e, ERR_CONFIG,
                    "%s:%u: stage %s (%s) edits the %s after the "
                    "encrypting stage %s (%s), which would change mail "
                    "already encrypted; give it a file name that sorts "
                    "before %s",
                    ed->file, cfg_line(ed->cfg, "stage"), ed->name,
                    ed->type->name,
                    (ed->flags & STAGE_EDITS_BODY) ? "body" : "header",
                    enc->name, enc->file, enc->file);
        }
    }
    /* ---- end encrypt */

    for (i = 0; i < ch->nstages; i++) {
        const struct stage *signer = ch->stages[i];

        if (!(signer->flags & STAGE_SIGNS))
            continue;
        for (j = i + 1; j < ch->nstages; j++) {
            const struct stage *ed = ch->stages[j];

            if (ed->flags & edits)
                return err_set(
                    e, ERR_CONFIG,
                    "%s: stage %s (%s) edits the %s after the signing stage "
                    "%s (%s), which would break the signature; give it a "
                    "file name that sorts before %s",
                    ed->file, ed->name, ed->type->name,
                    (ed->flags & STAGE_EDITS_BODY) ? "body" : "header",
                    signer->name, signer->file, signer->file);
        }
    }
    return 0;
}

/* chain_skip_note - say why a file of the chain directory is not a
 * stage, as loudly as an admin needs it. Folders hold rule files, keys
 * and templates, and "*.example" files are what the shipped chain.d keeps
 * for a stage not turned on: both are the layout, not news, so they are
 * skipped in silence. A name that holds ".conf" but does not end with it
 * ("20-av.conf.bak", "20-av.conf~", "20-av.conf.dpkg-old") looks like a
 * stage the admin may believe is running: that is a warning. Anything
 * else is noted at info level. */
static void
chain_skip_note(const char *dir, const char *name, const struct stat *sb)
{
    if (S_ISDIR(sb->st_mode) || chain_has_suffix(name, ".example"))
        return;
    if (name[0] != '.' && strstr(name, ".conf") != NULL)
        log_warning(NULL,
                    "%s: skipping %s: not a *.conf file, so not a stage "
                    "(rename it to end in .conf to run it)",
                    dir, name);
    else
        log_info(NULL, "%s: skipping %s: not a *.conf file", dir, name);
}

struct chain *
chain_load_types(const char *dir, enum chain_ambiguous_action ambiguous,
                 chain_type_lookup lookup, struct err *e)
{
    return chain_load_flags(dir, ambiguous, lookup, 0, e);
}

struct chain *
chain_load_flags(const char *dir, enum chain_ambiguous_action ambiguous,
                 chain_type_lookup lookup, unsigned flags, struct err *e)
{
    struct chain *ch;
    struct dirent *de;
    char **names = NULL;
    size_t nnames = 0, i;
    DIR *d;

    if ((ch = calloc(1, sizeof(*ch))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    ch->ambiguous = ambiguous;
    ch->check_only = (flags & CHAIN_LOAD_CHECK) != 0;
    if (lookup == NULL)
        lookup = registry_find;
    if ((d = opendir(dir)) == NULL) {
        err_sys(e, ERR_CONFIG, "chain_directory %s", dir);
        free(ch);
        return NULL;
    }
    while ((de = readdir(d)) != NULL) {
        char **grown;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (nnames >= CHAIN_MAX_STAGES * 4) {
            err_set(e, ERR_CONFIG, "%s: too many files (limit %d)", dir,
                    CHAIN_MAX_STAGES * 4);
            goto fail;
        }
        if ((grown = realloc(names, (nnames + 1) * sizeof(*names))) == NULL) {
            err_nomem(e);
            goto fail;
        }
        names = grown;
        if ((names[nnames] = strdup(de->d_name)) == NULL) {
            err_nomem(e);
            goto fail;
        }
        nnames++;
    }
    closedir(d);
    d = NULL;
    if (nnames > 0)
        qsort(names, nnames, sizeof(*names), chain_name_cmp);

    for (i = 0; i < nnames; i++) {
        struct stage *st, **grown;
        char path[4096];
        struct stat sb;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (stat(path, &sb) < 0) {
            err_sys(e, ERR_CONFIG, "%s", path);
            goto fail;
        }
        if (!S_ISREG(sb.st_mode) || !chain_has_suffix(names[i], ".conf") ||
            names[i][0] == '.') {
            chain_skip_note(dir, names[i], &sb);
            continue;
        }
        if (ch->nstages >= CHAIN_MAX_STAGES) {
            err_set(e, ERR_CONFIG, "%s: more than %d stages", dir,
                    CHAIN_MAX_STAGES);
            goto fail;
        }
        if ((st = chain_stage_load(ch, dir, names[i], lookup, e)) == NULL)
            goto fail;
        grown = realloc(ch->stages, (ch->nstages + 1) * sizeof(*grown));
        if (grown == NULL) {
            chain_stage_free(st);
            err_nomem(e);
            goto fail;
        }
        ch->stages = grown;
        ch->stages[ch->nstages++] = st;
        ch->flags |= st->flags;
    }
    if (chain_check_order(ch, e) < 0)
        goto fail;
    for (i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    return ch;

fail:
    if (d != NULL)
        closedir(d);
    for (i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    chain_free(ch);
    return NULL;
}

struct chain *
chain_load(const char *dir, enum chain_ambiguous_action ambiguous,
           struct err *e)
{
    return chain_load_types(dir, ambiguous, registry_find, e);
}

size_t
chain_stages(const struct chain *ch, const struct stage *const **st)
{
    *st = (const struct stage *const *)ch->stages;
    return ch->nstages;
}

unsigned
chain_flags(const struct chain *ch)
{
    return ch->flags;
}

static long long
chain_usec_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* chain_edit_flag - the STAGE_* flag an edit needs. */
static unsigned
chain_edit_flag(enum msg_edit_kind kind)
{
    switch (kind) {
    case MSG_EDIT_HEADER_ADD:
    case MSG_EDIT_HEADER_INSERT:
    case MSG_EDIT_HEADER_CHANGE:
    case MSG_EDIT_HEADER_DELETE:
        return STAGE_EDITS_HEADERS;
    case MSG_EDIT_BODY_REPLACE:
        return STAGE_EDITS_BODY;
    case MSG_EDIT_SENDER:
        return STAGE_EDITS_SENDER;
    case MSG_EDIT_RCPT_ADD:
    case MSG_EDIT_RCPT_DELETE:
        return STAGE_EDITS_RCPTS;
    }
    return ~0u;
}

/* chain_check_edits - every journal entry from from on must be allowed by
 * the stage's flags; a signing stage may add its signature header. */
static int
chain_check_edits(const struct stage *st, const struct msg *m, size_t from,
                  struct err *e)
{
    const struct msg_edit *edits;
    size_t n = msg_journal(m, &edits), i;

    for (i = from; i < n; i++) {
        unsigned need = chain_edit_flag(edits[i].kind);

        if ((st->flags & need) == need)
            continue;
        if ((st->flags & STAGE_SIGNS) &&
            (edits[i].kind == MSG_EDIT_HEADER_ADD ||
             edits[i].kind == MSG_EDIT_HEADER_INSERT))
            continue;
        return err_set(e, ERR_INTERNAL,
                       "stage made a %s edit it did not declare",
                       msg_edit_kind_name(edits[i].kind));
    }
    return 0;
}

/* chain_check_verdict - a reply must agree with its verdict's class. */
static void
chain_fix_verdict(const struct stage *st, struct verdict *v)
{
    switch (v->kind) {
    case VERDICT_REJECT:
        if (v->reply[0] != '5' || strlen(v->reply) < 3)
            snprintf(v->reply, sizeof(v->reply),
                     "554 5.7.1 Message rejected by %s", st->name);
        break;
    case VERDICT_TEMPFAIL:
        if (v->reply[0] != '4' || strlen(v->reply) < 3)
            snprintf(v->reply, sizeof(v->reply),
                     "451 4.3.0 Temporary failure in %s, try again later",
                     st->name);
        break;
    default:
        v->reply[0] = '\0';
        break;
    }
}

static void
chain_log_step(const struct msg *m, const struct chain_step *step)
{
    const struct stage *st = step->stage;
    long long ms = (step->usec + 500) / 1000;

    if (step->failed && step->verdict.kind == VERDICT_CONTINUE)
        log_warning(msg_qid(m), "%s: continue after error (%s), %s, %lldms",
                    st->name, step->err.text, step->verdict.note, ms);
    else if (step->failed)
        log_error(msg_qid(m), "%s: %s after error (%s), %lldms", st->name,
                  verdict_kind_name(step->verdict.kind), step->err.text, ms);
    else if (step->verdict.note[0] != '\0')
        log_info(msg_qid(m), "%s: %s, %s, %lldms", st->name,
                 verdict_kind_name(step->verdict.kind), step->verdict.note,
                 ms);
    else
        log_info(msg_qid(m), "%s: %s, %lldms", st->name,
                 verdict_kind_name(step->verdict.kind), ms);
}

/* ---- encrypt */
int
chain_rcpt_group(const struct chain *ch, const char *sender, const char *rcpt,
                 char *group, size_t n, struct verdict *v, struct err *e)
{
    char one[64];
    size_t i, len = 0;
    int w;

    group[0] = '\0';
    v->kind = VERDICT_CONTINUE;
    for (i = 0; ch != NULL && i < ch->nstages; i++) {
        const struct stage *st = ch->stages[i];

        if (st->type->rcpt_group == NULL)
            continue;
        one[0] = '\0';
        if (st->type->rcpt_group(st, sender, rcpt, one, sizeof(one), v, e) <
            0) {
            err_prefix(e, "%s", st->name);
            return -1;
        }
        if (v->kind != VERDICT_CONTINUE) {
            chain_fix_verdict(st, v);
            return 0;
        }
        w = snprintf(group + len, n - len, "%s=%s;", st->name, one);
        if (w < 0 || (size_t)w >= n - len)
            return err_set(e, ERR_LIMIT, "recipient group too long");
        len += (size_t)w;
    }
    return 0;
}
/* ---- end encrypt */

/* chain_check_mime - apply ambiguous_mime_action; returns 1 when it
 * decided the message, 0 to go on. */
static int
chain_check_mime(const struct chain *ch, struct msg *m,
                 struct chain_result *res)
{
    const struct mime *mm;
    struct err e;
    char what[256];
    unsigned flags;

    err_clear(&e);
    if ((mm = msg_mime(m, &e)) == NULL) {
        log_error(msg_qid(m), "cannot parse MIME structure: %s", e.text);
        verdict_set(
            &res->verdict, VERDICT_TEMPFAIL,
            "451 4.3.0 Cannot parse message structure, try again later",
            "MIME parse failed");
        return 1;
    }
    if ((flags = mime_flags(mm)) == 0)
        return 0;
    mime_flags_describe(flags, what, sizeof(what));
    if (ch->ambiguous == CHAIN_AMBIGUOUS_CONTINUE) {
        log_warning(msg_qid(m), "ambiguous MIME structure (%s), continuing",
                    what);
        return 0;
    }
    log_info(msg_qid(m), "reject: ambiguous MIME structure (%s)", what);
    verdict_set(&res->verdict, VERDICT_REJECT,
                "554 5.6.0 Message has an ambiguous MIME structure",
                "ambiguous MIME (%s)", what);
    return 1;
}

/* chain_done - tell the stages that ran and let the message go on what
 * became of it (stage_type.done). */
static void
chain_done(const struct chain_result *res, const struct msg *m)
{
    size_t i;

    for (i = 0; i < res->nsteps; i++) {
        const struct chain_step *step = &res->steps[i];

        if (step->matched && !step->failed &&
            step->verdict.kind == VERDICT_CONTINUE &&
            step->stage->type->done != NULL)
            step->stage->type->done(step->stage, m, &step->verdict,
                                    &res->verdict, res->by);
    }
}

int
chain_run(const struct chain *ch, struct msg *m, struct chain_result *res,
          struct err *e)
{
    return chain_run_opts(ch, m, NULL, res, e);
}

int
chain_run_opts(const struct chain *ch, struct msg *m,
               const struct chain_opts *o, struct chain_result *res,
               struct err *e)
{
    size_t i, first = 0;

    memset(res, 0, sizeof(*res));
    verdict_set(&res->verdict, VERDICT_CONTINUE, NULL, NULL);
    /* Its stages may lack what run() needs (no virus engine). */
    if (ch->check_only)
        return err_set(e, ERR_INTERNAL,
                       "chain loaded for checking only cannot run");
    if (o != NULL && o->resume_after != NULL) {
        for (first = 0; first < ch->nstages; first++)
            if (strcmp(ch->stages[first]->name, o->resume_after) == 0)
                break;
        if (first == ch->nstages)
            return err_set(e, ERR_CONFIG,
                           "the chain has no stage %s any more: it was "
                           "changed since the message was held",
                           o->resume_after);
        first++;
    }
    if (ch->nstages == 0)
        return 0;
    if ((res->steps = calloc(ch->nstages, sizeof(*res->steps))) == NULL)
        return err_nomem(e);
    if (first == 0 && chain_check_mime(ch, m, res))
        return 0;

    for (i = first; i < ch->nstages; i++) {
        const struct stage *st = ch->stages[i];
        struct chain_step *step = &res->steps[res->nsteps++];
        int undo_hold = o != NULL && o->undo_hold;
        int marked = st->on_error == STAGE_ON_ERROR_CONTINUE || undo_hold;
        const struct msg_edit *edits;
        struct msg_mark mark;
        struct err terr;
        long long t0;
        int rc;

        step->stage = st;
        err_clear(&step->err);
        step->matched = match_test(st->match, m, step->why, sizeof(step->why));
        if (!step->matched) {
            verdict_set(&step->verdict, VERDICT_CONTINUE, NULL, "skipped");
            continue;
        }
        step->edits_before = msg_journal(m, &edits);
        verdict_set(&step->verdict, VERDICT_CONTINUE, NULL, NULL);
        if (marked)
            msg_mark(m, &mark);
        t0 = chain_usec_now();
        rc = st->type->run(st, m, &step->verdict, &step->err);
        step->usec = chain_usec_now() - t0;
        if (rc == 0 &&
            chain_check_edits(st, m, step->edits_before, &step->err) < 0)
            rc = -1;
        if (rc < 0) {
            step->failed = 1;
            if (st->on_error == STAGE_ON_ERROR_CONTINUE) {
                step->edits_undone = msg_rollback(m, &mark);
                verdict_set(&step->verdict, VERDICT_CONTINUE, NULL,
                            "error ignored (on_error = continue), %zu "
                            "edit%s undone",
                            step->edits_undone,
                            step->edits_undone == 1 ? "" : "s");
            } else {
                verdict_set(&step->verdict, VERDICT_TEMPFAIL, NULL, "error");
            }
        } else if (undo_hold && step->verdict.kind == VERDICT_QUARANTINE) {
            step->edits_undone = msg_rollback(m, &mark);
            res->by_edits_undone = step->edits_undone;
        }
        if (marked)
            msg_unmark(m, &mark);
        /* After a rollback this is edits_before again: the entries the
         * stage made are gone from the journal. */
        step->edits_after = msg_journal(m, &edits);
        chain_fix_verdict(st, &step->verdict);
        chain_log_step(m, step);
        /* ---- http: the stage's duration and verdict for /metrics */
        metrics_stage(st->name, step->usec, (int)step->verdict.kind);
        /* The trail the archive stage records; a message is not refused
         * for lack of it. */
        if (msg_trail_add(m, st->name, verdict_kind_name(step->verdict.kind),
                          &terr) < 0)
            log_warning(msg_qid(m), "%s: verdict trail: %s", st->name,
                        terr.text);
        if (step->verdict.kind != VERDICT_CONTINUE) {
            res->verdict = step->verdict;
            res->by = st;
            break;
        }
    }
    chain_done(res, m);
    return 0;
}

/* chain_note_value - the value of "key=" in a verdict note, up to the
 * next comma, into out; NULL when the note has none. */
static const char *
chain_note_value(const char *note, const char *key, char *out, size_t n)
{
    const char *p = note;
    size_t k = strlen(key), len;

    while ((p = strstr(p, key)) != NULL) {
        if ((p == note || p[-1] == ' ' || p[-1] == ',') && p[k] == '=') {
            p += k + 1;
            len = strcspn(p, ",");
            if (len >= n)
                len = n - 1;
            memcpy(out, p, len);
            out[len] = '\0';
            return out;
        }
        p += k;
    }
    return NULL;
}

const char *
chain_summary(const struct chain_result *res, char *out, size_t n)
{
    const struct verdict *v = &res->verdict;
    char what[128];
    size_t i;

    if (v->kind == VERDICT_CONTINUE) {
        /* on_unchecked = continue passed it unscanned: say so, as
         * amavisd-new's "Passed UNCHECKED" does. */
        for (i = 0; i < res->nsteps; i++)
            if (strncmp(res->steps[i].verdict.note, "unchecked", 9) == 0) {
                snprintf(out, n, "Passed UNCHECKED");
                return out;
            }
        snprintf(out, n, "Passed CLEAN");
        return out;
    }
    if (res->by == NULL)
        snprintf(out, n, "Blocked %s",
                 strncmp(v->note, "ambiguous MIME", 14) == 0 ? "BAD-HEADER"
                                                             : "OTHER");
    else if (chain_note_value(v->note, "virus", what, sizeof(what)))
        snprintf(out, n, "Blocked INFECTED (%s)", what);
    else if (chain_note_value(v->note, "banned", what, sizeof(what)))
        snprintf(out, n, "Blocked BANNED (%s)", what);
    else if (strncmp(v->note, "unchecked", 9) == 0)
        snprintf(out, n, "Blocked UNCHECKED");
    else
        snprintf(out, n, "Blocked OTHER (%s)", res->by->name);
    /* A banned name is the attachment's: the sender chose it. */
    for (i = 0; out[i] != '\0'; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = '?';
    return out;
}

void
chain_result_fini(struct chain_result *res)
{
    free(res->steps);
    res->steps = NULL;
    res->nsteps = 0;
}
