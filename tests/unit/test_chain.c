/*
 * test_chain - the chain runner: order, match conditions, verdicts,
 * on_error (and the rollback of a failed stage's edits), the
 * signing-order rule, declared flags and ambiguous MIME; a quarantining
 * stage's edits taken back (undo_hold), a release resuming after it
 * (resume_after), and the summary words; the trail of verdicts a stage
 * reads (msg_trail) and the chain's outcome told to done()
 *
 * The chains are made of small stage types defined here, loaded with
 * chain_load_types(), so the runner is tested apart from real stages.
 */
#include "config.h"

#include "unit.h"

#include <unistd.h>

#include "chain/chain.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

/* "mark": adds X-Trace: NAME so the order of stages shows in the header. */
static int
t_mark_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    if (msg_header_add(m, st->name, "X-Trace", st->name, e) < 0)
        return -1;
    return verdict_set(v, VERDICT_CONTINUE, NULL, "marked");
}

static const struct cfg_option t_no_options[] = {CFG_OPTION_END};

static const struct stage_type t_mark = {
    .name = "mark",
    .summary = "adds X-Trace",
    .flags = STAGE_EDITS_HEADERS,
    .options = t_no_options,
    .run = t_mark_run,
};

/* "body": replaces the body. */
static int
t_body_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    if (msg_body_replace(m, st->name, "new body\n", 9, e) < 0)
        return -1;
    return verdict_set(v, VERDICT_CONTINUE, NULL, NULL);
}

static const struct stage_type t_body = {
    .name = "body",
    .summary = "replaces the body",
    .flags = STAGE_EDITS_BODY,
    .options = t_no_options,
    .run = t_body_run,
};

/* "sign": a signing stage that adds its signature header. */
static int
t_sign_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    if (msg_header_insert(m, st->name, 0, "X-Signature", "ok", e) < 0)
        return -1;
    return verdict_set(v, VERDICT_CONTINUE, NULL, "signed");
}

static const struct stage_type t_sign = {
    .name = "sign",
    .summary = "signs",
    .flags = STAGE_SIGNS,
    .options = t_no_options,
    .run = t_sign_run,
};

/* ---- encrypt: "seal", a stage that encrypts (header and body edits) */
static int
t_seal_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    (void)st;
    (void)m;
    (void)e;
    return verdict_set(v, VERDICT_CONTINUE, NULL, "sealed");
}

static const struct stage_type t_seal = {
    .name = "seal",
    .summary = "encrypts",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY | STAGE_ENCRYPTS,
    .options = t_no_options,
    .run = t_seal_run,
};
/* ---- end encrypt */

/* "verdict": returns the verdict named by its "result" key. */
static const char *const t_results[] = {"reject",     "tempfail", "discard",
                                        "quarantine", "badreply", NULL};
static const struct cfg_option t_verdict_options[] = {
    {"result", CFG_ENUM, "reject", "verdict to return", t_results, 0, 0, 0},
    CFG_OPTION_END,
};

static int
t_verdict_run(const struct stage *st, struct msg *m, struct verdict *v,
              struct err *e)
{
    (void)m;
    (void)e;
    switch (cfg_enum(st->cfg, "result")) {
    case 0:
        return verdict_set(v, VERDICT_REJECT, "550 5.7.1 go away", "no");
    case 1:
        return verdict_set(v, VERDICT_TEMPFAIL, "421 4.3.2 later", NULL);
    case 2:
        return verdict_set(v, VERDICT_DISCARD, NULL, NULL);
    case 3:
        return verdict_set(v, VERDICT_QUARANTINE, NULL, "held");
    default:
        /* a reject with a 2xx reply: the runner must not pass it on */
        return verdict_set(v, VERDICT_REJECT, "250 2.0.0 fine", NULL);
    }
}

static const struct stage_type t_verdict = {
    .name = "verdict",
    .summary = "returns a verdict",
    .options = t_verdict_options,
    .run = t_verdict_run,
};

/* "fail": run() fails. */
static int
t_fail_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    (void)st;
    (void)m;
    (void)v;
    return err_set(e, ERR_TEMP, "engine not available");
}

static const struct stage_type t_fail = {
    .name = "fail",
    .summary = "always fails",
    .options = t_no_options,
    .run = t_fail_run,
};

/* "halfdone": every kind of edit, then an error, as a stage that dies
 * half way through its work would. */
