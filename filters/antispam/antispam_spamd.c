/*
 * antispam_spamd - the antispam stage's SpamAssassin engine (spamd)
 *
 * One connection per message to spamd (TCP "host:port", "[v6]:port", or
 * "unix:/path"), in spamc's protocol:
 *
 *     SYMBOLS SPAMC/1.5            the score and the names of the rules
 *     Content-length: N            that hit, without the message back
 *     User: relaychain
 *
 *     Received: ...                one field of our own, so that
 *     <the message>                SpamAssassin sees the client, its HELO
 *                                  and whether it authenticated
 *
 * and spamd answers "SPAMD/1.1 0 EX_OK", a "Spam: True ; 14.1 / 5.0"
 * header, an empty line and the rule names, then closes. The address is
 * resolved once at create(); connect, send and the whole answer share one
 * deadline of timeout_ms. The engine is read-only after create(), so any
 * number of threads may check at once. Every failure (connect refused,
 * out of time, an answer cut short or not spamd's) is -1 with e set: the
 * stage never takes it for a low score. flt_as_spamd_parse, the reading
 * of the answer, is fuzzed (tests/fuzz/fuzz_antispam_spamd.c).
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "filters/antispam/antispam_int.h"
#include "util/fdio.h"
#include "util/buf.h"

#define FLT_AS_SPAMD_REPLY_MAX (64 * 1024) /* octets of an answer read */
#define FLT_AS_SPAMD_HEAD_MAX 2048         /* our request header */

struct flt_as_spamd {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *spec; /* "127.0.0.1:783", for errors */
    int timeout_ms;
};

/* flt_as_spamd_addr - server ("host:port", "[v6]:port", "unix:/path")
 * into s->addr. */
static int
flt_as_spamd_addr(struct flt_as_spamd *s, const char *spec, struct err *e)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[8];
    const char *p, *colon;
    char *end;
    long n;
    int rc;

    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&s->addr;

        p = spec + 5;
        if (p[0] != '/' || strlen(p) >= sizeof(sun->sun_path))
            return err_set(e, ERR_CONFIG,
                           "'%s': want an absolute socket path of at most "
                           "%zu octets",
                           spec, sizeof(sun->sun_path) - 1);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, p, strlen(p) + 1);
        s->addrlen = sizeof(*sun);
        return 0;
    }
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');

        if (close == NULL || close[1] != ':' ||
            (size_t)(close - spec - 1) >= sizeof(host))
            return err_set(e, ERR_CONFIG, "'%s': want [ADDRESS]:PORT", spec);
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || colon == spec ||
            (size_t)(colon - spec) >= sizeof(host) ||
            memchr(spec, ':', (size_t)(colon - spec)) != NULL)
            return err_set(e, ERR_CONFIG,
                           "'%s': want HOST:PORT, [ADDRESS]:PORT or "
                           "unix:/PATH",
                           spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    errno = 0;
    n = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
        n < 1 || n > 65535)
        return err_set(e, ERR_CONFIG, "'%s': bad port (want 1 to 65535)",
                       spec);
    snprintf(port, sizeof(port), "%ld", n);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
        return err_set(e, ERR_CONFIG, "'%s': %s", spec, gai_strerror(rc));
    if (res->ai_addrlen > sizeof(s->addr)) {
        freeaddrinfo(res);
        return err_set(e, ERR_CONFIG, "'%s': address too long", spec);
    }
    memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
    s->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void
flt_as_spamd_destroy(void *eng)
{
    struct flt_as_spamd *s = eng;

    if (s == NULL)
        return;
    free(s->spec);
    free(s);
}

static void *
flt_as_spamd_create(const char *server, int timeout_ms, struct err *e)
{
    struct flt_as_spamd *s;

    if ((s = calloc(1, sizeof(*s))) == NULL ||
        (s->spec = strdup(server)) == NULL) {
        free(s);
        err_nomem(e);
        return NULL;
    }
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    if (flt_as_spamd_addr(s, server, e) < 0) {
        flt_as_spamd_destroy(s);
        return NULL;
    }
    return s;
}

