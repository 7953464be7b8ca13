/*
 * queue - the durable spool: file format, commit, scheduler, delivery
 *
 * See queue.h for the layout and the file format. How it works:
 *
 * The index is one struct queue_entry per message in queue/: its id and
 * the time of its next attempt (CLOCK_REALTIME, ms), in a hash table by
 * id and, while waiting, in a binary min-heap by time. An entry whose
 * attempt is running is out of the heap but still in the table, so a
 * rescan of queue/ never schedules it twice. Nothing of the message is
 * kept in memory between attempts.
 *
 * Workers take the earliest due entry and run one attempt: open
 * queue/QID, flock() it without waiting (an administration command that
 * holds it delays the attempt by a second), check that the name still
 * names the locked file, read and validate the whole file (a bad one is
 * moved to corrupt/), and deliver the pending recipients, grouped by
 * route, one SMTP transaction per route. Per recipient: 2xx delivered,
 * 5xx bounced, 4xx deferred, or bounced once the message is older than
 * maximal_queue_lifetime. The reply that counts is the one to RCPT when
 * it refused, else the one to the message: with SMTP one for all, with
 * LMTP each recipient's own (RFC 2033, smtpc_data_rcpts), so a mailbox
 * over quota defers or bounces its owner alone, with its own words in
 * the report. When the connection is lost part way through the LMTP
 * replies, the recipients whose reply came keep it and the rest are
 * deferred: they may have got the message, and the retry repeats it
 * for them. Notifications are committed as new queue files before the
 * recipients they report are marked, so a crash can repeat a
 * notification but never lose one. When nothing is pending the file is
 * removed; otherwise the marks are made durable with fdatasync() and the
 * entry goes back into the heap after a backoff of the message's age,
 * clamped between minimal_backoff_time and maximal_backoff_time (as in
 * Postfix: exponential, with no state to lose in a restart).
 *
 * A route whose connection failed is left alone ("delivery temporarily
 * suspended") for minimal_backoff_time, or until a flush, so that a
 * backlog behind a dead next hop costs no connection attempts.
 *
 * The trigger thread reads the FIFO (flush, rescan) and rescans queue/
 * every queue_run_delay; at start it removes what tmp/ holds, then
 * indexes queue/ in the background while the workers and the SMTP
 * sessions already run.
 *
 * Reload: what relaychain.conf may change (backoffs, lifetimes,
 * queue_run_delay, delivery_concurrency, queue_minfree, the routes with
 * their smtpc pools) is one struct queue_settings with a reference
 * count. q->set holds one reference; each attempt takes another under
 * q->lock when it starts and uses only that set, so a reload never
 * changes an attempt half way. The reloader thread builds the new set
 * (transport_map read, pools made) outside any lock; the swap is a
 * pointer exchange under q->lock, which also caps the waiting entries'
 * due times at the new maximal_backoff_time and wakes the workers; the
 * old set, with its pools and their idle connections, is freed by its
 * last user. Workers beyond a lowered delivery_concurrency leave when
 * they are next idle; more are started for a raised one. A route's
 * suspension lives in its set: a new next hop is tried at once.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/addr.h"
#include "util/esmtp.h"
#include "util/fdio.h"
#include "util/qid.h"
#include "util/log.h"
#include "queue/queue.h"
#include "net/smtpc.h"

#define QUEUE_VERSION "relaychain-queue 1"
#define QUEUE_PATH_MAX 3072
#define QUEUE_RELAY_MAX 300
#define QUEUE_LINE_MAX 1024             /* a transport_map line */
#define QUEUE_DEAD_MAX_MS (60 * 1000LL) /* longest suspension of a route */
#define QUEUE_LOCKED_RETRY_MS 1000
#define QUEUE_STACK (256 * 1024)
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

