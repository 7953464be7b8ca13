/*
 * cmd_events - "relaychain events | report | suppress": the events store
 *
 *     relaychain events [-c FILE] --message-id ID | --recipient ADDR
 *     relaychain report [-c FILE] [--since DATE] [--until DATE]
 *         [--by day|hour|domain|sender|stream] [--json]
 *     relaychain suppress [-c FILE] add ADDR [REASON] [--stream S]
 *         [--expires WHEN]
 *     relaychain suppress [-c FILE] remove ADDR [--stream S]
 *     relaychain suppress [-c FILE] list | export [--all]
 *     relaychain suppress [-c FILE] import < CSV
 *
 * The store is events_store of the main file (read alone, as every
 * command that works on the daemon's files reads it). events and report
 * open it read-only; suppress writes it beside the running daemon
 * (SQLite's WAL and locks; the daemon's lookups see the change at the
 * next RCPT). DATE is YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC; WHEN
 * is a duration from now (30d, 12h) or such a date, in the future. The
 * CSV is "recipient,stream,reason,unix time,expires" with a header line
 * (expires: Unix seconds, empty for never; import reads files without
 * the column too); export writes what import reads. list and export
 * leave out the entries that have expired unless --all. Each command
 * owns what it opens and prints its own errors.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/cfg.h"
#include "chain/conf.h"
#include "queue/events_db.h"
#include "queue/events_report.h" /* ---- http */
#include "cli/cli.h"

#define EVCLI_LINE_MAX 2048
/* the farthest expiry suppress add takes: beyond it, leave --expires
 * out (never) */
#define EVCLI_EXPIRES_MAX (100LL * 366 * 86400)
/* the last second of 9999, the latest expiry import takes */
#define EVCLI_EXPIRES_LAST 253402300799LL

static struct events_db *
evcli_open(const char *path, int mode)
{
    struct events_db *db;
    struct cfg *cf;
    struct err e;
    const char *store;

    err_clear(&e);
    if ((cf = cli_main_cfg(path, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return NULL;
    }
    if ((store = cfg_str(cf, "events_store")) == NULL) {
        fprintf(stderr, "relaychain: %s: events_store is not set\n", path);
        cfg_free(cf);
        return NULL;
    }
    if ((db = events_db_open_auth(store,
                                  cfg_str(cf, "events_store_password_file"),
                                  mode, &e)) == NULL)
        fprintf(stderr, "relaychain: events_store: %s\n", e.text);
    cfg_free(cf);
    return db;
}

/* evcli_date - "YYYY-MM-DD[THH:MM[:SS]]" (UTC) into *out; 0 or -1. */
static int
evcli_date(const char *s, long long *out)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL || *end) {
        memset(&tm, 0, sizeof(tm));
        if ((end = strptime(s, "%Y-%m-%dT%H:%M", &tm)) == NULL || *end) {
            memset(&tm, 0, sizeof(tm));
            if ((end = strptime(s, "%Y-%m-%d", &tm)) == NULL || *end)
                return -1;
        }
    }
    *out = (long long)timegm(&tm);
    return 0;
}

/* evcli_expires - WHEN (a duration from now like 30d or 12h, or a date
 * as evcli_date reads it) as Unix seconds into *out, after now; 0, or
 * -1 with what is wrong in why (n octets). */
