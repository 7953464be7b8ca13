/*
 * encrypt - OpenPGP (PGP/MIME) and S/MIME encryption of outbound mail,
 *     per recipient policy, never in clear by mistake
 *
 * Configuration (chain.d):
 *     policy_map, default_policy, trigger_header, subject_tag,
 *     preferred_protocol, on_missing_key, protect_subject,
 *     pgp_home, pgp_trust, key_cache_time, smime_cert_dir,
 *     smime_ca_file, smime_crl_file, smime_cipher, sign_key_map
 *
 * policy_map is a pcre_table(5) file (util/regmap.h) from a recipient
 * address to "never | opportunistic | required [pgp | smime | any]"; a
 * recipient no rule matches gets default_policy. A message carrying
 * trigger_header ("X-Encrypt: yes") or subject_tag ("[secure]") in its
 * Subject is required for every recipient; the trigger field and the tag
 * are removed before the message goes on.
 *
 * For each recipient the usable key of each protocol its policy allows is
 * looked up (encrypt_pgp.c, encrypt_smime.c). The SMTP front end asks at
 * RCPT time (rcpt_group): a required recipient without a key is refused
 * there alone (450 4.7.1); in through mode one whose copy would differ
 * from the first recipient's gets 452 4.5.3, so the client sends it in a
 * transaction of its own, and in queue mode the front end runs the chain
 * once per group on a copy for that group's recipients. The message
 * still has one body (struct msg; the milter front end cannot do
 * otherwise), so one form is chosen for
 * all recipients (encrypt_keys.c, flt_enc_decide): encrypted in one
 * protocol to every recipient's key, or clear when no recipient requires
 * encryption. A required recipient without a usable key makes the message
 * tempfail (451 4.7.1, or 550 5.7.1 with on_missing_key = reject); a mix
 * that no single body serves (a required recipient beside one that may
 * not or cannot get it encrypted) tempfails with 451 4.7.0. Neither ever
 * sends a clear copy.
 *
 * Formats: the whole original MIME entity (the Content-* fields and the
 * body, line ends made CRLF) is encrypted; with protect_subject = yes
 * every header field but the trace fields goes inside too, the
 * Content-Type marked hp="cipher" and the outer Subject replaced by
 * "[...]" (RFC 9788). PGP/MIME is RFC 3156's multipart/encrypted with the
 * ASCII-armored ciphertext; S/MIME is application/pkcs7-mime with
 * smime-type enveloped-data (authEnveloped-data with aes256-gcm). The
 * outer header keeps every field but the Content-* ones, which are
 * replaced. A message already encrypted (multipart/encrypted,
 * application/pkcs7-mime enveloped-data, and so inside: flt_enc_sealed)
 * passes as it is.
 *
 * Signing (sign_key_map, encrypt_sign.c): when the envelope sender
 * matches a rule, an encrypted copy is signed before it is encrypted
 * with the rule's key of the copy's protocol: PGP/MIME as one OpenPGP
 * message signed and encrypted (RFC 3156 6.2), S/MIME as signed-data
 * inside the enveloped-data (RFC 8551 3.7). A rule without a key of that
 * protocol leaves the copy unsigned and the log line says so; a copy
 * that goes in clear is never signed by this stage. A configured key
 * that fails at run time (its secret gone, gpg-agent down, CMS failing)
 * fails the message closed: tempfail, never an unsigned copy in its
 * place.
 *
 * Failures: any error of an engine (gpg missing, a keyring that cannot be
 * read, CMS failing, a limit) is an error of the stage and becomes a
 * tempfail; on_error = continue is refused for this stage, so an error
 * never lets a message through in clear, and an empty encryption is an
 * error.
 *
 * The log line names each recipient's outcome, in the verdict's note
 * (the stage logs them in a line of their own when they do not fit):
 *     QID: encrypt: continue, bob@example.net pgp 0x0123456789ABCDEF,
 *         trent@example.net pgp 0xFEDCBA9876543210, 31ms
 *     QID: encrypt: tempfail, eve@example.net refused (required, no
 *         key), 12ms
 *
 * The stage owns its policy map and engines, read-only after init() but
 * for the engines' lookup caches, which have their own locks.
 */
#include "config.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/encrypt/encrypt_int.h"
#include "filters/filters.h"
#include "filters/filters_int.h"
#include "msg/mime.h"
#include "util/log.h"

#define FLT_ENC_ID_MAX 80
#define FLT_ENC_RCPT_MAX 1000 /* recipients of one message */
#define FLT_ENC_LOG_MAX 1800  /* octets of the per-recipient log line */
#define FLT_ENC_ARMOR_BEGIN "\n-----BEGIN PGP MESSAGE-----"
#define FLT_ENC_ARMOR_END "\n-----END PGP MESSAGE-----"

static const char *const flt_enc_policy_choices[] = {"never", "opportunistic",
                                                     "required", NULL};
static const char *const flt_enc_proto_choices[] = {"pgp", "smime", NULL};
static const char *const flt_enc_trust_choices[] = {"always", "keyring", NULL};
static const char *const flt_enc_cipher_choices[] = {"aes256-cbc",
                                                     "aes256-gcm", NULL};
static const char *const flt_enc_missing_choices[] = {"tempfail", "reject",
                                                      NULL};

