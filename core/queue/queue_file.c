/*
 * queue_file - the queue file format: records, checksum, reader, writer
 *
 * See queue_file.h for the format. The writer builds every record up to
 * the message record's header in memory (queue_file_head); the message
 * follows as it is, from one buffer or in pieces, and the end record
 * (queue_file_tail) is computed over both without a copy, so the daemon
 * can write a large message straight from the SMTP session's pieces.
 *
 * The reader (queue_file_parse) takes a whole file or, for a listing,
 * its head, and walks the records once: each header is checked for
 * order and size (queue_parse_header), each payload for its syntax
 * (queue_parse_payload), the end record for the checksum and the end of
 * the file (queue_parse_end), and at the end that every record a file
 * needs was there (queue_parse_complete). It never trusts a length
 * before checking it against the octets it was given, and never reads
 * past them: every failure is ERR_INPUT with the first problem found.
 *
 * Nothing here touches the spool but queue_read_fd(), which reads a file
 * the caller opened.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/queue_file.h"

#define QUEUE_VERSION "relaychain-queue 1"
#define QUEUE_TIME_MAX (95617584000LL * 1000000) /* 5000-01-01, in us */

/* ----------------------------------------------------------- checksum */

static const uint32_t queue_crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u,
    0x706af48fu, 0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u,
    0xe0d5e91eu, 0x97d2d988u, 0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u,
    0x90bf1d91u, 0x1db71064u, 0x6ab020f2u, 0xf3b97148u, 0x84be41deu,
    0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u, 0x136c9856u,
    0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u,
    0xa2677172u, 0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu,
    0x35b5a8fau, 0x42b2986cu, 0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u,
    0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u, 0x26d930acu, 0x51de003au,
    0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u, 0xcfba9599u,
    0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u,
    0x01db7106u, 0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu,
    0x9fbfe4a5u, 0xe8b8d433u, 0x7807c9a2u, 0x0f00f934u, 0x9609a88eu,
    0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du, 0x91646c97u, 0xe6635c01u,
    0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu, 0x6c0695edu,
    0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u,
    0xfbd44c65u, 0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u,
    0x4adfa541u, 0x3dd895d7u, 0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au,
    0x346ed9fcu, 0xad678846u, 0xda60b8d0u, 0x44042d73u, 0x33031de5u,
    0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau, 0xbe0b1010u,
    0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u,
    0x2eb40d81u, 0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u,
    0x03b6e20cu, 0x74b1d29au, 0xead54739u, 0x9dd277afu, 0x04db2615u,
    0x73dc1683u, 0xe3630b12u, 0x94643b84u, 0x0d6d6a3eu, 0x7a6a5aa8u,
    0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u, 0xf00f9344u,
    0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au,
    0x67dd4accu, 0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u,
    0xd6d6a3e8u, 0xa1d1937eu, 0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u,
    0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu, 0xd80d2bdau, 0xaf0a1b4cu,
    0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u, 0x316e8eefu,
    0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu,
    0xb2bd0b28u, 0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u,
    0x2cd99e8bu, 0x5bdeae1du, 0x9b64c2b0u, 0xec63f226u, 0x756aa39cu,
    0x026d930au, 0x9c0906a9u, 0xeb0e363fu, 0x72076785u, 0x05005713u,
    0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u, 0x92d28e9bu,
    0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u,
    0x18b74777u, 0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu,
    0x8f659effu, 0xf862ae69u, 0x616bffd3u, 0x166ccf45u, 0xa00ae278u,
    0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u, 0xa7672661u, 0xd06016f7u,
    0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu, 0x40df0b66u,
    0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u,
    0xcdd70693u, 0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u,
    0x5d681b02u, 0x2a6f2b94u, 0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu,
    0x2d02ef8du,
};

static uint32_t
queue_crc(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *s = p;

    while (n-- > 0)
        crc = queue_crc_table[(crc ^ *s++) & 0xff] ^ (crc >> 8);
    return crc;
}

static int
queue_rec_is_mutable(int type)
{
    return type == QUEUE_REC_STATE || type == QUEUE_REC_RCPT;
}

