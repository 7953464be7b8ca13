/*
 * dkim_sign - which keys sign a message, the signatures it arrived with,
 *     signing and the self-check
 *
 * Steps 1 and 3 to 5 of the dkim stage's run() (see dkim.c): the plans
 * (one per signature to make), the look at DKIM-Signature fields that
 * arrived (flt_dkim_signed, for the stages before signing), the bytes
 * as they leave, the signatures, and their verification over those
 * bytes. Every object made here is freed before run() returns.
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
#include "util/log.h"
#include "msg/mime.h"
#include "msg/downgrade.h"

/* ----------------------------------------------------- which keys */

/* flt_dkim_first_mailbox - the address of the first mailbox in an address
 * header value, into out (size n). Returns 1, or 0 when there is none. */
static int
flt_dkim_first_mailbox(const char *value, char *out, size_t n)
{
    InternetAddressList *list, *members;
    InternetAddress *ia;
    const char *addr = NULL;
    char *flat;
    size_t k;
    int i, j, count;

    /* Folding is white space to the address grammar. */
    if ((flat = strdup(value)) == NULL)
        return 0;
    for (k = 0; flat[k] != '\0'; k++)
        if (flat[k] == '\r' || flat[k] == '\n')
            flat[k] = ' ';
    list = internet_address_list_parse(NULL, flat);
    if (list == NULL) {
        /* Raw 8-bit text that is not UTF-8 (a legacy charset in the
         * header): GMime's own guess of its charset, then parse again. */
        char *utf8 = g_mime_utils_decode_8bit(NULL, flat, strlen(flat));

        if (utf8 != NULL)
            list = internet_address_list_parse(NULL, utf8);
        g_free(utf8);
    }
    free(flat);
    if (list == NULL)
        return 0;
    count = internet_address_list_length(list);
    for (i = 0; i < count && addr == NULL; i++) {
        ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            addr = internet_address_mailbox_get_addr(
                INTERNET_ADDRESS_MAILBOX(ia));
            continue;
        }
        members =
            internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
        for (j = 0; j < internet_address_list_length(members); j++) {
            ia = internet_address_list_get_address(members, j);
            if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
                addr = internet_address_mailbox_get_addr(
                    INTERNET_ADDRESS_MAILBOX(ia));
                break;
            }
        }
    }
    if (addr != NULL && addr[0] != '\0' &&
        (size_t)snprintf(out, n, "%s", addr) < n) {
        g_object_unref(list);
        return 1;
    }
    g_object_unref(list);
    return 0;
}

/* flt_dkim_address - the signing address, into out; returns 1, or 0 with
 * the reason it has none in why. */
static int
flt_dkim_address(const struct flt_dkim *fd, const struct msg *m, char *out,
                 size_t n, char *why, size_t wn)
{
    const char *name =
        fd->source == FLT_DKIM_SENDER && msg_header_name_count(m, "Sender") > 0
            ? "Sender"
            : "From";
    const char *sender;

    if (fd->source == FLT_DKIM_ENVELOPE) {
        sender = msg_env(m)->sender;
        if (sender == NULL || sender[0] == '\0') {
            snprintf(why, wn, "null envelope sender");
            return 0;
        }
        if ((size_t)snprintf(out, n, "%s", sender) >= n) {
            snprintf(why, wn, "envelope sender too long");
            return 0;
        }
        return 1;
    }
    if (msg_header_name_count(m, name) != 1) {
        snprintf(why, wn, "%s %s header",
                 msg_header_name_count(m, name) ? "more than one" : "no",
                 name);
        return 0;
    }
    if (!flt_dkim_first_mailbox(msg_header_get(m, name, 1), out, n)) {
        snprintf(why, wn, "no address in the %s header", name);
        return 0;
    }
    return 1;
}

/* flt_dkim_printable_tag - value for a log note: at most 64 octets,
 * anything but printable ASCII as '?'. The value is the sender's. */
static void
flt_dkim_printable_tag(const char *value, char *out, size_t n)
{
    size_t i;

    for (i = 0; value[i] != '\0' && i < 64 && i + 1 < n; i++)
        out[i] = value[i] > ' ' && value[i] < 0x7f ? value[i] : '?';
    if (n > 0)
        out[i < n ? i : n - 1] = '\0';
}

