/*
 * archive-s3-probe - drive the archive stage's remote stores directly,
 * for tests/integration/archive_s3.sh and archive_journal.sh
 *
 *   archive-s3-probe CONF put FIRST COUNT      put records FIRST..
 *   archive-s3-probe CONF check COUNT [WRITER] list (every writer, or one)
 *                    and get: exactly records 1..COUNT, each once, in name
 *                    order, each equal to what put wrote, byte for byte
 *   archive-s3-probe CONF list [WRITER [FROM]] print the names
 *   archive-s3-probe CONF get NAME             print the record's octets
 *   archive-s3-probe CONF remove NAME
 *   archive-s3-probe CONF spool DIR FIRST COUNT SECONDS
 *                    add records FIRST.. through a spool in front of the
 *                    store (required = no), print "added N backlog B",
 *                    then wait up to SECONDS for the backlog to drain and
 *                    print "drained" (exit 0) or "backlog B" (exit 1)
 *   archive-s3-probe CONF journal MSGFILE SENDER RCPT...
 *                    put MSGFILE through the smtp: store with this
 *                    envelope (lent relaychain's notice service)
 *
 * CONF is a stage-like file: store = ..., retention = ..., and the keys
 * of the store (arc_s3_options, arc_journal_options). Record i is named
 * "probe/%016x" (writer "probe2" for odd i when COUNT is split with -w)
 * and holds i-derived octets of every value, 1 to 70000 long. Errors go
 * to stderr as "error: CODE: TEXT"; exit 0 when all went as asked, 1
 * when not, 2 on misuse.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "filters/archive/archive_remote.h"
#include "filters/archive/archive_spool.h"
#include "filters/archive/archive_store.h"
#include "net/notice.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"
#include "util/log.h"

static const struct cfg_option probe_options[] = {
    {"store", CFG_STRING, NULL, "s3://bucket/prefix or smtp:[host]:port", NULL,
     0, 0, CFG_REQUIRED},
    {"retention", CFG_STRING, NULL, "7y, 90d", NULL, 0, 0, 0},
    CFG_OPTION_END,
};

static const struct arc_store_ops *probe_ops;
static void *probe_store;

static void
probe_err(const struct err *e)
{
    fprintf(stderr, "error: %s: %s\n", err_code_name(e->code), e->text);
}

/* probe_name - record i's name; odd ones by a second writer when split. */
static void
probe_name(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "probe/%016x", i);
}

/* probe_data - record i's octets: every value, a length from 1 to
 * 70000 (so that some take more than one read), from a simple LCG. */
static void
probe_data(unsigned i, struct buf *b)
{
    unsigned long x = i * 2654435761UL + 1;
    size_t len = 1 + (size_t)((i * 7919UL) % 70000), k;
    struct err e;

    buf_reset(b);
    for (k = 0; k < len; k++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        if (buf_putc(b, (int)(x >> 56) & 0xff, &e) < 0)
            return;
    }
}

static int
probe_put(unsigned first, unsigned count)
{
    struct buf d;
    unsigned i;
    int bad = 0;

    buf_init(&d, 0);
    for (i = first; i < first + count; i++) {
        char name[64];
        struct arc_item it;
        struct err e;

        probe_name(i, name, sizeof(name));
        probe_data(i, &d);
        memset(&it, 0, sizeof(it));
        it.name = name;
        it.sealed = (const unsigned char *)d.data;
        it.sealed_len = d.len;
        if (probe_ops->put(probe_store, &it, &e) < 0) {
            probe_err(&e);
            bad = 1;
            break;
        }
    }
    buf_fini(&d);
    if (!bad)
        printf("put %u\n", count);
    return bad;
}

struct probe_walk {
    char **names;
    size_t n, cap;
};

static int
probe_collect(void *arg, const char *name)
{
    struct probe_walk *w = arg;

    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 256;
        char **nv = realloc(w->names, nc * sizeof(*nv));

        if (nv == NULL)
            return -2;
        w->names = nv;
        w->cap = nc;
    }
    if ((w->names[w->n] = strdup(name)) == NULL)
        return -2;
    w->n++;
    return 0;
}

static void
probe_walk_free(struct probe_walk *w)
{
    size_t i;

    for (i = 0; i < w->n; i++)
        free(w->names[i]);
    free(w->names);
}

