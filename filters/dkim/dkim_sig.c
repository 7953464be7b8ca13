/*
 * dkim_sig - DKIM signatures (RFC 6376, RFC 8463) made and checked with
 *     keys that were loaded once
 *
 *     flt_dkim_sig_make()   the value of a new DKIM-Signature field
 *     flt_dkim_sig_check()  verify one signature over the final bytes
 *
 * Why not libopendkim's dkim_sign(): it takes the private key as text and
 * parses it again for every message. With OpenSSL 3 that parse costs about
 * 280 us, more than the RSA 2048 signature itself (about 210 us), so a
 * stage built that way signs at a fifth of what the machine can. Here the
 * key is an EVP_PKEY made once at start, and the per-message cost is the
 * two hashes and the private-key operation.
 *
 * Both functions read the message the same way a verifier does: the header
 * split into fields at lines that do not start with white space, fields
 * picked for h= from the bottom up (RFC 6376 5.4.2), "simple" and "relaxed"
 * canonicalization (3.4), the body hash over the canonical body (no l=),
 * then the header hash over the picked fields and the DKIM-Signature field
 * itself with an empty b= value, signed with RSASSA-PKCS1-v1_5 SHA-256 or
 * with Ed25519 over the SHA-256 digest (RFC 8463). The check does not use
 * anything the signer computed: it finds the field in the final bytes,
 * reads its tags, and hashes those bytes again. The dkim stage can also
 * hand the check to libopendkim (self_check = libopendkim) for a second,
 * independent implementation; the test suite verifies every signature with
 * dkimpy and Mail::DKIM as well.
 *
 * A message line that ends without CRLF (only the last can) is hashed as
 * if it had one, as the SMTP client that sends the message will add it.
 *
 * Memory: a field array for the header and one buffer for the canonical
 * header, both freed before return; the body is hashed in place through a
 * fixed buffer on the stack. Failures are memory and OpenSSL errors, with
 * OpenSSL's queue cleared.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "filters/dkim/dkim_sig.h"
#include "filters/filters.h"

#define FLT_DKIM_SIG_FOLD 76         /* columns before the next tag folds */
#define FLT_DKIM_SIG_B64_LINE 64     /* base64 octets on a folded line */
#define FLT_DKIM_SIG_CHUNK 8192      /* canonical body octets hashed at once */
#define FLT_DKIM_SIG_MAX_OCTETS 1024 /* raw signature (RSA 8192 is 1024) */
#define FLT_DKIM_SIG_HDR "DKIM-Signature"

/* One header field of the wire: [p, p + len) including its CRLF. */
struct flt_dkim_field {
    const char *p;
    size_t len;
    size_t name_len; /* the name without white space before the colon;
                        0 when the line has no colon */
    int used;        /* picked for h= already */
};

struct flt_dkim_header {
    struct flt_dkim_field *f;
    size_t n;
    size_t body; /* offset of the body in the wire */
};

/* ------------------------------------------------------------ header */

static int
flt_dkim_sig_is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

