/*
 * dkim - DKIM signing, made safe for the hops after us, and checked
 *     against the exact bytes that leave
 *
 * Configuration (chain.d), one of two forms:
 *     key_table     = file    OpenDKIM KeyTable: "name domain:selector:key"
 *     signing_table = file    OpenDKIM SigningTable, "refile:file" for
 *                             wildcard patterns: "pattern name [signer]"
 * or, for one domain:
 *     domain = example.com, selector = mail2026, key_file = keys/x.pem
 * and: signing_domain (from | sender | envelope), canonicalization,
 * sign_headers, oversign_headers, signature_ttl, eight_bit_body,
 * self_check, and which mail is ours to sign: sign_mail (internal |
 * all), internal_hosts, mta_names.
 *
 * init() reads both tables, loads every key they name with OpenSSL and
 * refuses, with "path:line: reason", a table line it cannot read, a key
 * name the key table lacks, a key file that other users may read or write
 * (naming the file, the permission and the chmod that fixes it), a key
 * that is encrypted, too short or of another type than RSA and Ed25519.
 * Each key is parsed once, here: the signatures are made by dkim_sig.c
 * with that EVP_PKEY, because libopendkim's dkim_sign() parses its key
 * text again for every message, which with OpenSSL 3 costs more than the
 * RSA signature itself. For each key the stage also keeps the DNS record
 * of its public half, "v=DKIM1; k=rsa; p=...", and the public key decoded
 * back from the record's octets, which the self-check verifies with, and
 * a PKCS#8 PEM copy for "relaychain dkim testkey". With self_check =
 * libopendkim a DKIM_LIB handle that verifies is made too, whose key
 * lookup and prescreen callbacks answer from those records and never ask
 * DNS.
 *
 * run(), for each message:
 *  0. with sign_mail = internal (the default), passes unsigned, with a
 *     note naming the client, mail that is not ours: not from an
 *     authenticated client, not from one in internal_hosts (without
 *     that key: the envelope's mark that the front end found the client
 *     in mynetworks), not taken by an MTA daemon in mta_names. As
 *     OpenDKIM decides with InternalHosts, MTA and {auth_authen}: a
 *     signing relay must not sign what an outsider wrote in our name.
 *  1. takes the signing address (the From header by default, for DMARC
 *     alignment) and looks it up: in the signing table, OpenDKIM's order
 *     for a flat file (user@host, host, user@.parent..., .parent...,
 *     user@*, *) or file order for refile patterns; the first pattern
 *     that matches wins, and every line with that same pattern gives one
 *     signature (an RSA and an Ed25519 key for one domain). "%" is the
 *     signing address's domain. A key whose d= and s= already sign the
 *     message is skipped, so mail is never signed twice.
 *  2. with eight_bit_body = encode (and, by default, only when the message
 *     did not arrive with a DKIM signature of an earlier hop, which the
 *     new octets would break: dkim_signed = skip), makes the body safe
 *     for an 8BITMIME downgrade later on: every leaf part with 8-bit octets or
 * a line over 998 octets is encoded again (text and message types as
 *     quoted-printable, others as base64) and every "8bit" or "binary"
 *     label on a part that is now clean becomes "7bit", as a downgrading
 *     MTA would otherwise do after we signed: the chain's re-encoder,
 *     core/msg/downgrade.c, which changes only those parts.
 *  3. refuses (554) a message that still has a line over 998 octets,
 *     which the next hop would wrap.
 *  4. signs the message as it will be sent (CRLF line ends) once per key
 *     (one body hash serves every key) and inserts the DKIM-Signature
 *     fields at the top.
 *  5. serializes the message again, with the new fields, and verifies each
 *     new signature over those bytes with the public half of its key: by
 *     dkim_sig.c, which finds the field and reads its tags in those bytes
 *     and hashes the header again (the body hash is reused only where the
 *     body is the same octets that were hashed), or by libopendkim. A
 *     mismatch is a tempfail verdict, whatever on_error says, with a note
 *     naming the body hash, the header hash or the verifier's reason: a
 *     broken signature never leaves.
 * Mail without a signing address, or without a key for it, is passed on
 * unsigned with a note that says why.
 *
 * Every object run() makes is freed before it returns; the keys, tables
 * and DKIM_LIB handle are read-only after init(), so run() may be called
 * from many threads at once. Fields are given to libopendkim one by one
 * rather than as one chunk so that someone else's malformed
 * DKIM-Signature, which it refuses, cannot stop the self-check.
 *
 * Failures: a table, key or option the stage cannot use stops start-up
 * with "path:line: reason"; an OpenSSL, libopendkim or memory failure
 * while signing is an error (on_error applies); a line over 998 octets is
 * a reject; a failed self-check is a tempfail verdict.
 *
 * The chain's fault hook (stage_env: NULL but in test programs) gets a
 * copy of the bytes given to the signer at the point "dkim.sign" and may
 * change them, so the tests can show that the self-check catches a broken
 * signing path (tests/unit/faultregistry.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <gmime/gmime.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <opendkim/dkim.h>

#include "filters/dkim/dkim_int.h"
#include "filters/filters_int.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/downgrade.h"

static const char *const flt_dkim_source_choices[] = {
    [FLT_DKIM_FROM] = "from",
    [FLT_DKIM_SENDER] = "sender",
    [FLT_DKIM_ENVELOPE] = "envelope",
    NULL};

/* canonicalization: header/body */
enum flt_dkim_canons {
    FLT_DKIM_RELAXED_RELAXED,
    FLT_DKIM_RELAXED_SIMPLE,
    FLT_DKIM_SIMPLE_RELAXED,
    FLT_DKIM_SIMPLE_SIMPLE
};
static const char *const flt_dkim_canon_choices[] = {
    [FLT_DKIM_RELAXED_RELAXED] = "relaxed/relaxed",
    [FLT_DKIM_RELAXED_SIMPLE] = "relaxed/simple",
    [FLT_DKIM_SIMPLE_RELAXED] = "simple/relaxed",
    [FLT_DKIM_SIMPLE_SIMPLE] = "simple/simple",
    NULL};

