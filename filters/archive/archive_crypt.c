/*
 * archive_crypt - the archive stage's encrypt_to: records encrypted at
 *     rest to one OpenPGP key or S/MIME certificate
 *
 *     encrypt_to = pgp:FINGERPRINT       (or pgp:ADDRESS, with pgp_home)
 *     encrypt_to = smime:/path/cert.pem  (one certificate; with
 *                                         smime_ca_file, its chain)
 *
 * The engines are the encrypt stage's (filters/encrypt/encrypt_int.h):
 * key lookup with its refusal reasons, GPGME and OpenSSL CMS. What is
 * encrypted is the record's body, the zstd frame of the message: the
 * payload decrypts with gpg --decrypt or openssl cms -decrypt to that
 * frame, and zstd -d gives the message octets. The record's meta and
 * its hash stay in clear (archive_record.c says why).
 *
 * arc_crypt_new() (at load) finds the key and refuses one that cannot
 * be used now, with the engine's reason. arc_crypt_encrypt() (per
 * record, from any thread) looks the key up again, so a key that
 * expired or was revoked since stops the records rather than being
 * used, and fails with ERR_TEMP whenever the engine does: the caller
 * tempfails the message, a record is never written in clear instead.
 *
 * Ownership: struct arc_crypt holds the engine and the key's spec;
 * read-only after arc_crypt_new(), freed by arc_crypt_free(). A GPGME
 * context is made per record (GPGME contexts are not thread-safe).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/archive/archive_int.h"
#include "filters/encrypt/encrypt_int.h"

/* A looked-up key's answer stays good this long (seconds). */
#define ARC_CRYPT_CACHE_TIME 60

struct arc_crypt {
    struct flt_enc_pgp *pgp;     /* pgp: */
    struct flt_enc_smime *smime; /* smime: */
    char *what;                  /* fingerprint or address (pgp:) */
    int by_addr;
};

void
arc_crypt_free(struct arc_crypt *k)
{
    if (k == NULL)
        return;
    flt_enc_pgp_free(k->pgp);
    flt_enc_smime_free(k->smime);
    free(k->what);
    free(k);
}

/* Refusal reasons of an address lookup, gathered for the error. */
struct arc_crypt_why {
    char text[400];
};

static void
arc_crypt_report(void *arg, const char *proto, const char *id, const char *who,
                 const char *why)
{
    struct arc_crypt_why *w = arg;
    size_t n = strlen(w->text);

    (void)proto;
    (void)who;
    if (why != NULL && n + 4 < sizeof(w->text))
        snprintf(w->text + n, sizeof(w->text) - n, "%s%s %s",
                 n > 0 ? "; " : "", id, why);
}

/* arc_crypt_pgp_key - the key of k into a new job's slot; 1 found, 0
 * refused (why says why), -1 with e. */
static int
arc_crypt_pgp_key(const struct arc_crypt *k, struct flt_enc_pgp_job *j,
                  size_t *slot, char *id, size_t n, char *why, size_t wn,
                  int with_reasons, struct err *e)
{
    struct arc_crypt_why w = {""};
    int rc;

    if (!k->by_addr)
        return flt_enc_pgp_lookup_fpr(j, k->what, slot, id, n, why, wn, e);
    rc = flt_enc_pgp_lookup(j, k->what, slot, id, n,
                            with_reasons ? arc_crypt_report : NULL, &w, e);
    if (rc == 0)
        snprintf(why, wn, "%s",
                 w.text[0] ? w.text : "no key with that user ID email");
    return rc;
}

