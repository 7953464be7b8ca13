/*
 * cmd_archive - "relaychain archive": the compliance archive for an admin
 *     and an auditor
 *
 *     relaychain archive [-c FILE] verify [--store STORE] [--key PUB]
 *                        [--from DATE]
 *     relaychain archive [-c FILE] status [--store STORE]
 *     relaychain archive [-c FILE] list [--store STORE]
 *     relaychain archive [-c FILE] show [--store STORE] NAME
 *     relaychain archive [-c FILE] purge [--store STORE] [--retention AGE]
 *                        [--now EPOCH]
 *     relaychain archive [-c FILE] reindex [--store STORE] [--index FILE]
 *                        [--full]
 *     relaychain archive [-c FILE] search [--store STORE] [--index FILE]
 *                        [--sender A] [--recipient A] [--since DATE]
 *                        [--until DATE] [--message-id ID] [--subject S]
 *     relaychain archive [-c FILE] export ...search options...
 *                        (--dir DIR | --mbox FILE) [--manifest FILE]
 *
 * The store is the one the chain's archive stages name (the chain is
 * loaded for checking only, so no engine is built and nothing is
 * written), or the one --store names: an auditor needs no configuration,
 * only a copy of the store and the public key (--key; without it the key
 * is the checkpoint_key of the stage).
 *
 * search finds message records through the SQLite index (brought up to
 * date from the store first); export writes them as .eml files or one
 * mbox with a manifest of their hashes and covering checkpoints. DATE is
 * YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS (UTC) or seconds since the epoch.
 *
 * purge drops the segments past retention (the stage's, or --retention)
 * after writing tombstones for them, and logs what it dropped; --now
 * takes the age from another moment than this one (a dry look at what a
 * date would purge is "archive list").
 *
 * verify prints each finding (the first missing, reordered or altered
 * record by name and seq), then "N records, M checkpoints, ok" or
 * "..., K problems", and its speed; exit 0 when the store verifies, 1
 * when it does not, 2 when it cannot be read or the command is wrong.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "util/log.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "filters/filters.h"
#include "cli/cli.h"
#include "cli/parts.h"

#define ARCHIVECLI_STORES_MAX 16

static void
archivecli_usage(FILE *fp)
{
    fprintf(fp,
            "usage: relaychain archive [-c FILE] verify [--store STORE] "
            "[--key PUBKEY] [--from DATE]\n"
            "       relaychain archive [-c FILE] status [--store STORE]\n"
            "       relaychain archive [-c FILE] list [--store STORE]\n"
            "       relaychain archive [-c FILE] show [--store STORE] [--raw] "
            "NAME\n"
            "       relaychain archive [-c FILE] purge [--store STORE] "
            "[--retention AGE] [--now EPOCH]\n"
            "       relaychain archive [-c FILE] reindex [--store STORE] "
            "[--index FILE] [--full]\n"
            "       relaychain archive [-c FILE] search [--store STORE] "
            "[--index FILE] [--sender ADDR]\n"
            "                 [--recipient ADDR] [--since DATE] [--until "
            "DATE]\n"
            "                 [--message-id ID] [--subject TEXT]\n"
            "       relaychain archive [-c FILE] export SEARCH-OPTIONS "
            "(--dir DIR | --mbox FILE)\n"
            "                 [--manifest FILE]\n"
            "\n"
            "STORE is a store value as in the archive stage (dir:/PATH); "
            "without it, the\n"
            "stores of the chain's archive stages. verify exits 0 when "
            "the store\n"
            "verifies, 1 when it does not, 2 on errors. A record encrypted "
            "to a key\n"
            "(encrypt_to) shows only with --raw, as its payload: pipe it to "
            "gpg --decrypt\n"
            "or openssl cms -decrypt -inform DER -binary, then zstd -d.\n");
}

/* archivecli_stores - the distinct stores of the chain's archive stages,
 * with each one's checkpoint_key. */