/* flt_dkim_is_signature - v has every tag RFC 6376 requires (v, a, b,
 * bh, d, h, s): without one no verifier accepts it, and nothing we do can
 * break it. */
static int
flt_dkim_is_signature(const char *v)
{
    static const char *const tags[] = {"v", "a", "b", "bh", "d", "h", "s"};
    char one[8];
    size_t i;

    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (!flt_dkim_tag_value(v, tags[i], one, sizeof(one)))
            return 0;
    return 1;
}

/*
 * flt_dkim_body_holds - 0 when the signature v (a DKIM-Signature value)
 * can be seen not to cover the body as it is: a SHA-256 signature over
 * the whole body (no l=) whose bh= differs from the body's hash under its
 * c=, so it is broken already (a hop changed the body, or the field was
 * never a real signature). 1 otherwise: a body edit would break it.
 */
static int
flt_dkim_body_holds(const struct msg *m, const char *v)
{
    char a[32], c[40], bh[96], want[48];
    enum flt_dkim_canon canon = FLT_DKIM_SIMPLE;
    const char *body, *slash;
    size_t blen;
    struct err e;

    if (!flt_dkim_tag_value(v, "a", a, sizeof(a)) ||
        !flt_dkim_tag_value(v, "bh", bh, sizeof(bh)))
        return 0;
    /* Another hash, or l= (a footer after it would not even break it):
     * not checked here, so taken as holding. */
    if ((strcasecmp(a, "rsa-sha256") != 0 &&
         strcasecmp(a, "ed25519-sha256") != 0) ||
        flt_dkim_tag_value(v, "l", c, sizeof(c)))
        return 1;
    if (flt_dkim_tag_value(v, "c", c, sizeof(c)) &&
        (slash = strchr(c, '/')) != NULL &&
        strcasecmp(slash + 1, "relaxed") == 0)
        canon = FLT_DKIM_RELAXED;
    body = msg_body(m, &blen);
    if (flt_dkim_sig_body_hash(body ? body : "", blen, canon, want, &e) < 0)
        return 1;
    return strcmp(bh, want) == 0;
}

const char *const flt_dkim_signed_choices[] = {
    [FLT_DKIM_SIGNED_SKIP] = "skip", [FLT_DKIM_SIGNED_EDIT] = "edit", NULL};

int
flt_dkim_signed(const struct msg *m, const char *field, char *who, size_t n)
{
    size_t count = msg_header_name_count(m, "DKIM-Signature"), i, len;
    char d[FLT_DKIM_DOMAIN_MAX + 2], sel[FLT_DKIM_SELECTOR_MAX + 2];
    char h[4096], pd[72], ps[72];
    const char *v, *p, *q;
    int covers;

    for (i = 1; i <= count; i++) {
        if ((v = msg_header_get(m, "DKIM-Signature", i)) == NULL ||
            !flt_dkim_is_signature(v))
            continue;
        covers = field == NULL && flt_dkim_body_holds(m, v);
        /* An h= too long to read whole may name any field. */
        if (field != NULL && (!flt_dkim_tag_value(v, "h", h, sizeof(h)) ||
                              strlen(h) + 1 >= sizeof(h)))
            covers = 1;
        for (p = h; field != NULL && !covers && *p != '\0';
             p = *q ? q + 1 : q) {
            q = strchr(p, ':');
            if (q == NULL)
                q = p + strlen(p);
            len = (size_t)(q - p);
            covers = len == strlen(field) && strncasecmp(p, field, len) == 0;
        }
        if (!covers)
            continue;
        if (!flt_dkim_tag_value(v, "d", d, sizeof(d)))
            d[0] = '\0';
        if (!flt_dkim_tag_value(v, "s", sel, sizeof(sel)))
            sel[0] = '\0';
        flt_dkim_printable_tag(d, pd, sizeof(pd));
        flt_dkim_printable_tag(sel, ps, sizeof(ps));
        snprintf(who, n, "d=%s, s=%s", pd[0] ? pd : "?", ps[0] ? ps : "?");
        return 1;
    }
    return 0;
}

