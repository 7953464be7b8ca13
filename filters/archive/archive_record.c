/*
 * archive_record - seal an archive record and read one back strictly
 *
 * The layout is in archive_int.h. arc_record_seal() compresses the
 * message with zstd, writes header, meta and body into the caller's
 * buffer and appends the SHA-256 of it all; arc_record_parse() checks
 * every length against the octets there are, every meta line against
 * the fixed list of keys, the message's size and SHA-256 against the
 * decompressed octets and the record hash against the record, and names
 * the record in every error. Sealing and parsing share nothing mutable:
 * both may run in any number of threads.
 *
 * A parsed record owns its decoded meta (metabuf), its recipient array
 * and its message buffer; arc_rec_free() releases them.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "filters/archive/archive_int.h"

/* The meta keys, in the order a record holds them. */
enum arc_key {
    ARC_K_TIME,
    ARC_K_POINT,
    ARC_K_QID,
    ARC_K_MSGID,
    ARC_K_SUBJECT,
    ARC_K_CLIENT_ADDR,
    ARC_K_CLIENT_NAME,
    ARC_K_AUTH_USER,
    ARC_K_SENDER,
    ARC_K_NRCPT,
    ARC_K_RCPT,
    ARC_K_VERDICTS,
    ARC_K_SIZE,
    ARC_K_SHA256,
    ARC_K_ENCRYPTED_TO,
    ARC_K_REF,
    ARC_K_VERDICT,
    ARC_K_TO,
    ARC_K_PREV_HASH,
    ARC_K_LAST_HASH,
    ARC_K_COUNT,
    ARC_K_KEY_ID,
    ARC_K_SIG,
    ARC_K_N
};

static const char *const arc_keys[ARC_K_N] = {
    [ARC_K_TIME] = "time",
    [ARC_K_POINT] = "point",
    [ARC_K_QID] = "qid",
    [ARC_K_MSGID] = "message-id",
    [ARC_K_SUBJECT] = "subject",
    [ARC_K_CLIENT_ADDR] = "client-addr",
    [ARC_K_CLIENT_NAME] = "client-name",
    [ARC_K_AUTH_USER] = "auth-user",
    [ARC_K_SENDER] = "sender",
    [ARC_K_NRCPT] = "nrcpt",
    [ARC_K_RCPT] = "rcpt",
    [ARC_K_VERDICTS] = "verdicts",
    [ARC_K_SIZE] = "size",
    [ARC_K_SHA256] = "sha256",
    [ARC_K_ENCRYPTED_TO] = "encrypted-to",
    [ARC_K_REF] = "ref",
    [ARC_K_VERDICT] = "verdict",
    [ARC_K_TO] = "to",
    [ARC_K_PREV_HASH] = "prev-hash",
    [ARC_K_LAST_HASH] = "last-hash",
    [ARC_K_COUNT] = "count",
    [ARC_K_KEY_ID] = "key-id",
    [ARC_K_SIG] = "sig",
};

const char *
arc_kind_name(enum arc_kind k)
{
    switch (k) {
    case ARC_KIND_MESSAGE:
        return "message";
    case ARC_KIND_CHECKPOINT:
        return "checkpoint";
    case ARC_KIND_TOMBSTONE:
        return "tombstone";
    case ARC_KIND_OUTCOME:
        return "outcome";
    }
    return "unknown";
}

