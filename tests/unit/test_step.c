/*
 * test_step - the end of a message as both front ends take it: the
 * outcome of each verdict, the empty-recipient rule (and a hold, which
 * it applies to only when the held message keeps the chain's edits), a
 * message over its limit, and the front end's prepare and running
 * hooks in their place; and the summary line's list of recipients
 *
 * The chains are made of small stage types defined here, loaded with
 * chain_load_types().
 */
#include "config.h"

#include "unit.h"

#include <sys/stat.h>
#include <unistd.h>

#include "chain/chain.h"
#include "chain/step.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

static const struct cfg_option t_no_options[] = {CFG_OPTION_END};

/* "norcpt": deletes every recipient. */
static int
t_norcpt_run(const struct stage *st, struct msg *m, struct verdict *v,
             struct err *e)
{
    while (msg_env(m)->nrcpts > 0)
        if (msg_rcpt_delete(m, st->name, msg_env(m)->rcpts[0].addr, e) < 0)
            return -1;
    return verdict_set(v, VERDICT_CONTINUE, NULL, NULL);
}

static const struct stage_type t_norcpt = {
    .name = "norcpt",
    .summary = "deletes the recipients",
    .flags = STAGE_EDITS_RCPTS,
    .options = t_no_options,
    .run = t_norcpt_run,
};

/* "hold", "reject", "discard": that verdict. */
static int
t_verdict_run(const struct stage *st, struct msg *m, struct verdict *v,
              struct err *e)
{
    (void)m;
    (void)e;
    if (strcmp(st->type->name, "hold") == 0)
        return verdict_set(v, VERDICT_QUARANTINE, NULL, "held");
    if (strcmp(st->type->name, "reject") == 0)
        return verdict_set(v, VERDICT_REJECT, "550 5.7.1 No", "no");
    return verdict_set(v, VERDICT_DISCARD, NULL, "gone");
}

static const struct stage_type t_hold = {
    .name = "hold",
    .summary = "holds",
    .options = t_no_options,
    .run = t_verdict_run,
};

static const struct stage_type t_reject = {
    .name = "reject",
    .summary = "rejects",
    .options = t_no_options,
    .run = t_verdict_run,
};

static const struct stage_type t_discard = {
    .name = "discard",
    .summary = "discards",
    .options = t_no_options,
    .run = t_verdict_run,
};

static const struct stage_type *
t_lookup(const char *name)
{
    static const struct stage_type *const types[] = {&t_norcpt, &t_hold,
                                                     &t_reject, &t_discard};
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i]->name, name) == 0)
            return types[i];
    return NULL;
}

/* What the hooks saw. */
struct t_hooks {
    int refuse;         /* what prepare answers */
    size_t size;        /* what prepare was told */
    char order[16];     /* "p" prepare, "r" running on, "e" running off */
    size_t nrcpts_seen; /* recipients when prepare ran */
};

static void
t_note(struct t_hooks *h, char c)
{
    size_t n = strlen(h->order);

    if (n + 1 < sizeof(h->order)) {
        h->order[n] = c;
        h->order[n + 1] = '\0';
    }
}

static int
t_prepare(void *arg, struct msg *m, size_t size, struct err *e)
{
    struct t_hooks *h = arg;

    (void)e;
    t_note(h, 'p');
    h->size = size;
    h->nrcpts_seen = msg_env(m)->nrcpts;
    return h->refuse;
}

static void
t_running(void *arg, int on)
{
    t_note(arg, on ? 'r' : 'e');
}

