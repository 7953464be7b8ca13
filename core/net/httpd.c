/*
 * httpd - relaychaind's HTTP listener: routes over libmicrohttpd
 *
 * See httpd.h for the calls. How a request goes: libmicrohttpd reads the
 * request line and header fields within its memory limit and calls
 * httpd_uri_cb with the raw target, before it decodes anything; that
 * call makes the request's state (struct httpd_rq), so the handler sees
 * the path as sent. httpd_access is then called once with the header
 * fields, once per piece of a POST body and once at its end: the route
 * is found on the first call (404 and 405 are answered at once, the body
 * never read), the body gathered up to body_limit (413 past it), and the
 * handler called on the last. httpd_done logs the access line and frees
 * the state, whether the response went out or the connection broke.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/httpd.h"
#include "util/log.h"
#include "util/metrics.h"

#define HTTPD_TLS_FILE_MAX (256 * 1024)
#define HTTPD_RESP_LIMIT (16 * 1024 * 1024)

struct httpd_route_ent {
    char prefix[HTTPD_PREFIX_MAX];
    size_t len;
    int tree; /* prefix ends in '/' */
    unsigned mask;
    http_handler_fn fn;
    void *arg;
};

struct httpd {
    struct httpd_settings set;
    struct httpd_route_ent route[HTTPD_ROUTE_MAX];
    size_t nroute;
    int fd[HTTPD_LISTEN_MAX];
    struct MHD_Daemon *mhd[HTTPD_LISTEN_MAX];
    size_t nfd;
    char *cert, *key; /* PEM in memory, NUL-terminated */
    httpd_auth_fn auth;
    void *auth_arg;
    int started;
};

/* One request, from its target to the access line. */
struct httpd_rq {
    struct timespec t0;
    char path[HTTPD_PATH_MAX];
    char query[HTTPD_PATH_MAX];
    int bad_target;
    int route; /* index, or -1 before the first call */
    int status;
    size_t sent;
    char *body;
    size_t body_len;
    int too_big;
    char method[16];
    char user[HTTPD_CRED_MAX + 1]; /* authenticated, "" when none */
};

/* ------------------------------------------------------------ pure parts */

int
httpd_split_uri(const char *uri, char *path, char *query, size_t n)
{
    const char *q = strchr(uri, '?');
    size_t plen = q != NULL ? (size_t)(q - uri) : strlen(uri);

    path[0] = query[0] = '\0';
    if (uri[0] != '/' || plen >= n)
        return -1;
    memcpy(path, uri, plen);
    path[plen] = '\0';
    if (q != NULL) {
        if (strlen(q + 1) >= n)
            return -1;
        memcpy(query, q + 1, strlen(q + 1) + 1);
    }
    return 0;
}

/* httpd_method_bit - the mask bit of method, 0 for one no route takes. */
static unsigned
httpd_method_bit(const char *method)
{
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return HTTPD_GET;
    if (strcmp(method, "POST") == 0)
        return HTTPD_POST;
    return 0;
}

int
httpd_match(const struct httpd *h, const char *path, const char *method,
            char *allow, size_t n)
{
    const struct httpd_route_ent *best = NULL;
    size_t i;

    if (n > 0)
        allow[0] = '\0';
    for (i = 0; i < h->nroute; i++) {
        const struct httpd_route_ent *r = &h->route[i];

        if (r->tree ? strncmp(path, r->prefix, r->len) != 0
                    : strcmp(path, r->prefix) != 0)
            continue;
        if (best == NULL || r->len > best->len)
            best = r;
    }
    if (best == NULL)
        return -404;
    if ((best->mask & httpd_method_bit(method)) == 0) {
        snprintf(allow, n, "%s%s%s", best->mask & HTTPD_GET ? "GET, HEAD" : "",
                 (best->mask & HTTPD_GET) && (best->mask & HTTPD_POST) ? ", "
                                                                       : "",
                 best->mask & HTTPD_POST ? "POST" : "");
        return -405;
    }
    return (int)(best - h->route);
}

/* httpd_b64 - decode standard base64 (padding required when the length
 * is not a multiple of 4) into out (at most n octets); its length or -1. */