static size_t
archivecli_stores(const struct conf *cf, const char **stores,
                  const char **keys, const char **retentions, size_t max)
{
    const struct stage *const *st;
    size_t n = chain_stages(cf->chain, &st), i, j, count = 0;

    for (i = 0; i < n; i++) {
        const char *store, *key, *retention;

        if (flt_archive_stage_store(st[i], &store, &key, &retention) < 0)
            continue;
        for (j = 0; j < count; j++)
            if (strcmp(stores[j], store) == 0)
                break;
        if (j < count) {
            if (keys[j] == NULL)
                keys[j] = key;
            if (retentions[j] == NULL)
                retentions[j] = retention;
            continue;
        }
        if (count < max) {
            stores[count] = store;
            retentions[count] = retention;
            keys[count++] = key;
        }
    }
    return count;
}

/* archivecli_cfg_of - the configuration of the first archive stage of cf
 * that names store (its s3 keys, its spool), NULL when none does. */
static const struct cfg *
archivecli_cfg_of(const struct conf *cf, const char *store)
{
    const struct stage *const *st;
    size_t n, i;

    if (cf == NULL)
        return NULL;
    n = chain_stages(cf->chain, &st);
    for (i = 0; i < n; i++) {
        const char *s, *key, *retention;

        if (flt_archive_stage_store(st[i], &s, &key, &retention) == 0 &&
            strcmp(s, store) == 0)
            return st[i]->cfg;
    }
    return NULL;
}

static int
archivecli_purge(const char *store, const char *retention, long long now)
{
    struct flt_archive_purge_report r;
    struct err e;

    err_clear(&e);
    if (flt_archive_purge(store, retention, now, &r, &e) < 0) {
        fprintf(stderr, "relaychain: archive purge: %s\n", e.text);
        return 2;
    }
    printf("%s: purged %llu segment%s (%llu records) past %s, tombstones "
           "left\n",
           store, r.segments, r.segments == 1 ? "" : "s", r.records,
           retention);
    if (r.segments > 0)
        log_info(NULL,
                 "archive %s: purged %llu segments (%llu records) past "
                 "retention %s",
                 store, r.segments, r.records, retention);
    return 0;
}

static int
archivecli_verify(const char *store, const char *key, long long from)
{
    struct flt_archive_report r;
    struct err e;
    int rc;

    err_clear(&e);
    if (flt_archive_verify(store, key, from, &r, &e) < 0) {
        fprintf(stderr, "relaychain: archive verify: %s\n", e.text);
        flt_archive_report_fini(&r);
        return 2;
    }
    fputs(buf_str(&r.text), stdout);
    printf("%s: %llu records (%llu messages, %llu outcomes, %llu "
           "tombstones), %llu checkpoints",
           store, r.records, r.messages, r.outcomes, r.tombstones,
           r.checkpoints);
    if (r.purged > 0)
        printf(", %llu purged under tombstones", r.purged);
    if (r.encrypted > 0)
        printf(", %llu messages encrypted to a key (hash chain checked; "
               "their SHA-256 only with the private key)",
               r.encrypted);
    if (r.skipped > 0)
        printf(", %llu before --from vouched for by a checkpoint", r.skipped);
    if (r.unchecked > 0)
        printf(" (%llu not checked: no key)", r.unchecked);
    printf(", %llu writer%s, ", r.writers, r.writers == 1 ? "" : "s");
    if (r.problems == 0)
        printf("ok\n");
    else
        printf("%llu problem%s\n", r.problems, r.problems == 1 ? "" : "s");
    printf("verified in %.3fs, %.0f records/s\n", r.seconds,
           r.seconds > 0 ? (double)r.records / r.seconds : 0.0);
    rc = r.problems == 0 ? 0 : 1;
    flt_archive_report_fini(&r);
    return rc;
}

static int
archivecli_status(const char *store)
{
    struct buf out;
    struct err e;
    int rc = 0;

    buf_init(&out, 16 * 1024 * 1024);
    err_clear(&e);
    if (flt_archive_status(store, &out, &e) < 0) {
        fprintf(stderr, "relaychain: archive status: %s\n", e.text);
        rc = 2;
    } else {
        fputs(buf_str(&out), stdout);
    }
    buf_fini(&out);
    return rc;
}

