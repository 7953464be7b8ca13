/*
 * archive - the compliance archive stage: every message that passes, as
 *     it stands at this point of the chain, in a hash-chained store
 *
 * Configuration (chain.d):
 *     store = dir:/var/lib/relaychain/archive
 *     required = yes, archive_node (default: the host name),
 *     checkpoint_key (Ed25519 PEM), checkpoint_every, checkpoint_interval,
 *     retention, compression_level, dir_segment_size, encrypt_to,
 *     pgp_home, smime_ca_file
 *
 * Its place decides what is kept: first in the chain, the message as
 * received; last (after dkim), as sent. Two archive stages of one chain
 * share their store (each record names its point, the instance name).
 * The stage declares no edits, so it may stand after the signing stage.
 *
 * run() seals one message record (archive_record.c): the message octets
 * as they are now, the envelope with every recipient (Bcc included), the
 * client, the authenticated user, Message-ID, Subject and the verdicts of
 * the stages before it (msg_trail), and hands it to the store; it returns
 * continue only once the store says the record is durable, so 250 is
 * never sent for mail whose archive copy could still be lost. A store
 * failure is a stage error: tempfail (on_error). A stage after it that
 * refuses the message is recorded too: done() appends an outcome record
 * naming the message record and the final verdict.
 *
 * The log. Each (store, archive_node) pair has one log in the process,
 * shared by every archive stage naming it, in every chain a reload keeps
 * alive (refcounted; the list of logs is the one mutable global here,
 * under its own mutex, because two chains of one process must not fork a
 * writer's hash chain). A log holds the writer's seq and the hash of its
 * last record, read back from the store when the log is opened, and
 * appends under its mutex, so records get consecutive seqs in chain
 * order. The meta lines and the compression are made before the mutex is
 * taken; under it only the header, one copy and the record hash. With
 * the dir store the fdatasync runs after the mutex is let go and serves
 * every record appended meanwhile (group commit). Every
 * checkpoint_every records, or at the first record after
 * checkpoint_interval, and when the last stage using the log goes, the
 * log appends a checkpoint signed with checkpoint_key.
 *
 * Stores: dir: (archive_dir.c), s3:// (archive_s3.c) and smtp:
 * journaling (archive_journal.c). With required = no, and always for
 * smtp:, the log hands each sealed record (checkpoints included) to a
 * spool (archive_spool.c) instead of the store: durable there before
 * run() returns (appended under the log's mutex, fsynced outside it with
 * the records of other threads: the spool's group commit), shipped by
 * the spool's thread. At open the log takes the spool's lock (one
 * process a spool) and continues from the newest of the store's and the
 * spool's last record, so a restart with a backlog neither forks the
 * chain nor reuses a seq; with the store down then, from the spool's
 * alone, and not at all when the spool knows nothing of the writer.
 *
 * encrypt_to (archive_crypt.c, the encrypt stage's engines): each
 * message record's body is encrypted, after compression and outside the
 * log's mutex, to the OpenPGP key or S/MIME certificate; the key is
 * checked at load and again per record, and a failure tempfails the
 * message. The meta stays in clear (archive_int.h says why). A journal
 * store (smtp:) shows the message to a mailbox, so encrypt_to is
 * refused with it. retention is what "relaychain archive purge"
 * applies.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "filters/archive/archive_int.h"
#include "filters/archive/archive_remote.h"
#include "filters/archive/archive_spool.h"
#include "filters/filters.h"
#include "util/log.h"

#define FLT_ARC_SEALED_MAX (ARC_BODY_MAX + ARC_META_MAX + 4096)

static const struct cfg_option flt_arc_options[] = {
    {"store", CFG_STRING, NULL,
     "where the records go: dir:/PATH (append-only segment files on a "
     "local file system), s3://BUCKET/PREFIX (one object a record), "
     "smtp:[HOST]:PORT (a journal report a message, always through the "
     "spool)",
     NULL, 0, 0, CFG_REQUIRED},
    {"required", CFG_BOOL, "yes",
     "yes: a message is acknowledged only once its archive copy is "
     "durable, and a store failure tempfails it; no: copies go through a "
     "local durable spool and are shipped in the background",
     NULL, 0, 0, 0},
    {"spool_directory", CFG_STRING, ARC_SPOOL_DEFAULT_DIR,
     "required = no and smtp: stores: where the records wait, in one "
     "directory a store (SCHEME-HASH) made under this one",
     NULL, 0, 0, 0},
    {"archive_node", CFG_STRING, NULL,
     "this node's name in the store, the writer of its hash chain "
     "(default: the host name); printable, no \"/\"",
     NULL, 0, 0, 0},
    {"checkpoint_key", CFG_PATH, NULL,
     "Ed25519 private key (PEM, openssl genpkey -algorithm ed25519) that "
     "signs the checkpoints; unset: no checkpoints",
     NULL, 0, 0, 0},
    {"checkpoint_every", CFG_INT, "1000",
     "write a signed checkpoint after this many records", NULL, 1, 100000000,
     0},
    {"checkpoint_interval", CFG_TIME, "5m",
     "and at the first record once this long has passed since the last one",
     NULL, 1000, 366LL * 24 * 3600 * 1000, 0},
    {"retention", CFG_STRING, NULL,
     "how long records are kept: 7y, 90d, 12w, 36m (unset: for ever); "
     "relaychain archive purge drops older segments, leaving tombstones",
     NULL, 0, 0, 0},
    {"compression_level", CFG_INT, "3", "zstd level of the archived message",
     NULL, 1, 19, 0},
    {"dir_segment_size", CFG_SIZE, "64m",
     "dir store: begin a new segment file at this size", NULL, 64 * 1024,
     1024LL * 1024 * 1024, 0},
    {"encrypt_to", CFG_STRING, NULL,
     "encrypt each message record's body (the zstd frame) to one key: "
     "pgp:FINGERPRINT or pgp:ADDRESS (from pgp_home), or "
     "smime:/PATH/cert.pem; the envelope, Subject and hashes stay in "
     "clear for search and verify. A key that cannot encrypt is refused "
     "at load; a failure at run time tempfails the message",
     NULL, 0, 0, 0},
    {"pgp_home", CFG_PATH, NULL,
     "encrypt_to = pgp:...: the GnuPG home holding the key (default: "
     "GnuPG's own, $GNUPGHOME or ~/.gnupg)",
     NULL, 0, 0, 0},
    {"smime_ca_file", CFG_PATH, NULL,
     "encrypt_to = smime:...: CA certificates (PEM) the certificate must "
     "chain to; unset: its dates and key usage are checked only",
     NULL, 0, 0, 0},
    /* ---- the remote stores' own keys (archive_remote.h) */
    ARC_S3_OPTION_ENTRIES ARC_JOURNAL_OPTION_ENTRIES CFG_OPTION_END,
};

