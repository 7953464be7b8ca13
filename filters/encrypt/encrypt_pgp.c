/*
 * encrypt_pgp - OpenPGP keys and encryption through GPGME
 *
 * The engine is the GnuPG home admins manage with gpg --import
 * (pgp_home) and the trust rule (pgp_trust). A key is usable for an
 * address when a user ID's email is that address (the local part exactly,
 * the domain without regard to case; an address that only appears in the
 * user ID's name does not count), that user ID is neither revoked nor
 * invalid, the key is not expired, revoked, disabled or invalid, it has a
 * subkey that can encrypt and is itself none of those, and, with
 * pgp_trust = keyring, the user ID's validity is full or ultimate. Among
 * usable keys the newest wins.
 *
 * GPGME contexts are not thread-safe, so each message gets its own
 * (struct flt_enc_pgp_job), which also holds a reference on every key it
 * found until it is freed. Reading the keyring is checked before each
 * message: a home or keyring that cannot be read fails the message
 * closed, it is not taken for "no key".
 *
 * Listing keys costs a gpg process, as much as the encryption itself, so
 * the answer for an address (a key, or none) is kept for cache_time
 * (key_cache_time) in a table the engine owns under its mutex: an entry
 * stops counting when it is older than that, when a key it holds
 * expires, and all of them when the keyring or the trust database
 * changes (size, time or inode of pubring.kbx, pubring.gpg,
 * trustdb.gpg), which is what gpg --import, a revocation or a new
 * certification do. cache_time 0 asks gpg for every message.
 *
 * Signing (sign_key_map): the organisational key's secret part lives in
 * the same home, in gpg-agent, without a passphrase; it is checked at
 * load with a test signature and then kept in the cache ("sign:FPR").
 * A signature that fails (its secret part removed since, the agent
 * gone) fails that message closed, never unsigned, drops the cached key
 * and asks gpg again for the reason the log names.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <gpgme.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filters/encrypt/encrypt_int.h"
#include "util/cfg.h"

#define FLT_ENC_PGP_MAX_KEYS 1000   /* keys one message may hold */
#define FLT_ENC_PGP_CACHE_MAX 10000 /* addresses the cache holds */

/* One address's answer: key NULL when it has no usable key. */
struct flt_enc_pgp_entry {
    char *addr;
    gpgme_key_t key; /* a reference of the cache's own */
    char id[40];
    time_t until; /* the answer counts before this */
};

struct flt_enc_pgp {
    char *home; /* NULL: GnuPG's default */
    int trust_keyring;
    int global_home; /* GPGME's process-wide OpenPGP home is ours */
    long cache_time; /* seconds; 0: no cache */
    pthread_mutex_t lock;
    struct flt_enc_pgp_entry *cache; /* under lock */
    size_t ncache, capcache;
    char stamp[256]; /* the keyring files' state the cache is of */
};

struct flt_enc_pgp_job {
    struct flt_enc_pgp *p;
    gpgme_ctx_t ctx;
    gpgme_key_t *keys;
    size_t nkeys, cap;
};

static int
flt_enc_gpg_err(struct err *e, enum err_code code, const char *what,
                gpgme_error_t ge)
{
    return err_set(e, code, "gpgme: %s: %s", what, gpgme_strerror(ge));
}

/* flt_enc_pgp_claim_home - 1 when GPGME's process-wide OpenPGP engine
 * uses home (made so here when it still had GnuPG's default), so that
 * contexts need no home of their own: setting one on a context makes
 * GPGME run "gpg --version" again, a process per message. 0 when
 * another stage's home is in place: this one then sets its home on each
 * context, slower but right. Called from init(), before the threads. */
static int
flt_enc_pgp_claim_home(const char *home)
{
    gpgme_engine_info_t info;
    const char *cur = NULL;

    if (gpgme_get_engine_info(&info) != 0)
        return 0;
    for (; info != NULL; info = info->next)
        if (info->protocol == GPGME_PROTOCOL_OpenPGP)
            cur = info->home_dir;
    if (home == NULL || cur != NULL)
        return (home == NULL && cur == NULL) ||
               (home != NULL && cur != NULL && strcmp(cur, home) == 0);
    return gpgme_set_engine_info(GPGME_PROTOCOL_OpenPGP, NULL, home) == 0;
}

struct flt_enc_pgp *
flt_enc_pgp_new(const char *home, int trust_keyring, long cache_time,
                struct err *e)
{
    struct flt_enc_pgp *p;
    gpgme_error_t ge;
    struct stat sb;