/* archivecli_print - one value of a list line, as the record holds it
 * but with anything not printable shown as "?". */
static void
archivecli_print(const char *key, const char *v)
{
    const unsigned char *p;

    if (v == NULL)
        return;
    printf(" %s=", key);
    for (p = (const unsigned char *)v; *p != '\0'; p++)
        putchar(*p == 0x20 ? ',' : *p < 0x21 || *p >= 0x7f ? '?' : *p);
}

static int
archivecli_list_fn(void *arg, const struct flt_archive_entry *ent)
{
    size_t i;

    (void)arg;
    printf("%s %s time=%lld", ent->name, ent->kind, ent->meta->time);
    if (strcmp(ent->kind, "message") == 0) {
        archivecli_print("point", ent->meta->point);
        archivecli_print("qid", ent->meta->qid);
        archivecli_print("message-id", ent->meta->message_id);
        archivecli_print("sender", ent->meta->sender);
        for (i = 0; i < ent->meta->nrcpts; i++)
            archivecli_print("rcpt", ent->meta->rcpts[i]);
        archivecli_print("verdicts", ent->meta->verdicts);
        printf(" size=%zu", ent->meta->size);
        archivecli_print("encrypted-to", ent->meta->encrypted_to);
    }
    archivecli_print("ref", ent->ref);
    archivecli_print("verdict", ent->verdict);
    putchar('\n');
    return 0;
}

/* archivecli_show_fn - the message; an encrypted one (encrypt_to) only
 * with --raw (arg non-NULL), as its payload for gpg or openssl cms. */
static int
archivecli_show_fn(void *arg, const struct flt_archive_entry *ent)
{
    char hex[65];
    size_t i;

    if (ent->meta != NULL && ent->meta->encrypted_to != NULL && arg == NULL) {
        for (i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", ent->meta->sha256[i]);
        fprintf(stderr,
                "relaychain: archive: %s is encrypted to %s; in clear: "
                "size=%zu sha256=%s and the envelope (archive list).\n"
                "Its payload, for the holder of the private key:\n"
                "  relaychain archive show --raw %s | %s | zstd -d\n",
                ent->name, ent->meta->encrypted_to, ent->meta->size, hex,
                ent->name,
                strncmp(ent->meta->encrypted_to, "pgp:", 4) == 0
                    ? "gpg --decrypt"
                    : "openssl cms -decrypt -inform DER -binary -recip "
                      "CERT.pem -inkey KEY.pem");
        return 1;
    }
    if (ent->data != NULL)
        fwrite(ent->data, 1, ent->len, stdout);
    return 0;
}

static int
archivecli_walk(const char *store, const char *only, int raw)
{
    static int raw_flag;
    struct err e;
    int rc;

    err_clear(&e);
    rc = flt_archive_walk(
        store, only, only != NULL ? archivecli_show_fn : archivecli_list_fn,
        raw ? &raw_flag : NULL, &e);
    if (rc > 0)
        return 1;
    if (rc < 0) {
        fprintf(stderr, "relaychain: archive: %s\n", e.text);
        return 2;
    }
    return 0;
}

/* archivecli_date - DATE as seconds since the epoch (UTC). */
static int
archivecli_date(const char *s, long long *out)
{
    struct tm tm;
    const char *end;
    char *nend;

    memset(&tm, 0, sizeof(tm));
    if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) != NULL &&
        *end == '\0') {
        *out = (long long)timegm(&tm);
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    if ((end = strptime(s, "%Y-%m-%d", &tm)) != NULL && *end == '\0') {
        *out = (long long)timegm(&tm);
        return 0;
    }
    *out = strtoll(s, &nend, 10);
    return *s != '\0' && *nend == '\0' && *out > 0 ? 0 : -1;
}

static int
archivecli_hit_fn(void *arg, const struct flt_archive_hit *h)
{
    (void)arg;
    printf("%s time=%lld", h->name, h->time);
    archivecli_print("point", h->point);
    archivecli_print("qid", h->qid);
    archivecli_print("message-id", h->message_id);
    archivecli_print("sender", h->sender);
    if (h->rcpts != NULL) {
        const char *p = h->rcpts;

        while (*p != '\0') {
            size_t n = strcspn(p, " ");
            char one[1024];

            snprintf(one, sizeof(one), "%.*s", (int)n, p);
            archivecli_print("rcpt", one);
            p += n + (p[n] == ' ');
        }
    }
    archivecli_print("subject", h->subject);
    printf(" size=%zu\n", h->size);
    return 0;
}

