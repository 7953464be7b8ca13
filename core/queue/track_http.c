/*
 * track_http - the /o/, /c/ and /u/ handlers (see track_http.h)
 *
 * Each handler checks the method, cuts the token out of the path,
 * verifies it, and only then reads it: the URL of a click is the one the
 * HMAC covers, and it must still be an http(s) URL that fits a Location
 * field. Every failure of a token is one answer (404, a short text), so
 * the reply tells a prober nothing about which check failed; the log
 * line says.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/buf.h"
#include "util/cidr.h"
#include "util/log.h"
#include "util/track_token.h"
#include "queue/track_http.h"

#define TRACK_HTTP_SLOTS 4096  /* clients remembered for the sweep rule */
#define TRACK_HTTP_SWEEP_S 600 /* how long one is remembered */
#define TRACK_HTTP_LINKS 64    /* links a sweep is followed over */
#define TRACK_HTTP_NETS_MAX 100000
#define TRACK_HTTP_NETS_FILE (4 * 1024 * 1024)
#define TRACK_HTTP_UA_MAX 200

struct track_http_slot {
    uint64_t key; /* 0: free */
    time_t first;
    uint64_t links; /* bit i: link i clicked */
};

struct track_http {
    struct track_key key;
    struct cidr_list *nets;
    long long click_window;
    struct events *ev; /* borrowed */
    pthread_mutex_t lock;
    struct track_http_slot slots[TRACK_HTTP_SLOTS];
    atomic_ullong opens, opens_machine, clicks, clicks_machine, unsubscribes,
        forged;
};

/* A 1x1 transparent GIF. */
static const unsigned char track_http_gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

/* track_http_nets - the CIDR file at path: one range a line, '#'
 * comments, blank lines. */
static struct cidr_list *
track_http_nets(const char *path, struct err *e)
{
    struct cidr_list *l = NULL;
    char line[256], **items = NULL;
    size_t n = 0, cap = 0, lineno = 0, total = 0;
    FILE *fp;

    if ((fp = fopen(path, "re")) == NULL) {
        err_sys(e, ERR_CONFIG, "machine_networks: %s", path);
        return NULL;
    }
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *s = line, *end;

        lineno++;
        total += strlen(line);
        if (strchr(line, '\n') == NULL && !feof(fp)) {
            err_set(e, ERR_CONFIG, "machine_networks: %s:%zu: line too long",
                    path, lineno);
            goto out;
        }
        if (total > TRACK_HTTP_NETS_FILE || n >= TRACK_HTTP_NETS_MAX) {
            err_set(e, ERR_CONFIG, "machine_networks: %s:%zu: too many ranges",
                    path, lineno);
            goto out;
        }
        if ((end = strchr(s, '#')) != NULL)
            *end = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        end = s + strlen(s);
        while (end > s && (end[-1] == '\n' || end[-1] == '\r' ||
                           end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*s == '\0')
            continue;
        if (n == cap) {
            char **t;

            cap = cap ? cap * 2 : 64;
            if ((t = realloc(items, cap * sizeof(*t))) == NULL) {
                err_nomem(e);
                goto out;
            }
            items = t;
        }
        if ((items[n] = strdup(s)) == NULL) {
            err_nomem(e);
            goto out;
        }
        n++;
        /* Check each range as it comes, for its line number. */
        {
            struct cidr_list *one =
                cidr_list_new((const char *const *)&items[n - 1], 1, e);

            if (one == NULL) {
                err_prefix(e, "machine_networks: %s:%zu", path, lineno);
                goto out;
            }
            cidr_list_free(one);
        }
    }
    if (ferror(fp)) {
        err_sys(e, ERR_CONFIG, "machine_networks: %s", path);
        goto out;
    }
    l = cidr_list_new((const char *const *)items, n, e);
out:
    fclose(fp);
    while (n > 0)
        free(items[--n]);
    free(items);
    return l;
}

struct track_http *
track_http_new(const struct track_http_settings *s, struct events *ev,
               struct err *e)
{
    struct track_http *th;