static int
t_halfdone_run(const struct stage *st, struct msg *m, struct verdict *v,
               struct err *e)
{
    (void)v;
    if (msg_header_insert(m, st->name, 0, "X-Half", "done", e) < 0 ||
        msg_header_change(m, st->name, "Subject", 1, "[tag] hi", e) < 0 ||
        msg_header_delete(m, st->name, "To", 1, e) < 0 ||
        msg_body_replace(m, st->name, "aGVsbG8K\n", 9, e) < 0 ||
        msg_header_add(m, st->name, "X-Trace", st->name, e) < 0 ||
        msg_sender_change(m, st->name, "other@example.org", NULL, e) < 0 ||
        msg_rcpt_add(m, st->name, "c@example.net", NULL, e) < 0 ||
        msg_rcpt_delete(m, st->name, "b@example.net", e) < 0)
        return -1;
    return err_set(e, ERR_TEMP, "engine died half way");
}

static const struct stage_type t_halfdone = {
    .name = "halfdone",
    .summary = "edits, then fails",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY | STAGE_EDITS_SENDER |
             STAGE_EDITS_RCPTS,
    .options = t_no_options,
    .run = t_halfdone_run,
};

/* "hold": tags the message as an antivirus stage does, then holds it. */
static int
t_hold_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    if (msg_header_add(m, st->name, "X-Virus-Status", "Infected (T.Virus)",
                       e) < 0)
        return -1;
    return verdict_set(v, VERDICT_QUARANTINE, NULL, "virus=T.Virus, engine=t");
}

static const struct stage_type t_hold = {
    .name = "hold",
    .summary = "tags and holds",
    .flags = STAGE_EDITS_HEADERS,
    .options = t_no_options,
    .run = t_hold_run,
};

/* "liar": declares no flags but edits the header. */
static const struct stage_type t_liar = {
    .name = "liar",
    .summary = "undeclared edit",
    .options = t_no_options,
    .run = t_mark_run,
};

/* "badinit": init() refuses its configuration. */
static int
t_badinit_init(struct stage *st, const struct cfg *c, struct err *e)
{
    (void)st;
    return cfg_err(e, c, "stage", "cannot start");
}

static const struct stage_type t_badinit = {
    .name = "badinit",
    .summary = "init fails",
    .options = t_no_options,
    .init = t_badinit_init,
    .run = t_mark_run,
};

/* "witness": edits nothing; keeps the trail of verdicts it was shown
 * and what done() was told, as the archive stage uses them. */
static char t_witness_trail[256], t_witness_told[1024];

static int
t_witness_run(const struct stage *st, struct msg *m, struct verdict *v,
              struct err *e)
{
    (void)st;
    (void)e;
    snprintf(t_witness_trail, sizeof(t_witness_trail), "%s", msg_trail(m));
    return verdict_set(v, VERDICT_CONTINUE, NULL, "seen");
}

static void
t_witness_done(const struct stage *st, const struct msg *m,
               const struct verdict *own, const struct verdict *final,
               const struct stage *by)
{
    (void)m;
    snprintf(t_witness_told, sizeof(t_witness_told), "%s %s %s %s", st->name,
             own->note, verdict_kind_name(final->kind),
             by != NULL ? by->name : "-");
}

static const struct stage_type t_witness = {
    .name = "witness",
    .summary = "sees the trail",
    .options = t_no_options,
    .run = t_witness_run,
    .done = t_witness_done,
};

static const struct stage_type *
t_lookup(const char *name)
{
    static const struct stage_type *const types[] = {
        &t_mark,    &t_body,     &t_sign, &t_verdict, &t_fail, &t_liar,
        &t_badinit, &t_halfdone, &t_hold, &t_witness, &t_seal, /* encrypt */
    };
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i]->name, name) == 0)
            return types[i];
    return NULL;
}

struct t_file {
    const char *name;
    const char *text;
};

/* t_chain_dir - a directory holding the given files (NULL-terminated). */
static const char *
t_chain_dir(char *dir, size_t n, const struct t_file *files)
{
    char path[512];
    size_t i;

    assert_non_null(unit_tmpdir(dir, n));
    for (i = 0; files[i].name != NULL; i++)
        assert_non_null(
            unit_write(dir, files[i].name, files[i].text, path, sizeof(path)));
    return dir;
}