static int
evcli_expires(const char *s, long long now, long long *out, char *why,
              size_t n)
{
    static const struct {
        char sfx;
        long long secs;
    } units[] = {
        {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
    long long v = 0, at;
    size_t i, k = 0;

    while (isdigit((unsigned char)s[k]) && k < 12)
        v = v * 10 + (s[k++] - '0');
    if (k > 0 && s[k] != '\0' && s[k + 1] == '\0' &&
        !isdigit((unsigned char)s[k])) {
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (s[k] == units[i].sfx)
                break;
        if (i == sizeof(units) / sizeof(units[0])) {
            snprintf(why, n, "unknown unit '%c' (want s, m, h, d or w)", s[k]);
            return -1;
        }
        if (v == 0) {
            snprintf(why, n,
                     "a duration of 0 ends at once (leave --expires "
                     "out for an entry that never expires)");
            return -1;
        }
        if (v > EVCLI_EXPIRES_MAX / units[i].secs) {
            snprintf(why, n,
                     "more than 100 years (leave --expires out for "
                     "an entry that never expires)");
            return -1;
        }
        *out = now + v * units[i].secs;
        return 0;
    }
    if (evcli_date(s, &at) < 0) {
        snprintf(why, n,
                 "want a duration from now (30d, 12h) or a date "
                 "(YYYY-MM-DD, UTC)");
        return -1;
    }
    if (at <= now) {
        snprintf(why, n, "that is in the past");
        return -1;
    }
    if (at - now > EVCLI_EXPIRES_MAX) {
        snprintf(why, n,
                 "more than 100 years (leave --expires out for an "
                 "entry that never expires)");
        return -1;
    }
    *out = at;
    return 0;
}

/* --------------------------------------------------------------- events */

/* evcli_put - s on stdout with control characters as '?': the replies,
 * ids and addresses come from other machines, and must not drive the
 * admin's terminal. */
static void
evcli_put(const char *s)
{
    for (; *s; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

struct evcli_hist {
    int json, n;
};

static void
evcli_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int
evcli_hist_row(void *ctx, int ncols, const char *const *names,
               const char *const *values)
{
    struct evcli_hist *h = ctx;
    int i;

    h->n++;
    if (h->json) {
        printf("%s{", h->n > 1 ? ",\n " : "[");
        for (i = 0; i < ncols; i++) {
            printf("%s\"%s\": ", i ? ", " : "", names[i]);
            evcli_json_str(values[i]);
        }
        printf("}");
        return 0;
    }
    /* time type qid to=<rcpt> and the details that are set */
    printf("%s %-10s ", values[0], values[1]);
    evcli_put(values[2]);
    printf(" to=<");
    evcli_put(values[5]);
    printf(">");
    for (i = 3; i < ncols; i++) {
        if (i == 5 || values[i][0] == '\0' ||
            (strcmp(values[i], "0") == 0 && i != 10))
            continue;
        if (i == 10 && strcmp(values[1], "bounced") != 0)
            continue;
        if (i == 10) {
            printf(", %s", values[i][0] == '1' ? "hard" : "soft");
        } else {
            printf(", %s=", names[i]);
            evcli_put(values[i]);
        }
    }
    putchar('\n');
    return 0;
}

static int
events_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"message-id", required_argument, NULL, 'm'},
        {"recipient", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0}};
    const char *path = CONF_DEFAULT_PATH, *msgid = NULL, *rcpt = NULL;
    struct evcli_hist h = {0, 0};
    struct events_db *db;
    struct err e;
    int c, rc;

    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'm':
            msgid = optarg;
            break;
        case 'r':
            rcpt = optarg;
            break;
        case 'j':
            h.json = 1;
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc || (msgid == NULL && rcpt == NULL))
        goto usage;
    if ((db = evcli_open(path, EVENTS_DB_READONLY)) == NULL)
        return 1;
    err_clear(&e);
    rc = events_db_history(db, msgid, rcpt, evcli_hist_row, &h, &e);
    if (h.json)
        printf("%s\n", h.n > 0 ? "]" : "[]");
    events_db_close(db);
    if (rc < 0) {
        fprintf(stderr, "relaychain: events: %s\n", e.text);
        return 1;
    }
    if (h.n == 0 && !h.json)
        fprintf(stderr, "relaychain: events: none found\n");
    return h.n > 0 ? 0 : 1;
usage:
    fprintf(stderr, "usage: relaychain events [-c FILE] [--json] "
                    "--message-id ID | --recipient ADDR\n");
    return 2;
}

/* --------------------------------------------------------------- report */

struct evcli_report {
    int json, n;
};

static double
evcli_rate(unsigned long long a, unsigned long long b)
{
    return b > 0 ? 100.0 * (double)a / (double)b : 0.0;
}