struct archivecli_opts {
    const char *index, *dir, *mbox, *manifest;
    int full;
    struct flt_archive_query q;
};

static int
archivecli_index(const char *cmd, const char *store,
                 const struct archivecli_opts *o)
{
    unsigned long long n = 0;
    char manifest[4096];
    struct err e;

    err_clear(&e);
    if (strcmp(cmd, "reindex") == 0) {
        if (flt_archive_reindex(store, o->index, o->full, &n, &e) < 0)
            goto fail;
        printf("%s: %llu records added to the index\n", store, n);
        return 0;
    }
    if (strcmp(cmd, "search") == 0) {
        if (flt_archive_search(store, o->index, &o->q, archivecli_hit_fn, NULL,
                               &e) < 0)
            goto fail;
        return 0;
    }
    if ((o->dir == NULL) == (o->mbox == NULL)) {
        fprintf(stderr, "relaychain: archive export: give --dir DIR or "
                        "--mbox FILE\n");
        return 2;
    }
    if (o->manifest != NULL)
        snprintf(manifest, sizeof(manifest), "%s", o->manifest);
    else if (o->dir != NULL)
        snprintf(manifest, sizeof(manifest), "%s/MANIFEST", o->dir);
    else
        snprintf(manifest, sizeof(manifest), "%s.manifest", o->mbox);
    if (flt_archive_export(store, o->index, &o->q, o->dir, o->mbox, manifest,
                           &n, &e) < 0)
        goto fail;
    printf("%s: %llu messages exported to %s, manifest %s\n", store, n,
           o->dir != NULL ? o->dir : o->mbox, manifest);
    return 0;
fail:
    fprintf(stderr, "relaychain: archive %s: %s\n", cmd, e.text);
    return 2;
}