enum flt_dkim_8bit { FLT_DKIM_8BIT_ENCODE, FLT_DKIM_8BIT_KEEP };
static const char *const flt_dkim_8bit_choices[] = {
    [FLT_DKIM_8BIT_ENCODE] = "encode", [FLT_DKIM_8BIT_KEEP] = "keep", NULL};

enum flt_dkim_self_check {
    FLT_DKIM_CHECK_BUILTIN,
    FLT_DKIM_CHECK_LIBOPENDKIM
};
static const char *const flt_dkim_check_choices[] = {
    [FLT_DKIM_CHECK_BUILTIN] = "builtin",
    [FLT_DKIM_CHECK_LIBOPENDKIM] = "libopendkim",
    NULL};

enum flt_dkim_sign_mail { FLT_DKIM_SIGN_INTERNAL, FLT_DKIM_SIGN_ALL };
static const char *const flt_dkim_sign_mail_choices[] = {
    [FLT_DKIM_SIGN_INTERNAL] = "internal", [FLT_DKIM_SIGN_ALL] = "all", NULL};

static const struct cfg_option flt_dkim_options[] = {
    {"key_table", CFG_PATH, NULL,
     "OpenDKIM KeyTable: lines \"name domain:selector:/path/to/key\"", NULL, 0,
     0, 0},
    {"signing_table", CFG_STRING, NULL,
     "OpenDKIM SigningTable (\"refile:FILE\" for wildcard patterns): lines "
     "\"pattern name [signer]\"",
     NULL, 0, 0, 0},
    {"domain", CFG_STRING, NULL,
     "short form: the one domain to sign for (with selector and key_file)",
     NULL, 0, 0, 0},
    {"selector", CFG_STRING, NULL, "short form: the selector (s=)", NULL, 0, 0,
     0},
    {"key_file", CFG_PATH, NULL,
     "short form: the private key, PEM (PKCS#1 or PKCS#8), RSA or Ed25519",
     NULL, 0, 0, 0},
    {"signing_domain", CFG_ENUM, "from",
     "where the signing address comes from: from (the From header, for "
     "DMARC alignment), sender (Sender header, else From) or envelope "
     "(MAIL FROM)",
     flt_dkim_source_choices, 0, 0, 0},
    {"canonicalization", CFG_ENUM, "relaxed/relaxed",
     "c= header/body canonicalization", flt_dkim_canon_choices, 0, 0, 0},
    {"sign_headers", CFG_LIST,
     "From, Reply-To, Subject, Date, To, Cc, Resent-Date, Resent-From, "
     "Resent-To, Resent-Cc, In-Reply-To, References, List-Id, List-Help, "
     "List-Unsubscribe, List-Unsubscribe-Post, List-Subscribe, List-Post, "
     "List-Owner, List-Archive, Sender, Message-ID, MIME-Version, "
     "Content-Type, Content-Transfer-Encoding",
     "header fields signed when present (RFC 6376 section 5.4.1 and MIME)",
     NULL, 0, 0, 0},
    {"oversign_headers", CFG_LIST,
     "From, To, Cc, Subject, Date, Reply-To, Content-Type, MIME-Version",
     "fields signed once more than they occur, so that none can be added",
     NULL, 0, 0, 0},
    {"signature_ttl", CFG_TIME, "0",
     "lifetime of a signature (x= tag); 0 for none", NULL, 0, 0, 0},
    {"eight_bit_body", CFG_ENUM, "encode",
     "encode: re-encode 8-bit parts (and parts with lines over 998 octets) "
     "as quoted-printable or base64 before signing, so that no 8BITMIME "
     "downgrade can break the body hash; keep: leave them",
     flt_dkim_8bit_choices, 0, 0, 0},
    {"self_check", CFG_ENUM, "builtin",
     "who verifies each new signature over the final bytes: builtin (the "
     "stage's own verifier, which reads the bytes again) or libopendkim (a "
     "second, independent implementation; about 130 us more per RSA "
     "signature)",
     flt_dkim_check_choices, 0, 0, 0},
    {"dkim_signed", CFG_ENUM, "skip",
     "a message that arrives with a DKIM signature (an earlier hop signed "
     "it): skip (sign it without re-encoding 8-bit parts, so the earlier "
     "signature still verifies) or edit (re-encode as eight_bit_body says "
     "and break it)",
     flt_dkim_signed_choices, 0, 0, 0},
    {"sign_mail", CFG_ENUM, "internal",
     "which mail is signed: internal (from a client in internal_hosts, an "
     "authenticated client, or in milter mode an MTA daemon in mta_names; "
     "other mail passes unsigned and the log says why) or all (any mail "
     "with a key for its domain, which lets outsiders get our signature)",
     flt_dkim_sign_mail_choices, 0, 0, 0},
    {"internal_hosts", CFG_LIST, NULL,
     "networks whose mail is signed, as OpenDKIM's InternalHosts; the "
     "client is the one the MTA or XFORWARD names (default: mynetworks of "
     "relaychain.conf)",
     NULL, 0, 0, 0},
    {"mta_names", CFG_LIST, NULL,
     "milter mode: values of the MTA's {daemon_name} macro whose mail is "
     "signed whatever the client (a submission service), as OpenDKIM's MTA",
     NULL, 0, 0, 0},
    CFG_OPTION_END,
};

