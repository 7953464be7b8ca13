/*
 * smtpd_data - DATA: reading the message, and its checks
 *
 * DATA is read line by line with a bound on each line; only CRLF.CRLF
 * ends it. Bare LF, bare CR, NUL, over-long lines and oversize messages
 * are noted while reading and answered after the end, so that no byte of
 * the message is ever taken for a command. The message is counted in the
 * process-wide struct memlimit from DATA on (smtpd_memory_limit): DATA
 * gets 452 4.3.1 while the count is full, and a message that fills it
 * on the way is freed at once, read to its end and answered 452 4.3.1.
 * smtpd_cmd_data() gives the count back on each of its ways out.
 *
 * What passes its checks has the stream of stream_header taken (from
 * trusted clients), the recipients suppressed for that stream dropped,
 * and is counted toward the rate limits (one request to the shared
 * store a message), then goes to smtpd_deliver(); the reply for the
 * client is given before smtpd_cmd_data() returns.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/netio.h"
#include "net/ratestate.h"
#include "msg/msg.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/memlimit.h"
#include "util/ratelimit.h"
#include "queue/events.h" /* ---- verp */
#include "queue/queue.h"  /* ---- verp */
#include "smtpd/smtpd_int.h"

enum smtpd_data_flags {
    DATA_BARE_LF = 1,
    DATA_BARE_CR = 2,
    DATA_NUL = 4,
    DATA_TOO_BIG = 8,
    DATA_LONG_LINE = 16,
    DATA_HUGE_LINE = 32, /* over the read bound: cannot be wrapped */
    DATA_NO_MEMORY = 64  /* over smtpd_memory_limit */
};

/* smtpd_mem_take - count n more octets of this DATA against
 * smtpd_memory_limit; -1 when that would pass it. */
static int
smtpd_mem_take(struct smtpd_session *s, size_t n)
{
    if (s->srv->mem == NULL)
        return 0;
    if (memlimit_take(s->srv->mem, n, s->mem_held, s->rt->memory_limit) < 0)
        return -1;
    s->mem_held += n;
    return 0;
}

/* smtpd_mem_give - give back all this DATA counted. */
static void
smtpd_mem_give(struct smtpd_session *s)
{
    if (s->srv->mem != NULL && s->mem_held > 0)
        memlimit_give(s->srv->mem, s->mem_held);
    s->mem_held = 0;
}

/* smtpd_mem_grow - out grew: count what it holds now, a step at a time.
 * Past the limit, out is emptied and freed, the count given back and
 * -1 returned: the rest of the message is read and dropped. */
static int
smtpd_mem_grow(struct smtpd_session *s, struct buf *out)
{
    size_t more;

    if (out->len <= s->mem_held)
        return 0;
    more = out->len - s->mem_held;
    if (more < SMTPD_MEM_STEP)
        more = SMTPD_MEM_STEP;
    if (smtpd_mem_take(s, more) == 0)
        return 0;
    buf_fini(out);
    smtpd_mem_give(s);
    return -1;
}

/* smtpd_append_wrapped - append a line (without its line end) to out,
 * wrapped at 998 octets; header lines are folded with a space so they
 * stay one field. */
static int
smtpd_append_wrapped(struct buf *out, const char *p, size_t n, int in_header,
                     struct err *e)
{
    while (n > 998) {
        size_t cut = 998;

        if (buf_append(out, p, cut, e) < 0 ||
            buf_append(out, in_header ? "\r\n " : "\r\n", in_header ? 3 : 2,
                       e) < 0)
            return -1;
        p += cut;
        n -= cut;
    }
    if (buf_append(out, p, n, e) < 0 || buf_append(out, "\r\n", 2, e) < 0)
        return -1;
    return 0;
}

/* smtpd_read_data - read the message after 354 into out (CRLF line
 * ends, dot-stuffing removed). Returns 0 with *flags saying what was
 * wrong with it, or the netio status (NETIO_TIMEOUT, NETIO_EOF,
 * NETIO_ERROR) when the data did not end. */