    /* Once per process, before any context; GPGME documents it as
     * idempotent. */
    gpgme_check_version(NULL);
    if ((ge = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP)) != 0) {
        flt_enc_gpg_err(e, ERR_CONFIG, "no usable gpg", ge);
        return NULL;
    }
    if (home != NULL && (stat(home, &sb) < 0 || !S_ISDIR(sb.st_mode))) {
        err_sys(e, ERR_CONFIG, "pgp_home %s is not a directory", home);
        return NULL;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    p->trust_keyring = trust_keyring;
    p->cache_time = cache_time;
    if (home != NULL && (p->home = strdup(home)) == NULL) {
        free(p);
        err_nomem(e);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->global_home = flt_enc_pgp_claim_home(home);
    return p;
}

/* flt_enc_pgp_flush - empty the cache; the lock is held. */
static void
flt_enc_pgp_flush(struct flt_enc_pgp *p)
{
    size_t i;

    for (i = 0; i < p->ncache; i++) {
        free(p->cache[i].addr);
        if (p->cache[i].key != NULL)
            gpgme_key_unref(p->cache[i].key);
    }
    p->ncache = 0;
}

void
flt_enc_pgp_free(struct flt_enc_pgp *p)
{
    if (p == NULL)
        return;
    flt_enc_pgp_flush(p);
    free(p->cache);
    pthread_mutex_destroy(&p->lock);
    free(p->home);
    free(p);
}

/* flt_enc_pgp_stamp - the state of the keyring files, as text. */
static void
flt_enc_pgp_stamp(const struct flt_enc_pgp *p, char *out, size_t n)
{
    static const char *const names[] = {"pubring.kbx", "pubring.gpg",
                                        "trustdb.gpg"};
    char path[4096];
    struct stat sb;
    size_t i, len = 0;

    out[0] = '\0';
    for (i = 0; i < 3 && len < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->home != NULL ? p->home : ".",
                 names[i]);
        if (stat(path, &sb) < 0)
            memset(&sb, 0, sizeof(sb));
        len +=
            (size_t)snprintf(out + len, n - len, "%lu:%lld:%lld.%09ld;",
                             (unsigned long)sb.st_ino, (long long)sb.st_size,
                             (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    }
}

/* flt_enc_pgp_readable - the home's public keyring can be read: one of
 * pubring.kbx and pubring.gpg exists and gives its first octet (a
 * directory, a file without read permission or a missing keyring is an
 * engine failure, not an empty keyring). */
static int
flt_enc_pgp_readable(const struct flt_enc_pgp *p, struct err *e)
{
    static const char *const names[] = {"pubring.kbx", "pubring.gpg"};
    char path[4096], c;
    size_t i;
    int fd, seen = 0;
    ssize_t r;

    if (p->home == NULL)
        return 0;
    for (i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->home, names[i]);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
            if (errno == ENOENT)
                continue;
            return err_sys(e, ERR_TEMP, "pgp keyring %s", path);
        }
        r = read(fd, &c, 1);
        close(fd);
        if (r < 0)
            return err_sys(e, ERR_TEMP, "pgp keyring %s", path);
        seen = 1;
    }
    if (!seen)
        return err_set(e, ERR_TEMP, "pgp_home %s holds no keyring", p->home);
    return 0;
}

struct flt_enc_pgp_job *
flt_enc_pgp_job_new(struct flt_enc_pgp *p, struct err *e)
{
    struct flt_enc_pgp_job *j;
    gpgme_error_t ge;

    if (flt_enc_pgp_readable(p, e) < 0)
        return NULL;
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    j->p = p;
    if ((ge = gpgme_new(&j->ctx)) != 0) {
        flt_enc_gpg_err(e, ERR_TEMP, "new context", ge);
        free(j);
        return NULL;
    }
    if ((ge = gpgme_set_protocol(j->ctx, GPGME_PROTOCOL_OpenPGP)) != 0 ||
        (!p->global_home &&
         (ge = gpgme_ctx_set_engine_info(j->ctx, GPGME_PROTOCOL_OpenPGP, NULL,
                                         p->home)) != 0)) {
        flt_enc_gpg_err(e, ERR_TEMP, "engine", ge);
        flt_enc_pgp_job_free(j);
        return NULL;
    }
    gpgme_set_armor(j->ctx, 1);
    gpgme_set_keylist_mode(j->ctx, GPGME_KEYLIST_MODE_LOCAL);
    return j;
}