/* flt_dkim_already_signed - a DKIM-Signature with this d= and s= is in m. */
static int
flt_dkim_already_signed(const struct msg *m, const char *d, const char *s)
{
    size_t count = msg_header_name_count(m, "DKIM-Signature"), i;
    char dv[FLT_DKIM_DOMAIN_MAX + 2], sv[FLT_DKIM_SELECTOR_MAX + 2];
    const char *v;

    for (i = 1; i <= count; i++) {
        if ((v = msg_header_get(m, "DKIM-Signature", i)) == NULL)
            continue;
        if (flt_dkim_tag_value(v, "d", dv, sizeof(dv)) &&
            flt_dkim_tag_value(v, "s", sv, sizeof(sv)) &&
            strcasecmp(dv, d) == 0 && strcasecmp(sv, s) == 0)
            return 1;
    }
    return 0;
}

/* flt_dkim_expand - template with each "%" replaced by domain, into out. */
static int
flt_dkim_expand(const char *template, const char *domain, char *out, size_t n)
{
    size_t o = 0, dl = strlen(domain);

    for (; *template != '\0'; template ++) {
        if (*template == '%') {
            if (o + dl >= n)
                return -1;
            memcpy(out + o, domain, dl);
            o += dl;
        } else {
            if (o + 1 >= n)
                return -1;
            out[o++] = *template;
        }
    }
    out[o] = '\0';
    return 0;
}

/* flt_dkim_plan_signer - i= from the template when it fits under d=. */
static void
flt_dkim_plan_signer(struct flt_dkim_plan *p, const char *template,
                     const char *domain)
{
    const char *at;
    size_t hl, dl = strlen(p->domain);

    p->signer[0] = '\0';
    if (template == NULL ||
        flt_dkim_expand(template, domain, p->signer, sizeof(p->signer)) < 0 ||
        (at = strchr(p->signer, '@')) == NULL) {
        p->signer[0] = '\0';
        return;
    }
    /* i= must be in d= or below it (RFC 6376 3.5), as OpenDKIM checks. */
    hl = strlen(at + 1);
    if (!(strcasecmp(at + 1, p->domain) == 0 ||
          (hl > dl && at[hl - dl] == '.' &&
           strcasecmp(at + 1 + hl - dl, p->domain) == 0)))
        p->signer[0] = '\0';
}

/* flt_dkim_plans - the signatures m should get; returns their number, 0
 * with the reason in why when none. */
size_t
flt_dkim_plans(const struct flt_dkim *fd, const struct msg *m,
               struct flt_dkim_plan *plans, char *why, size_t wn)
{
    char addr[FLT_DKIM_ADDR_MAX + 1], domain[FLT_DKIM_DOMAIN_MAX + 1];
    const struct flt_dkim_st *lines[FLT_DKIM_SIGS_MAX];
    const char *at;
    size_t found, n = 0, skipped = 0, i, k;

    if (!flt_dkim_address(fd, m, addr, sizeof(addr), why, wn))
        return 0;
    at = strrchr(addr, '@');
    if (at == NULL || strlen(at + 1) > FLT_DKIM_DOMAIN_MAX ||
        !flt_dkim_is_dns_name(at + 1, FLT_DKIM_DOMAIN_MAX, 0)) {
        snprintf(why, wn, "signing address has no ASCII domain name");
        return 0;
    }
    for (i = 0; at[1 + i] != '\0'; i++)
        domain[i] = (char)flt_dkim_lower((unsigned char)at[1 + i]);
    domain[i] = '\0';

    if (fd->tables == NULL) {
        if (strcmp(domain, fd->domain) != 0) {
            snprintf(why, wn, "no key for %s", domain);
            return 0;
        }
        if (flt_dkim_already_signed(m, fd->domain, fd->selector)) {
            snprintf(why, wn, "already signed, d=%s, s=%s", fd->domain,
                     fd->selector);
            return 0;
        }
        plans[0].key = fd->key;
        snprintf(plans[0].domain, sizeof(plans[0].domain), "%s", fd->domain);
        snprintf(plans[0].selector, sizeof(plans[0].selector), "%s",
                 fd->selector);
        plans[0].signer[0] = '\0';
        return 1;
    }