static const struct cfg_option flt_enc_options[] = {
    {"policy_map", CFG_PATH, NULL,
     "pcre_table(5) file from a recipient address to its policy: never, "
     "opportunistic or required, then optionally pgp, smime or any",
     NULL, 0, 0, 0},
    {"default_policy", CFG_ENUM, "never",
     "the policy of a recipient no rule of policy_map matches",
     flt_enc_policy_choices, 0, 0, 0},
    {"trigger_header", CFG_STRING, NULL,
     "a header field that makes the message required for every recipient, "
     "as NAME: VALUE (\"X-Encrypt: yes\"); removed before sending",
     NULL, 0, 0, 0},
    {"subject_tag", CFG_STRING, NULL,
     "a tag in the Subject (\"[secure]\") that makes the message required "
     "for every recipient; removed before sending",
     NULL, 0, 0, 0},
    {"preferred_protocol", CFG_ENUM, "pgp",
     "the protocol tried first when every recipient has keys of both",
     flt_enc_proto_choices, 0, 0, 0},
    {"on_missing_key", CFG_ENUM, "tempfail",
     "a required recipient without a usable key: tempfail (451 4.7.1) or "
     "reject (550 5.7.1); never a clear copy",
     flt_enc_missing_choices, 0, 0, 0},
    {"protect_subject", CFG_BOOL, "no",
     "header protection (RFC 9788): the header inside the encryption, "
     "\"[...]\" as the outer Subject",
     NULL, 0, 0, 0},
    {"pgp_home", CFG_PATH, NULL,
     "the GnuPG home with the recipients' public keys (gpg --homedir); "
     "unset: no OpenPGP",
     NULL, 0, 0, 0},
    {"pgp_trust", CFG_ENUM, "always",
     "always: any key with the address in a user ID's email; keyring: the "
     "user ID must also be valid (full or ultimate) in the keyring",
     flt_enc_trust_choices, 0, 0, 0},
    {"smime_cert_dir", CFG_PATH, NULL,
     "a directory of the recipients' PEM certificates (*.pem, *.crt); "
     "unset: no S/MIME",
     NULL, 0, 0, 0},
    {"smime_ca_file", CFG_PATH, NULL,
     "the CA certificates (PEM) the recipients' certificates must chain to",
     NULL, 0, 0, 0},
    {"smime_crl_file", CFG_PATH, NULL,
     "CRLs (PEM) of those CAs; a revoked certificate is not used", NULL, 0, 0,
     0},
    {"key_cache_time", CFG_TIME, "60s",
     "how long the answer of a key or certificate lookup is kept (a change "
     "of the GnuPG keyring or trust database drops every answer at once); "
     "0: look up for every message",
     NULL, 0, 86400LL * 1000, 0},
    {"smime_cipher", CFG_ENUM, "aes256-cbc",
     "aes256-cbc (enveloped-data, read by Outlook and Thunderbird alike) or "
     "aes256-gcm (authEnveloped-data, RFC 8551)",
     flt_enc_cipher_choices, 0, 0, 0},
    {"sign_key_map", CFG_PATH, NULL,
     "pcre_table(5) file from the envelope sender to the keys that sign "
     "its encrypted mail before the encryption: pgp:FINGERPRINT and/or "
     "smime:/CERT.pem:/KEY.pem; checked at load",
     NULL, 0, 0, 0},
    CFG_OPTION_END,
};

struct flt_enc {
    struct regmap *policy_map; /* may be NULL */
    enum flt_enc_policy def_policy;
    char *trigger_name, *trigger_value; /* NULL: no trigger header */
    const char *subject_tag;            /* borrowed from the cfg */
    unsigned preferred;
    int missing_reject;
    int protect_subject;
    struct flt_enc_pgp *pgp;      /* NULL: no OpenPGP */
    struct flt_enc_smime *smime;  /* NULL: no S/MIME */
    struct flt_enc_signmap *sign; /* NULL: nothing is signed */
};

static void
flt_enc_free(struct stage *st)
{
    struct flt_enc *fe = st->priv;

    if (fe == NULL)
        return;
    regmap_free(fe->policy_map);
    free(fe->trigger_name);
    free(fe->trigger_value);
    flt_enc_pgp_free(fe->pgp);
    flt_enc_smime_free(fe->smime);
    flt_enc_sign_free(fe->sign);
    free(fe);
    st->priv = NULL;
}

/* flt_enc_trigger - "NAME: VALUE" into fe. */
static int
flt_enc_trigger(struct flt_enc *fe, const struct cfg *c, struct err *e)
{
    const char *s = cfg_str(c, "trigger_header"), *colon, *v, *p;
    size_t vl;

    if (s == NULL)
        return 0;
    colon = strchr(s, ':');
    if (colon == NULL || colon == s)
        return cfg_err(e, c, "trigger_header",
                       "'%s' is not NAME: VALUE (X-Encrypt: yes)", s);
    for (p = s; p < colon; p++)
        if (*p <= ' ' || *p > '~')
            return cfg_err(e, c, "trigger_header",
                           "'%s': the field name holds a space or a "
                           "character a name may not have",
                           s);
    for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
        ;
    vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    if (vl == 0)
        return cfg_err(e, c, "trigger_header", "'%s' has no value", s);
    if ((fe->trigger_name = strndup(s, (size_t)(colon - s))) == NULL ||
        (fe->trigger_value = strndup(v, vl)) == NULL)
        return err_nomem(e);
    return 0;
}

/* flt_enc_init - policy_map is only loaded here: its results may hold
 * expansions ($1), so each is read as a policy when it is used
 * (flt_enc_policy_of), and one that is not fails the message closed. */