/* --------------------------------------------------------------- init */

static void
flt_dkim_free(struct stage *st)
{
    struct flt_dkim *fd = st->priv;

    if (fd == NULL)
        return;
    if (fd->verify_lib != NULL)
        dkim_close(fd->verify_lib);
    flt_dkim_tables_free(fd->tables);
    flt_dkim_key_free(fd->key);
    free(fd->domain);
    free(fd->sign_hdrs);
    free(fd->oversign_hdrs);
    cidr_list_free(fd->internal_hosts);
    free(fd);
    st->priv = NULL;
}

/* flt_dkim_header_list - a NULL-terminated copy of the list key, checked. */
static int
flt_dkim_header_list(const struct cfg *c, const char *key, const char ***out,
                     struct err *e)
{
    const char *const *items;
    size_t n = cfg_list(c, key, &items), i;

    if (n > FLT_DKIM_HDRS_MAX)
        return cfg_err(e, c, key, "more than %d names", FLT_DKIM_HDRS_MAX);
    for (i = 0; i < n; i++) {
        if (!flt_dkim_is_header_name(items[i]))
            return cfg_err(e, c, key,
                           "\"%s\" is not a header field name (letters, "
                           "digits and hyphens)",
                           items[i]);
        if (strcasecmp(items[i], "DKIM-Signature") == 0)
            return cfg_err(e, c, key, "DKIM-Signature cannot be signed");
    }
    if ((*out = calloc(n + 1, sizeof(**out))) == NULL)
        return err_nomem(e);
    for (i = 0; i < n; i++)
        (*out)[i] = items[i];
    return 0;
}