static int
httpd_b64(const char *in, size_t len, unsigned char *out, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned acc = 0;
    size_t i, o = 0, pad = 0;
    int bits = 0;

    if (len == 0 || len % 4 != 0)
        return -1;
    for (i = 0; i < len; i++) {
        const char *p;

        if (in[i] == '=') {
            /* only at the end, at most two */
            if (i < len - 2 || ++pad > 2)
                return -1;
            continue;
        }
        if (pad > 0 || in[i] == '\0' || (p = strchr(tab, in[i])) == NULL)
            return -1;
        acc = (acc << 6) | (unsigned)(p - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= n)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (int)o;
}

int
httpd_auth_parse(const char *value, char *user, char *pass, char *token)
{
    unsigned char dec[2 * HTTPD_CRED_MAX + 2];
    const char *p, *colon;
    size_t len;
    int n;

    user[0] = pass[0] = token[0] = '\0';
    if (strncasecmp(value, "Basic ", 6) == 0) {
        for (p = value + 6; *p == ' '; p++)
            ;
        len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len > 4 * ((sizeof(dec) + 2) / 3) ||
            (n = httpd_b64(p, len, dec, sizeof(dec))) < 0)
            return -1;
        if (memchr(dec, '\0', (size_t)n) != NULL ||
            (colon = memchr(dec, ':', (size_t)n)) == NULL)
            return -1;
        len = (size_t)(colon - (const char *)dec);
        if (len == 0 || len > HTTPD_CRED_MAX ||
            (size_t)n - len - 1 > HTTPD_CRED_MAX)
            return -1;
        memcpy(user, dec, len);
        user[len] = '\0';
        memcpy(pass, colon + 1, (size_t)n - len - 1);
        pass[(size_t)n - len - 1] = '\0';
        explicit_bzero(dec, sizeof(dec));
        return 1;
    }
    if (strncasecmp(value, "Bearer ", 7) == 0) {
        for (p = value + 7; *p == ' '; p++)
            ;
        len = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789-._~+/");
        len += strspn(p + len, "=");
        if (len == 0 || len > HTTPD_CRED_MAX || p[strspn(p + len, " ") + len])
            return -1;
        memcpy(token, p, len);
        token[len] = '\0';
        return 2;
    }
    return -1;
}

void
httpd_log_text(const char *s, char *out, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return;
    for (; *s != '\0' && o + 1 < n; s++)
        out[o++] = (*s > ' ' && *s < 0x7f) ? *s : '?';
    out[o] = '\0';
}

/* ------------------------------------------------------------ settings */

static char *
httpd_read_pem(const char *path, struct err *e)
{
    struct stat st;
    char *p;
    size_t got = 0;
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_CONFIG, "%s", path), NULL;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 ||
        st.st_size > HTTPD_TLS_FILE_MAX) {
        close(fd);
        return err_set(e, ERR_CONFIG, "%s: empty or over %d octets", path,
                       HTTPD_TLS_FILE_MAX),
               NULL;
    }
    if ((p = malloc((size_t)st.st_size + 1)) == NULL) {
        close(fd);
        return err_nomem(e), NULL;
    }
    while (got < (size_t)st.st_size &&
           ((n = read(fd, p + got, (size_t)st.st_size - got)) > 0 ||
            (n < 0 && errno == EINTR)))
        got += n > 0 ? (size_t)n : 0;
    close(fd);
    p[got] = '\0';
    if (got != (size_t)st.st_size || strlen(p) != got) {
        free(p);
        return err_set(e, ERR_CONFIG, "%s: not a PEM text file", path), NULL;
    }
    return p;
}

struct httpd *
httpd_new(const struct httpd_settings *s, struct err *e)
{
    struct httpd *h;

    if ((h = calloc(1, sizeof(*h))) == NULL)
        return err_nomem(e), NULL;
    h->set = *s;
    if (h->set.threads == 0)
        h->set.threads = 1;
    if (s->tls_cert_file != NULL) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            err_set(e, ERR_CONFIG,
                    "http_tls_cert_file: this libmicrohttpd has no TLS");
            goto fail;
        }
        if ((h->cert = httpd_read_pem(s->tls_cert_file, e)) == NULL ||
            (h->key = httpd_read_pem(s->tls_key_file, e)) == NULL)
            goto fail;
    }
    return h;
