/*
 * test_smtpd_policy - the SMTP front end's decisions, without a socket
 *
 * Each table pins what the front end answers today: relaying
 * (mynetworks, relay_domains, AUTH, routing hidden in the local part),
 * the parameters of MAIL and RCPT in either delivery mode, the
 * recipient limit, the sender login map, XFORWARD, smtpd_dsn_clients,
 * and when STARTTLS, AUTH and DSN are offered or refused. A reply is
 * checked by its start ("554 5.7.1"), or whole where the text matters;
 * NULL wants the command taken.
 *
 * The runtimes are built from relaychain.conf text, as relaychaind
 * builds them (conf_load, smtpd_runtime_type), in a fresh directory
 * that also holds the TLS key, the AUTH users and the login map.
 */
#include "config.h"

#include "unit.h"

#include <sys/stat.h>
#include <unistd.h>

#include "chain/conf.h"
#include "net/auth.h"
#include "net/smtpc_conf.h"
#include "queue/queue_conf.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_conf.h"
#include "smtpd/smtpd_int.h"
#include "util/addr.h"
#include "util/buf.h"

static const struct conf_part *const parts[] = {
    &smtpc_conf_part, &queue_conf_part, &smtpd_conf_part, NULL};

/* The runtimes the tables name. */
enum rt_kind {
    RT_THROUGH, /* delivery = through; no TLS, no AUTH */
    RT_QUEUE,   /* delivery = queue; smtpd_dsn_clients names a network */
    RT_AUTH,    /* delivery = queue, STARTTLS, AUTH, sender_login_map */
    RT_N
};

static const char *const rt_conf[RT_N] = {
    [RT_THROUGH] = "mynetworks = 192.0.2.0/24\n"
                   "relay_domains = relay.example\n"
                   "xforward_hosts = 192.0.2.10\n"
                   "recipient_limit = 2\n"
                   "message_size_limit = 1k\n",
    [RT_QUEUE] = "delivery = queue\n"
                 "queue_directory = DIR/spool\n"
                 "mynetworks = 192.0.2.0/24\n"
                 "relay_domains = relay.example\n"
                 "message_size_limit = 1k\n"
                 "smtpd_dsn_clients = mynetworks 198.51.100.0/24\n",
    [RT_AUTH] = "delivery = queue\n"
                "queue_directory = DIR/spool\n"
                "mynetworks = 192.0.2.0/24\n"
                "tls_cert_file = DIR/cert.pem\n"
                "tls_key_file = DIR/key.pem\n"
                "auth_password_file = DIR/passwd\n"
                "sender_login_map = DIR/logins.pcre\n"
                "smtpd_dsn_clients = authenticated\n",
};

struct fixture {
    char dir[256];
    struct conf *cf[RT_N];
    struct smtpd_runtime *rt[RT_N];
};

/* write_file - path (dir/name) with text, where DIR stands for dir. */
static void
write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    const char *p;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(fp = fopen(path, "w"));
    for (p = text; *p; p++) {
        if (strncmp(p, "DIR", 3) == 0) {
            fputs(dir, fp);
            p += 2;
        } else {
            fputc(*p, fp);
        }
    }
    assert_int_equal(fclose(fp), 0);
}

/* rt_load - the runtime of conf (with the keys every test needs); NULL
 * with e set when the configuration or the runtime refuses it. */
static struct smtpd_runtime *
rt_load(const char *dir, const char *conf, struct conf **cfp, struct err *e)
{
    char path[512], text[2048];
    struct smtpd_runtime *rt;

    snprintf(text, sizeof(text),
             "smtp_listen = 127.0.0.1:2525\n"
             "next_hop = smtp:[127.0.0.1]:2526\n"
             "next_hop_tls = none\n"
             "myhostname = relay.test.example\n"
             "chain_directory = DIR/chain.d\n"
             "quarantine_directory = DIR/quarantine\n"
             "control_socket = DIR/ctl\n"
             "run_as_root = yes\n%s",
             conf);
    write_file(dir, "relaychain.conf", text);
    snprintf(path, sizeof(path), "%s/relaychain.conf", dir);
    if ((*cfp = conf_load_flags(path, parts, CONF_LOAD_MAIN, e)) == NULL)
        return NULL;
    if ((rt = smtpd_runtime_type.build(*cfp, e)) == NULL) {
        conf_free(*cfp);
        *cfp = NULL;
    }
    return rt;
}