/* queue_crc_head - continue crc over the records in p[0..n), which
 * starts at a record boundary, counting each mutable octet as 0. The
 * last record may run past n: the writer sums the message record's
 * header here and its payload separately. */
static uint32_t
queue_crc_head(uint32_t crc, const char *p, size_t n)
{
    size_t i = 0;

    while (i + 5 <= n) {
        size_t len = ((size_t)(unsigned char)p[i + 1] << 24) |
                     ((size_t)(unsigned char)p[i + 2] << 16) |
                     ((size_t)(unsigned char)p[i + 3] << 8) |
                     (size_t)(unsigned char)p[i + 4];
        size_t have;

        crc = queue_crc(crc, p + i, 5);
        i += 5;
        have = len < n - i ? len : n - i;
        if (have > 0 && queue_rec_is_mutable(p[i - 5])) {
            static const char zero = 0;

            crc = queue_crc(crc, &zero, 1);
            crc = queue_crc(crc, p + i + 1, have - 1);
        } else {
            crc = queue_crc(crc, p + i, have);
        }
        i += have;
    }
    return crc;
}

/* ------------------------------------------------------------- writer */

static int
queue_rec(struct buf *b, int type, const void *p, size_t len, struct err *e)
{
    unsigned char h[5];

    if (len > 0xffffffffu)
        return err_set(e, ERR_LIMIT, "queue record over 4 GiB");
    h[0] = (unsigned char)type;
    h[1] = (unsigned char)(len >> 24);
    h[2] = (unsigned char)(len >> 16);
    h[3] = (unsigned char)(len >> 8);
    h[4] = (unsigned char)len;
    if (buf_append(b, h, 5, e) < 0)
        return -1;
    return len > 0 ? buf_append(b, p, len, e) : 0;
}

static int
queue_rec_str(struct buf *b, int type, const char *s, struct err *e)
{
    if (s == NULL)
        s = "";
    return queue_rec(b, type, s, strlen(s) + 1, e);
}

/* queue_rec_pair - [status] addr NUL params NUL */
static int
queue_rec_pair(struct buf *b, int type, int status, const char *addr,
               const char *params, struct err *e)
{
    struct buf p;
    int rc;

    buf_init(&p, 0);
    if (params == NULL)
        params = "";
    rc = (status != 0 && buf_putc(&p, status, e) < 0) ||
                 buf_append(&p, addr, strlen(addr) + 1, e) < 0 ||
                 buf_append(&p, params, strlen(params) + 1, e) < 0
             ? -1
             : queue_rec(b, type, p.data, p.len, e);
    buf_fini(&p);
    return rc;
}

/* queue_head - every record up to and including the message record's
 * header into out. */
static int
queue_head(const struct queue_msg *m, long long queued_us, struct buf *out,
           struct err *e)
{
    char t[64];
    size_t i;

    snprintf(t, sizeof(t), "%lld %lld", m->arrival_us, queued_us);
    if (queue_rec_str(out, QUEUE_REC_VERSION, QUEUE_VERSION, e) < 0 ||
        queue_rec(out, QUEUE_REC_STATE, "-", 1, e) < 0 ||
        queue_rec_str(out, QUEUE_REC_TIME, t, e) < 0 ||
        queue_rec_str(out, QUEUE_REC_CLIENT, m->client_addr, e) < 0 ||
        queue_rec_str(out, QUEUE_REC_NAME, m->client_name, e) < 0 ||
        queue_rec_str(out, QUEUE_REC_HELO, m->helo, e) < 0 ||
        (m->auth_user != NULL && m->auth_user[0] != '\0' &&
         queue_rec_str(out, QUEUE_REC_AUTH, m->auth_user, e) < 0) ||
        (m->stream != NULL && m->stream[0] != '\0' &&
         queue_rec_str(out, QUEUE_REC_STREAM, m->stream, e) < 0) ||
        queue_rec_str(out, QUEUE_REC_FROM, m->sender, e) < 0 ||
        queue_rec_str(out, QUEUE_REC_PARAMS, m->sender_params, e) < 0)
        return -1;
    for (i = 0; i < m->norig; i++)
        if (queue_rec_pair(out, QUEUE_REC_ORIG, 0, m->orig[i].addr,
                           m->orig[i].params, e) < 0)
            return -1;
    for (i = 0; i < m->nrcpts; i++)
        if (queue_rec_pair(out, QUEUE_REC_RCPT, QUEUE_RCPT_PENDING,
                           m->rcpts[i].addr, m->rcpts[i].params, e) < 0)
            return -1;
    /* the message record's header; its payload follows */
    if (queue_rec(out, QUEUE_REC_MESSAGE, NULL, 0, e) < 0)
        return -1;
    out->data[out->len - 4] = (char)(m->len >> 24);
    out->data[out->len - 3] = (char)(m->len >> 16);
    out->data[out->len - 2] = (char)(m->len >> 8);
    out->data[out->len - 1] = (char)m->len;
    return 0;
}