fail:
    httpd_free(h);
    return NULL;
}

int
httpd_route_methods(struct httpd *h, const char *prefix, unsigned mask,
                    http_handler_fn fn, void *arg, struct err *e)
{
    struct httpd_route_ent *r;
    size_t i, len = strlen(prefix);

    if (h->started)
        return err_set(e, ERR_INTERNAL, "http: route %s after the start",
                       prefix);
    if (prefix[0] != '/' || len >= HTTPD_PREFIX_MAX)
        return err_set(e, ERR_INTERNAL, "http: bad route prefix '%.64s'",
                       prefix);
    if (h->nroute >= HTTPD_ROUTE_MAX)
        return err_set(e, ERR_INTERNAL, "http: at most %d routes",
                       HTTPD_ROUTE_MAX);
    for (i = 0; i < h->nroute; i++)
        if (strcmp(h->route[i].prefix, prefix) == 0)
            return err_set(e, ERR_INTERNAL, "http: %s registered twice",
                           prefix);
    r = &h->route[h->nroute++];
    memcpy(r->prefix, prefix, len + 1);
    r->len = len;
    r->tree = prefix[len - 1] == '/';
    r->mask = mask;
    r->fn = fn;
    r->arg = arg;
    return 0;
}

int
httpd_route(struct httpd *h, const char *prefix, http_handler_fn fn, void *arg,
            struct err *e)
{
    return httpd_route_methods(h, prefix, HTTPD_GET | HTTPD_POST, fn, arg, e);
}

void
httpd_set_auth(struct httpd *h, httpd_auth_fn fn, void *arg)
{
    h->auth = fn;
    h->auth_arg = arg;
}

int
httpd_add_socket(struct httpd *h, int fd, struct err *e)
{
    if (h->nfd >= HTTPD_LISTEN_MAX) {
        close(fd);
        return err_set(e, ERR_CONFIG, "http_listen: at most %d addresses",
                       HTTPD_LISTEN_MAX);
    }
    h->fd[h->nfd] = fd;
    h->mhd[h->nfd] = NULL;
    h->nfd++;
    return 0;
}

/* ------------------------------------------------------------- serving */

/* libmicrohttpd's own messages, as warnings in the log. */
static void httpd_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
httpd_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char text[512];

    (void)cls;
    vsnprintf(text, sizeof(text), fmt, ap);
    text[strcspn(text, "\r\n")] = '\0';
    log_warning(NULL, "http: %s", text);
}

static void *
httpd_uri_cb(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct httpd_rq *rq;

    (void)cls;
    (void)c;
    if ((rq = calloc(1, sizeof(*rq))) == NULL)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &rq->t0);
    rq->route = -1;
    rq->bad_target =
        httpd_split_uri(uri, rq->path, rq->query, sizeof(rq->path)) < 0;
    if (rq->bad_target)
        httpd_log_text(uri, rq->path, 128);
    return rq;
}

