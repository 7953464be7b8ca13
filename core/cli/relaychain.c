/*
 * relaychain - administration tool
 *
 *     relaychain check [-c FILE]
 *     relaychain config [-c FILE] [-n | -d] [-t TYPE] [KEY...]
 *     relaychain config --man PAGE
 *     relaychain filter [-c FILE] [--from ADDR] [--rcpt ADDR]...
 *                       [--client-ip IP] [--helo NAME] [--auth USER]
 *                       [--qid ID] [--explain] < in.eml > out.eml
 *     relaychain rewrite-test [-c FILE] ADDRESS
 *     relaychain status [-c FILE]
 *     relaychain reload [-c FILE]
 *     relaychain --version
 *
 * check loads relaychain.conf through conf_load(), the path start-up and
 * reload take, with the chain in check-only mode (no virus engine is
 * compiled), builds the runtime the daemon builds (with the SMTP front
 * end's part, and queue_settings_check) and prints the result. config prints
 * settings like postconf and, with --man, the man page in step with the option
 * tables (confdoc.h). filter runs one message through the chain offline
 * and writes the processed message to standard output. Exit codes of
 * filter are documented in relaychain(1) and below (FILTER_EXIT_*);
 * rewrite-test exits like postmap -q (REWRITE_TEST_*).
 *
 * This is one of the two files allowed process-wide state: the option
 * values parsed from argv.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "filters/filters.h"
#include "util/addr.h"
#include "util/buf.h"
#include "chain/chain.h"
#include "util/cidr.h"
#include "chain/conf.h"
#include "chain/runtime.h"
#include "cli/confdoc.h"
#include "cli/parts.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "queue/queue.h"
#include "queue/queue_conf.h"
#include "chain/registry.h"
#include "net/notice.h"
#include "cli/cli.h"

enum {
    FILTER_EXIT_CONTINUE = 0,
    FILTER_EXIT_ERROR = 1,
    FILTER_EXIT_REJECT = 2,
    FILTER_EXIT_TEMPFAIL = 3,
    FILTER_EXIT_DISCARD = 4,
    FILTER_EXIT_QUARANTINE = 5
};

#define RCPT_MAX 1000

static const char *progname = "relaychain";

static void
usage_main(FILE *fp)
{
    fprintf(fp,
            "usage: relaychain COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  check         load the configuration and print the chain\n"
            "  config        print settings and defaults, like postconf\n"
            "  filter        run one message from stdin through the chain\n"
            "  rewrite-test  show what the rewrite tables make of an "
            "address\n"
            "  dkim          make a DKIM key (keygen), check one (testkey)\n"
            "  keys          the encrypt stage's keys: lookup ADDRESS, list\n"
            "  passwd        set a user's password in an SMTP AUTH file\n"
            "  quarantine    list, show, release or delete held messages\n"
            "  queue         list, show, flush, delete, hold, release or "
            "requeue\n"
            "                queued messages (delivery = queue)\n"
            "  status        is relaychaind running: pid, chain, queue, "
            "last reload\n"
            "  reload        make relaychaind reload and print the outcome\n"
            /* ---- antispam: compromised accounts (hold_user) */
            "  user          list the held users and clients, release one\n"
            "  archive       verify the archive's hash chain and "
            "checkpoints, status\n"
            /* ---- events */
            "  events        one message's or recipient's delivery events\n"
            "  report        delivery counts and rates by day, hour, "
            "domain,\n"
            "                sender or stream\n"
            "  suppress      add, remove, list, import or export "
            "suppressed\n"
            "                recipients\n"
            "\n"
            "  relaychain --version\n"
            "  relaychain COMMAND -h   help for one command\n");
}

static void
usage_check(FILE *fp)
{
    fprintf(fp, "usage: relaychain check [-c FILE]\n"
                "\n"
                "Load FILE (default " CONF_DEFAULT_PATH ") and its chain.d\n"
                "and check them as relaychaind does at start-up and on\n"
                "reload (listeners, user, networks, directories, next hop,\n"
                "keys), then print every stage in order with its effective\n"
                "settings. The antivirus database is checked for readable\n"
                "files, not compiled. Exit 0 when valid, 1 with\n"
                "path:line: key: errors otherwise.\n");
}

static void
usage_filter(FILE *fp)
{
    fprintf(
        fp,
        "usage: relaychain filter [-c FILE] [--from ADDR] [--rcpt ADDR]...\n"
        "                         [--client-ip IP] [--helo NAME] "
        "[--auth USER]\n"
        "                         [--qid ID] [--explain] [-v] < in.eml "
        "> out.eml\n"
        "\n"
        "Run one message through the chain offline. Without --from and\n"
        "--rcpt the envelope comes from the Return-Path (or From) and\n"
        "the To and Cc headers. --explain prints, for every stage,\n"
        "whether it matched and why, what it changed, its verdict and\n"
        "its time; -v prints the log lines.\n"
        "\n"
        "exit status: 0 continue (message on stdout), 1 error,\n"
        "2 reject, 3 tempfail, 4 discard, 5 quarantine (message on\n"
        "stdout); the SMTP reply goes to stderr.\n");
}