/* ------------------------------------------------------------- format */

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
queue_file_serialize(const struct queue_msg *m, struct buf *out, struct err *e)
{
    size_t start = out->len;
    char tail[QUEUE_TAIL_LEN];
    uint32_t crc;

    if (queue_msg_check(m, e) < 0 || queue_head(m, m->arrival_us, out, e) < 0)
        return -1;
    crc = queue_crc_head(0xffffffffu, out->data + start, out->len - start);
    crc = queue_msg_crc(crc, m);
    queue_tail(crc, tail);
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

/* queue_text_ok - a NUL-terminated payload of printable text (octets
 * from 0x20 up, 8-bit allowed: SMTPUTF8), ending exactly at end. */
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

int
queue_file_parse(const char *buf, size_t len, int head_only,
                 struct queue_file *qf, struct err *e)
{
    /* the order records must come in; singletons may appear once */
    static const char order[] = "VSTCNHAFPORME";
    static const char once[] = "VSTCNHAFPME";
    static const char needed[] = "VSTCNHFPRME";
    char seen[sizeof(order)] = {0};
    uint32_t crc = 0xffffffffu;
    size_t pos = 0, rank = 0, i, nr = 0, no = 0;
    const char *q;

    memset(qf, 0, sizeof(*qf));
    /* count recipients first so the arrays are sized once */
    while (pos + 5 <= len) {
        size_t l = ((size_t)(unsigned char)buf[pos + 1] << 24) |
                   ((size_t)(unsigned char)buf[pos + 2] << 16) |
                   ((size_t)(unsigned char)buf[pos + 3] << 8) |
                   (size_t)(unsigned char)buf[pos + 4];

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
    pos = 0;
    for (;;) {
        const char *p, *end, *type_at;
        size_t l, r;
        int type;

        if (pos == len)
            return err_set(e, ERR_INPUT,
                           "queue file ends without its end "
                           "record");
        if (len - pos < 5)
            return err_set(e, ERR_INPUT,
                           "queue file torn in a record "
                           "header at offset %zu",
                           pos);
        type = (unsigned char)buf[pos];
        l = ((size_t)(unsigned char)buf[pos + 1] << 24) |
            ((size_t)(unsigned char)buf[pos + 2] << 16) |
            ((size_t)(unsigned char)buf[pos + 3] << 8) |
            (size_t)(unsigned char)buf[pos + 4];
        type_at = strchr(order, type);
        if (type == '\0' || type_at == NULL)
            return err_set(e, ERR_INPUT,
                           "unknown record type 0x%02x at "
                           "offset %zu",
                           (unsigned)type, pos);
        r = (size_t)(type_at - order);
        if (r < rank || (seen[r] && strchr(once, type) != NULL))
            return err_set(e, ERR_INPUT,
                           "record '%c' out of order at "
                           "offset %zu",
                           type, pos);
        rank = r;
        seen[r] = 1;
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
            char tail[QUEUE_TAIL_LEN];

            if (pos + 5 + l != len)
                return err_set(e, ERR_INPUT, "data after the end record");
            queue_tail(crc, tail);
            if (l != 9 || memcmp(tail + 5, buf + pos + 5, 9) != 0)
                return err_set(e, ERR_INPUT,
                               "checksum mismatch: the file "
                               "is damaged");
            break;
        }
        crc = queue_crc_head(crc, buf + pos, 5 + l);
        p = buf + pos + 5;
        end = p + l;
        pos += 5 + l;
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
        case QUEUE_REC_TIME: {
            char *stop;

            if (queue_text(p, end) != end)
                return err_set(e, ERR_INPUT, "bad time record");
            qf->arrival_us = strtoll(p, &stop, 10);
            if (*stop != ' ')
                return err_set(e, ERR_INPUT, "bad time record");
            qf->queued_us = strtoll(stop + 1, &stop, 10);
            /* before the year 5000: sums of times cannot overflow */
            if (*stop != '\0' || qf->arrival_us < 0 || qf->queued_us < 0 ||
                qf->arrival_us > QUEUE_TIME_MAX ||
                qf->queued_us > QUEUE_TIME_MAX)
                return err_set(e, ERR_INPUT, "bad time record");
            break;
        }
        case QUEUE_REC_CLIENT:
        case QUEUE_REC_NAME:
        case QUEUE_REC_HELO:
        case QUEUE_REC_AUTH:
        case QUEUE_REC_FROM:
        case QUEUE_REC_PARAMS: {
            const char **field = type == QUEUE_REC_CLIENT ? &qf->client_addr
                                 : type == QUEUE_REC_NAME ? &qf->client_name
                                 : type == QUEUE_REC_HELO ? &qf->helo
                                 : type == QUEUE_REC_AUTH ? &qf->auth_user
                                 : type == QUEUE_REC_FROM ? &qf->sender
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
        case QUEUE_REC_RCPT: {
            const char *a = type == QUEUE_REC_RCPT ? p + 1 : p;

            if (type == QUEUE_REC_RCPT &&
                (l < 1 ||
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
            break;
        }
        case QUEUE_REC_MESSAGE:
            qf->data = p;
            qf->len = l;
            break;
        }
    }
    for (i = 0; needed[i] != '\0'; i++) {
        if (head_only &&
            (needed[i] == QUEUE_REC_END || needed[i] == QUEUE_REC_MESSAGE))
            continue;
        if (!seen[strchr(order, needed[i]) - order])
            return err_set(e, ERR_INPUT, "queue file without a '%c' record",
                           needed[i]);
    }
    if (qf->auth_user == NULL)
        qf->auth_user = "";
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

/* ------------------------------------------------------------ helpers */

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

static long long
queue_now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

static long long
queue_now_ms(void)
{
    return queue_now_us() / 1000;
}

/* ------------------------------------------------------------- daemon */

struct queue_entry {
    struct queue_entry *hnext;
    long long due_ms;
    size_t heap_at; /* SIZE_MAX while its attempt runs */
    char id[QUEUE_ID_MAX];
};

struct queue_route {
    char *nexthop;
    struct smtpc_pool *pool;
    /* under q->lock */
    long long dead_until_ms;
    int dead_code;
    char dead_why[512];
};

struct queue_transport {
    char *domain; /* "example.com", ".example.com" or "*" */
    size_t route;
};

/* What a reload may change. Read-only once built, except the routes'
 * suspension state (under q->lock); shared by reference: the queue holds
 * one, every attempt holds the one it started with. */
struct queue_settings {
    atomic_uint refs;
    long long min_backoff_ms, max_backoff_ms, lifetime_ms, warn_ms;
    long long run_delay_ms;
    unsigned long long minfree;
    unsigned concurrency;
    struct queue_route *routes; /* routes[0] is next_hop */
    size_t nroutes;
    struct queue_transport *transports;
    size_t ntransports;
};

struct queue {
    char dir[QUEUE_PATH_MAX];
    int dfd, tmp_fd, queue_fd, hold_fd, corrupt_fd, defer_fd;
    int lock_fd, fifo_fd;
    char hostname[256];
    size_t file_max;
    atomic_uint seq;

    pthread_mutex_t lock;       /* guards what follows and the routes' state */
    struct queue_settings *set; /* the current settings: one reference */
    unsigned workers;           /* worker threads running */
    pthread_cond_t wake;        /* workers: an entry may be due */
    pthread_cond_t gone;        /* a thread ended */
    struct queue_entry **heap;
    size_t nheap, heap_cap;
    struct queue_entry **table;
    size_t table_size, nentries;
    unsigned threads;
    int stopping;
};

enum queue_verdict { QUEUE_DROP, QUEUE_RETRY };

/* ------------------------------------------------------------- index */

static size_t
queue_hash(const char *id)
{
    uint32_t h = 2166136261u;

    while (*id != '\0') {
        h ^= (unsigned char)*id++;
        h *= 16777619u;
    }
    return h;
}

static struct queue_entry *
queue_find(const struct queue *q, const char *id)
{
    struct queue_entry *en;

    for (en = q->table[queue_hash(id) & (q->table_size - 1)]; en != NULL;
         en = en->hnext)
        if (strcmp(en->id, id) == 0)
            return en;
    return NULL;
}

static int
queue_table_add(struct queue *q, struct queue_entry *en)
{
    size_t h;

    if (q->nentries >= q->table_size) {
        size_t size = q->table_size * 2, i;
        struct queue_entry **t = calloc(size, sizeof(*t)), *x, *next;

        if (t == NULL)
            return -1;
        for (i = 0; i < q->table_size; i++)
            for (x = q->table[i]; x != NULL; x = next) {
                next = x->hnext;
                h = queue_hash(x->id) & (size - 1);
                x->hnext = t[h];
                t[h] = x;
            }
        free(q->table);
        q->table = t;
        q->table_size = size;
    }
    h = queue_hash(en->id) & (q->table_size - 1);
    en->hnext = q->table[h];
    q->table[h] = en;
    q->nentries++;
    return 0;
}

static void
queue_table_remove(struct queue *q, struct queue_entry *en)
{
    struct queue_entry **pp =
        &q->table[queue_hash(en->id) & (q->table_size - 1)];

    for (; *pp != NULL; pp = &(*pp)->hnext)
        if (*pp == en) {
            *pp = en->hnext;
            q->nentries--;
            return;
        }
}

static void
queue_heap_set(struct queue *q, size_t i, struct queue_entry *en)
{
    q->heap[i] = en;
    en->heap_at = i;
}

static void
queue_heap_up(struct queue *q, size_t i)
{
    struct queue_entry *en = q->heap[i];

    while (i > 0 && q->heap[(i - 1) / 2]->due_ms > en->due_ms) {
        queue_heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    queue_heap_set(q, i, en);
}

static void
queue_heap_down(struct queue *q, size_t i)
{
    struct queue_entry *en = q->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= q->nheap)
            break;
        if (c + 1 < q->nheap && q->heap[c + 1]->due_ms < q->heap[c]->due_ms)
            c++;
        if (q->heap[c]->due_ms >= en->due_ms)
            break;
        queue_heap_set(q, i, q->heap[c]);
        i = c;
    }
    queue_heap_set(q, i, en);
}

static int
queue_heap_push(struct queue *q, struct queue_entry *en)
{
    if (q->nheap == q->heap_cap) {
        size_t cap = q->heap_cap ? q->heap_cap * 2 : 1024;
        struct queue_entry **h = realloc(q->heap, cap * sizeof(*h));

        if (h == NULL)
            return -1;
        q->heap = h;
        q->heap_cap = cap;
    }
    q->heap[q->nheap] = en;
    en->heap_at = q->nheap++;
    queue_heap_up(q, en->heap_at);
    return 0;
}

static struct queue_entry *
queue_heap_pop(struct queue *q)
{
    struct queue_entry *top = q->heap[0];

    if (--q->nheap > 0) {
        queue_heap_set(q, 0, q->heap[q->nheap]);
        queue_heap_down(q, 0);
    }
    top->heap_at = SIZE_MAX;
    return top;
}

/* queue_schedule - index id (when it is not) with its next attempt at
 * due_ms, or bring a waiting attempt forward to due_ms. */
static void
queue_schedule(struct queue *q, const char *id, long long due_ms)
{
    struct queue_entry *en;

    pthread_mutex_lock(&q->lock);
    if ((en = queue_find(q, id)) != NULL) {
        if (en->heap_at != SIZE_MAX && due_ms < en->due_ms) {
            en->due_ms = due_ms;
            queue_heap_up(q, en->heap_at);
            pthread_cond_signal(&q->wake);
        }
        pthread_mutex_unlock(&q->lock);
        return;
    }
    if ((en = calloc(1, sizeof(*en))) != NULL)
        snprintf(en->id, sizeof(en->id), "%s", id);
    if (en == NULL || queue_table_add(q, en) < 0) {
        free(en);
        pthread_mutex_unlock(&q->lock);
        /* on disk all the same: the next rescan indexes it */
        log_warning(id, "out of memory: scheduled at the next queue scan");
        return;
    }
    en->due_ms = due_ms;
    if (queue_heap_push(q, en) < 0) {
        queue_table_remove(q, en);
        free(en);
        pthread_mutex_unlock(&q->lock);
        log_warning(id, "out of memory: scheduled at the next queue scan");
        return;
    }
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
}

/* queue_flush - every waiting attempt now, routes no longer suspended. */
static void
queue_flush(struct queue *q, const char *id)
{
    size_t i;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < q->set->nroutes; i++)
        q->set->routes[i].dead_until_ms = 0;
    if (id == NULL) {
        long long now = queue_now_ms();

        /* all equal: still a heap */
        for (i = 0; i < q->nheap; i++)
            if (q->heap[i]->due_ms > now)
                q->heap[i]->due_ms = now;
        for (i = q->nheap / 2; i-- > 0;)
            queue_heap_down(q, i);
        pthread_cond_broadcast(&q->wake);
    }
    pthread_mutex_unlock(&q->lock);
    if (id != NULL)
        queue_schedule(q, id, queue_now_ms());
}

/* ------------------------------------------------------------- commit */

/* queue_write_msg - the message octets, from data or piece by piece. */
static int
queue_write_msg(int fd, const struct queue_msg *m)
{
    size_t i;

    if (m->iov == NULL)
        return fdio_write_all(fd, m->data, m->len);
    for (i = 0; i < m->niov; i++)
        if (fdio_write_all(fd, m->iov[i].iov_base, m->iov[i].iov_len) < 0)
            return -1;
    return 0;
}

/* queue_write - tmp/QID, fsync, rename to queue/QID, fsync queue/. */
static int
queue_write(struct queue *q, const struct queue_msg *m, struct err *e)
{
    char tail[QUEUE_TAIL_LEN];
    struct buf head;
    uint32_t crc;
    int fd, saved;
    const char *what = "write";

    if (!qid_is_valid(m->qid, QUEUE_ID_MAX))
        return err_set(e, ERR_INTERNAL, "bad queue id '%.40s'", m->qid);
    if (queue_msg_check(m, e) < 0)
        return -1;
    buf_init(&head, 0);
    if (queue_head(m, queue_now_us(), &head, e) < 0) {
        buf_fini(&head);
        return -1;
    }
    crc = queue_crc_head(0xffffffffu, head.data, head.len);
    crc = queue_msg_crc(crc, m);
    queue_tail(crc, tail);
    fd = openat(q->tmp_fd, m->qid, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                0600);
    if (fd < 0) {
        buf_fini(&head);
        return err_sys(e, ERR_IO, "create %s/tmp/%s", q->dir, m->qid);
    }
    if (fdio_write_all(fd, head.data, head.len) < 0 ||
        queue_write_msg(fd, m) < 0 ||
        fdio_write_all(fd, tail, sizeof(tail)) < 0)
        goto fail;
    what = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    what = "close";
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    what = "rename";
    if (renameat2(q->tmp_fd, m->qid, q->queue_fd, m->qid, RENAME_NOREPLACE) <
        0) {
        if (errno != EINVAL && errno != ENOSYS)
            goto fail;
        /* no RENAME_NOREPLACE here: link() refuses to replace too */
        if (linkat(q->tmp_fd, m->qid, q->queue_fd, m->qid, 0) < 0)
            goto fail;
        unlinkat(q->tmp_fd, m->qid, 0);
    }
    if (fsync(q->queue_fd) < 0) {
        saved = errno;
        unlinkat(q->queue_fd, m->qid, 0);
        errno = saved;
        buf_fini(&head);
        return err_sys(e, ERR_IO, "fsync %s/queue", q->dir);
    }
    buf_fini(&head);
    return 0;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlinkat(q->tmp_fd, m->qid, 0);
    buf_fini(&head);
    errno = saved;
    return err_sys(e, ERR_IO, "%s %s/tmp/%s", what, q->dir, m->qid);
}

int
queue_commit(struct queue *q, const struct queue_msg *m, struct err *e)
{
    if (queue_write(q, m, e) < 0)
        return -1;
    queue_schedule(q, m->qid, queue_now_ms());
    return 0;
}

const char *
queue_commit_reply(const struct err *e)
{
    if (e->sys_errno == ENOSPC || e->sys_errno == EDQUOT ||
        e->sys_errno == EFBIG)
        return "452 4.3.1 Error: insufficient system storage";
    return "451 4.3.0 Error: queue file write error";
}

int
queue_has_space(struct queue *q, unsigned long long size)
{
    struct statvfs sv;
    unsigned long long avail, minfree;

    if (fstatvfs(q->queue_fd, &sv) < 0)
        return 1; /* the write itself will tell */
    pthread_mutex_lock(&q->lock);
    minfree = q->set->minfree;
    pthread_mutex_unlock(&q->lock);
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    return avail >= minfree + size + size / 2;
}

/* ----------------------------------------------------------- delivery */

struct queue_outcome {
    int code;
    char text[512];
    char relay[QUEUE_RELAY_MAX];
    long long conn_us, xfer_us;
    int hop_dsn;     /* the next hop takes NOTIFY itself */
    char reply[528]; /* "550 5.1.1 text", for a notification */
};

struct queue_job {
    struct queue *q;
    struct queue_settings *set; /* held for the whole attempt */
    const char *id;
    struct queue_file qf;
    struct queue_outcome *out; /* per recipient */
    size_t *route;             /* per recipient */
    long long start_us;
};

static void
queue_outcome_set(struct queue_outcome *o, const struct smtpc_reply *r,
                  const char *relay)
{
    o->code = r->code;
    snprintf(o->text, sizeof(o->text), "%s", r->text);
    snprintf(o->relay, sizeof(o->relay), "%s", relay);
}

/* queue_route_for - the route of rcpt: transport_map by domain, then
 * its parent domains (".example.com" entries), then "*", then
 * next_hop. */
static size_t
queue_route_for(const struct queue_settings *set, const char *rcpt)
{
    const char *dom = addr_domain(rcpt), *p;
    size_t i;

    if (dom != NULL) {
        for (i = 0; i < set->ntransports; i++)
            if (set->transports[i].domain[0] != '.' &&
                strcasecmp(set->transports[i].domain, dom) == 0)
                return set->transports[i].route;
        for (p = strchr(dom, '.'); p != NULL; p = strchr(p + 1, '.'))
            for (i = 0; i < set->ntransports; i++)
                if (set->transports[i].domain[0] == '.' &&
                    strcasecmp(set->transports[i].domain, p) == 0)
                    return set->transports[i].route;
    }
    for (i = 0; i < set->ntransports; i++)
        if (strcmp(set->transports[i].domain, "*") == 0)
            return set->transports[i].route;
    return 0;
}

/* queue_suspend - the route failed to connect: no attempts on it for a
 * while; returns nothing, logs nothing (the recipients' lines say it). */
static void
queue_suspend(struct queue *q, const struct queue_settings *set,
              struct queue_route *rt, const struct smtpc_reply *r)
{
    long long d = set->min_backoff_ms < QUEUE_DEAD_MAX_MS ? set->min_backoff_ms
                                                          : QUEUE_DEAD_MAX_MS;

    pthread_mutex_lock(&q->lock);
    rt->dead_until_ms = queue_now_ms() + d;
    rt->dead_code = r->code;
    snprintf(rt->dead_why, sizeof(rt->dead_why), "%s", r->text);
    pthread_mutex_unlock(&q->lock);
}

/* queue_deliver_route - one transaction on route ri for the recipients
 * idx[0..n) of j; fills their outcomes. accepted and each are scratch
 * arrays of n entries or more: the recipients RCPT accepted and their
 * replies to the message. */
static void
queue_deliver_route(struct queue_job *j, size_t ri, const size_t *idx,
                    size_t n, size_t *accepted, struct smtpc_reply *each)
{
    static const char *const mail_keys[] = {"BODY", "SMTPUTF8", "RET", "ENVID",
                                            NULL};
    static const char *const rcpt_keys[] = {"NOTIFY", "ORCPT", NULL};
    struct queue *q = j->q;
    struct queue_route *rt = &j->set->routes[ri];
    const struct queue_file *qf = &j->qf;
    char params[1024], relay[QUEUE_RELAY_MAX];
    struct smtpc_reply r;
    struct smtpc_conn *c;
    struct msg_env env;
    long long t0 = queue_now_us(), t1;
    size_t i, k, nacc = 0;
    int rc, dead;
    struct err e;

    err_clear(&e);
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&q->lock);
    dead = rt->dead_until_ms > queue_now_ms();
    if (dead) {
        size_t skip = strspn(rt->dead_why, "0123456789.");

        /* "4.4.1 Connection refused by ..." without its code */
        skip = rt->dead_why[skip] == ' ' ? skip + 1 : 0;
        r.code = rt->dead_code / 100 == 4 ? rt->dead_code : 451;
        snprintf(r.text, sizeof(r.text),
                 "4.4.1 delivery temporarily suspended: %.400s",
                 rt->dead_why + skip);
    }
    pthread_mutex_unlock(&q->lock);
    if (dead) {
        for (i = 0; i < n; i++)
            queue_outcome_set(&j->out[idx[i]], &r, "none");
        return;
    }
    if (smtpc_pool_kind(rt->pool) == SMTPC_MAILDIR) {
        if (smtpc_maildir_deliver(rt->pool, qf->data, qf->len, j->id, &r, &e) <
                0 &&
            r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.3.0 %.480s", e.text);
        }
        t1 = queue_now_us();
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, "maildir");
            j->out[idx[i]].xfer_us = t1 - t0;
        }
        return;
    }
    c = smtpc_get(rt->pool, &r, &e);
    t1 = queue_now_us();
    if (c == NULL) {
        if (r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.3.0 %.480s", e.text);
        }
        if (r.code / 100 == 4)
            queue_suspend(q, j->set, rt, &r);
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, "none");
            j->out[idx[i]].conn_us = t1 - t0;
        }
        return;
    }
    snprintf(relay, sizeof(relay), "%s", smtpc_relay_name(c));
    memset(&env, 0, sizeof(env));
    env.frontend = MSG_FE_SMTP;
    env.qid = (char *)j->id;
    env.client_addr = (char *)qf->client_addr;
    env.client_name = (char *)qf->client_name;
    env.helo = (char *)qf->helo;
    esmtp_params_pick(qf->sender_params, mail_keys, params, sizeof(params));
    /* the size of what leaves; smtpc drops it where SIZE is not offered */
    k = strlen(params);
    snprintf(params + k, sizeof(params) - k, "%sSIZE=%zu", k ? " " : "",
             qf->len);
    rc = smtpc_mail(c, &env, qf->sender, params, &r, &e);
    if (rc < 0 || r.code / 100 != 2) {
        if (r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.4.2 lost connection with %s",
                     relay);
        }
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, relay);
            j->out[idx[i]].conn_us = t1 - t0;
        }
        smtpc_put(rt->pool, c, rc == 0);
        return;
    }
    for (i = 0; i < n; i++) {
        const struct queue_file_rcpt *rp = &qf->rcpts[idx[i]];

        esmtp_params_pick(rp->params, rcpt_keys, params, sizeof(params));
        rc = smtpc_rcpt(c, rp->addr, params[0] ? params : NULL, &r, &e);
        if (rc < 0) {
            /* the connection broke: nobody got it */
            if (r.code == 0)
                r.code = 451;
            for (k = 0; k < n; k++)
                queue_outcome_set(&j->out[idx[k]], &r, relay);
            smtpc_put(rt->pool, c, 0);
            return;
        }
        queue_outcome_set(&j->out[idx[i]], &r, relay);
        j->out[idx[i]].conn_us = t1 - t0;
        if (r.code / 100 == 2)
            accepted[nacc++] = idx[i];
    }
    if (nacc == 0) {
        smtpc_put(rt->pool, c, 1);
        return;
    }
    /* with LMTP each recipient has its own reply to the message */
    rc = smtpc_data_rcpts(c, qf->data, qf->len, each, nacc, &r, &e);
    if (r.code == 0) {
        r.code = 451;
        snprintf(r.text, sizeof(r.text),
                 "4.4.2 lost connection with %s "
                 "while sending the message",
                 relay);
    }
    t0 = queue_now_us();
    for (i = 0; i < nacc; i++) {
        queue_outcome_set(&j->out[accepted[i]],
                          each[i].code != 0 ? &each[i] : &r, relay);
        j->out[accepted[i]].xfer_us = t0 - t1;
        j->out[accepted[i]].hop_dsn = smtpc_has_dsn(c);
    }
    smtpc_put(rt->pool, c, rc == 0);
}