/* flt_dkim_sig_is_fws - white space, folding included. */
static int
flt_dkim_sig_is_fws(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* flt_dkim_sig_split - the fields of wire's header, and where its body
 * starts. */
static int
flt_dkim_sig_split(const char *wire, size_t len, struct flt_dkim_header *h,
                   struct err *e)
{
    const char *p = wire, *end = wire + len, *nl, *colon;
    size_t cap = 0;

    h->f = NULL;
    h->n = 0;
    while (p < end) {
        struct flt_dkim_field *f;
        const char *q = p;

        if (*p == '\r' || *p == '\n') { /* the empty line */
            p += (*p == '\r' && end - p >= 2 && p[1] == '\n') ? 2 : 1;
            break;
        }
        for (;;) { /* to the end of the field's last line */
            nl = memchr(q, '\n', (size_t)(end - q));
            q = nl == NULL ? end : nl + 1;
            if (q >= end || !flt_dkim_sig_is_wsp((unsigned char)*q))
                break;
        }
        if (h->n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            struct flt_dkim_field *nf = realloc(h->f, ncap * sizeof(*nf));

            if (nf == NULL) {
                free(h->f);
                h->f = NULL;
                return err_set(e, ERR_NOMEM, "out of memory");
            }
            h->f = nf;
            cap = ncap;
        }
        f = &h->f[h->n++];
        f->p = p;
        f->len = (size_t)(q - p);
        f->used = 0;
        f->name_len = 0;
        colon = memchr(p, ':', f->len);
        if (colon != NULL) {
            f->name_len = (size_t)(colon - p);
            while (f->name_len > 0 &&
                   flt_dkim_sig_is_wsp((unsigned char)p[f->name_len - 1]))
                f->name_len--;
        }
        p = q;
    }
    h->body = (size_t)(p - wire);
    return 0;
}

/* flt_dkim_sig_text_len - f's length without its line end. */
static size_t
flt_dkim_sig_text_len(const struct flt_dkim_field *f)
{
    size_t n = f->len;

    if (n > 0 && f->p[n - 1] == '\n')
        n--;
    if (n > 0 && f->p[n - 1] == '\r')
        n--;
    return n;
}

static int
flt_dkim_sig_name_is(const struct flt_dkim_field *f, const char *name,
                     size_t n)
{
    return f->name_len == n && strncasecmp(f->p, name, n) == 0;
}

/* flt_dkim_sig_pick - the bottom-most field called [name, name + n) that
 * h= has not picked yet, marked as picked; NULL when there is none (the
 * name then stands for a field that is absent, which is how oversigning
 * works). */
static struct flt_dkim_field *
flt_dkim_sig_pick(struct flt_dkim_header *h, const char *name, size_t n)
{
    size_t i;

    for (i = h->n; i-- > 0;)
        if (!h->f[i].used && flt_dkim_sig_name_is(&h->f[i], name, n)) {
            h->f[i].used = 1;
            return &h->f[i];
        }
    return NULL;
}

/* flt_dkim_sig_canon_field - field text [p, p + n) (its CRLF included when
 * crlf) in canonical form, appended to out. Relaxed: the name in lower
 * case, the value unfolded, runs of white space made one space, white
 * space around the colon and at the end removed, and CRLF at the end. */
static int
flt_dkim_sig_canon_field(const char *p, size_t n, size_t name_len,
                         enum flt_dkim_canon canon, struct buf *out,
                         struct err *e)
{
    const char *end = p + n, *v;
    int space = 0, any = 0;
    size_t i;

    if (canon == FLT_DKIM_SIMPLE)
        return buf_append(out, p, n, e);
    if (buf_reserve(out, n + 2, e) < 0)
        return -1;
    for (i = 0; i < name_len; i++)
        out->data[out->len++] =
            (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    out->data[out->len++] = ':';
    v = memchr(p, ':', n);
    for (v = v == NULL ? end : v + 1; v < end; v++) {
        if (*v == '\r' || *v == '\n')
            continue;
        if (flt_dkim_sig_is_wsp((unsigned char)*v)) {
            space = 1;
            continue;
        }
        if (space && any)
            out->data[out->len++] = ' ';
        space = 0;
        any = 1;
        out->data[out->len++] = *v;
    }
    out->data[out->len++] = '\r';
    out->data[out->len++] = '\n';
    out->data[out->len] = '\0';
    return 0;
}

/* flt_dkim_sig_canon_hdrs - the fields that the names in hlist (a ':'
 * separated h= value, white space allowed around names) pick, in
 * canonical form, appended to out. */
static int
flt_dkim_sig_canon_hdrs(struct flt_dkim_header *h, const char *hlist,
                        size_t hlen, enum flt_dkim_canon canon,
                        struct buf *out, struct err *e)
{
    const char *p = hlist, *end = hlist + hlen, *q, *s, *t;
    struct flt_dkim_field *f;
    size_t i;

    for (i = 0; i < h->n; i++)
        h->f[i].used = 0;
    while (p < end) {
        q = memchr(p, ':', (size_t)(end - p));
        if (q == NULL)
            q = end;
        for (s = p; s < q && flt_dkim_sig_is_fws((unsigned char)*s); s++)
            ;
        for (t = q; t > s && flt_dkim_sig_is_fws((unsigned char)t[-1]); t--)
            ;
        if (t > s && (f = flt_dkim_sig_pick(h, s, (size_t)(t - s))) != NULL &&
            flt_dkim_sig_canon_field(f->p, f->len, f->name_len, canon, out,
                                     e) < 0)
            return -1;
        p = q + 1;
    }
    return 0;
}

/* -------------------------------------------------------------- body */

struct flt_dkim_body_hash {
    EVP_MD_CTX *md;
    char chunk[FLT_DKIM_SIG_CHUNK];
    size_t used;
};

static int
flt_dkim_sig_put(struct flt_dkim_body_hash *bh, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = sizeof(bh->chunk) - bh->used;

        if (k > n)
            k = n;
        memcpy(bh->chunk + bh->used, p, k);
        bh->used += k;
        p += k;
        n -= k;
        if (bh->used == sizeof(bh->chunk)) {
            if (EVP_DigestUpdate(bh->md, bh->chunk, bh->used) != 1)
                return -1;
            bh->used = 0;
        }
    }
    return 0;
}

/* flt_dkim_sig_is_relaxed - [p, end) has no tab and no two spaces in a
 * row: relaxed canonicalization leaves it as it is. */
static int
flt_dkim_sig_is_relaxed(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p == '\t' || (*p == ' ' && p + 1 < end && p[1] == ' '))
            return 0;
    return 1;
}