/* queue_tail - the end record for a file whose checksum so far is crc. */
static void
queue_tail(uint32_t crc, char out[QUEUE_TAIL_LEN])
{
    char hex[10];

    crc ^= 0xffffffffu;
    snprintf(hex, sizeof(hex), "%08x", (unsigned)crc);
    out[0] = QUEUE_REC_END;
    out[1] = out[2] = out[3] = 0;
    out[4] = 9;
    memcpy(out + 5, hex, 9);
}

static int
queue_msg_check(const struct queue_msg *m, struct err *e)
{
    size_t i, total = 0;

    if (m->nrcpts == 0)
        return err_set(e, ERR_INTERNAL, "queue file without recipients");
    if (m->len > 0xffffffffu)
        return err_set(e, ERR_LIMIT, "message over 4 GiB");
    for (i = 0; m->iov != NULL && i < m->niov; i++)
        total += m->iov[i].iov_len;
    if (m->iov != NULL && total != m->len)
        return err_set(e, ERR_INTERNAL,
                       "message pieces of %zu octets, not %zu", total, m->len);
    return 0;
}

/* queue_msg_crc - crc carried on over the message octets. */
static uint32_t
queue_msg_crc(uint32_t crc, const struct queue_msg *m)
{
    size_t i;

    if (m->iov == NULL)
        return queue_crc(crc, m->data, m->len);
    for (i = 0; i < m->niov; i++)
        crc = queue_crc(crc, m->iov[i].iov_base, m->iov[i].iov_len);
    return crc;
}

int
queue_file_head(const struct queue_msg *m, long long queued_us,
                struct buf *out, struct err *e)
{
    if (queue_msg_check(m, e) < 0)
        return -1;
    return queue_head(m, queued_us, out, e);
}

void
queue_file_tail(const struct queue_msg *m, const char *head, size_t len,
                char tail[QUEUE_TAIL_LEN])
{
    queue_tail(queue_msg_crc(queue_crc_head(0xffffffffu, head, len), m), tail);
}

int
queue_file_serialize(const struct queue_msg *m, struct buf *out, struct err *e)
{
    size_t start = out->len;
    char tail[QUEUE_TAIL_LEN];

    if (queue_file_head(m, m->arrival_us, out, e) < 0)
        return -1;
    queue_file_tail(m, out->data + start, out->len - start, tail);
    if (m->iov == NULL) {
        if (buf_append(out, m->data, m->len, e) < 0)
            return -1;
    } else {
        size_t i;

        for (i = 0; i < m->niov; i++)
            if (buf_append(out, m->iov[i].iov_base, m->iov[i].iov_len, e) < 0)
                return -1;
    }
    if (buf_append(out, tail, sizeof(tail), e) < 0)
        return -1;
    return 0;
}

void
queue_file_seal(char *buf, size_t len)
{
    if (len < QUEUE_TAIL_LEN)
        return;
    queue_tail(queue_crc_head(0xffffffffu, buf, len - QUEUE_TAIL_LEN),
               buf + len - QUEUE_TAIL_LEN);
}