static void
usage_rewrite_test(FILE *fp)
{
    fprintf(fp, "usage: relaychain rewrite-test [-c FILE] ADDRESS\n"
                "\n"
                "Print what each rule table of each rewrite stage makes of\n"
                "ADDRESS, like postmap -q. Exit 0 when a rule matched, 1\n"
                "when none did, 2 when ADDRESS is not an address or the\n"
                "configuration cannot be used.\n");
}

static int
want_help(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

/* path_opt - the command line of a command whose only option is
 * -c FILE (into *path) and that takes nargs operands after it. Returns
 * 0, 1 when help was asked for, or -1 when the command line is wrong;
 * the caller prints its usage, on stdout for help. */
static int
path_opt(int argc, char **argv, int nargs, const char **path)
{
    int c;

    if (want_help(argc, argv))
        return 1;
    while ((c = getopt(argc, argv, "c:")) != -1) {
        if (c != 'c')
            return -1;
        *path = optarg;
    }
    return optind + nargs == argc ? 0 : -1;
}

/* load_conf - conf_load() with the error printed; flags as in
 * conf_load_flags(). */
static struct conf *
load_conf(const char *path, unsigned flags)
{
    struct conf *cf;
    struct err e;

    err_clear(&e);
    if ((cf = conf_load_flags(path, parts_all, flags, &e)) == NULL)
        fprintf(stderr, "%s: %s\n", progname, e.text);
    return cf;
}

/* check_daemon - what relaychaind builds from cf at start-up and on
 * reload besides the chain, built here the same way: the next hop, the
 * TLS context, the AUTH table, the sender login map and, with delivery =
 * queue, the queue's routes. Takes cf over; returns the runtime that
 * holds it (runtime_release frees both), or NULL with the error
 * printed. */
static struct runtime *
check_daemon(struct conf *cf)
{
    struct runtime *rt;
    struct err e;

    err_clear(&e);
    if (queue_delivery(cf->cfg) == QUEUE_DELIVERY_QUEUE &&
        queue_settings_check(cf->cfg, &e) < 0) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        conf_free(cf);
        return NULL;
    }
    if ((rt = runtime_new(cf, parts_runtime, &e)) == NULL)
        fprintf(stderr, "%s: %s\n", progname, e.text);
    return rt;
}

static void
print_flags(unsigned flags, FILE *fp)
{
    static const struct {
        unsigned flag;
        const char *name;
    } names[] = {
        {STAGE_EDITS_HEADERS, "headers"}, {STAGE_EDITS_BODY, "body"},
        {STAGE_EDITS_SENDER, "sender"},   {STAGE_EDITS_RCPTS, "recipients"},
        {STAGE_SIGNS, "signs"},
    };
    const char *sep = "";
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (flags & names[i].flag) {
            fprintf(fp, "%s%s", sep, names[i].name);
            sep = ",";
        }
    if (*sep == '\0')
        fputs("none", fp);
}

static int
cmd_check(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH;
    const struct stage *const *st;
    struct runtime *rt;
    const struct conf *cf;
    const char *const *listen;
    struct conf *loaded;
    size_t n, i;
    int c;

    if ((c = path_opt(argc, argv, 0, &path)) != 0) {
        usage_check(c > 0 ? stdout : stderr);
        return c > 0 ? 0 : 1;
    }
    /* As the unit's ExecStartPre, whose stderr the journal files as
     * errors, the stages' log lines go to syslog with their own
     * priority; the errors that stop the start stay on stderr. */
    log_open(progname, LOG_MAIL,
             log_sink_foreground() == LOG_SINK_SYSLOG ? LOG_SINK_SYSLOG
                                                      : LOG_SINK_STDERR);
    /* Checking only: the antivirus stage does not compile its engine a
     * second time next to the daemon's (ExecStartPre runs this). */
    if ((loaded = load_conf(path, CONF_LOAD_CHECK)) == NULL)
        return 1;
    /* Without a listener the daemon has nothing to build or run: such a
     * file serves "relaychain filter" and the other commands only. */
    rt = NULL;
    cf = loaded;
    if (cfg_list(loaded->cfg, "smtp_listen", &listen) == 0 &&
        cfg_str(loaded->cfg, "milter_listen") == NULL)
        fprintf(stderr,
                "%s: warning: %s: neither smtp_listen nor milter_listen is "
                "set: relaychaind would not start\n",
                progname, path);
    else if ((rt = check_daemon(loaded)) == NULL)
        return 1;
    else
        cf = runtime_conf(rt);
    printf("%s: ok\n", path);
    cfg_print(cf->cfg, stdout, "  ");
    n = chain_stages(cf->chain, &st);
    printf("chain: %zu stage%s, in this order:\n", n, n == 1 ? "" : "s");
    for (i = 0; i < n; i++) {
        char what[512];

        printf("%zu. %s (stage = %s) from %s\n", i + 1, st[i]->name,
               st[i]->type->name, st[i]->file);
        printf("   may change: ");
        print_flags(st[i]->flags, stdout);
        printf("\n   applies to: %s\n",
               match_describe(st[i]->match, what, sizeof(what)));
        cfg_print(st[i]->cfg, stdout, "   ");
    }
    if (rt != NULL)
        runtime_release(rt);
    else
        conf_free(loaded);
    return 0;
}