/* flt_dkim_sig_body - the SHA-256 digest of the canonical body (RFC 6376
 * 3.4.3 and 3.4.4) into digest (32 octets). Lines are hashed in order;
 * empty lines are only counted until a line with content follows, so
 * those at the end drop out. */
static int
flt_dkim_sig_body(const char *p, size_t n, enum flt_dkim_canon canon,
                  unsigned char *digest, struct err *e)
{
    struct flt_dkim_body_hash *bh;
    const char *end = p + n, *nl, *le, *c;
    size_t empties = 0, lines = 0;
    unsigned len = 0;
    int rc = -1;

    if ((bh = malloc(sizeof(*bh))) == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    bh->used = 0;
    if ((bh->md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex(bh->md, EVP_sha256(), NULL) != 1)
        goto ssl;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        le = nl == NULL ? end : nl;
        if (le > p && le[-1] == '\r' && nl != NULL)
            le--;
        if (canon == FLT_DKIM_RELAXED) {
            /* The line's content without trailing white space, each
             * run of white space inside made one space. */
            const char *last = le;

            while (last > p && flt_dkim_sig_is_wsp((unsigned char)last[-1]))
                last--;
            if (last == p) {
                empties++;
            } else if (flt_dkim_sig_is_relaxed(p, last) && last == le &&
                       nl != NULL && le + 1 == nl) {
                /* Already canonical, CRLF included: most lines. */
                for (; empties > 0; empties--)
                    if (flt_dkim_sig_put(bh, "\r\n", 2) < 0)
                        goto ssl;
                if (flt_dkim_sig_put(bh, p, (size_t)(nl + 1 - p)) < 0)
                    goto ssl;
                lines++;
            } else {
                for (; empties > 0; empties--)
                    if (flt_dkim_sig_put(bh, "\r\n", 2) < 0)
                        goto ssl;
                for (c = p; c < last;) {
                    const char *run = c;

                    if (flt_dkim_sig_is_wsp((unsigned char)*c)) {
                        while (c < last &&
                               flt_dkim_sig_is_wsp((unsigned char)*c))
                            c++;
                        if (flt_dkim_sig_put(bh, " ", 1) < 0)
                            goto ssl;
                        continue;
                    }
                    while (c < last && !flt_dkim_sig_is_wsp((unsigned char)*c))
                        c++;
                    if (flt_dkim_sig_put(bh, run, (size_t)(c - run)) < 0)
                        goto ssl;
                }
                if (flt_dkim_sig_put(bh, "\r\n", 2) < 0)
                    goto ssl;
                lines++;
            }
        } else if (le == p) {
            empties++;
        } else {
            for (; empties > 0; empties--)
                if (flt_dkim_sig_put(bh, "\r\n", 2) < 0)
                    goto ssl;
            if (flt_dkim_sig_put(bh, p, (size_t)(le - p)) < 0 ||
                flt_dkim_sig_put(bh, "\r\n", 2) < 0)
                goto ssl;
            lines++;
        }
        p = nl == NULL ? end : nl + 1;
    }
    /* "simple" makes an empty body one CRLF; "relaxed" leaves it empty. */
    if (canon == FLT_DKIM_SIMPLE && lines == 0 &&
        flt_dkim_sig_put(bh, "\r\n", 2) < 0)
        goto ssl;
    if ((bh->used > 0 && EVP_DigestUpdate(bh->md, bh->chunk, bh->used) != 1) ||
        EVP_DigestFinal_ex(bh->md, digest, &len) != 1 || len != 32)
        goto ssl;
    rc = 0;
    goto out;
ssl:
    err_set(e, ERR_LIB, "SHA-256 of the body failed");
out:
    EVP_MD_CTX_free(bh->md);
    free(bh);
    ERR_clear_error();
    return rc;
}

/* flt_dkim_sig_body_memo - flt_dkim_sig_body() through memo (which may
 * be NULL): its digest when it was computed over these same octets, else
 * a new one, remembered when write is set. */
static int
flt_dkim_sig_body_memo(const char *p, size_t n, enum flt_dkim_canon canon,
                       const struct flt_dkim_body_memo *memo,
                       struct flt_dkim_body_memo *write, unsigned char *digest,
                       struct err *e)
{
    if (memo != NULL && memo->valid && memo->canon == canon &&
        memo->len == n && (memo->body == p || memcmp(memo->body, p, n) == 0)) {
        memcpy(digest, memo->digest, 32);
        return 0;
    }
    if (flt_dkim_sig_body(p, n, canon, digest, e) < 0)
        return -1;
    if (write != NULL) {
        write->body = p;
        write->len = n;
        write->canon = canon;
        write->valid = 1;
        memcpy(write->digest, digest, 32);
    }
    return 0;
}

int
flt_dkim_sig_body_hash(const char *p, size_t n, enum flt_dkim_canon canon,
                       char *out, struct err *e)
{
    unsigned char digest[32];

    if (flt_dkim_sig_body(p, n, canon, digest, e) < 0)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, digest, sizeof(digest));
    return 0;
}

