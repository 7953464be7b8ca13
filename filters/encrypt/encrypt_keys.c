/*
 * encrypt_keys - the encrypt stage's policy values and its one-body
 *     decision
 *
 * Pure functions on strings and small arrays, no engine: a policy_map
 * result read into a policy and a protocol mask, mailbox comparison for
 * key and certificate user IDs, the form one body can take for all
 * recipients of a message, the "already encrypted" test on a
 * Content-Type value and the removal of a subject tag. Nothing here
 * allocates but into the caller's buffers.
 */
#include "config.h"

#include <string.h>

#include "filters/encrypt/encrypt_int.h"

static int
flt_enc_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* flt_enc_word - the next white-space separated word of *s into w (size
 * n); 0 at the end, -1 for a word too long. */
static int
flt_enc_word(const char **s, char *w, size_t n)
{
    const char *p = *s, *start;
    size_t len;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return 0;
    start = p;
    while (*p != '\0' && *p != ' ' && *p != '\t')
        p++;
    len = (size_t)(p - start);
    if (len >= n)
        return -1;
    memcpy(w, start, len);
    w[len] = '\0';
    *s = p;
    return 1;
}

static int
flt_enc_ieq(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++)
        if (flt_enc_lower((unsigned char)*a) !=
            flt_enc_lower((unsigned char)*b))
            return 0;
    return *a == *b;
}

int
flt_enc_policy_parse(const char *s, enum flt_enc_policy *policy,
                     unsigned *protos, struct err *e)
{
    char w[32];
    int rc;

    *protos = FLT_ENC_ANY;
    if ((rc = flt_enc_word(&s, w, sizeof(w))) <= 0)
        return err_set(e, ERR_CONFIG,
                       "a policy is never, opportunistic or required");
    if (flt_enc_ieq(w, "never"))
        *policy = FLT_ENC_NEVER;
    else if (flt_enc_ieq(w, "opportunistic"))
        *policy = FLT_ENC_OPPORTUNISTIC;
    else if (flt_enc_ieq(w, "required"))
        *policy = FLT_ENC_REQUIRED;
    else
        return err_set(e, ERR_CONFIG,
                       "policy '%s' is not never, opportunistic or required",
                       w);
    if ((rc = flt_enc_word(&s, w, sizeof(w))) == 0)
        return 0;
    if (rc < 0)
        return err_set(e, ERR_CONFIG,
                       "the protocol after the policy is pgp, smime or any");
    if (flt_enc_ieq(w, "pgp"))
        *protos = FLT_ENC_PGP;
    else if (flt_enc_ieq(w, "smime"))
        *protos = FLT_ENC_SMIME;
    else if (flt_enc_ieq(w, "any"))
        *protos = FLT_ENC_ANY;
    else
        return err_set(e, ERR_CONFIG, "protocol '%s' is not pgp, smime or any",
                       w);
    if (flt_enc_word(&s, w, sizeof(w)) != 0)
        return err_set(e, ERR_CONFIG,
                       "a policy is at most two words: POLICY [PROTOCOL]");
    return 0;
}

const char *
flt_enc_policy_name(enum flt_enc_policy p)
{
    switch (p) {
    case FLT_ENC_NEVER:
        return "never";
    case FLT_ENC_OPPORTUNISTIC:
        return "opportunistic";
    default:
        return "required";
    }
}

const char *
flt_enc_proto_name(unsigned protos)
{
    switch (protos) {
    case FLT_ENC_PGP:
        return "pgp";
    case FLT_ENC_SMIME:
        return "smime";
    default:
        return "any";
    }
}

int
flt_enc_addr_equal_n(const char *a, const char *b, size_t blen)
{
    const char *at_a = strrchr(a, '@'), *at_b;
    size_t la = strlen(a), i;

    if (la != blen || at_a == NULL)
        return 0;
    at_b = b + (at_a - a);
    if (*at_b != '@')
        return 0;
    if (memcmp(a, b, (size_t)(at_a - a)) != 0)
        return 0;
    for (i = (size_t)(at_a - a); i < la; i++)
        if (flt_enc_lower((unsigned char)a[i]) !=
            flt_enc_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

int
flt_enc_addr_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return 0;
    return flt_enc_addr_equal_n(a, b, strlen(b));
}

/* flt_enc_takes - 1 when recipient r can get the message in protocol p
 * (encrypted to a key of its own). */
static int
flt_enc_takes(const struct flt_enc_rcpt *r, unsigned p)
{
    return r->policy != FLT_ENC_NEVER && (r->protos & p) && (r->have & p);
}

enum flt_enc_form
flt_enc_decide(const struct flt_enc_rcpt *r, size_t n, unsigned preferred,
               size_t *culprit)
{
    const unsigned order[2] = {
        preferred == FLT_ENC_SMIME ? FLT_ENC_SMIME : FLT_ENC_PGP,
        preferred == FLT_ENC_SMIME ? FLT_ENC_PGP : FLT_ENC_SMIME};
    size_t i, k, req = n;

    *culprit = 0;
    for (i = 0; i < n; i++)
        if (r[i].policy == FLT_ENC_REQUIRED) {
            req = i;
            break;
        }
    /* A required recipient without a key in any protocol it allows can
     * take no form at all: that is the missing key, whoever else there
     * is. */
    for (i = 0; i < n; i++)
        if (r[i].policy == FLT_ENC_REQUIRED && !(r[i].protos & r[i].have)) {
            *culprit = i;
            return FLT_ENC_FORM_MISSING;
        }
    if (n == 0)
        return FLT_ENC_FORM_CLEAR;
    for (k = 0; k < 2; k++) {
        for (i = 0; i < n; i++)
            if (!flt_enc_takes(&r[i], order[k]))
                break;
        if (i == n)
            return order[k] == FLT_ENC_PGP ? FLT_ENC_FORM_PGP
                                           : FLT_ENC_FORM_SMIME;
    }
    if (req == n)
        return FLT_ENC_FORM_CLEAR;
    /* Someone requires encryption and no one protocol reaches everyone:
     * name the first recipient that cannot take the form the required
     * one can. */
    for (k = 0; k < 2; k++) {
        if (!flt_enc_takes(&r[req], order[k]))
            continue;
        for (i = 0; i < n; i++)
            if (!flt_enc_takes(&r[i], order[k])) {
                *culprit = i;
                return FLT_ENC_FORM_CONFLICT;
            }
    }
    *culprit = req;
    return FLT_ENC_FORM_CONFLICT;
}

/* flt_enc_type_is - 1 when the media type at the start of ct (after
 * white space and comments are skipped in the simple way: leading
 * space only) is want, ASCII case ignored. */
static int
flt_enc_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want), i;

    while (*ct == ' ' || *ct == '\t' || *ct == '\r' || *ct == '\n')
        ct++;
    for (i = 0; i < n; i++)
        if (flt_enc_lower((unsigned char)ct[i]) != want[i])
            return 0;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t' ||
           ct[n] == '\r' || ct[n] == '\n' || ct[n] == '(';
}