/* read_all - stdin into b, bounded by b's limit. */
static int
read_all(FILE *fp, struct buf *b, struct err *e)
{
    char chunk[65536];
    size_t n;

    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(b, chunk, n, e) < 0)
            return -1;
    if (ferror(fp))
        return err_sys(e, ERR_IO, "read error on standard input");
    return 0;
}

/* header_addresses - call add() for each mailbox in the named header. */
static int
header_addresses(struct msg *m, const char *name, int first_only,
                 int (*add)(struct msg *, const char *, struct err *),
                 struct err *e)
{
    size_t count = msg_header_name_count(m, name), i;
    GMimeParserOptions *opts = g_mime_parser_options_new();
    int rc = 0, done = 0;

    for (i = 1; i <= count && rc == 0 && !done; i++) {
        const char *value = msg_header_get(m, name, i);
        InternetAddressList *list;
        int j, k;

        if (value == NULL)
            continue;
        if ((list = internet_address_list_parse(opts, value)) == NULL)
            continue;
        for (j = 0; j < internet_address_list_length(list) && !done; j++) {
            InternetAddress *ia = internet_address_list_get_address(list, j);
            InternetAddressList *members = NULL;

            if (INTERNET_ADDRESS_IS_GROUP(ia))
                members = internet_address_group_get_members(
                    INTERNET_ADDRESS_GROUP(ia));
            for (k = 0;
                 members == NULL ? k < 1
                                 : k < internet_address_list_length(members);
                 k++) {
                InternetAddress *one =
                    members ? internet_address_list_get_address(members, k)
                            : ia;
                const char *addr;

                if (!INTERNET_ADDRESS_IS_MAILBOX(one))
                    continue;
                addr = internet_address_mailbox_get_addr(
                    INTERNET_ADDRESS_MAILBOX(one));
                if (addr == NULL || *addr == '\0')
                    continue;
                if ((rc = add(m, addr, e)) < 0)
                    break;
                if (first_only) {
                    done = 1;
                    break;
                }
            }
            if (rc < 0)
                break;
        }
        g_object_unref(list);
    }
    g_mime_parser_options_free(opts);
    return rc < 0 ? -1 : done;
}

static int
add_sender(struct msg *m, const char *addr, struct err *e)
{
    return msg_env_sender(m, addr, NULL, e);
}

static int
add_rcpt(struct msg *m, const char *addr, struct err *e)
{
    if (msg_env(m)->nrcpts >= RCPT_MAX)
        return err_set(e, ERR_LIMIT, "more than %d recipients", RCPT_MAX);
    return msg_env_rcpt(m, addr, NULL, e);
}

/* envelope_from_headers - what an MTA would have been given. */
static int
envelope_from_headers(struct msg *m, int need_sender, int need_rcpts,
                      struct err *e)
{
    if (need_sender) {
        const char *rp = msg_header_get(m, "Return-Path", 1);
        int found;

        if (rp != NULL && strstr(rp, "<>") != NULL) {
            if (msg_env_sender(m, "", NULL, e) < 0)
                return -1;
        } else {
            found = header_addresses(m, "Return-Path", 1, add_sender, e);
            if (found == 0)
                found = header_addresses(m, "From", 1, add_sender, e);
            if (found < 0)
                return -1;
            if (found == 0 && msg_env_sender(m, "", NULL, e) < 0)
                return -1;
        }
    }
    if (need_rcpts) {
        if (header_addresses(m, "To", 0, add_rcpt, e) < 0 ||
            header_addresses(m, "Cc", 0, add_rcpt, e) < 0)
            return -1;
    }
    return 0;
}