/* The stores this build has, by scheme. */
static const struct arc_store_ops *const flt_arc_stores[] = {
    &arc_store_dir,
    &arc_store_s3,
    &arc_store_smtp,
    NULL,
};

struct flt_arc_log {
    struct flt_arc_log *next;
    char *spec; /* the store value, "dir:/path" */
    char writer[ARC_WRITER_MAX + 1];
    unsigned refs;
    const struct arc_store_ops *ops;
    void *store;
    struct arc_spool *spool; /* required = no, smtp:: records go here */
    int spool_lock;          /* its .lock, flocked; -1: none */
    pthread_mutex_t mu;
    unsigned long long seq;           /* of the last record, 0: none */
    unsigned char prev[ARC_HASH_LEN]; /* its hash */
    unsigned long long since;         /* records since the last checkpoint */
    long long last_ckpt;              /* time() of the last checkpoint */
    /* What the last stage to go signs its final checkpoint with. */
    EVP_PKEY *key;
    char key_id[17];
};

static pthread_mutex_t flt_arc_logs_mu = PTHREAD_MUTEX_INITIALIZER;
static struct flt_arc_log *flt_arc_logs;

struct flt_arc {
    struct flt_arc_log *log;
    EVP_PKEY *key; /* NULL: no checkpoints */
    char key_id[17];
    long long every;
    long long interval; /* seconds */
    int level;
    struct arc_crypt *crypt; /* encrypt_to; NULL: records in clear */
};

/* flt_arc_store_ops - the ops for a store value, and its spec after the
 * scheme. */
const struct arc_store_ops *
flt_arc_store_ops(const char *value, const char **spec, struct err *e)
{
    const char *colon = strchr(value, ':');
    size_t i, n;

    if (colon == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: give scheme:place, as dir:/var/lib/"
                       "relaychain/archive",
                       value),
               NULL;
    n = (size_t)(colon - value);
    for (i = 0; flt_arc_stores[i] != NULL; i++)
        if (strlen(flt_arc_stores[i]->scheme) == n &&
            strncmp(flt_arc_stores[i]->scheme, value, n) == 0) {
            *spec = colon + 1;
            return flt_arc_stores[i];
        }
    err_set(e, ERR_CONFIG, "%.*s: unknown store scheme (known: dir, s3, smtp)",
            (int)n, value);
    return NULL;
}

/* flt_arc_retention - "7y", "90d", "12w", "36m" (months) in seconds. */
int
flt_arc_retention(const char *s, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v <= 0 || v > 1000 || end[1] != '\0')
        return -1;
    switch (*end) {
    case 'd':
        *out = v * 86400;
        return 0;
    case 'w':
        *out = v * 7 * 86400;
        return 0;
    case 'm':
        *out = v * 31 * 86400;
        return 0;
    case 'y':
        *out = v * 366 * 86400;
        return 0;
    }
    return -1;
}