static void
t_rm_dir(const char *dir, const struct t_file *files)
{
    char path[512];
    size_t i;

    for (i = 0; files[i].name != NULL; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
        unlink(path);
    }
    rmdir(dir);
}

static const struct msg_limits t_limits = {1 << 20, 1000, 998, 20, 1000};

static const char t_plain[] = "From: a@example.com\n"
                              "To: b@example.net\n"
                              "Subject: hi\n"
                              "\n"
                              "hello\n";

static struct msg *
t_msg(const char *text, const char *sender, const char *rcpt,
      const char *client, const char *auth)
{
    struct msg *m;
    struct err e;

    err_clear(&e);
    m = msg_new(&t_limits, MSG_FE_CLI, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "4ABC123", client, NULL, "helo", 0, auth, &e), 0);
    assert_int_equal(msg_env_sender(m, sender, NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, rcpt, NULL, &e), 0);
    assert_int_equal(msg_parse(m, text, strlen(text), &e), 0);
    return m;
}

/* t_traces - the X-Trace values in order, joined with ','. */
static const char *
t_traces(const struct msg *m, char *out, size_t n)
{
    size_t count = msg_header_name_count(m, "X-Trace"), i, used = 0;

    out[0] = '\0';
    for (i = 1; i <= count; i++) {
        const char *v = msg_header_get(m, "X-Trace", i);
        int k;

        while (*v == ' ')
            v++;
        k = snprintf(out + used, n - used, "%s%s", i > 1 ? "," : "", v);
        if (k < 0 || (size_t)k >= n - used)
            break;
        used += (size_t)k;
    }
    return out;
}

struct run_case {
    const char *name;
    struct t_file files[6];
    const char *sender, *rcpt, *client, *auth;
    const char *message;
    enum chain_ambiguous_action ambiguous;
    enum verdict_kind want_verdict;
    const char *want_reply;  /* prefix, or NULL */
    const char *want_traces; /* X-Trace values in order */
    const char *want_by;     /* stage that decided, or NULL */
};