static void
explain_edit(const struct msg_edit *ed, FILE *fp)
{
    switch (ed->kind) {
    case MSG_EDIT_HEADER_ADD:
        fprintf(fp, "    header added: %s:%s\n", ed->name, ed->value);
        break;
    case MSG_EDIT_HEADER_INSERT:
        fprintf(fp, "    header inserted at %zu: %s:%s\n", ed->position,
                ed->name, ed->value);
        break;
    case MSG_EDIT_HEADER_CHANGE:
        fprintf(fp, "    header changed: %s[%zu] ->%s\n", ed->name, ed->index,
                ed->value);
        break;
    case MSG_EDIT_HEADER_DELETE:
        fprintf(fp, "    header deleted: %s[%zu]\n", ed->name, ed->index);
        break;
    case MSG_EDIT_BODY_REPLACE:
        fprintf(fp, "    body replaced: %zu octets\n", ed->len);
        break;
    case MSG_EDIT_SENDER:
        fprintf(fp, "    sender changed: <%s>\n", ed->value);
        break;
    case MSG_EDIT_RCPT_ADD:
        fprintf(fp, "    recipient added: <%s>\n", ed->value);
        break;
    case MSG_EDIT_RCPT_DELETE:
        fprintf(fp, "    recipient deleted: <%s>\n", ed->value);
        break;
    }
}

static void
explain_result(const struct msg *m, const struct chain *ch,
               const struct chain_result *res, FILE *fp)
{
    const struct msg_env *env = msg_env(m);
    const struct stage *const *st;
    const struct msg_edit *edits;
    size_t n = chain_stages(ch, &st), i, j;

    msg_journal(m, &edits);
    for (i = 0; i < n; i++) {
        const struct chain_step *step =
            i < res->nsteps ? &res->steps[i] : NULL;

        fprintf(fp, "stage %zu/%zu %s (%s):", i + 1, n, st[i]->name,
                st[i]->file);
        if (step == NULL) {
            fprintf(fp, " not run (the chain stopped before it)\n");
            continue;
        }
        if (!step->matched) {
            fprintf(fp, " skipped: %s\n", step->why);
            continue;
        }
        fprintf(fp, " matched: %s\n", step->why);
        if (step->edits_after == step->edits_before)
            fprintf(fp, "    no change\n");
        for (j = step->edits_before; j < step->edits_after; j++)
            explain_edit(&edits[j], fp);
        if (step->failed)
            fprintf(fp, "    error: %s\n", step->err.text);
        fprintf(fp, "    verdict: %s%s%s%s%s, %lld.%03lld ms\n",
                verdict_kind_name(step->verdict.kind),
                step->verdict.note[0] ? " (" : "", step->verdict.note,
                step->verdict.note[0] ? ")" : "",
                step->verdict.reply[0] ? "" : "", step->usec / 1000,
                step->usec % 1000);
        if (step->verdict.reply[0])
            fprintf(fp, "    reply: %s\n", step->verdict.reply);
    }
    fprintf(fp, "result: %s", verdict_kind_name(res->verdict.kind));
    if (res->verdict.reply[0])
        fprintf(fp, " (%s)", res->verdict.reply);
    fprintf(fp, "\nenvelope: from=<%s>", env->sender ? env->sender : "");
    for (i = 0; i < env->nrcpts; i++)
        fprintf(fp, " to=<%s>", env->rcpts[i].addr);
    fputc('\n', fp);
}

static int
filter_exit_code(enum verdict_kind kind)
{
    switch (kind) {
    case VERDICT_CONTINUE:
        return FILTER_EXIT_CONTINUE;
    case VERDICT_REJECT:
        return FILTER_EXIT_REJECT;
    case VERDICT_TEMPFAIL:
        return FILTER_EXIT_TEMPFAIL;
    case VERDICT_DISCARD:
        return FILTER_EXIT_DISCARD;
    case VERDICT_QUARANTINE:
        return FILTER_EXIT_QUARANTINE;
    }
    return FILTER_EXIT_ERROR;
}

/* filter_origin - a message given without --client-ip was submitted
 * here, as with sendmail(1): ours. With it, mynetworks decides, as the
 * daemon would. */
static int
filter_origin(const struct conf *cf, struct msg *m, const char *client,
              struct err *e)
{
    const char *const *nets;
    size_t n = cfg_list(cf->cfg, "mynetworks", &nets);
    struct cidr_list *l;
    int internal = 1;

    if (client != NULL) {
        if ((l = cidr_list_new(nets, n, e)) == NULL)
            return -1;
        internal = cidr_list_contains(l, client);
        cidr_list_free(l);
    }
    return msg_env_origin(m, internal, NULL, e);
}