int
queue_file_tail_ok(const char *tail, size_t n, size_t len)
{
    size_t i;

    if (n != QUEUE_TAIL_LEN || len < QUEUE_TAIL_LEN + 5)
        return 0;
    if (tail[0] != QUEUE_REC_END || tail[1] || tail[2] || tail[3] ||
        tail[4] != 9 || tail[13] != '\0')
        return 0;
    for (i = 5; i < 13; i++)
        if (!((tail[i] >= '0' && tail[i] <= '9') ||
              (tail[i] >= 'a' && tail[i] <= 'f')))
            return 0;
    return 1;
}

/* ------------------------------------------------------------- reader */

/* queue_text - a NUL-terminated payload of printable text (octets from
 * 0x20 up, 8-bit allowed: SMTPUTF8) at p: just past its NUL, or NULL
 * when there is a control character or no NUL before end. */
static const char *
queue_text(const char *p, const char *end)
{
    const char *s = p;

    while (s < end && *s != '\0') {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return NULL;
        s++;
    }
    return s < end ? s + 1 : NULL;
}

/* queue_rec_len - the payload length in the record header at p. */
static size_t
queue_rec_len(const char *p)
{
    return ((size_t)(unsigned char)p[1] << 24) |
           ((size_t)(unsigned char)p[2] << 16) |
           ((size_t)(unsigned char)p[3] << 8) | (size_t)(unsigned char)p[4];
}

/* The order records must come in; singletons may appear once. */
static const char queue_order[] = "VSTCNHAYFPORME";
static const char queue_once[] = "VSTCNHAYFPME";
static const char queue_needed[] = "VSTCNHFPRME";

/* queue_parse_alloc - count the recipients first so the arrays of qf are
 * sized once. */
static int
queue_parse_alloc(const char *buf, size_t len, struct queue_file *qf,
                  struct err *e)
{
    size_t pos = 0, nr = 0, no = 0;

    while (pos + 5 <= len) {
        size_t l = queue_rec_len(buf + pos);

        if (buf[pos] == QUEUE_REC_RCPT)
            nr++;
        else if (buf[pos] == QUEUE_REC_ORIG)
            no++;
        else if (buf[pos] == QUEUE_REC_MESSAGE || l > len - pos - 5)
            break;
        pos += 5 + l;
    }
    if (nr > 0 && (qf->rcpts = calloc(nr, sizeof(*qf->rcpts))) == NULL)
        return err_nomem(e);
    if (no > 0 && (qf->orig = calloc(2 * no, sizeof(*qf->orig))) == NULL)
        return err_nomem(e);
    return 0;
}

/* queue_parse_header - the record header at pos: the file must not end
 * or tear here, the type must be known and come in order (*rank, seen
 * carry the order across calls). Sets *type and *l, the payload length,
 * which is not checked against the file yet. */
static int
queue_parse_header(const char *buf, size_t len, size_t pos, size_t *rank,
                   char *seen, int *type, size_t *l, struct err *e)
{
    const char *type_at;
    size_t r;

    if (pos == len)
        return err_set(e, ERR_INPUT,
                       "queue file ends without its end "
                       "record");
    if (len - pos < 5)
        return err_set(e, ERR_INPUT,
                       "queue file torn in a record "
                       "header at offset %zu",
                       pos);
    *type = (unsigned char)buf[pos];
    *l = queue_rec_len(buf + pos);
    type_at = strchr(queue_order, *type);
    if (*type == '\0' || type_at == NULL)
        return err_set(e, ERR_INPUT,
                       "unknown record type 0x%02x at "
                       "offset %zu",
                       (unsigned)*type, pos);
    r = (size_t)(type_at - queue_order);
    if (r < *rank || (seen[r] && strchr(queue_once, *type) != NULL))
        return err_set(e, ERR_INPUT,
                       "record '%c' out of order at "
                       "offset %zu",
                       *type, pos);
    *rank = r;
    seen[r] = 1;
    return 0;
}

/* queue_parse_end - the end record at pos (payload l octets) closes the
 * file exactly and carries the checksum crc of all before it. */