/* queue_dsn_code - "5.1.1" from the reply text when it starts with an
 * enhanced status code, else "5.0.0" from the reply code. */
static void
queue_dsn_code(int code, const char *text, char *out, size_t n)
{
    size_t a = strspn(text + 2, "0123456789"), b;

    if ((text[0] == '2' || text[0] == '4' || text[0] == '5') &&
        text[1] == '.' && a >= 1 && a <= 3 && text[2 + a] == '.' &&
        (b = strspn(text + 3 + a, "0123456789")) >= 1 && b <= 3 &&
        (text[3 + a + b] == ' ' || text[3 + a + b] == '\0')) {
        snprintf(out, n, "%.*s", (int)(3 + a + b), text);
        return;
    }
    snprintf(out, n, "%d.0.0",
             code / 100 >= 2 && code / 100 <= 5 ? code / 100 : 4);
}

/* queue_notice - commit a notification for list[0..n) of j; logs it. */
static int
queue_notice(struct queue_job *j, const char *action,
             const struct queue_dsn_rcpt *list, size_t n, const char *what)
{
    struct queue *q = j->q;
    struct queue_msg m;
    struct msg_rcpt rcpt;
    char id[QUEUE_ID_MAX];
    struct buf out;
    struct err e;
    long long now = queue_now_us();
    int tries, rc = -1;

    err_clear(&e);
    buf_init(&out, 0);
    if (queue_dsn_build(&j->qf, j->id, q->hostname, action, list, n, now,
                        j->qf.arrival_us + j->set->lifetime_ms * 1000, &out,
                        &e) < 0) {
        log_error(j->id, "cannot build the %s: %s", what, e.text);
        buf_fini(&out);
        return -1;
    }
    memset(&m, 0, sizeof(m));
    rcpt.addr = (char *)j->qf.sender;
    rcpt.params = NULL;
    m.arrival_us = now;
    m.client_addr = "127.0.0.1";
    m.client_name = "localhost";
    m.helo = q->hostname;
    m.sender = "";
    m.sender_params = "";
    m.rcpts = &rcpt;
    m.nrcpts = 1;
    m.orig = &rcpt;
    m.norig = 1;
    m.data = out.data;
    m.len = out.len;
    for (tries = 0; tries < 3 && rc < 0; tries++) {
        qid_new(&q->seq, id, sizeof(id));
        m.qid = id;
        err_clear(&e);
        rc = queue_write(q, &m, &e);
        if (rc < 0 && e.sys_errno != EEXIST)
            break;
    }
    buf_fini(&out);
    if (rc < 0) {
        log_error(j->id, "cannot queue the %s: %s", what, e.text);
        return -1;
    }
    log_info(j->id, "sender %s: %s", what, id);
    log_info(id, "from=<>, size=%zu, nrcpt=1 (queue active)", m.len);
    queue_schedule(q, id, queue_now_ms());
    return 0;
}

