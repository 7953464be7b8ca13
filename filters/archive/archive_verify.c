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

#include <openssl/evp.h>

#include "filters/archive/archive_int.h"
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

/* A gap in a writer's seqs, and a tombstone that may explain one. */
struct flt_arcv_gap {
    unsigned long long from, to;
    unsigned char before[ARC_HASH_LEN]; /* hash of the record before it */
    unsigned char after[ARC_HASH_LEN];  /* prev hash of the one after it */
    int before_known;
};

struct flt_arcv_writer {
    char name[ARC_WRITER_MAX + 1];
    unsigned long long next;          /* the seq expected next */
    unsigned char prev[ARC_HASH_LEN]; /* the hash it must follow */
    int prev_known;
    struct flt_arcv_gap *gaps;
    size_t ngaps;
    struct arc_rec *tombs; /* parsed tombstones, kept whole */
    size_t ntombs;
};

static void
flt_arcv_writer_end(struct flt_arcv_writer *w, struct flt_archive_report *r)
{
    size_t i, j;

    for (i = 0; i < w->ngaps; i++) {
        const struct flt_arcv_gap *g = &w->gaps[i];
        char name[ARC_NAME_MAX + 1];
        int covered = 0;

        for (j = 0; j < w->ntombs && !covered; j++) {
            const struct arc_rec *t = &w->tombs[j];
            char tw[ARC_WRITER_MAX + 1];
            unsigned long long from;

            covered = arc_name_parse(t->x.ref, tw, &from) == 0 &&
                      from == g->from && t->x.to == g->to &&
                      memcmp(t->x.last_hash, g->after, ARC_HASH_LEN) == 0 &&
                      (!g->before_known ||
                       memcmp(t->x.prev_hash, g->before, ARC_HASH_LEN) == 0);
        }
        if (covered)
            continue;
        arc_name(name, w->name, g->from);
        if (g->to == g->from)
            flt_arcv_finding(r, "record %s: missing", name);
        else
            flt_arcv_finding(r, "record %s: missing, and %llu more after it",
                             name, g->to - g->from);
    }
    for (i = 0; i < w->ntombs; i++)
        arc_rec_free(&w->tombs[i]);
    free(w->tombs);
    free(w->gaps);
    memset(w, 0, sizeof(*w));
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
    return (*ops)->open(spec, NULL, 0, e);
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
        if (w->ngaps > 0 && w->gaps[w->ngaps - 1].from == seq &&
            w->gaps[w->ngaps - 1].to == seq)
            w->ngaps--;
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
        struct flt_arcv_gap *grown =
            realloc(w->gaps, (w->ngaps + 1) * sizeof(*grown));

        if (grown != NULL) {
            w->gaps = grown;
            grown[w->ngaps].from = w->next;
            grown[w->ngaps].to = seq - 1;
            grown[w->ngaps].before_known = w->prev_known;
            memcpy(grown[w->ngaps].before, w->prev, ARC_HASH_LEN);
            /* The prev hash sits at the same place in any record. */
            if (b->len >= 16 + ARC_HASH_LEN)
                memcpy(grown[w->ngaps].after, b->data + 16, ARC_HASH_LEN);
            w->ngaps++;
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
            realloc(w->tombs, (w->ntombs + 1) * sizeof(*grown));

        r->tombstones++;
        if (grown != NULL) {
            w->tombs = grown;
            grown[w->ntombs++] = rec;
            return; /* kept whole, freed at the writer's end */
        }
        break;
    }
    }
    arc_rec_free(&rec);
}

int
flt_archive_verify(const char *store_value, const char *pubkey,
                   struct flt_archive_report *r, struct err *e)
{
    const struct arc_store_ops *ops;
    struct flt_arcv_names names = {NULL, 0, 0, 0};
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
            if (w.name[0] != '\0')
                flt_arcv_writer_end(&w, r);
            snprintf(w.name, sizeof(w.name), "%s", wname);
            w.next = 1;
            memset(w.prev, 0, sizeof(w.prev));
            w.prev_known = 1;
            r->writers++;
        }
        flt_arcv_record(store, ops, names.v[i], &w, pub, key_id, r, &b);
    }
    if (w.name[0] != '\0')
        flt_arcv_writer_end(&w, r);
    rc = 0;
out:
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

int
flt_archive_status(const char *store_value, struct buf *out, struct err *e)
{
    const struct arc_store_ops *ops;
    struct flt_arcv_names names = {NULL, 0, 0, 0};
    void *store;
    struct buf b;
    size_t i, j;
    int rc = -1;

    if ((store = flt_arcv_open(store_value, &ops, e)) == NULL)
        return -1;
    buf_init(&b, FLT_ARCV_SEALED_MAX);
    if (ops->list(store, NULL, NULL, flt_arcv_name_fn, &names, e) < 0)
        goto out;
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
    rc = rc < 0 ? -1 : 0;
out:
    buf_fini(&b);
    flt_arcv_names_free(&names);
    ops->close(store);
    return rc;
}