/* flt_enc_has_word - 1 when s holds word (lower case), ASCII case
 * ignored, not as part of a longer token. */
static int
flt_enc_has_word(const char *s, const char *word)
{
    size_t n = strlen(word), i;
    const char *p;

    for (p = s; *p != '\0'; p++) {
        for (i = 0; i < n; i++)
            if (flt_enc_lower((unsigned char)p[i]) != word[i])
                break;
        if (i == n &&
            (p == s || p[-1] == '=' || p[-1] == '"' || p[-1] == ' ' ||
             p[-1] == '\t') &&
            (p[n] == '\0' || p[n] == ';' || p[n] == '"' || p[n] == ' ' ||
             p[n] == '\t' || p[n] == '\r' || p[n] == '\n'))
            return 1;
    }
    return 0;
}

int
flt_enc_is_encrypted(const char *ct)
{
    if (ct == NULL)
        return 0;
    if (flt_enc_type_is(ct, "multipart/encrypted"))
        return 1;
    if (flt_enc_type_is(ct, "application/pkcs7-mime") ||
        flt_enc_type_is(ct, "application/x-pkcs7-mime"))
        return flt_enc_has_word(ct, "enveloped-data") ||
               flt_enc_has_word(ct, "authenveloped-data");
    return 0;
}

/* flt_enc_put_clean - s (n octets) to out with a CR or LF that is not
 * part of a fold (CRLF or LF, then white space) made a space: the value
 * goes back into the header, where a bare line end is refused. */
static int
flt_enc_put_clean(struct buf *out, const char *s, size_t n, struct err *e)
{
    size_t i;
    char c;

    for (i = 0; i < n; i++) {
        c = s[i];
        if (c == '\r' && !(i + 2 < n && s[i + 1] == '\n' &&
                           (s[i + 2] == ' ' || s[i + 2] == '\t')))
            c = ' ';
        else if (c == '\n' &&
                 !(i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t')))
            c = ' ';
        if (buf_putc(out, c, e) < 0)
            return -1;
    }
    return 0;
}

/* flt_enc_put_folds - s (n octets, whose line ends are all folds) to
 * out without the continuation lines that removing the tag left holding
 * only white space, which a header may not have. */
static int
flt_enc_put_folds(struct buf *out, const char *s, size_t n, struct err *e)
{
    const char *prev_eol = NULL;
    size_t i = 0, start, end, k;

    for (;;) {
        start = i;
        while (i < n && s[i] != '\n')
            i++;
        end = i;
        if (end > start && s[end - 1] == '\r' && i < n)
            end--;
        for (k = start; k < end && (s[k] == ' ' || s[k] == '\t'); k++)
            ;
        if (prev_eol == NULL) {
            if (buf_append(out, s + start, end - start, e) < 0)
                return -1;
        } else if (k < end) {
            if (buf_puts(out, prev_eol, e) < 0 ||
                buf_append(out, s + start, end - start, e) < 0)
                return -1;
        }
        if (i >= n)
            return 0;
        prev_eol = end < i ? "\r\n" : "\n";
        i++;
    }
}

int
flt_enc_subject_untag(const char *s, const char *tag, struct buf *out,
                      struct err *e)
{
    size_t n = strlen(tag), sl = strlen(s), i, k, from, to;
    struct buf tmp;

    if (n == 0 || n > sl)
        return 0;
    for (i = 0; i + n <= sl; i++) {
        for (k = 0; k < n; k++)
            if (flt_enc_lower((unsigned char)s[i + k]) !=
                flt_enc_lower((unsigned char)tag[k]))
                break;
        if (k < n)
            continue;
        from = i;
        to = i + n;
        if (s[to] == ' ')
            to++;
        else if (s[to] == '\0' && from > 0 && s[from - 1] == ' ')
            from--;
        buf_init(&tmp, out->limit);
        if (flt_enc_put_clean(&tmp, s, from, e) < 0 ||
            flt_enc_put_clean(&tmp, s + to, sl - to, e) < 0 ||
            flt_enc_put_folds(out, tmp.data != NULL ? tmp.data : "", tmp.len,
                              e) < 0) {
            buf_fini(&tmp);
            return -1;
        }
        buf_fini(&tmp);
        /* A tag that ended the Subject leaves no white space behind. */
        while (out->len > 0 && (out->data[out->len - 1] == ' ' ||
                                out->data[out->len - 1] == '\t'))
            out->data[--out->len] = '\0';
        return 1;
    }
    return 0;
}