/* ------------------------------------------------------- public key */

static int
flt_dkim_sig_sha256(const char *p, size_t n, unsigned char *digest)
{
    unsigned len = 0;

    return EVP_Digest(p, n, digest, &len, EVP_sha256(), NULL) == 1 && len == 32
               ? 0
               : -1;
}

struct flt_dkim_sig_key {
    EVP_PKEY *priv;
    EVP_PKEY *pub;
    int ed25519;
    EVP_PKEY_CTX *sign; /* RSA: set up once, copied for each use */
    EVP_PKEY_CTX *verify;
};

/* flt_dkim_sig_rsa_ctx - a context for RSASSA-PKCS1-v1_5 with SHA-256
 * digests, signing (sign set) or verifying with pkey; NULL on failure. */
static EVP_PKEY_CTX *
flt_dkim_sig_rsa_ctx(EVP_PKEY *pkey, int sign)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pkey, NULL);

    if (pc == NULL ||
        (sign ? EVP_PKEY_sign_init(pc) : EVP_PKEY_verify_init(pc)) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) <= 0) {
        EVP_PKEY_CTX_free(pc);
        return NULL;
    }
    return pc;
}

struct flt_dkim_sig_key *
flt_dkim_sig_key_new(EVP_PKEY *priv, EVP_PKEY *pub, struct err *e)
{
    struct flt_dkim_sig_key *k = calloc(1, sizeof(*k));

    if (k == NULL) {
        err_set(e, ERR_NOMEM, "out of memory");
        return NULL;
    }
    k->priv = priv;
    k->pub = pub;
    k->ed25519 = EVP_PKEY_get_base_id(priv) == EVP_PKEY_ED25519;
    if (!k->ed25519 && ((k->sign = flt_dkim_sig_rsa_ctx(priv, 1)) == NULL ||
                        (k->verify = flt_dkim_sig_rsa_ctx(pub, 0)) == NULL)) {
        flt_dkim_sig_key_free(k);
        ERR_clear_error();
        err_set(e, ERR_LIB, "cannot set up RSA signing with this key");
        return NULL;
    }
    return k;
}

void
flt_dkim_sig_key_free(struct flt_dkim_sig_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_CTX_free(k->sign);
    EVP_PKEY_CTX_free(k->verify);
    free(k);
}

/* flt_dkim_sig_sign_digest - the signature over a SHA-256 digest. RSA
 * works on a copy of the key's context: EVP_PKEY_CTX_dup() only reads
 * its source, so threads may copy the one context at once. */
static int
flt_dkim_sig_sign_digest(const struct flt_dkim_sig_key *k,
                         const unsigned char *digest, unsigned char *sig,
                         size_t *siglen)
{
    int ok = 0;

    if (k->ed25519) {
        EVP_MD_CTX *mc = EVP_MD_CTX_new();

        ok = mc != NULL &&
             EVP_DigestSignInit(mc, NULL, NULL, NULL, k->priv) == 1 &&
             EVP_DigestSign(mc, sig, siglen, digest, 32) == 1;
        EVP_MD_CTX_free(mc);
    } else {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_dup(k->sign);

        ok = pc != NULL && EVP_PKEY_sign(pc, sig, siglen, digest, 32) == 1;
        EVP_PKEY_CTX_free(pc);
    }
    return ok ? 0 : -1;
}

/* flt_dkim_sig_verify_digest - 1 when sig holds for the digest. */
static int
flt_dkim_sig_verify_digest(const struct flt_dkim_sig_key *k,
                           const unsigned char *digest,
                           const unsigned char *sig, size_t siglen)
{
    int ok = 0;

    if (k->ed25519) {
        EVP_MD_CTX *mc = EVP_MD_CTX_new();

        ok = mc != NULL &&
             EVP_DigestVerifyInit(mc, NULL, NULL, NULL, k->pub) == 1 &&
             EVP_DigestVerify(mc, sig, siglen, digest, 32) == 1;
        EVP_MD_CTX_free(mc);
    } else {
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_dup(k->verify);

        ok = pc != NULL && EVP_PKEY_verify(pc, sig, siglen, digest, 32) == 1;
        EVP_PKEY_CTX_free(pc);
    }
    ERR_clear_error();
    return ok;
}