static int
flt_enc_init(struct stage *st, const struct cfg *c, struct err *e)
{
    struct flt_enc *fe;
    const char *home, *dir, *ca, *crl;
    long cache_s = (long)(cfg_num(c, "key_cache_time") / 1000);

    if (st->on_error == STAGE_ON_ERROR_CONTINUE)
        return err_set(e, ERR_CONFIG,
                       "%s: on_error = continue would send mail in clear "
                       "when encryption fails; the encrypt stage always "
                       "fails closed (tempfail)",
                       cfg_path(c));
    if ((fe = calloc(1, sizeof(*fe))) == NULL)
        return err_nomem(e);
    st->priv = fe;
    fe->def_policy = (enum flt_enc_policy)cfg_enum(c, "default_policy");
    fe->preferred =
        cfg_enum(c, "preferred_protocol") == 1 ? FLT_ENC_SMIME : FLT_ENC_PGP;
    fe->missing_reject = cfg_enum(c, "on_missing_key") == 1;
    fe->protect_subject = cfg_bool(c, "protect_subject");
    fe->subject_tag = cfg_str(c, "subject_tag");
    if (fe->subject_tag != NULL && fe->subject_tag[0] == '\0')
        fe->subject_tag = NULL;
    if (flt_enc_trigger(fe, c, e) < 0 ||
        flt_cfg_regmap(c, "policy_map", &fe->policy_map, e) < 0)
        goto fail;
    if (fe->policy_map == NULL && fe->def_policy == FLT_ENC_NEVER &&
        fe->trigger_name == NULL && fe->subject_tag == NULL) {
        err_set(e, ERR_CONFIG,
                "%s: the stage would never encrypt: set policy_map, "
                "default_policy, trigger_header or subject_tag",
                cfg_path(c));
        goto fail;
    }
    home = cfg_str(c, "pgp_home");
    dir = cfg_str(c, "smime_cert_dir");
    ca = cfg_str(c, "smime_ca_file");
    crl = cfg_str(c, "smime_crl_file");
    if (home == NULL && dir == NULL) {
        err_set(e, ERR_CONFIG,
                "%s: no keys: set pgp_home (OpenPGP) or smime_cert_dir and "
                "smime_ca_file (S/MIME)",
                cfg_path(c));
        goto fail;
    }
    if (home != NULL &&
        (fe->pgp = flt_enc_pgp_new(home, cfg_enum(c, "pgp_trust") == 1,
                                   cache_s, e)) == NULL) {
        flt_cfg_prefix(e, c, "pgp_home");
        goto fail;
    }
    if ((dir != NULL) != (ca != NULL)) {
        cfg_err(e, c, dir != NULL ? "smime_cert_dir" : "smime_ca_file",
                "S/MIME needs both smime_cert_dir and smime_ca_file");
        goto fail;
    }
    if (crl != NULL && dir == NULL) {
        cfg_err(e, c, "smime_crl_file",
                "is set without smime_cert_dir and smime_ca_file");
        goto fail;
    }
    if (dir != NULL &&
        (fe->smime = flt_enc_smime_new(dir, ca, crl,
                                       cfg_enum(c, "smime_cipher") == 1
                                           ? FLT_ENC_AES256_GCM
                                           : FLT_ENC_AES256_CBC,
                                       cache_s, e)) == NULL) {
        flt_cfg_prefix(e, c, "smime_cert_dir");
        goto fail;
    }
    if (cfg_str(c, "sign_key_map") != NULL &&
        (fe->sign = flt_enc_sign_load(cfg_str(c, "sign_key_map"), fe->pgp,
                                      fe->smime != NULL, e)) == NULL) {
        flt_cfg_prefix(e, c, "sign_key_map");
        goto fail;
    }
    return 0;

fail:
    flt_enc_free(st);
    return -1;
}

/* ----------------------------------------------------------------- run */

/* flt_enc_policy_of - r's policy from policy_map (or default_policy);
 * line gets the map's line, 0 for the default. */
static int
flt_enc_policy_of(const struct flt_enc *fe, struct flt_enc_rcpt *r,
                  unsigned *line, struct err *e)
{
    struct buf res;
    int rc;

    r->policy = fe->def_policy;
    r->protos = FLT_ENC_ANY;
    *line = 0;
    if (fe->policy_map == NULL)
        return 0;
    buf_init(&res, 1024);
    rc = regmap_lookup(fe->policy_map, r->addr, &res, line, e);
    if (rc > 0 &&
        flt_enc_policy_parse(buf_str(&res), &r->policy, &r->protos, e) < 0) {
        err_prefix(e, "%s:%u", regmap_path(fe->policy_map), *line);
        e->code = ERR_TEMP;
        rc = -1;
    }
    buf_fini(&res);
    return rc < 0 ? -1 : 0;
}

/* flt_enc_triggered - 1 when the message asks to be encrypted. */
static int
flt_enc_triggered(const struct flt_enc *fe, const struct msg *m)
{
    const char *v;
    size_t i, n, vl, tl;

    if (fe->trigger_name != NULL) {
        tl = strlen(fe->trigger_value);
        n = msg_header_name_count(m, fe->trigger_name);
        for (i = 1; i <= n; i++) {
            v = msg_header_get(m, fe->trigger_name, i);
            if (v == NULL)
                continue;
            while (*v == ' ' || *v == '\t')
                v++;
            vl = strlen(v);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t' ||
                              v[vl - 1] == '\r' || v[vl - 1] == '\n'))
                vl--;
            if (vl == tl && strncasecmp(v, fe->trigger_value, tl) == 0)
                return 1;
        }
    }
    if (fe->subject_tag != NULL &&
        (v = msg_header_get(m, "Subject", 1)) != NULL) {
        struct buf tmp;
        struct err e;
        int rc;

        buf_init(&tmp, 0);
        rc = flt_enc_subject_untag(v, fe->subject_tag, &tmp, &e);
        buf_fini(&tmp);
        if (rc != 0)
            return 1;
    }
    return 0;
}

/* flt_enc_untrigger - remove the trigger field and the subject tag. */
static int
flt_enc_untrigger(const struct stage *st, const struct flt_enc *fe,
                  struct msg *m, struct err *e)
{
    const char *v;
    size_t k;
    struct buf b;
    int rc = 0;

