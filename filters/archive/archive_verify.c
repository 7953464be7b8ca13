/*
 * archive_verify - check an archive store offline: the hash chain of
 *     every writer, every record, every checkpoint signature
 *
 * flt_archive_verify() lists the store's records (writers in name order,
 * each writer's records in the order the store keeps them) and, per
 * writer, reads each record back strictly (arc_record_parse: its own
 * hash, lengths, meta, the message's size and SHA-256), checks that its
 * prev hash is the hash of the record before it, that seqs follow one
 * another (a gap is a missing record unless a tombstone covers exactly
 * that range with the hashes on both sides; a seq lower than one already
 * seen is a reorder), and checks each checkpoint's Ed25519 signature over
 * its writer, seq, prev hash, time and count with the public key. What
 * the store itself found wrong while reading its files (a torn or garbled
 * frame, a missing segment) counts too. An altered record does not stop
 * the walk: the chain goes on from the hash stored in it, so one flipped
 * octet is one finding.
 *
 * Findings go into the report, first first, one line each naming the
 * record ("record node1/000000000000002a: altered (its hash does not
 * match) [node1/segment-000001 offset 81234]"); the library never
 * prints. flt_archive_status() says what the store holds per writer.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "filters/archive/archive_int.h"
#include "filters/archive/archive_remote.h"
#include "filters/archive/archive_spool.h"
#include "filters/filters.h"

#define FLT_ARCV_FINDINGS_MAX 50
#define FLT_ARCV_SEALED_MAX (ARC_BODY_MAX + ARC_META_MAX + 4096)

struct flt_arcv_names {
    char **v;
    size_t n, cap;
    int nomem;
};

static int
flt_arcv_name_fn(void *arg, const char *name)
{
    struct flt_arcv_names *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        char **grown = realloc(l->v, cap * sizeof(*grown));

        if (grown == NULL) {
            l->nomem = 1;
            return 1;
        }
        l->v = grown;
        l->cap = cap;
    }
    if ((l->v[l->n] = strdup(name)) == NULL) {
        l->nomem = 1;
        return 1;
    }
    l->n++;
    return 0;
}

static void
flt_arcv_names_free(struct flt_arcv_names *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static void flt_arcv_finding(struct flt_archive_report *r, const char *fmt,
                             ...) __attribute__((format(printf, 2, 3)));

static void
flt_arcv_finding(struct flt_archive_report *r, const char *fmt, ...)
{
    struct err e;
    va_list ap;

    if (r->problems++ >= FLT_ARCV_FINDINGS_MAX) {
        if (r->problems == FLT_ARCV_FINDINGS_MAX + 1)
            buf_puts(&r->text, "(more findings left out)\n", &e);
        return;
    }
    va_start(ap, fmt);
    if (buf_vprintf(&r->text, &e, fmt, ap) == 0)
        buf_putc(&r->text, '\n', &e);
    va_end(ap);
}

/* A gap in a writer's seqs, and a tombstone that may explain one. Both
 * are matched when the whole store has been read: a purge's tombstones
 * are in a writer of their own (WRITER~purge), read after WRITER. */
struct flt_arcv_gap {
    char writer[ARC_WRITER_MAX + 1];
    unsigned long long from, to;
    unsigned char before[ARC_HASH_LEN]; /* hash of the record before it */
    unsigned char after[ARC_HASH_LEN];  /* prev hash of the one after it */
    int before_known;
};

struct flt_arcv_ctx {
    struct flt_arcv_gap *gaps;
    size_t ngaps;
    struct arc_rec *tombs; /* parsed tombstones, kept whole */
    size_t ntombs;
};

struct flt_arcv_writer {
    char name[ARC_WRITER_MAX + 1];
    unsigned long long next;          /* the seq expected next */
    unsigned char prev[ARC_HASH_LEN]; /* the hash it must follow */
    int prev_known;
    struct flt_arcv_ctx *ctx;
};