int
flt_archive_key_load(const char *path, int private_half, EVP_PKEY **out,
                     char key_id[17], struct err *e)
{
    unsigned char raw[32], sum[ARC_HASH_LEN];
    size_t rawlen = sizeof(raw);
    unsigned int sumlen = 0;
    struct stat sb;
    EVP_PKEY *k;
    FILE *fp;

    if ((fp = fopen(path, "r")) == NULL)
        return err_sys(e, ERR_CONFIG, "%s", path);
    /* A signing key others may read signs for anybody. */
    if (private_half &&
        (fstat(fileno(fp), &sb) < 0 ||
         cfg_secret_check(path, &sb, S_IRWXO, "the checkpoint signing key",
                          e) < 0)) {
        if (e->code == ERR_NONE)
            err_sys(e, ERR_CONFIG, "%s", path);
        fclose(fp);
        return -1;
    }
    k = private_half ? PEM_read_PrivateKey(fp, NULL, NULL, NULL)
                     : PEM_read_PUBKEY(fp, NULL, NULL, NULL);
    if (k == NULL && !private_half) {
        /* An auditor may be handed the private key's file too. */
        rewind(fp);
        k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    }
    fclose(fp);
    if (k == NULL)
        return err_set(e, ERR_CONFIG, "%s: not a PEM %s key", path,
                       private_half ? "private" : "public");
    if (EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        return err_set(e, ERR_CONFIG,
                       "%s: not an Ed25519 key (make one with openssl genpkey "
                       "-algorithm ed25519)",
                       path);
    }
    if (EVP_PKEY_get_raw_public_key(k, raw, &rawlen) != 1 || rawlen != 32 ||
        EVP_Digest(raw, rawlen, sum, &sumlen, EVP_sha256(), NULL) != 1) {
        EVP_PKEY_free(k);
        return err_set(e, ERR_LIB, "%s: cannot read its public half", path);
    }
    arc_hex(key_id, sum, 8);
    *out = k;
    return 0;
}

/* flt_arc_log_recover - seq and hash of the writer's last record. */
struct flt_arc_last {
    char name[ARC_NAME_MAX + 1];
};

static int
flt_arc_last_fn(void *arg, const char *name)
{
    struct flt_arc_last *l = arg;

    snprintf(l->name, sizeof(l->name), "%s", name);
    return 0;
}

static int
flt_arc_log_recover(struct flt_arc_log *lg, struct err *e)
{
    struct flt_arc_last last = {""};
    struct arc_rec r;
    struct buf b;
    int rc;

    if (lg->ops->list == NULL || lg->ops->get == NULL)
        return 0;
    if (lg->ops->list(lg->store, lg->writer, NULL, flt_arc_last_fn, &last, e) <
        0)
        return -1;
    if (last.name[0] == '\0')
        return 0;
    buf_init(&b, FLT_ARC_SEALED_MAX);
    rc = lg->ops->get(lg->store, last.name, &b, e);
    if (rc == 0 && (rc = arc_record_parse((const unsigned char *)b.data, b.len,
                                          &r, e)) == 0) {
        lg->seq = r.seq;
        memcpy(lg->prev, r.hash, ARC_HASH_LEN);
        lg->last_ckpt = r.kind == ARC_KIND_CHECKPOINT ? r.meta.time : 0;
    }
    if (rc < 0)
        err_prefix(e,
                   "archive %s: the writer's last record does not read back "
                   "(run relaychain archive verify)",
                   lg->spec);
    arc_rec_free(&r);
    buf_fini(&b);
    return rc;
}