static int
flt_dkim_has_name(const char *const *list, const char *name)
{
    for (; *list != NULL; list++)
        if (strcasecmp(*list, name) == 0)
            return 1;
    return 0;
}

/* flt_dkim_libs - the libopendkim handle of self_check = libopendkim:
 * a verifier whose key lookup and prescreen callbacks answer from the
 * stage's keys and never ask DNS. */
static int
flt_dkim_libs(struct flt_dkim *fd, const struct cfg *c, struct err *e)
{
    if ((fd->verify_lib = dkim_init(NULL, NULL)) == NULL)
        return err_set(e, ERR_LIB, "%s: dkim_init() failed", cfg_path(c));
    if (!dkim_libfeature(fd->verify_lib, DKIM_FEATURE_ED25519) ||
        !dkim_libfeature(fd->verify_lib, DKIM_FEATURE_SHA256))
        return cfg_err(e, c, "self_check",
                       "this libopendkim lacks SHA-256 or Ed25519 support");
    if (dkim_set_key_lookup(fd->verify_lib, flt_dkim_key_lookup) !=
            DKIM_STAT_OK ||
        dkim_set_prescreen(fd->verify_lib, flt_dkim_prescreen) != DKIM_STAT_OK)
        return err_set(e, ERR_LIB, "%s: libopendkim refused the callbacks",
                       cfg_path(c));
    return 0;
}

static int
flt_dkim_init_short(struct flt_dkim *fd, const struct cfg *c, struct err *e)
{
    const char *domain = cfg_str(c, "domain"), *selector;

    if (domain == NULL || cfg_str(c, "selector") == NULL ||
        cfg_str(c, "key_file") == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: stage dkim needs key_table and signing_table, "
                       "or domain, selector and key_file",
                       cfg_path(c));
    selector = cfg_str(c, "selector");
    if (!flt_dkim_is_dns_name(domain, FLT_DKIM_DOMAIN_MAX, 0))
        return cfg_err(e, c, "domain", "\"%s\" is not a domain name", domain);
    if (!flt_dkim_is_dns_name(selector, FLT_DKIM_SELECTOR_MAX, 1))
        return cfg_err(e, c, "selector", "\"%s\" is not a valid selector",
                       selector);
    if ((fd->domain = flt_dkim_strndup_lower(domain, strlen(domain))) == NULL)
        return err_nomem(e);
    fd->selector = selector;
    if ((fd->key = flt_dkim_key_load(cfg_str(c, "key_file"), 1, e)) == NULL)
        return flt_cfg_prefix(e, c, "key_file");
    return 0;
}