static int
flt_as_spamd_send(const struct flt_as_spamd *s, int fd, const char *p,
                  size_t n, long long deadline, struct err *e)
{
    ssize_t k;
    int ev;

    while (n > 0) {
        ev = fdio_wait(fd, POLLOUT, deadline);
        if (ev == 0)
            return err_set(e, ERR_TEMP, "spamd %s: timed out sending",
                           s->spec);
        if (ev < 0)
            return err_sys(e, ERR_IO, "spamd %s: poll", s->spec);
        k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k < 0)
            return err_sys(e, ERR_IO, "spamd %s: send", s->spec);
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* flt_as_spamd_clean - v as a Received comment may hold it: printable
 * ASCII without parentheses or backslashes, at most n - 1 octets. */
static const char *
flt_as_spamd_clean(const char *v, char *out, size_t n)
{
    size_t i, o = 0;

    for (i = 0; v != NULL && v[i] != '\0' && o + 1 < n; i++) {
        unsigned char c = (unsigned char)v[i];

        out[o++] = (c > 0x20 && c < 0x7f && c != '(' && c != ')' &&
                    c != '\\' && c != '[' && c != ']')
                       ? (char)c
                       : '_';
    }
    out[o] = '\0';
    return out;
}

/* flt_as_spamd_request - the request header and our Received field. */
static int
flt_as_spamd_request(const struct flt_as_query *q, struct buf *b,
                     struct err *e)
{
    char helo[256], name[256], addr[64], qid[128], date[64];
    struct tm tm;
    time_t now = time(NULL);
    size_t hlen;
    char rcv[FLT_AS_SPAMD_HEAD_MAX];
    int n;

    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    /* SpamAssassin reads the client from the Received field at the top;
     * ESMTPA says the client authenticated, as Postfix writes it. */
    n = snprintf(
        rcv, sizeof(rcv),
        "Received: from %s (%s [%s])\r\n\tby relaychain with "
        "%s%s%s;\r\n\t%s\r\n",
        flt_as_spamd_clean(q->helo ? q->helo : "unknown", helo, sizeof(helo)),
        flt_as_spamd_clean(q->client_name ? q->client_name : "unknown", name,
                           sizeof(name)),
        flt_as_spamd_clean(q->client_addr ? q->client_addr : "127.0.0.1", addr,
                           sizeof(addr)),
        q->auth_user ? "ESMTPA" : "ESMTP", q->qid ? " id " : "",
        q->qid ? flt_as_spamd_clean(q->qid, qid, sizeof(qid)) : "", date);
    if (n < 0 || (size_t)n >= sizeof(rcv))
        return err_set(e, ERR_INTERNAL, "spamd: Received field too long");
    hlen = (size_t)n;
    if (buf_printf(b, e,
                   "SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\n"
                   "User: relaychain\r\n\r\n%s",
                   hlen + q->len, rcv) < 0)
        return -1;
    return 0;
}

/* flt_as_spamd_head - the value of header name in the head (the octets
 * before the empty line), NUL-terminated into out; 1 when found. */
static int
flt_as_spamd_head(const char *head, size_t n, const char *name, char *out,
                  size_t size)
{
    size_t nl = strlen(name), i = 0, end, k;

    while (i < n) {
        end = i;
        while (end < n && head[end] != '\n')
            end++;
        if (end - i > nl && strncasecmp(head + i, name, nl) == 0 &&
            head[i + nl] == ':') {
            k = end;
            if (k > i && head[k - 1] == '\r')
                k--;
            i += nl + 1;
            while (i < k && (head[i] == ' ' || head[i] == '\t'))
                i++;
            if (k - i >= size)
                return 0;
            memcpy(out, head + i, k - i);
            out[k - i] = '\0';
            return 1;
        }
        i = end + 1;
    }
    return 0;
}

/* flt_as_spamd_number - a finite number that fills s (white space
 * around it allowed). */
static int
flt_as_spamd_number(const char *s, double *out)
{
    char *end;
    size_t i;

    while (*s == ' ' || *s == '\t')
        s++;
    /* strtod reads "inf", "nan" and hex; spamd writes none of them. */
    for (i = 0; s[i] != '\0' && s[i] != ' ' && s[i] != '\t'; i++)
        if ((s[i] < '0' || s[i] > '9') && s[i] != '.' && s[i] != '-' &&
            s[i] != '+')
            return -1;
    if (i == 0)
        return -1;
    errno = 0;
    *out = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(*out))
        return -1;
    while (*end == ' ' || *end == '\t')
        end++;
    return *end == '\0' ? 0 : -1;
}