static int
cmd_filter(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"from", required_argument, NULL, 'F'},
        {"rcpt", required_argument, NULL, 'R'},
        {"client-ip", required_argument, NULL, 'I'},
        {"helo", required_argument, NULL, 'H'},
        {"auth", required_argument, NULL, 'A'},
        {"qid", required_argument, NULL, 'Q'},
        {"explain", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = CONF_DEFAULT_PATH, *from = NULL, *client = NULL;
    const char *helo = NULL, *auth = NULL, *qid = NULL;
    const char **rcpts = NULL;
    size_t nrcpts = 0, i;
    int explain = 0, verbose = 0, c, rc = FILTER_EXIT_ERROR;
    struct chain_result res;
    struct runtime *rt = NULL;
    const struct conf *cf;
    struct conf *loaded;
    struct msg *m = NULL;
    struct buf in;
    struct err e;

    err_clear(&e);
    memset(&res, 0, sizeof(res));
    buf_init(&in, 0);
    if ((rcpts = calloc(RCPT_MAX, sizeof(*rcpts))) == NULL) {
        fprintf(stderr, "%s: out of memory\n", progname);
        return FILTER_EXIT_ERROR;
    }
    while ((c = getopt_long(argc, argv, "c:hvx", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'F':
            from = optarg;
            break;
        case 'R':
            if (nrcpts >= RCPT_MAX) {
                fprintf(stderr, "%s: more than %d --rcpt\n", progname,
                        RCPT_MAX);
                goto out;
            }
            rcpts[nrcpts++] = optarg;
            break;
        case 'I':
            client = optarg;
            break;
        case 'H':
            helo = optarg;
            break;
        case 'A':
            auth = optarg;
            break;
        case 'Q':
            qid = optarg;
            break;
        case 'x':
            explain = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage_filter(stdout);
            rc = 0;
            goto out;
        default:
            usage_filter(stderr);
            goto out;
        }
    }
    if (optind != argc) {
        usage_filter(stderr);
        goto out;
    }
    log_open(progname, LOG_MAIL, verbose ? LOG_SINK_STDERR : LOG_SINK_NONE);
    if ((loaded = load_conf(path, 0)) == NULL)
        goto out;
    /* The runtime the daemon's front ends run messages under, without
     * their parts: no next hop or listener is needed offline. */
    if ((rt = runtime_new(loaded, NULL, &e)) == NULL) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        goto out;
    }
    cf = runtime_conf(rt);

    /* One octet over the limit is enough to know it is too large. */
    in.limit = cf->limits.message_size + 1;
    if (read_all(stdin, &in, &e) < 0) {
        if (e.code == ERR_LIMIT)
            fprintf(stderr,
                    "%s: 552 5.3.4 Message size exceeds fixed limit "
                    "(message_size_limit = %zu)\n",
                    progname, cf->limits.message_size);
        else
            fprintf(stderr, "%s: %s\n", progname, e.text);
        rc = e.code == ERR_LIMIT ? FILTER_EXIT_REJECT : FILTER_EXIT_ERROR;
        goto out;
    }
    if ((m = msg_new(&cf->limits, MSG_FE_CLI, &e)) == NULL ||
        msg_env_set(m, qid, client, NULL, helo, 0, auth, &e) < 0 ||
        filter_origin(cf, m, client, &e) < 0 ||
        msg_parse(m, in.data ? in.data : "", in.len, &e) < 0) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        goto out;
    }
    if (from != NULL && msg_env_sender(m, from, NULL, &e) < 0)
        goto fail_env;
    for (i = 0; i < nrcpts; i++)
        if (msg_env_rcpt(m, rcpts[i], NULL, &e) < 0)
            goto fail_env;
    if (envelope_from_headers(m, from == NULL, nrcpts == 0, &e) < 0)
        goto fail_env;

    if (chain_run(cf->chain, m, &res, &e) < 0) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        goto out;
    }
    if (explain)
        explain_result(m, cf->chain, &res, stderr);
    else if (res.verdict.reply[0] != '\0')
        fprintf(stderr, "%s: %s\n", progname, res.verdict.reply);
    if (res.verdict.kind == VERDICT_CONTINUE ||
        res.verdict.kind == VERDICT_QUARANTINE) {
        if (msg_write_file(m, stdout, &e) < 0 || fflush(stdout) != 0) {
            fprintf(stderr, "%s: writing the message: %s\n", progname,
                    e.text[0] ? e.text : strerror(errno));
            goto out;
        }
    }
    rc = filter_exit_code(res.verdict.kind);
    goto out;

fail_env:
    fprintf(stderr, "%s: envelope: %s\n", progname, e.text);
out:
    chain_result_fini(&res);
    msg_free(m);
    runtime_release(rt);
    buf_fini(&in);
    free(rcpts);
    return rc;
}

/* Exit codes of rewrite-test, as postmap -q: found, not found, trouble. */
enum {
    REWRITE_TEST_MATCH = 0,
    REWRITE_TEST_NO_MATCH = 1,
    REWRITE_TEST_ERROR = 2
};