static int
setup(void **state)
{
    struct fixture *fx;
    char cmd[1024], path[512];
    struct err e;
    int i;

    *state = NULL;
    assert_non_null(fx = calloc(1, sizeof(*fx)));
    assert_non_null(unit_tmpdir(fx->dir, sizeof(fx->dir)));
    snprintf(path, sizeof(path), "%s/chain.d", fx->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/spool", fx->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:prime256v1 -nodes -days 2 "
             "-subj /CN=relay.test.example -keyout '%s/key.pem' "
             "-out '%s/cert.pem' >/dev/null 2>&1",
             fx->dir, fx->dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/key.pem", fx->dir);
    assert_int_equal(chmod(path, 0600), 0);
    snprintf(path, sizeof(path), "%s/passwd", fx->dir);
    err_clear(&e);
    if (auth_passwd_set(path, "alice", "right horse battery", &e) < 0)
        fail_msg("auth_passwd_set: %s", e.text);
    write_file(fx->dir, "logins.pcre",
               "/^alice@example\\.com$/      alice\n"
               "/@sales\\.example\\.com$/     bob, alice\n");
    for (i = 0; i < RT_N; i++) {
        err_clear(&e);
        fx->rt[i] = rt_load(fx->dir, rt_conf[i], &fx->cf[i], &e);
        if (fx->rt[i] == NULL)
            fail_msg("runtime %d: %s", i, e.text);
    }
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;
    int i;

    if (fx == NULL) /* setup failed */
        return 0;
    for (i = 0; i < RT_N; i++) {
        smtpd_runtime_type.free(fx->rt[i]);
        conf_free(fx->cf[i]);
    }
    assert_int_equal(unit_rmtree(fx->dir), 0);
    free(fx);
    return 0;
}

/* reply_is - want NULL: got NULL; else got starts with want. */
static void
reply_is(const char *name, const char *got, const char *want)
{
    if (want == NULL || got == NULL)
        unit_str_eq(name, got, want);
    else if (strncmp(got, want, strlen(want)) != 0)
        unit_fail(name, "got \"%s\", want \"%s...\"", got, want);
}

/* ------------------------------------------------------------ relaying */

#define OUTSIDER "203.0.113.5"
#define INSIDER "192.0.2.5"

static void
test_relay(void **state)
{
    static const struct {
        const char *name, *addr, *auth_user, *rcpt;
        int want;
    } cases[] = {
        {"mynetworks to anywhere", INSIDER, NULL, "u@other.example", 1},
        {"outsider to other.example", OUTSIDER, NULL, "u@other.example", 0},
        {"outsider to relay_domains", OUTSIDER, NULL, "u@relay.example", 1},
        {"relay domain in other case", OUTSIDER, NULL, "U@RELAY.Example", 1},
        {"subdomain of a relay domain", OUTSIDER, NULL, "u@sub.relay.example",
         0},
        {"relay domain as a prefix", OUTSIDER, NULL,
         "u@relay.example.other.example", 0},
        {"percent hack", OUTSIDER, NULL, "u%other.example@relay.example", 0},
        {"bang path", OUTSIDER, NULL, "other.example!u@relay.example", 0},
        {"authenticated to anywhere", OUTSIDER, "alice", "u@other.example", 1},
        {"authenticated, percent hack", OUTSIDER, "alice",
         "u%other.example@relay.example", 1},
        {"no domain", OUTSIDER, NULL, "postmaster", 0},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtpd_facts f = {cases[i].addr, cases[i].auth_user, 0};

        unit_int_eq(cases[i].name,
                    smtpd_relay_ok(fx->rt[RT_THROUGH], &f, cases[i].rcpt),
                    cases[i].want);
    }
}

/* ---------------------------------------------------------------- RCPT */

static void
test_rcpt(void **state)
{
    static const struct {
        const char *name;
        enum rt_kind rt;
        const char *addr, *auth_user;
        size_t nrcpts;
        const char *line;
        const char *want; /* NULL: taken */
        int fault, noqueue;
        const char *want_addr, *want_params; /* when taken */
    } cases[] = {
        {"plain", RT_THROUGH, INSIDER, NULL, 0, "RCPT TO:<u@other.example>",
         NULL, 0, 0, "u@other.example", ""},
        {"space after the colon", RT_THROUGH, INSIDER, NULL, 0,
         "RCPT TO: <u@other.example>", NULL, 0, 0, "u@other.example", ""},
        {"lower case verb", RT_THROUGH, INSIDER, NULL, 0,
         "rcpt to:<u@other.example>", NULL, 0, 0, "u@other.example", ""},
        {"no colon", RT_THROUGH, INSIDER, NULL, 0, "RCPT TO <u@x.example>",
         "501 5.5.4 Syntax: RCPT TO:<address>", 1, 0, NULL, NULL},
        {"null recipient", RT_THROUGH, INSIDER, NULL, 0, "RCPT TO:<>",
         "501 5.1.3 Bad recipient address syntax", 1, 0, NULL, NULL},
        {"unclosed path", RT_THROUGH, INSIDER, NULL, 0, "RCPT TO:<u@x.example",
         "501 5.1.3 Bad recipient address syntax", 1, 0, NULL, NULL},
        {"relay denied", RT_THROUGH, OUTSIDER, NULL, 0,
         "RCPT TO:<u@other.example>",
         "554 5.7.1 <u@other.example>: Relay access denied", 1, 1, NULL, NULL},
        {"quoted local part with @", RT_THROUGH, OUTSIDER, NULL, 0,
         "RCPT TO:<\"u@other.example\"@relay.example>", "554 5.7.1", 1, 1,
         NULL, NULL},
        {"source route", RT_THROUGH, OUTSIDER, NULL, 0,
         "RCPT TO:<@relay.example:u@other.example>", "554 5.7.1", 1, 1, NULL,
         NULL},
        {"source route to a relay domain", RT_THROUGH, OUTSIDER, NULL, 0,
         "RCPT TO:<@other.example:u@relay.example>", NULL, 0, 0,
         "u@relay.example", ""},
        /* recipient_limit = 2 */
        {"under the limit", RT_THROUGH, INSIDER, NULL, 1,
         "RCPT TO:<u@x.example>", NULL, 0, 0, "u@x.example", ""},
        {"at the limit", RT_THROUGH, INSIDER, NULL, 2, "RCPT TO:<u@x.example>",
         "452 4.5.3 Error: too many recipients", 0, 0, NULL, NULL},
        {"the limit before the parameters", RT_THROUGH, INSIDER, NULL, 2,
         "RCPT TO:<u@x.example> FOO=1", "452 4.5.3", 0, 0, NULL, NULL},
        {"the limit before relaying", RT_THROUGH, OUTSIDER, NULL, 2,
         "RCPT TO:<u@other.example>", "452 4.5.3", 0, 0, NULL, NULL},
        /* parameters: through mode offers no DSN */
        {"through: NOTIFY", RT_THROUGH, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> NOTIFY=SUCCESS",
         "555 5.5.4 Unsupported option", 1, 0, NULL, NULL},
        {"through: ORCPT", RT_THROUGH, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> ORCPT=rfc822;u@x.example", "555 5.5.4", 1, 0,
         NULL, NULL},
        {"through: control character", RT_THROUGH, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> A\001=1", "501 5.5.4 Bad parameter syntax", 1,
         0, NULL, NULL},
        {"params before relaying", RT_THROUGH, OUTSIDER, NULL, 0,
         "RCPT TO:<u@other.example> FOO=1", "555 5.5.4", 1, 0, NULL, NULL},
        /* queue mode: NOTIFY and ORCPT */
        {"queue: NOTIFY", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> NOTIFY=SUCCESS,FAILURE", NULL, 0, 0,
         "u@x.example", "NOTIFY=SUCCESS,FAILURE"},
        {"queue: NOTIFY=NEVER", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> NOTIFY=NEVER", NULL, 0, 0, "u@x.example",
         "NOTIFY=NEVER"},
        {"queue: NOTIFY=NEVER with another", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> NOTIFY=NEVER,SUCCESS",
         "501 5.5.4 Bad NOTIFY parameter", 1, 0, NULL, NULL},
        {"queue: NOTIFY unknown word", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> NOTIFY=SOMETIMES", "501 5.5.4 Bad NOTIFY", 1,
         0, NULL, NULL},
        {"queue: NOTIFY twice", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> NOTIFY=SUCCESS NOTIFY=FAILURE",
         "501 5.5.4 Bad NOTIFY parameter", 1, 0, NULL, NULL},
        {"queue: ORCPT", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> ORCPT=rfc822;u+40x.example", NULL, 0, 0,
         "u@x.example", "ORCPT=rfc822;u+40x.example"},
        {"queue: ORCPT without a type", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> ORCPT=u@x.example",
         "501 5.5.4 Bad ORCPT parameter", 1, 0, NULL, NULL},
        {"queue: ORCPT twice", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> ORCPT=rfc822;a@x.example "
         "ORCPT=rfc822;b@x.example",
         "501 5.5.4 Bad ORCPT parameter", 1, 0, NULL, NULL},
        {"queue: unknown parameter", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> FOO=bar", "555 5.5.4 Unsupported option", 1, 0,
         NULL, NULL},
        {"queue: keyword in lower case", RT_QUEUE, INSIDER, NULL, 0,
         "RCPT TO:<u@x.example> notify=delay", NULL, 0, 0, "u@x.example",
         "notify=delay"},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtpd_facts f = {cases[i].addr, cases[i].auth_user, 0};
        struct smtpd_answer a;
        const char *params = NULL;
        struct buf addr;
        struct err e;

        buf_init(&addr, ADDR_MAX + 1);
        err_clear(&e);
        smtpd_rcpt_check(fx->rt[cases[i].rt], &f, cases[i].nrcpts,
                         cases[i].line, &addr, &params, &a, &e);
        reply_is(cases[i].name, a.reply, cases[i].want);
        if (a.reply != NULL) {
            unit_int_eq(cases[i].name, a.fault, cases[i].fault);
            unit_int_eq(cases[i].name, a.noqueue, cases[i].noqueue);
        } else {
            unit_str_eq(cases[i].name, buf_str(&addr), cases[i].want_addr);
            unit_str_eq(cases[i].name, params, cases[i].want_params);
        }
        buf_fini(&addr);
    }
}

/* ---------------------------------------------------------------- MAIL */

static void
test_mail(void **state)
{
    static const struct {
        const char *name;
        enum rt_kind rt;
        const char *line;
        const char *want; /* NULL: taken */
        int fault;
        const char *want_addr; /* when taken */
    } cases[] = {
        {"plain", RT_THROUGH, "MAIL FROM:<a@x.example>", NULL, 0,
         "a@x.example"},
        {"null sender", RT_THROUGH, "MAIL FROM:<>", NULL, 0, ""},
        {"space after the colon", RT_THROUGH, "MAIL FROM: <a@x.example>", NULL,
         0, "a@x.example"},
        {"no colon", RT_THROUGH, "MAIL FROM <a@x.example>",
         "501 5.5.4 Syntax: MAIL FROM:<address>", 1, NULL},
        {"unclosed path", RT_THROUGH, "MAIL FROM:<a@x.example",
         "501 5.1.7 Bad sender address syntax", 1, NULL},
        /* SIZE; message_size_limit = 1k (1024) */
        {"SIZE under the limit", RT_THROUGH,
         "MAIL FROM:<a@x.example> SIZE=1023", NULL, 0, "a@x.example"},
        {"SIZE at the limit", RT_THROUGH, "MAIL FROM:<a@x.example> SIZE=1024",
         NULL, 0, "a@x.example"},
        {"SIZE over the limit", RT_THROUGH,
         "MAIL FROM:<a@x.example> SIZE=1025",
         "552 5.3.4 Message size exceeds fixed limit", 0, NULL},
        {"SIZE empty", RT_THROUGH, "MAIL FROM:<a@x.example> SIZE=",
         "501 5.5.4 Bad SIZE parameter", 1, NULL},
        {"SIZE negative", RT_THROUGH, "MAIL FROM:<a@x.example> SIZE=-1",
         "501 5.5.4 Bad SIZE parameter", 1, NULL},
        {"SIZE not a number", RT_THROUGH, "MAIL FROM:<a@x.example> SIZE=12k",
         "501 5.5.4 Bad SIZE parameter", 1, NULL},
        {"SIZE too long", RT_THROUGH,
         "MAIL FROM:<a@x.example> SIZE=0000000000000000000000001",
         "501 5.5.4 Bad SIZE parameter", 1, NULL},
        {"SIZE twice", RT_THROUGH, "MAIL FROM:<a@x.example> SIZE=1 SIZE=2",
         NULL, 0, "a@x.example"},
        {"bad SIZE before too big", RT_THROUGH,
         "MAIL FROM:<a@x.example> SIZE=5000 SIZE=x", "501 5.5.4 Bad SIZE", 1,
         NULL},
        /* BODY, SMTPUTF8, AUTH */
        {"BODY=8BITMIME", RT_THROUGH, "MAIL FROM:<a@x.example> BODY=8BITMIME",
         NULL, 0, "a@x.example"},
        {"BODY=7bit", RT_THROUGH, "MAIL FROM:<a@x.example> body=7bit", NULL, 0,
         "a@x.example"},
        {"BODY=BINARYMIME", RT_THROUGH,
         "MAIL FROM:<a@x.example> BODY=BINARYMIME",
         "501 5.5.4 Bad BODY parameter", 1, NULL},
        {"BODY empty", RT_THROUGH, "MAIL FROM:<a@x.example> BODY=",
         "501 5.5.4 Bad BODY parameter", 1, NULL},
        {"SMTPUTF8", RT_THROUGH, "MAIL FROM:<a@x.example> SMTPUTF8", NULL, 0,
         "a@x.example"},
        {"SMTPUTF8 with a value", RT_THROUGH,
         "MAIL FROM:<a@x.example> SMTPUTF8=yes",
         "555 5.5.4 Unsupported option", 1, NULL},
        {"AUTH=<>", RT_THROUGH, "MAIL FROM:<a@x.example> AUTH=<>", NULL, 0,
         "a@x.example"},
        {"AUTH xtext", RT_THROUGH,
         "MAIL FROM:<a@x.example> AUTH=a+40x.example", NULL, 0, "a@x.example"},
        {"AUTH empty", RT_THROUGH, "MAIL FROM:<a@x.example> AUTH=",
         "501 5.5.4 Bad AUTH parameter", 1, NULL},
        {"AUTH bad xtext", RT_THROUGH, "MAIL FROM:<a@x.example> AUTH=a+zz",
         "501 5.5.4 Bad AUTH parameter", 1, NULL},
        {"unknown parameter", RT_THROUGH, "MAIL FROM:<a@x.example> FOO=bar",
         "555 5.5.4 Unsupported option", 1, NULL},
        {"control character", RT_THROUGH,
         "MAIL FROM:<a@x.example> BODY=7\tBIT",
         "501 5.5.4 Bad parameter syntax", 1, NULL},
        /* DSN: offered in queue mode only */
        {"through: RET", RT_THROUGH, "MAIL FROM:<a@x.example> RET=FULL",
         "555 5.5.4 Unsupported option", 1, NULL},
        {"through: ENVID", RT_THROUGH, "MAIL FROM:<a@x.example> ENVID=abc",
         "555 5.5.4 Unsupported option", 1, NULL},
        {"queue: RET=FULL", RT_QUEUE, "MAIL FROM:<a@x.example> RET=FULL", NULL,
         0, "a@x.example"},
        {"queue: RET=hdrs", RT_QUEUE, "MAIL FROM:<a@x.example> RET=hdrs", NULL,
         0, "a@x.example"},
        {"queue: RET=ALL", RT_QUEUE, "MAIL FROM:<a@x.example> RET=ALL",
         "501 5.5.4 Bad RET parameter", 1, NULL},
        {"queue: RET twice", RT_QUEUE,
         "MAIL FROM:<a@x.example> RET=FULL RET=HDRS",
         "501 5.5.4 Bad RET parameter", 1, NULL},
        {"queue: ENVID", RT_QUEUE, "MAIL FROM:<a@x.example> ENVID=id+2B1",
         NULL, 0, "a@x.example"},
        {"queue: ENVID empty", RT_QUEUE, "MAIL FROM:<a@x.example> ENVID=",
         "501 5.5.4 Bad ENVID parameter", 1, NULL},
        {"queue: ENVID twice", RT_QUEUE,
         "MAIL FROM:<a@x.example> ENVID=a ENVID=b",
         "501 5.5.4 Bad ENVID parameter", 1, NULL},
        {"queue: ENVID of 100", RT_QUEUE,
         "MAIL FROM:<a@x.example> ENVID="
         "0123456789012345678901234567890123456789"
         "0123456789012345678901234567890123456789"
         "01234567890123456789",
         NULL, 0, "a@x.example"},
        {"queue: ENVID of 101", RT_QUEUE,
         "MAIL FROM:<a@x.example> ENVID="
         "0123456789012345678901234567890123456789"
         "0123456789012345678901234567890123456789"
         "012345678901234567890",
         "501 5.5.4 Bad ENVID parameter", 1, NULL},
        {"queue: NOTIFY on MAIL", RT_QUEUE,
         "MAIL FROM:<a@x.example> NOTIFY=SUCCESS",
         "555 5.5.4 Unsupported option", 1, NULL},
        {"queue: all at once", RT_QUEUE,
         "MAIL FROM:<a@x.example> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS "
         "ENVID=q1 AUTH=<>",
         NULL, 0, "a@x.example"},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtpd_answer a;
        const char *params = NULL;
        struct buf addr;
        struct err e;

        buf_init(&addr, ADDR_MAX + 1);
        err_clear(&e);
        smtpd_mail_check(fx->rt[cases[i].rt], cases[i].line, &addr, &params,
                         &a, &e);
        reply_is(cases[i].name, a.reply, cases[i].want);
        if (a.reply != NULL)
            unit_int_eq(cases[i].name, a.fault, cases[i].fault);
        else
            unit_str_eq(cases[i].name, buf_str(&addr), cases[i].want_addr);
        buf_fini(&addr);
    }
}

/* smtpd_param_size - what the spool check and DATA's memory check read */
static void
test_param_size(void **state)
{
    static const struct {
        const char *params;
        unsigned long long want;
    } cases[] = {
        {"", 0},
        {"BODY=8BITMIME", 0},
        {"SIZE=1200", 1200},
        {"BODY=7BIT size=77", 77},
        {"SIZE=", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_int_eq(cases[i].params, smtpd_param_size(cases[i].params),
                    cases[i].want);
}

/* ----------------------------------------------------- sender login map */

static void
test_sender(void **state)
{
    static const struct {
        const char *name;
        enum rt_kind rt;
        const char *auth_user, *sender;
        const char *want;
    } cases[] = {
        {"owner", RT_AUTH, "alice", "alice@example.com", NULL},
        {"not the owner", RT_AUTH, "bob", "alice@example.com",
         "553 5.7.1 <alice@example.com>: Sender address rejected: not owned "
         "by user bob"},
        {"one of two owners", RT_AUTH, "bob", "x@sales.example.com", NULL},
        {"the other owner", RT_AUTH, "alice", "y@sales.example.com", NULL},
        {"owner's name as a prefix", RT_AUTH, "ali", "x@sales.example.com",
         "553 5.7.1"},
        {"an address the map does not name", RT_AUTH, "alice",
         "eve@other.example", "553 5.7.1"},
        {"null sender", RT_AUTH, "bob", "", NULL},
        {"not authenticated", RT_AUTH, NULL, "alice@example.com", NULL},
        {"no login map", RT_QUEUE, "bob", "alice@example.com", NULL},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtpd_facts f = {OUTSIDER, cases[i].auth_user, 1};
        struct smtpd_answer a;
        struct err e;

        err_clear(&e);
        smtpd_sender_check(fx->rt[cases[i].rt], &f, cases[i].sender, &a, &e);
        reply_is(cases[i].name, a.reply, cases[i].want);
        if (a.reply != NULL) {
            unit_int_eq(cases[i].name, a.fault, 0);
            unit_int_eq(cases[i].name, a.noqueue, 1);
        }
    }
}

/* ------------------------------------------------------------ XFORWARD */

static void
test_xforward(void **state)
{
    static const struct {
        const char *name, *addr;
        int in_mail;
        const char *arg;
        const char *want; /* NULL: taken */
        const char *name_is, *addr_is, *ident_is;
    } cases[] = {
        {"not in xforward_hosts", OUTSIDER, 0, "NAME=mx.example",
         "550 5.7.0 Error: insufficient authorization", "old", "", ""},
        {"in mynetworks is not enough", INSIDER, 0, "NAME=mx.example",
         "550 5.7.0", "old", "", ""},
        {"in a transaction", "192.0.2.10", 1, "NAME=mx.example",
         "503 5.5.1 Error: MAIL transaction in progress", "old", "", ""},
        {"no attributes", "192.0.2.10", 0, NULL,
         "501 5.5.4 Syntax: XFORWARD attribute=value...", "old", "", ""},
        {"name and address", "192.0.2.10", 0,
         "NAME=mx.example ADDR=198.51.100.7", NULL, "mx.example",
         "198.51.100.7", ""},
        {"IPv6 address", "192.0.2.10", 0, "ADDR=IPv6:2001:db8::1", NULL, "old",
         "2001:db8::1", ""},
        {"unavailable name", "192.0.2.10", 0, "NAME=[UNAVAILABLE]", NULL, "",
         "", ""},
        {"upstream queue id", "192.0.2.10", 0, "IDENT=4Zx7Q2", NULL, "old", "",
         "4Zx7Q2"},
        {"queue id with a dash", "192.0.2.10", 0, "IDENT=abc-1",
         "501 5.5.4 Bad XFORWARD attribute value", "old", "", ""},
        {"a bad value keeps the good ones out", "192.0.2.10", 0,
         "NAME=new.example IDENT=a;b",
         "501 5.5.4 Bad XFORWARD attribute value", "old", "", ""},
        {"no equals sign", "192.0.2.10", 0, "NAME",
         "501 5.5.4 Bad XFORWARD attribute syntax", "old", "", ""},
        {"unknown attribute", "192.0.2.10", 0, "PORT=25", NULL, "old", "", ""},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtpd_facts f = {cases[i].addr, NULL, 0};
        struct smtpd_xforward xf;

        memset(&xf, 0, sizeof(xf));
        snprintf(xf.name, sizeof(xf.name), "old");
        reply_is(cases[i].name,
                 smtpd_xforward_check(fx->rt[RT_THROUGH], &f, cases[i].in_mail,
                                      cases[i].arg, &xf),
                 cases[i].want);
        unit_str_eq(cases[i].name, xf.name, cases[i].name_is);
        unit_str_eq(cases[i].name, xf.addr, cases[i].addr_is);
        unit_str_eq(cases[i].name, xf.ident, cases[i].ident_is);
    }
}

static void
test_xforward_ok(void **state)
{
    static const struct {
        const char *addr;
        enum rt_kind rt;
        int want;
    } cases[] = {
        {"192.0.2.10", RT_THROUGH, 1},
        {"192.0.2.11", RT_THROUGH, 0},
        {"192.0.2.10", RT_QUEUE, 0}, /* no xforward_hosts */
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtpd_facts f = {cases[i].addr, NULL, 0};

        unit_int_eq(cases[i].addr, smtpd_xforward_ok(fx->rt[cases[i].rt], &f),
                    cases[i].want);
    }
}

/* ----------------------------------------------------------------- DSN */

static void
test_dsn(void **state)
{
    static const struct {
        const char *name;
        enum rt_kind rt;
        const char *addr, *auth_user;
        int ok, offered;
        const char *params, *kept;
        int dropped;
    } cases[] = {
        /* smtpd_dsn_clients = mynetworks 198.51.100.0/24 */
        {"queue: mynetworks", RT_QUEUE, INSIDER, NULL, 1, 1,
         "NOTIFY=SUCCESS ORCPT=rfc822;a+40x.example",
         "NOTIFY=SUCCESS ORCPT=rfc822;a+40x.example", 0},
        {"queue: a network named", RT_QUEUE, "198.51.100.9", NULL, 1, 1,
         "RET=HDRS ENVID=e1 SIZE=10", "RET=HDRS ENVID=e1 SIZE=10", 0},
        {"queue: outsider", RT_QUEUE, OUTSIDER, NULL, 0, 0,
         "SIZE=10 RET=HDRS BODY=8BITMIME ENVID=e1", "SIZE=10 BODY=8BITMIME",
         1},
        {"queue: outsider, DSN words only", RT_QUEUE, OUTSIDER, NULL, 0, 0,
         "NOTIFY=SUCCESS ORCPT=rfc822;a+40x.example", "", 1},
        {"queue: outsider, nothing to drop", RT_QUEUE, OUTSIDER, NULL, 0, 0,
         "SIZE=10", "SIZE=10", 0},
        {"queue: authenticated is not listed", RT_QUEUE, OUTSIDER, "alice", 0,
         0, "NOTIFY=SUCCESS", "", 1},
        /* smtpd_dsn_clients = authenticated, with AUTH offered */
        {"auth: authenticated", RT_AUTH, OUTSIDER, "alice", 1, 1,
         "NOTIFY=SUCCESS", "NOTIFY=SUCCESS", 0},
        {"auth: not yet authenticated", RT_AUTH, OUTSIDER, NULL, 0, 1,
         "NOTIFY=SUCCESS", "", 1},
        {"auth: mynetworks is not listed", RT_AUTH, INSIDER, NULL, 0, 1,
         "RET=FULL", "", 1},
        /* through mode: no DSN offered, parameters kept as given */
        {"through: outsider", RT_THROUGH, OUTSIDER, NULL, 1, 0,
         "NOTIFY=SUCCESS", "NOTIFY=SUCCESS", 0},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct smtpd_runtime *rt = fx->rt[cases[i].rt];
        struct smtpd_facts f = {cases[i].addr, cases[i].auth_user, 1};
        char *kept;
        int dropped = -1;

        /* the default smtpd_dsn_clients (mynetworks authenticated) lets
         * through mode's clients be: nothing is dropped there anyway */
        if (cases[i].rt != RT_THROUGH)
            unit_int_eq(cases[i].name, smtpd_dsn_ok(rt, &f), cases[i].ok);
        unit_int_eq(cases[i].name, smtpd_dsn_offered(rt, &f),
                    cases[i].offered);
        kept = smtpd_keep_params(rt, &f, cases[i].params, &dropped);
        unit_str_eq(cases[i].name, kept, cases[i].kept);
        unit_int_eq(cases[i].name, dropped, cases[i].dropped);
        free(kept);
    }
}

/* smtpd_dsn_clients as the runtime reads it */
static void
test_dsn_clients(void **state)
{
    static const struct {
        const char *name, *value, *addr, *auth_user;
        int want;          /* smtpd_dsn_ok */
        const char *error; /* when the runtime refuses the value */
    } cases[] = {
        {"default: mynetworks", NULL, INSIDER, NULL, 1, NULL},
        {"default: authenticated", NULL, OUTSIDER, "alice", 1, NULL},
        {"default: outsider", NULL, OUTSIDER, NULL, 0, NULL},
        {"all", "all", OUTSIDER, NULL, 1, NULL},
        {"words without regard to case", "MyNetworks", INSIDER, NULL, 1, NULL},
        {"a network only", "203.0.113.0/24", OUTSIDER, NULL, 1, NULL},
        {"a network only: mynetworks is out", "203.0.113.0/24", INSIDER, NULL,
         0, NULL},
        {"a misspelt word", "mynetwork", NULL, NULL, 0,
         "'mynetwork': not mynetworks, authenticated, all or a network"},
        {"a bad network", "203.0.113.0/40", NULL, NULL, 0,
         "smtpd_dsn_clients"},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char conf[512];
        struct conf *cf = NULL;
        struct smtpd_runtime *rt;
        struct err e;

        snprintf(conf, sizeof(conf),
                 "delivery = queue\nqueue_directory = %s/spool\n"
                 "mynetworks = 192.0.2.0/24\n%s%s%s",
                 fx->dir, cases[i].value ? "smtpd_dsn_clients = " : "",
                 cases[i].value ? cases[i].value : "",
                 cases[i].value ? "\n" : "");
        err_clear(&e);
        rt = rt_load(fx->dir, conf, &cf, &e);
        if (cases[i].error != NULL) {
            if (rt != NULL)
                unit_fail(cases[i].name, "taken, want \"%s\"", cases[i].error);
            unit_has(cases[i].name, e.text, cases[i].error);
            continue;
        }
        if (rt == NULL) {
            unit_fail(cases[i].name, "refused: %s", e.text);
        } else {
            struct smtpd_facts f = {cases[i].addr, cases[i].auth_user, 0};

            unit_int_eq(cases[i].name, smtpd_dsn_ok(rt, &f), cases[i].want);
        }
        smtpd_runtime_type.free(rt);
        conf_free(cf);
    }
}

/* ---------------------------------------------------- STARTTLS and AUTH */

static void
test_tls_auth(void **state)
{
    static const struct {
        const char *name;
        enum rt_kind rt;
        int tls;
        const char *auth_user;
        int in_mail;
        const char *arg;
        int starttls_offered, auth_offered;
        const char *starttls, *auth; /* the refusals; NULL: may begin */
    } cases[] = {
        {"no TLS configured", RT_THROUGH, 0, NULL, 0, NULL, 0, 0,
         "502 5.5.1 Error: command not implemented",
         "503 5.5.1 Error: authentication not enabled"},
        {"before STARTTLS", RT_AUTH, 0, NULL, 0, NULL, 1, 0, NULL,
         "503 5.5.1 Error: authentication not enabled"},
        {"after STARTTLS", RT_AUTH, 1, NULL, 0, "PLAIN", 0, 1,
         "501 5.5.4 Syntax: STARTTLS", NULL},
        {"STARTTLS twice", RT_AUTH, 1, NULL, 0, NULL, 0, 1,
         "502 5.5.1 Error: command not implemented",
         "501 5.5.4 Syntax: AUTH mechanism"},
        {"STARTTLS with an argument", RT_AUTH, 0, NULL, 0, "now", 1, 0,
         "501 5.5.4 Syntax: STARTTLS", "503 5.5.1"},
        {"authenticated", RT_AUTH, 1, "alice", 0, "LOGIN", 0, 0, "501 5.5.4",
         "503 5.5.1 Error: already authenticated"},
        {"AUTH in a transaction", RT_AUTH, 1, NULL, 1, "PLAIN", 0, 1,
         "501 5.5.4", "503 5.5.1 Error: MAIL transaction in progress"},
    };
    struct fixture *fx = *state;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct smtpd_runtime *rt = fx->rt[cases[i].rt];
        struct smtpd_facts f = {OUTSIDER, cases[i].auth_user, cases[i].tls};

        unit_int_eq(cases[i].name, smtpd_starttls_offered(rt, &f),
                    cases[i].starttls_offered);
        unit_int_eq(cases[i].name, smtpd_auth_offered(rt, &f),
                    cases[i].auth_offered);
        reply_is(cases[i].name, smtpd_starttls_refusal(rt, &f, cases[i].arg),
                 cases[i].starttls);
        reply_is(cases[i].name,
                 smtpd_auth_refusal(rt, &f, cases[i].in_mail, cases[i].arg),
                 cases[i].auth);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay),       cmocka_unit_test(test_rcpt),
        cmocka_unit_test(test_mail),        cmocka_unit_test(test_param_size),
        cmocka_unit_test(test_sender),      cmocka_unit_test(test_xforward),
        cmocka_unit_test(test_xforward_ok), cmocka_unit_test(test_dsn),
        cmocka_unit_test(test_dsn_clients), cmocka_unit_test(test_tls_auth),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