static int
evcli_report_row(void *ctx, const struct events_report_row *r)
{
    struct evcli_report *rp = ctx;
    unsigned long long bounced = r->bounced_hard + r->bounced_soft;
    unsigned long long final = r->delivered + bounced + r->expired;
    double dr = evcli_rate(r->delivered, final);
    double br = evcli_rate(bounced, final);
    double fr = evcli_rate(r->deferred, r->deferred + final);

    rp->n++;
    if (rp->n == 1)
        printf("%-24s %9s %9s %9s %9s %9s %9s %9s %7s %7s %7s %9s"
               /* ---- track */ " %7s %7s %7s %7s %7s" /* ---- end track */
               "\n",
               "key", "received", "delivered", "deferred", "hard", "soft",
               "expired", "suppr", "deliv%", "bounce%", "defer%",
               "complaint", /* ---- verp */
               /* ---- track */
               "open", "open-m", "click", "click-m", "unsub"
               /* ---- end track */);
    {
        const char *k = r->key[0] ? r->key : "-";
        size_t len = strlen(k);

        evcli_put(k);
        printf("%*s", len < 24 ? (int)(24 - len) : 0, "");
    }
    printf(" %9llu %9llu %9llu %9llu %9llu %9llu %9llu %7.2f %7.2f %7.2f "
           "%9llu",
           r->received, r->delivered, r->deferred, r->bounced_hard,
           r->bounced_soft, r->expired, r->suppressed, dr, br, fr,
           r->complained /* ---- verp */);
    /* ---- track: human and machine opens and clicks apart */
    printf(" %7llu %7llu %7llu %7llu %7llu", r->opened_human,
           r->opened_machine, r->clicked_human, r->clicked_machine,
           r->unsubscribed);
    /* ---- end track */
    printf("\n");
    return 0;
}

static int
report_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},
        {"by", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {"stream", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0}};
    const char *path = CONF_DEFAULT_PATH, *by = NULL, *stream = NULL;
    long long since = 0, until = 0;
    struct evcli_report rp = {0, 0};
    struct events_db *db;
    struct err e;
    int c, rc;

    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 's':
        case 'u':
            if (evcli_date(optarg, c == 's' ? &since : &until) < 0) {
                fprintf(stderr,
                        "relaychain: report: bad date '%s' (want "
                        "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS], UTC)\n",
                        optarg);
                return 2;
            }
            break;
        case 'b':
            by = optarg;
            break;
        case 'j':
            rp.json = 1;
            break;
        case 'S':
            stream = optarg;
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc)
        goto usage;
    if ((db = evcli_open(path, EVENTS_DB_READONLY)) == NULL)
        return 1;
    err_clear(&e);
    if (rp.json) {
        /* ---- http: the JSON relaychaind's /api/report serves too */
        struct buf out;

        buf_init(&out, 0);
        rc = events_report_json_in(db, by, stream, since, until, &out, &e) < 0
                 ? -1
                 : 0;
        if (rc == 0)
            fwrite(buf_str(&out), 1, out.len, stdout);
        buf_fini(&out);
    } else {
        rc = events_db_report_in(db, by, stream, since, until,
                                 evcli_report_row, &rp, &e);
    }
    events_db_close(db);
    if (rc < 0) {
        fprintf(stderr, "relaychain: report: %s\n", e.text);
        return e.code == ERR_INPUT ? 2 : 1;
    }
    return 0;
usage:
    fprintf(stderr, "usage: relaychain report [-c FILE] [--since DATE] "
                    "[--until DATE] [--by day|hour|domain|sender|stream] "
                    "[--json]\n");
    return 2;
}

/* ------------------------------------------------------------- suppress */

struct evcli_sup {
    int csv, all;
    long long now;
};

/* evcli_time - t as "YYYY-MM-DD HH:MM:SS" (UTC) into out (n octets) */
static const char *
evcli_time(long long t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;

    out[0] = '\0';
    if (gmtime_r(&tt, &tm))
        strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
    return out;
}