/* flt_as_spamd_symbols - the rule names of body (n octets) into out:
 * names of printable ASCII without white space, joined by commas, cut
 * at a comma to fit size. */
static void
flt_as_spamd_symbols(const char *body, size_t n, char *out, size_t size)
{
    size_t i = 0, o = 0, start, len;

    out[0] = '\0';
    while (i < n) {
        while (i < n && (body[i] == ',' || body[i] == ' ' || body[i] == '\t' ||
                         body[i] == '\r' || body[i] == '\n'))
            i++;
        start = i;
        while (i < n && body[i] != ',' && body[i] != ' ' && body[i] != '\t' &&
               body[i] != '\r' && body[i] != '\n')
            i++;
        len = i - start;
        if (len == 0)
            continue;
        {
            size_t k, ok = 1;

            for (k = start; k < i; k++)
                if ((unsigned char)body[k] < 0x21 ||
                    (unsigned char)body[k] > 0x7e)
                    ok = 0;
            if (!ok)
                continue;
        }
        if (o + (o > 0) + len + 1 > size)
            break;
        if (o > 0)
            out[o++] = ',';
        memcpy(out + o, body + start, len);
        o += len;
        out[o] = '\0';
    }
}

int
flt_as_spamd_parse(const char *reply, size_t len, struct flt_as_answer *a,
                   struct err *e)
{
    char line[128], val[128], *semi, *slash;
    const char *eol, *body, *p;
    size_t head_len, body_len, llen;
    long code, clen = -1;
    char *end;

    memset(a, 0, sizeof(*a));
    if (len == 0)
        return err_set(e, ERR_TEMP,
                       "spamd closed the connection without an answer");
    if ((eol = memchr(reply, '\n', len)) == NULL)
        return err_set(e, ERR_TEMP, "spamd: answer cut short");
    llen = (size_t)(eol - reply);
    if (llen > 0 && reply[llen - 1] == '\r')
        llen--;
    if (llen >= sizeof(line) || memchr(reply, '\0', llen) != NULL)
        return err_set(e, ERR_TEMP, "spamd: not a spamd answer");
    memcpy(line, reply, llen);
    line[llen] = '\0';
    for (p = line; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return err_set(e, ERR_TEMP, "spamd: not a spamd answer");
    if (strncmp(line, "SPAMD/", 6) != 0 || (p = strchr(line, ' ')) == NULL)
        return err_set(e, ERR_TEMP, "spamd: not a spamd answer: \"%.60s\"",
                       line);
    errno = 0;
    code = strtol(p + 1, &end, 10);
    if (end == p + 1 || errno != 0 || (*end != ' ' && *end != '\0'))
        return err_set(e, ERR_TEMP, "spamd: not a spamd answer: \"%.60s\"",
                       line);
    if (code != 0)
        return err_set(e, ERR_TEMP, "spamd: %.100s", line);

    /* The head ends at the empty line. */
    p = eol + 1;
    body = NULL;
    while ((size_t)(p - reply) < len) {
        const char *nl = memchr(p, '\n', len - (size_t)(p - reply));

        if (nl == NULL)
            break;
        if (nl == p || (nl == p + 1 && p[0] == '\r')) {
            body = nl + 1;
            break;
        }
        p = nl + 1;
    }
    if (body == NULL)
        return err_set(e, ERR_TEMP, "spamd: answer cut short");
    head_len = (size_t)(body - (eol + 1));
    body_len = len - (size_t)(body - reply);
    if (memchr(eol + 1, '\0', head_len) != NULL)
        return err_set(e, ERR_TEMP, "spamd: NUL in the answer's header");

    if (!flt_as_spamd_head(eol + 1, head_len, "Spam", val, sizeof(val)))
        return err_set(e, ERR_TEMP, "spamd: answer without a Spam header");
    /* "True ; 14.1 / 5.0" (or Yes/No from older spamd) */
    if ((semi = strchr(val, ';')) == NULL ||
        (slash = strchr(semi, '/')) == NULL)
        return err_set(e, ERR_TEMP, "spamd: bad Spam header \"%.60s\"", val);
    *slash = '\0';
    if (flt_as_spamd_number(semi + 1, &a->score) < 0 ||
        flt_as_spamd_number(slash + 1, &a->required) < 0)
        return err_set(e, ERR_TEMP, "spamd: bad score in the Spam header");

    if (flt_as_spamd_head(eol + 1, head_len, "Content-length", val,
                          sizeof(val))) {
        errno = 0;
        clen = strtol(val, &end, 10);
        if (end == val || *end != '\0' || errno != 0 || clen < 0)
            return err_set(e, ERR_TEMP, "spamd: bad Content-length");
        if ((size_t)clen > body_len)
            return err_set(e, ERR_TEMP,
                           "spamd: answer cut short (%zu of %ld octets)",
                           body_len, clen);
        body_len = (size_t)clen;
    }
    flt_as_spamd_symbols(body, body_len, a->symbols, sizeof(a->symbols));
    return 0;
}

static int
flt_as_spamd_check(void *eng, const struct flt_as_query *q,
                   struct flt_as_answer *a, struct err *e)
{
    const struct flt_as_spamd *s = eng;
    long long deadline = fdio_now_ms() + s->timeout_ms;
    struct buf req;
    char *reply = NULL;
    size_t got = 0;
    int fd = -1, ev, soerr = 0, rc = -1;
    socklen_t sl = sizeof(soerr);
    ssize_t k;