static int
flt_dkim_init(struct stage *st, const struct cfg *c, struct err *e)
{
    static const char *const short_keys[] = {"domain", "selector", "key_file"};
    struct flt_dkim *fd;
    const char **p;
    int tables =
        cfg_str(c, "key_table") != NULL || cfg_str(c, "signing_table") != NULL;
    size_t i;

    for (i = 0; tables && i < 3; i++)
        if (cfg_str(c, short_keys[i]) != NULL)
            return cfg_err(e, c, short_keys[i],
                           "give either key_table and signing_table or "
                           "domain, selector and key_file, not both");
    if (tables && (cfg_str(c, "key_table") == NULL ||
                   cfg_str(c, "signing_table") == NULL))
        return err_set(e, ERR_CONFIG,
                       "%s: key_table and signing_table go together",
                       cfg_path(c));
    if (cfg_is_set(c, "signature_ttl") && cfg_num(c, "signature_ttl") < 1000)
        return cfg_err(e, c, "signature_ttl",
                       "a lifetime under one second would expire at once");

    if ((fd = calloc(1, sizeof(*fd))) == NULL)
        return err_nomem(e);
    st->priv = fd;
    fd->source = (enum flt_dkim_source)cfg_enum(c, "signing_domain");
    switch ((enum flt_dkim_canons)cfg_enum(c, "canonicalization")) {
    case FLT_DKIM_RELAXED_RELAXED:
        fd->hcanon = fd->bcanon = FLT_DKIM_RELAXED;
        break;
    case FLT_DKIM_RELAXED_SIMPLE:
        fd->hcanon = FLT_DKIM_RELAXED;
        fd->bcanon = FLT_DKIM_SIMPLE;
        break;
    case FLT_DKIM_SIMPLE_RELAXED:
        fd->hcanon = FLT_DKIM_SIMPLE;
        fd->bcanon = FLT_DKIM_RELAXED;
        break;
    case FLT_DKIM_SIMPLE_SIMPLE:
        fd->hcanon = fd->bcanon = FLT_DKIM_SIMPLE;
        break;
    }
    fd->ttl = (uint64_t)(cfg_num(c, "signature_ttl") / 1000);
    fd->encode = (enum flt_dkim_8bit)cfg_enum(c, "eight_bit_body") ==
                 FLT_DKIM_8BIT_ENCODE;
    if (flt_dkim_header_list(c, "sign_headers", &fd->sign_hdrs, e) < 0 ||
        flt_dkim_header_list(c, "oversign_headers", &fd->oversign_hdrs, e) < 0)
        goto fail;
    if (!flt_dkim_has_name(fd->sign_hdrs, "From")) {
        cfg_err(e, c, "sign_headers", "From must be signed (RFC 6376)");
        goto fail;
    }
    for (p = fd->oversign_hdrs; *p != NULL; p++)
        if (!flt_dkim_has_name(fd->sign_hdrs, *p)) {
            cfg_err(e, c, "oversign_headers",
                    "%s is not in sign_headers; a field is oversigned only "
                    "when it is signed",
                    *p);
            goto fail;
        }
    if (tables) {
        if ((fd->tables = flt_dkim_tables_load(c, e)) == NULL)
            goto fail;
    } else if (flt_dkim_init_short(fd, c, e) < 0) {
        goto fail;
    }
    if ((enum flt_dkim_self_check)cfg_enum(c, "self_check") ==
            FLT_DKIM_CHECK_LIBOPENDKIM &&
        flt_dkim_libs(fd, c, e) < 0)
        goto fail;
    fd->sign_all =
        (enum flt_dkim_sign_mail)cfg_enum(c, "sign_mail") == FLT_DKIM_SIGN_ALL;
    fd->dkim_edit = flt_cfg_dkim_edit(c);
    if (cfg_is_set(c, "internal_hosts")) {
        const char *const *nets;
        size_t n = cfg_list(c, "internal_hosts", &nets);

        if ((fd->internal_hosts = cidr_list_new(nets, n, e)) == NULL) {
            char text[sizeof(e->text)];

            snprintf(text, sizeof(text), "%s", e->text);
            cfg_err(e, c, "internal_hosts", "%s", text);
            goto fail;
        }
    }
    fd->nmta_names = cfg_list(c, "mta_names", &fd->mta_names);
    if (fd->sign_all &&
        (cfg_is_set(c, "internal_hosts") || fd->nmta_names > 0)) {
        cfg_err(e, c,
                cfg_is_set(c, "internal_hosts") ? "internal_hosts"
                                                : "mta_names",
                "has no effect with sign_mail = all");
        goto fail;
    }
    /* Without re-encoding the stage only adds its own fields. */
    if (!fd->encode)
        st->flags &= STAGE_SIGNS;
    return 0;

fail:
    flt_dkim_free(st);
    return -1;
}