static int
evcli_sup_print(void *ctx, const char *rcpt, const char *stream,
                const char *reason, long long t, long long expires)
{
    const struct evcli_sup *sp = ctx;
    int expired = expires > 0 && expires <= sp->now;

    if (expired && !sp->all)
        return 0;
    if (sp->csv) {
        /* reasons are ours or an admin's: no comma or quote survives */
        char clean[512];
        size_t i;

        snprintf(clean, sizeof(clean), "%s", reason);
        for (i = 0; clean[i]; i++)
            if (clean[i] == ',' || clean[i] == '"' || clean[i] == '\n' ||
                clean[i] == '\r')
                clean[i] = ' ';
        printf("%s,%s,%s,%lld,", rcpt, stream, clean, t);
        if (expires > 0)
            printf("%lld", expires);
        putchar('\n');
    } else {
        char date[32], until[32];

        evcli_put(rcpt);
        putchar('\t');
        evcli_put(stream[0] ? stream : "*");
        printf("\t%s\t", evcli_time(t, date, sizeof(date)));
        if (expires > 0)
            printf("%s %s\t", expired ? "expired" : "until",
                   evcli_time(expires, until, sizeof(until)));
        else
            printf("never\t");
        evcli_put(reason);
        putchar('\n');
    }
    return 0;
}

static int
evcli_import(struct events_db *db)
{
    char line[EVCLI_LINE_MAX];
    unsigned long lineno = 0, n = 0;
    struct err e;

    err_clear(&e);
    if (events_db_begin(db, &e) < 0)
        goto fail;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        char *f[5], *p = line;
        long long t = (long long)time(NULL), expires = 0;
        int k;

        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#' ||
            (lineno == 1 && strncmp(line, "recipient,", 10) == 0))
            continue;
        for (k = 0; k < 5; k++) {
            f[k] = p;
            if (p != NULL && (p = strchr(p, ',')) != NULL)
                *p++ = '\0';
        }
        if (strchr(f[0], '@') == NULL) {
            fprintf(stderr,
                    "relaychain: suppress import: line %lu: no "
                    "address\n",
                    lineno);
            events_db_rollback(db);
            return 1;
        }
        if (f[3] != NULL && f[3][0] != '\0') {
            char *end;

            t = strtoll(f[3], &end, 10);
            if (*end != '\0') {
                fprintf(stderr,
                        "relaychain: suppress import: line %lu: "
                        "bad time\n",
                        lineno);
                events_db_rollback(db);
                return 1;
            }
        }
        /* the fifth column (export's since entries expire): empty or 0
         * for never; a time already past is taken (the entry is
         * listed with --all, and refuses nothing) */
        if (f[4] != NULL && f[4][0] != '\0') {
            char *end;

            errno = 0;
            expires = strtoll(f[4], &end, 10);
            if (*end != '\0' || errno != 0 || expires > EVCLI_EXPIRES_LAST ||
                !isdigit((unsigned char)f[4][0])) {
                fprintf(stderr,
                        "relaychain: suppress import: line %lu: "
                        "bad expiry (want Unix seconds, or nothing for "
                        "never)\n",
                        lineno);
                events_db_rollback(db);
                return 1;
            }
        }
        if (events_db_suppress_add(db, f[0], f[1] ? f[1] : "",
                                   f[2] && f[2][0] ? f[2] : "imported", t,
                                   expires, &e) < 0)
            goto fail;
        n++;
    }
    if (events_db_commit(db, &e) < 0)
        goto fail;
    printf("relaychain: suppress import: %lu addresses\n", n);
    return 0;
fail:
    events_db_rollback(db);
    fprintf(stderr, "relaychain: suppress import: %s\n", e.text);
    return 1;
}