    if (fe->trigger_name != NULL)
        for (k = msg_header_name_count(m, fe->trigger_name); k > 0; k--)
            if (msg_header_delete(m, st->name, fe->trigger_name, k, e) < 0)
                return -1;
    if (fe->subject_tag == NULL ||
        (v = msg_header_get(m, "Subject", 1)) == NULL)
        return 0;
    buf_init(&b, 0);
    rc = flt_enc_subject_untag(v, fe->subject_tag, &b, e);
    if (rc > 0)
        rc = msg_header_change(m, st->name, "Subject", 1, buf_str(&b), e);
    buf_fini(&b);
    return rc < 0 ? -1 : 0;
}

static int
flt_enc_is_content(const char *name)
{
    return strncasecmp(name, "Content-", 8) == 0;
}

/* flt_enc_is_trace - fields that stay outside with protect_subject. */
static int
flt_enc_is_trace(const char *name)
{
    return strcasecmp(name, "Received") == 0 ||
           strcasecmp(name, "Return-Path") == 0 ||
           strcasecmp(name, "DKIM-Signature") == 0 ||
           strcasecmp(name, "ARC-Seal") == 0 ||
           strcasecmp(name, "ARC-Message-Signature") == 0 ||
           strcasecmp(name, "ARC-Authentication-Results") == 0 ||
           strcasecmp(name, "Authentication-Results") == 0;
}

/* flt_enc_crlf - s (n octets) with every LF that no CR precedes made
 * CRLF. The bare LFs are counted first and the room reserved once, then
 * the runs between them are copied into it: no call per line (a 100 KB
 * body has some 1500 lines). */
static int
flt_enc_crlf(struct buf *out, const char *s, size_t n, struct err *e)
{
    const char *p = s, *end = s + n, *lf;
    size_t bare = 0;
    char *w;

    while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        bare += lf == s || lf[-1] != '\r';
        p = lf + 1;
    }
    if (buf_reserve(out, n + bare, e) < 0)
        return -1;
    if (bare == 0) {
        memcpy(out->data + out->len, s, n);
        out->len += n;
        out->data[out->len] = '\0';
        return 0;
    }
    /* buf_reserve made room for n + bare octets and the NUL */
    w = out->data + out->len;
    for (p = s; p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL;
         p = lf + 1) {
        size_t run = (size_t)(lf - p);

        memcpy(w, p, run);
        w += run;
        if (lf != s && lf[-1] != '\r')
            *w++ = '\r';
        *w++ = '\n';
    }
    memcpy(w, p, (size_t)(end - p));
    w += end - p;
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* flt_enc_entity - the MIME entity to encrypt, CRLF canonical: the
 * Content-* fields (with protect_subject, every field but the trace
 * ones, Content-Type marked hp="cipher"), an empty line, the body. */
static int
flt_enc_entity(const struct flt_enc *fe, const struct msg *m, struct buf *out,
               struct err *e)
{
    const char *name, *value, *body;
    size_t i, vl, blen;
    int ct = 0;

    for (i = 0; msg_header_at(m, i, &name, &value, &vl) == 0; i++) {
        int content = flt_enc_is_content(name);

        if (!content && (!fe->protect_subject || flt_enc_is_trace(name)))
            continue;
        if (buf_puts(out, name, e) < 0 || buf_putc(out, ':', e) < 0 ||
            flt_enc_crlf(out, value, vl, e) < 0)
            return -1;
        if (fe->protect_subject && strcasecmp(name, "Content-Type") == 0 &&
            !ct) {
            ct = 1;
            if (buf_puts(out, ";\r\n hp=\"cipher\"", e) < 0)
                return -1;
        }
        if (buf_puts(out, "\r\n", e) < 0)
            return -1;
    }
    if (fe->protect_subject && !ct &&
        buf_puts(out,
                 "Content-Type: text/plain; charset=us-ascii;\r\n "
                 "hp=\"cipher\"\r\n",
                 e) < 0)
        return -1;
    if (buf_puts(out, "\r\n", e) < 0)
        return -1;
    body = msg_body(m, &blen);
    return flt_enc_crlf(out, body, blen, e);
}

/* flt_enc_eol - s (n octets, LF or CRLF line ends) with every line end
 * made eol. */
static int
flt_enc_eol(struct buf *out, const char *s, size_t n, const char *eol,
            struct err *e)
{
    size_t i, from = 0, end;

    for (i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        end = (i > 0 && s[i - 1] == '\r') ? i - 1 : i;
        if (buf_append(out, s + from, end - from, e) < 0 ||
            buf_puts(out, eol, e) < 0)
            return -1;
        from = i + 1;
    }
    if (from < n && (buf_append(out, s + from, n - from, e) < 0 ||
                     buf_puts(out, eol, e) < 0))
        return -1;
    return 0;
}

/* flt_enc_outer - replace the Content-* fields of m by those of the
 * encrypted body; with protect_subject, the Subject by "[...]". */
static int
flt_enc_outer(const struct stage *st, const struct flt_enc *fe, struct msg *m,
              const char *const *fields, struct err *e)
{
    const char *name, *value;
    char *nm;
    size_t i, k, vl;
    int rc;

    /* From the last field back, so the per-name index of the fields
     * still to delete does not change; the name is copied, as the
     * deletion frees the field. */
    for (i = msg_header_count(m); i-- > 0;) {
        size_t idx = 0;

        if (msg_header_at(m, i, &name, &value, &vl) < 0)
            continue;
        if (!flt_enc_is_content(name))
            continue;
        if ((nm = strdup(name)) == NULL)
            return err_nomem(e);
        for (k = 0; k <= i; k++) {
            const char *n2, *v2;
            size_t l2;

            if (msg_header_at(m, k, &n2, &v2, &l2) == 0 &&
                strcasecmp(n2, nm) == 0)
                idx++;
        }
        rc = msg_header_delete(m, st->name, nm, idx, e);
        free(nm);
        if (rc < 0)
            return -1;
    }
    if (fe->protect_subject && msg_header_get(m, "Subject", 1) != NULL &&
        msg_header_change(m, st->name, "Subject", 1, " [...]", e) < 0)
        return -1;
    if (msg_header_name_count(m, "MIME-Version") == 0 &&
        msg_header_add(m, st->name, "MIME-Version", "1.0", e) < 0)
        return -1;
    for (i = 0; fields[i] != NULL; i += 2)
        if (msg_header_add(m, st->name, fields[i], fields[i + 1], e) < 0)
            return -1;
    return 0;
}