int
archive_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"key", required_argument, NULL, 'k'},
        {"from", required_argument, NULL, 'f'},
        {"retention", required_argument, NULL, 'r'},
        {"now", required_argument, NULL, 'n'},
        {"index", required_argument, NULL, 'i'},
        {"full", no_argument, NULL, 'F'},
        {"raw", no_argument, NULL, 'W'},
        {"sender", required_argument, NULL, 'S'},
        {"recipient", required_argument, NULL, 'R'},
        {"since", required_argument, NULL, 'a'},
        {"until", required_argument, NULL, 'b'},
        {"message-id", required_argument, NULL, 'm'},
        {"subject", required_argument, NULL, 'j'},
        {"dir", required_argument, NULL, 'd'},
        {"mbox", required_argument, NULL, 'x'},
        {"manifest", required_argument, NULL, 'M'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = CONF_DEFAULT_PATH, *store = NULL, *key = NULL;
    const char *stores[ARCHIVECLI_STORES_MAX], *keys[ARCHIVECLI_STORES_MAX];
    const char *retentions[ARCHIVECLI_STORES_MAX], *retention = NULL;
    const char *cmd;
    long long now = (long long)time(NULL), from = 0;
    struct archivecli_opts o;
    char *end;
    struct conf *cf = NULL;
    size_t n, i;
    struct err e;
    int c, rc = 0, worst = 0, raw = 0;

    memset(&o, 0, sizeof(o));
    optind = 1;
    while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 's':
            store = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'h':
            archivecli_usage(stdout);
            return 0;
        default:
            archivecli_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        archivecli_usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "verify") != 0 && strcmp(cmd, "status") != 0 &&
        strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0 &&
        strcmp(cmd, "purge") != 0 && strcmp(cmd, "search") != 0 &&
        strcmp(cmd, "export") != 0 && strcmp(cmd, "reindex") != 0) {
        fprintf(stderr, "relaychain: unknown archive command '%s'\n", cmd);
        archivecli_usage(stderr);
        return 2;
    }
    optind++;
    while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            store = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'c':
            path = optarg;
            break;
        case 'r':
            retention = optarg;
            break;
        case 'i':
            o.index = optarg;
            break;
        case 'F':
            o.full = 1;
            break;
        case 'W':
            raw = 1;
            break;
        case 'S':
            o.q.sender = optarg;
            break;
        case 'R':
            o.q.recipient = optarg;
            break;
        case 'm':
            o.q.message_id = optarg;
            break;
        case 'j':
            o.q.subject = optarg;
            break;
        case 'd':
            o.dir = optarg;
            break;
        case 'x':
            o.mbox = optarg;
            break;
        case 'M':
            o.manifest = optarg;
            break;
        case 'a':
        case 'b':
            if (archivecli_date(optarg, c == 'a' ? &o.q.since : &o.q.until) <
                0) {
                fprintf(stderr,
                        "relaychain: %s %s: give YYYY-MM-DD, "
                        "YYYY-MM-DDTHH:MM:SS (UTC) or seconds since the "
                        "epoch\n",
                        c == 'a' ? "--since" : "--until", optarg);
                return 2;
            }
            break;
        case 'n':
            now = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || now <= 0) {
                fprintf(stderr,
                        "relaychain: --now %s: give seconds since "
                        "the epoch\n",
                        optarg);
                return 2;
            }
            break;
        case 'f':
            if (archivecli_date(optarg, &from) < 0) {
                fprintf(stderr,
                        "relaychain: --from %s: give YYYY-MM-DD, "
                        "YYYY-MM-DDTHH:MM:SS (UTC) or seconds since the "
                        "epoch\n",
                        optarg);
                return 2;
            }
            break;
        default:
            archivecli_usage(stderr);
            return 2;
        }
    }
    if (strcmp(cmd, "show") == 0 ? optind + 1 != argc : optind != argc) {
        archivecli_usage(stderr);
        return 2;
    }
    log_open("relaychain", LOG_MAIL, LOG_SINK_NONE);
    if (store != NULL) {
        stores[0] = store;
        keys[0] = NULL;
        retentions[0] = NULL;
        n = 1;
        /* A store but dir: reads its keys from the stage that names it. */
        if (strncmp(store, "dir:", 4) != 0) {
            err_clear(&e);
            if ((cf = conf_load_flags(path, parts_all, CONF_LOAD_CHECK, &e)) ==
                NULL) {
                fprintf(stderr, "relaychain: %s\n", e.text);
                return 2;
            }
        }
    } else {
        err_clear(&e);
        if ((cf = conf_load_flags(path, parts_all, CONF_LOAD_CHECK, &e)) ==
            NULL) {
            fprintf(stderr, "relaychain: %s\n", e.text);
            return 2;
        }
        n = archivecli_stores(cf, stores, keys, retentions,
                              ARCHIVECLI_STORES_MAX);
        if (n == 0) {
            fprintf(stderr, "relaychain: the chain has no archive stage (give "
                            "--store)\n");
            conf_free(cf);
            return 2;
        }
    }
    for (i = 0; i < n; i++) {
        flt_archive_store_config(archivecli_cfg_of(cf, stores[i]));
        if (strcmp(cmd, "verify") == 0)
            rc = archivecli_verify(stores[i], key != NULL ? key : keys[i],
                                   from);
        else if (strcmp(cmd, "list") == 0)
            rc = archivecli_walk(stores[i], NULL, 0);
        else if (strcmp(cmd, "show") == 0)
            rc = archivecli_walk(stores[i], argv[optind], raw);
        else if (strcmp(cmd, "search") == 0 || strcmp(cmd, "export") == 0 ||
                 strcmp(cmd, "reindex") == 0)
            rc = archivecli_index(cmd, stores[i], &o);
        else if (strcmp(cmd, "purge") == 0)
            rc = archivecli_purge(
                stores[i], retention != NULL ? retention : retentions[i], now);
        else
            rc = archivecli_status(stores[i]);
        if (rc > worst)
            worst = rc;
    }
    conf_free(cf);
    return worst;
}