/* -------------------------------------------------------------- make */

/* flt_dkim_sig_tag - append "; " and the tag name=value to the field
 * text f (CRLF folding), folding first when the line would pass the fold
 * column. */
static int
flt_dkim_sig_tag(struct buf *f, size_t *col, const char *name,
                 const char *value, struct err *e)
{
    size_t n = strlen(name) + strlen(value);

    if (*col + 2 + n > FLT_DKIM_SIG_FOLD) {
        if (buf_append(f, ";\r\n\t", 4, e) < 0)
            return -1;
        *col = 8;
    } else {
        if (buf_append(f, "; ", 2, e) < 0)
            return -1;
        *col += 2;
    }
    *col += n;
    return buf_puts(f, name, e) < 0 ? -1 : buf_puts(f, value, e);
}

/* flt_dkim_sig_hname - append one name to the h= value being written
 * (n names so far), folding at the colon when the line gets long. */
static int
flt_dkim_sig_hname(struct buf *f, size_t *col, size_t *n, const char *name,
                   size_t len, struct err *e)
{
    if (*n > 0) {
        if (*col + 1 + len > FLT_DKIM_SIG_FOLD) {
            if (buf_append(f, ":\r\n\t", 4, e) < 0)
                return -1;
            *col = 8;
        } else {
            if (buf_putc(f, ':', e) < 0)
                return -1;
            (*col)++;
        }
    }
    (*n)++;
    *col += len;
    return buf_append(f, name, len, e);
}

/* flt_dkim_sig_hlist - the h= value for s over the header h: each field
 * of sign_hdrs present, top to bottom, as the message spells its name,
 * then each oversign_hdrs name once more; folded at the colons. */
static int
flt_dkim_sig_hlist(const struct flt_dkim_sign *s,
                   const struct flt_dkim_header *h, struct buf *f, size_t *col,
                   struct err *e)
{
    const char *const *name;
    size_t i, n = 0;
    int from = 0;

    for (i = 0; i < h->n; i++)
        for (name = s->sign_hdrs; *name != NULL; name++)
            if (flt_dkim_sig_name_is(&h->f[i], *name, strlen(*name))) {
                if (flt_dkim_sig_hname(f, col, &n, h->f[i].p, h->f[i].name_len,
                                       e) < 0)
                    return -1;
                from |= flt_dkim_sig_name_is(&h->f[i], "From", 4);
                break;
            }
    for (name = s->oversign_hdrs; *name != NULL; name++) {
        if (strcasecmp(*name, "From") == 0)
            from = 1;
        if (flt_dkim_sig_hname(f, col, &n, *name, strlen(*name), e) < 0)
            return -1;
    }
    /* From is always signed (RFC 6376 5.4), if only as absent. */
    return from ? 0 : flt_dkim_sig_hname(f, col, &n, "From", 4, e);
}

/* flt_dkim_sig_b64 - base64 of n octets into out (room for 4 * ((n + 2)
 * / 3) + 1). */