void
flt_enc_pgp_job_free(struct flt_enc_pgp_job *j)
{
    size_t i;

    if (j == NULL)
        return;
    for (i = 0; i < j->nkeys; i++)
        gpgme_key_unref(j->keys[i]);
    free(j->keys);
    if (j->ctx != NULL)
        gpgme_release(j->ctx);
    free(j);
}

/* flt_enc_pgp_refusal - why key k cannot encrypt to a user ID of it
 * (uid, NULL for the key as a whole), or NULL when it can. */
static const char *
flt_enc_pgp_refusal(const struct flt_enc_pgp *p, gpgme_key_t k,
                    gpgme_user_id_t uid)
{
    gpgme_subkey_t sk;
    int enc = 0;

    if (k->revoked)
        return "revoked";
    if (k->expired)
        return "expired";
    if (k->disabled)
        return "disabled";
    if (k->invalid)
        return "invalid";
    for (sk = k->subkeys; sk != NULL; sk = sk->next)
        if (sk->can_encrypt && !sk->revoked && !sk->expired && !sk->disabled &&
            !sk->invalid)
            enc = 1;
    if (!enc)
        return "no usable encryption subkey";
    if (uid == NULL)
        return NULL;
    if (uid->revoked)
        return "user ID revoked";
    if (uid->invalid)
        return "user ID invalid";
    if (p->trust_keyring && uid->validity != GPGME_VALIDITY_FULL &&
        uid->validity != GPGME_VALIDITY_ULTIMATE)
        return "untrusted (user ID not valid in the keyring, pgp_trust = "
               "keyring)";
    return NULL;
}

static const char *
flt_enc_pgp_keyid(gpgme_key_t k)
{
    return k->subkeys != NULL && k->subkeys->keyid != NULL ? k->subkeys->keyid
                                                           : "?";
}

/* flt_enc_pgp_search - ask gpg for addr's usable key: 0 with *found the
 * newest (a reference the caller drops) or NULL, -1 with e set. */
static int
flt_enc_pgp_search(struct flt_enc_pgp_job *j, const char *addr,
                   gpgme_key_t *found, flt_enc_report_fn report, void *arg,
                   struct err *e)
{
    gpgme_key_t k, best = NULL;
    gpgme_user_id_t uid, match;
    gpgme_error_t ge;
    const char *why;
    char kid[40], pattern[600];
    long best_time = 0;

    /* "*" asks gpg for a substring match, whatever the address starts
     * with ("0x", "&", "=" and "<" would mean other searches); the user
     * IDs' emails are then compared exactly. */
    if (strlen(addr) + 2 > sizeof(pattern))
        return err_set(e, ERR_INPUT, "address too long for a key search");
    snprintf(pattern, sizeof(pattern), "*%s", addr);
    if ((ge = gpgme_op_keylist_start(j->ctx, pattern, 0)) != 0)
        return flt_enc_gpg_err(e, ERR_TEMP, "key listing", ge);
    for (;;) {
        ge = gpgme_op_keylist_next(j->ctx, &k);
        if (gpg_err_code(ge) == GPG_ERR_EOF)
            break;
        if (ge != 0) {
            gpgme_op_keylist_end(j->ctx);
            if (best != NULL)
                gpgme_key_unref(best);
            return flt_enc_gpg_err(e, ERR_TEMP, "key listing", ge);
        }
        match = NULL;
        for (uid = k->uids; uid != NULL; uid = uid->next)
            if (flt_enc_addr_equal(addr, uid->email)) {
                match = uid;
                /* Prefer a user ID that is usable over one that is
                 * not. */
                if (flt_enc_pgp_refusal(j->p, k, uid) == NULL)
                    break;
            }
        snprintf(kid, sizeof(kid), "0x%s", flt_enc_pgp_keyid(k));
        if (match == NULL)
            why = "address only in the display name or comment, not a "
                  "user ID's email";
        else
            why = flt_enc_pgp_refusal(j->p, k, match);
        if (report != NULL)
            report(arg, "pgp", kid,
                   k->uids != NULL && k->uids->uid != NULL ? k->uids->uid : "",
                   why);
        if (why == NULL &&
            (best == NULL || k->subkeys->timestamp > best_time)) {
            if (best != NULL)
                gpgme_key_unref(best);
            best = k;
            best_time = k->subkeys->timestamp;
            continue;
        }
        gpgme_key_unref(k);
    }
    if ((ge = gpgme_op_keylist_end(j->ctx)) != 0) {
        if (best != NULL)
            gpgme_key_unref(best);
        return flt_enc_gpg_err(e, ERR_TEMP, "key listing", ge);
    }
    *found = best;
    return 0;
}