int
flt_archive_spool_dir(const struct cfg *c, const char *store, char *out,
                      size_t n)
{
    const char *base = cfg_str(c, "spool_directory");
    unsigned char sum[ARC_HASH_LEN];
    unsigned int sumlen = 0;
    char hex[17];
    size_t sl = strcspn(store, ":");
    int w;

    if (EVP_Digest(store, strlen(store), sum, &sumlen, EVP_sha256(), NULL) !=
        1)
        return -1;
    arc_hex(hex, sum, 8);
    w = snprintf(out, n, "%s/%.*s-%s", base, (int)(sl < 8 ? sl : 8), store,
                 hex);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* flt_arc_log_recover_spool - with a spool, the writer's newest record may
 * wait there, not yet in the store: continue from the newest of both. */
static int
flt_arc_log_recover_spool(struct flt_arc_log *lg, const char *dir,
                          struct err *e)
{
    struct arc_rec r;
    struct buf b;
    int rc;

    buf_init(&b, FLT_ARC_SEALED_MAX);
    memset(&r, 0, sizeof(r));
    rc = arc_spool_last(dir, lg->writer, &b, e);
    if (rc == 0 && b.len > 0 &&
        (rc = arc_record_parse((const unsigned char *)b.data, b.len, &r, e)) ==
            0 &&
        r.seq > lg->seq) {
        lg->seq = r.seq;
        memcpy(lg->prev, r.hash, ARC_HASH_LEN);
        lg->last_ckpt = r.kind == ARC_KIND_CHECKPOINT ? r.meta.time : 0;
    }
    if (rc < 0)
        err_prefix(e, "archive %s: the writer's last spooled record",
                   lg->spec);
    arc_rec_free(&r);
    buf_fini(&b);
    return rc;
}

/* flt_arc_log_spool - the spool's directory into sdir (its parent made
 * when missing) and the writer's newest record from it. */
static int
flt_arc_log_spool(struct flt_arc_log *lg, const struct cfg *c,
                  const char *value, char *sdir, size_t n, struct err *e)
{
    const char *base = cfg_str(c, "spool_directory");
    char path[4200];

    if (flt_archive_spool_dir(c, value, sdir, n) < 0)
        return err_set(e, ERR_CONFIG, "spool_directory %s: too long", base);
    if (mkdir(base, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "spool_directory %s", base);
    if (mkdir(sdir, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "archive spool %s", sdir);
    /* One process appends through a spool: two would each go on from the
     * same last record and fork the chain (a remote store has no lock of
     * its own to take). */
    snprintf(path, sizeof(path), "%s/.lock", sdir);
    lg->spool_lock =
        open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lg->spool_lock < 0)
        return err_sys(e, ERR_IO, "%s", path);
    if (flock(lg->spool_lock, LOCK_EX | LOCK_NB) < 0)
        return err_sys(e, ERR_TEMP,
                       "archive spool %s is in use by another process (or "
                       "another archive_node of this one): it would fork "
                       "the chain",
                       sdir);
    return flt_arc_log_recover_spool(lg, sdir, e);
}

/* flt_arc_log_recover_all - where the writer's chain stands: the store's
 * last record, and with a spool the newest of that and the spool's. With
 * a spool, a store that cannot be read now (S3 down at start) does not
 * stop mail when the spool knows the writer's last record: every record
 * of this writer went through it. Without that, nobody can tell where
 * the chain stands: refused rather than forked. */
static int
flt_arc_log_recover_all(struct flt_arc_log *lg, const struct cfg *c,
                        const char *value, int async, char *sdir, size_t n,
                        struct err *e)
{
    struct err se;
    int store_ok;

    if (!async)
        return flt_arc_log_recover(lg, e);
    err_clear(&se);
    store_ok = flt_arc_log_recover(lg, &se) == 0;
    if (!store_ok && se.code == ERR_INPUT) {
        *e = se; /* a record that does not read back: not an outage */
        return -1;
    }
    if (flt_arc_log_spool(lg, c, value, sdir, n, e) < 0)
        return -1;
    if (store_ok)
        return 0;
    if (lg->seq == 0)
        return err_set(e, ERR_TEMP,
                       "%s; and its spool holds no record of writer %s: "
                       "where the chain stands is unknown until the store "
                       "answers",
                       se.text, lg->writer);
    log_warning(NULL,
                "archive %s: %s; writer %s goes on from its spool, at seq "
                "%llu",
                value, se.text, lg->writer, lg->seq);
    return 0;
}

static struct flt_arc_log *
flt_arc_log_open(const char *value, const char *writer, const struct cfg *c,
                 const struct stage_env *env, int async, struct err *e)
{
    char sdir[4096];
    const struct arc_store_ops *ops;
    struct flt_arc_log *lg;
    const char *spec;

    if ((ops = flt_arc_store_ops(value, &spec, e)) == NULL)
        return NULL;
    pthread_mutex_lock(&flt_arc_logs_mu);
    for (lg = flt_arc_logs; lg != NULL; lg = lg->next)
        if (strcmp(lg->spec, value) == 0 && strcmp(lg->writer, writer) == 0) {
            if ((lg->spool != NULL) != async) {
                pthread_mutex_unlock(&flt_arc_logs_mu);
                err_set(e, ERR_CONFIG,
                        "another archive stage names store %s with required "
                        "= %s: stages sharing a store must agree",
                        value, async ? "yes" : "no");
                return NULL;
            }
            lg->refs++;
            pthread_mutex_unlock(&flt_arc_logs_mu);
            return lg;
        }
    if ((lg = calloc(1, sizeof(*lg))) == NULL ||
        (lg->spec = strdup(value)) == NULL) {
        free(lg);
        err_nomem(e);
        goto fail;
    }
    /* arc_writer_ok() bounded it to ARC_WRITER_MAX octets. */
    memcpy(lg->writer, writer, strnlen(writer, ARC_WRITER_MAX));
    lg->ops = ops;
    lg->spool_lock = -1;
    pthread_mutex_init(&lg->mu, NULL);
    lg->last_ckpt = (long long)time(NULL);
    /* The writer's chain is this process's from here on: another one
     * appending to it would fork it. */
    if ((lg->store = ops->open(spec, c, 0, e)) == NULL ||
        (ops == &arc_store_dir &&
         arc_dir_claim_writer(lg->store, lg->writer, e) < 0) ||
        flt_arc_log_recover_all(lg, c, value, async, sdir, sizeof(sdir), e) <
            0 ||
        (ops == &arc_store_smtp && env != NULL &&
         arc_journal_set_env(lg->store, env, e) < 0) ||
        (async &&
         (lg->spool = arc_spool_open(sdir, ops, lg->store, e)) == NULL)) {
        if (lg->store != NULL)
            ops->close(lg->store);
        if (lg->spool_lock >= 0)
            close(lg->spool_lock);
        pthread_mutex_destroy(&lg->mu);
        free(lg->spec);
        free(lg);
        goto fail;
    }
    lg->refs = 1;
    lg->next = flt_arc_logs;
    flt_arc_logs = lg;
    pthread_mutex_unlock(&flt_arc_logs_mu);
    return lg;
fail:
    pthread_mutex_unlock(&flt_arc_logs_mu);
    return NULL;
}

/* flt_arc_append_locked - seal one record as the writer's next and hand
 * it to the store; under lg->mu. *ticket is set when the dir store's
 * fdatasync is still to be waited for (0 when put made it durable). */
static int
flt_arc_append_locked(struct flt_arc_log *lg, struct arc_seal_in *in,
                      const struct arc_parts *pt, char name[ARC_NAME_MAX + 1],
                      unsigned long long *ticket, struct err *e)
{
    unsigned char hash[ARC_HASH_LEN];
    struct arc_item it;
    struct buf b;
    int rc;

    in->writer = lg->writer;
    in->seq = lg->seq + 1;
    in->prev = lg->prev;
    buf_init(&b, FLT_ARC_SEALED_MAX);
    if (arc_record_finish(in, pt, &b, hash, e) < 0) {
        buf_fini(&b);
        return -1;
    }
    arc_name(name, lg->writer, in->seq);
    memset(&it, 0, sizeof(it));
    it.name = name;
    it.sealed = (const unsigned char *)b.data;
    it.sealed_len = b.len;
    if (in->kind == ARC_KIND_MESSAGE) {
        it.meta = in->meta;
        it.data = in->data;
        it.len = in->len;
    }
    if (lg->spool != NULL) {
        /* Into the spool, durable at arc_spool_sync (flt_arc_sync); the
         * spool's thread ships it. */
        rc = arc_spool_append(lg->spool, &it, ticket, e);
    } else if (lg->ops == &arc_store_dir) {
        rc = arc_dir_append(lg->store, &it, ticket, e);
    } else {
        *ticket = 0;
        rc = lg->ops->put(lg->store, &it, e);
    }
    buf_fini(&b);
    if (rc < 0)
        return -1;
    lg->seq = in->seq;
    memcpy(lg->prev, hash, ARC_HASH_LEN);
    lg->since++;
    return 0;
}

/* flt_arc_checkpoint_locked - a signed checkpoint as the next record. */
static int
flt_arc_checkpoint_locked(struct flt_arc_log *lg, EVP_PKEY *key,
                          const char *key_id, unsigned long long *ticket,
                          struct err *e)
{
    char text[512], name[ARC_NAME_MAX + 1];
    unsigned char sig[64];
    size_t siglen = sizeof(sig);
    struct arc_meta meta;
    struct arc_extra x;
    struct arc_seal_in in;
    struct arc_parts pt;
    EVP_MD_CTX *ctx;
    int ok, rc;

    memset(&meta, 0, sizeof(meta));
    memset(&x, 0, sizeof(x));
    memset(&in, 0, sizeof(in));
    meta.time = (long long)time(NULL);
    x.count = lg->seq;
    arc_checkpoint_text(text, sizeof(text), lg->writer, lg->seq + 1, lg->prev,
                        meta.time, x.count);
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        return err_nomem(e);
    ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
         EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)text,
                        strlen(text)) == 1 &&
         siglen == sizeof(sig);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return err_set(e, ERR_LIB, "Ed25519 signature failed");
    x.sig = sig;
    x.key_id = key_id;
    in.kind = ARC_KIND_CHECKPOINT;
    in.meta = &meta;
    in.x = &x;
    arc_parts_init(&pt);
    rc = arc_record_prepare(&in, &pt, e) < 0
             ? -1
             : flt_arc_append_locked(lg, &in, &pt, name, ticket, e);
    arc_parts_fini(&pt);
    if (rc < 0)
        return -1;
    lg->since = 0;
    lg->last_ckpt = meta.time;
    return 0;
}

