/*
 * antispam_rspamd - the antispam stage's rspamd client
 *
 * rspamd's HTTP protocol: the message is POSTed to /checkv2 of a normal
 * worker with the envelope in request headers (Queue-Id, From, one Rcpt
 * a recipient, IP, Hostname, Helo, and User for an authenticated client:
 * rspamd then treats the mail as outbound, skipping the checks of the
 * client's address and reputation meant for inbound mail). The reply is
 * JSON, read with json-c (flt_as_rspamd_parse, also fuzzed).
 *
 * libcurl does the HTTP: one easy handle a check, taken from a small
 * locked pool of idle handles so that each keeps its connection to
 * rspamd alive between messages where the server allows it; a handle is
 * never used by two threads at once. (rspamd 3.4's normal worker
 * answers "Connection: close" to every request, keep-alive asked or
 * not: there the pool saves the handles' setup, and each check opens a
 * connection.) CURLOPT_TIMEOUT_MS bounds a whole check, connection
 * included.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "filters/antispam/antispam_int.h"

#define AS_RSPAMD_POOL 8                      /* idle handles kept */
#define AS_RSPAMD_REPLY_MAX (4 * 1024 * 1024) /* octets of a reply */
#define AS_RSPAMD_HEADER_MAX 1024             /* octets of one header line */
#define AS_RSPAMD_DEPTH 16                    /* JSON nesting read */
#define AS_RSPAMD_ERROR_PRINT 200             /* octets of rspamd's error */

struct as_rspamd {
    char *server;    /* as configured, for error texts */
    char *url;       /* http://HOST:PORT/checkv2 */
    char *unix_path; /* NULL: TCP */
    long timeout_ms;
    pthread_mutex_t lock;
    CURL *idle[AS_RSPAMD_POOL];
    size_t nidle;
};

struct as_reply {
    char *p;
    size_t len, cap;
    int over; /* more than AS_RSPAMD_REPLY_MAX octets came */
};

static pthread_once_t as_curl_once = PTHREAD_ONCE_INIT;
static CURLcode as_curl_init_rc = CURLE_FAILED_INIT;