/* flt_enc_pgp_body - RFC 3156's multipart/encrypted around armor. */
static int
flt_enc_pgp_body(const struct stage *st, const struct flt_enc *fe,
                 struct msg *m, const struct buf *armor, struct err *e)
{
    const char *eol = msg_eol(m);
    unsigned char rnd[12];
    char boundary[40], ct[200];
    const char *fields[5];
    struct buf body;
    size_t i;
    int rc;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return err_set(e, ERR_TEMP, "no random octets for a boundary");
    memcpy(boundary, "enc_", 4);
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(boundary + 4 + 2 * i, 3, "%02x", rnd[i]);
    snprintf(ct, sizeof(ct),
             "multipart/encrypted;%s\tprotocol=\"application/pgp-encrypted\";"
             "%s\tboundary=\"%s\"",
             eol, eol, boundary);
    buf_init(&body, armor->len + 1024);
    rc = buf_printf(&body, e,
                    "This is an OpenPGP/MIME encrypted message (RFC 4880 "
                    "and 3156)%s--%s%s"
                    "Content-Type: application/pgp-encrypted%s"
                    "Content-Description: PGP/MIME version identification%s"
                    "%sVersion: 1%s%s--%s%s"
                    "Content-Type: application/octet-stream; "
                    "name=\"encrypted.asc\"%s"
                    "Content-Description: OpenPGP encrypted message%s"
                    "Content-Disposition: inline; filename=\"encrypted.asc\""
                    "%s%s",
                    eol, boundary, eol, eol, eol, eol, eol, eol, boundary, eol,
                    eol, eol, eol, eol);
    if (rc == 0)
        rc = flt_enc_eol(&body, armor->data, armor->len, eol, e);
    if (rc == 0)
        rc = buf_printf(&body, e, "%s--%s--%s", eol, boundary, eol);
    fields[0] = "Content-Type";
    fields[1] = ct;
    fields[2] = "Content-Transfer-Encoding";
    fields[3] = "7bit";
    fields[4] = NULL;
    if (rc == 0)
        rc = flt_enc_outer(st, fe, m, fields, e);
    if (rc == 0) {
        size_t len;
        char *data = buf_steal(&body, &len);

        rc = msg_body_adopt(m, st->name, data, len, e);
    }
    buf_fini(&body);
    return rc;
}

static int
flt_enc_smime_body(const struct stage *st, const struct flt_enc *fe,
                   struct msg *m, struct buf *b64, struct err *e)
{
    const char *eol = msg_eol(m);
    char ct[200];
    const char *fields[7];
    size_t len;
    char *data;

    snprintf(ct, sizeof(ct),
             "application/pkcs7-mime; smime-type=%s;%s\tname=\"smime.p7m\"",
             flt_enc_smime_is_gcm(fe->smime) ? "authEnveloped-data"
                                             : "enveloped-data",
             eol);
    fields[0] = "Content-Type";
    fields[1] = ct;
    fields[2] = "Content-Transfer-Encoding";
    fields[3] = "base64";
    fields[4] = "Content-Disposition";
    fields[5] = "attachment; filename=\"smime.p7m\"";
    fields[6] = NULL;
    if (flt_enc_outer(st, fe, m, fields, e) < 0)
        return -1;
    data = buf_steal(b64, &len);
    return msg_body_adopt(m, st->name, data, len, e);
}

/* One recipient's lookups, for the log line. */
struct flt_enc_found {
    size_t pgp_slot, smime_slot;
    char pgp_id[FLT_ENC_ID_MAX], smime_id[FLT_ENC_ID_MAX];
};

/* flt_enc_lookup - the keys of r in every protocol its policy allows
 * and the stage has. */
static int
flt_enc_lookup(const struct flt_enc *fe, struct flt_enc_pgp_job *job,
               struct flt_enc_rcpt *r, struct flt_enc_found *f,
               flt_enc_report_fn report, void *arg, struct err *e)
{
    int rc;

    r->have = 0;
    if (r->policy == FLT_ENC_NEVER && report == NULL)
        return 0;
    if (job != NULL && (r->protos & FLT_ENC_PGP)) {
        rc = flt_enc_pgp_lookup(job, r->addr, &f->pgp_slot, f->pgp_id,
                                sizeof(f->pgp_id), report, arg, e);
        if (rc < 0)
            return -1;
        if (rc > 0)
            r->have |= FLT_ENC_PGP;
    }
    if (fe->smime != NULL && (r->protos & FLT_ENC_SMIME)) {
        rc = flt_enc_smime_lookup(fe->smime, r->addr, &f->smime_slot,
                                  f->smime_id, sizeof(f->smime_id), report,
                                  arg, e);
        if (rc < 0)
            return -1;
        if (rc > 0)
            r->have |= FLT_ENC_SMIME;
    }
    return 0;
}

/* flt_enc_logline - "addr form id, ..." for the recipients. */
static void
flt_enc_logline(struct buf *lb, const struct flt_enc_rcpt *r,
                const struct flt_enc_found *f, size_t n,
                enum flt_enc_form form)
{
    struct err e;
    size_t i;