static int
smtpd_read_data(struct smtpd_session *s, struct buf *out, unsigned *flags)
{
    size_t total = 0, limit = s->rt->size_limit;
    int prev_crlf = 1, in_header = 1;
    struct buf line;
    int rc;

    *flags = 0;
    buf_init(&line, 0);
    netio_set_line_limit(s->io, SMTPD_DATA_LINE_MAX);
    for (;;) {
        const char *p;
        size_t n, body;
        int crlf;

        rc = netio_getline(s->io, &line, &s->e);
        if (rc == NETIO_TOOLONG) {
            /* line holds its end: a CRLF-ended line may precede "." */
            *flags |= DATA_LONG_LINE | DATA_HUGE_LINE;
            prev_crlf = line.len == 2;
            continue;
        }
        if (rc != NETIO_OK) {
            buf_fini(&line);
            netio_set_line_limit(s->io, SMTPD_LINE_MAX);
            return rc;
        }
        p = line.data;
        n = line.len;
        crlf = n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n';
        if (crlf && prev_crlf && n == 3 && p[0] == '.')
            break; /* CRLF.CRLF */
        if (p[n - 1] != '\n') {
            /* The peer closed without the end marker. */
            buf_fini(&line);
            netio_set_line_limit(s->io, SMTPD_LINE_MAX);
            return NETIO_EOF;
        }
        body = crlf ? n - 2 : n - 1;
        if (!crlf)
            *flags |= DATA_BARE_LF;
        if (memchr(p, '\r', body) != NULL)
            *flags |= DATA_BARE_CR;
        if (memchr(p, '\0', body) != NULL)
            *flags |= DATA_NUL;
        prev_crlf = crlf;
        if (p[0] == '.') { /* transparency: a leading dot was doubled */
            p++;
            body--;
        }
        total += body + 2;
        if (total > limit)
            *flags |= DATA_TOO_BIG;
        if (*flags &
            (DATA_TOO_BIG | DATA_NUL | DATA_HUGE_LINE | DATA_NO_MEMORY))
            continue; /* read on to the end, keep nothing more */
        if ((*flags & (DATA_BARE_LF | DATA_BARE_CR)) &&
            !s->rt->normalize_newlines)
            continue;
        if (in_header && body == 0)
            in_header = 0;
        if (body > 998) {
            *flags |= DATA_LONG_LINE;
            if (!s->rt->wrap_long_lines)
                continue;
        }
        if (*flags & DATA_BARE_CR) {
            /* normalize: every lone CR becomes a line end */
            size_t i, start = 0;

            for (i = 0; i < body; i++)
                if (p[i] == '\r') {
                    if (smtpd_append_wrapped(out, p + start, i - start,
                                             in_header, &s->e) < 0)
                        *flags |= DATA_TOO_BIG;
                    start = i + 1;
                }
            if (smtpd_append_wrapped(out, p + start, body - start, in_header,
                                     &s->e) < 0)
                *flags |= DATA_TOO_BIG;
        } else if (smtpd_append_wrapped(out, p, body, in_header, &s->e) < 0) {
            *flags |= DATA_TOO_BIG;
        }
        if (smtpd_mem_grow(s, out) < 0)
            *flags |= DATA_NO_MEMORY;
    }
    buf_fini(&line);
    netio_set_line_limit(s->io, SMTPD_LINE_MAX);
    if (!s->rt->wrap_long_lines && (*flags & DATA_LONG_LINE))
        *flags |= DATA_HUGE_LINE;
    return 0;
}

/* smtpd_data_size - the SIZE of MAIL, at most what message_size_limit
 * lets in, or one step. */
static size_t
smtpd_data_size(const struct smtpd_session *s)
{
    unsigned long long size = smtpd_param_size(s->sender_params);

    if (size > s->rt->size_limit)
        size = s->rt->size_limit;
    return size > SMTPD_MEM_STEP ? (size_t)size : SMTPD_MEM_STEP;
}

/* ---- events: the stream a trusted client names in stream_header */

#define SMTPD_STREAM_CHARS                                                    \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

/* smtpd_stream_take - with stream_header set, the stream the message
 * names in it into s->stream, when the client (as the chain sees it:
 * PROXY's or XFORWARD's) is one of stream_header_clients and the value
 * is a stream name; else none, and a header from anyone else is logged.
 * The field itself never leaves: smtpd_stream_strip() removes it. */