static void
queue_defer_note(struct queue_job *j, const char *status)
{
    struct buf b;
    struct err e;
    size_t i;
    int fd;

    buf_init(&b, 0);
    for (i = 0; i < j->qf.nrcpts; i++)
        if (status[i] == QUEUE_RCPT_PENDING &&
            buf_printf(&b, &e, "%s\t%d %s\n", j->qf.rcpts[i].addr,
                       j->out[i].code, j->out[i].text) < 0)
            break;
    fd = openat(j->q->defer_fd, j->id,
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)fdio_write_all(fd, b.data ? b.data : "", b.len);
        close(fd);
    }
    buf_fini(&b);
}

static int
queue_mark(int fd, size_t off, char value)
{
    return pwrite(fd, &value, 1, (off_t)off) == 1 ? 0 : -1;
}

/* queue_finish - decide each recipient's fate from its outcome, send the
 * notifications, mark the file, and say whether it stays. */
static int
queue_finish(struct queue_job *j, int fd, long long *next_ms)
{
    struct queue *q = j->q;
    const struct queue_settings *set = j->set;
    struct queue_file *qf = &j->qf;
    struct queue_dsn_rcpt *failed = NULL, *relayed = NULL, *delayed = NULL;
    size_t nfailed = 0, nrelayed = 0, ndelayed = 0, i, pending = 0;
    long long now = queue_now_us(), age_ms = (now - qf->arrival_us) / 1000;
    int expired = age_ms >= set->lifetime_ms, changed = 0, verdict;
    char *status = NULL;
    struct stat st;

    if ((status = malloc(qf->nrcpts + 1)) == NULL ||
        (failed = calloc(qf->nrcpts, sizeof(*failed))) == NULL ||
        (relayed = calloc(qf->nrcpts, sizeof(*relayed))) == NULL ||
        (delayed = calloc(qf->nrcpts, sizeof(*delayed))) == NULL) {
        /* the outcomes are lost: try again, perhaps twice for some */
        log_error(j->id, "out of memory after a delivery attempt");
        verdict = QUEUE_RETRY;
        *next_ms = queue_now_ms() + set->min_backoff_ms;
        goto out;
    }
    for (i = 0; i < qf->nrcpts; i++) {
        struct queue_outcome *o = &j->out[i];
        const char *st_name, *note = "";
        char dsn[16], lifetime[64] = "";
        int cls = o->code / 100;

        status[i] = qf->rcpts[i].status;
        if (status[i] != QUEUE_RCPT_PENDING)
            continue;
        snprintf(o->reply, sizeof(o->reply), "%d %s", o->code, o->text);
        if (cls == 2) {
            st_name = "sent";
            status[i] = QUEUE_RCPT_DONE;
            if (esmtp_notify_wants(qf->rcpts[i].params, "SUCCESS") &&
                !o->hop_dsn)
                relayed[nrelayed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        } else if (cls == 5 || expired) {
            st_name = "bounced";
            status[i] = QUEUE_RCPT_BOUNCED;
            if (cls != 5) {
                snprintf(lifetime, sizeof(lifetime),
                         "; message expired after %llds in the queue",
                         age_ms / 1000);
                note = lifetime;
            }
            if (esmtp_notify_wants(qf->rcpts[i].params, "FAILURE"))
                failed[nfailed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        } else {
            st_name = "deferred";
            pending++;
            if (esmtp_notify_wants(qf->rcpts[i].params, "DELAY"))
                delayed[ndelayed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        }
        queue_dsn_code(o->code, o->text, dsn, sizeof(dsn));
        log_info(j->id,
                 "to=<%s>, relay=%s, delay=%.2f, delays=%.2f/%.2f/%.2f/%.2f, "
                 "dsn=%s, status=%s (%d %s%s)",
                 qf->rcpts[i].addr, o->relay,
                 (double)(now - qf->arrival_us) / 1e6,
                 (double)(qf->queued_us - qf->arrival_us) / 1e6,
                 (double)(j->start_us - qf->queued_us) / 1e6,
                 (double)o->conn_us / 1e6, (double)o->xfer_us / 1e6, dsn,
                 st_name, o->code, o->text, note);
    }
    if (fstat(fd, &st) == 0 && st.st_nlink == 0) {
        /* "relaychain queue delete" won while the attempt ran */
        log_info(j->id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    /* Notifications first, then the marks: a crash in between repeats
     * the notification, never loses it. A null sender gets none. */
    if (qf->sender[0] != '\0' && nfailed > 0 &&
        queue_notice(j, "failed", failed, nfailed,
                     "non-delivery notification") < 0) {
        for (i = 0; i < nfailed; i++) {
            status[failed[i].idx] = QUEUE_RCPT_PENDING;
            pending++;
        }
    }
    if (qf->sender[0] != '\0' && nrelayed > 0)
        (void)queue_notice(j, "relayed", relayed, nrelayed,
                           "delivery status notification");
    if (pending == 0) {
        if (unlinkat(q->queue_fd, j->id, 0) < 0 && errno != ENOENT)
            log_error(j->id, "cannot remove the queue file: %s",
                      strerror(errno));
        unlinkat(q->defer_fd, j->id, 0);
        log_info(j->id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    for (i = 0; i < qf->nrcpts; i++)
        if (status[i] != qf->rcpts[i].status) {
            if (queue_mark(fd, qf->rcpts[i].status_off, status[i]) < 0)
                log_error(j->id, "cannot mark <%s>: %s", qf->rcpts[i].addr,
                          strerror(errno));
            changed = 1;
        }
    if (changed && fdatasync(fd) < 0)
        log_error(j->id,
                  "fdatasync: %s: recipients done may be tried "
                  "again",
                  strerror(errno));
    if (set->warn_ms > 0 && qf->warned == '-' && age_ms >= set->warn_ms &&
        ndelayed > 0 && qf->sender[0] != '\0' &&
        queue_notice(j, "delayed", delayed, ndelayed, "delay notification") ==
            0 &&
        (queue_mark(fd, qf->warned_off, 'W') < 0 || fdatasync(fd) < 0))
        log_error(j->id, "cannot note the delay warning: %s", strerror(errno));
    queue_defer_note(j, status);
    {
        long long backoff = age_ms;

        if (backoff < set->min_backoff_ms)
            backoff = set->min_backoff_ms;
        if (backoff > set->max_backoff_ms)
            backoff = set->max_backoff_ms;
        *next_ms = queue_now_ms() + backoff;
    }
    verdict = QUEUE_RETRY;
out:
    free(status);
    free(failed);
    free(relayed);
    free(delayed);
    return verdict;
}

/* queue_attempt_with - one delivery attempt of queue/ID with the
 * settings set (held by the caller). */
static int
queue_attempt_with(struct queue *q, struct queue_settings *set, const char *id,
                   long long *next_ms)
{
    struct queue_job j;
    struct stat st, st2;
    struct buf raw;
    size_t *idx = NULL, *acc = NULL, i, r, n, pending = 0;
    struct smtpc_reply *each = NULL;
    int fd, verdict = QUEUE_RETRY;
    struct err e;

    err_clear(&e);
    *next_ms = queue_now_ms() + set->min_backoff_ms;
    if ((fd = openat(q->queue_fd, id, O_RDWR | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            return QUEUE_DROP; /* delivered, deleted or on hold */
        log_error(id, "open %s/queue/%s: %s", q->dir, id, strerror(errno));
        return QUEUE_RETRY;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        /* an administration command has it */
        close(fd);
        *next_ms = queue_now_ms() + QUEUE_LOCKED_RETRY_MS;
        return QUEUE_RETRY;
    }
    /* the name must still name what we locked: hold/release move it */
    if (fstat(fd, &st) < 0 || fstatat(q->queue_fd, id, &st2, 0) < 0 ||
        st.st_ino != st2.st_ino || st.st_dev != st2.st_dev) {
        close(fd);
        return QUEUE_DROP;
    }
    memset(&j, 0, sizeof(j));
    j.q = q;
    j.set = set;
    j.id = id;
    j.start_us = queue_now_us();
    buf_init(&raw, q->file_max);
    if (queue_read_fd(fd, q->file_max, &raw, &e) < 0 ||
        queue_file_parse(raw.data ? raw.data : "", raw.len, 0, &j.qf, &e) <
            0) {
        if (e.code == ERR_NOMEM) {
            log_error(id, "out of memory reading the queue file");
            goto out;
        }
        if (renameat(q->queue_fd, id, q->corrupt_fd, id) < 0)
            log_error(id,
                      "corrupt queue file (%s), and cannot move it to "
                      "corrupt/: %s",
                      e.text, strerror(errno));
        else
            log_error(id, "corrupt queue file moved to %s/corrupt: %s", q->dir,
                      e.text);
        unlinkat(q->defer_fd, id, 0);
        verdict = QUEUE_DROP;
        goto out;
    }
    for (i = 0; i < j.qf.nrcpts; i++)
        if (j.qf.rcpts[i].status == QUEUE_RCPT_PENDING)
            pending++;
    if (pending == 0) {
        unlinkat(q->queue_fd, id, 0);
        unlinkat(q->defer_fd, id, 0);
        log_info(id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    if ((j.out = calloc(j.qf.nrcpts, sizeof(*j.out))) == NULL ||
        (j.route = calloc(j.qf.nrcpts, sizeof(*j.route))) == NULL ||
        (idx = calloc(j.qf.nrcpts, sizeof(*idx))) == NULL ||
        (acc = calloc(j.qf.nrcpts, sizeof(*acc))) == NULL ||
        (each = calloc(j.qf.nrcpts, sizeof(*each))) == NULL) {
        log_error(id, "out of memory for a delivery attempt");
        goto out;
    }
    for (i = 0; i < j.qf.nrcpts; i++)
        j.route[i] = queue_route_for(set, j.qf.rcpts[i].addr);
    for (r = 0; r < set->nroutes; r++) {
        for (n = 0, i = 0; i < j.qf.nrcpts; i++)
            if (j.qf.rcpts[i].status == QUEUE_RCPT_PENDING && j.route[i] == r)
                idx[n++] = i;
        if (n > 0)
            queue_deliver_route(&j, r, idx, n, acc, each);
    }
    verdict = queue_finish(&j, fd, next_ms);
out:
    close(fd);
    free(idx);
    free(acc);
    free(each);
    free(j.out);
    free(j.route);
    queue_file_fini(&j.qf);
    buf_fini(&raw);
    return verdict;
}

/* queue_settings_hold - the current settings, with a reference. */
static struct queue_settings *
queue_settings_hold(struct queue *q)
{
    struct queue_settings *set;

    pthread_mutex_lock(&q->lock);
    set = q->set;
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&q->lock);
    return set;
}

void
queue_settings_release(struct queue_settings *set)
{
    size_t i;

    if (set == NULL || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    /* the last user: the pools close their idle connections */
    for (i = 0; i < set->nroutes; i++) {
        smtpc_pool_free(set->routes[i].pool);
        free(set->routes[i].nexthop);
    }
    free(set->routes);
    for (i = 0; i < set->ntransports; i++)
        free(set->transports[i].domain);
    free(set->transports);
    free(set);
}

/* queue_attempt - one delivery attempt of queue/ID, with the settings
 * current when it starts: a reload meanwhile does not touch it. */
static int
queue_attempt(struct queue *q, const char *id, long long *next_ms)
{
    struct queue_settings *set = queue_settings_hold(q);
    int verdict;

    verdict = queue_attempt_with(q, set, id, next_ms);
    queue_settings_release(set);
    return verdict;
}

/* ------------------------------------------------------------ threads */

static void
queue_thread_end(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->threads--;
    pthread_cond_broadcast(&q->gone);
    pthread_mutex_unlock(&q->lock);
}

static void *
queue_worker(void *arg)
{
    struct queue *q = arg;
    struct queue_entry *en;
    long long next;
    int verdict;

    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        long long now;

        if (q->workers > q->set->concurrency)
            break; /* a reload lowered delivery_concurrency */
        if (q->nheap == 0) {
            pthread_cond_wait(&q->wake, &q->lock);
            continue;
        }
        now = queue_now_ms();
        if (q->heap[0]->due_ms > now) {
            struct timespec ts;

            ts.tv_sec = (time_t)(q->heap[0]->due_ms / 1000);
            ts.tv_nsec = (long)(q->heap[0]->due_ms % 1000) * 1000000L;
            pthread_cond_timedwait(&q->wake, &q->lock, &ts);
            continue;
        }
        en = queue_heap_pop(q);
        pthread_mutex_unlock(&q->lock);
        verdict = queue_attempt(q, en->id, &next);
        pthread_mutex_lock(&q->lock);
        if (verdict == QUEUE_DROP) {
            queue_table_remove(q, en);
            free(en);
            continue;
        }
        en->due_ms = next;
        if (queue_heap_push(q, en) < 0) {
            /* still on disk: the next rescan finds it */
            queue_table_remove(q, en);
            free(en);
        }
    }
    q->workers--;
    pthread_mutex_unlock(&q->lock);
    queue_thread_end(q);
    return NULL;
}

/* queue_scan - index every file of queue/ not indexed yet. At start-up
 * (recovery) a file whose end record is missing is removed; later such
 * a file (damaged under us) goes to corrupt/. Returns the count added. */
static size_t
queue_scan(struct queue *q, int recovery)
{
    struct dirent *de;
    size_t added = 0;
    DIR *d;
    int dfd;

    if ((dfd = dup(q->queue_fd)) < 0 || (d = fdopendir(dfd)) == NULL) {
        if (dfd >= 0)
            close(dfd);
        log_error(NULL, "scan %s/queue: %s", q->dir, strerror(errno));
        return 0;
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        char tail[QUEUE_TAIL_LEN];
        struct stat st;
        int known, fd, ok;

        if (!qid_is_valid(de->d_name, QUEUE_ID_MAX))
            continue;
        pthread_mutex_lock(&q->lock);
        known = queue_find(q, de->d_name) != NULL;
        pthread_mutex_unlock(&q->lock);
        if (known)
            continue;
        if ((fd = openat(q->queue_fd, de->d_name, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
             st.st_size >= QUEUE_TAIL_LEN &&
             pread(fd, tail, sizeof(tail),
                   (off_t)(st.st_size - QUEUE_TAIL_LEN)) ==
                 (ssize_t)sizeof(tail) &&
             queue_file_tail_ok(tail, sizeof(tail), (size_t)st.st_size);
        close(fd);
        if (!ok && recovery) {
            if (unlinkat(q->queue_fd, de->d_name, 0) == 0)
                log_warning(de->d_name,
                            "removed a torn queue file "
                            "(%lld octets, no end record)",
                            (long long)st.st_size);
            unlinkat(q->defer_fd, de->d_name, 0);
            continue;
        }
        if (!ok) {
            if (renameat(q->queue_fd, de->d_name, q->corrupt_fd, de->d_name) ==
                0)
                log_error(de->d_name,
                          "queue file without an end record "
                          "moved to %s/corrupt",
                          q->dir);
            continue;
        }
        queue_schedule(q, de->d_name, queue_now_ms());
        added++;
    }
    closedir(d);
    return added;
}

/* queue_clean - at start-up: what tmp/ holds was never acknowledged;
 * deferral notes of messages that are gone. */
static void
queue_clean(struct queue *q)
{
    struct dirent *de;
    DIR *d;
    int dfd;

    if ((dfd = dup(q->tmp_fd)) >= 0 && (d = fdopendir(dfd)) != NULL) {
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.' &&
                unlinkat(q->tmp_fd, de->d_name, 0) == 0)
                log_warning(de->d_name, "removed an incomplete queue file "
                                        "(the relay stopped while "
                                        "receiving it)");
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
    if ((dfd = dup(q->defer_fd)) >= 0 && (d = fdopendir(dfd)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            struct stat st;

            if (de->d_name[0] != '.' &&
                fstatat(q->queue_fd, de->d_name, &st, 0) < 0 &&
                fstatat(q->hold_fd, de->d_name, &st, 0) < 0)
                unlinkat(q->defer_fd, de->d_name, 0);
        }
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
}

/* queue_trigger_line - one command from the FIFO. */
/* queue_revive - every route usable again, before a flush looks for new
 * files: a file the scan finds is due at once, and a worker that took it
 * while its route was still suspended would defer it for a whole
 * backoff, the flush notwithstanding. */
static void
queue_revive(struct queue *q)
{
    size_t i;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < q->set->nroutes; i++)
        q->set->routes[i].dead_until_ms = 0;
    pthread_mutex_unlock(&q->lock);
}

static void
queue_trigger_line(struct queue *q, const char *line)
{
    if (strcmp(line, "F") == 0) {
        log_info(NULL, "flush: every deferred message is tried now");
        queue_revive(q);
        queue_scan(q, 0);
        queue_flush(q, NULL);
    } else if (strncmp(line, "F ", 2) == 0 &&
               qid_is_valid(line + 2, QUEUE_ID_MAX)) {
        queue_revive(q);
        queue_scan(q, 0);
        queue_flush(q, line + 2);
    } else if (strcmp(line, "S") == 0) {
        queue_scan(q, 0);
    }
}

static void *
queue_trigger(void *arg)
{
    struct queue *q = arg;
    char in[4096];
    size_t have = 0;
    long long next_scan;
    long long run_delay;
    int stop;

    log_info(NULL, "queue %s: %zu message(s) found at start-up", q->dir,
             queue_scan(q, 1));
    pthread_mutex_lock(&q->lock);
    run_delay = q->set->run_delay_ms;
    pthread_mutex_unlock(&q->lock);
    next_scan = queue_now_ms() + run_delay;
    for (;;) {
        struct pollfd p = {q->fifo_fd, POLLIN, 0};
        ssize_t n;

        pthread_mutex_lock(&q->lock);
        stop = q->stopping;
        if (q->set->run_delay_ms != run_delay) {
            /* a reload: the new queue_run_delay counts from now */
            run_delay = q->set->run_delay_ms;
            next_scan = queue_now_ms() + run_delay;
        }
        pthread_mutex_unlock(&q->lock);
        if (stop)
            break;
        if (poll(&p, 1, 500) > 0 &&
            (n = read(q->fifo_fd, in + have, sizeof(in) - 1 - have)) > 0) {
            char *line = in, *nl;

            have += (size_t)n;
            in[have] = '\0';
            while ((nl = memchr(line, '\n', have - (size_t)(line - in))) !=
                   NULL) {
                *nl = '\0';
                queue_trigger_line(q, line);
                line = nl + 1;
            }
            have -= (size_t)(line - in);
            memmove(in, line, have);
            if (have == sizeof(in) - 1)
                have = 0; /* no line end in 4 KiB: junk */
        }
        if (queue_now_ms() >= next_scan) {
            queue_scan(q, 0);
            next_scan = queue_now_ms() + run_delay;
        }
    }
    queue_thread_end(q);
    return NULL;
}

/* --------------------------------------------------------- life cycle */

static int
queue_subdir(struct queue *q, const char *name, int *fd, struct err *e)
{
    if (mkdirat(q->dfd, name, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "queue_directory: mkdir %s/%s", q->dir,
                       name);
    if ((*fd = openat(q->dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "queue_directory: %s/%s", q->dir, name);
    return 0;
}

static int
queue_add_route(struct queue_settings *set, const char *hostname,
                const struct cfg *c, const char *hop, size_t *out,
                struct err *e)
{
    struct smtpc_settings s;
    struct queue_route *grown;
    size_t i;

    for (i = 0; i < set->nroutes; i++)
        if (strcmp(set->routes[i].nexthop, hop) == 0) {
            *out = i;
            return 0;
        }
    grown = realloc(set->routes, (set->nroutes + 1) * sizeof(*grown));
    if (grown == NULL)
        return err_nomem(e);
    set->routes = grown;
    memset(&set->routes[set->nroutes], 0, sizeof(*grown));
    memset(&s, 0, sizeof(s));
    s.next_hop = hop;
    s.helo_name = hostname;
    smtpc_settings_tls(&s, c);
    s.auth_file = cfg_str(c, "next_hop_auth_file");
    s.connect_timeout_ms = 30000;
    s.timeout_ms = (int)cfg_num(c, "next_hop_timeout");
    s.idle_timeout_ms = 10000;
    s.max_idle = set->concurrency;
    if ((set->routes[set->nroutes].nexthop = strdup(hop)) == NULL)
        return err_nomem(e);
    if ((set->routes[set->nroutes].pool = smtpc_pool_new(&s, e)) == NULL) {
        free(set->routes[set->nroutes].nexthop);
        return -1;
    }
    *out = set->nroutes++;
    return 0;
}

/* queue_transport_load - "domain nexthop" lines, Postfix transport(5)
 * style: "example.com", ".example.com" (its subdomains) or "*". */
static int
queue_transport_load(struct queue_settings *set, const char *hostname,
                     const struct cfg *c, const char *path, struct err *e)
{
    char line[QUEUE_LINE_MAX + 2];
    unsigned lineno = 0;
    FILE *fp;

    if ((fp = fopen(path, "re")) == NULL)
        return cfg_err(e, c, "transport_map", "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *key, *hop, *rest, *p;
        struct queue_transport *grown;
        size_t len = strlen(line), r;

        lineno++;
        if (len > QUEUE_LINE_MAX) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s:%u: line too long", path,
                           lineno);
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        p = line + strspn(line, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        key = p;
        p += strcspn(p, " \t");
        if (*p != '\0')
            *p++ = '\0';
        p += strspn(p, " \t");
        hop = p;
        p += strcspn(p, " \t");
        rest = p + strspn(p, " \t");
        *p = '\0';
        if (*hop == '\0' || (*rest != '\0' && *rest != '#')) {
            fclose(fp);
            return err_set(e, ERR_CONFIG,
                           "%s:%u: expected \"domain "
                           "next-hop\"",
                           path, lineno);
        }
        if (strcmp(key, "*") != 0 && strspn(key, ".") > 1) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s:%u: bad domain '%.100s'", path,
                           lineno, key);
        }
        if (queue_add_route(set, hostname, c, hop, &r, e) < 0) {
            fclose(fp);
            /* e->text is the reason: err_set() would write over it while
             * reading it. */
            err_prefix(e, "%s:%u", path, lineno);
            e->code = ERR_CONFIG;
            return -1;
        }
        grown =
            realloc(set->transports, (set->ntransports + 1) * sizeof(*grown));
        if (grown == NULL) {
            fclose(fp);
            return err_nomem(e);
        }
        set->transports = grown;
        if ((grown[set->ntransports].domain = strdup(key)) == NULL) {
            fclose(fp);
            return err_nomem(e);
        }
        grown[set->ntransports++].route = r;
    }
    fclose(fp);
    return 0;
}

/* queue_settings_new - the reloadable settings of c, routes and pools
 * built; NULL with e set when c is not usable. */
static struct queue_settings *
queue_settings_new(const char *hostname, const struct cfg *c, struct err *e)
{
    struct queue_settings *set;
    const char *s;
    size_t r;

    if ((set = calloc(1, sizeof(*set))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    atomic_init(&set->refs, 1);
    set->min_backoff_ms = cfg_num(c, "minimal_backoff_time");
    set->max_backoff_ms = cfg_num(c, "maximal_backoff_time");
    set->lifetime_ms = cfg_num(c, "maximal_queue_lifetime");
    set->warn_ms = cfg_num(c, "delay_warning_time");
    set->run_delay_ms = cfg_num(c, "queue_run_delay");
    set->minfree = (unsigned long long)cfg_num(c, "queue_minfree");
    set->concurrency = (unsigned)cfg_num(c, "delivery_concurrency");
    if (set->max_backoff_ms < set->min_backoff_ms) {
        cfg_err(e, c, "maximal_backoff_time",
                "shorter than minimal_backoff_time");
        goto fail;
    }
    if ((s = cfg_str(c, "next_hop")) == NULL) {
        cfg_err(e, c, "next_hop", "delivery = queue needs a next_hop");
        goto fail;
    }
    if (queue_add_route(set, hostname, c, s, &r, e) < 0) {
        if (e->code == ERR_CONFIG)
            cfg_err(e, c, "next_hop", "%s", e->text);
        goto fail;
    }
    if ((s = cfg_str(c, "transport_map")) != NULL &&
        queue_transport_load(set, hostname, c, s, e) < 0)
        goto fail;
    return set;
fail:
    queue_settings_release(set);
    return NULL;
}

struct queue *
queue_open(const struct cfg *c, struct err *e)
{
    struct queue *q;
    const char *s;
    struct stat st;

    if ((q = calloc(1, sizeof(*q))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    q->dfd = q->tmp_fd = q->queue_fd = q->hold_fd = q->corrupt_fd = -1;
    q->defer_fd = q->lock_fd = q->fifo_fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->gone, NULL);
    atomic_init(&q->seq, ((unsigned)getpid() << 8) ^ 0x8000000u);
    if ((q->table = calloc(1024, sizeof(*q->table))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    q->table_size = 1024;
    if ((s = cfg_str(c, "myhostname")) != NULL)
        snprintf(q->hostname, sizeof(q->hostname), "%s", s);
    else if (gethostname(q->hostname, sizeof(q->hostname) - 1) < 0)
        snprintf(q->hostname, sizeof(q->hostname), "localhost");
    q->file_max = 2 * (size_t)cfg_num(c, "message_size_limit") + (64u << 20);
    if ((q->set = queue_settings_new(q->hostname, c, e)) == NULL)
        goto fail;
    s = cfg_str(c, "queue_directory");
    if (snprintf(q->dir, sizeof(q->dir), "%s", s) >= (int)sizeof(q->dir)) {
        cfg_err(e, c, "queue_directory", "name too long");
        goto fail;
    }
    if (mkdir(q->dir, 0700) < 0 && errno != EEXIST) {
        cfg_err(e, c, "queue_directory", "mkdir %s: %s", q->dir,
                strerror(errno));
        goto fail;
    }
    if ((q->dfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        cfg_err(e, c, "queue_directory", "%s: %s", q->dir, strerror(errno));
        goto fail;
    }
    if (queue_subdir(q, "tmp", &q->tmp_fd, e) < 0 ||
        queue_subdir(q, "queue", &q->queue_fd, e) < 0 ||
        queue_subdir(q, "hold", &q->hold_fd, e) < 0 ||
        queue_subdir(q, "corrupt", &q->corrupt_fd, e) < 0 ||
        queue_subdir(q, "defer", &q->defer_fd, e) < 0)
        goto fail;
    if ((q->lock_fd =
             openat(q->dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        err_sys(e, ERR_IO, "queue_directory: %s/lock", q->dir);
        goto fail;
    }
    if (flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        err_set(e, ERR_CONFIG,
                "queue_directory %s is in use by another "
                "relaychaind",
                q->dir);
        goto fail;
    }
    if (mkfifoat(q->dfd, "trigger", 0600) < 0 && errno != EEXIST) {
        err_sys(e, ERR_IO, "queue_directory: mkfifo %s/trigger", q->dir);
        goto fail;
    }
    if (fstatat(q->dfd, "trigger", &st, 0) < 0 || !S_ISFIFO(st.st_mode)) {
        err_set(e, ERR_CONFIG, "queue_directory: %s/trigger is not a FIFO",
                q->dir);
        goto fail;
    }
    if ((q->fifo_fd =
             openat(q->dfd, "trigger", O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
        err_sys(e, ERR_IO, "queue_directory: %s/trigger", q->dir);
        goto fail;
    }
    return q;
fail:
    queue_free(q);
    return NULL;
}

static int
queue_spawn(struct queue *q, void *(*fn)(void *), struct err *e)
{
    pthread_attr_t attr;
    pthread_t tid;
    int rc;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, QUEUE_STACK);
    pthread_mutex_lock(&q->lock);
    q->threads++;
    pthread_mutex_unlock(&q->lock);
    if ((rc = pthread_create(&tid, &attr, fn, q)) != 0) {
        pthread_attr_destroy(&attr);
        queue_thread_end(q);
        errno = rc;
        return err_sys(e, ERR_IO, "cannot start a queue thread");
    }
    pthread_attr_destroy(&attr);
    return 0;
}

static int
queue_spawn_worker(struct queue *q, struct err *e)
{
    pthread_mutex_lock(&q->lock);
    q->workers++;
    pthread_mutex_unlock(&q->lock);
    if (queue_spawn(q, queue_worker, e) < 0) {
        pthread_mutex_lock(&q->lock);
        q->workers--;
        pthread_mutex_unlock(&q->lock);
        return -1;
    }
    return 0;
}

int
queue_start(struct queue *q, struct err *e)
{
    unsigned i;

    queue_clean(q);
    if (queue_spawn(q, queue_trigger, e) < 0)
        return -1;
    for (i = 0; i < q->set->concurrency; i++)
        if (queue_spawn_worker(q, e) < 0)
            return -1;
    log_info(NULL, "queue %s: %u delivery worker(s), next hop %s%s", q->dir,
             q->set->concurrency, q->set->routes[0].nexthop,
             q->set->ntransports > 0 ? ", transport_map routes" : "");
    return 0;
}

unsigned
queue_stop(struct queue *q, long long wait_ms)
{
    long long deadline = queue_now_ms() + wait_ms;
    unsigned left;

    pthread_mutex_lock(&q->lock);
    q->stopping = 1;
    pthread_cond_broadcast(&q->wake);
    while (q->threads > 0 && queue_now_ms() < deadline) {
        struct timespec ts;
        long long until = queue_now_ms() + 100;

        ts.tv_sec = (time_t)(until / 1000);
        ts.tv_nsec = (long)(until % 1000) * 1000000L;
        pthread_cond_timedwait(&q->gone, &q->lock, &ts);
    }
    left = q->threads;
    pthread_mutex_unlock(&q->lock);
    return left;
}

void
queue_free(struct queue *q)
{
    size_t i;

    if (q == NULL)
        return;
    for (i = 0; i < q->table_size && q->table != NULL; i++) {
        struct queue_entry *en, *next;

        for (en = q->table[i]; en != NULL; en = next) {
            next = en->hnext;
            free(en);
        }
    }
    free(q->table);
    free(q->heap);
    queue_settings_release(q->set);
    if (q->fifo_fd >= 0)
        close(q->fifo_fd);
    if (q->lock_fd >= 0)
        close(q->lock_fd);
    if (q->defer_fd >= 0)
        close(q->defer_fd);
    if (q->corrupt_fd >= 0)
        close(q->corrupt_fd);
    if (q->hold_fd >= 0)
        close(q->hold_fd);
    if (q->queue_fd >= 0)
        close(q->queue_fd);
    if (q->tmp_fd >= 0)
        close(q->tmp_fd);
    if (q->dfd >= 0)
        close(q->dfd);
    pthread_cond_destroy(&q->gone);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

struct queue_settings *
queue_settings_load(struct queue *q, const struct cfg *c, struct err *e)
{
    const char *dir = cfg_str(c, "queue_directory");

    if (dir == NULL || strcmp(dir, q->dir) != 0)
        log_warning(NULL,
                    "queue_directory changed; restart relaychaind to use "
                    "it (still %s)",
                    q->dir);
    return queue_settings_new(q->hostname, c, e);
}

int
queue_settings_check(const struct cfg *c, struct err *e)
{
    struct queue_settings *set;
    char host[256];
    const char *s;

    /* The host name as queue_open() picks it. */
    if ((s = cfg_str(c, "myhostname")) != NULL)
        snprintf(host, sizeof(host), "%s", s);
    else if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    if ((set = queue_settings_new(host, c, e)) == NULL)
        return -1;
    queue_settings_release(set);
    return 0;
}

void
queue_settings_apply(struct queue *q, struct queue_settings *set)
{
    struct queue_settings *old;
    unsigned more = 0, i;
    long long latest = queue_now_ms() + set->max_backoff_ms;
    size_t k;
    struct err e;

    pthread_mutex_lock(&q->lock);
    old = q->set;
    q->set = set;
    /* no waiting message waits longer than the new maximal_backoff_time;
     * lowered times keep the heap order only after a heapify */
    for (k = 0; k < q->nheap; k++)
        if (q->heap[k]->due_ms > latest)
            q->heap[k]->due_ms = latest;
    for (k = q->nheap / 2; k-- > 0;)
        queue_heap_down(q, k);
    if (!q->stopping && set->concurrency > q->workers)
        more = set->concurrency - q->workers;
    pthread_cond_broadcast(&q->wake); /* fewer workers: some leave */
    pthread_mutex_unlock(&q->lock);
    queue_settings_release(old);
    err_clear(&e);
    for (i = 0; i < more; i++)
        if (queue_spawn_worker(q, &e) < 0) {
            log_error(NULL, "reload: %s", e.text);
            break;
        }
    log_info(NULL, "queue %s: reloaded: %u delivery worker(s), next hop %s%s",
             q->dir, set->concurrency, set->routes[0].nexthop,
             set->ntransports > 0 ? ", transport_map routes" : "");
}

int
queue_trigger_at(int dfd, const char *line)
{
    int fd = openat(dfd, "trigger",
                    O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    size_t len = strlen(line);
    struct stat st;
    ssize_t n;

    /* ENXIO: a FIFO nobody reads, the daemon is not running. */
    if (fd < 0 && errno != ELOOP)
        return -1;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return -2;
    }
    n = write(fd, line, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}