    found = flt_dkim_lookup(fd->tables, addr, lines, FLT_DKIM_SIGS_MAX);
    if (found == 0) {
        snprintf(why, wn, "no key for %s", domain);
        return 0;
    }
    for (i = 0; i < found; i++) {
        const struct flt_dkim_st *stl = lines[i];
        const struct flt_dkim_kt *kt;
        struct flt_dkim_plan *p = &plans[n];

        k = stl->kt != SIZE_MAX ? stl->kt
                                : flt_dkim_find_key(fd->tables, domain);
        if (k == SIZE_MAX) {
            snprintf(why, wn,
                     "no key for %s (%s:%u names key %%, the key table has "
                     "no key %s)",
                     domain, fd->tables->st_path, stl->line, domain);
            return 0;
        }
        kt = &fd->tables->keys[k];
        if (strcmp(kt->domain, "%") == 0)
            snprintf(p->domain, sizeof(p->domain), "%s", domain);
        else
            snprintf(p->domain, sizeof(p->domain), "%s", kt->domain);
        snprintf(p->selector, sizeof(p->selector), "%s", kt->selector);
        p->key = kt->key;
        if (flt_dkim_already_signed(m, p->domain, p->selector)) {
            skipped++;
            continue;
        }
        /* One signature per d= and s=, however often the tables name it:
         * the self-check tells signatures apart by those two. */
        for (k = 0; k < n; k++)
            if (strcmp(plans[k].domain, p->domain) == 0 &&
                strcmp(plans[k].selector, p->selector) == 0)
                break;
        if (k < n)
            continue;
        flt_dkim_plan_signer(p, stl->signer, domain);
        n++;
    }
    if (n == 0)
        snprintf(why, wn, "already signed, d=%s, s=%s%s", plans[0].domain,
                 plans[0].selector, skipped > 1 ? " and others" : "");
    return n;
}

/* ------------------------------------------------ sign and check */

/* flt_dkim_crlf - *wire is raw, msg_write()'s output, with CRLF line
 * ends: raw itself when it has them all, else a copy made in conv. */
int
flt_dkim_crlf(const struct buf *raw, struct buf *conv, const char **wire,
              size_t *wire_len, struct err *e)
{
    const char *p = raw->data != NULL ? raw->data : "", *end = p + raw->len;
    const char *nl;

    buf_reset(conv);
    for (nl = p; (nl = memchr(nl, '\n', (size_t)(end - nl))) != NULL; nl++)
        if (nl == p || nl[-1] != '\r')
            break;
    if (nl == NULL) {
        *wire = p;
        *wire_len = raw->len;
        return 0;
    }
    if (downgrade_lines(p, raw->len, 1, conv, e) < 0)
        return -1;
    *wire = conv->data;
    *wire_len = conv->len;
    return 0;
}

/* flt_dkim_wire - m as it goes out: msg_write()'s bytes, into raw, with
 * CRLF line ends (flt_dkim_crlf()). */
int
flt_dkim_wire(const struct msg *m, struct buf *raw, struct buf *conv,
              const char **wire, size_t *wire_len, struct err *e)
{
    buf_reset(raw);
    if (msg_write(m, raw, e) < 0)
        return -1;
    return flt_dkim_crlf(raw, conv, wire, wire_len, e);
}

/* flt_dkim_long_line - 1 when a line of the CRLF data passes 998 octets;
 * *in_header says whether it is in the header. */