    for (i = 0; i < n; i++) {
        const char *sep = i > 0 ? ", " : "";
        int rc;

        if (form == FLT_ENC_FORM_PGP)
            rc =
                buf_printf(lb, &e, "%s%s pgp %s", sep, r[i].addr, f[i].pgp_id);
        else if (form == FLT_ENC_FORM_SMIME)
            rc = buf_printf(lb, &e, "%s%s smime %s", sep, r[i].addr,
                            f[i].smime_id);
        else
            rc = buf_printf(lb, &e, "%s%s %s (%s, %s)", sep, r[i].addr,
                            form == FLT_ENC_FORM_CLEAR ? "clear" : "refused",
                            flt_enc_policy_name(r[i].policy),
                            r[i].have & r[i].protos
                                ? (r[i].have & r[i].protos & FLT_ENC_PGP
                                       ? "has a pgp key"
                                       : "has an smime cert")
                            : r[i].policy == FLT_ENC_NEVER ? "not looked up"
                                                           : "no key");
        if (rc < 0) {
            /* The line is bounded: say it was cut and stop. */
            lb->len = lb->len > 4 ? lb->len - 4 : lb->len;
            lb->data[lb->len] = '\0';
            buf_puts(lb, " ...", &e);
            return;
        }
    }
}

/* flt_enc_sealed - 1 when a message whose Content-Type (ct) says it is
 * encrypted looks it inside too, so that a label alone does not let
 * clear text by: S/MIME whose body is CMS enveloped-data or
 * authEnveloped-data, PGP/MIME (protocol application/pgp-encrypted) of
 * exactly its version part and its data part, the data part an armored
 * OpenPGP message. A message that fails this is encrypted like any
 * other. */
static int
flt_enc_sealed(struct msg *m, const char *ct)
{
    const struct mime *mm;
    const char *body, *armor;
    size_t len;
    struct err e;

    body = msg_body(m, &len);
    if (strcasestr(ct, "pkcs7-mime") != NULL)
        return flt_enc_cms_is_enveloped(body, len);
    if (strcasestr(ct, "application/pgp-encrypted") == NULL)
        return 0;
    if ((mm = msg_mime(m, &e)) == NULL || mime_part_count(mm) != 3)
        return 0;
    armor = memmem(body, len, FLT_ENC_ARMOR_BEGIN,
                   sizeof(FLT_ENC_ARMOR_BEGIN) - 1);
    return armor != NULL &&
           memmem(armor, len - (size_t)(armor - body), FLT_ENC_ARMOR_END,
                  sizeof(FLT_ENC_ARMOR_END) - 1) != NULL;
}

/* flt_enc_note - the verdict's note: the recipients' outcomes when they
 * fit in one (the chain logs it: "QID: encrypt: continue, bob@example.net
 * pgp 0x..., 21ms"); otherwise they are logged here in full and the note
 * (summary, size n) says how many and what. */
static const char *
flt_enc_note(const struct stage *st, const struct msg *m, const struct buf *lb,
             enum flt_enc_form form, size_t nrcpts, char *summary, size_t n)
{
    static const char *const forms[] = {
        "clear", "pgp", "smime", "refused (no key)", "refused (conflict)"};

    if (lb->len == 0)
        return "no recipients";
    if (lb->len < VERDICT_NOTE_MAX - 40)
        return buf_str(lb);
    log_info(msg_qid(m), "%s: %s", st->name, buf_str(lb));
    snprintf(summary, n, "%zu recipients, %s (each named in the line above)",
             nrcpts, forms[form]);
    return summary;
}

/* flt_enc_signer_of - the signing key of sender's copy in form (PGP or
 * SMIME): *sg the rule's keys when it has one of that protocol, else
 * NULL; what was decided is added to the log line lb. */
static int
flt_enc_signer_of(const struct flt_enc *fe, const char *sender,
                  enum flt_enc_form form, const struct flt_enc_signer **sg,
                  struct buf *lb, struct err *e)
{
    const struct flt_enc_signer *k = NULL;
    struct err le;
    int rc;

    *sg = NULL;
    if (fe->sign == NULL)
        return 0;
    if ((rc = flt_enc_sign_find(fe->sign, sender, &k, e)) < 0)
        return -1;
    if (rc == 0)
        return 0;
    if (form == FLT_ENC_FORM_PGP && k->pgp_fpr[0] != '\0') {
        *sg = k;
        buf_printf(lb, &le, "; signed pgp %s", k->pgp_id);
    } else if (form == FLT_ENC_FORM_SMIME && k->smime != NULL) {
        *sg = k;
        buf_printf(lb, &le, "; signed smime %s", k->smime_id);
    } else
        buf_printf(lb, &le, "; unsigned (%s:%u has no %s key)",
                   flt_enc_sign_path(fe->sign), k->line,
                   form == FLT_ENC_FORM_PGP ? "pgp" : "smime");
    return 0;
}

static int
flt_enc_run(const struct stage *st, struct msg *m, struct verdict *v,
            struct err *e)
{
    const struct flt_enc *fe = st->priv;
    const struct msg_env *env = msg_env(m);
    const char *ct = msg_header_get(m, "Content-Type", 1);
    struct flt_enc_rcpt *r = NULL;
    struct flt_enc_found *f = NULL;
    struct flt_enc_pgp_job *job = NULL;
    const struct flt_enc_signer *sg = NULL;
    enum flt_enc_form form;
    struct buf entity, out, lb, signd;
    size_t *slots = NULL, i, n = env->nrcpts, culprit;
    size_t limit = msg_limits(m)->message_size * 2 + 65536;
    char reply[VERDICT_REPLY_MAX], summary[VERDICT_NOTE_MAX];
    const char *note;
    unsigned line;
    int trig, rc = -1;