static int
queue_parse_end(const char *buf, size_t len, size_t pos, size_t l,
                uint32_t crc, struct err *e)
{
    char tail[QUEUE_TAIL_LEN];

    if (pos + 5 + l != len)
        return err_set(e, ERR_INPUT, "data after the end record");
    queue_tail(crc, tail);
    if (l != 9 || memcmp(tail + 5, buf + pos + 5, 9) != 0)
        return err_set(e, ERR_INPUT,
                       "checksum mismatch: the file "
                       "is damaged");
    return 0;
}

/* queue_parse_time - "ARRIVAL_US QUEUED_US", both before the year 5000,
 * so that sums of times cannot overflow. */
static int
queue_parse_time(struct queue_file *qf, const char *p, const char *end,
                 struct err *e)
{
    char *stop;

    if (queue_text(p, end) != end)
        return err_set(e, ERR_INPUT, "bad time record");
    qf->arrival_us = strtoll(p, &stop, 10);
    if (*stop != ' ')
        return err_set(e, ERR_INPUT, "bad time record");
    qf->queued_us = strtoll(stop + 1, &stop, 10);
    if (*stop != '\0' || qf->arrival_us < 0 || qf->queued_us < 0 ||
        qf->arrival_us > QUEUE_TIME_MAX || qf->queued_us > QUEUE_TIME_MAX)
        return err_set(e, ERR_INPUT, "bad time record");
    return 0;
}

/* queue_parse_address - an 'O' (addr NUL params NUL) or 'R' record
 * (status octet first) into the arrays queue_parse_alloc() made. */
static int
queue_parse_address(struct queue_file *qf, const char *buf, int type,
                    const char *p, const char *end, struct err *e)
{
    const char *a = type == QUEUE_REC_RCPT ? p + 1 : p, *q;

    if (type == QUEUE_REC_RCPT &&
        (end - p < 1 ||
         (p[0] != QUEUE_RCPT_PENDING && p[0] != QUEUE_RCPT_DONE &&
          p[0] != QUEUE_RCPT_BOUNCED)))
        return err_set(e, ERR_INPUT, "bad recipient status");
    /* q is past the address's NUL: an empty address is refused */
    if (a >= end || (q = queue_text(a, end)) == NULL || q == a + 1 ||
        queue_text(q, end) != end)
        return err_set(e, ERR_INPUT,
                       "bad '%c' record: not an "
                       "address and its parameters",
                       type);
    if (type == QUEUE_REC_RCPT) {
        qf->rcpts[qf->nrcpts].status = p[0];
        qf->rcpts[qf->nrcpts].status_off = (size_t)(p - buf);
        qf->rcpts[qf->nrcpts].addr = a;
        qf->rcpts[qf->nrcpts].params = q;
        qf->nrcpts++;
    } else {
        qf->orig[2 * qf->norig] = a;
        qf->orig[2 * qf->norig + 1] = q;
        qf->norig++;
    }
    return 0;
}

/* queue_parse_payload - the payload p[0..l) of a record of type (not
 * the end record) into qf. */
static int
queue_parse_payload(struct queue_file *qf, const char *buf, int type,
                    const char *p, size_t l, struct err *e)
{
    const char *end = p + l;

    switch (type) {
    case QUEUE_REC_VERSION:
        if (l != sizeof(QUEUE_VERSION) || memcmp(p, QUEUE_VERSION, l) != 0)
            return err_set(e, ERR_INPUT,
                           "not a relaychain queue file "
                           "of version 1");
        break;
    case QUEUE_REC_STATE:
        if (l != 1 || (p[0] != '-' && p[0] != 'W'))
            return err_set(e, ERR_INPUT, "bad state record");
        qf->warned = p[0];
        qf->warned_off = (size_t)(p - buf);
        break;
    case QUEUE_REC_TIME:
        return queue_parse_time(qf, p, end, e);
    case QUEUE_REC_CLIENT:
    case QUEUE_REC_NAME:
    case QUEUE_REC_HELO:
    case QUEUE_REC_AUTH:
    case QUEUE_REC_STREAM:
    case QUEUE_REC_FROM:
    case QUEUE_REC_PARAMS: {
        const char **field = type == QUEUE_REC_CLIENT   ? &qf->client_addr
                             : type == QUEUE_REC_NAME   ? &qf->client_name
                             : type == QUEUE_REC_HELO   ? &qf->helo
                             : type == QUEUE_REC_AUTH   ? &qf->auth_user
                             : type == QUEUE_REC_STREAM ? &qf->stream
                             : type == QUEUE_REC_FROM   ? &qf->sender
                                                        : &qf->sender_params;

        if (queue_text(p, end) != end)
            return err_set(e, ERR_INPUT,
                           "bad '%c' record: not one line "
                           "of text",
                           type);
        *field = p;
        break;
    }
    case QUEUE_REC_ORIG:
    case QUEUE_REC_RCPT:
        return queue_parse_address(qf, buf, type, p, end, e);
    case QUEUE_REC_MESSAGE:
        qf->data = p;
        qf->len = l;
        break;
    }
    return 0;
}

