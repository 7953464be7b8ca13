/*
 * test_track_http - the tracking tokens and the /o/ /c/ /u/ handlers
 *
 * Tokens: a round trip keeps every field; every single-octet change of
 * a token's text, every truncation, a token under another key, and
 * malformed base64 are refused; a key file shorter than 32 octets is
 * refused. Handlers, called directly with a real SQLite events store in
 * a temporary directory: the pixel is a GIF with no-store and records
 * an open (a machine one from a listed network or Google's image
 * proxy); a click redirects to the signed URL and records a click (a
 * machine one within the click window, or for the click that completes
 * a sweep of every link); forged, altered, truncated and wrong-kind
 * tokens get 404, no Location, and are counted; the unsubscribe page is
 * a form, the one-click POST suppresses the recipient with reason
 * "unsubscribe"; the report counts human and machine apart.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/track_token.h"
#include "queue/events.h"
#include "queue/events_db.h"
#include "queue/track_http.h"

static char dir[] = "/tmp/test_track_http.XXXXXX";
static char keyfile[300], key2file[300], shortkey[300], nets[300];
static char store[512];

static void
write_file(const char *path, const char *data, size_t n)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

static int
setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(keyfile, sizeof(keyfile), "%s/key", dir);
    snprintf(key2file, sizeof(key2file), "%s/key2", dir);
    snprintf(shortkey, sizeof(shortkey), "%s/short", dir);
    snprintf(nets, sizeof(nets), "%s/nets", dir);
    snprintf(store, sizeof(store), "sqlite:%s/events.db", dir);
    write_file(keyfile, "0123456789abcdef0123456789abcdef!", 33);
    write_file(key2file, "0123456789abcdef0123456789abcdeX!", 33);
    write_file(shortkey, "0123456789abcdef0123456789abcde", 31);
    write_file(nets, "# test ranges\n17.0.0.0/8\n\n2620:149::/32 # v6\n", 45);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[400];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
fill(struct track_token *t, enum track_kind kind, const char *url)
{
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->made = (unsigned long)time(NULL) - 3600;
    t->index = 1;
    t->count = 3;
    snprintf(t->qid, sizeof(t->qid), "4ABCDEF01");
    snprintf(t->msgid, sizeof(t->msgid), "<m1@example.com>");
    snprintf(t->sender, sizeof(t->sender), "news@example.com");
    snprintf(t->rcpt, sizeof(t->rcpt), "bob@example.net");
    snprintf(t->url, sizeof(t->url), "%s", url);
}

static void
test_key_load(void **state)
{
    struct track_key k;
    struct err e;

    (void)state;
    err_clear(&e);
    assert_int_equal(track_key_load(shortkey, &k, &e), -1);
    if (strstr(e.text, "31 octets") == NULL)
        fail_msg("got \"%s\", want the short key's size", e.text);
    assert_int_equal(track_key_load("/nonexistent/key", &k, &e), -1);
    assert_int_equal(chmod(keyfile, 0644), 0);
    assert_int_equal(track_key_load(keyfile, &k, &e), -1);
    if (strstr(e.text, "lets all other users read it") == NULL)
        fail_msg("got \"%s\", want the mode refused", e.text);
    assert_int_equal(chmod(keyfile, 0640), 0);
    assert_int_equal(track_key_load(keyfile, &k, &e), 0);
    assert_int_equal(k.len, 33);
    track_key_free(&k);
}

static void
test_token_round_trip(void **state)
{
    struct track_key k, k2;
    struct track_token t, got;
    char tok[TRACK_TOKEN_MAX], bad[TRACK_TOKEN_MAX];
    struct err e;
    int n, i, c;

    (void)state;
    assert_int_equal(track_key_load(keyfile, &k, &e), 0);
    assert_int_equal(track_key_load(key2file, &k2, &e), 0);
    fill(&t, TRACK_CLICK, "https://example.com/a?b=c&d=e");
    n = track_token_make(&k, &t, tok, sizeof(tok), &e);
    assert_true(n > 0);
    assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                 "qrstuvwxyz0123456789-_"),
                     (size_t)n);
    assert_int_equal(track_token_open(&k, tok, (size_t)n, &got, &e), 0);
    assert_int_equal(got.kind, TRACK_CLICK);
    assert_int_equal(got.made, t.made);
    /* the key keyed once into OpenSSL and keyed per token agree */
    {
        struct track_key plain = {k.data, k.len, NULL};
        char tok2[TRACK_TOKEN_MAX];

        assert_non_null(k.mac);
        assert_int_equal(track_token_make(&plain, &t, tok2, sizeof(tok2), &e),
                         n);
        assert_string_equal(tok2, tok);
        assert_int_equal(track_token_open(&plain, tok, (size_t)n, &got, &e),
                         0);
    }
    assert_int_equal(got.index, 1);
    assert_int_equal(got.count, 3);
    assert_string_equal(got.qid, t.qid);
    assert_string_equal(got.msgid, t.msgid);
    assert_string_equal(got.sender, t.sender);
    assert_string_equal(got.rcpt, t.rcpt);
    assert_string_equal(got.url, t.url);
    /* another key */
    assert_int_equal(track_token_open(&k2, tok, (size_t)n, &got, &e), -1);
    /* every truncation */
    for (i = 0; i < n; i++)
        if (track_token_open(&k, tok, (size_t)i, &got, &e) == 0)
            fail_msg("a token cut to %d of %d octets verified", i, n);
    /* every single-octet change, to every other letter of the alphabet
     * and to a few outside it */
    for (i = 0; i < n; i++)
        for (c = 0; c < 128; c++) {
            if (c == tok[i])
                continue;
            memcpy(bad, tok, (size_t)n + 1);
            bad[i] = (char)c;
            if (track_token_open(&k, bad, (size_t)n, &got, &e) == 0)
                fail_msg("a token with octet %d changed to 0x%02x verified", i,
                         c);
        }
    /* an octet added */
    memcpy(bad, tok, (size_t)n);
    bad[n] = 'A';
    assert_int_equal(track_token_open(&k, bad, (size_t)n + 1, &got, &e), -1);
    /* bounds */
    memset(t.url, 'a', TRACK_URL_MAX);
    t.url[TRACK_URL_MAX] = '\0';
    assert_true(track_token_make(&k, &t, tok, sizeof(tok), &e) > 0);
    fill(&t, TRACK_CLICK, "https://example.com/\r\nX: y");
    assert_int_equal(track_token_make(&k, &t, tok, sizeof(tok), &e), -1);
    assert_int_equal(e.code, ERR_INPUT);
    fill(&t, TRACK_OPEN, "");
    assert_int_equal(track_token_make(&k, &t, tok, 20, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    track_key_free(&k);
    track_key_free(&k2);
}

/* ------------------------------------------------------------ handlers */

struct call {
    struct http_req rq;
    struct http_resp rs;
    char path[TRACK_TOKEN_MAX + 16];
};

static void
call(http_handler_fn fn, void *arg, struct call *c, const char *method,
     const char *path, const char *client, const char *ua, const char *body)
{
    buf_fini(&c->rs.body);
    memset(c, 0, sizeof(*c));
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->rq.method = method;
    c->rq.path = c->path;
    c->rq.query = "";
    c->rq.client = client;
    c->rq.user_agent = ua;
    c->rq.body = body;
    c->rq.body_len = body ? strlen(body) : 0;
    buf_init(&c->rs.body, 65536);
    fn(arg, &c->rq, &c->rs);
}

static void
path_of(const struct track_key *k, const struct track_token *t,
        const char *prefix, const char *suffix, char *out, size_t n)
{
    char tok[TRACK_TOKEN_MAX];
    struct err e;

    assert_true(track_token_make(k, t, tok, sizeof(tok), &e) > 0);
    snprintf(out, n, "%s%s%s", prefix, tok, suffix);
}

struct rows {
    struct events_report_row r;
    int n;
};

static int
keep(void *ctx, const struct events_report_row *row)
{
    struct rows *rs = ctx;

    rs->r = *row;
    rs->n++;
    return 0;
}

static void
test_handlers(void **state)
{
    struct track_http_settings s = {keyfile, nets, 5};
    struct events_settings es = {0};
    struct track_http_stats st;
    struct track_http *th;
    struct events *ev;
    struct events_db *db;
    struct track_key k;
    struct track_token t;
    struct call c;
    struct rows rs;
    struct err e;
    char p[TRACK_TOKEN_MAX + 16], why[200];
    size_t len;

    (void)state;
    memset(&c, 0, sizeof(c));
    err_clear(&e);
    es.store = store;
    es.buffer_max = 1000;
    assert_non_null(ev = events_open(&es, &e));
    assert_int_equal(track_key_load(keyfile, &k, &e), 0);
    th = track_http_new(&s, ev, &e);
    if (th == NULL)
        fail_msg("track_http_new: %s", e.text);

    /* the pixel: a person, Apple's network, Google's proxy */
    fill(&t, TRACK_OPEN, "");
    path_of(&k, &t, "/o/", ".gif", p, sizeof(p));
    call(track_http_open, th, &c, "GET", p, "192.0.2.7", "Thunderbird", NULL);
    assert_int_equal(c.rs.status, 200);
    assert_string_equal(c.rs.content_type, "image/gif");
    assert_int_equal(c.rs.no_store, 1);
    assert_int_equal(c.rs.body.len, 43);
    assert_memory_equal(c.rs.body.data, "GIF89a\x01\x00\x01\x00", 10);
    call(track_http_open, th, &c, "GET", p, "17.58.1.2", "Mozilla/5.0", NULL);
    assert_int_equal(c.rs.status, 200);
    call(track_http_open, th, &c, "GET", p, "198.51.100.1",
         "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", NULL);
    /* the pixel's token without .gif, and a click token as a pixel */
    p[strlen(p) - 4] = '\0';
    call(track_http_open, th, &c, "GET", p, "192.0.2.7", "", NULL);
    assert_int_equal(c.rs.status, 404);
    fill(&t, TRACK_CLICK, "https://example.com/x");
    path_of(&k, &t, "/o/", ".gif", p, sizeof(p));
    call(track_http_open, th, &c, "GET", p, "192.0.2.7", "", NULL);
    assert_int_equal(c.rs.status, 404);

    /* a click: a person an hour after, a scanner within the window */
    fill(&t, TRACK_CLICK, "https://example.com/a?b=1&c=2");
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    call(track_http_click, th, &c, "GET", p, "192.0.2.7", "Firefox", NULL);
    assert_int_equal(c.rs.status, 302);
    assert_string_equal(c.rs.location, "https://example.com/a?b=1&c=2");
    t.made = (unsigned long)time(NULL);
    t.index = 0;
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    call(track_http_click, th, &c, "GET", p, "203.0.113.9", "scanner", NULL);
    assert_int_equal(c.rs.status, 302);
    /* a sweep of all three links by one client long after delivery: the
     * third is a machine click */
    fill(&t, TRACK_CLICK, "https://example.com/1");
    t.index = 0;
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    call(track_http_click, th, &c, "GET", p, "198.51.100.50", "x", NULL);
    t.index = 1;
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    call(track_http_click, th, &c, "GET", p, "198.51.100.50", "x", NULL);
    track_http_stats(th, &st);
    assert_int_equal(st.clicks, 3);
    assert_int_equal(st.clicks_machine, 1);
    t.index = 2;
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    call(track_http_click, th, &c, "GET", p, "198.51.100.50", "x", NULL);
    assert_int_equal(c.rs.status, 302);
    track_http_stats(th, &st);
    assert_int_equal(st.clicks, 3);
    assert_int_equal(st.clicks_machine, 2);

    /* forged: altered, truncated, another key's, garbage, not http(s) */
    fill(&t, TRACK_CLICK, "https://example.com/a");
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    len = strlen(p);
    p[len - 5] = p[len - 5] == 'A' ? 'B' : 'A';
    call(track_http_click, th, &c, "GET", p, "192.0.2.66", "", NULL);
    assert_int_equal(c.rs.status, 404);
    assert_string_equal(c.rs.location, "");
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    p[len - 3] = '\0';
    call(track_http_click, th, &c, "GET", p, "192.0.2.66", "", NULL);
    assert_int_equal(c.rs.status, 404);
    assert_string_equal(c.rs.location, "");
    call(track_http_click, th, &c, "GET", "/c/https://evil.example/",
         "192.0.2.66", "", NULL);
    assert_int_equal(c.rs.status, 404);
    assert_string_equal(c.rs.location, "");
    call(track_http_click, th, &c, "GET", "/c/", "192.0.2.66", "", NULL);
    assert_int_equal(c.rs.status, 404);
    fill(&t, TRACK_CLICK, "javascript:alert(1)");
    path_of(&k, &t, "/c/", "", p, sizeof(p));
    call(track_http_click, th, &c, "GET", p, "192.0.2.66", "", NULL);
    assert_int_equal(c.rs.status, 404);
    assert_string_equal(c.rs.location, "");
    call(track_http_click, th, &c, "DELETE", p, "192.0.2.66", "", NULL);
    assert_int_equal(c.rs.status, 405);
    track_http_stats(th, &st);
    assert_int_equal(st.forged, 7);

    /* unsubscribe: the page, a wrong body, the one-click POST */
    fill(&t, TRACK_UNSUB, "");
    path_of(&k, &t, "/u/", "", p, sizeof(p));
    call(track_http_unsub, th, &c, "GET", p, "192.0.2.7", "", NULL);
    assert_int_equal(c.rs.status, 200);
    assert_non_null(strstr(buf_str(&c.rs.body), "<form method=\"post\""));
    assert_non_null(strstr(buf_str(&c.rs.body), "bob@example.net"));
    assert_int_equal(
        events_suppressed(ev, "bob@example.net", "", why, sizeof(why)), 0);
    call(track_http_unsub, th, &c, "POST", p, "192.0.2.7", "", "yes");
    assert_int_equal(c.rs.status, 400);
    call(track_http_unsub, th, &c, "POST", p, "192.0.2.7", "",
         "List-Unsubscribe=One-Click");
    assert_int_equal(c.rs.status, 200);
    assert_non_null(strstr(buf_str(&c.rs.body), "is unsubscribed"));
    assert_int_equal(events_flush(ev, 5000), 0);
    assert_int_equal(
        events_suppressed(ev, "bob@example.net", "", why, sizeof(why)), 1);
    if (strncmp(why, "unsubscribe, ", 13) != 0)
        fail_msg("got why \"%s\", want unsubscribe", why);
    /* a per-message token names nobody */
    t.rcpt[0] = '\0';
    path_of(&k, &t, "/u/", "", p, sizeof(p));
    call(track_http_unsub, th, &c, "POST", p, "192.0.2.7", "",
         "List-Unsubscribe=One-Click");
    assert_int_equal(c.rs.status, 404);

    events_close(ev);
    db = events_db_open(store, EVENTS_DB_READONLY, &e);
    assert_non_null(db);
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(events_db_report(db, NULL, 0, 0, keep, &rs, &e), 0);
    assert_int_equal(rs.n, 1);
    if (rs.r.opened_human != 1 || rs.r.opened_machine != 2 ||
        rs.r.clicked_human != 3 || rs.r.clicked_machine != 2 ||
        rs.r.unsubscribed != 1)
        fail_msg("got opens %llu/%llu clicks %llu/%llu unsub %llu, want "
                 "1/2 3/2 1",
                 rs.r.opened_human, rs.r.opened_machine, rs.r.clicked_human,
                 rs.r.clicked_machine, rs.r.unsubscribed);
    events_db_close(db);
    buf_fini(&c.rs.body);
    track_http_free(th);
    track_key_free(&k);
}

static void
test_bad_settings(void **state)
{
    struct track_http_settings s = {shortkey, NULL, 0};
    char badnets[400];
    struct err e;

    (void)state;
    assert_null(track_http_new(&s, NULL, &e));
    if (strncmp(e.text, "key_file: ", 10) != 0)
        fail_msg("got \"%s\"", e.text);
    snprintf(badnets, sizeof(badnets), "%s/badnets", dir);
    write_file(badnets, "17.0.0.0/8\nnot-a-net\n", 21);
    s.key_file = keyfile;
    s.machine_networks = badnets;
    assert_null(track_http_new(&s, NULL, &e));
    if (strstr(e.text, ":2") == NULL)
        fail_msg("got \"%s\", want the bad line", e.text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_load),
        cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_handlers),
        cmocka_unit_test(test_bad_settings),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