int
flt_dkim_long_line(const char *p, size_t n, int *in_header)
{
    const char *s = p, *end = p + n, *nl;
    int header = 1;

    while ((nl = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        if ((size_t)(nl - s) > FLT_DKIM_LINE_LIMIT + 1) {
            *in_header = header;
            return 1;
        }
        if (nl - s <= 1)
            header = 0; /* the empty line */
        s = nl + 1;
    }
    *in_header = header;
    return (size_t)(end - s) > FLT_DKIM_LINE_LIMIT;
}

/* flt_dkim_feed - give libopendkim the CRLF message wire field by field,
 * then its body. A DKIM-Signature field that libopendkim cannot parse
 * (someone else's, malformed) is left out of its view: it refuses such a
 * field with DKIM_STAT_SYNTAX, and a DKIM-Signature is never among the
 * fields the stage signs, so leaving it out changes nothing checked. Returns
 * the first other failure. */
static DKIM_STAT
flt_dkim_feed(DKIM *dkim, const char *wire, size_t len)
{
    const char *p = wire, *end = wire + len, *q, *nl;
    DKIM_STAT status;

    while (p < end) {
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        for (q = p;; q = nl + 2) {
            nl = memmem(q, (size_t)(end - q), "\r\n", 2);
            if (nl == NULL) {
                nl = end;
                break;
            }
            if (end - nl < 3 || (nl[2] != ' ' && nl[2] != '\t'))
                break;
        }
        status = dkim_header(dkim, (unsigned char *)p, (size_t)(nl - p));
        if (status != DKIM_STAT_OK &&
            !(status == DKIM_STAT_SYNTAX && nl - p > 15 &&
              strncasecmp(p, "DKIM-Signature:", 15) == 0))
            return status;
        p = nl < end ? nl + 2 : end;
    }
    status = dkim_eoh(dkim);
    if (status != DKIM_STAT_OK && status != DKIM_STAT_NOSIG)
        return status;
    return dkim_body(dkim, (unsigned char *)p, (size_t)(end - p));
}

/* flt_dkim_sign_one - the value of a DKIM-Signature field for p over the
 * CRLF message wire, into out; memo as for flt_dkim_sig_make(). */
int
flt_dkim_sign_one(const struct flt_dkim *fd, const struct flt_dkim_plan *p,
                  const char *wire, size_t wire_len,
                  struct flt_dkim_body_memo *memo, const struct stage_env *env,
                  struct buf *out, struct err *e)
{
    struct flt_dkim_sign sign;
    time_t now = time(NULL);
    char *copy = NULL;
    int rc;

    if (env != NULL && env->fault != NULL) {
        if ((copy = malloc(wire_len + 1)) == NULL)
            return err_nomem(e);
        memcpy(copy, wire, wire_len);
        env->fault("dkim.sign", copy, wire_len);
        if (memcmp(copy, wire, wire_len) == 0) {
            free(copy);
            copy = NULL;
        } else {
            wire = copy;
            memo = NULL; /* the copy is gone before the check */
        }
    }
    sign.key = p->key->sig;
    sign.domain = p->domain;
    sign.selector = p->selector;
    sign.signer = p->signer[0] != '\0' ? p->signer : NULL;
    sign.hcanon = fd->hcanon;
    sign.bcanon = fd->bcanon;
    sign.sign_hdrs = fd->sign_hdrs;
    sign.oversign_hdrs = fd->oversign_hdrs;
    sign.time = (uint64_t)now;
    sign.expire = fd->ttl > 0 ? (uint64_t)now + fd->ttl : 0;
    buf_reset(out);
    rc = flt_dkim_sig_make(&sign, wire, wire_len, memo, out, e);
    free(copy);
    return rc;
}

/* What the verifying callbacks see: the signatures just made. */
struct flt_dkim_check {
    const struct flt_dkim_plan *plans;
    size_t nplans;
};

static const struct flt_dkim_plan *
flt_dkim_check_find(const struct flt_dkim_check *ck, DKIM_SIGINFO *sig)
{
    const char *d = (const char *)dkim_sig_getdomain(sig);
    const char *s = (const char *)dkim_sig_getselector(sig);
    size_t i;

    if (ck == NULL || d == NULL || s == NULL)
        return NULL;
    for (i = 0; i < ck->nplans; i++)
        if (strcasecmp(ck->plans[i].domain, d) == 0 &&
            strcasecmp(ck->plans[i].selector, s) == 0)
            return &ck->plans[i];
    return NULL;
}

DKIM_CBSTAT
flt_dkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    const struct flt_dkim_check *ck = dkim_get_user_context(dkim);
    int i;

    for (i = 0; i < nsigs; i++)
        if (flt_dkim_check_find(ck, sigs[i]) == NULL)
            dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

DKIM_CBSTAT
flt_dkim_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    const struct flt_dkim_plan *p =
        flt_dkim_check_find(dkim_get_user_context(dkim), sig);

    if (p == NULL ||
        (size_t)snprintf((char *)buf, buflen, "%s", p->key->record) >= buflen)
        return DKIM_CBSTAT_NOTFOUND;
    return DKIM_CBSTAT_CONTINUE;
}