static void
as_curl_init(void)
{
    as_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* as_printable - copy src into dst (size octets) with anything but
 * printable ASCII as '?'; cut to fit. */
static void
as_printable(char *dst, size_t size, const char *src, size_t len)
{
    size_t i, n = 0;

    for (i = 0; i < len && n + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];

        dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[n] = '\0';
}

/* ------------------------------------------------------------ the reply */

struct as_sym {
    const char *name;
    double score;
};

static int
as_sym_cmp(const void *x, const void *y)
{
    const struct as_sym *a = x, *b = y;

    if (a->score > b->score)
        return -1;
    if (a->score < b->score)
        return 1;
    return strcmp(a->name, b->name);
}

/* as_number - the finite number at key of o into *v; -1 if none. */
static int
as_number(struct json_object *o, const char *key, double *v)
{
    struct json_object *n;
    double d;

    if (!json_object_object_get_ex(o, key, &n))
        return -1;
    if (!json_object_is_type(n, json_type_double) &&
        !json_object_is_type(n, json_type_int))
        return -1;
    d = json_object_get_double(n);
    if (!isfinite(d))
        return -1;
    *v = d;
    return 0;
}

/* as_symbols - the names of the symbols object, highest score first,
 * into a->symbols: printable ASCII but ',', whole names only. */
static int
as_symbols(struct json_object *syms, struct flt_as_answer *a, struct err *e)
{
    struct as_sym *v;
    size_t n = 0, i, used = 0;

    a->symbols[0] = '\0';
    if (syms == NULL || !json_object_is_type(syms, json_type_object))
        return 0;
    v = calloc((size_t)json_object_object_length(syms) + 1, sizeof(*v));
    if (v == NULL)
        return err_nomem(e);
    json_object_object_foreach(syms, key, val)
    {
        double sc = 0;

        if (key[0] == '\0')
            continue;
        if (json_object_is_type(val, json_type_object))
            (void)as_number(val, "score", &sc);
        v[n].name = key;
        v[n].score = sc;
        n++;
    }
    qsort(v, n, sizeof(*v), as_sym_cmp);
    for (i = 0; i < n; i++) {
        size_t k, len = strlen(v[i].name);

        if (used + (used > 0) + len + 1 > sizeof(a->symbols))
            continue; /* does not fit: a shorter one may */
        if (used > 0)
            a->symbols[used++] = ',';
        for (k = 0; k < len; k++) {
            unsigned char c = (unsigned char)v[i].name[k];

            a->symbols[used++] =
                (c > 0x20 && c < 0x7f && c != ',') ? (char)c : '_';
        }
        a->symbols[used] = '\0';
    }
    free(v);
    return 0;
}

int
flt_as_rspamd_parse(const char *json, size_t len, struct flt_as_answer *a,
                    struct err *e)
{
    struct json_tokener *tok;
    struct json_object *root, *o;
    enum json_tokener_error jerr;
    size_t end;
    int rc = -1;

    a->score = 0;
    a->required = 0;
    a->symbols[0] = '\0';
    if (len > INT_MAX)
        return err_set(e, ERR_LIMIT, "rspamd reply of %zu octets", len);
    tok = json_tokener_new_ex(AS_RSPAMD_DEPTH);
    if (tok == NULL)
        return err_nomem(e);
    root = json_tokener_parse_ex(tok, json, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (root == NULL || jerr != json_tokener_success) {
        if (root == NULL && jerr == json_tokener_continue)
            err_set(e, ERR_TEMP, "rspamd reply: truncated JSON");
        else
            err_set(e, ERR_TEMP, "rspamd reply: not JSON: %s",
                    json_tokener_error_desc(jerr));
        json_object_put(root);
        return -1;
    }
    for (; end < len; end++)
        if (!isspace((unsigned char)json[end])) {
            err_set(e, ERR_TEMP, "rspamd reply: data after the JSON value");
            goto out;
        }
    if (!json_object_is_type(root, json_type_object)) {
        err_set(e, ERR_TEMP, "rspamd reply: not a JSON object");
        goto out;
    }
    if (json_object_object_get_ex(root, "error", &o)) {
        char what[AS_RSPAMD_ERROR_PRINT];
        const char *s = json_object_get_string(o);

        as_printable(what, sizeof(what), s ? s : "", s ? strlen(s) : 0);
        err_set(e, ERR_TEMP, "rspamd error: %s", what);
        goto out;
    }
    if (as_number(root, "score", &a->score) < 0) {
        err_set(e, ERR_TEMP, "rspamd reply: no score");
        goto out;
    }
    if (as_number(root, "required_score", &a->required) < 0) {
        err_set(e, ERR_TEMP, "rspamd reply: no required_score");
        goto out;
    }
    if (json_object_object_get_ex(root, "symbols", &o) &&
        as_symbols(o, a, e) < 0)
        goto out;
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------ the engine */

/* as_server - check server (host:port, [v6]:port, unix:/path) and fill
 * r->url and r->unix_path. */
static int
as_server(struct as_rspamd *r, const char *server, struct err *e)
{
    const char *host, *port, *p;
    size_t hlen;
    long n;
    char *endp;

    if (strncmp(server, "unix:", 5) == 0) {
        if (server[5] != '/')
            return err_set(e, ERR_CONFIG,
                           "rspamd server '%s': want unix:/absolute/path",
                           server);
        r->unix_path = strdup(server + 5);
        r->url = strdup("http://localhost/checkv2");
        if (r->unix_path == NULL || r->url == NULL)
            return err_nomem(e);
        return 0;
    }
    host = server;
    if (host[0] == '[') {
        p = strchr(host, ']');
        if (p == NULL || p == host + 1 || p[1] != ':')
            return err_set(e, ERR_CONFIG,
                           "rspamd server '%s': want [IPv6]:port", server);
        hlen = (size_t)(p + 1 - host);
        port = p + 2;
        for (p = host + 1; *p != ']'; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return err_set(e, ERR_CONFIG,
                               "rspamd server '%s': bad IPv6 address", server);
    } else {
        p = strchr(host, ':');
        if (p == NULL || p == host || strchr(p + 1, ':') != NULL)
            return err_set(e, ERR_CONFIG,
                           "rspamd server '%s': want host:port, [IPv6]:port "
                           "or unix:/path",
                           server);
        hlen = (size_t)(p - host);
        port = p + 1;
        for (p = host; p < host + hlen; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
                return err_set(e, ERR_CONFIG,
                               "rspamd server '%s': bad host name", server);
    }
    if (!isdigit((unsigned char)port[0]))
        return err_set(e, ERR_CONFIG, "rspamd server '%s': bad port", server);
    n = strtol(port, &endp, 10);
    if (*endp != '\0' || n < 1 || n > 65535)
        return err_set(e, ERR_CONFIG, "rspamd server '%s': bad port", server);
    r->url = malloc(hlen + 32);
    if (r->url == NULL)
        return err_nomem(e);
    snprintf(r->url, hlen + 32, "http://%.*s:%ld/checkv2", (int)hlen, host, n);
    return 0;
}

static void
as_rspamd_destroy(void *eng)
{
    struct as_rspamd *r = eng;
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->nidle; i++)
        curl_easy_cleanup(r->idle[i]);
    pthread_mutex_destroy(&r->lock);
    free(r->server);
    free(r->url);
    free(r->unix_path);
    free(r);
}

static void *
as_rspamd_create(const char *server, int timeout_ms, struct err *e)
{
    struct as_rspamd *r;

    if (server == NULL || server[0] == '\0') {
        err_set(e, ERR_CONFIG, "rspamd: no server");
        return NULL;
    }
    if (timeout_ms <= 0) {
        err_set(e, ERR_CONFIG, "rspamd: timeout must be positive");
        return NULL;
    }
    pthread_once(&as_curl_once, as_curl_init);
    if (as_curl_init_rc != CURLE_OK) {
        err_set(e, ERR_LIB, "rspamd: curl_global_init: %s",
                curl_easy_strerror(as_curl_init_rc));
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        err_set(e, ERR_INTERNAL, "rspamd: pthread_mutex_init failed");
        return NULL;
    }
    r->timeout_ms = timeout_ms;
    r->server = strdup(server);
    if (r->server == NULL) {
        err_nomem(e);
        as_rspamd_destroy(r);
        return NULL;
    }
    if (as_server(r, server, e) < 0) {
        as_rspamd_destroy(r);
        return NULL;
    }
    return r;
}

static CURL *
as_take(struct as_rspamd *r)
{
    CURL *h = NULL;

    pthread_mutex_lock(&r->lock);
    if (r->nidle > 0)
        h = r->idle[--r->nidle];
    pthread_mutex_unlock(&r->lock);
    if (h == NULL)
        return curl_easy_init();
    curl_easy_reset(h); /* keeps its connection */
    return h;
}

/* as_give - back to the pool with its connection, or closed when it
 * failed (its connection may be in any state) or the pool is full. */
static void
as_give(struct as_rspamd *r, CURL *h, int ok)
{
    if (ok) {
        pthread_mutex_lock(&r->lock);
        if (r->nidle < AS_RSPAMD_POOL) {
            r->idle[r->nidle++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&r->lock);
    }
    if (h != NULL)
        curl_easy_cleanup(h);
}

static size_t
as_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct as_reply *rep = arg;
    size_t n = size * nmemb;

    if (n > AS_RSPAMD_REPLY_MAX - rep->len) {
        rep->over = 1;
        return 0;
    }
    if (rep->len + n + 1 > rep->cap) {
        size_t cap = rep->cap ? rep->cap : 4096;
        char *p;

        while (cap < rep->len + n + 1)
            cap *= 2;
        p = realloc(rep->p, cap);
        if (p == NULL)
            return 0;
        rep->p = p;
        rep->cap = cap;
    }
    memcpy(rep->p + rep->len, ptr, n);
    rep->len += n;
    rep->p[rep->len] = '\0';
    return n;
}

/* as_header - add "Name: value" to *list, without control octets (a
 * value never ends the header early). 0, or -1 when out of memory. */
static int
as_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[AS_RSPAMD_HEADER_MAX];
    struct curl_slist *l;
    size_t n, i;

    n = (size_t)snprintf(line, sizeof(line), "%s: ", name);
    for (i = 0; value[i] != '\0' && n + 1 < sizeof(line); i++) {
        unsigned char c = (unsigned char)value[i];

        if (c >= 0x20 && c != 0x7f)
            line[n++] = (char)c;
    }
    line[n] = '\0';
    l = curl_slist_append(*list, line);
    if (l == NULL)
        return -1;
    *list = l;
    return 0;
}

static struct curl_slist *
as_headers(const struct flt_as_query *q)
{
    struct curl_slist *l = NULL;
    size_t i;
    int bad = 0;

    /* no "Expect: 100-continue" round trip for large messages */
    l = curl_slist_append(NULL, "Expect:");
    if (l == NULL)
        return NULL;
    if (q->qid != NULL && q->qid[0] != '\0')
        bad |= as_header(&l, "Queue-Id", q->qid);
    bad |= as_header(&l, "From",
                     (q->sender == NULL || q->sender[0] == '\0') ? "<>"
                                                                 : q->sender);
    for (i = 0; i < q->nrcpts; i++)
        if (q->rcpts[i] != NULL && q->rcpts[i][0] != '\0')
            bad |= as_header(&l, "Rcpt", q->rcpts[i]);
    if (q->client_addr != NULL && q->client_addr[0] != '\0')
        bad |= as_header(&l, "IP", q->client_addr);
    if (q->client_name != NULL && q->client_name[0] != '\0')
        bad |= as_header(&l, "Hostname", q->client_name);
    if (q->helo != NULL && q->helo[0] != '\0')
        bad |= as_header(&l, "Helo", q->helo);
    if (q->auth_user != NULL && q->auth_user[0] != '\0')
        bad |= as_header(&l, "User", q->auth_user);
    if (bad) {
        curl_slist_free_all(l);
        return NULL;
    }
    return l;
}

static int
as_rspamd_check(void *eng, const struct flt_as_query *q,
                struct flt_as_answer *a, struct err *e)
{
    struct as_rspamd *r = eng;
    struct as_reply rep = {NULL, 0, 0, 0};
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdrs;
    CURLcode cc;
    long status = 0, oserr = 0;
    CURL *h;
    int rc = -1, ok = 0;

    a->score = 0;
    a->required = 0;
    a->symbols[0] = '\0';
    hdrs = as_headers(q);
    if (hdrs == NULL)
        return err_nomem(e);
    h = as_take(r);
    if (h == NULL) {
        curl_slist_free_all(hdrs);
        return err_set(e, ERR_LIB, "rspamd %s: curl_easy_init failed",
                       r->server);
    }
    errbuf[0] = '\0';
    cc = curl_easy_setopt(h, CURLOPT_URL, r->url);
    if (cc == CURLE_OK && r->unix_path != NULL)
        cc = curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, r->unix_path);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_POST, 1L);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->data);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                              (curl_off_t)q->len);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_USERAGENT, "relaychain");
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, as_write);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(h, CURLOPT_WRITEDATA, &rep);
    if (cc != CURLE_OK) {
        err_set(e, ERR_LIB, "rspamd %s: curl_easy_setopt: %s", r->server,
                curl_easy_strerror(cc));
        goto out;
    }
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        const char *why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc);

        if (cc == CURLE_OPERATION_TIMEDOUT)
            err_set(e, ERR_TEMP, "rspamd %s: timed out after %ld ms (%s)",
                    r->server, r->timeout_ms, why);
        else if (rep.over)
            err_set(e, ERR_LIMIT, "rspamd %s: reply over %d octets", r->server,
                    AS_RSPAMD_REPLY_MAX);
        else if (cc == CURLE_WRITE_ERROR)
            err_nomem(e);
        else if (cc == CURLE_COULDNT_CONNECT &&
                 curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr) == CURLE_OK &&
                 oserr != 0) {
            errno = (int)oserr; /* curl's text names port 80 for unix: */
            err_sys(e, ERR_IO, "rspamd %s: connect", r->server);
        } else
            err_set(e, ERR_IO, "rspamd %s: %s", r->server, why);
        goto out;
    }
    ok = 1; /* the connection is in a known state: kept */
    (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        struct flt_as_answer junk;
        struct err e2;

        /* rspamd says why in a JSON error object */
        if (rep.p != NULL &&
            flt_as_rspamd_parse(rep.p, rep.len, &junk, &e2) < 0 &&
            strncmp(e2.text, "rspamd error: ", 14) == 0)
            err_set(e, ERR_TEMP, "rspamd %s: HTTP status %ld: %s", r->server,
                    status, e2.text + 14);
        else
            err_set(e, ERR_TEMP, "rspamd %s: HTTP status %ld", r->server,
                    status);
        goto out;
    }
    if (flt_as_rspamd_parse(rep.p ? rep.p : "", rep.len, a, e) < 0) {
        err_prefix(e, "rspamd %s", r->server);
        goto out;
    }
    rc = 0;
out:
    as_give(r, h, ok);
    curl_slist_free_all(hdrs);
    free(rep.p);
    return rc;
}

const struct flt_as_engine_ops flt_as_rspamd_ops = {
    "rspamd", as_rspamd_create, as_rspamd_check, as_rspamd_destroy};