/* flt_arc_sync - wait until the records up to ticket are durable: in
 * the spool, or in the dir store (group commit in both). */
static int
flt_arc_sync(struct flt_arc_log *lg, unsigned long long ticket, struct err *e)
{
    if (lg->spool != NULL)
        return arc_spool_sync(lg->spool, ticket, e);
    return arc_dir_sync(lg->store, ticket, e);
}

/* flt_arc_append - append one record (and a checkpoint when one is due)
 * and return once it is durable. name gets the record's name. */
static int
flt_arc_append(const struct flt_arc *a, struct arc_seal_in *in,
               char name[ARC_NAME_MAX + 1], struct err *e)
{
    struct flt_arc_log *lg = a->log;
    unsigned long long ticket = 0, cticket = 0;
    struct arc_parts pt;
    int rc;

    /* Meta and compression outside the lock; only the header, the copy
     * and the hash under it. */
    arc_parts_init(&pt);
    if (arc_record_prepare(in, &pt, e) < 0) {
        arc_parts_fini(&pt);
        return -1;
    }
    pthread_mutex_lock(&lg->mu);
    rc = flt_arc_append_locked(lg, in, &pt, name, &ticket, e);
    if (rc == 0 && a->key != NULL &&
        (lg->since >= (unsigned long long)a->every ||
         (long long)time(NULL) - lg->last_ckpt >= a->interval)) {
        struct err ce;

        err_clear(&ce);
        if (flt_arc_checkpoint_locked(lg, a->key, a->key_id, &cticket, &ce) <
            0)
            log_error(NULL, "archive %s: checkpoint: %s", lg->spec, ce.text);
        else if (cticket > ticket)
            ticket = cticket;
    }
    pthread_mutex_unlock(&lg->mu);
    arc_parts_fini(&pt);
    if (rc == 0 && ticket != 0)
        rc = flt_arc_sync(lg, ticket, e);
    return rc;
}