static void
smtpd_stream_take(struct smtpd_session *s, const struct buf *data)
{
    char v[SMTPD_STREAM_MAX + 1], client[SMTPD_CLIENT_MAX];
    const char *name = s->rt->stream_header;
    struct smtpd_facts f;
    int rc;

    s->stream[0] = '\0';
    if (name == NULL || data->len == 0 ||
        (rc = msg_raw_field(data->data, data->len, name, v, sizeof(v))) == 0)
        return;
    f = smtpd_facts(s);
    f.addr = smtpd_env_addr(s);
    /* the client the decision is about: XFORWARD's behind a Postfix */
    snprintf(client, sizeof(client), "%s[%s]", smtpd_env_name(s), f.addr);
    if (!smtpd_clients_has(s->rt, &s->rt->stream_clients, &f)) {
        log_info(s->qid,
                 "%s from %s, not one of stream_header_clients: removed "
                 "and not believed",
                 name, client);
        return;
    }
    if (rc < 0 || v[0] == '\0' || strspn(v, SMTPD_STREAM_CHARS) != strlen(v)) {
        log_warning(s->qid,
                    "%s from %s: '%.64s' is not a stream name (at most %d "
                    "letters, digits, '.', '_' or '-'): removed and ignored",
                    name, client, v, SMTPD_STREAM_MAX);
        return;
    }
    memcpy(s->stream, v, strlen(v) + 1);
    log_info(s->qid, "stream=%s, from %s", s->stream, name);
}

/* smtpd_stream_suppressed - the recipients on the suppression list for
 * the stream of stream_header (RCPT looked them up for stream_map's,
 * before the header came) leave the envelope, each with a suppressed
 * event: after the data no reply refuses one recipient. When none is
 * left the message is answered (550 5.7.1, or 250 and discarded with
 * on_suppressed = drop) and 1 returned; else 0. */
static int
smtpd_stream_suppressed(struct smtpd_session *s, const struct buf *data)
{
    struct events *ev = queue_events(s->srv->queue);
    char map[256], why[400], reply[600] = "", msgid[512];
    size_t i = 0;

    if (s->stream[0] == '\0' || ev == NULL)
        return 0;
    if (events_stream(ev, NULL, s->auth_user, s->sender, map, sizeof(map)) &&
        strcmp(map, s->stream) == 0)
        return 0; /* RCPT asked for this very stream */
    (void)msg_raw_field(data->data, data->len, "Message-ID", msgid,
                        sizeof(msgid));
    while (i < s->nrcpts) {
        struct smtpd_rcpt *r = &s->rcpts[i];

        if (events_suppressed(ev, r->addr, s->stream, why, sizeof(why)) != 1) {
            i++;
            continue;
        }
        log_info(s->qid, "suppressed: to=<%s> on stream %s dropped (%s)",
                 r->addr, s->stream, why);
        smtpd_suppressed_event(s, ev, msgid, r->addr, s->stream, why);
        snprintf(reply, sizeof(reply), "550 5.7.1 recipient suppressed (%s)",
                 why);
        free(r->addr);
        free(r->params);
        free(r->group);
        memmove(r, r + 1, (s->nrcpts - i - 1) * sizeof(*r));
        s->nrcpts--;
        s->n_dropped++;
    }
    if (s->nrcpts > 0)
        return 0;
    if (events_drops(ev)) {
        log_info(s->qid, "discarded: every recipient suppressed; from=<%s>",
                 s->sender);
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
    } else {
        smtpd_reply_id(s, reply);
    }
    return 1;
}

/* ---- end events */

/* ---- fleet: rate limits */

static const char *
smtpd_rate_rcpt(const void *arg, size_t i)
{
    return ((const struct smtpd_session *)arg)->rcpts[i].addr;
}

/* smtpd_rate_refuses - count the whole transaction (the message toward
 * the message rules, its recipients toward the recipient rules) toward
 * the rate_limits rules it falls under, in one request to the shared
 * store; 1, the reply given and the rule logged, when one of them is
 * reached (nothing is counted then), or when the shared store is away
 * and state_on_error is tempfail. It runs once the message is complete,
 * when the recipients, the stream and the message are known, and
 * before the chain spends anything on it; what it took stays in s for
 * smtpd_rate_give(). The client the limits see is the one the chain
 * sees (PROXY or XFORWARD). */