/* httpd_queue - send status with body (taken over, may be NULL). */
static enum MHD_Result
httpd_queue(struct MHD_Connection *c, struct httpd_rq *rq, int status,
            const char *ctype, char *body, size_t len, const char *location,
            const char *allow, int no_store)
{
    struct MHD_Response *resp;
    enum MHD_Result rc;

    resp = MHD_create_response_from_buffer(
        len, body != NULL ? body : "",
        body != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    if (ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (location != NULL && location[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    if (allow != NULL && allow[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (no_store)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-store");
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Basic realm=\"relaychain\", "
                                "charset=\"UTF-8\"");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    rq->status = status;
    rq->sent = len;
    rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* httpd_plain - a short text answer of the listener's own. */
static enum MHD_Result
httpd_plain(struct MHD_Connection *c, struct httpd_rq *rq, int status,
            const char *text, const char *allow)
{
    char *body = strdup(text);

    if (body == NULL)
        return MHD_NO;
    return httpd_queue(c, rq, status, "text/plain; charset=utf-8", body,
                       strlen(body), NULL, allow, 1);
}

static const char *
httpd_client(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    socklen_t len = 0;

    snprintf(out, n, "unknown");
    if (sa == NULL)
        return out;
    len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                    : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, len, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, n, "unknown");
    return out;
}

static enum MHD_Result
httpd_call(struct httpd *h, struct MHD_Connection *c, struct httpd_rq *rq)
{
    const struct httpd_route_ent *r = &h->route[rq->route];
    struct http_req req;
    struct http_resp resp;
    char client[NI_MAXHOST];
    const char *ua;
    char *body;
    size_t len;

    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    req.method = rq->method;
    req.path = rq->path;
    req.query = rq->query;
    req.client = httpd_client(c, client, sizeof(client));
    ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                     MHD_HTTP_HEADER_USER_AGENT);
    req.user_agent = ua != NULL ? ua : "";
    req.auth_user = rq->user[0] != '\0' ? rq->user : NULL;
    req.body = rq->body != NULL ? rq->body : "";
    req.body_len = rq->body_len;
    resp.status = 200;
    buf_init(&resp.body, HTTPD_RESP_LIMIT);
    r->fn(r->arg, &req, &resp);
    if (resp.status < 100 || resp.status > 599)
        resp.status = 500;
    resp.location[sizeof(resp.location) - 1] = '\0';
    /* A Location with a line end would split the response. */
    if (strpbrk(resp.location, "\r\n") != NULL) {
        buf_fini(&resp.body);
        return httpd_plain(c, rq, 500, "internal error\n", NULL);
    }
    body = buf_steal(&resp.body, &len);
    buf_fini(&resp.body);
    if (body == NULL)
        return httpd_plain(c, rq, 503, "out of memory\n", NULL);
    return httpd_queue(c, rq, resp.status, resp.content_type, body, len,
                       resp.location, NULL, resp.no_store);
}

/* httpd_authorized - 1 when the request's Authorization passes the
 * listener's check; the user is kept for the handler. */
static int
httpd_authorized(struct httpd *h, struct MHD_Connection *c,
                 struct httpd_rq *rq)
{
    char user[HTTPD_CRED_MAX + 1], pass[HTTPD_CRED_MAX + 1],
        token[HTTPD_CRED_MAX + 1], client[NI_MAXHOST];
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    int kind, ok = 0;

    if (v == NULL || h->auth == NULL ||
        (kind = httpd_auth_parse(v, user, pass, token)) < 0)
        return 0;
    httpd_client(c, client, sizeof(client));
    if (kind == 1)
        ok = h->auth(h->auth_arg, client, user, pass, NULL);
    else
        ok = h->auth(h->auth_arg, client, NULL, NULL, token);
    if (ok)
        snprintf(rq->user, sizeof(rq->user), "%s", kind == 1 ? user : "token");
    explicit_bzero(pass, sizeof(pass));
    explicit_bzero(token, sizeof(token));
    return ok;
}

static enum MHD_Result
httpd_access(void *cls, struct MHD_Connection *c, const char *url,
             const char *method, const char *version, const char *upload,
             size_t *upload_len, void **req_cls)
{
    struct httpd *h = cls;
    struct httpd_rq *rq = *req_cls;
    char allow[32];

    (void)url;
    (void)version;
    if (rq == NULL)
        return MHD_NO; /* out of memory in httpd_uri_cb */
    if (rq->route < 0) {
        int m;

        snprintf(rq->method, sizeof(rq->method), "%s", method);
        if (rq->bad_target)
            return httpd_plain(c, rq, 400, "bad request target\n", NULL);
        m = httpd_match(h, rq->path, method, allow, sizeof(allow));
        if (m == -404)
            return httpd_plain(c, rq, 404, "not found\n", NULL);
        if (m == -405)
            return httpd_plain(c, rq, 405, "method not allowed\n", allow);
        if ((h->route[m].mask & HTTPD_AUTH) && !httpd_authorized(h, c, rq))
            return httpd_plain(c, rq, 401, "authentication required\n", NULL);
        rq->route = m;
        return MHD_YES; /* the body, if any, comes next */
    }
    if (*upload_len > 0) {
        if (!rq->too_big) {
            if (*upload_len > h->set.body_limit - rq->body_len) {
                rq->too_big = 1;
                free(rq->body);
                rq->body = NULL;
            } else {
                char *nb = realloc(rq->body, rq->body_len + *upload_len + 1);

                if (nb == NULL)
                    return MHD_NO;
                memcpy(nb + rq->body_len, upload, *upload_len);
                rq->body = nb;
                rq->body_len += *upload_len;
                rq->body[rq->body_len] = '\0';
            }
        }
        *upload_len = 0;
        return MHD_YES;
    }
    if (rq->too_big)
        return httpd_plain(c, rq, 413, "request body too large\n", NULL);
    return httpd_call(h, c, rq);
}

static void
httpd_done(void *cls, struct MHD_Connection *c, void **req_cls,
           enum MHD_RequestTerminationCode toe)
{
    struct httpd_rq *rq = *req_cls;
    char client[NI_MAXHOST], path[256];
    struct timespec t;
    double ms;

    (void)cls;
    if (rq == NULL)
        return;
    clock_gettime(CLOCK_MONOTONIC, &t);
    ms = (double)(t.tv_sec - rq->t0.tv_sec) * 1e3 +
         (double)(t.tv_nsec - rq->t0.tv_nsec) / 1e6;
    httpd_log_text(rq->path, path, sizeof(path));
    if (rq->status != 0) {
        metrics_http_reply(rq->status);
        log_info(NULL,
                 "http: client=%s, method=%s, path=%s, status=%d, size=%zu, "
                 "%.1fms%s%s%s",
                 httpd_client(c, client, sizeof(client)),
                 rq->method[0] ? rq->method : "-", path, rq->status, rq->sent,
                 ms, rq->user[0] ? ", user=" : "", rq->user,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
                     ? ""
                     : ", connection closed before the end");
    }
    free(rq->body);
    free(rq);
    *req_cls = NULL;
}

int
httpd_start(struct httpd *h, struct err *e)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    size_t i;

    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
        flags |= MHD_USE_EPOLL;
    else
        flags |= MHD_USE_POLL;
    if (h->cert != NULL)
        flags |= MHD_USE_TLS;
    h->started = 1;
    for (i = 0; i < h->nfd; i++) {
        struct MHD_OptionItem opt[4];
        size_t k = 0;

        /* The optional ones: a thread pool, TLS. */
        if (h->set.threads > 1)
            opt[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                               (intptr_t)h->set.threads, NULL};
        if (h->cert != NULL) {
            opt[k++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert};
            opt[k++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->key};
        }
        opt[k] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        h->mhd[i] = MHD_start_daemon(
            flags, 0, NULL, NULL, httpd_access, h, MHD_OPTION_EXTERNAL_LOGGER,
            httpd_mhd_log, h, MHD_OPTION_LISTEN_SOCKET, h->fd[i],
            MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->set.max_connections,
            MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            (unsigned)h->set.max_per_client, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)h->set.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)(64 * 1024), MHD_OPTION_URI_LOG_CALLBACK, httpd_uri_cb, h,
            MHD_OPTION_NOTIFY_COMPLETED, httpd_done, h, MHD_OPTION_ARRAY, opt,
            MHD_OPTION_END);
        if (h->mhd[i] == NULL)
            return err_set(e, ERR_IO,
                           "http_listen: libmicrohttpd did not start on the "
                           "socket (see the log)");
    }
    return 0;
}

void
httpd_stop(struct httpd *h)
{
    size_t i;

    if (h == NULL)
        return;
    for (i = 0; i < h->nfd; i++) {
        /* libmicrohttpd closes the socket it was given when it stops. */
        if (h->mhd[i] != NULL) {
            MHD_stop_daemon(h->mhd[i]);
            h->fd[i] = -1;
        }
        h->mhd[i] = NULL;
    }
}

void
httpd_free(struct httpd *h)
{
    size_t i;

    if (h == NULL)
        return;
    httpd_stop(h);
    for (i = 0; i < h->nfd; i++)
        if (h->fd[i] >= 0)
            close(h->fd[i]);
    if (h->key != NULL)
        explicit_bzero(h->key, strlen(h->key));
    free(h->cert);
    free(h->key);
    free(h);
}