static void
flt_arc_log_release(struct flt_arc_log *lg)
{
    struct flt_arc_log **pp;

    pthread_mutex_lock(&flt_arc_logs_mu);
    if (--lg->refs > 0) {
        pthread_mutex_unlock(&flt_arc_logs_mu);
        return;
    }
    for (pp = &flt_arc_logs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == lg) {
            *pp = lg->next;
            break;
        }
    pthread_mutex_unlock(&flt_arc_logs_mu);
    /* The last user goes: a final checkpoint covers the tail. */
    if (lg->key != NULL && lg->since > 0) {
        unsigned long long ticket = 0;
        struct err e;

        err_clear(&e);
        pthread_mutex_lock(&lg->mu);
        if (flt_arc_checkpoint_locked(lg, lg->key, lg->key_id, &ticket, &e) <
                0 ||
            (ticket != 0 && flt_arc_sync(lg, ticket, &e) < 0))
            log_error(NULL, "archive %s: final checkpoint: %s", lg->spec,
                      e.text);
        pthread_mutex_unlock(&lg->mu);
    }
    EVP_PKEY_free(lg->key);
    arc_spool_close(lg->spool);
    lg->ops->close(lg->store);
    if (lg->spool_lock >= 0)
        close(lg->spool_lock);
    pthread_mutex_destroy(&lg->mu);
    free(lg->spec);
    free(lg);
}

static void
flt_arc_free(struct stage *st)
{
    struct flt_arc *a = st->priv;

    if (a == NULL)
        return;
    if (a->log != NULL)
        flt_arc_log_release(a->log);
    EVP_PKEY_free(a->key);
    arc_crypt_free(a->crypt);
    free(a);
    st->priv = NULL;
}

/* flt_arc_foreign_keys - a key of another store's kind set here is a
 * mistake (s3_endpoint next to store = dir:...): refused with its line. */
static int
flt_arc_foreign_keys(const struct cfg *c, const struct arc_store_ops *ops,
                     struct err *e)
{
    static const struct {
        const struct arc_store_ops *ops;
        const struct cfg_option *keys;
    } own[] = {{&arc_store_s3, arc_s3_options},
               {&arc_store_smtp, arc_journal_options}};
    const struct cfg_option *o;
    size_t i;

    for (i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i].ops != ops)
            for (o = own[i].keys; o->name != NULL; o++)
                if (cfg_is_set(c, o->name))
                    return cfg_err(e, c, o->name,
                                   "only for a store = %s: store",
                                   own[i].ops->scheme);
    return 0;
}