    buf_init(&entity, limit);
    buf_init(&out, limit);
    buf_init(&signd, limit);
    buf_init(&lb, FLT_ENC_LOG_MAX);
    if (flt_enc_is_encrypted(ct) && flt_enc_sealed(m, ct)) {
        rc = verdict_set(v, VERDICT_CONTINUE, NULL,
                         "already encrypted, passed as is");
        goto done;
    }
    if (n > FLT_ENC_RCPT_MAX) {
        err_set(e, ERR_LIMIT, "more than %d recipients", FLT_ENC_RCPT_MAX);
        goto done;
    }
    trig = flt_enc_triggered(fe, m);
    if (n > 0 && ((r = calloc(n, sizeof(*r))) == NULL ||
                  (f = calloc(n, sizeof(*f))) == NULL ||
                  (slots = calloc(n, sizeof(*slots))) == NULL)) {
        err_nomem(e);
        goto done;
    }
    if (fe->pgp != NULL && (job = flt_enc_pgp_job_new(fe->pgp, e)) == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        r[i].addr = env->rcpts[i].addr;
        if (flt_enc_policy_of(fe, &r[i], &line, e) < 0)
            goto done;
        if (trig)
            r[i].policy = FLT_ENC_REQUIRED;
        if (flt_enc_lookup(fe, job, &r[i], &f[i], NULL, NULL, e) < 0)
            goto done;
    }
    form = flt_enc_decide(r, n, fe->preferred, &culprit);
    flt_enc_logline(&lb, r, f, n, form);
    if ((form == FLT_ENC_FORM_PGP || form == FLT_ENC_FORM_SMIME) &&
        flt_enc_signer_of(fe, env->sender, form, &sg, &lb, e) < 0)
        goto done;
    note = flt_enc_note(st, m, &lb, form, n, summary, sizeof(summary));
    if (form == FLT_ENC_FORM_MISSING) {
        snprintf(reply, sizeof(reply),
                 fe->missing_reject
                     ? "550 5.7.1 No usable encryption key for <%s>, whose "
                       "mail must be encrypted"
                     : "451 4.7.1 No usable encryption key for <%s>, whose "
                       "mail must be encrypted; try again later",
                 r[culprit].addr);
        rc = verdict_set(
            v, fe->missing_reject ? VERDICT_REJECT : VERDICT_TEMPFAIL, reply,
            "%s", note);
        goto done;
    }
    if (form == FLT_ENC_FORM_CONFLICT) {
        rc = verdict_set(v, VERDICT_TEMPFAIL,
                         "451 4.7.0 The recipients need this message in "
                         "forms one copy cannot take (encrypted and clear, "
                         "or OpenPGP and S/MIME); send to them separately",
                         "conflict at %s: %s", r[culprit].addr, note);
        goto done;
    }
    if (flt_enc_untrigger(st, fe, m, e) < 0)
        goto done;
    if (form == FLT_ENC_FORM_CLEAR) {
        rc = verdict_set(v, VERDICT_CONTINUE, NULL, "%s", note);
        goto done;
    }
    if (msg_header_count(m) == 0) {
        rc = verdict_set(v, VERDICT_REJECT,
                         "554 5.6.0 A message without a header cannot be "
                         "encrypted",
                         "no header to put the encryption in");
        goto done;
    }
    /* The entity is about the message's size, its encryption a third
     * more in base64: reserved once rather than grown by doubling. */
    if (buf_reserve(&entity, msg_size(m) + msg_size(m) / 32 + 1024, e) < 0 ||
        buf_reserve(&out, msg_size(m) + msg_size(m) / 2 + 4096, e) < 0 ||
        flt_enc_entity(fe, m, &entity, e) < 0)
        goto done;
    for (i = 0; i < n; i++)
        slots[i] = form == FLT_ENC_FORM_PGP ? f[i].pgp_slot : f[i].smime_slot;
    if (form == FLT_ENC_FORM_PGP) {
        if ((sg != NULL
                 ? flt_enc_pgp_encrypt_sign(job, slots, n, sg->pgp_fpr,
                                            entity.data, entity.len, &out, e)
                 : flt_enc_pgp_encrypt(job, slots, n, entity.data, entity.len,
                                       &out, e)) < 0 ||
            flt_enc_pgp_body(st, fe, m, &out, e) < 0)
            goto done;
    } else {
        /* Signed first, the signed-data entity then enveloped. */
        if (sg != NULL) {
            if (buf_reserve(&signd, entity.len + entity.len / 2 + 8192, e) <
                    0 ||
                flt_enc_smime_sign(sg, entity.data, entity.len, &signd, e) < 0)
                goto done;
            buf_fini(&entity);
            entity = signd;
            buf_init(&signd, limit);
        }
        if (flt_enc_smime_encrypt(fe->smime, slots, n, entity.data, entity.len,
                                  msg_eol(m), &out, e) < 0 ||
            flt_enc_smime_body(st, fe, m, &out, e) < 0)
            goto done;
    }
    rc = verdict_set(v, VERDICT_CONTINUE, NULL, "%s", note);

done:
    if (rc < 0)
        err_prefix(e, "%s", st->name);
    flt_enc_pgp_job_free(job);
    buf_fini(&entity);
    buf_fini(&out);
    buf_fini(&signd);
    buf_fini(&lb);
    free(r);
    free(f);
    free(slots);
    return rc;
}

/* flt_enc_rcpt_group - the form rcpt's copy takes alone, for the SMTP
 * front end at RCPT time (stage_type rcpt_group): "clear" (never, or
 * opportunistic without a key), "pgp" or "smime" (the protocol it has a
 * key for, preferred_protocol first), or, for a required recipient
 * without a usable key, its refusal. A trigger in the message, unknown
 * yet, is seen by run() at the end of the data. */
static int
flt_enc_rcpt_group(const struct stage *st, const char *sender,
                   const char *rcpt, char *group, size_t n, struct verdict *v,
                   struct err *e)
{
    const struct flt_enc *fe = st->priv;
    struct flt_enc_pgp_job *job = NULL;
    struct flt_enc_rcpt r;
    struct flt_enc_found f;
    char reply[VERDICT_REPLY_MAX];
    unsigned line, first, second;