static int
probe_check(unsigned count, const char *writer)
{
    struct probe_walk w = {NULL, 0, 0};
    struct buf got, want;
    struct err e;
    unsigned i;
    int bad = 0, rc;

    rc = probe_ops->list(probe_store, writer, NULL, probe_collect, &w, &e);
    if (rc != 0) {
        if (rc < 0 && rc != -2)
            probe_err(&e);
        else
            fprintf(stderr, "error: list walk stopped (%d)\n", rc);
        probe_walk_free(&w);
        return 1;
    }
    if (w.n != count) {
        fprintf(stderr, "error: list gave %zu names, want %u\n", w.n, count);
        bad = 1;
    }
    buf_init(&got, 0);
    buf_init(&want, 0);
    for (i = 1; i <= count && !bad; i++) {
        char name[64];

        probe_name(i, name, sizeof(name));
        if (strcmp(w.names[i - 1], name) != 0) {
            fprintf(stderr, "error: list name %u is %s, want %s\n", i,
                    w.names[i - 1], name);
            bad = 1;
            break;
        }
        buf_reset(&got);
        if (probe_ops->get(probe_store, name, &got, &e) < 0) {
            probe_err(&e);
            bad = 1;
            break;
        }
        probe_data(i, &want);
        if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
            fprintf(stderr,
                    "error: %s: got %zu octets, want %zu, or they "
                    "differ\n",
                    name, got.len, want.len);
            bad = 1;
        }
    }
    buf_fini(&got);
    buf_fini(&want);
    probe_walk_free(&w);
    if (!bad)
        printf("checked %u\n", count);
    return bad;
}

static int
probe_print(void *arg, const char *name)
{
    (void)arg;
    printf("%s\n", name);
    return 0;
}

static int
probe_spool(const char *dir, unsigned first, unsigned count, int seconds)
{
    struct arc_spool *sp;
    struct buf d;
    struct err e;
    size_t backlog = 0;
    long long oldest = 0;
    unsigned i;
    int waited;

    if ((sp = arc_spool_open(dir, probe_ops, probe_store, &e)) == NULL) {
        probe_err(&e);
        return 1;
    }
    arc_spool_backoff(sp, 200, 1000);
    buf_init(&d, 0);
    for (i = first; i < first + count; i++) {
        char name[64];
        struct arc_item it;

        probe_name(i, name, sizeof(name));
        probe_data(i, &d);
        memset(&it, 0, sizeof(it));
        it.name = name;
        it.sealed = (const unsigned char *)d.data;
        it.sealed_len = d.len;
        if (arc_spool_add(sp, &it, &e) < 0) {
            probe_err(&e);
            buf_fini(&d);
            arc_spool_close(sp);
            return 1;
        }
    }
    buf_fini(&d);
    if (arc_spool_status(sp, &backlog, &oldest, &e) < 0) {
        probe_err(&e);
        arc_spool_close(sp);
        return 1;
    }
    printf("added %u backlog %zu\n", count, backlog);
    fflush(stdout);
    for (waited = 0; waited < seconds * 10; waited++) {
        if (arc_spool_status(sp, &backlog, &oldest, &e) < 0) {
            probe_err(&e);
            break;
        }
        if (backlog == 0)
            break;
        usleep(100000);
    }
    printf("%s %zu shipped %lu\n", backlog == 0 ? "drained" : "backlog",
           backlog, arc_spool_shipped(sp));
    arc_spool_close(sp);
    return backlog != 0;
}