static int
flt_arc_init(struct stage *st, const struct cfg *c, struct err *e)
{
    const struct arc_store_ops *ops;
    const char *store = cfg_str(c, "store"), *spec, *node;
    char host[256];
    struct flt_arc *a;
    long long secs;
    void *probe;
    int async;

    char to[ARC_TO_MAX + 1];

    if (cfg_is_set(c, "retention") &&
        flt_arc_retention(cfg_str(c, "retention"), &secs) < 0)
        return cfg_err(e, c, "retention",
                       "give a number and a unit: 90d, 12w, 36m or 7y");
    if ((ops = flt_arc_store_ops(store, &spec, e)) == NULL)
        return cfg_err_prefixed(e, c, "store");
    if (flt_arc_foreign_keys(c, ops, e) < 0)
        return -1;
    if (!cfg_is_set(c, "encrypt_to") &&
        (cfg_is_set(c, "pgp_home") || cfg_is_set(c, "smime_ca_file")))
        return cfg_err(
            e, c, cfg_is_set(c, "pgp_home") ? "pgp_home" : "smime_ca_file",
            "only with encrypt_to");
    if (cfg_is_set(c, "encrypt_to") && ops == &arc_store_smtp)
        return cfg_err(e, c, "encrypt_to",
                       "a journal store (smtp:) shows each message to a "
                       "mailbox in clear: use a dir: or s3:// store");
    /* A journal store is always used through the spool: an outage of the
     * journal host never drops a copy. */
    async = !cfg_bool(c, "required") || ops == &arc_store_smtp;
    if (async && cfg_str(c, "spool_directory")[0] != '/')
        return cfg_err(e, c, "spool_directory", "give an absolute path");
    node = cfg_str(c, "archive_node");
    if (node == NULL) {
        if (gethostname(host, sizeof(host)) < 0)
            return err_sys(e, ERR_CONFIG, "archive_node: gethostname");
        host[sizeof(host) - 1] = '\0';
        host[strcspn(host, ".")] = '\0';
        node = host;
    }
    if (!arc_writer_ok(node) ||
        strlen(node) + sizeof(ARC_PURGE_SUFFIX) - 1 > ARC_WRITER_MAX ||
        strstr(node, ARC_PURGE_SUFFIX) != NULL)
        return cfg_err(e, c, "archive_node",
                       "'%s' cannot name a writer: printable, no \"/\", "
                       "\"%%\" or white space, at most %d octets, not "
                       "holding %s",
                       node, ARC_WRITER_MAX - 6, ARC_PURGE_SUFFIX);
    if ((a = calloc(1, sizeof(*a))) == NULL)
        return err_nomem(e);
    st->priv = a;
    a->every = cfg_num(c, "checkpoint_every");
    a->interval = cfg_num(c, "checkpoint_interval") / 1000;
    a->level = (int)cfg_num(c, "compression_level");
    if (cfg_is_set(c, "checkpoint_key") &&
        flt_archive_key_load(cfg_str(c, "checkpoint_key"), 1, &a->key,
                             a->key_id, e) < 0)
        return cfg_err_prefixed(e, c, "checkpoint_key");
    if (cfg_is_set(c, "encrypt_to") &&
        (a->crypt = arc_crypt_new(
             cfg_str(c, "encrypt_to"), cfg_str(c, "pgp_home"),
             cfg_str(c, "smime_ca_file"), to, sizeof(to), e)) == NULL) {
        e->code = ERR_CONFIG;
        return cfg_err_prefixed(e, c, "encrypt_to");
    }
    if (a->crypt != NULL)
        log_info(NULL, "archive %s: records encrypted to %s", store, to);
    if (st->check_only) {
        if ((probe = ops->open(spec, c, 1, e)) == NULL)
            return cfg_err_prefixed(e, c, "store");
        ops->close(probe);
        return 0;
    }
    if (a->key == NULL)
        log_warning(NULL,
                    "archive %s: no checkpoint_key: the hash chain is kept "
                    "but no signed checkpoints are written",
                    store);
    if ((a->log = flt_arc_log_open(store, node, c, st->env, async, e)) == NULL)
        return -1;
    /* The log signs its final checkpoint with the newest key. */
    pthread_mutex_lock(&a->log->mu);
    if (a->key != NULL && EVP_PKEY_up_ref(a->key) == 1) {
        EVP_PKEY_free(a->log->key);
        a->log->key = a->key;
        memcpy(a->log->key_id, a->key_id, sizeof(a->key_id));
    }
    pthread_mutex_unlock(&a->log->mu);
    return 0;
}

/* flt_arc_header - the first field called name, white space at both ends
 * cut; into out (size n), NULL when there is none. Folding stays, escaped
 * by the record. */
static const char *
flt_arc_header(const struct msg *m, const char *name, char *out, size_t n)
{
    const char *v = msg_header_get(m, name, 1);
    size_t len;

    if (v == NULL)
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    len = strlen(v);
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t' ||
                       v[len - 1] == '\r' || v[len - 1] == '\n'))
        len--;
    if (len >= n)
        len = n - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return out;
}