static void
flt_arcv_gaps_check(struct flt_arcv_ctx *ctx, struct flt_archive_report *r)
{
    size_t i, j;

    for (i = 0; i < ctx->ngaps; i++) {
        const struct flt_arcv_gap *g = &ctx->gaps[i];
        char name[ARC_NAME_MAX + 1];
        int covered = 0;

        for (j = 0; j < ctx->ntombs && !covered; j++) {
            const struct arc_rec *t = &ctx->tombs[j];
            char tw[ARC_WRITER_MAX + 1];
            unsigned long long from;

            covered = arc_name_parse(t->x.ref, tw, &from) == 0 &&
                      strcmp(tw, g->writer) == 0 && from == g->from &&
                      t->x.to == g->to &&
                      memcmp(t->x.last_hash, g->after, ARC_HASH_LEN) == 0 &&
                      (!g->before_known ||
                       memcmp(t->x.prev_hash, g->before, ARC_HASH_LEN) == 0);
        }
        if (covered) {
            r->purged += g->to - g->from + 1;
            continue;
        }
        arc_name(name, g->writer, g->from);
        if (g->to == g->from)
            flt_arcv_finding(r, "record %s: missing", name);
        else
            flt_arcv_finding(r, "record %s: missing, and %llu more after it",
                             name, g->to - g->from);
    }
}

static void
flt_arcv_ctx_fini(struct flt_arcv_ctx *ctx)
{
    size_t i;

    for (i = 0; i < ctx->ntombs; i++)
        arc_rec_free(&ctx->tombs[i]);
    free(ctx->tombs);
    free(ctx->gaps);
    memset(ctx, 0, sizeof(*ctx));
}