static int
suppress_cmd(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"stream", required_argument, NULL, 'S'},
        {"expires", required_argument, NULL, 'x'},
        {"all", no_argument, NULL, 'a'},
        {NULL, 0, NULL, 0}};
    const char *path = CONF_DEFAULT_PATH, *stream = NULL, *cmd;
    const char *when = NULL;
    struct evcli_sup sp = {0, 0, (long long)time(NULL)};
    long long expires = 0;
    struct events_db *db;
    struct err e;
    int c, rc = 0;

    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'S':
            stream = optarg;
            break;
        case 'x':
            when = optarg;
            break;
        case 'a':
            sp.all = 1;
            break;
        default:
            goto usage;
        }
    }
    if (optind >= argc)
        goto usage;
    cmd = argv[optind++];
    if ((when != NULL && strcmp(cmd, "add") != 0) ||
        (sp.all && strcmp(cmd, "list") != 0 && strcmp(cmd, "export") != 0))
        goto usage;
    if (when != NULL) {
        char why[160];

        if (evcli_expires(when, sp.now, &expires, why, sizeof(why)) < 0) {
            fprintf(stderr, "relaychain: suppress add: --expires %s: %s\n",
                    when, why);
            return 2;
        }
    }
    if (strcmp(cmd, "add") != 0 && strcmp(cmd, "remove") != 0 &&
        strcmp(cmd, "list") != 0 && strcmp(cmd, "export") != 0 &&
        strcmp(cmd, "import") != 0)
        goto usage;
    if ((strcmp(cmd, "add") == 0 && (optind >= argc || argc - optind > 2)) ||
        (strcmp(cmd, "remove") == 0 && argc - optind != 1) ||
        ((strcmp(cmd, "list") == 0 || strcmp(cmd, "export") == 0 ||
          strcmp(cmd, "import") == 0) &&
         optind != argc))
        goto usage;
    if ((strcmp(cmd, "add") == 0 || strcmp(cmd, "remove") == 0) &&
        strchr(argv[optind], '@') == NULL) {
        fprintf(stderr, "relaychain: suppress: '%s' is not an address\n",
                argv[optind]);
        return 2;
    }
    if ((db = evcli_open(path, EVENTS_DB_EXISTING)) == NULL)
        return 1;
    err_clear(&e);
    if (strcmp(cmd, "add") == 0) {
        int added = events_db_suppress_add(
            db, argv[optind], stream ? stream : "",
            optind + 1 < argc ? argv[optind + 1] : "added by hand", sp.now,
            expires, &e);

        if (added < 0)
            rc = 1;
        else if (added == 0)
            fprintf(stderr,
                    "relaychain: suppress: %s is listed already and is "
                    "kept as it is (remove it first to change it)\n",
                    argv[optind]);
    } else if (strcmp(cmd, "remove") == 0) {
        rc = events_db_suppress_remove(db, argv[optind], stream, &e);
        if (rc == 0)
            fprintf(stderr, "relaychain: suppress: %s is not listed\n",
                    argv[optind]);
        rc = rc == 1 ? 0 : 1;
    } else if (strcmp(cmd, "import") == 0) {
        rc = evcli_import(db);
        events_db_close(db);
        return rc;
    } else {
        sp.csv = strcmp(cmd, "export") == 0;
        if (sp.csv)
            printf("recipient,stream,reason,time,expires\n");
        if (events_db_suppress_list(db, evcli_sup_print, &sp, &e) < 0)
            rc = 1;
    }
    if (rc != 0 && e.text[0] != '\0')
        fprintf(stderr, "relaychain: suppress %s: %s\n", cmd, e.text);
    events_db_close(db);
    return rc;
usage:
    fprintf(stderr,
            "usage: relaychain suppress [-c FILE] add ADDR [REASON] "
            "[--stream S] [--expires WHEN] | remove ADDR [--stream S] | "
            "list [--all] | export [--all] | import < CSV\n");
    return 2;
}

int
events_main(int argc, char **argv)
{
    if (strcmp(argv[0], "report") == 0)
        return report_cmd(argc, argv);
    if (strcmp(argv[0], "suppress") == 0)
        return suppress_cmd(argc, argv);
    return events_cmd(argc, argv);
}