static void
test_chain_run_table(void **state)
{
    static const struct run_case cases[] = {
        {"order is C-locale order of file names",
         {{"b.conf", "stage = mark\n"},
          {"B.conf", "stage = mark\n"},
          {"10-a.conf", "stage = mark\n"},
          {"9-c.conf", "stage = mark\n"},
          {"README", "not a stage\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         "192.0.2.1",
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_CONTINUE,
         NULL,
         "a,c,B,b",
         NULL},
        {"match_sender skips a stage",
         {{"10-x.conf", "stage = mark\nmatch_sender = example.org\n"},
          {"20-y.conf", "stage = mark\nmatch_sender = example.com\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         "192.0.2.1",
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_CONTINUE,
         NULL,
         "y",
         NULL},
        {"match_client and match_auth",
         {{"10-net.conf", "stage = mark\nmatch_client = 10.0.0.0/8\n"},
          {"20-auth.conf", "stage = mark\nmatch_auth = yes\n"},
          {"30-anon.conf", "stage = mark\nmatch_auth = no\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         "10.1.2.3",
         "alice",
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_CONTINUE,
         NULL,
         "net,auth",
         NULL},
        {"reject stops the chain",
         {{"10-m.conf", "stage = mark\n"},
          {"20-v.conf", "stage = verdict\nresult = reject\n"},
          {"30-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_REJECT,
         "550 5.7.1 go away",
         "m",
         "v"},
        {"discard and quarantine are verdicts too",
         {{"10-v.conf", "stage = verdict\nresult = quarantine\n"},
          {"20-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_QUARANTINE,
         "",
         "",
         "v"},
        {"a reject with a 2xx reply becomes a proper 5xx",
         {{"10-v.conf", "stage = verdict\nresult = badreply\n"}, {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_REJECT,
         "554 5.7.1",
         "",
         "v"},
        {"error tempfails by default",
         {{"10-f.conf", "stage = fail\n"},
          {"20-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_TEMPFAIL,
         "451 4.3.0",
         "",
         "f"},
        {"on_error = continue passes on",
         {{"10-f.conf", "stage = fail\non_error = continue\n"},
          {"20-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_CONTINUE,
         NULL,
         "n",
         NULL},
        {"an undeclared edit is an error",
         {{"10-l.conf", "stage = liar\n"}, {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_TEMPFAIL,
         "451 4.3.0",
         "l",
         "l"},
        {"a signer may add its header",
         {{"10-m.conf", "stage = mark\n"},
          {"90-s.conf", "stage = sign\n"},
          {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         t_plain,
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_CONTINUE,
         NULL,
         "m",
         NULL},
        {"ambiguous MIME is rejected before any stage",
         {{"10-m.conf", "stage = mark\n"}, {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         "From: a@example.com\n"
         "Content-Type: multipart/mixed; boundary=\"b1\"\n"
         "Content-Type: text/plain\n"
         "\n"
         "--b1\n"
         "Content-Type: multipart/mixed; boundary=\"b1\"\n"
         "\n"
         "--b1\n"
         "\n"
         "x\n"
         "--b1--\n"
         "--b1--\n",
         CHAIN_AMBIGUOUS_REJECT,
         VERDICT_REJECT,
         "554 5.6.0",
         "",
         NULL},
        {"ambiguous MIME passes with continue",
         {{"10-m.conf", "stage = mark\n"}, {NULL, NULL}},
         "a@example.com",
         "b@example.net",
         NULL,
         NULL,
         "From: a@example.com\n"
         "Content-Type: multipart/mixed; boundary=\"b1\"\n"
         "\n"
         "--b1\n"
         "Content-Type: multipart/mixed; boundary=\"b1\"\n"
         "\n"
         "--b1\n"
         "\n"
         "x\n"
         "--b1--\n"
         "--b1--\n",
         CHAIN_AMBIGUOUS_CONTINUE,
         VERDICT_CONTINUE,
         NULL,
         "m",
         NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct run_case *tc = &cases[i];
        struct chain_result res;
        struct chain *ch;
        struct msg *m;
        char dir[256], traces[256];
        struct err e;

        err_clear(&e);
        t_chain_dir(dir, sizeof(dir), tc->files);
        ch = chain_load_types(dir, tc->ambiguous, t_lookup, &e);
        if (ch == NULL)
            unit_fail(tc->name, "load failed: %s", e.text);
        m = t_msg(tc->message, tc->sender, tc->rcpt, tc->client, tc->auth);
        if (chain_run(ch, m, &res, &e) < 0)
            unit_fail(tc->name, "chain_run: %s", e.text);
        if (res.verdict.kind != tc->want_verdict)
            unit_fail(tc->name, "got verdict %s, want %s",
                      verdict_kind_name(res.verdict.kind),
                      verdict_kind_name(tc->want_verdict));
        if (tc->want_reply != NULL &&
            strncmp(res.verdict.reply, tc->want_reply,
                    strlen(tc->want_reply)) != 0)
            unit_fail(tc->name, "got reply \"%s\", want \"%s...\"",
                      res.verdict.reply, tc->want_reply);
        if (tc->want_traces != NULL)
            unit_str_eq(tc->name, t_traces(m, traces, sizeof(traces)),
                        tc->want_traces);
        unit_str_eq(tc->name, res.by ? res.by->name : NULL, tc->want_by);
        chain_result_fini(&res);
        msg_free(m);
        chain_free(ch);
        t_rm_dir(dir, tc->files);
    }
}

/* t_env - the envelope as "<sender> <rcpt>...". */
static const char *
t_env(const struct msg *m, char *out, size_t n)
{
    const struct msg_env *env = msg_env(m);
    size_t used, i;

    used = (size_t)snprintf(out, n, "<%s>", env->sender);
    for (i = 0; i < env->nrcpts && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, " <%s>",
                                 env->rcpts[i].addr);
    return out;
}

/* t_journal_stages - the stage of each journal entry, joined with ','. */
static const char *
t_journal_stages(const struct msg *m, char *out, size_t n)
{
    const struct msg_edit *ed;
    size_t count = msg_journal(m, &ed), used = 0, i;

    out[0] = '\0';
    for (i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? "," : "",
                                 ed[i].stage);
    return out;
}

struct rollback_case {
    const char *name;
    struct t_file files[4];
    enum verdict_kind want_verdict;
    const char *want_message; /* msg_write() after the chain */
    const char *want_journal; /* stages of the journal entries */
    const char *want_env;
    size_t step;           /* the step whose error is looked at */
    size_t want_undone;    /* its edits_undone */
    const char *want_note; /* in its verdict note */
};

/* A stage with on_error = continue that fails leaves the message, its
 * envelope and the journal as if it had not run; one that succeeds keeps
 * its edits; with the default on_error the message is tempfailed. */
static void
test_chain_rollback(void **state)
{
    static const char traced[] = "From: a@example.com\n"
                                 "To: b@example.net\n"
                                 "Subject: hi\n"
                                 "X-Trace: m\n"
                                 "X-Trace: n\n"
                                 "\n"
                                 "hello\n";
    static const struct rollback_case cases[] = {
        {"edits then an error, on_error = continue: all undone",
         {{"10-m.conf", "stage = mark\n"},
          {"20-h.conf", "stage = halfdone\non_error = continue\n"},
          {"30-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         VERDICT_CONTINUE,
         traced,
         "m,n",
         "<a@example.com> <b@example.net>",
         1,
         8,
         "error ignored (on_error = continue), 8 edits undone"},
        {"edits then an error, default on_error: tempfail",
         {{"10-m.conf", "stage = mark\n"},
          {"20-h.conf", "stage = halfdone\n"},
          {"30-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         VERDICT_TEMPFAIL,
         NULL,
         NULL,
         NULL,
         1,
         0,
         "error"},
        {"an error before any edit: none undone",
         {{"10-m.conf", "stage = mark\n"},
          {"20-f.conf", "stage = fail\non_error = continue\n"},
          {"30-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         VERDICT_CONTINUE,
         traced,
         "m,n",
         "<a@example.com> <b@example.net>",
         1,
         0,
         "error ignored (on_error = continue), 0 edits undone"},
        {"an undeclared edit with on_error = continue is undone",
         {{"10-m.conf", "stage = mark\n"},
          {"20-l.conf", "stage = liar\non_error = continue\n"},
          {"30-n.conf", "stage = mark\n"},
          {NULL, NULL}},
         VERDICT_CONTINUE,
         traced,
         "m,n",
         "<a@example.com> <b@example.net>",
         1,
         1,
         "error ignored (on_error = continue), 1 edit undone"},
        {"a stage with on_error = continue that succeeds keeps its edits",
         {{"10-b.conf", "stage = body\non_error = continue\n"},
          {"20-m.conf", "stage = mark\non_error = continue\n"},
          {NULL, NULL}},
         VERDICT_CONTINUE,
         "From: a@example.com\n"
         "To: b@example.net\n"
         "Subject: hi\n"
         "X-Trace: m\n"
         "\n"
         "new body\n",
         "b,m",
         "<a@example.com> <b@example.net>",
         0,
         0,
         ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct rollback_case *tc = &cases[i];
        const struct chain_step *step;
        struct chain_result res;
        struct chain *ch;
        struct msg *m;
        struct buf out;
        char dir[256], text[512];
        struct err e;

        err_clear(&e);
        t_chain_dir(dir, sizeof(dir), tc->files);
        ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
        if (ch == NULL)
            unit_fail(tc->name, "load failed: %s", e.text);
        m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
        if (chain_run(ch, m, &res, &e) < 0)
            unit_fail(tc->name, "chain_run: %s", e.text);
        if (res.verdict.kind != tc->want_verdict)
            unit_fail(tc->name, "got verdict %s, want %s",
                      verdict_kind_name(res.verdict.kind),
                      verdict_kind_name(tc->want_verdict));
        if (tc->want_message != NULL) {
            buf_init(&out, 0);
            assert_int_equal(msg_write(m, &out, &e), 0);
            unit_str_eq(tc->name, buf_str(&out), tc->want_message);
            buf_fini(&out);
        }
        if (tc->want_journal != NULL)
            unit_str_eq(tc->name, t_journal_stages(m, text, sizeof(text)),
                        tc->want_journal);
        if (tc->want_env != NULL)
            unit_str_eq(tc->name, t_env(m, text, sizeof(text)), tc->want_env);
        assert_true(tc->step < res.nsteps);
        step = &res.steps[tc->step];
        unit_int_eq(tc->name, step->edits_undone, tc->want_undone);
        if (tc->want_undone > 0)
            unit_int_eq(tc->name, step->edits_after, step->edits_before);
        unit_str_eq(tc->name, step->verdict.note, tc->want_note);
        chain_result_fini(&res);
        msg_free(m);
        chain_free(ch);
        t_rm_dir(dir, tc->files);
    }
}

struct load_case {
    const char *name;
    struct t_file files[4];
    const char *want_err[3]; /* substrings the error must contain */
};

static void
test_chain_load_errors(void **state)
{
    static const struct load_case cases[] = {
        {"body edit after signing names both files",
         {{"50-sign.conf", "stage = sign\n"},
          {"60-footer.conf", "stage = body\n"},
          {NULL, NULL}},
         {"60-footer.conf", "50-sign.conf", "body"}},
        {"header edit after signing",
         {{"10-s.conf", "stage = sign\n"},
          {"20-m.conf", "stage = mark\n"},
          {NULL, NULL}},
         {"20-m.conf", "10-s.conf", "header"}},
        /* encrypt: nothing but a signer edits after an encrypting stage */
        {"body edit after encrypting",
         {{"10-seal.conf", "stage = seal\n"},
          {"20-body.conf", "# after\nstage = body\n"},
          {NULL, NULL}},
         {"20-body.conf:2: stage body (body) edits the body after the "
          "encrypting stage seal",
          NULL, NULL}},
        {"unknown stage type with its line",
         {{"10-x.conf", "# comment\nstage = nosuch\n"}, {NULL, NULL}},
         {"10-x.conf:2:", "unknown stage type 'nosuch'", NULL}},
        {"missing stage key",
         {{"10-x.conf", "on_error = continue\n"}, {NULL, NULL}},
         {"10-x.conf:", "stage", NULL}},
        {"unknown key for the type",
         {{"10-x.conf", "stage = mark\nresult = reject\n"}, {NULL, NULL}},
         {"10-x.conf:2:", "result", NULL}},
        {"bad on_error value",
         {{"10-x.conf", "stage = mark\non_error = ignore\n"}, {NULL, NULL}},
         {"10-x.conf:2:", "on_error", NULL}},
        {"init failure keeps path:line",
         {{"10-x.conf", "stage = badinit\n"}, {NULL, NULL}},
         {"10-x.conf:1:", "cannot start", NULL}},
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct load_case *tc = &cases[i];
        struct chain *ch;
        char dir[256];
        struct err e;

        err_clear(&e);
        t_chain_dir(dir, sizeof(dir), tc->files);
        ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
        if (ch != NULL)
            unit_fail(tc->name, "chain loaded, want an error");
        for (j = 0; j < 3 && tc->want_err[j] != NULL; j++)
            unit_has(tc->name, e.text, tc->want_err[j]);
        t_rm_dir(dir, tc->files);
    }
}

static void
test_chain_signer_last_is_fine(void **state)
{
    static const struct t_file files[] = {
        {"10-body.conf", "stage = body\n"},
        {"20-mark.conf", "stage = mark\n"},
        {"90-sign.conf", "stage = sign\n"},
        {NULL, NULL},
    };
    const struct stage *const *st;
    struct chain *ch;
    char dir[256];
    struct err e;

    (void)state;
    err_clear(&e);
    t_chain_dir(dir, sizeof(dir), files);
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    if (ch == NULL)
        unit_fail("signer last", "load failed: %s", e.text);
    unit_int_eq("signer last", chain_stages(ch, &st), 3);
    unit_str_eq("instance names", st[2]->name, "sign");
    unit_int_eq("union of flags", chain_flags(ch),
                STAGE_EDITS_BODY | STAGE_EDITS_HEADERS | STAGE_SIGNS);
    chain_free(ch);
    t_rm_dir(dir, files);
}

/* ---- encrypt: a signer after an encrypting stage signs what it made */
static void
test_chain_sign_after_seal(void **state)
{
    static const struct t_file files[] = {
        {"10-body.conf", "stage = body\n"},
        {"80-seal.conf", "stage = seal\n"},
        {"90-sign.conf", "stage = sign\n"},
        {NULL, NULL},
    };
    struct chain *ch;
    char dir[256];
    struct err e;

    (void)state;
    err_clear(&e);
    t_chain_dir(dir, sizeof(dir), files);
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    if (ch == NULL)
        unit_fail("sign after seal", "load failed: %s", e.text);
    chain_free(ch);
    t_rm_dir(dir, files);
}
/* ---- end encrypt */

static void
test_chain_empty_changes_nothing(void **state)
{
    static const struct t_file files[] = {{NULL, NULL}};
    struct chain_result res;
    struct chain *ch;
    struct msg *m;
    struct buf out;
    char dir[256];
    struct err e;

    (void)state;
    err_clear(&e);
    t_chain_dir(dir, sizeof(dir), files);
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    assert_non_null(ch);
    m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
    assert_int_equal(chain_run(ch, m, &res, &e), 0);
    unit_int_eq("empty chain verdict", res.verdict.kind, VERDICT_CONTINUE);
    buf_init(&out, 0);
    assert_int_equal(msg_write(m, &out, &e), 0);
    unit_str_eq("empty chain output", buf_str(&out), t_plain);
    buf_fini(&out);
    chain_result_fini(&res);
    msg_free(m);
    chain_free(ch);
    t_rm_dir(dir, files);
}

/* A held message is kept as its stage received it, and a release runs
 * only the stages after that one. */
static void
test_chain_hold_and_resume(void **state)
{
    static const struct t_file files[] = {
        {"10-mark.conf", "stage = mark\n"},
        {"20-hold.conf", "stage = hold\n"},
        {"30-mark.conf", "stage = mark\n"},
        {"90-sign.conf", "stage = sign\n"},
        {NULL, NULL},
    };
    struct chain_result res;
    struct chain_opts opts;
    struct chain *ch;
    struct msg *m, *m2;
    struct buf out;
    char dir[256], tr[256], words[128];
    struct err e;

    (void)state;
    err_clear(&e);
    t_chain_dir(dir, sizeof(dir), files);
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    assert_non_null(ch);

    /* Without undo_hold (the milter front end) the edits stay. */
    m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
    assert_int_equal(chain_run(ch, m, &res, &e), 0);
    unit_int_eq("plain run: quarantine", res.verdict.kind, VERDICT_QUARANTINE);
    unit_int_eq("plain run: its header stays",
                msg_header_name_count(m, "X-Virus-Status"), 1);
    unit_str_eq("summary of a hold", chain_summary(&res, words, sizeof(words)),
                "Blocked INFECTED (T.Virus)");
    chain_result_fini(&res);
    msg_free(m);

    /* undo_hold: the holding stage's edit is gone, the earlier stage's
     * is kept, nothing after it ran. */
    memset(&opts, 0, sizeof(opts));
    opts.undo_hold = 1;
    m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
    assert_int_equal(chain_run_opts(ch, m, &opts, &res, &e), 0);
    unit_int_eq("undo_hold: quarantine", res.verdict.kind, VERDICT_QUARANTINE);
    unit_str_eq("undo_hold: by", res.by ? res.by->name : "", "hold");
    unit_int_eq("undo_hold: edits undone", res.by_edits_undone, 1);
    unit_int_eq("undo_hold: no X-Virus-Status",
                msg_header_name_count(m, "X-Virus-Status"), 0);
    unit_str_eq("undo_hold: earlier stages kept", t_traces(m, tr, sizeof(tr)),
                "mark");
    buf_init(&out, 0);
    assert_int_equal(msg_write(m, &out, &e), 0);
    chain_result_fini(&res);
    msg_free(m);

    /* The release: what was kept, resumed after "hold". */
    m2 = t_msg(buf_str(&out), "a@example.com", "b@example.net", NULL, NULL);
    opts.resume_after = "hold";
    assert_int_equal(chain_run_opts(ch, m2, &opts, &res, &e), 0);
    unit_int_eq("resume: continue", res.verdict.kind, VERDICT_CONTINUE);
    unit_int_eq("resume: two stages ran", res.nsteps, 2);
    unit_str_eq("resume: the stages after it ran",
                t_traces(m2, tr, sizeof(tr)), "mark,30-mark");
    unit_int_eq("resume: signed", msg_header_name_count(m2, "X-Signature"), 1);
    unit_int_eq("resume: the hold did not run again",
                msg_header_name_count(m2, "X-Virus-Status"), 0);
    unit_str_eq("summary of a pass", chain_summary(&res, words, sizeof(words)),
                "Passed CLEAN");
    chain_result_fini(&res);

    /* A chain without the stage any more: refused, nothing run. */
    opts.resume_after = "gone";
    unit_int_eq("resume after a stage that is gone",
                chain_run_opts(ch, m2, &opts, &res, &e), -1);
    unit_int_eq("that is a configuration error", e.code, ERR_CONFIG);
    chain_result_fini(&res);

    buf_fini(&out);
    msg_free(m2);
    chain_free(ch);
    t_rm_dir(dir, files);
}

/* A chain loaded for checking: every stage's init() is told, and the
 * chain refuses to run a message. */
static void
test_chain_check_only(void **state)
{
    static const struct t_file files[] = {
        {"10-mark.conf", "stage = mark\n"},
        {"20-sign.conf", "stage = sign\n"},
        {NULL, NULL},
    };
    const struct stage *const *st;
    struct chain_result res;
    struct chain *ch;
    struct msg *m;
    char dir[256];
    struct err e;
    size_t i, n;

    (void)state;
    err_clear(&e);
    t_chain_dir(dir, sizeof(dir), files);
    ch = chain_load_flags(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup,
                          CHAIN_LOAD_CHECK, &e);
    if (ch == NULL)
        unit_fail("check only", "load failed: %s", e.text);
    n = chain_stages(ch, &st);
    unit_int_eq("check only: stages", n, 2);
    for (i = 0; i < n; i++)
        unit_int_eq(st[i]->name, st[i]->check_only, 1);
    m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
    unit_int_eq("check only: chain_run refuses", chain_run(ch, m, &res, &e),
                -1);
    unit_has("check only: why", e.text, "checking only");
    chain_result_fini(&res);
    msg_free(m);
    chain_free(ch);

    /* Loaded to run, the same stages are not in check mode. */
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    assert_non_null(ch);
    n = chain_stages(ch, &st);
    for (i = 0; i < n; i++)
        unit_int_eq(st[i]->name, st[i]->check_only, 0);
    chain_free(ch);
    t_rm_dir(dir, files);
}

/* The trail a stage reads holds the verdicts of the stages before it;
 * done() hears the chain's outcome, whichever stage decided it. */
static void
test_chain_trail_done(void **state)
{
    static const struct t_file refused[] = {
        {"10-mark.conf", "stage = mark\n"},
        {"20-witness.conf", "stage = witness\n"},
        {"30-verdict.conf", "stage = verdict\nresult = reject\n"},
        {NULL, NULL},
    };
    static const struct t_file passed[] = {
        {"10-witness.conf", "stage = witness\n"},
        {"20-mark.conf", "stage = mark\n"},
        {NULL, NULL},
    };
    struct chain_result res;
    struct chain *ch;
    struct msg *m;
    struct err e;
    char dir[256];

    (void)state;
    err_clear(&e);
    t_chain_dir(dir, sizeof(dir), refused);
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    assert_non_null(ch);
    m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
    t_witness_trail[0] = t_witness_told[0] = '\0';
    assert_int_equal(chain_run(ch, m, &res, &e), 0);
    unit_str_eq("refused: trail seen", t_witness_trail, "mark=continue");
    unit_str_eq("refused: done", t_witness_told,
                "witness seen reject verdict");
    unit_str_eq("refused: whole trail", msg_trail(m),
                "mark=continue witness=continue verdict=reject");
    chain_result_fini(&res);
    msg_free(m);
    chain_free(ch);
    t_rm_dir(dir, refused);

    t_chain_dir(dir, sizeof(dir), passed);
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    assert_non_null(ch);
    m = t_msg(t_plain, "a@example.com", "b@example.net", NULL, NULL);
    t_witness_trail[0] = t_witness_told[0] = '\0';
    assert_int_equal(chain_run(ch, m, &res, &e), 0);
    unit_str_eq("first: trail seen", t_witness_trail, "");
    unit_str_eq("passed: done", t_witness_told, "witness seen continue -");
    chain_result_fini(&res);
    msg_free(m);
    chain_free(ch);
    t_rm_dir(dir, passed);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_run_table),
        cmocka_unit_test(test_chain_check_only),
        cmocka_unit_test(test_chain_rollback),
        cmocka_unit_test(test_chain_load_errors),
        cmocka_unit_test(test_chain_signer_last_is_fine),
        cmocka_unit_test(test_chain_sign_after_seal), /* encrypt */
        cmocka_unit_test(test_chain_empty_changes_nothing),
        cmocka_unit_test(test_chain_hold_and_resume),
        cmocka_unit_test(test_chain_trail_done),
    };
    int rc;

    log_open("test_chain", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    mime_shutdown();
    return rc;
}