/* ----------------------------------------------------- whose mail */

/*
 * flt_dkim_is_ours - 1 when the message is ours to sign: sent by an
 * authenticated client, by a client in internal_hosts (or, without that
 * key, one the front end found in mynetworks: the original client behind
 * Postfix's XFORWARD, the milter's connecting client, a local
 * submission), or taken by an MTA daemon listed in mta_names. Otherwise
 * 0, with why (size n) saying so for the log. The client address and
 * daemon name come from the front end, not from the message, so no
 * header an outsider writes can make mail ours.
 */
static int
flt_dkim_is_ours(const struct flt_dkim *fd, const struct msg *m, char *why,
                 size_t n)
{
    const struct msg_env *env = msg_env(m);
    size_t i;
    int used;

    if (env->auth_user != NULL)
        return 1;
    if (fd->internal_hosts != NULL
            ? cidr_list_contains(fd->internal_hosts, env->client_addr)
            : env->internal)
        return 1;
    for (i = 0; env->daemon_name != NULL && i < fd->nmta_names; i++)
        if (strcmp(env->daemon_name, fd->mta_names[i]) == 0)
            return 1;
    used = snprintf(why, n,
                    "client %.64s is not internal: not in %s, not "
                    "authenticated",
                    env->client_addr ? env->client_addr : "unknown",
                    fd->internal_hosts ? "internal_hosts" : "mynetworks");
    if (fd->nmta_names > 0 && used > 0 && (size_t)used < n)
        snprintf(why + used, n - (size_t)used,
                 ", daemon %.64s not in mta_names",
                 env->daemon_name ? env->daemon_name : "unknown");
    return 0;
}

/* ---------------------------------------------------------------- run */

static int
flt_dkim_run(const struct stage *st, struct msg *m, struct verdict *v,
             struct err *e)
{
    const struct flt_dkim *fd = st->priv;
    struct flt_dkim_plan plans[FLT_DKIM_SIGS_MAX];
    char why[FLT_DKIM_WHY_MAX], note[VERDICT_NOTE_MAX], extra[64];
    char earlier[200], who[140];
    struct buf raw, conv, fin, fin_conv, sig[FLT_DKIM_SIGS_MAX];
    struct flt_dkim_body_memo memo = {0};
    const struct msg_edit *edits;
    size_t edits_before;
    const char *wire, *final;
    size_t nplans, wire_len, final_len, i, n;
    unsigned encoded = 0, relabelled = 0;
    int rc = -1, in_header, failed, encode = fd->encode;

    if (!fd->sign_all && !flt_dkim_is_ours(fd, m, why, sizeof(why)))
        return verdict_set(v, VERDICT_CONTINUE, NULL, "not signed (%s)", why);
    nplans = flt_dkim_plans(fd, m, plans, why, sizeof(why));
    if (nplans == 0)
        return verdict_set(v, VERDICT_CONTINUE, NULL, "not signed (%s)", why);