static int
smtpd_rate_refuses(struct smtpd_session *s)
{
    char sdom[SMTPD_RATE_TEXT], stream[SMTPD_RATE_TEXT];
    char client[SMTPD_CLIENT_MAX];
    size_t over = 0, n = 0;
    struct ratelimit_event ev;
    const char *reply;
    int rc = -1;

    if (s->rt->limits == NULL)
        return 0;
    smtpd_rate_event(s, s->stream, &ev, sdom, stream);
    free(s->rl_idx);
    free(s->rl_amount);
    s->rl_n = 0;
    s->rl_idx = calloc(s->rt->limits->n, sizeof(*s->rl_idx));
    s->rl_amount = calloc(s->rt->limits->n, sizeof(*s->rl_amount));
    if (s->rl_idx == NULL || s->rl_amount == NULL)
        err_nomem(&s->e);
    else if (ratelimit_message(s->rt->limits, &ev, smtpd_rate_rcpt, s,
                               s->nrcpts, s->rl_idx, s->rl_amount, &n,
                               &s->e) == 0)
        rc = ratestate_take(s->rt->state, s->rt->limits, s->rl_idx,
                            s->rl_amount, n, &over, &s->e);
    if (rc == RATESTATE_TAKEN) {
        s->rl_n = n;
        return 0;
    }
    if (rc == RATESTATE_OVER) {
        const struct ratelimit_rule *r = &s->rt->limits->rules[over];

        reply = "452 4.7.1 Error: rate limit reached, try again later";
        log_info(s->qid,
                 "reject: END-OF-MESSAGE from %s: %s; rate_limit=%s (%lld "
                 "per %llds %s); from=<%s> to=<%s>%s",
                 smtpd_client(s, client, sizeof(client)), reply, r->id,
                 r->count, r->period_ms / 1000,
                 r->unit == RATELIMIT_MESSAGES ? "messages" : "recipients",
                 s->sender, s->rcpts[0].addr,
                 s->nrcpts > 1 ? " and others" : "");
    } else if (rc == RATESTATE_UNAVAILABLE) {
        reply = "451 4.3.0 Error: rate limit state unavailable, try again "
                "later";
        log_info(s->qid,
                 "reject: END-OF-MESSAGE from %s: %s; state_on_error=tempfail",
                 smtpd_client(s, client, sizeof(client)), reply);
    } else {
        reply = "451 4.3.0 Error: out of memory";
        log_warning(s->qid, "rate limits: %s", s->e.text);
    }
    smtpd_reply_id(s, reply);
    return 1;
}

/* smtpd_rate_give - the message counted by smtpd_rate_refuses() was not
 * taken after all (the chain refused or tempfailed it, the queue could
 * not keep it, no recipient was left): give its count back, so that a
 * client retrying through a stalled scanner does not use up its limit.
 * A store that does not answer keeps the count (logged). */
static void
smtpd_rate_give(struct smtpd_session *s)
{
    if (s->rl_n == 0)
        return;
    if (ratestate_give(s->rt->state, s->rt->limits, s->rl_idx, s->rl_amount,
                       s->rl_n, &s->e) < 0)
        log_warning(s->qid, "rate limits: the count of a refused message "
                            "stays: the state store did not answer");
    s->rl_n = 0;
}

/* ---- end fleet */

/* ---- verp: smtpd_inbound - a bounce or complaint for the relay
 * itself: read and discarded, 250 once its events are on disk. */
static void
smtpd_inbound(struct smtpd_session *s, const struct buf *data)
{
    struct events *ev = queue_events(s->srv->queue);
    const char **rcpts = calloc(s->nrcpts + 1, sizeof(*rcpts));
    char client[SMTPD_CLIENT_MAX];
    struct err e;
    size_t i;

    err_clear(&e);
    if (rcpts == NULL || ev == NULL) {
        free(rcpts);
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        return;
    }
    for (i = 0; i < s->nrcpts; i++)
        rcpts[i] = s->rcpts[i].addr;
    /* the client as the chain sees it: PROXY's, or XFORWARD's when the
     * Postfix in front (xforward_hosts) passed it on; fbl_clients is
     * matched against its address */
    snprintf(client, sizeof(client), "%s[%s]", smtpd_env_name(s),
             smtpd_env_addr(s));
    if (events_inbound(ev, s->qid, client, smtpd_env_addr(s), rcpts, s->nrcpts,
                       data->data ? data->data : "", data->len, &e) < 0) {
        log_warning(s->qid, "from %s: bounce not recorded: %s; 451 4.3.0",
                    client, e.text);
        smtpd_reply(s, "451 4.3.0 Error: cannot record it now, try again "
                       "later");
    } else {
        log_info(s->qid, "from=<%s>, size=%zu, nrcpt=%zu (read, not relayed)",
                 s->sender, data->len, s->nrcpts);
        smtpd_reply(s, "250 2.0.0 Ok: %s", s->qid);
    }
    free(rcpts);
}
/* ---- end verp */