    if (s->key_file == NULL) {
        err_set(e, ERR_CONFIG, "key_file: not set");
        return NULL;
    }
    if ((th = calloc(1, sizeof(*th))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (track_key_load(s->key_file, &th->key, e) < 0) {
        err_prefix(e, "key_file");
        free(th);
        return NULL;
    }
    if (s->machine_networks != NULL &&
        (th->nets = track_http_nets(s->machine_networks, e)) == NULL) {
        track_key_free(&th->key);
        free(th);
        return NULL;
    }
    th->click_window = s->click_window;
    th->ev = ev;
    pthread_mutex_init(&th->lock, NULL);
    return th;
}

void
track_http_free(struct track_http *th)
{
    if (th == NULL)
        return;
    track_key_free(&th->key);
    cidr_list_free(th->nets);
    pthread_mutex_destroy(&th->lock);
    free(th);
}

void
track_http_stats(struct track_http *th, struct track_http_stats *st)
{
    st->opens = atomic_load(&th->opens);
    st->opens_machine = atomic_load(&th->opens_machine);
    st->clicks = atomic_load(&th->clicks);
    st->clicks_machine = atomic_load(&th->clicks_machine);
    st->unsubscribes = atomic_load(&th->unsubscribes);
    st->forged = atomic_load(&th->forged);
}

/* ------------------------------------------------------------ helpers */

static void
track_http_text(struct http_resp *rs, int status, const char *text)
{
    struct err e;

    rs->status = status;
    rs->content_type = "text/plain; charset=utf-8";
    rs->no_store = 1;
    buf_reset(&rs->body);
    (void)buf_puts(&rs->body, text, &e);
}

/* track_http_token - the token of rq's path after prefix (and before
 * suffix) into t when it verifies and is of kind; else the 404 is
 * answered, counted and logged, and -1 returned. */
static int
track_http_token(struct track_http *th, const struct http_req *rq,
                 struct http_resp *rs, const char *prefix, const char *suffix,
                 enum track_kind kind, struct track_token *t)
{
    size_t pl = strlen(prefix), sl = suffix ? strlen(suffix) : 0, len;
    const char *s;
    struct err e;

    err_clear(&e);
    if (rq->path == NULL || strncmp(rq->path, prefix, pl) != 0) {
        err_set(&e, ERR_INPUT, "not under %s", prefix);
        goto bad;
    }
    s = rq->path + pl;
    len = strlen(s);
    if (sl > 0) {
        if (len < sl || strcmp(s + len - sl, suffix) != 0) {
            err_set(&e, ERR_INPUT, "no %s", suffix);
            goto bad;
        }
        len -= sl;
    }
    if (track_token_open(&th->key, s, len, t, &e) < 0)
        goto bad;
    if (t->kind != kind) {
        err_set(&e, ERR_INPUT, "a token of kind %c under %s", (int)t->kind,
                prefix);
        goto bad;
    }
    return 0;
bad:
    atomic_fetch_add(&th->forged, 1);
    log_warning(NULL, "http: %s %s from %s: 404: %s", rq->method, prefix,
                rq->client ? rq->client : "?", e.text);
    track_http_text(rs, 404, "Not found\n");
    return -1;
}

static int
track_http_method(const struct http_req *rq, struct http_resp *rs, int post)
{
    if (rq->method != NULL &&
        (strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0 ||
         (post && strcmp(rq->method, "POST") == 0)))
        return 0;
    track_http_text(rs, 405, "Method not allowed\n");
    return -1;
}

static void
track_http_emit(struct track_http *th, enum events_type type,
                const struct track_token *t, const struct http_req *rq,
                int machine, const char *text)
{
    struct events_rec r;
    char stream[128] = "";

    if (th->ev == NULL)
        return;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.qid = t->qid;
    r.msgid = t->msgid;
    r.sender = t->sender;
    r.rcpt = t->rcpt;
    (void)events_stream(th->ev, NULL, NULL, t->sender, stream, sizeof(stream));
    r.stream = stream;
    r.hard = machine;
    r.relay = rq->client;
    r.text = text;
    events_emit(th->ev, &r);
}

/* track_http_ua - the user agent, cut for the event. */
static void
track_http_ua(const struct http_req *rq, char *out, size_t n)
{
    snprintf(out, n, "%s", rq->user_agent ? rq->user_agent : "");
}

/* ---------------------------------------------------------------- /o/ */

void
track_http_open(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    struct track_http *th = arg;
    struct track_token t;
    char ua[TRACK_HTTP_UA_MAX + 1];
    struct err e;
    int machine;

    if (track_http_method(rq, rs, 0) < 0 ||
        track_http_token(th, rq, rs, "/o/", ".gif", TRACK_OPEN, &t) < 0)
        return;
    rs->status = 200;
    rs->content_type = "image/gif";
    rs->no_store = 1;
    buf_reset(&rs->body);
    if (buf_append(&rs->body, track_http_gif, sizeof(track_http_gif), &e) < 0)
        track_http_text(rs, 503, "Try again later\n");
    if (strcmp(rq->method, "GET") != 0)
        return;
    machine = (th->nets != NULL && rq->client != NULL &&
               cidr_list_contains(th->nets, rq->client)) ||
              (rq->user_agent != NULL &&
               strstr(rq->user_agent, "GoogleImageProxy") != NULL);
    atomic_fetch_add(machine ? &th->opens_machine : &th->opens, 1);
    track_http_ua(rq, ua, sizeof(ua));
    track_http_emit(th, EVENTS_OPENED, &t, rq, machine, ua);
}

/* ---------------------------------------------------------------- /c/ */

static uint64_t
track_http_hash(const struct track_token *t, const char *client)
{
    const char *parts[4] = {t->qid, t->msgid, t->rcpt, client ? client : ""};
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    size_t i;
    const char *p;

    for (i = 0; i < 4; i++) {
        for (p = parts[i]; *p != '\0'; p++) {
            h ^= (unsigned char)*p;
            h *= 1099511628211ULL;
        }
        h ^= 0xff;
        h *= 1099511628211ULL;
    }
    return h != 0 ? h : 1;
}

/* track_http_sweep - 1 when with this click one client has followed
 * every link of the message (two or more). */
static int
track_http_sweep(struct track_http *th, const struct track_token *t,
                 const char *client, time_t now)
{
    struct track_http_slot *sl;
    uint64_t key, all;
    int done = 0;

    if (t->count < 2 || t->count > TRACK_HTTP_LINKS || t->index >= t->count)
        return 0;
    key = track_http_hash(t, client);
    all = t->count == 64 ? UINT64_MAX : ((uint64_t)1 << t->count) - 1;
    pthread_mutex_lock(&th->lock);
    sl = &th->slots[key % TRACK_HTTP_SLOTS];
    if (sl->key != key || now - sl->first > TRACK_HTTP_SWEEP_S) {
        sl->key = key;
        sl->first = now;
        sl->links = 0;
    }
    if (sl->links != all) {
        sl->links |= (uint64_t)1 << t->index;
        done = sl->links == all;
    }
    pthread_mutex_unlock(&th->lock);
    return done;
}

/* track_http_url_ok - a URL that may go into Location: http(s), no
 * space or control octet, fits. */
static int
track_http_url_ok(const char *u)
{
    const char *p;

    if (strncasecmp(u, "http://", 7) != 0 &&
        strncasecmp(u, "https://", 8) != 0)
        return 0;
    if (strlen(u) >= HTTP_LOCATION_MAX)
        return 0;
    for (p = u; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return 0;
    return 1;
}

void
track_http_click(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    struct track_http *th = arg;
    struct track_token t;
    char ua[TRACK_HTTP_UA_MAX + 1];
    time_t now = time(NULL);
    int machine;

    if (track_http_method(rq, rs, 0) < 0 ||
        track_http_token(th, rq, rs, "/c/", NULL, TRACK_CLICK, &t) < 0)
        return;
    if (!track_http_url_ok(t.url)) {
        atomic_fetch_add(&th->forged, 1);
        log_warning(t.qid,
                    "http: /c/ from %s: 404: a signed URL that is "
                    "not http(s) or does not fit Location",
                    rq->client ? rq->client : "?");
        track_http_text(rs, 404, "Not found\n");
        return;
    }
    rs->status = 302;
    rs->no_store = 1;
    snprintf(rs->location, sizeof(rs->location), "%s", t.url);
    rs->content_type = "text/plain; charset=utf-8";
    buf_reset(&rs->body);
    if (strcmp(rq->method, "GET") != 0)
        return;
    machine = (th->click_window > 0 && (long long)now >= (long long)t.made &&
               (long long)now - (long long)t.made < th->click_window);
    if (track_http_sweep(th, &t, rq->client, now))
        machine = 1;
    atomic_fetch_add(machine ? &th->clicks_machine : &th->clicks, 1);
    track_http_ua(rq, ua, sizeof(ua));
    track_http_emit(th, EVENTS_CLICKED, &t, rq, machine, ua);
}

/* ---------------------------------------------------------------- /u/ */

static void
track_http_html_put(struct buf *b, const char *s, struct err *e)
{
    for (; *s != '\0'; s++)
        switch (*s) {
        case '<':
            (void)buf_puts(b, "&lt;", e);
            break;
        case '>':
            (void)buf_puts(b, "&gt;", e);
            break;
        case '&':
            (void)buf_puts(b, "&amp;", e);
            break;
        case '"':
            (void)buf_puts(b, "&quot;", e);
            break;
        default:
            (void)buf_putc(b, *s, e);
        }
}

static void
track_http_page(struct http_resp *rs, const struct http_req *rq,
                const struct track_token *t, int done)
{
    struct buf *b = &rs->body;
    struct err e;

    rs->status = 200;
    rs->content_type = "text/html; charset=utf-8";
    rs->no_store = 1;
    buf_reset(b);
    (void)buf_puts(b,
                   "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                   "<title>Unsubscribe</title></head><body>\n",
                   &e);
    if (done) {
        (void)buf_puts(b, "<p>", &e);
        track_http_html_put(b, t->rcpt, &e);
        (void)buf_puts(b, " is unsubscribed.</p>\n", &e);
    } else {
        (void)buf_puts(b, "<p>Unsubscribe ", &e);
        track_http_html_put(b, t->rcpt, &e);
        (void)buf_puts(b, "?</p>\n<form method=\"post\" action=\"", &e);
        track_http_html_put(b, rq->path, &e);
        (void)buf_puts(b,
                       "\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
                       "value=\"One-Click\"><button "
                       "type=\"submit\">Unsubscribe</button></form>\n",
                       &e);
    }
    (void)buf_puts(b, "</body></html>\n", &e);
}

void
track_http_unsub(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    static const char one_click[] = "List-Unsubscribe=One-Click";
    struct track_http *th = arg;
    struct track_token t;

    if (track_http_method(rq, rs, 1) < 0 ||
        track_http_token(th, rq, rs, "/u/", NULL, TRACK_UNSUB, &t) < 0)
        return;
    if (t.rcpt[0] == '\0') {
        /* A per-message token names nobody to take off the list. */
        track_http_text(rs, 404, "Not found\n");
        return;
    }
    if (strcmp(rq->method, "POST") != 0) {
        track_http_page(rs, rq, &t, 0);
        return;
    }
    /* RFC 8058: the body of a one-click POST is exactly this (the form
     * of the page sends the same). */
    if (rq->body == NULL || rq->body_len != sizeof(one_click) - 1 ||
        memcmp(rq->body, one_click, sizeof(one_click) - 1) != 0) {
        track_http_text(rs, 400, "Want List-Unsubscribe=One-Click\n");
        return;
    }
    if (th->ev == NULL) {
        track_http_text(rs, 503, "Try again later\n");
        return;
    }
    atomic_fetch_add(&th->unsubscribes, 1);
    log_info(t.qid, "http: unsubscribe to=<%s> from %s", t.rcpt,
             rq->client ? rq->client : "?");
    track_http_emit(th, EVENTS_UNSUBSCRIBED, &t, rq, 0, "one-click");
    track_http_page(rs, rq, &t, 1);
}