struct arc_crypt *
arc_crypt_new(const char *value, const char *pgp_home, const char *ca_file,
              char *to, size_t ton, struct err *e)
{
    struct arc_crypt *k;
    char id[200], why[400];
    size_t slot;
    int rc;

    if ((k = calloc(1, sizeof(*k))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (strncmp(value, "pgp:", 4) == 0 && value[4] != '\0') {
        struct flt_enc_pgp_job *j;

        if (ca_file != NULL) {
            err_set(e, ERR_CONFIG, "smime_ca_file is for smime: only");
            goto fail;
        }
        if ((k->what = strdup(value + 4)) == NULL) {
            err_nomem(e);
            goto fail;
        }
        k->by_addr = strchr(k->what, '@') != NULL;
        if ((k->pgp = flt_enc_pgp_new(pgp_home, 0, ARC_CRYPT_CACHE_TIME, e)) ==
            NULL)
            goto fail;
        if ((j = flt_enc_pgp_job_new(k->pgp, e)) == NULL)
            goto fail;
        rc = arc_crypt_pgp_key(k, j, &slot, id, sizeof(id), why, sizeof(why),
                               1, e);
        flt_enc_pgp_job_free(j);
        if (rc < 0)
            goto fail;
        if (rc == 0) {
            err_set(e, ERR_CONFIG, "%s: no usable key in %s: %s", value,
                    pgp_home != NULL ? pgp_home : "GnuPG's home", why);
            goto fail;
        }
        snprintf(to, ton, "pgp:%s", id);
    } else if (strncmp(value, "smime:", 6) == 0 && value[6] == '/') {
        size_t i;
        const char *r;

        if (pgp_home != NULL) {
            err_set(e, ERR_CONFIG, "pgp_home is for pgp: only");
            goto fail;
        }
        if ((k->smime = flt_enc_smime_from_file(
                 value + 6, ca_file, ARC_CRYPT_CACHE_TIME, e)) == NULL)
            goto fail;
        /* One officer's certificate: a CA or a second certificate in the
         * file would be a recipient too, or be refused for its key
         * usage, which says less than this. */
        if (flt_enc_smime_count(k->smime) != 1) {
            err_set(e, ERR_CONFIG,
                    "%s holds %zu certificates: give a file with the "
                    "officer's certificate alone",
                    value + 6, flt_enc_smime_count(k->smime));
            goto fail;
        }
        for (i = 0; i < flt_enc_smime_count(k->smime); i++)
            if ((r = flt_enc_smime_check(k->smime, i, id, sizeof(id), why,
                                         sizeof(why))) != NULL) {
                err_set(e, ERR_CONFIG, "%s: certificate %s refused: %s",
                        value + 6, id, r);
                goto fail;
            }
        snprintf(to, ton, "smime:%s", id);
    } else {
        err_set(e, ERR_CONFIG,
                "%s: give pgp:FINGERPRINT, pgp:ADDRESS or "
                "smime:/path/cert.pem",
                value);
        goto fail;
    }
    return k;

fail:
    arc_crypt_free(k);
    return NULL;
}

int
arc_crypt_encrypt(void *arg, const char *data, size_t len, struct buf *out,
                  char *to, size_t ton, struct err *e)
{
    const struct arc_crypt *k = arg;
    char id[200], why[400];
    size_t slot, i, *slots;
    int rc;

    if (k->pgp != NULL) {
        struct flt_enc_pgp_job *j;

        /* The keyring is read again for each record: one that can not be
         * read fails the record, it is not taken for "no key". */
        if ((j = flt_enc_pgp_job_new(k->pgp, e)) == NULL)
            return -1;
        flt_enc_pgp_job_binary(j);
        rc = arc_crypt_pgp_key(k, j, &slot, id, sizeof(id), why, sizeof(why),
                               0, e);
        if (rc == 0)
            err_set(e, ERR_TEMP, "encrypt_to pgp:%s: no usable key now: %s",
                    k->what, why);
        if (rc == 1 &&
            (rc = flt_enc_pgp_encrypt(j, &slot, 1, data, len, out, e)) == 0)
            snprintf(to, ton, "pgp:%s", id);
        flt_enc_pgp_job_free(j);
        if (rc < 0 && e->code != ERR_NOMEM)
            e->code = ERR_TEMP;
        return rc < 0 ? -1 : 0;
    }
    if ((slots = calloc(flt_enc_smime_count(k->smime), sizeof(*slots))) ==
        NULL)
        return err_nomem(e);
    for (i = 0; i < flt_enc_smime_count(k->smime); i++) {
        const char *r =
            flt_enc_smime_check(k->smime, i, id, sizeof(id), why, sizeof(why));

        if (r != NULL) {
            free(slots);
            return err_set(e, ERR_TEMP,
                           "encrypt_to: certificate %s no longer usable: %s",
                           id, r);
        }
        slots[i] = i;
    }
    rc = flt_enc_smime_encrypt(k->smime, slots, i, data, len, NULL, out, e);
    free(slots);
    if (rc < 0) {
        if (e->code != ERR_NOMEM)
            e->code = ERR_TEMP;
        return -1;
    }
    snprintf(to, ton, "smime:%s", id);
    return 0;
}