static int
flt_arc_run(const struct stage *st, struct msg *m, struct verdict *v,
            struct err *e)
{
    const struct flt_arc *a = st->priv;
    const struct msg_env *env = msg_env(m);
    char msgid[1000], subject[1000], name[ARC_NAME_MAX + 1];
    const char **rcpts = NULL;
    struct arc_seal_in in;
    struct arc_meta meta;
    const char *data;
    size_t len, i;
    int rc;

    if ((data = msg_flat(m, &len, e)) == NULL)
        return -1;
    if (env->nrcpts > 0 &&
        (rcpts = calloc(env->nrcpts, sizeof(*rcpts))) == NULL)
        return err_nomem(e);
    for (i = 0; i < env->nrcpts; i++)
        rcpts[i] = env->rcpts[i].addr;
    memset(&meta, 0, sizeof(meta));
    meta.time = (long long)time(NULL);
    meta.point = st->name;
    meta.qid = env->qid;
    meta.message_id = flt_arc_header(m, "Message-ID", msgid, sizeof(msgid));
    meta.subject = flt_arc_header(m, "Subject", subject, sizeof(subject));
    meta.client_addr = env->client_addr;
    meta.client_name = env->client_name;
    meta.auth_user = env->auth_user;
    meta.sender = env->sender != NULL ? env->sender : "";
    meta.rcpts = rcpts;
    meta.nrcpts = env->nrcpts;
    meta.verdicts = msg_trail(m);
    meta.size = len;
    memset(&in, 0, sizeof(in));
    in.kind = ARC_KIND_MESSAGE;
    in.meta = &meta;
    in.data = data;
    in.len = len;
    in.level = a->level;
    if (a->crypt != NULL) {
        in.encrypt = arc_crypt_encrypt;
        in.encrypt_arg = a->crypt;
    }
    rc = flt_arc_append(a, &in, name, e);
    free(rcpts);
    if (rc < 0 && e->sys_errno == ENOSPC)
        /* As the queue says it: the sender retries later. */
        return verdict_set(v, VERDICT_TEMPFAIL,
                           "452 4.3.1 Insufficient system storage",
                           "not archived (%s)", e->text);
    if (rc < 0) {
        if (e->code != ERR_NOMEM)
            e->code = ERR_TEMP;
        return -1;
    }
    return verdict_set(v, VERDICT_CONTINUE, NULL, "record=%s, size=%zu", name,
                       len);
}

/* flt_arc_done - the message went no further than a later stage: say so
 * in an outcome record that names the message record. */
static void
flt_arc_done(const struct stage *st, const struct msg *m,
             const struct verdict *own, const struct verdict *final,
             const struct stage *by)
{
    const struct flt_arc *a = st->priv;
    char ref[ARC_NAME_MAX + 1], verdict[600], name[ARC_NAME_MAX + 1];
    const char *p = strstr(own->note, "record=");
    struct arc_meta meta;
    struct arc_extra x;
    struct arc_seal_in in;
    struct err e;
    size_t n;

    if (final->kind == VERDICT_CONTINUE || p == NULL || a == NULL ||
        a->log == NULL)
        return;
    p += 7;
    n = strcspn(p, ",");
    if (n == 0 || n > ARC_NAME_MAX)
        return;
    memcpy(ref, p, n);
    ref[n] = '\0';
    snprintf(verdict, sizeof(verdict), "%s by %s%s%s",
             verdict_kind_name(final->kind), by != NULL ? by->name : "chain",
             final->reply[0] ? ": " : "", final->reply);
    memset(&meta, 0, sizeof(meta));
    memset(&x, 0, sizeof(x));
    memset(&in, 0, sizeof(in));
    meta.time = (long long)time(NULL);
    x.ref = ref;
    x.verdict = verdict;
    in.kind = ARC_KIND_OUTCOME;
    in.meta = &meta;
    in.x = &x;
    err_clear(&e);
    if (flt_arc_append(a, &in, name, &e) < 0)
        log_error(msg_qid(m), "%s: outcome of %s not archived: %s", st->name,
                  ref, e.text);
    else
        log_info(msg_qid(m), "%s: outcome %s of %s archived as %s", st->name,
                 verdict_kind_name(final->kind), ref, name);
}

int
flt_archive_stage_store(const struct stage *st, const char **store,
                        const char **key, const char **retention)
{
    if (st->type != &flt_archive_type)
        return -1;
    *store = cfg_str(st->cfg, "store");
    *key = cfg_str(st->cfg, "checkpoint_key");
    *retention = cfg_str(st->cfg, "retention");
    return 0;
}

const struct stage_type flt_archive_type = {
    .name = "archive",
    .summary = "compliance archive: each message as it stands here, with "
               "its envelope, in a hash-chained store with signed "
               "checkpoints",
    .flags = 0,
    .options = flt_arc_options,
    .init = flt_arc_init,
    .run = flt_arc_run,
    .free = flt_arc_free,
    .done = flt_arc_done,
};