    buf_init(&req, 0);
    if (flt_as_spamd_request(q, &req, e) < 0)
        goto done;
    if ((reply = malloc(FLT_AS_SPAMD_REPLY_MAX + 1)) == NULL) {
        err_nomem(e);
        goto done;
    }
    fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                0);
    if (fd < 0) {
        err_sys(e, ERR_IO, "spamd %s: socket", s->spec);
        goto done;
    }
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            err_sys(e, ERR_IO, "spamd %s: connect", s->spec);
            goto done;
        }
        ev = fdio_wait(fd, POLLOUT, deadline);
        if (ev == 0) {
            err_set(e, ERR_TEMP, "spamd %s: connect timed out", s->spec);
            goto done;
        }
        if (ev < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ||
            soerr != 0) {
            if (soerr != 0)
                errno = soerr;
            err_sys(e, ERR_IO, "spamd %s: connect", s->spec);
            goto done;
        }
    }
    if (flt_as_spamd_send(s, fd, req.data, req.len, deadline, e) < 0 ||
        flt_as_spamd_send(s, fd, q->data, q->len, deadline, e) < 0)
        goto done;
    /* spamd answers once it has Content-length octets; it closes after
     * the answer, which ends it. */
    shutdown(fd, SHUT_WR);
    for (;;) {
        ev = fdio_wait(fd, POLLIN, deadline);
        if (ev == 0) {
            err_set(e, ERR_TEMP, "spamd %s: no answer within %d ms", s->spec,
                    s->timeout_ms);
            goto done;
        }
        if (ev < 0) {
            err_sys(e, ERR_IO, "spamd %s: poll", s->spec);
            goto done;
        }
        if (got == FLT_AS_SPAMD_REPLY_MAX) {
            err_set(e, ERR_TEMP, "spamd %s: answer over %d octets", s->spec,
                    FLT_AS_SPAMD_REPLY_MAX);
            goto done;
        }
        k = recv(fd, reply + got, FLT_AS_SPAMD_REPLY_MAX - got, 0);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k < 0) {
            err_sys(e, ERR_IO, "spamd %s: recv", s->spec);
            goto done;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    if (flt_as_spamd_parse(reply, got, a, e) < 0) {
        err_prefix(e, "%s", s->spec);
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    free(reply);
    buf_fini(&req);
    return rc;
}

const struct flt_as_engine_ops flt_as_spamd_ops = {
    .name = "spamd",
    .create = flt_as_spamd_create,
    .check = flt_as_spamd_check,
    .destroy = flt_as_spamd_destroy,
};