/* flt_dkim_self_check_lib - flt_dkim_self_check() by libopendkim. */
static int
flt_dkim_self_check_lib(const struct flt_dkim *fd, const struct msg *m,
                        const struct flt_dkim_plan *plans, size_t nplans,
                        const char *wire, size_t wire_len, char *why,
                        size_t wn, struct err *e)
{
    struct flt_dkim_check ck = {plans, nplans};
    DKIM_SIGINFO **sigs = NULL;
    DKIM_STAT status;
    DKIM *dkim;
    int nsigs = 0, i, rc = 0;
    size_t k;

    dkim = dkim_verify(fd->verify_lib, (const unsigned char *)msg_qid(m), NULL,
                       &status);
    if (dkim == NULL)
        return err_set(e, ERR_LIB, "dkim_verify: %s",
                       dkim_getresultstr(status));
    if (dkim_set_user_context(dkim, &ck) != DKIM_STAT_OK) {
        dkim_free(dkim);
        return err_set(e, ERR_LIB, "dkim_set_user_context failed");
    }
    status = flt_dkim_feed(dkim, wire, wire_len);
    if (status != DKIM_STAT_OK && status != DKIM_STAT_NOSIG) {
        snprintf(why, wn, "verifier: %s",
                 dkim_geterror(dkim) != NULL ? dkim_geterror(dkim)
                                             : dkim_getresultstr(status));
        dkim_free(dkim);
        ERR_clear_error();
        return 1;
    }
    /* Its result is the first signature's; each is judged below. */
    (void)dkim_eom(dkim, NULL);
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK)
        nsigs = 0;
    for (k = 0; k < nplans && rc == 0; k++) {
        DKIM_SIGINFO *sig = NULL;

        for (i = 0; i < nsigs; i++)
            if (flt_dkim_check_find(&ck, sigs[i]) == &plans[k])
                sig = sigs[i];
        if (sig == NULL) {
            snprintf(why, wn, "signature not found");
            rc = 1;
        } else if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
            snprintf(why, wn, "body hash");
            rc = 1;
        } else if (!(dkim_sig_getflags(sig) & DKIM_SIGFLAG_PASSED)) {
            /* libopendkim checks the signature over the header hash
             * before it hashes the body. */
            if (dkim_sig_geterror(sig) == DKIM_SIGERROR_BADSIG ||
                dkim_sig_geterror(sig) == DKIM_SIGERROR_OK)
                snprintf(why, wn, "header hash");
            else
                snprintf(why, wn, "%s",
                         dkim_sig_geterrorstr(dkim_sig_geterror(sig)));
            rc = 1;
        } else if (dkim_sig_getbh(sig) != DKIM_SIGBH_MATCH) {
            snprintf(why, wn, "body hash not checked");
            rc = 1;
        }
        if (rc == 1) {
            size_t used = strlen(why);

            snprintf(why + used, wn - used, ", d=%s, s=%s", plans[k].domain,
                     plans[k].selector);
        }
    }
    dkim_free(dkim);
    ERR_clear_error();
    return rc;
}

/* flt_dkim_self_check - verify the new signatures over the CRLF message
 * wire. Returns 0 when all hold, 1 with the failure in why, -1 on an
 * error of the verifier itself. */
int
flt_dkim_self_check(const struct flt_dkim *fd, const struct msg *m,
                    const struct flt_dkim_plan *plans, size_t nplans,
                    const char *wire, size_t wire_len,
                    const struct flt_dkim_body_memo *memo, char *why,
                    size_t wn, struct err *e)
{
    size_t k, used;
    int rc;

    if (fd->verify_lib != NULL)
        return flt_dkim_self_check_lib(fd, m, plans, nplans, wire, wire_len,
                                       why, wn, e);
    for (k = 0; k < nplans; k++) {
        rc = flt_dkim_sig_check(plans[k].key->sig, plans[k].domain,
                                plans[k].selector, wire, wire_len, memo, why,
                                wn, e);
        if (rc != 0) {
            if (rc == 1 && (used = strlen(why)) < wn)
                snprintf(why + used, wn - used, ", d=%s, s=%s",
                         plans[k].domain, plans[k].selector);
            return rc;
        }
    }
    return 0;
}