static int
flt_arcv_checkpoint(const struct arc_rec *rec, EVP_PKEY *pub,
                    const char *key_id)
{
    char text[512];
    EVP_MD_CTX *ctx;
    int ok;

    if (strcmp(rec->x.key_id, key_id) != 0)
        return 0;
    arc_checkpoint_text(text, sizeof(text), rec->writer, rec->seq, rec->prev,
                        rec->meta.time, rec->x.count);
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
         EVP_DigestVerify(ctx, rec->x.sig, 64, (const unsigned char *)text,
                          strlen(text)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static long long
flt_arcv_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* flt_arcv_open - the store of value, for reading; a dir: store that is
 * not there is an error here, not an empty store to be made. */
static const struct cfg *flt_arcv_cfg_cur;

void
flt_archive_store_config(const struct cfg *c)
{
    flt_arcv_cfg_cur = c;
}

const struct cfg *
flt_arcv_cfg(void)
{
    return flt_arcv_cfg_cur;
}

static void *
flt_arcv_open(const char *value, const struct arc_store_ops **ops,
              struct err *e)
{
    const char *spec;
    struct stat sb;

    if ((*ops = flt_arc_store_ops(value, &spec, e)) == NULL)
        return NULL;
    if ((*ops)->list == NULL || (*ops)->get == NULL) {
        err_set(e, ERR_CONFIG, "store %s cannot be read back", value);
        return NULL;
    }
    if (*ops == &arc_store_dir && stat(spec, &sb) < 0) {
        err_sys(e, ERR_IO, "store %s", value);
        return NULL;
    }
    if (*ops != &arc_store_dir && flt_arcv_cfg_cur == NULL) {
        err_set(e, ERR_CONFIG,
                "store %s: its keys come from the archive stage that names "
                "it, and no stage of the chain does (give -c)",
                value);
        return NULL;
    }
    return (*ops)->open(spec, flt_arcv_cfg_cur, 0, e);
}

static void
flt_arcv_record(void *store, const struct arc_store_ops *ops, const char *name,
                struct flt_arcv_writer *w, EVP_PKEY *pub, const char *key_id,
                struct flt_archive_report *r, struct buf *b)
{
    char wname[ARC_WRITER_MAX + 1], where[200] = "", at[220] = "";
    unsigned long long seq;
    struct arc_rec rec;
    struct err e;
    int ok;

    if (arc_name_parse(name, wname, &seq) < 0) {
        flt_arcv_finding(r, "%s: not a record name", name);
        return;
    }
    if (ops == &arc_store_dir) {
        arc_dir_where(store, name, where, sizeof(where));
        if (where[0] != '\0')
            snprintf(at, sizeof(at), " [%s]", where);
    }
    r->records++;
    if (seq < w->next) {
        char after[ARC_NAME_MAX + 1];

        arc_name(after, w->name, w->next - 1);
        flt_arcv_finding(r, "record %s: out of order (found after %s)%s", name,
                         after, at);
        /* It fills the gap it left, if it is one of its own. */
        if (w->ctx->ngaps > 0 &&
            strcmp(w->ctx->gaps[w->ctx->ngaps - 1].writer, w->name) == 0 &&
            w->ctx->gaps[w->ctx->ngaps - 1].from == seq &&
            w->ctx->gaps[w->ctx->ngaps - 1].to == seq)
            w->ctx->ngaps--;
        return;
    }
    buf_reset(b);
    err_clear(&e);
    if (ops->get(store, name, b, &e) < 0) {
        if (strncmp(e.text, "record ", 7) == 0)
            flt_arcv_finding(r, "%s%s", e.text, at);
        else
            flt_arcv_finding(r, "record %s: %s%s", name, e.text, at);
        w->next = seq + 1;
        w->prev_known = 0;
        return;
    }
    ok = arc_record_parse((const unsigned char *)b->data, b->len, &rec, &e) ==
         0;
    if (ok && (rec.seq != seq || strcmp(rec.writer, wname) != 0)) {
        flt_arcv_finding(r, "record %s: holds record %s/%016llx%s", name,
                         rec.writer, rec.seq, at);
        arc_rec_free(&rec);
        return;
    }
    if (seq > w->next) {
        struct flt_arcv_ctx *ctx = w->ctx;
        struct flt_arcv_gap *grown =
            realloc(ctx->gaps, (ctx->ngaps + 1) * sizeof(*grown));

        if (grown != NULL) {
            ctx->gaps = grown;
            grown += ctx->ngaps;
            memset(grown, 0, sizeof(*grown));
            memcpy(grown->writer, w->name, sizeof(grown->writer));
            grown->from = w->next;
            grown->to = seq - 1;
            grown->before_known = w->prev_known;
            memcpy(grown->before, w->prev, ARC_HASH_LEN);
            /* The prev hash sits at the same place in any record. */
            if (b->len >= 16 + ARC_HASH_LEN)
                memcpy(grown->after, b->data + 16, ARC_HASH_LEN);
            ctx->ngaps++;
        }
    } else if (w->prev_known && b->len >= 16 + ARC_HASH_LEN &&
               memcmp(b->data + 16, w->prev, ARC_HASH_LEN) != 0) {
        flt_arcv_finding(r,
                         "record %s: does not follow the record before it "
                         "(its prev hash differs)%s",
                         name, at);
    }
    w->next = seq + 1;
    if (!ok) {
        flt_arcv_finding(r, "%s%s", e.text, at);
        arc_rec_free(&rec);
        /* Go on from the hash it says it has. */
        if (b->len >= ARC_HASH_LEN) {
            memcpy(w->prev, b->data + b->len - ARC_HASH_LEN, ARC_HASH_LEN);
            w->prev_known = 1;
        } else {
            w->prev_known = 0;
        }
        return;
    }
    memcpy(w->prev, rec.hash, ARC_HASH_LEN);
    w->prev_known = 1;
    switch (rec.kind) {
    case ARC_KIND_MESSAGE:
        r->messages++;
        if (rec.meta.encrypted_to != NULL)
            r->encrypted++;
        break;
    case ARC_KIND_OUTCOME:
        r->outcomes++;
        break;
    case ARC_KIND_CHECKPOINT:
        r->checkpoints++;
        if (rec.x.count != seq - 1)
            flt_arcv_finding(r,
                             "checkpoint %s: says %llu records before it, "
                             "its seq says %llu%s",
                             name, rec.x.count, seq - 1, at);
        else if (pub == NULL)
            r->unchecked++;
        else if (!flt_arcv_checkpoint(&rec, pub, key_id))
            flt_arcv_finding(r,
                             "checkpoint %s: signature does not verify with "
                             "key %s (signed by key %s)%s",
                             name, key_id, rec.x.key_id, at);
        break;
    case ARC_KIND_TOMBSTONE: {
        struct arc_rec *grown =
            realloc(w->ctx->tombs, (w->ctx->ntombs + 1) * sizeof(*grown));

        r->tombstones++;
        if (grown != NULL) {
            w->ctx->tombs = grown;
            grown[w->ctx->ntombs++] = rec;
            return; /* kept whole, freed with the context */
        }
        break;
    }
    }
    arc_rec_free(&rec);
}

/* flt_arcv_time - the time of record name, or -1 when it does not
 * read back (the walk then reports it). */
static long long
flt_arcv_time(void *store, const struct arc_store_ops *ops, const char *name,
              struct buf *b, enum arc_kind *kind)
{
    struct arc_rec rec;
    struct err e;
    long long t = -1;

    buf_reset(b);
    memset(&rec, 0, sizeof(rec));
    if (ops->get(store, name, b, &e) == 0 &&
        arc_record_parse((const unsigned char *)b->data, b->len, &rec, &e) ==
            0) {
        t = rec.meta.time;
        *kind = rec.kind;
    }
    arc_rec_free(&rec);
    return t;
}

/* flt_arcv_from - with --from: where the walk of the writer whose names
 * start at first begins: the last checkpoint before the first record at
 * or after from (found by bisection on the records' times, then back to
 * a checkpoint), whose signature vouches for the hash it follows; the
 * writer's first record when there is none. w is set up to follow that
 * checkpoint. A purge writer is walked whole. */
static size_t
flt_arcv_from(void *store, const struct arc_store_ops *ops,
              const struct flt_arcv_names *names, size_t first, long long from,
              struct flt_arcv_writer *w, struct flt_archive_report *r,
              struct buf *b)
{
    size_t lo = first, hi = first, k, wl = strlen(w->name);
    char wname[ARC_WRITER_MAX + 1];
    unsigned long long seq;
    enum arc_kind kind = ARC_KIND_MESSAGE;

    if (wl > strlen(ARC_PURGE_SUFFIX) &&
        strcmp(w->name + wl - strlen(ARC_PURGE_SUFFIX), ARC_PURGE_SUFFIX) == 0)
        return first;
    while (hi < names->n && arc_name_parse(names->v[hi], wname, &seq) == 0 &&
           strcmp(wname, w->name) == 0)
        hi++;
    /* The first record at or after from; one that does not read back
     * counts as late, so the walk reaches it. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        long long t = flt_arcv_time(store, ops, names->v[mid], b, &kind);

        if (t >= 0 && t < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (k = lo; k > first; k--) {
        if (flt_arcv_time(store, ops, names->v[k - 1], b, &kind) >= 0 &&
            kind == ARC_KIND_CHECKPOINT)
            break;
    }
    if (k == first)
        return first;
    k--;
    /* The checkpoint's own prev hash is what its signature covers. */
    if (arc_name_parse(names->v[k], wname, &seq) < 0 ||
        b->len < 16 + ARC_HASH_LEN)
        return first;
    w->next = seq;
    memcpy(w->prev, b->data + 16, ARC_HASH_LEN);
    w->prev_known = 1;
    r->skipped += k - first;
    return k;
}

int
flt_archive_verify(const char *store_value, const char *pubkey, long long from,
                   struct flt_archive_report *r, struct err *e)
{
    const struct arc_store_ops *ops;
    struct flt_arcv_names names = {NULL, 0, 0, 0};
    struct flt_arcv_ctx ctx;
    struct flt_arcv_writer w;
    char key_id[17] = "";
    EVP_PKEY *pub = NULL;
    long long t0 = flt_arcv_usec();
    void *store;
    struct buf b;
    size_t i;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    buf_init(&r->text, 1024 * 1024);
    memset(&w, 0, sizeof(w));
    memset(&ctx, 0, sizeof(ctx));
    w.ctx = &ctx;
    if (pubkey != NULL && flt_archive_key_load(pubkey, 0, &pub, key_id, e) < 0)
        return -1;
    if ((store = flt_arcv_open(store_value, &ops, e)) == NULL) {
        EVP_PKEY_free(pub);
        return -1;
    }
    buf_init(&b, FLT_ARCV_SEALED_MAX);
    if (ops->list(store, NULL, NULL, flt_arcv_name_fn, &names, e) < 0)
        goto out;
    if (names.nomem) {
        err_nomem(e);
        goto out;
    }
    if (ops == &arc_store_dir) {
        const char *p = arc_dir_problems(store);

        while (*p != '\0') {
            size_t n = strcspn(p, "\n");

            flt_arcv_finding(r, "%.*s", (int)n, p);
            p += n + (p[n] == '\n');
        }
    }
    for (i = 0; i < names.n; i++) {
        char wname[ARC_WRITER_MAX + 1];
        unsigned long long seq;

        if (arc_name_parse(names.v[i], wname, &seq) == 0 &&
            strcmp(wname, w.name) != 0) {
            memcpy(w.name, wname, sizeof(w.name));
            w.next = 1;
            memset(w.prev, 0, sizeof(w.prev));
            w.prev_known = 1;
            r->writers++;
            if (from > 0)
                i = flt_arcv_from(store, ops, &names, i, from, &w, r, &b);
        }
        flt_arcv_record(store, ops, names.v[i], &w, pub, key_id, r, &b);
    }
    flt_arcv_gaps_check(&ctx, r);
    rc = 0;
out:
    flt_arcv_ctx_fini(&ctx);
    r->seconds = (double)(flt_arcv_usec() - t0) / 1e6;
    buf_fini(&b);
    flt_arcv_names_free(&names);
    ops->close(store);
    EVP_PKEY_free(pub);
    return rc;
}

void
flt_archive_report_fini(struct flt_archive_report *r)
{
    buf_fini(&r->text);
}

/* flt_arcv_spool_status - the spool's backlog, for a stage with
 * required = no or a journal store: one line. */
static int
flt_arcv_spool_status(const char *store_value, struct buf *out, struct err *e)
{
    const struct cfg *c = flt_arcv_cfg_cur;
    char dir[4096];
    size_t count = 0;
    long long oldest = 0;
    struct err se;

    if (c == NULL ||
        (cfg_bool(c, "required") && strncmp(store_value, "smtp:", 5) != 0))
        return 0;
    if (flt_archive_spool_dir(c, store_value, dir, sizeof(dir)) < 0)
        return err_set(e, ERR_CONFIG, "spool_directory: too long");
    err_clear(&se);
    if (access(dir, F_OK) < 0 && errno == ENOENT)
        return buf_printf(out, e,
                          "spool %s: not made yet, 0 records waiting\n", dir);
    if (arc_spool_scan(dir, &count, &oldest, &se) < 0)
        return buf_printf(out, e, "spool %s: cannot be read: %s\n", dir,
                          se.text);
    return buf_printf(out, e,
                      "spool %s: %zu records waiting, the oldest %lld s old\n",
                      dir, count, oldest);
}

int
flt_archive_status(const char *store_value, struct buf *out, struct err *e)
{
    const struct arc_store_ops *ops;
    struct flt_arcv_names names = {NULL, 0, 0, 0};
    void *store;
    struct buf b;
    size_t i, j;
    int rc = -1;

    size_t spooled = out->len;

    if (flt_arcv_spool_status(store_value, out, e) < 0)
        return -1;
    spooled = out->len > spooled; /* a spool line: the store may be down */
    if (strncmp(store_value, "smtp:", 5) == 0)
        return buf_printf(out, e,
                          "store %s: a journal store, nothing to list\n",
                          store_value);
    if ((store = flt_arcv_open(store_value, &ops, e)) == NULL) {
        if (spooled && e->code != ERR_NOMEM)
            return buf_printf(out, e, "store %s: cannot be read now: %s\n",
                              store_value, e->text);
        return -1;
    }
    buf_init(&b, FLT_ARCV_SEALED_MAX);
    if (ops->list(store, NULL, NULL, flt_arcv_name_fn, &names, e) < 0) {
        if (spooled && e->code != ERR_NOMEM) {
            char text[sizeof(e->text)];

            snprintf(text, sizeof(text), "%s", e->text);
            err_clear(e);
            rc = buf_printf(out, e, "store %s: cannot be read now: %s\n",
                            store_value, text);
        }
        goto out;
    }
    if (names.nomem) {
        err_nomem(e);
        goto out;
    }
    if (buf_printf(out, e, "store %s: %zu records\n", store_value, names.n) <
        0)
        goto out;
    for (i = 0; i < names.n; i = j) {
        char w[ARC_WRITER_MAX + 1], w2[ARC_WRITER_MAX + 1], when[32] = "?";
        unsigned long long seq;
        struct arc_rec rec;
        struct err pe;

        memset(&rec, 0, sizeof(rec));
        if (arc_name_parse(names.v[i], w, &seq) < 0) {
            j = i + 1;
            continue;
        }
        for (j = i + 1; j < names.n; j++)
            if (arc_name_parse(names.v[j], w2, &seq) < 0 || strcmp(w, w2) != 0)
                break;
        buf_reset(&b);
        err_clear(&pe);
        if (ops->get(store, names.v[j - 1], &b, &pe) == 0 &&
            arc_record_parse((const unsigned char *)b.data, b.len, &rec,
                             &pe) == 0) {
            time_t t = (time_t)rec.meta.time;
            struct tm tm;

            if (gmtime_r(&t, &tm) != NULL)
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            rc = buf_printf(
                out, e, "writer %s: %zu records, last %s (%s) %s\n", w, j - i,
                names.v[j - 1], arc_kind_name(rec.kind), when);
        } else {
            rc = buf_printf(out, e, "writer %s: %zu records, last %s: %s\n", w,
                            j - i, names.v[j - 1], pe.text);
        }
        arc_rec_free(&rec);
        if (rc < 0)
            goto out;
    }
    if (ops == &arc_store_dir && arc_dir_problems(store)[0] != '\0' &&
        buf_printf(out, e, "problems seen reading the store:\n%s",
                   arc_dir_problems(store)) < 0)
        goto out;
    rc = 0;
out:
    buf_fini(&b);
    flt_arcv_names_free(&names);
    ops->close(store);
    return rc;
}

int
flt_archive_walk(const char *store_value, const char *only,
                 int (*fn)(void *arg, const struct flt_archive_entry *ent),
                 void *arg, struct err *e)
{
    const struct arc_store_ops *ops;
    struct flt_arcv_names names = {NULL, 0, 0, 0};
    void *store;
    struct buf b;
    size_t i;
    int rc = -1;

    if ((store = flt_arcv_open(store_value, &ops, e)) == NULL)
        return -1;
    buf_init(&b, FLT_ARCV_SEALED_MAX);
    if (only != NULL)
        rc = flt_arcv_name_fn(&names, only);
    else if (ops->list(store, NULL, NULL, flt_arcv_name_fn, &names, e) < 0)
        goto out;
    if (names.nomem) {
        err_nomem(e);
        goto out;
    }
    for (i = 0; i < names.n; i++) {
        struct flt_archive_entry ent;
        struct arc_rec rec;

        buf_reset(&b);
        memset(&rec, 0, sizeof(rec));
        if (ops->get(store, names.v[i], &b, e) < 0 ||
            arc_record_parse((const unsigned char *)b.data, b.len, &rec, e) <
                0) {
            arc_rec_free(&rec);
            rc = -1;
            goto out;
        }
        memset(&ent, 0, sizeof(ent));
        ent.name = names.v[i];
        ent.kind = arc_kind_name(rec.kind);
        ent.meta = &rec.meta;
        ent.ref = rec.x.ref;
        ent.verdict = rec.x.verdict;
        ent.data = rec.msg.data;
        ent.len = rec.msg.len;
        rc = fn(arg, &ent);
        arc_rec_free(&rec);
        if (rc != 0)
            break;
    }
    rc = rc < 0 ? -1 : rc;
out:
    buf_fini(&b);
    flt_arcv_names_free(&names);
    ops->close(store);
    return rc;
}

/* Purge past retention (dir: stores). */
struct flt_arcp {
    const struct arc_store_ops *ops;
    void *store;
    const char *writer;
    long long cutoff;
    struct arc_dir_seg *segs;
    size_t nsegs;
    struct flt_arcv_ctx *ctx; /* the tombstones already written */
    /* The purge writer's chain. */
    char pw[ARC_WRITER_MAX + 1];
    unsigned long long pseq;
    unsigned char pprev[ARC_HASH_LEN];
};

static int
flt_arcp_seg_fn(void *arg, const struct arc_dir_seg *seg)
{
    struct flt_arcp *p = arg;
    struct arc_dir_seg *grown =
        realloc(p->segs, (p->nsegs + 1) * sizeof(*grown));

    if (grown == NULL)
        return -1;
    p->segs = grown;
    p->segs[p->nsegs++] = *seg;
    return 0;
}

/* flt_arcp_read - record name of the store, parsed, into rec. */
static int
flt_arcp_read(struct flt_arcp *p, const char *writer, unsigned long long seq,
              struct buf *b, struct arc_rec *rec, struct err *e)
{
    char name[ARC_NAME_MAX + 1];

    arc_name(name, writer, seq);
    buf_reset(b);
    memset(rec, 0, sizeof(*rec));
    if (p->ops->get(p->store, name, b, e) < 0)
        return -1;
    return arc_record_parse((const unsigned char *)b->data, b->len, rec, e);
}

/* flt_arcp_segment - tombstone segment seg of p->writer, then drop it.
 * 1 when it was purged, 0 when it is not past retention yet. */
static int
flt_arcp_segment(struct flt_arcp *p, const struct arc_dir_seg *seg,
                 struct buf *b, struct err *e)
{
    unsigned char before[ARC_HASH_LEN], last[ARC_HASH_LEN];
    char ref[ARC_NAME_MAX + 1];
    struct arc_rec rec;
    size_t i;
    int done = 0;

    if (flt_arcp_read(p, p->writer, seg->last, b, &rec, e) < 0) {
        arc_rec_free(&rec);
        return -1;
    }
    if (rec.meta.time >= p->cutoff) {
        arc_rec_free(&rec);
        return 0;
    }
    memcpy(last, rec.hash, ARC_HASH_LEN);
    arc_rec_free(&rec);
    if (flt_arcp_read(p, p->writer, seg->first, b, &rec, e) < 0) {
        arc_rec_free(&rec);
        return -1;
    }
    memcpy(before, rec.prev, ARC_HASH_LEN);
    arc_rec_free(&rec);
    arc_name(ref, p->writer, seg->first);
    /* A purge cut short after its tombstone only has the unlink left. */
    for (i = 0; i < p->ctx->ntombs && !done; i++)
        done = strcmp(p->ctx->tombs[i].x.ref, ref) == 0 &&
               p->ctx->tombs[i].x.to == seg->last;
    if (!done) {
        unsigned char hash[ARC_HASH_LEN];
        char name[ARC_NAME_MAX + 1];
        struct arc_meta meta;
        struct arc_extra x;
        struct arc_seal_in in;
        struct arc_item it;
        struct buf sealed;
        int rc;

        memset(&meta, 0, sizeof(meta));
        memset(&x, 0, sizeof(x));
        memset(&in, 0, sizeof(in));
        meta.time = (long long)time(NULL);
        x.ref = ref;
        x.to = seg->last;
        x.prev_hash = before;
        x.last_hash = last;
        in.kind = ARC_KIND_TOMBSTONE;
        in.writer = p->pw;
        in.seq = p->pseq + 1;
        in.prev = p->pprev;
        in.meta = &meta;
        in.x = &x;
        buf_init(&sealed, 0);
        if (arc_record_seal(&in, &sealed, hash, e) < 0) {
            buf_fini(&sealed);
            return -1;
        }
        arc_name(name, p->pw, in.seq);
        memset(&it, 0, sizeof(it));
        it.name = name;
        it.sealed = (const unsigned char *)sealed.data;
        it.sealed_len = sealed.len;
        rc = p->ops->put(p->store, &it, e);
        buf_fini(&sealed);
        if (rc < 0)
            return -1;
        p->pseq = in.seq;
        memcpy(p->pprev, hash, ARC_HASH_LEN);
    }
    if (arc_dir_drop_segment(p->store, p->writer, seg->segno, e) < 0)
        return -1;
    return 1;
}

static int
flt_arcp_last_fn(void *arg, const char *name)
{
    char *last = arg;

    snprintf(last, ARC_NAME_MAX + 1, "%s", name);
    return 0;
}

int
flt_archive_purge(const char *store_value, const char *retention,
                  long long now, struct flt_archive_purge_report *r,
                  struct err *e)
{
    struct flt_arcv_names names = {NULL, 0, 0, 0};
    struct flt_arcv_ctx ctx;
    struct flt_arcp p;
    long long keep;
    struct buf b;
    size_t i, j;
    int rc = -1;

    memset(r, 0, sizeof(*r));
    memset(&ctx, 0, sizeof(ctx));
    memset(&p, 0, sizeof(p));
    if (retention == NULL)
        return err_set(e, ERR_CONFIG,
                       "no retention: the stage keeps records for ever "
                       "(set retention, or give --retention)");
    if (flt_arc_retention(retention, &keep) < 0)
        return err_set(e, ERR_CONFIG,
                       "retention %s: give a number and a unit: 90d, 12w, "
                       "36m or 7y",
                       retention);
    p.cutoff = now - keep;
    p.ctx = &ctx;
    if ((p.store = flt_arcv_open(store_value, &p.ops, e)) == NULL)
        return -1;
    if (p.ops == &arc_store_s3 && arc_s3_keeps_all(p.store)) {
        err_set(e, ERR_CONFIG,
                "%s: s3_object_lock = yes: every record is kept until its "
                "retain-until date, nothing is purged",
                store_value);
        goto out;
    }
    if (p.ops != &arc_store_dir) {
        err_set(e, ERR_CONFIG, "%s: purge is built for dir: stores only",
                store_value);
        goto out;
    }
    buf_init(&b, FLT_ARCV_SEALED_MAX);
    if (p.ops->list(p.store, NULL, NULL, flt_arcv_name_fn, &names, e) < 0)
        goto outb;
    if (names.nomem) {
        err_nomem(e);
        goto outb;
    }
    /* The tombstones already written, so a purge cut short is finished
     * without a second one. */
    for (i = 0; i < names.n; i++) {
        struct arc_rec rec;
        char w[ARC_WRITER_MAX + 1];
        unsigned long long seq;
        size_t wl;

        if (arc_name_parse(names.v[i], w, &seq) < 0)
            continue;
        wl = strlen(w);
        if (wl <= strlen(ARC_PURGE_SUFFIX) ||
            strcmp(w + wl - strlen(ARC_PURGE_SUFFIX), ARC_PURGE_SUFFIX) != 0)
            continue;
        if (flt_arcp_read(&p, w, seq, &b, &rec, e) < 0) {
            arc_rec_free(&rec);
            goto outb;
        }
        if (rec.kind == ARC_KIND_TOMBSTONE) {
            struct arc_rec *grown =
                realloc(ctx.tombs, (ctx.ntombs + 1) * sizeof(*grown));

            if (grown == NULL) {
                arc_rec_free(&rec);
                err_nomem(e);
                goto outb;
            }
            ctx.tombs = grown;
            ctx.tombs[ctx.ntombs++] = rec;
        } else {
            arc_rec_free(&rec);
        }
    }
    for (i = 0; i < names.n; i = j) {
        char w[ARC_WRITER_MAX + 1], w2[ARC_WRITER_MAX + 1],
            last[ARC_NAME_MAX + 1];
        unsigned long long seq;
        size_t k, wl;
        int one;

        if (arc_name_parse(names.v[i], w, &seq) < 0) {
            j = i + 1;
            continue;
        }
        for (j = i + 1; j < names.n; j++)
            if (arc_name_parse(names.v[j], w2, &seq) < 0 || strcmp(w, w2) != 0)
                break;
        wl = strlen(w);
        if ((wl > strlen(ARC_PURGE_SUFFIX) &&
             strcmp(w + wl - strlen(ARC_PURGE_SUFFIX), ARC_PURGE_SUFFIX) ==
                 0) ||
            wl + strlen(ARC_PURGE_SUFFIX) > ARC_WRITER_MAX)
            continue;
        p.writer = w;
        /* wl + the suffix fit: checked above. */
        memcpy(p.pw, w, wl);
        memcpy(p.pw + wl, ARC_PURGE_SUFFIX, sizeof(ARC_PURGE_SUFFIX));
        /* The purge writer's chain goes on from its last record. */
        last[0] = '\0';
        p.pseq = 0;
        memset(p.pprev, 0, sizeof(p.pprev));
        if (p.ops->list(p.store, p.pw, NULL, flt_arcp_last_fn, last, e) < 0)
            goto outb;
        if (last[0] != '\0') {
            struct arc_rec rec;
            char lw[ARC_WRITER_MAX + 1];
            unsigned long long lseq;

            if (arc_name_parse(last, lw, &lseq) < 0 ||
                flt_arcp_read(&p, lw, lseq, &b, &rec, e) < 0) {
                arc_rec_free(&rec);
                goto outb;
            }
            p.pseq = rec.seq;
            memcpy(p.pprev, rec.hash, ARC_HASH_LEN);
            arc_rec_free(&rec);
        }
        free(p.segs);
        p.segs = NULL;
        p.nsegs = 0;
        if (arc_dir_segments(p.store, w, flt_arcp_seg_fn, &p, e) < 0) {
            if (e->code == ERR_NONE)
                err_nomem(e);
            goto outb;
        }
        /* Oldest first, never the segment being written, and only a
         * run from the start: the chain that is left begins right after
         * the tombstones. */
        for (k = 0; k < p.nsegs && !p.segs[k].is_last; k++) {
            if ((one = flt_arcp_segment(&p, &p.segs[k], &b, e)) < 0)
                goto outb;
            if (one == 0)
                break;
            r->segments++;
            r->records += p.segs[k].count;
        }
        r->writers++;
    }
    rc = 0;
outb:
    buf_fini(&b);
out:
    free(p.segs);
    flt_arcv_ctx_fini(&ctx);
    flt_arcv_names_free(&names);
    p.ops->close(p.store);
    return rc;
}