static int
probe_journal(const char *file, const char *sender, char **rcpts, int n)
{
    struct stage_env env;
    struct arc_meta m;
    struct arc_item it;
    struct buf d;
    struct err e;
    FILE *fp;
    char chunk[8192];
    size_t r;
    unsigned int mdlen = 0;
    int rc;

    buf_init(&d, 0);
    if ((fp = fopen(file, "rb")) == NULL) {
        perror(file);
        return 1;
    }
    while ((r = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(&d, chunk, r, &e) < 0) {
            fclose(fp);
            probe_err(&e);
            return 1;
        }
    fclose(fp);
    memset(&env, 0, sizeof(env));
    notice_env(&env);
    if (arc_journal_set_env(probe_store, &env, &e) < 0) {
        probe_err(&e);
        buf_fini(&d);
        return 1;
    }
    memset(&m, 0, sizeof(m));
    m.time = (long long)time(NULL);
    m.point = "archive";
    m.qid = "4PROBE1";
    m.message_id = "<probe@example.com>";
    m.client_addr = "192.0.2.7";
    m.client_name = "client.example.com";
    m.auth_user = "alice";
    m.sender = sender;
    m.rcpts = (const char *const *)rcpts;
    m.nrcpts = (size_t)n;
    m.verdicts = "";
    m.size = d.len;
    EVP_Digest(d.data, d.len, m.sha256, &mdlen, EVP_sha256(), NULL);
    memset(&it, 0, sizeof(it));
    it.name = "probe/0000000000000001";
    it.sealed = (const unsigned char *)"sealed";
    it.sealed_len = 6;
    it.meta = &m;
    it.data = d.data;
    it.len = d.len;
    rc = arc_store_smtp.put(probe_store, &it, &e);
    if (rc < 0)
        probe_err(&e);
    else
        printf("journaled %zu octets\n", d.len);
    /* And without its message (a record read back from a spool): held. */
    if (rc == 0) {
        it.meta = NULL;
        it.data = NULL;
        if (arc_store_smtp.put(probe_store, &it, &e) == 0 ||
            e.code != ERR_TEMP) {
            fprintf(stderr, "error: put without the message was not "
                            "refused as temporary\n");
            rc = -1;
        }
    }
    buf_fini(&d);
    return rc < 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: archive-s3-probe CONF put FIRST COUNT | check "
                    "COUNT [WRITER] | list [WRITER [FROM]] | get NAME | "
                    "remove NAME | spool DIR FIRST COUNT SECONDS | journal "
                    "MSGFILE SENDER RCPT...\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const struct cfg_option *const tables[] = {probe_options, arc_s3_options,
                                               arc_journal_options, NULL};
    struct cfg *c;
    struct err e;
    const char *store, *cmd;
    int rc = 1;

    if (argc < 3)
        usage();
    log_open("archive-s3-probe", LOG_MAIL, LOG_SINK_STDERR);
    if ((c = cfg_parse(argv[1], &e)) == NULL ||
        cfg_validate(c, tables, &e) < 0) {
        probe_err(&e);
        return 1;
    }
    store = cfg_str(c, "store");
    if (strncmp(store, "s3:", 3) == 0)
        probe_ops = &arc_store_s3;
    else if (strncmp(store, "smtp:", 5) == 0)
        probe_ops = &arc_store_smtp;
    else {
        fprintf(stderr, "error: store %s\n", store);
        return 2;
    }
    probe_store = probe_ops->open(strchr(store, ':') + 1, c, 0, &e);
    if (probe_store == NULL) {
        probe_err(&e);
        cfg_free(c);
        return 1;
    }
    cmd = argv[2];
    if (strcmp(cmd, "put") == 0 && argc == 5)
        rc = probe_put((unsigned)strtoul(argv[3], NULL, 10),
                       (unsigned)strtoul(argv[4], NULL, 10));
    else if (strcmp(cmd, "check") == 0 && (argc == 4 || argc == 5))
        rc = probe_check((unsigned)strtoul(argv[3], NULL, 10),
                         argc == 5 ? argv[4] : NULL);
    else if (strcmp(cmd, "list") == 0 && argc <= 5) {
        rc = probe_ops->list(probe_store, argc > 3 ? argv[3] : NULL,
                             argc > 4 ? argv[4] : NULL, probe_print, NULL, &e);
        if (rc < 0)
            probe_err(&e);
        rc = rc != 0;
    } else if (strcmp(cmd, "get") == 0 && argc == 4) {
        struct buf b;

        buf_init(&b, 0);
        rc = probe_ops->get(probe_store, argv[3], &b, &e);
        if (rc < 0)
            probe_err(&e);
        else
            fwrite(b.data, 1, b.len, stdout);
        buf_fini(&b);
        rc = rc != 0;
    } else if (strcmp(cmd, "remove") == 0 && argc == 4) {
        rc = probe_ops->remove(probe_store, argv[3], &e);
        if (rc < 0)
            probe_err(&e);
        rc = rc != 0;
    } else if (strcmp(cmd, "spool") == 0 && argc == 7)
        rc = probe_spool(argv[3], (unsigned)strtoul(argv[4], NULL, 10),
                         (unsigned)strtoul(argv[5], NULL, 10),
                         (int)strtol(argv[6], NULL, 10));
    else if (strcmp(cmd, "journal") == 0 && argc >= 6)
        rc = probe_journal(argv[3], argv[4], argv + 5, argc - 5);
    else
        usage();
    probe_ops->close(probe_store);
    cfg_free(c);
    return rc;
}