/* queue_parse_complete - every record a file needs was seen (with
 * head_only, all but the message and the end record). */
static int
queue_parse_complete(const char *seen, int head_only, struct err *e)
{
    size_t i;

    for (i = 0; queue_needed[i] != '\0'; i++) {
        if (head_only && (queue_needed[i] == QUEUE_REC_END ||
                          queue_needed[i] == QUEUE_REC_MESSAGE))
            continue;
        if (!seen[strchr(queue_order, queue_needed[i]) - queue_order])
            return err_set(e, ERR_INPUT, "queue file without a '%c' record",
                           queue_needed[i]);
    }
    return 0;
}

int
queue_file_parse(const char *buf, size_t len, int head_only,
                 struct queue_file *qf, struct err *e)
{
    char seen[sizeof(queue_order)] = {0};
    uint32_t crc = 0xffffffffu;
    size_t pos = 0, rank = 0;

    memset(qf, 0, sizeof(*qf));
    if (queue_parse_alloc(buf, len, qf, e) < 0)
        return -1;
    for (;;) {
        size_t l = 0;
        int type = 0;

        if (queue_parse_header(buf, len, pos, &rank, seen, &type, &l, e) < 0)
            return -1;
        if (type == QUEUE_REC_MESSAGE && head_only) {
            qf->len = l;
            qf->data = len - pos - 5 >= l ? buf + pos + 5 : NULL;
            break;
        }
        if (l > len - pos - 5)
            return err_set(e, ERR_INPUT,
                           "record '%c' at offset %zu runs "
                           "past the end of the file",
                           type, pos);
        if (type == QUEUE_REC_END) {
            if (queue_parse_end(buf, len, pos, l, crc, e) < 0)
                return -1;
            break;
        }
        crc = queue_crc_head(crc, buf + pos, 5 + l);
        if (queue_parse_payload(qf, buf, type, buf + pos + 5, l, e) < 0)
            return -1;
        pos += 5 + l;
    }
    if (queue_parse_complete(seen, head_only, e) < 0)
        return -1;
    if (qf->auth_user == NULL)
        qf->auth_user = "";
    if (qf->stream == NULL)
        qf->stream = "";
    return 0;
}

void
queue_file_fini(struct queue_file *qf)
{
    free(qf->rcpts);
    free(qf->orig);
    qf->rcpts = NULL;
    qf->orig = NULL;
    qf->nrcpts = qf->norig = 0;
}

int
queue_read_fd(int fd, size_t max, struct buf *out, struct err *e)
{
    struct stat st;
    ssize_t n;

    out->limit = max;
    if (fstat(fd, &st) < 0)
        return err_sys(e, ERR_IO, "fstat");
    if ((unsigned long long)st.st_size > max)
        return err_set(e, ERR_LIMIT,
                       "queue file of %lld octets is over "
                       "the limit of %zu",
                       (long long)st.st_size, max);
    if (buf_reserve(out, (size_t)st.st_size + 1, e) < 0)
        return -1;
    for (;;) {
        if (out->cap - out->len < 2 && buf_reserve(out, 65536, e) < 0)
            return -1;
        n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, ERR_IO, "read");
        }
        if (n == 0)
            break;
        if (out->len + (size_t)n > max)
            return err_set(e, ERR_LIMIT, "queue file over the limit of %zu",
                           max);
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
    return 0;
}