static int
cmd_rewrite_test(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *addr;
    const struct stage *const *st;
    size_t n, i, found = 0, matched = 0, one;
    char why[128];
    struct conf *cf;
    struct err e;
    int c, rc = REWRITE_TEST_NO_MATCH;

    if ((c = path_opt(argc, argv, 1, &path)) != 0) {
        usage_rewrite_test(c > 0 ? stdout : stderr);
        return c > 0 ? 0 : REWRITE_TEST_ERROR;
    }
    /* The rules see envelope addresses only: anything else could only
     * "not match", which would read as an answer. */
    addr = argv[optind];
    if (!addr_is_valid(addr, 0, why, sizeof(why))) {
        fprintf(stderr, "%s: '%.100s' is not an address: %s\n", progname, addr,
                addr[0] == '<' ? "write it without the angle brackets" : why);
        return REWRITE_TEST_ERROR;
    }
    log_open(progname, LOG_MAIL, LOG_SINK_NONE);
    if ((cf = load_conf(path, CONF_LOAD_CHECK)) == NULL)
        return REWRITE_TEST_ERROR;
    n = chain_stages(cf->chain, &st);
    for (i = 0; i < n; i++) {
        if (st[i]->type != &flt_rewrite_type)
            continue;
        found++;
        printf("%s (%s):\n", st[i]->name, st[i]->file);
        err_clear(&e);
        if (flt_rewrite_test_matches(st[i], addr, stdout, &one, &e) < 0) {
            fprintf(stderr, "%s: %s\n", progname, e.text);
            rc = REWRITE_TEST_ERROR;
        }
        matched += one;
    }
    if (found == 0) {
        fprintf(stderr, "%s: %s: the chain has no rewrite stage\n", progname,
                path);
        rc = REWRITE_TEST_ERROR;
    }
    if (rc != REWRITE_TEST_ERROR && matched > 0)
        rc = REWRITE_TEST_MATCH;
    conf_free(cf);
    return rc;
}

/* ------------------------------------------------------------- config */

#define CONFIG_PAGE_MAX (4u * 1024 * 1024) /* octets of a man page */

static void
usage_config(FILE *fp)
{
    fprintf(fp,
            "usage: relaychain config [-c FILE] [-n] [KEY...]\n"
            "       relaychain config -d [KEY...]\n"
            "       relaychain config -t TYPE [-d | -c STAGEFILE [-n]] "
            "[KEY...]\n"
            "       relaychain config --man PAGE\n"
            "\n"
            "Print settings as \"key = value\", like postconf: every key of\n"
            "FILE (default " CONF_DEFAULT_PATH ") with its\n"
            "effective value; -n only those FILE sets; -d the built-in\n"
            "defaults, without reading a file. -t TYPE uses the keys of a\n"
            "chain.d file of stage type TYPE instead. KEY... limits the\n"
            "output to those keys. --man prints PAGE (relaychain.conf.5)\n"
            "with every key heading made from the option tables and an\n"
            "entry added for each key it lacks.\n");
}

/* config_man - "config --man PAGE": the page brought in step with the
 * option tables, on stdout. */