void
arc_hex(char *out, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int
arc_unhex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* arc_unhex - exactly 2n lower-case hex digits in s into out. */
static int
arc_unhex(const char *s, unsigned char *out, size_t n)
{
    size_t i;

    if (strlen(s) != 2 * n)
        return -1;
    for (i = 0; i < n; i++) {
        int hi = arc_unhex_digit((unsigned char)s[2 * i]);
        int lo = arc_unhex_digit((unsigned char)s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int
arc_writer_ok(const char *w)
{
    size_t i, n = strlen(w);

    if (n == 0 || n > ARC_WRITER_MAX || w[0] == '.')
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)w[i] <= 0x20 || (unsigned char)w[i] >= 0x7f ||
            w[i] == '/' || w[i] == '%')
            return 0;
    return 1;
}

void
arc_name(char *out, const char *writer, unsigned long long seq)
{
    snprintf(out, ARC_NAME_MAX + 1, "%s/%016llx", writer, seq);
}

int
arc_name_parse(const char *name, char writer[ARC_WRITER_MAX + 1],
               unsigned long long *seq)
{
    const char *slash = strrchr(name, '/');
    unsigned long long v = 0;
    size_t wl, i;

    if (slash == NULL || (wl = (size_t)(slash - name)) == 0 ||
        wl > ARC_WRITER_MAX || strlen(slash + 1) != 16)
        return -1;
    memcpy(writer, name, wl);
    writer[wl] = '\0';
    if (!arc_writer_ok(writer))
        return -1;
    for (i = 1; i <= 16; i++) {
        int d = arc_unhex_digit((unsigned char)slash[i]);

        if (d < 0)
            return -1;
        v = v << 4 | (unsigned)d;
    }
    if (v == 0)
        return -1;
    *seq = v;
    return 0;
}

void
arc_checkpoint_text(char *out, size_t n, const char *writer,
                    unsigned long long seq, const unsigned char *prev,
                    long long time, unsigned long long count)
{
    char hex[2 * ARC_HASH_LEN + 1];

    arc_hex(hex, prev, ARC_HASH_LEN);
    snprintf(out, n,
             "relaychain archive checkpoint v1\nwriter %s\nseq %llu\nprev "
             "%s\ntime %lld\ncount %llu\n",
             writer, seq, hex, time, count);
}

static void
arc_put_be(unsigned char *p, unsigned long long v, int octets)
{
    int i;

    for (i = octets - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static unsigned long long
arc_get_be(const unsigned char *p, int octets)
{
    unsigned long long v = 0;
    int i;

    for (i = 0; i < octets; i++)
        v = v << 8 | p[i];
    return v;
}

static int
arc_sha256(const void *p, size_t n, unsigned char out[ARC_HASH_LEN])
{
    unsigned int len = 0;

    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 ||
        len != ARC_HASH_LEN)
        return -1;
    return 0;
}

/* arc_meta_put - one "key value\n" line, value escaped. NULL values are
 * left out. */
static int
arc_meta_put(struct buf *b, enum arc_key k, const char *v, struct err *e)
{
    static const char digits[] = "0123456789ABCDEF";
    const unsigned char *p;

    if (v == NULL)
        return 0;
    if (buf_puts(b, arc_keys[k], e) < 0 || buf_putc(b, ' ', e) < 0)
        return -1;
    for (p = (const unsigned char *)v; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '%') {
            char esc[3] = {'%', digits[*p >> 4], digits[*p & 15]};

            if (buf_append(b, esc, 3, e) < 0)
                return -1;
        } else if (buf_putc(b, *p, e) < 0) {
            return -1;
        }
    }
    return buf_putc(b, '\n', e);
}

static int
arc_meta_num(struct buf *b, enum arc_key k, unsigned long long v,
             struct err *e)
{
    char num[32];

    snprintf(num, sizeof(num), "%llu", v);
    return arc_meta_put(b, k, num, e);
}

static int
arc_meta_hex(struct buf *b, enum arc_key k, const unsigned char *p, size_t n,
             struct err *e)
{
    char hex[2 * 64 + 1];

    if (p == NULL)
        return 0;
    arc_hex(hex, p, n);
    return arc_meta_put(b, k, hex, e);
}

static int
arc_meta_build(const struct arc_seal_in *in, const unsigned char *sha,
               const char *to, struct buf *b, struct err *e)
{
    const struct arc_meta *m = in->meta;
    const struct arc_extra *x = in->x;
    char num[32];
    size_t i;

    snprintf(num, sizeof(num), "%lld", m != NULL ? m->time : 0LL);
    if (arc_meta_put(b, ARC_K_TIME, num, e) < 0)
        return -1;
    if (in->kind == ARC_KIND_MESSAGE) {
        if (m->nrcpts > ARC_RCPTS_MAX)
            return err_set(e, ERR_INPUT, "more than %d recipients",
                           ARC_RCPTS_MAX);
        if (arc_meta_put(b, ARC_K_POINT, m->point, e) < 0 ||
            arc_meta_put(b, ARC_K_QID, m->qid, e) < 0 ||
            arc_meta_put(b, ARC_K_MSGID, m->message_id, e) < 0 ||
            arc_meta_put(b, ARC_K_SUBJECT, m->subject, e) < 0 ||
            arc_meta_put(b, ARC_K_CLIENT_ADDR, m->client_addr, e) < 0 ||
            arc_meta_put(b, ARC_K_CLIENT_NAME, m->client_name, e) < 0 ||
            arc_meta_put(b, ARC_K_AUTH_USER, m->auth_user, e) < 0 ||
            arc_meta_put(b, ARC_K_SENDER, m->sender != NULL ? m->sender : "",
                         e) < 0 ||
            arc_meta_num(b, ARC_K_NRCPT, m->nrcpts, e) < 0)
            return -1;
        for (i = 0; i < m->nrcpts; i++)
            if (arc_meta_put(b, ARC_K_RCPT, m->rcpts[i], e) < 0)
                return -1;
        if (arc_meta_put(b, ARC_K_VERDICTS,
                         m->verdicts != NULL ? m->verdicts : "", e) < 0 ||
            arc_meta_num(b, ARC_K_SIZE, in->len, e) < 0 ||
            arc_meta_hex(b, ARC_K_SHA256, sha, ARC_HASH_LEN, e) < 0 ||
            arc_meta_put(b, ARC_K_ENCRYPTED_TO, to, e) < 0)
            return -1;
        return 0;
    }
    if (x == NULL)
        return err_set(e, ERR_INTERNAL, "%s record without its fields",
                       arc_kind_name(in->kind));
    switch (in->kind) {
    case ARC_KIND_OUTCOME:
        if (x->ref == NULL || x->verdict == NULL)
            return err_set(e, ERR_INTERNAL, "outcome without ref or verdict");
        return arc_meta_put(b, ARC_K_REF, x->ref, e) < 0 ||
                       arc_meta_put(b, ARC_K_VERDICT, x->verdict, e) < 0
                   ? -1
                   : 0;
    case ARC_KIND_TOMBSTONE:
        if (x->ref == NULL || x->prev_hash == NULL || x->last_hash == NULL)
            return err_set(e, ERR_INTERNAL, "tombstone without its range");
        return arc_meta_put(b, ARC_K_REF, x->ref, e) < 0 ||
                       arc_meta_num(b, ARC_K_TO, x->to, e) < 0 ||
                       arc_meta_hex(b, ARC_K_PREV_HASH, x->prev_hash,
                                    ARC_HASH_LEN, e) < 0 ||
                       arc_meta_hex(b, ARC_K_LAST_HASH, x->last_hash,
                                    ARC_HASH_LEN, e) < 0
                   ? -1
                   : 0;
    case ARC_KIND_CHECKPOINT:
        if (x->sig == NULL || x->key_id == NULL)
            return err_set(e, ERR_INTERNAL, "checkpoint without signature");
        return arc_meta_num(b, ARC_K_COUNT, x->count, e) < 0 ||
                       arc_meta_put(b, ARC_K_KEY_ID, x->key_id, e) < 0 ||
                       arc_meta_hex(b, ARC_K_SIG, x->sig, 64, e) < 0
                   ? -1
                   : 0;
    case ARC_KIND_MESSAGE:
        break;
    }
    return err_set(e, ERR_INTERNAL, "unknown record kind");
}

void
arc_parts_init(struct arc_parts *pt)
{
    buf_init(&pt->meta, ARC_META_MAX);
    buf_init(&pt->body, 0);
    pt->encrypted = 0;
}

void
arc_parts_fini(struct arc_parts *pt)
{
    buf_fini(&pt->meta);
    buf_fini(&pt->body);
}

int
arc_record_prepare(const struct arc_seal_in *in, struct arc_parts *pt,
                   struct err *e)
{
    unsigned char sha[ARC_HASH_LEN];
    char to[ARC_TO_MAX + 1];
    size_t bound, clen;

    buf_reset(&pt->meta);
    buf_reset(&pt->body);
    pt->encrypted = 0;
    if (in->kind == ARC_KIND_MESSAGE) {
        if (in->meta == NULL || in->data == NULL)
            return err_set(e, ERR_INTERNAL, "message record without data");
        if (in->len > ARC_BODY_MAX)
            return err_set(e, ERR_LIMIT, "message over %lu octets",
                           (unsigned long)ARC_BODY_MAX);
        if (arc_sha256(in->data, in->len, sha) < 0)
            return err_set(e, ERR_LIB, "SHA-256 failed");
    }
    if (in->kind != ARC_KIND_MESSAGE)
        return arc_meta_build(in, sha, NULL, &pt->meta, e);
    bound = ZSTD_compressBound(in->len);
    if (buf_reserve(&pt->body, bound, e) < 0)
        return -1;
    clen = ZSTD_compress(pt->body.data, bound, in->data, in->len, in->level);
    if (ZSTD_isError(clen))
        return err_set(e, ERR_LIB, "zstd: %s", ZSTD_getErrorName(clen));
    if (clen > 0xffffffffUL)
        return err_set(e, ERR_LIMIT, "compressed message over 4 GiB");
    pt->body.len = clen;
    if (in->encrypt != NULL) {
        struct buf enc;

        /* The zstd frame is what is encrypted: the payload decrypts to
         * it, and zstd -d gives the message. Failing here fails the
         * record: it is never written in clear instead. */
        buf_init(&enc, 0);
        to[0] = '\0';
        if (in->encrypt(in->encrypt_arg, pt->body.data, pt->body.len, &enc, to,
                        sizeof(to), e) < 0) {
            buf_fini(&enc);
            return -1;
        }
        if (enc.len == 0 || enc.len > 0xffffffffUL || to[0] == '\0') {
            buf_fini(&enc);
            return err_set(e, ERR_TEMP, "encrypt_to: no usable output");
        }
        buf_fini(&pt->body);
        pt->body = enc;
        pt->encrypted = 1;
    }
    return arc_meta_build(in, sha, pt->encrypted ? to : NULL, &pt->meta, e);
}

int
arc_record_finish(const struct arc_seal_in *in, const struct arc_parts *pt,
                  struct buf *out, unsigned char hash[ARC_HASH_LEN],
                  struct err *e)
{
    unsigned char head[ARC_HEAD_LEN], len4[4];
    size_t start = out->len, wl;

    if (in->writer == NULL || !arc_writer_ok(in->writer))
        return err_set(e, ERR_INPUT, "bad archive writer name");
    if (in->seq == 0)
        return err_set(e, ERR_INTERNAL, "record seq 0");
    wl = strlen(in->writer);
    memcpy(head, ARC_MAGIC, ARC_MAGIC_LEN);
    head[6] = (unsigned char)in->kind;
    head[7] = pt->encrypted ? ARC_FLAG_ENCRYPTED : 0;
    arc_put_be(head + 8, in->seq, 8);
    memcpy(head + 16, in->prev, ARC_HASH_LEN);
    head[16 + ARC_HASH_LEN] = (unsigned char)wl;
    if (buf_reserve(out,
                    sizeof(head) + wl + 8 + pt->meta.len + pt->body.len +
                        ARC_HASH_LEN,
                    e) < 0 ||
        buf_append(out, head, sizeof(head), e) < 0 ||
        buf_append(out, in->writer, wl, e) < 0)
        goto undo;
    arc_put_be(len4, pt->meta.len, 4);
    if (buf_append(out, len4, 4, e) < 0 ||
        buf_append(out, pt->meta.data, pt->meta.len, e) < 0)
        goto undo;
    arc_put_be(len4, pt->body.len, 4);
    if (buf_append(out, len4, 4, e) < 0 ||
        buf_append(out, pt->body.data, pt->body.len, e) < 0)
        goto undo;
    if (arc_sha256(out->data + start, out->len - start, hash) < 0) {
        err_set(e, ERR_LIB, "SHA-256 failed");
        goto undo;
    }
    if (buf_append(out, hash, ARC_HASH_LEN, e) < 0)
        goto undo;
    return 0;
undo:
    out->len = start;
    if (out->data != NULL)
        out->data[start] = '\0';
    return -1;
}

int
arc_record_seal(const struct arc_seal_in *in, struct buf *out,
                unsigned char hash[ARC_HASH_LEN], struct err *e)
{
    struct arc_parts pt;
    int rc;

    arc_parts_init(&pt);
    rc = arc_record_prepare(in, &pt, e) < 0
             ? -1
             : arc_record_finish(in, &pt, out, hash, e);
    arc_parts_fini(&pt);
    return rc;
}

int
arc_record_peek(const unsigned char *p, size_t n, enum arc_kind *kind,
                char writer[ARC_WRITER_MAX + 1], unsigned long long *seq)
{
    size_t wl;

    if (n < ARC_HEAD_LEN || memcmp(p, ARC_MAGIC, ARC_MAGIC_LEN) != 0)
        return -1;
    wl = p[ARC_HEAD_LEN - 1];
    if (wl == 0 || wl > ARC_WRITER_MAX || n < ARC_HEAD_LEN + wl)
        return -1;
    memcpy(writer, p + ARC_HEAD_LEN, wl);
    writer[wl] = '\0';
    if (!arc_writer_ok(writer))
        return -1;
    *kind = (enum arc_kind)p[6];
    *seq = arc_get_be(p + 8, 8);
    return 0;
}

void
arc_rec_free(struct arc_rec *r)
{
    if (r == NULL)
        return;
    free(r->metabuf);
    free(r->rcpts);
    buf_fini(&r->msg);
    r->metabuf = NULL;
    r->rcpts = NULL;
}

/* arc_meta_unescape - decode %XX in place; -1 for a bad escape or a raw
 * octet that should have been escaped. */
static int
arc_meta_unescape(char *s)
{
    char *w = s;
    const char *r = s;

    for (; *r != '\0'; r++) {
        unsigned char c = (unsigned char)*r;

        if (c <= 0x20 || c == 0x7f)
            return -1;
        if (c == '%') {
            int hi, lo;

            hi = r[1] >= 'A' && r[1] <= 'F'   ? r[1] - 'A' + 10
                 : r[1] >= '0' && r[1] <= '9' ? r[1] - '0'
                                              : -1;
            lo = hi < 0                       ? -1
                 : r[2] >= 'A' && r[2] <= 'F' ? r[2] - 'A' + 10
                 : r[2] >= '0' && r[2] <= '9' ? r[2] - '0'
                                              : -1;
            if (lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            /* Only what must be escaped is; NUL never is a value. */
            if (c == 0 || (c > 0x20 && c != 0x7f && c != '%'))
                return -1;
            r += 2;
        }
        *w++ = (char)c;
    }
    *w = '\0';
    return 0;
}

static int
arc_parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;

    if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (max - (unsigned long long)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (unsigned long long)(*s - '0');
    }
    *out = v;
    return 0;
}

static int
arc_parse_time(const char *s, long long *out)
{
    unsigned long long v;
    int neg = *s == '-';

    if (arc_parse_num(s + neg, 0x7fffffffffffffffULL, &v) < 0 ||
        (neg && v == 0))
        return -1;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

/* The keys each kind must have (bit per enum arc_key) and may have. */
#define ARC_BIT(k) (1u << (k))
static const unsigned arc_required_message =
    ARC_BIT(ARC_K_TIME) | ARC_BIT(ARC_K_POINT) | ARC_BIT(ARC_K_SENDER) |
    ARC_BIT(ARC_K_NRCPT) | ARC_BIT(ARC_K_VERDICTS) | ARC_BIT(ARC_K_SIZE) |
    ARC_BIT(ARC_K_SHA256);
static const unsigned arc_allowed_message =
    ARC_BIT(ARC_K_TIME) | ARC_BIT(ARC_K_POINT) | ARC_BIT(ARC_K_QID) |
    ARC_BIT(ARC_K_MSGID) | ARC_BIT(ARC_K_SUBJECT) |
    ARC_BIT(ARC_K_CLIENT_ADDR) | ARC_BIT(ARC_K_CLIENT_NAME) |
    ARC_BIT(ARC_K_AUTH_USER) | ARC_BIT(ARC_K_SENDER) | ARC_BIT(ARC_K_NRCPT) |
    ARC_BIT(ARC_K_RCPT) | ARC_BIT(ARC_K_VERDICTS) | ARC_BIT(ARC_K_SIZE) |
    ARC_BIT(ARC_K_SHA256) | ARC_BIT(ARC_K_ENCRYPTED_TO);
static const unsigned arc_required_outcome =
    ARC_BIT(ARC_K_TIME) | ARC_BIT(ARC_K_REF) | ARC_BIT(ARC_K_VERDICT);
static const unsigned arc_required_tombstone =
    ARC_BIT(ARC_K_TIME) | ARC_BIT(ARC_K_REF) | ARC_BIT(ARC_K_TO) |
    ARC_BIT(ARC_K_PREV_HASH) | ARC_BIT(ARC_K_LAST_HASH);
static const unsigned arc_required_checkpoint =
    ARC_BIT(ARC_K_TIME) | ARC_BIT(ARC_K_COUNT) | ARC_BIT(ARC_K_KEY_ID) |
    ARC_BIT(ARC_K_SIG);

/* arc_meta_parse - the meta lines of r (its metabuf, n octets and a NUL)
 * into r->meta and r->x. */
static int
arc_meta_parse(struct arc_rec *r, size_t n, const char *name, struct err *e)
{
    unsigned seen = 0, required, allowed;
    unsigned long long v, nrcpt = 0;
    size_t nr = 0;
    char *line = r->metabuf, *end = r->metabuf + n;
    int last = -1;

    switch (r->kind) {
    case ARC_KIND_MESSAGE:
        required = arc_required_message;
        allowed = arc_allowed_message;
        break;
    case ARC_KIND_OUTCOME:
        required = allowed = arc_required_outcome;
        break;
    case ARC_KIND_TOMBSTONE:
        required = allowed = arc_required_tombstone;
        break;
    case ARC_KIND_CHECKPOINT:
        required = allowed = arc_required_checkpoint;
        break;
    default:
        return err_set(e, ERR_INPUT, "record %s: unknown kind 0x%02x", name,
                       (unsigned)r->kind);
    }
    if (n > 0 && end[-1] != '\n')
        return err_set(e, ERR_INPUT, "record %s: meta does not end a line",
                       name);
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line)), *sp, *val;
        int k;

        *nl = '\0';
        if ((sp = strchr(line, ' ')) == NULL)
            return err_set(e, ERR_INPUT, "record %s: meta line without value",
                           name);
        *sp = '\0';
        val = sp + 1;
        for (k = 0; k < ARC_K_N; k++)
            if (strcmp(line, arc_keys[k]) == 0)
                break;
        if (k == ARC_K_N || !(allowed & ARC_BIT(k)))
            return err_set(e, ERR_INPUT, "record %s: unexpected meta key",
                           name);
        if (k < last || (k == last && k != ARC_K_RCPT))
            return err_set(e, ERR_INPUT,
                           "record %s: meta key %s out of order or twice",
                           name, arc_keys[k]);
        last = k;
        seen |= ARC_BIT(k);
        if (arc_meta_unescape(val) < 0)
            return err_set(e, ERR_INPUT, "record %s: bad %s value", name,
                           arc_keys[k]);
        switch (k) {
        case ARC_K_TIME:
            if (arc_parse_time(val, &r->meta.time) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad time", name);
            break;
        case ARC_K_POINT:
            r->meta.point = val;
            break;
        case ARC_K_QID:
            r->meta.qid = val;
            break;
        case ARC_K_MSGID:
            r->meta.message_id = val;
            break;
        case ARC_K_SUBJECT:
            r->meta.subject = val;
            break;
        case ARC_K_CLIENT_ADDR:
            r->meta.client_addr = val;
            break;
        case ARC_K_CLIENT_NAME:
            r->meta.client_name = val;
            break;
        case ARC_K_AUTH_USER:
            r->meta.auth_user = val;
            break;
        case ARC_K_SENDER:
            r->meta.sender = val;
            break;
        case ARC_K_NRCPT:
            if (arc_parse_num(val, ARC_RCPTS_MAX, &nrcpt) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad nrcpt", name);
            if ((r->rcpts = calloc(nrcpt + 1, sizeof(*r->rcpts))) == NULL)
                return err_nomem(e);
            break;
        case ARC_K_RCPT:
            if (nr >= nrcpt)
                return err_set(e, ERR_INPUT,
                               "record %s: more rcpt lines than nrcpt", name);
            r->rcpts[nr++] = val;
            break;
        case ARC_K_VERDICTS:
            r->meta.verdicts = val;
            break;
        case ARC_K_SIZE:
            if (arc_parse_num(val, ARC_BODY_MAX, &v) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad size", name);
            r->meta.size = (size_t)v;
            break;
        case ARC_K_SHA256:
            if (arc_unhex(val, r->meta.sha256, ARC_HASH_LEN) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad sha256", name);
            break;
        case ARC_K_ENCRYPTED_TO:
            r->meta.encrypted_to = val;
            break;
        case ARC_K_REF:
            r->x.ref = val;
            break;
        case ARC_K_VERDICT:
            r->x.verdict = val;
            break;
        case ARC_K_TO:
            if (arc_parse_num(val, ~0ULL, &r->x.to) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad to", name);
            break;
        case ARC_K_PREV_HASH:
        case ARC_K_LAST_HASH: {
            int i = k == ARC_K_LAST_HASH;

            if (arc_unhex(val, r->xhash[i], ARC_HASH_LEN) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad %s", name,
                               arc_keys[k]);
            if (i)
                r->x.last_hash = r->xhash[1];
            else
                r->x.prev_hash = r->xhash[0];
            break;
        }
        case ARC_K_COUNT:
            if (arc_parse_num(val, ~0ULL, &r->x.count) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad count", name);
            break;
        case ARC_K_KEY_ID:
            r->x.key_id = val;
            break;
        case ARC_K_SIG:
            if (arc_unhex(val, r->xsig, 64) < 0)
                return err_set(e, ERR_INPUT, "record %s: bad sig", name);
            r->x.sig = r->xsig;
            break;
        }
        line = nl + 1;
    }
    if ((seen & required) != required)
        return err_set(e, ERR_INPUT, "record %s: meta keys missing", name);
    if (r->kind == ARC_KIND_MESSAGE) {
        if (nr != nrcpt)
            return err_set(e, ERR_INPUT,
                           "record %s: %zu rcpt lines, nrcpt says %llu", name,
                           nr, nrcpt);
        r->meta.rcpts = r->rcpts;
        r->meta.nrcpts = nr;
    }
    if (r->kind == ARC_KIND_TOMBSTONE) {
        char w[ARC_WRITER_MAX + 1];
        unsigned long long from;

        /* A purge writes them in a chain of its own (WRITER~purge). */
        if (arc_name_parse(r->x.ref, w, &from) < 0 || r->x.to < from ||
            (strcmp(w, r->writer) == 0 && r->x.to >= r->seq))
            return err_set(e, ERR_INPUT, "record %s: bad tombstone range",
                           name);
    }
    return 0;
}

int
arc_record_parse(const unsigned char *p, size_t n, struct arc_rec *out,
                 struct err *e)
{
    unsigned char hash[ARC_HASH_LEN];
    char name[ARC_NAME_MAX + 1];
    size_t at, wl, meta_len, body_len;
    unsigned long long fsize;

    memset(out, 0, sizeof(*out));
    buf_init(&out->msg, ARC_BODY_MAX);
    if (n < ARC_HEAD_LEN || memcmp(p, ARC_MAGIC, ARC_MAGIC_LEN) != 0)
        return err_set(e, ERR_INPUT, "not an archive record (no %s header)",
                       ARC_MAGIC);
    if (arc_record_peek(p, n, &out->kind, out->writer, &out->seq) < 0)
        return err_set(e, ERR_INPUT, "archive record with a bad writer name");
    if (out->seq == 0)
        return err_set(e, ERR_INPUT, "record %s: seq 0", out->writer);
    arc_name(name, out->writer, out->seq);
    if (p[7] != 0 &&
        !(p[7] == ARC_FLAG_ENCRYPTED && out->kind == ARC_KIND_MESSAGE))
        return err_set(e, ERR_INPUT, "record %s: unknown flags 0x%02x", name,
                       p[7]);
    memcpy(out->prev, p + 16, ARC_HASH_LEN);
    wl = strlen(out->writer);
    at = ARC_HEAD_LEN + wl;
    if (n - at < 4)
        return err_set(e, ERR_INPUT, "record %s: cut short in its header",
                       name);
    meta_len = (size_t)arc_get_be(p + at, 4);
    at += 4;
    if (meta_len > ARC_META_MAX || n - at < meta_len)
        return err_set(e, ERR_INPUT, "record %s: meta length %zu past its end",
                       name, meta_len);
    if ((out->metabuf = malloc(meta_len + 1)) == NULL)
        return err_nomem(e);
    memcpy(out->metabuf, p + at, meta_len);
    out->metabuf[meta_len] = '\0';
    if (memchr(out->metabuf, '\0', meta_len) != NULL)
        return err_set(e, ERR_INPUT, "record %s: NUL in meta", name);
    at += meta_len;
    if (n - at < 4)
        return err_set(e, ERR_INPUT, "record %s: cut short after meta", name);
    body_len = (size_t)arc_get_be(p + at, 4);
    at += 4;
    if (n - at < body_len || n - at - body_len != ARC_HASH_LEN)
        return err_set(
            e, ERR_INPUT,
            "record %s: body length %zu does not match the record's "
            "%zu octets",
            name, body_len, n);
    if (arc_sha256(p, at + body_len, hash) < 0)
        return err_set(e, ERR_LIB, "record %s: SHA-256 failed", name);
    if (memcmp(hash, p + at + body_len, ARC_HASH_LEN) != 0)
        return err_set(e, ERR_INPUT,
                       "record %s: altered (its hash does not match)", name);
    memcpy(out->hash, hash, ARC_HASH_LEN);
    if (arc_meta_parse(out, meta_len, name, e) < 0)
        return -1;
    if ((p[7] == ARC_FLAG_ENCRYPTED) != (out->meta.encrypted_to != NULL))
        return err_set(e, ERR_INPUT,
                       "record %s: encrypted flag and encrypted-to disagree",
                       name);
    if (out->meta.encrypted_to != NULL) {
        /* Without the private key all that can be checked is the hash,
         * done above; the payload is handed out as it is. */
        if (body_len == 0 || out->meta.encrypted_to[0] == '\0' ||
            strlen(out->meta.encrypted_to) > ARC_TO_MAX)
            return err_set(e, ERR_INPUT,
                           "record %s: encrypted record without a payload",
                           name);
        if (buf_append(&out->msg, p + at, body_len, e) < 0)
            return -1;
        return 0;
    }
    if (out->kind != ARC_KIND_MESSAGE) {
        if (body_len != 0)
            return err_set(e, ERR_INPUT, "record %s: %s record with a body",
                           name, arc_kind_name(out->kind));
        return 0;
    }
    /* The size in meta is checked against zstd's frame header before
     * anything is allocated for it, and against what comes out. */
    fsize = ZSTD_getFrameContentSize(p + at, body_len);
    if (fsize == ZSTD_CONTENTSIZE_ERROR || fsize == ZSTD_CONTENTSIZE_UNKNOWN ||
        fsize != out->meta.size ||
        ZSTD_findFrameCompressedSize(p + at, body_len) != body_len)
        return err_set(e, ERR_INPUT,
                       "record %s: compressed body does not hold the %zu "
                       "octets its meta says",
                       name, out->meta.size);
    if (buf_reserve(&out->msg, out->meta.size + 1, e) < 0)
        return -1;
    {
        size_t got = ZSTD_decompress(out->msg.data, out->meta.size + 1, p + at,
                                     body_len);

        if (ZSTD_isError(got) || got != out->meta.size)
            return err_set(e, ERR_INPUT, "record %s: body does not decompress",
                           name);
        out->msg.len = got;
        out->msg.data[got] = '\0';
    }
    if (arc_sha256(out->msg.data, out->msg.len, hash) < 0)
        return err_set(e, ERR_LIB, "record %s: SHA-256 failed", name);
    if (memcmp(hash, out->meta.sha256, ARC_HASH_LEN) != 0)
        return err_set(e, ERR_INPUT,
                       "record %s: message does not match its SHA-256", name);
    return 0;
}