/* flt_enc_pgp_cache_get - 1 with *key (a new reference, or NULL for "no
 * key") when the cache holds a current answer for addr, else 0; stamp
 * (size n) gets the keyring's state, for flt_enc_pgp_cache_put. */
static int
flt_enc_pgp_cache_get(struct flt_enc_pgp *p, const char *addr,
                      gpgme_key_t *key, char *stamp, size_t n)
{
    time_t now = time(NULL);
    size_t i;
    int hit = 0;

    flt_enc_pgp_stamp(p, stamp, n);
    pthread_mutex_lock(&p->lock);
    if (strcmp(stamp, p->stamp) != 0) {
        flt_enc_pgp_flush(p);
        snprintf(p->stamp, sizeof(p->stamp), "%s", stamp);
    }
    for (i = 0; i < p->ncache; i++) {
        struct flt_enc_pgp_entry *c = &p->cache[i];

        if (strcmp(c->addr, addr) != 0)
            continue;
        if (now < c->until) {
            *key = c->key;
            if (c->key != NULL)
                gpgme_key_ref(c->key);
            hit = 1;
        }
        break;
    }
    pthread_mutex_unlock(&p->lock);
    return hit;
}

/* flt_enc_pgp_cache_put - keep key (NULL: none) as addr's answer, unless
 * the keyring changed since stamp was taken. Out of memory only means
 * no caching. */
static void
flt_enc_pgp_cache_put(struct flt_enc_pgp *p, const char *addr, gpgme_key_t key,
                      const char *stamp)
{
    time_t until = time(NULL) + p->cache_time;
    struct flt_enc_pgp_entry *c = NULL;
    gpgme_subkey_t sk;
    size_t i;

    if (key != NULL)
        for (sk = key->subkeys; sk != NULL; sk = sk->next)
            if (sk->expires > 0 && sk->expires < until)
                until = sk->expires;
    pthread_mutex_lock(&p->lock);
    if (strcmp(stamp, p->stamp) != 0)
        goto out;
    for (i = 0; i < p->ncache; i++)
        if (strcmp(p->cache[i].addr, addr) == 0) {
            c = &p->cache[i];
            if (c->key != NULL)
                gpgme_key_unref(c->key);
            break;
        }
    if (c == NULL) {
        if (p->ncache >= FLT_ENC_PGP_CACHE_MAX)
            flt_enc_pgp_flush(p);
        if (p->ncache == p->capcache) {
            size_t cap = p->capcache == 0 ? 64 : p->capcache * 2;
            struct flt_enc_pgp_entry *nc =
                realloc(p->cache, cap * sizeof(*nc));

            if (nc == NULL)
                goto out;
            p->cache = nc;
            p->capcache = cap;
        }
        c = &p->cache[p->ncache];
        if ((c->addr = strdup(addr)) == NULL)
            goto out;
        p->ncache++;
    }
    c->key = key;
    if (key != NULL)
        gpgme_key_ref(key);
    c->until = until;

out:
    pthread_mutex_unlock(&p->lock);
}

int
flt_enc_pgp_lookup(struct flt_enc_pgp_job *j, const char *addr, size_t *slot,
                   char *id, size_t n, flt_enc_report_fn report, void *arg,
                   struct err *e)
{
    gpgme_key_t best = NULL;
    char stamp[256];
    int cache = report == NULL && j->p->cache_time > 0;

    if (!cache ||
        !flt_enc_pgp_cache_get(j->p, addr, &best, stamp, sizeof(stamp))) {
        if (flt_enc_pgp_search(j, addr, &best, report, arg, e) < 0)
            return -1;
        if (cache)
            flt_enc_pgp_cache_put(j->p, addr, best, stamp);
    }
    if (best == NULL)
        return 0;
    if (j->nkeys == j->cap) {
        size_t cap = j->cap == 0 ? 8 : j->cap * 2;
        gpgme_key_t *nk;

        if (cap > FLT_ENC_PGP_MAX_KEYS ||
            (nk = realloc(j->keys, cap * sizeof(*nk))) == NULL) {
            gpgme_key_unref(best);
            return cap > FLT_ENC_PGP_MAX_KEYS
                       ? err_set(e, ERR_LIMIT, "more than %d keys",
                                 FLT_ENC_PGP_MAX_KEYS)
                       : err_nomem(e);
        }
        j->keys = nk;
        j->cap = cap;
    }
    *slot = j->nkeys;
    j->keys[j->nkeys++] = best;
    snprintf(id, n, "0x%s", flt_enc_pgp_keyid(best));
    return 1;
}