static int
config_man(const char *page)
{
    struct buf in, out;
    struct err e;
    FILE *fp;
    int rc = 1;

    err_clear(&e);
    buf_init(&in, CONFIG_PAGE_MAX);
    buf_init(&out, 2 * CONFIG_PAGE_MAX);
    if ((fp = fopen(page, "r")) == NULL) {
        fprintf(stderr, "%s: %s: %s\n", progname, page, strerror(errno));
        goto out;
    }
    if (read_all(fp, &in, &e) < 0 ||
        confdoc_update(page, in.data ? in.data : "", in.len, &out, &e) < 0) {
        fprintf(stderr, "%s: %s: %s\n", progname, page, e.text);
        fclose(fp);
        goto out;
    }
    fclose(fp);
    if (fwrite(buf_str(&out), 1, out.len, stdout) != out.len ||
        fflush(stdout) != 0) {
        fprintf(stderr, "%s: writing: %s\n", progname, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    buf_fini(&in);
    buf_fini(&out);
    return rc;
}

static int
cmd_config(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"man", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cfg_option *tables[4] = {NULL, NULL, NULL, NULL};
    const char *path = CONF_DEFAULT_PATH, *type_name = NULL;
    const struct cfg_option *o;
    const char *const *keys = NULL;
    int defaults = 0, set_only = 0, c, i, found, rc = 0;
    struct cfg_option *main_options = NULL;
    struct cfg *cf;
    struct err e;
    size_t t;

    while ((c = getopt_long(argc, argv, "c:dnt:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            defaults = 1;
            break;
        case 'n':
            set_only = 1;
            break;
        case 't':
            type_name = optarg;
            break;
        case 'M':
            return config_man(optarg);
        case 'h':
            usage_config(stdout);
            return 0;
        default:
            usage_config(stderr);
            return 1;
        }
    }
    if (defaults && set_only) {
        usage_config(stderr);
        return 1;
    }
    err_clear(&e);
    if (type_name == NULL) {
        if ((main_options = conf_options_merge(parts_all, &e)) == NULL) {
            fprintf(stderr, "%s: %s\n", progname, e.text);
            return 1;
        }
        tables[0] = main_options;
    } else {
        const struct stage_type *type = registry_find(type_name);

        if (type == NULL) {
            fprintf(stderr, "%s: unknown stage type '%s'\n", progname,
                    type_name);
            return 1;
        }
        tables[0] = chain_common_options;
        tables[1] = match_options;
        tables[2] = type->options;
    }
    /* Every KEY must be a key: a typo is not "not set". */
    for (i = optind; i < argc; i++) {
        for (found = 0, t = 0; tables[t] != NULL && !found; t++)
            for (o = tables[t]; o->name != NULL; o++)
                if (strcmp(o->name, argv[i]) == 0)
                    found = 1;
        if (!found) {
            fprintf(stderr, "%s: unknown key '%s'\n", progname, argv[i]);
            rc = 1;
        }
    }
    if (rc != 0)
        goto out;
    if (optind < argc)
        keys = (const char *const *)argv + optind;
    if (defaults) {
        for (t = 0; tables[t] != NULL; t++)
            for (o = tables[t]; o->name != NULL; o++) {
                for (i = optind; i < argc; i++)
                    if (strcmp(o->name, argv[i]) == 0)
                        break;
                if (keys != NULL && i == argc)
                    continue;
                printf("%s =%s%s\n", o->name, o->def ? " " : "",
                       o->def ? o->def : "");
            }
        goto out;
    }
    log_open(progname, LOG_MAIL, LOG_SINK_STDERR);
    if ((cf = cfg_parse(path, &e)) == NULL ||
        cfg_validate(cf, tables, &e) < 0) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        rc = 1;
    } else {
        cfg_print_values(cf, stdout, set_only, keys);
    }
    cfg_free(cf);
out:
    free(main_options);
    return rc;
}

/* ------------------------------------------------ status and reload */

/*
 * "relaychain status" and "relaychain reload" ask the running daemon over
 * its control socket (control_socket in relaychain.conf, read without
 * loading the chain), as "postfix status" and "postfix reload" ask the
 * master. The daemon answers with lines: status with "key: value" lines,
 * reload with one "ok: ..." or "failed: file:line: reason" line once the
 * reload is done. Nothing answering on the socket means no daemon runs.
 */
#define CTL_REPLY_MAX 65536
#define CTL_STATUS_TIMEOUT_S 30
#define CTL_RELOAD_TIMEOUT_S 660 /* the daemon waits up to 600 s */

static void
usage_ctl(FILE *fp, const char *cmd)
{
    if (strcmp(cmd, "status") == 0)
        fprintf(fp, "usage: relaychain status [-c FILE]\n"
                    "\n"
                    "Ask relaychaind whether it runs, and print its pid, "
                    "uptime, configuration\n"
                    "file, chain, listeners, queue size, antivirus database "
                    "and the outcome\n"
                    "of the last reload. Exit 0 when it runs, 1 when not.\n");
    else
        fprintf(fp, "usage: relaychain reload [-c FILE]\n"
                    "\n"
                    "Make relaychaind read its configuration and chain "
                    "again (as SIGUSR1\n"
                    "does) and wait for the outcome: exit 0 when the new "
                    "configuration is\n"
                    "in force, 1 with the file:line that failed (the "
                    "running one is kept).\n");
}

/* ctl_socket_path - control_socket of the main file path, or the
 * default; -1 with the reason printed. */
static int
ctl_socket_path(const char *path, char *out, size_t n)
{
    const struct cfg_option *o;
    const char *v = NULL;
    struct cfg *c;
    struct err e;

    err_clear(&e);
    if ((c = cfg_parse(path, &e)) == NULL) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        return -1;
    }
    if ((v = cfg_raw(c, "control_socket")) == NULL)
        for (o = conf_options; o->name != NULL; o++)
            if (strcmp(o->name, "control_socket") == 0)
                v = o->def;
    if (v == NULL || v[0] != '/' || (size_t)snprintf(out, n, "%s", v) >= n) {
        fprintf(stderr,
                "%s: %s: control_socket: '%.64s' is not an "
                "absolute path of at most %zu octets\n",
                progname, path, v != NULL ? v : "", n - 1);
        cfg_free(c);
        return -1;
    }
    cfg_free(c);
    return 0;
}

/* ctl_ask - send cmd on the control socket sock and read the whole
 * answer into out (NUL-terminated). Returns 0, 1 when no daemon answers
 * there, or -1 (reason printed). */
static int
ctl_ask(const char *sock, const char *cmd, int timeout_s, char *out, size_t n)
{
    struct timeval tv = {.tv_sec = timeout_s};
    struct sockaddr_un sun;
    size_t len = 0;
    ssize_t r;
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        fprintf(stderr, "%s: socket: %s\n", progname, strerror(errno));
        return -1;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int err = errno;

        close(fd);
        if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR)
            return 1;
        fprintf(stderr, "%s: %s: %s%s\n", progname, sock, strerror(err),
                err == EACCES ? " (run this as root or as relaychaind's user)"
                              : "");
        return -1;
    }
    if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0 ||
        send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
        fprintf(stderr, "%s: %s: %s\n", progname, sock, strerror(errno));
        close(fd);
        return -1;
    }
    while (len < n - 1) {
        r = read(fd, out + len, n - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "%s: %s: no answer: %s\n", progname, sock,
                    errno == EAGAIN ? "timed out" : strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    out[len] = '\0';
    return 0;
}

/* cmd_ctl - "relaychain status" and "relaychain reload". */
static int
cmd_ctl(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *cmd = argv[0];
    int reload = strcmp(cmd, "reload") == 0, c, rc;
    char sock[CONF_SOCKET_PATH_MAX], *reply;

    if ((c = path_opt(argc, argv, 0, &path)) != 0) {
        usage_ctl(c > 0 ? stdout : stderr, cmd);
        return c > 0 ? 0 : 1;
    }
    if (ctl_socket_path(path, sock, sizeof(sock)) < 0)
        return 1;
    if ((reply = malloc(CTL_REPLY_MAX)) == NULL) {
        fprintf(stderr, "%s: out of memory\n", progname);
        return 1;
    }
    rc = ctl_ask(sock, cmd,
                 reload ? CTL_RELOAD_TIMEOUT_S : CTL_STATUS_TIMEOUT_S, reply,
                 CTL_REPLY_MAX);
    if (rc == 1) {
        /* As "postfix status" says it. */
        fprintf(reload ? stderr : stdout,
                "%s: relaychaind is not running (nothing answers on %s)\n",
                progname, sock);
        rc = 1;
    } else if (rc == 0 && !reload) {
        rc = strncmp(reply, "status: running\n", 16) == 0 ? 0 : 1;
        if (rc == 0)
            fputs(reply, stdout);
        else
            fprintf(stderr, "%s: status: %s", progname,
                    reply[0] != '\0' ? reply : "no answer\n");
    } else if (rc == 0) {
        if (strncmp(reply, "ok: ", 4) == 0) {
            printf("%s: reload: %s", progname, reply + 4);
        } else {
            fprintf(stderr, "%s: reload %s", progname,
                    reply[0] != '\0' ? reply : "failed: no answer\n");
            rc = 1;
        }
    }
    free(reply);
    return rc == 0 ? 0 : 1;
}

/* The stage types relaychain offers and the services it lends them. */
static struct stage_registry registry;

int
main(int argc, char **argv)
{
    const char *cmd;
    int rc;

    if (argc < 2) {
        usage_main(stderr);
        return 1;
    }
    cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("relaychain %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    mime_init();
    registry = flt_registry;
    notice_env(&registry.env);
    registry_set(&registry);
    argc--;
    argv++;
    if (strcmp(cmd, "check") == 0)
        rc = cmd_check(argc, argv);
    else if (strcmp(cmd, "config") == 0)
        rc = cmd_config(argc, argv);
    else if (strcmp(cmd, "filter") == 0)
        rc = cmd_filter(argc, argv);
    else if (strcmp(cmd, "rewrite-test") == 0)
        rc = cmd_rewrite_test(argc, argv);
    else if (strcmp(cmd, "dkim") == 0)
        rc = dkimcli_main(argc, argv);
    /* ---- encrypt */
    else if (strcmp(cmd, "keys") == 0)
        rc = keys_main(argc, argv);
    /* ---- end encrypt */
    else if (strcmp(cmd, "passwd") == 0)
        rc = passwd_main(argc, argv);
    else if (strcmp(cmd, "quarantine") == 0)
        rc = quarantine_main(argc, argv);
    else if (strcmp(cmd, "queue") == 0)
        rc = queue_main(argc, argv);
    /* archive stage */
    else if (strcmp(cmd, "archive") == 0)
        rc = archive_main(argc, argv);
    else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0)
        rc = cmd_ctl(argc, argv);
    /* ---- antispam: compromised accounts (hold_user) */
    else if (strcmp(cmd, "user") == 0)
        rc = user_main(argc, argv);
    /* ---- events: delivery events, reports, the suppression list */
    else if (strcmp(cmd, "events") == 0 || strcmp(cmd, "report") == 0 ||
             strcmp(cmd, "suppress") == 0)
        rc = events_main(argc, argv);
    else {
        fprintf(stderr, "%s: unknown command '%s'\n", progname, cmd);
        usage_main(stderr);
        rc = 1;
    }
    mime_shutdown();
    log_close();
    return rc;
}