static void
test_step_outcomes(void **state)
{
    static const char text[] =
        "From: a@example.com\r\nSubject: t\r\n\r\nhi\r\n";
    static const struct {
        const char *name;
        const char *stages; /* one stage type per file, in order */
        int undo_hold, refuse;
        size_t size_limit; /* 0: large enough */
        enum step_outcome want;
        const char *want_order;
    } t[] = {
        {"empty chain", "", 0, 0, 0, STEP_CONTINUE, "pre"},
        {"reject", "reject", 0, 0, 0, STEP_REJECT, "pre"},
        {"discard", "discard", 0, 0, 0, STEP_DISCARD, "pre"},
        {"no recipient left", "norcpt", 0, 0, 0, STEP_NO_RCPTS, "pre"},
        {"hold", "hold", 0, 0, 0, STEP_QUARANTINE, "pre"},
        {"hold of an edited message without recipients", "norcpt hold", 0, 0,
         0, STEP_NO_RCPTS, "pre"},
        {"hold of the message its stage received", "norcpt hold", 1, 0, 0,
         STEP_QUARANTINE, "pre"},
        {"prepare refuses: no chain", "reject", 0, 1, 0, STEP_REFUSED, "p"},
        {"prepare fails: no chain", "reject", 0, -1, 0, STEP_ERROR, "p"},
        {"over the limit: nothing else", "reject", 0, 0, 20, STEP_TOO_BIG, ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct msg_limits limits = {1000000, 100, 998, 10, 100};
        struct chain_result res;
        struct chain_opts opts;
        struct t_hooks hooks;
        struct step_in in;
        struct conf cf;
        struct msg *m;
        struct buf data;
        struct err e;
        char dir[256], path[512], name[96], list[64], *p;
        int k = 0;

        err_clear(&e);
        assert_non_null(unit_tmpdir(dir, sizeof(dir)));
        snprintf(list, sizeof(list), "%s", t[i].stages);
        for (p = list; *p != '\0';) {
            char *sp = strchr(p, ' '), body[96];

            if (sp != NULL)
                *sp = '\0';
            snprintf(name, sizeof(name), "%02d-%s.conf", ++k * 10, p);
            snprintf(body, sizeof(body), "stage = %s\n", p);
            unit_write(dir, name, body, path, sizeof(path));
            p = sp != NULL ? sp + 1 : p + strlen(p);
        }
        memset(&cf, 0, sizeof(cf));
        if (t[i].size_limit != 0)
            limits.message_size = t[i].size_limit;
        cf.limits = limits;
        cf.chain = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
        if (cf.chain == NULL)
            unit_fail(t[i].name, "chain: %s", e.text);

        assert_non_null(m = msg_new(&cf.limits, MSG_FE_SMTP, &e));
        assert_int_equal(msg_env_sender(m, "a@example.com", NULL, &e), 0);
        assert_int_equal(msg_env_rcpt(m, "b@example.net", NULL, &e), 0);
        buf_init(&data, 0);
        assert_int_equal(buf_append(&data, text, strlen(text), &e), 0);
        memset(&hooks, 0, sizeof(hooks));
        hooks.refuse = t[i].refuse;
        memset(&opts, 0, sizeof(opts));
        opts.undo_hold = t[i].undo_hold;
        memset(&in, 0, sizeof(in));
        in.cf = &cf;
        in.log_qid = "T1";
        in.qid = "T1";
        in.client_addr = "192.0.2.1";
        in.data = &data;
        in.opts = &opts;
        in.prepare = t_prepare;
        in.running = t_running;
        in.arg = &hooks;
        in.log_tag = "";
        in.log_where = "";
        memset(&res, 0, sizeof(res));

        unit_int_eq(t[i].name, step_run(&in, m, &res, &e), t[i].want);
        unit_str_eq(t[i].name, hooks.order, t[i].want_order);
        unit_int_eq(t[i].name, data.len, 0); /* taken over */
        if (strchr(t[i].want_order, 'p') != NULL) {
            unit_int_eq(t[i].name, hooks.size, strlen(text));
            unit_int_eq(t[i].name, hooks.nrcpts_seen, 1);
        }
        unit_str_eq(t[i].name, msg_env(m)->client_addr, "192.0.2.1");
        chain_result_fini(&res);
        msg_free(m);
        buf_fini(&data);
        chain_free(cf.chain);
        assert_int_equal(unit_rmtree(dir), 0);
    }
}

/* t_rcpt_at - the i-th of the strings arg, for step_log_rcpts(). */
static const char *
t_rcpt_at(const void *arg, size_t i)
{
    const char *const *v = arg;

    return v[i];
}

/* The "to=" list of the summary line, as both front ends log it. */
static void
test_step_log_rcpts(void **state)
{
    static const char *const addrs[] = {"a@x", "b@x", "c@x", "d@x", "e@x",
                                        "f@x", "g@x", "h@x", "i@x", "j@x"};
    static const struct {
        const char *name;
        size_t count, n;
        const char *want;
    } t[] = {
        {"none", 0, 64, ""},
        {"one", 1, 64, "<a@x>"},
        {"nine, all named", 9, 128,
         "<a@x>,<b@x>,<c@x>,<d@x>,<e@x>,<f@x>,<g@x>,<h@x>,<i@x>"},
        {"ten: eight and the rest counted", 10, 128,
         "<a@x>,<b@x>,<c@x>,<d@x>,<e@x>,<f@x>,<g@x>,<h@x>,...(2 more)"},
        {"cut short when full", 3, 10, "<a@x>,<b@"},
    };
    char out[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        memset(out, 'Z', sizeof(out));
        step_log_rcpts(out, t[i].n, t[i].count, t_rcpt_at, addrs);
        unit_str_eq(t[i].name, out, t[i].want);
    }
}

static int
setup(void **state)
{
    (void)state;
    mime_init();
    log_open("test_step", LOG_MAIL, LOG_SINK_NONE);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    mime_shutdown();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_outcomes),
        cmocka_unit_test(test_step_log_rcpts),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