    (void)sender;
    memset(&r, 0, sizeof(r));
    memset(&f, 0, sizeof(f));
    r.addr = rcpt;
    if (flt_enc_policy_of(fe, &r, &line, e) < 0)
        goto fail;
    if (r.policy != FLT_ENC_NEVER && fe->pgp != NULL &&
        (job = flt_enc_pgp_job_new(fe->pgp, e)) == NULL)
        goto fail;
    if (flt_enc_lookup(fe, job, &r, &f, NULL, NULL, e) < 0)
        goto fail;
    flt_enc_pgp_job_free(job);
    first = fe->preferred;
    second = first == FLT_ENC_PGP ? FLT_ENC_SMIME : FLT_ENC_PGP;
    if (r.policy != FLT_ENC_NEVER && (r.protos & r.have & first))
        snprintf(group, n, "%s", flt_enc_proto_name(first));
    else if (r.policy != FLT_ENC_NEVER && (r.protos & r.have & second))
        snprintf(group, n, "%s", flt_enc_proto_name(second));
    else if (r.policy != FLT_ENC_REQUIRED)
        snprintf(group, n, "clear");
    else {
        snprintf(reply, sizeof(reply),
                 fe->missing_reject
                     ? "550 5.7.1 No usable encryption key for <%s>, whose "
                       "mail must be encrypted"
                     : "450 4.7.1 No usable encryption key for <%s>, whose "
                       "mail must be encrypted; try again later",
                 rcpt);
        return verdict_set(
            v, fe->missing_reject ? VERDICT_REJECT : VERDICT_TEMPFAIL, reply,
            "%s refused (required, no key)", rcpt);
    }
    return 0;

fail:
    flt_enc_pgp_job_free(job);
    return -1;
}

/* ----------------------------------------------------- keys commands */

struct flt_enc_report_ctx {
    struct buf *out;
    int failed;
};

static void
flt_enc_report(void *arg, const char *proto, const char *id, const char *who,
               const char *why)
{
    struct flt_enc_report_ctx *rc = arg;
    struct err e;

    if (buf_printf(rc->out, &e, "  %s %s %s: %s%s%s\n", proto, id, who,
                   why == NULL ? "usable" : "refused (",
                   why == NULL ? "" : why, why == NULL ? "" : ")") < 0)
        rc->failed = 1;
}

int
flt_encrypt_keys_lookup(const struct stage *st, const char *addr,
                        struct buf *out, struct err *e)
{
    const struct flt_enc *fe;
    struct flt_enc_report_ctx ctx = {out, 0};
    struct flt_enc_pgp_job *job = NULL;
    struct flt_enc_rcpt r;
    struct flt_enc_found f;
    enum flt_enc_form form;
    size_t culprit;
    unsigned line;
    int rc;

    if (st->type != &flt_encrypt_type || (fe = st->priv) == NULL)
        return err_set(e, ERR_INPUT, "%s is not an encrypt stage", st->name);
    memset(&r, 0, sizeof(r));
    memset(&f, 0, sizeof(f));
    r.addr = addr;
    if (flt_enc_policy_of(fe, &r, &line, e) < 0)
        return -1;
    if (line > 0)
        rc = buf_printf(out, e, "%s: policy %s %s (%s:%u)\n", addr,
                        flt_enc_policy_name(r.policy),
                        flt_enc_proto_name(r.protos),
                        regmap_path(fe->policy_map), line);
    else
        rc = buf_printf(out, e, "%s: policy %s %s (default_policy)\n", addr,
                        flt_enc_policy_name(r.policy),
                        flt_enc_proto_name(r.protos));
    if (rc < 0)
        return -1;
    if (fe->pgp != NULL && (job = flt_enc_pgp_job_new(fe->pgp, e)) == NULL)
        return -1;
    rc = flt_enc_lookup(fe, job, &r, &f, flt_enc_report, &ctx, e);
    if (rc == 0 && ctx.failed)
        rc = err_set(e, ERR_LIMIT, "output too long");
    if (rc == 0) {
        form = flt_enc_decide(&r, 1, fe->preferred, &culprit);
        switch (form) {
        case FLT_ENC_FORM_PGP:
            rc = buf_printf(out, e, "%s: would use pgp %s\n", addr, f.pgp_id);
            break;
        case FLT_ENC_FORM_SMIME:
            rc = buf_printf(out, e, "%s: would use smime %s\n", addr,
                            f.smime_id);
            break;
        case FLT_ENC_FORM_CLEAR:
            rc = buf_printf(out, e, "%s: would send in clear\n", addr);
            break;
        default:
            rc = buf_printf(out, e, "%s: no usable key: mail to it %s\n", addr,
                            fe->missing_reject ? "is rejected"
                                               : "is tempfailed");
            break;
        }
    }
    flt_enc_pgp_job_free(job);
    return rc;
}

int
flt_encrypt_keys_list(const struct stage *st, struct buf *out, struct err *e)
{
    const struct flt_enc *fe;

    if (st->type != &flt_encrypt_type || (fe = st->priv) == NULL)
        return err_set(e, ERR_INPUT, "%s is not an encrypt stage", st->name);
    if (fe->pgp != NULL && flt_enc_pgp_list(fe->pgp, out, e) < 0)
        return -1;
    if (fe->smime != NULL && flt_enc_smime_list(fe->smime, out, e) < 0)
        return -1;
    return 0;
}

const struct stage_type flt_encrypt_type = {
    .name = "encrypt",
    .summary = "OpenPGP (PGP/MIME) and S/MIME encryption per recipient "
               "policy, failing closed",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY | STAGE_ENCRYPTS,
    .options = flt_enc_options,
    .init = flt_enc_init,
    .run = flt_enc_run,
    .free = flt_enc_free,
    .rcpt_group = flt_enc_rcpt_group,
};