void
smtpd_cmd_data(struct smtpd_session *s, const char *arg)
{
    const char *reject = NULL;
    char client[SMTPD_CLIENT_MAX];
    unsigned flags;
    struct buf data;
    int rc;

    if (arg != NULL) {
        smtpd_refuse(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (!s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: need RCPT command");
        return;
    }
    /* ---- events: with on_suppressed = drop, a message whose every
     * recipient was dropped is taken and discarded */
    if (s->nrcpts == 0 && s->n_dropped == 0) {
        smtpd_refuse(s, "554 5.5.1 Error: no valid recipients");
        return;
    }
    /* DATA is refused here, not after the client sent it all, when the
     * SIZE it announced does not fit in what is left. Only what arrives
     * is counted (from a first step on): counting a promise would let
     * clients that send nothing hold the memory. */
    if ((s->srv->mem != NULL &&
         !memlimit_fits(s->srv->mem, smtpd_data_size(s), s->mem_held,
                        s->rt->memory_limit)) ||
        smtpd_mem_take(s, SMTPD_MEM_STEP) < 0) {
        reject = "452 4.3.1 Insufficient system resources";
        smtpd_noqueue_reject(s, "DATA", reject, NULL);
        smtpd_reply(s, "%s", reject);
        return;
    }
    smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    if (smtpd_flush(s) < 0) {
        smtpd_mem_give(s);
        s->quit = 1;
        return;
    }
    s->n_data++;
    /* The buffer's own bound is a little over the limit: wrapping adds
     * line ends, and an oversize message is noticed by counting. */
    buf_init(&data, s->rt->size_limit + s->rt->size_limit / 32 + 4096);
    if ((rc = smtpd_read_data(s, &data, &flags)) != 0) {
        /* As Postfix: a client that stalls in DATA is told why. */
        if (rc == NETIO_TIMEOUT)
            smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
                        s->rt->hostname);
        log_info(s->qid, "%s after DATA from %s[%s]",
                 rc == NETIO_TIMEOUT ? "timeout" : "lost connection", s->name,
                 s->addr);
        buf_fini(&data);
        smtpd_mem_give(s);
        smtpd_reset(s, 0);
        s->quit = 1;
        return;
    }
    if (flags & DATA_TOO_BIG)
        reject = "552 5.3.4 Message size exceeds fixed limit";
    else if (flags & DATA_NUL)
        reject = "550 5.6.0 Message content rejected: NUL character in data";
    else if ((flags & DATA_BARE_LF) && !s->rt->normalize_newlines)
        reject = "550 5.5.2 Message content rejected: bare LF in data "
                 "(only CRLF ends a line)";
    else if ((flags & DATA_BARE_CR) && !s->rt->normalize_newlines)
        reject = "550 5.5.2 Message content rejected: bare CR in data "
                 "(only CRLF ends a line)";
    else if (flags & DATA_HUGE_LINE)
        reject = "550 5.6.0 Message content rejected: line longer than 998 "
                 "octets";
    else if (flags & DATA_NO_MEMORY)
        reject = "452 4.3.1 Insufficient system resources";
    if (reject != NULL) {
        log_info(s->qid, "reject: END-OF-MESSAGE from %s: %s; from=<%s>",
                 smtpd_client(s, client, sizeof(client)), reject, s->sender);
        smtpd_reply_id(s, reject);
    } else if (s->nrcpts == 0) {
        /* ---- events: every recipient suppressed and dropped */
        log_info(s->qid, "discarded: every recipient suppressed; from=<%s>",
                 s->sender);
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
    } else if (s->inbound) { /* ---- verp: read, not relayed */
        smtpd_inbound(s, &data);
    } else {
        smtpd_stream_take(s, &data); /* ---- events */
        if (smtpd_rate_refuses(s)) { /* ---- fleet */
            ;
        } else if (smtpd_stream_suppressed(s, &data)) {
            smtpd_rate_give(s); /* nothing relayed */
        } else {
            smtpd_deliver(s, &data);
            if (s->last_code / 100 != 2)
                smtpd_rate_give(s); /* ---- fleet */
        }
    }
    buf_fini(&data);
    smtpd_mem_give(s);
    smtpd_reset(s, 1);
}