static size_t
flt_dkim_sig_b64(const unsigned char *p, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

/* flt_dkim_sig_header_digest - the header hash: the fields hlist picks
 * and then the signature field [sig, sig + n) itself (b= already empty,
 * no CRLF), all in canonical form. */
static int
flt_dkim_sig_header_digest(struct flt_dkim_header *h, const char *hlist,
                           size_t hlen, const char *sig, size_t n,
                           enum flt_dkim_canon canon, unsigned char *digest,
                           struct err *e)
{
    struct buf c;
    int rc = -1;

    buf_init(&c, 0);
    if (flt_dkim_sig_canon_hdrs(h, hlist, hlen, canon, &c, e) < 0 ||
        flt_dkim_sig_canon_field(sig, n, strlen(FLT_DKIM_SIG_HDR), canon, &c,
                                 e) < 0)
        goto out;
    if (canon == FLT_DKIM_RELAXED)
        c.len -= 2; /* the signature field is hashed without its CRLF */
    if (flt_dkim_sig_sha256(c.data, c.len, digest) < 0) {
        err_set(e, ERR_LIB, "SHA-256 of the header failed");
        goto out;
    }
    rc = 0;
out:
    buf_fini(&c);
    ERR_clear_error();
    return rc;
}

static const char *
flt_dkim_sig_canon_name(enum flt_dkim_canon c)
{
    return c == FLT_DKIM_RELAXED ? "relaxed" : "simple";
}

int
flt_dkim_sig_make(const struct flt_dkim_sign *s, const char *wire, size_t len,
                  struct flt_dkim_body_memo *memo, struct buf *out,
                  struct err *e)
{
    struct flt_dkim_header h;
    struct buf f;
    unsigned char bdigest[32], hdigest[32], sig[FLT_DKIM_SIG_MAX_OCTETS];
    char b64[4 * (FLT_DKIM_SIG_MAX_OCTETS / 3 + 1) + 1], tag[64];
    size_t col, hstart, hend, siglen = sizeof(sig), n, i, k;
    int rc = -1;

    if (flt_dkim_sig_split(wire, len, &h, e) < 0)
        return -1;
    buf_init(&f, 0);
    if (flt_dkim_sig_body_memo(wire + h.body, len - h.body, s->bcanon, memo,
                               memo, bdigest, e) < 0)
        goto out;
    if (buf_printf(
            &f, e, "%s: v=1; a=%s; c=%s/%s; d=%s; s=%s", FLT_DKIM_SIG_HDR,
            s->key->ed25519 ? "ed25519-sha256" : "rsa-sha256",
            flt_dkim_sig_canon_name(s->hcanon),
            flt_dkim_sig_canon_name(s->bcanon), s->domain, s->selector) < 0)
        goto out;
    col = f.len;
    snprintf(tag, sizeof(tag), "%llu", (unsigned long long)s->time);
    if (flt_dkim_sig_tag(&f, &col, "t=", tag, e) < 0)
        goto out;
    if (s->expire != 0) {
        snprintf(tag, sizeof(tag), "%llu", (unsigned long long)s->expire);
        if (flt_dkim_sig_tag(&f, &col, "x=", tag, e) < 0)
            goto out;
    }
    if ((s->signer != NULL && s->signer[0] != '\0' &&
         flt_dkim_sig_tag(&f, &col, "i=", s->signer, e) < 0) ||
        flt_dkim_sig_tag(&f, &col, "h=", "", e) < 0)
        goto out;
    hstart = f.len;
    if (flt_dkim_sig_hlist(s, &h, &f, &col, e) < 0)
        goto out;
    hend = f.len;
    flt_dkim_sig_b64(bdigest, sizeof(bdigest), tag);
    if (flt_dkim_sig_tag(&f, &col, "bh=", tag, e) < 0 ||
        flt_dkim_sig_tag(&f, &col, "b=", "", e) < 0)
        goto out;
    if (flt_dkim_sig_header_digest(&h, f.data + hstart, hend - hstart, f.data,
                                   f.len, s->hcanon, hdigest, e) < 0)
        goto out;
    if (flt_dkim_sig_sign_digest(s->key, hdigest, sig, &siglen) < 0) {
        err_set(e, ERR_LIB, "%s signature failed (d=%s, s=%s)",
                s->key->ed25519 ? "Ed25519" : "RSA", s->domain, s->selector);
        goto out;
    }
    n = flt_dkim_sig_b64(sig, siglen, b64);
    /* b= last, broken into lines of FLT_DKIM_SIG_B64_LINE octets. */
    for (i = 0; i < n; i += k) {
        k = i == 0 && col < FLT_DKIM_SIG_FOLD ? FLT_DKIM_SIG_FOLD - col
                                              : FLT_DKIM_SIG_B64_LINE;
        if (k > n - i)
            k = n - i;
        if ((i > 0 && buf_append(&f, "\r\n\t", 3, e) < 0) ||
            buf_append(&f, b64 + i, k, e) < 0)
            goto out;
    }
    /* The value, with LF folding for msg_header_*() and the milter. */
    if (buf_reserve(out, f.len, e) < 0)
        goto out;
    for (i = strlen(FLT_DKIM_SIG_HDR) + 2; i < f.len; i++)
        if (f.data[i] != '\r')
            out->data[out->len++] = f.data[i];
    out->data[out->len] = '\0';
    rc = 0;
out:
    OPENSSL_cleanse(hdigest, sizeof(hdigest));
    buf_fini(&f);
    free(h.f);
    ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------- check */

/* flt_dkim_sig_tags - RFC 6376 3.2: a tag-name is a letter and then
 * letters, digits and underscores, each name at most once, every tag has
 * its "=", white space (folding included) may surround names and
 * values, and a last ";" may end the list. */
int
flt_dkim_sig_tags(const char *p, const char *end, struct flt_dkim_tag *t,
                  int max)
{
    int n = 0, i;

    for (;;) {
        const char *q;

        while (p < end && flt_dkim_sig_is_fws((unsigned char)*p))
            p++;
        if (p == end)
            return n;
        if (n == max)
            return -1;
        t[n].name = p;
        while (p < end &&
               ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                (p > t[n].name && ((*p >= '0' && *p <= '9') || *p == '_'))))
            p++;
        t[n].name_len = (size_t)(p - t[n].name);
        while (p < end && flt_dkim_sig_is_fws((unsigned char)*p))
            p++;
        if (t[n].name_len == 0 || p == end || *p != '=')
            return -1;
        for (i = 0; i < n; i++)
            if (t[i].name_len == t[n].name_len &&
                memcmp(t[i].name, t[n].name, t[n].name_len) == 0)
                return -1;
        t[n].raw = ++p;
        q = memchr(p, ';', (size_t)(end - p));
        t[n].raw_end = q == NULL ? end : q;
        while (p < t[n].raw_end && flt_dkim_sig_is_fws((unsigned char)*p))
            p++;
        t[n].v = p;
        for (q = t[n].raw_end;
             q > p && flt_dkim_sig_is_fws((unsigned char)q[-1]); q--)
            ;
        t[n].vlen = (size_t)(q - p);
        p = t[n].raw_end < end ? t[n].raw_end + 1 : end;
        n++;
    }
}

const struct flt_dkim_tag *
flt_dkim_sig_find_tag(const struct flt_dkim_tag *t, int n, const char *name)
{
    size_t len = strlen(name);
    int i;

    for (i = 0; i < n; i++)
        if (t[i].name_len == len && memcmp(t[i].name, name, len) == 0)
            return &t[i];
    return NULL;
}

/* flt_dkim_tag_value - filters.h: a list that is not a tag list has no
 * tags; a value longer than out is cut short, as before the one parser. */
int
flt_dkim_tag_value(const char *list, const char *tag, char *out, size_t n)
{
    struct flt_dkim_tag t[FLT_DKIM_SIG_TAGS_MAX];
    const struct flt_dkim_tag *f;
    size_t i, o = 0;
    int nt;

    nt =
        flt_dkim_sig_tags(list, list + strlen(list), t, FLT_DKIM_SIG_TAGS_MAX);
    if (nt < 0 || (f = flt_dkim_sig_find_tag(t, nt, tag)) == NULL)
        return 0;
    for (i = 0; i < f->vlen; i++)
        if (!flt_dkim_sig_is_fws((unsigned char)f->v[i]) && o + 1 < n)
            out[o++] = f->v[i];
    if (n > 0)
        out[o] = '\0';
    return 1;
}

static int
flt_dkim_sig_tag_is(const struct flt_dkim_tag *t, const char *s)
{
    return t != NULL && t->vlen == strlen(s) &&
           strncasecmp(t->v, s, t->vlen) == 0;
}

/* flt_dkim_sig_unfws - the value without white space, into out (n octets
 * of room); returns its length, or SIZE_MAX when it does not fit. */
static size_t
flt_dkim_sig_unfws(const struct flt_dkim_tag *t, char *out, size_t n)
{
    size_t i, k = 0;

    for (i = 0; i < t->vlen; i++) {
        if (flt_dkim_sig_is_fws((unsigned char)t->v[i]))
            continue;
        if (k + 1 >= n)
            return SIZE_MAX;
        out[k++] = t->v[i];
    }
    out[k] = '\0';
    return k;
}

/* flt_dkim_sig_canons - the c= value into h and b; -1 when unknown. */
static int
flt_dkim_sig_canons(const struct flt_dkim_tag *t, enum flt_dkim_canon *h,
                    enum flt_dkim_canon *b)
{
    static const char *const names[] = {"simple", "relaxed"};
    const char *slash;
    size_t hl, i;
    int hv = -1, bv = -1;

    *h = *b = FLT_DKIM_SIMPLE;
    if (t == NULL)
        return 0;
    slash = memchr(t->v, '/', t->vlen);
    hl = slash != NULL ? (size_t)(slash - t->v) : t->vlen;
    for (i = 0; i < 2; i++) {
        if (hl == strlen(names[i]) && strncasecmp(t->v, names[i], hl) == 0)
            hv = (int)i;
        if (slash != NULL && t->vlen - hl - 1 == strlen(names[i]) &&
            strncasecmp(slash + 1, names[i], t->vlen - hl - 1) == 0)
            bv = (int)i;
    }
    if (hv < 0 || (slash != NULL && bv < 0))
        return -1;
    *h = hv ? FLT_DKIM_RELAXED : FLT_DKIM_SIMPLE;
    *b = bv > 0 ? FLT_DKIM_RELAXED : FLT_DKIM_SIMPLE;
    return 0;
}

/* flt_dkim_sig_find - the topmost DKIM-Signature field of h whose d= and
 * s= are domain and selector, its tags in t (*nt of them); NULL when
 * there is none. A field whose tag list cannot be read is not ours. */
static const struct flt_dkim_field *
flt_dkim_sig_find(const struct flt_dkim_header *h, const char *domain,
                  const char *selector, struct flt_dkim_tag *t, int *nt)
{
    size_t i, name = strlen(FLT_DKIM_SIG_HDR);

    for (i = 0; i < h->n; i++) {
        const struct flt_dkim_field *f = &h->f[i];
        const char *v;

        if (!flt_dkim_sig_name_is(f, FLT_DKIM_SIG_HDR, name))
            continue;
        v = (const char *)memchr(f->p, ':', f->len) + 1;
        *nt = flt_dkim_sig_tags(v, f->p + flt_dkim_sig_text_len(f), t,
                                FLT_DKIM_SIG_TAGS_MAX);
        if (*nt >= 0 &&
            flt_dkim_sig_tag_is(flt_dkim_sig_find_tag(t, *nt, "d"), domain) &&
            flt_dkim_sig_tag_is(flt_dkim_sig_find_tag(t, *nt, "s"), selector))
            return f;
    }
    return NULL;
}

int
flt_dkim_sig_check(const struct flt_dkim_sig_key *key, const char *domain,
                   const char *selector, const char *wire, size_t len,
                   const struct flt_dkim_body_memo *memo, char *why, size_t wn,
                   struct err *e)
{
    struct flt_dkim_tag t[FLT_DKIM_SIG_TAGS_MAX];
    const struct flt_dkim_tag *bh, *b, *hl;
    const struct flt_dkim_field *f;
    struct flt_dkim_header h;
    enum flt_dkim_canon hc, bc;
    /* text holds a b= value of a signature up to FLT_DKIM_SIG_MAX_OCTETS,
     * and sig what the longest text that fits decodes to. */
    char text[4 * ((FLT_DKIM_SIG_MAX_OCTETS + 2) / 3) + 1], mine[48];
    unsigned char digest[32], sig[sizeof(text) / 4 * 3];
    struct buf nob;
    size_t n, flen;
    int nt = 0, rc = 1, dec;

    if (flt_dkim_sig_split(wire, len, &h, e) < 0)
        return -1;
    buf_init(&nob, 0);
    if ((f = flt_dkim_sig_find(&h, domain, selector, t, &nt)) == NULL) {
        snprintf(why, wn, "signature not found");
        goto out;
    }
    bh = flt_dkim_sig_find_tag(t, nt, "bh");
    b = flt_dkim_sig_find_tag(t, nt, "b");
    hl = flt_dkim_sig_find_tag(t, nt, "h");
    if (!flt_dkim_sig_tag_is(flt_dkim_sig_find_tag(t, nt, "v"), "1") ||
        bh == NULL || b == NULL || hl == NULL ||
        flt_dkim_sig_canons(flt_dkim_sig_find_tag(t, nt, "c"), &hc, &bc) < 0) {
        snprintf(why, wn, "bad tag list (v=, h=, bh=, b= or c=)");
        goto out;
    }
    if (!flt_dkim_sig_tag_is(flt_dkim_sig_find_tag(t, nt, "a"),
                             key->ed25519 ? "ed25519-sha256" : "rsa-sha256")) {
        snprintf(why, wn, "a= is not %s",
                 key->ed25519 ? "ed25519-sha256" : "rsa-sha256");
        goto out;
    }

    /* The body hash, from the bytes that leave. */
    if (flt_dkim_sig_body_memo(wire + h.body, len - h.body, bc, memo, NULL,
                               digest, e) < 0) {
        rc = -1;
        goto out;
    }
    flt_dkim_sig_b64(digest, sizeof(digest), mine);
    n = flt_dkim_sig_unfws(bh, text, sizeof(text));
    if (n == SIZE_MAX || strcmp(text, mine) != 0) {
        snprintf(why, wn, "body hash");
        goto out;
    }

    /* The header hash: the field itself with b= emptied, no CRLF. */
    flen = flt_dkim_sig_text_len(f);
    if (buf_append(&nob, f->p, (size_t)(b->raw - f->p), e) < 0 ||
        buf_append(&nob, b->raw_end, (size_t)(f->p + flen - b->raw_end), e) <
            0 ||
        flt_dkim_sig_header_digest(&h, hl->v, hl->vlen, nob.data, nob.len, hc,
                                   digest, e) < 0) {
        rc = -1;
        goto out;
    }
    n = flt_dkim_sig_unfws(b, text, sizeof(text));
    dec = n == SIZE_MAX || n == 0 || n % 4 != 0
              ? -1
              : EVP_DecodeBlock(sig, (const unsigned char *)text, (int)n);
    if (dec < 0) {
        ERR_clear_error();
        snprintf(why, wn, "b= is not base64");
        goto out;
    }
    dec -= (text[n - 1] == '=') + (text[n - 2] == '=');
    if (!flt_dkim_sig_verify_digest(key, digest, sig, (size_t)dec)) {
        snprintf(why, wn, "header hash");
        goto out;
    }
    rc = 0;
out:
    buf_fini(&nob);
    free(h.f);
    return rc;
}