    /* Re-encoding would break the signature of an earlier hop; it is left
     * out unless a line over 998 octets needs it, which no hop carries
     * unchanged anyway. */
    earlier[0] = '\0';
    if (encode && !fd->dkim_edit &&
        msg_longest_line(m) <= FLT_DKIM_LINE_LIMIT &&
        flt_dkim_signed(m, NULL, who, sizeof(who))) {
        encode = 0;
        snprintf(earlier, sizeof(earlier),
                 ", body kept as an earlier hop signed it (%s)", who);
    }
    buf_init(&raw, 0);
    buf_init(&conv, 0);
    buf_init(&fin, 0);
    buf_init(&fin_conv, 0);
    for (i = 0; i < nplans; i++)
        buf_init(&sig[i], FLT_DKIM_RECORD_MAX * 2);
    edits_before = msg_journal(m, &edits);
    if (msg_write(m, &raw, e) < 0 ||
        (encode && downgrade_body(m, st->name, raw.data ? raw.data : "",
                                  raw.len, &encoded, &relabelled, e) < 0))
        goto out;
    /* raw is still the message unless the encoder changed it. */
    if (msg_journal(m, &edits) != edits_before
            ? flt_dkim_wire(m, &raw, &conv, &wire, &wire_len, e) < 0
            : flt_dkim_crlf(&raw, &conv, &wire, &wire_len, e) < 0)
        goto out;
    if (flt_dkim_long_line(wire, wire_len, &in_header)) {
        rc = verdict_set(v, VERDICT_REJECT,
                         "554 5.6.0 Message has a line over 998 octets and "
                         "cannot be signed",
                         "not signed (line over 998 octets in the %s)",
                         in_header ? "header" : "body");
        goto out;
    }
    for (i = 0; i < nplans; i++)
        if (flt_dkim_sign_one(fd, &plans[i], wire, wire_len, &memo, st->env,
                              &sig[i], e) < 0)
            goto out;
    /* Inserted last to first, so the first key's field comes first. */
    for (i = nplans; i-- > 0;)
        if (msg_header_insert(m, st->name, 0, "DKIM-Signature",
                              buf_str(&sig[i]), e) < 0)
            goto out;
    /* The signed bytes stay in raw or conv: memo points into them. */
    if (flt_dkim_wire(m, &fin, &fin_conv, &final, &final_len, e) < 0)
        goto out;
    failed = flt_dkim_self_check(fd, m, plans, nplans, final, final_len, &memo,
                                 why, sizeof(why), e);
    if (failed < 0)
        goto out;
    if (failed) {
        rc = verdict_set(v, VERDICT_TEMPFAIL,
                         "451 4.7.5 Cannot sign the message, try again later",
                         "self-check failed: %s", why);
        goto out;
    }

    n = (size_t)snprintf(note, sizeof(note), "signed");
    for (i = 0; i < nplans && n < sizeof(note); i++)
        n +=
            (size_t)snprintf(note + n, sizeof(note) - n, "%s d=%s, s=%s, a=%s",
                             i ? ";" : ",", plans[i].domain, plans[i].selector,
                             flt_dkim_key_alg(plans[i].key));
    extra[0] = '\0';
    if (encoded > 0 || relabelled > 0)
        snprintf(extra, sizeof(extra), ", 7bit: %u encoded, %u relabelled",
                 encoded, relabelled);
    rc =
        verdict_set(v, VERDICT_CONTINUE, NULL, "%s%s%s", note, extra, earlier);
out:
    if (rc < 0)
        err_prefix(e, "%s", st->name);
    for (i = 0; i < nplans; i++)
        buf_fini(&sig[i]);
    buf_fini(&raw);
    buf_fini(&conv);
    buf_fini(&fin);
    buf_fini(&fin_conv);
    return rc;
}

const struct stage_type flt_dkim_type = {
    .name = "dkim",
    .summary = "sign with DKIM (RSA, Ed25519) and verify the signature on "
               "the final bytes",
    .flags = STAGE_SIGNS | STAGE_EDITS_HEADERS | STAGE_EDITS_BODY,
    .options = flt_dkim_options,
    .init = flt_dkim_init,
    .run = flt_dkim_run,
    .free = flt_dkim_free,
};