/* flt_enc_pgp_sign_refusal - why k cannot sign for the gateway, or
 * NULL. k was listed with its secret parts (gpgme_get_key, secret 1). */
static const char *
flt_enc_pgp_sign_refusal(gpgme_key_t k)
{
    gpgme_subkey_t sk;
    int sign = 0, secret = 0;

    if (k->revoked)
        return "revoked";
    if (k->expired)
        return "expired";
    if (k->disabled)
        return "disabled";
    if (k->invalid)
        return "invalid";
    for (sk = k->subkeys; sk != NULL; sk = sk->next)
        if (sk->can_sign && !sk->revoked && !sk->expired && !sk->disabled &&
            !sk->invalid) {
            sign = 1;
            if (sk->secret)
                secret = 1;
        }
    if (!sign)
        return "wrong usage: no key or subkey that can sign";
    if (!secret)
        return "the secret part of its signing key is not in pgp_home";
    return NULL;
}

/* flt_enc_pgp_cache_drop - forget the answer for name. */
static void
flt_enc_pgp_cache_drop(struct flt_enc_pgp *p, const char *name)
{
    size_t i;

    pthread_mutex_lock(&p->lock);
    for (i = 0; i < p->ncache; i++)
        if (strcmp(p->cache[i].addr, name) == 0) {
            free(p->cache[i].addr);
            if (p->cache[i].key != NULL)
                gpgme_key_unref(p->cache[i].key);
            p->cache[i] = p->cache[--p->ncache];
            break;
        }
    pthread_mutex_unlock(&p->lock);
}

/* flt_enc_pgp_signer - fpr's key with its secret parts, checked, set as
 * the only signer of j's context, which asks no pinentry (loopback
 * without a passphrase: a key that wants one fails at once instead of
 * waiting for a prompt). The secret key material stays in gpg-agent;
 * nothing of it passes here. With cached (the run, not the check at
 * load) a key found before is taken from the engine's cache, under
 * "sign:FPR", and *cached set to 1: listing the secret keys costs a gpg
 * process. A secret part removed since then makes the signature fail,
 * and flt_enc_pgp_run then asks again for the reason. */
static int
flt_enc_pgp_signer(struct flt_enc_pgp_job *j, const char *fpr,
                   enum err_code code, int *cached, struct err *e)
{
    gpgme_key_t k = NULL;
    gpgme_error_t ge;
    const char *why;
    char name[64], stamp[256];
    int use = cached != NULL && j->p->cache_time > 0;

    snprintf(name, sizeof(name), "sign:%s", fpr);
    if (use && flt_enc_pgp_cache_get(j->p, name, &k, stamp, sizeof(stamp)) &&
        k != NULL) {
        *cached = 1;
        goto set;
    }
    ge = gpgme_get_key(j->ctx, fpr, &k, 1);
    if (gpg_err_code(ge) == GPG_ERR_EOF) {
        if (gpgme_get_key(j->ctx, fpr, &k, 0) == 0) {
            gpgme_key_unref(k);
            return err_set(e, code,
                           "signing key %s: its secret part is not in "
                           "pgp_home",
                           fpr);
        }
        return err_set(e, code, "signing key %s: no such key in pgp_home",
                       fpr);
    }
    if (gpg_err_code(ge) == GPG_ERR_AMBIGUOUS_NAME)
        return err_set(e, code, "signing key %s: more than one key matches",
                       fpr);
    if (ge != 0)
        return flt_enc_gpg_err(e, ERR_TEMP, "signing key lookup", ge);
    if ((why = flt_enc_pgp_sign_refusal(k)) != NULL) {
        gpgme_key_unref(k);
        return err_set(e, code, "signing key %s: %s", fpr, why);
    }
    if (use)
        flt_enc_pgp_cache_put(j->p, name, k, stamp);

set:
    gpgme_signers_clear(j->ctx);
    ge = gpgme_signers_add(j->ctx, k);
    gpgme_key_unref(k);
    if (ge == 0)
        ge = gpgme_set_pinentry_mode(j->ctx, GPGME_PINENTRY_MODE_LOOPBACK);
    if (ge != 0)
        return flt_enc_gpg_err(e, ERR_TEMP, "signer", ge);
    return 0;
}

/* flt_enc_pgp_signed - 0 when the operation's sign result holds a
 * signature and refused no signer. */
static int
flt_enc_pgp_signed(struct flt_enc_pgp_job *j, const char *fpr, struct err *e)
{
    gpgme_sign_result_t sr = gpgme_op_sign_result(j->ctx);

    if (sr == NULL || sr->signatures == NULL)
        return err_set(e, ERR_TEMP, "gpgme: signing with %s made no signature",
                       fpr);
    if (sr->invalid_signers != NULL)
        return err_set(e, ERR_TEMP, "gpgme: signing key %s refused: %s", fpr,
                       gpgme_strerror(sr->invalid_signers->reason));
    return 0;
}

/* flt_enc_pgp_fpr40 - 1 when s is a v4 fingerprint: 40 hex digits. */
static int
flt_enc_pgp_fpr40(const char *s)
{
    return strlen(s) == 40 && strspn(s, "0123456789abcdefABCDEF") == 40;
}

/* flt_enc_pgp_secret_private - the home and its secret key directory
 * are closed to other users, as a file with a private key must be
 * (cfg_secret_check). */
static int
flt_enc_pgp_secret_private(const struct flt_enc_pgp *p, struct err *e)
{
    char path[4096];
    struct stat sb;

    if (p->home == NULL)
        return 0;
    if (stat(p->home, &sb) < 0)
        return err_sys(e, ERR_CONFIG, "pgp_home %s", p->home);
    if (cfg_secret_check(p->home, &sb, S_IRWXO,
                         "a GnuPG home with a signing key", e) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/private-keys-v1.d", p->home);
    if (stat(path, &sb) == 0 &&
        cfg_secret_check(path, &sb, S_IRWXO, "the secret keys", e) < 0)
        return -1;
    return 0;
}

int
flt_enc_pgp_signer_check(struct flt_enc_pgp *p, const char *fpr, char *id,
                         size_t n, struct err *e)
{
    static const char probe[] = "relaychain: signing key check\n";
    struct flt_enc_pgp_job *j;
    gpgme_data_t in = NULL, sig = NULL;
    gpgme_error_t ge;
    int rc = -1;

    if (!flt_enc_pgp_fpr40(fpr))
        return err_set(e, ERR_CONFIG,
                       "pgp:%s: give the signing key's fingerprint, 40 hex "
                       "digits (gpg --with-colons --list-secret-keys)",
                       fpr);
    if (flt_enc_pgp_secret_private(p, e) < 0 ||
        (j = flt_enc_pgp_job_new(p, e)) == NULL)
        return -1;
    if (flt_enc_pgp_signer(j, fpr, ERR_CONFIG, NULL, e) < 0)
        goto out;
    /* A signature made now proves the secret key is there and needs no
     * passphrase. */
    if ((ge = gpgme_data_new_from_mem(&in, probe, sizeof(probe) - 1, 0)) !=
            0 ||
        (ge = gpgme_data_new(&sig)) != 0) {
        flt_enc_gpg_err(e, ERR_CONFIG, "data", ge);
        goto out;
    }
    if ((ge = gpgme_op_sign(j->ctx, in, sig, GPGME_SIG_MODE_DETACH)) != 0) {
        err_set(e, ERR_CONFIG,
                "signing key %s cannot sign: %s (the key must have no "
                "passphrase)",
                fpr, gpgme_strerror(ge));
        goto out;
    }
    if (flt_enc_pgp_signed(j, fpr, e) < 0) {
        e->code = ERR_CONFIG;
        goto out;
    }
    snprintf(id, n, "0x%s", fpr + 24);
    rc = 0;

out:
    gpgme_data_release(in);
    gpgme_data_release(sig);
    flt_enc_pgp_job_free(j);
    return rc;
}

/* flt_enc_pgp_run - encrypt data to the keys in slots, signed first
 * with fpr when it is not NULL. */
static int
flt_enc_pgp_run(struct flt_enc_pgp_job *j, const size_t *slots, size_t nslots,
                const char *fpr, const char *data, size_t len, struct buf *out,
                struct err *e)
{
    gpgme_data_t in = NULL, cipher = NULL;
    gpgme_key_t *rcpts;
    gpgme_encrypt_result_t res;
    gpgme_error_t ge;
    char *text, name[64];
    size_t i, tlen;
    int rc = -1, cached = 0;
    struct err why;

    if (nslots == 0)
        return err_set(e, ERR_INTERNAL, "pgp: no recipients");
    if (fpr != NULL && flt_enc_pgp_signer(j, fpr, ERR_TEMP, &cached, e) < 0)
        return -1;
    if ((rcpts = calloc(nslots + 1, sizeof(*rcpts))) == NULL)
        return err_nomem(e);
    for (i = 0; i < nslots; i++)
        rcpts[i] = j->keys[slots[i]];
    if ((ge = gpgme_data_new_from_mem(&in, data, len, 0)) != 0 ||
        (ge = gpgme_data_new(&cipher)) != 0) {
        flt_enc_gpg_err(e, ERR_TEMP, "data", ge);
        goto out;
    }
    /* Our own checks above decided which keys may be used (pgp_trust):
     * gpg's trust model is not asked again. */
    if (fpr == NULL)
        ge = gpgme_op_encrypt(j->ctx, rcpts,
                              GPGME_ENCRYPT_ALWAYS_TRUST |
                                  GPGME_ENCRYPT_NO_ENCRYPT_TO,
                              in, cipher);
    else
        ge = gpgme_op_encrypt_sign(j->ctx, rcpts,
                                   GPGME_ENCRYPT_ALWAYS_TRUST |
                                       GPGME_ENCRYPT_NO_ENCRYPT_TO,
                                   in, cipher);
    if (ge != 0) {
        flt_enc_gpg_err(e, ERR_TEMP, fpr == NULL ? "encrypt" : "encrypt+sign",
                        ge);
        goto out;
    }
    res = gpgme_op_encrypt_result(j->ctx);
    if (res != NULL && res->invalid_recipients != NULL) {
        err_set(e, ERR_TEMP, "gpgme: encrypt: key %s refused: %s",
                res->invalid_recipients->fpr != NULL
                    ? res->invalid_recipients->fpr
                    : "?",
                gpgme_strerror(res->invalid_recipients->reason));
        goto out;
    }
    if (fpr != NULL && flt_enc_pgp_signed(j, fpr, e) < 0)
        goto out;
    text = gpgme_data_release_and_get_mem(cipher, &tlen);
    cipher = NULL;
    if (text == NULL || tlen == 0) {
        gpgme_free(text);
        err_set(e, ERR_TEMP, "gpgme: encrypt gave no output");
        goto out;
    }
    rc = buf_append(out, text, tlen, e);
    gpgme_free(text);

out:
    if (fpr != NULL && rc < 0 && cached) {
        /* The signer came from the cache: forget it, and ask gpg again,
         * so that a secret key removed since is named as the reason. */
        snprintf(name, sizeof(name), "sign:%s", fpr);
        flt_enc_pgp_cache_drop(j->p, name);
        err_clear(&why);
        if (flt_enc_pgp_signer(j, fpr, ERR_TEMP, NULL, &why) < 0)
            *e = why;
    }
    if (fpr != NULL)
        gpgme_signers_clear(j->ctx);
    gpgme_data_release(in);
    gpgme_data_release(cipher);
    free(rcpts);
    return rc;
}

int
flt_enc_pgp_encrypt(struct flt_enc_pgp_job *j, const size_t *slots,
                    size_t nslots, const char *data, size_t len,
                    struct buf *out, struct err *e)
{
    return flt_enc_pgp_run(j, slots, nslots, NULL, data, len, out, e);
}

int
flt_enc_pgp_encrypt_sign(struct flt_enc_pgp_job *j, const size_t *slots,
                         size_t nslots, const char *fpr, const char *data,
                         size_t len, struct buf *out, struct err *e)
{
    return flt_enc_pgp_run(j, slots, nslots, fpr, data, len, out, e);
}

int
flt_enc_pgp_list(struct flt_enc_pgp *p, struct buf *out, struct err *e)
{
    struct flt_enc_pgp_job *j;
    gpgme_key_t k;
    gpgme_user_id_t uid;
    gpgme_error_t ge;
    const char *why;
    int rc = 0;

    if ((j = flt_enc_pgp_job_new(p, e)) == NULL)
        return -1;
    if ((ge = gpgme_op_keylist_start(j->ctx, NULL, 0)) != 0) {
        flt_enc_pgp_job_free(j);
        return flt_enc_gpg_err(e, ERR_TEMP, "key listing", ge);
    }
    while (rc == 0) {
        ge = gpgme_op_keylist_next(j->ctx, &k);
        if (gpg_err_code(ge) == GPG_ERR_EOF)
            break;
        if (ge != 0) {
            rc = flt_enc_gpg_err(e, ERR_TEMP, "key listing", ge);
            break;
        }
        why = flt_enc_pgp_refusal(p, k, NULL);
        rc = buf_printf(out, e, "pgp 0x%s", flt_enc_pgp_keyid(k));
        for (uid = k->uids; rc == 0 && uid != NULL; uid = uid->next)
            rc = buf_printf(out, e, "%s %s", uid == k->uids ? "" : ",",
                            uid->uid != NULL ? uid->uid : "");
        if (rc == 0)
            rc = buf_printf(out, e, ": %s%s%s\n",
                            why == NULL ? "usable" : "refused (",
                            why == NULL ? "" : why, why == NULL ? "" : ")");
        gpgme_key_unref(k);
    }
    gpgme_op_keylist_end(j->ctx);
    flt_enc_pgp_job_free(j);
    return rc;
}

/* ---- for the archive stage's encrypt_to (filters/archive/archive_crypt.c) */

void
flt_enc_pgp_job_binary(struct flt_enc_pgp_job *j)
{
    gpgme_set_armor(j->ctx, 0);
}

/* flt_enc_pgp_fpr_ok - 1 when s is 16 or 40 hex digits (a long key ID
 * or a v4 fingerprint), with or without "0x". */
static int
flt_enc_pgp_fpr_ok(const char *s)
{
    size_t n;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    n = strspn(s, "0123456789abcdefABCDEF");
    return s[n] == '\0' && (n == 16 || n == 40);
}

int
flt_enc_pgp_lookup_fpr(struct flt_enc_pgp_job *j, const char *fpr,
                       size_t *slot, char *id, size_t n, char *why, size_t wn,
                       struct err *e)
{
    gpgme_key_t k = NULL;
    gpgme_error_t ge;
    const char *r;
    char stamp[256];
    int cache = j->p->cache_time > 0;

    snprintf(why, wn, "%s", "");
    if (!flt_enc_pgp_fpr_ok(fpr))
        return err_set(e, ERR_INPUT,
                       "%s: give a fingerprint (40 hex digits) or a long key "
                       "ID (16)",
                       fpr);
    if (fpr[0] == '0' && (fpr[1] == 'x' || fpr[1] == 'X'))
        fpr += 2;
    /* Only usable answers are kept: a refusal is asked again, so that its
     * reason can be told. */
    if (!cache ||
        !flt_enc_pgp_cache_get(j->p, fpr, &k, stamp, sizeof(stamp)) ||
        k == NULL) {
        ge = gpgme_get_key(j->ctx, fpr, &k, 0);
        if (gpg_err_code(ge) == GPG_ERR_EOF) {
            snprintf(why, wn, "no such key in the keyring");
            return 0;
        }
        if (gpg_err_code(ge) == GPG_ERR_AMBIGUOUS_NAME) {
            snprintf(why, wn, "more than one key matches");
            return 0;
        }
        if (ge != 0)
            return flt_enc_gpg_err(e, ERR_TEMP, "key lookup", ge);
        if ((r = flt_enc_pgp_refusal(j->p, k, NULL)) != NULL) {
            snprintf(why, wn, "%s", r);
            gpgme_key_unref(k);
            return 0;
        }
        if (cache)
            flt_enc_pgp_cache_put(j->p, fpr, k, stamp);
    }
    if (j->nkeys == j->cap) {
        size_t cap = j->cap == 0 ? 8 : j->cap * 2;
        gpgme_key_t *nk;

        if (cap > FLT_ENC_PGP_MAX_KEYS ||
            (nk = realloc(j->keys, cap * sizeof(*nk))) == NULL) {
            gpgme_key_unref(k);
            return err_nomem(e);
        }
        j->keys = nk;
        j->cap = cap;
    }
    *slot = j->nkeys;
    j->keys[j->nkeys++] = k;
    snprintf(id, n, "%s",
             k->subkeys != NULL && k->subkeys->fpr != NULL ? k->subkeys->fpr
                                                           : fpr);
    return 1;
}
