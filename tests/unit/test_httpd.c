/*
 * test_httpd - the HTTP listener: routing, and a real server on loopback
 *
 * httpd_match() picks the longest prefix, takes a prefix ending in '/'
 * as a tree and any other as one path, and tells 404 from 405 with the
 * methods to allow; httpd_split_uri() keeps the path as sent. Then a
 * listener on a kernel-picked 127.0.0.1 port, spoken to with libcurl:
 * a handler sees method, path, query, client, user agent and a POST
 * body; its status, type, Location and body come back; unknown paths
 * get 404, wrong methods 405 with Allow, a body over the limit 413; a
 * second request reuses the connection (keep-alive); a target that is
 * not an absolute path gets 400.
 */
#include "config.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

#include "net/httpd.h"

static void
noop(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    (void)arg;
    (void)rq;
    (void)rs;
}

static void
test_match(void **state)
{
    static const struct {
        const char *name, *path, *method;
        int want; /* route index, -404 or -405 */
        const char *allow;
    } cases[] = {
        {"exact", "/metrics", "GET", 0, ""},
        {"exact with a tail", "/metricsx", "GET", -404, ""},
        {"exact with a slash", "/metrics/", "GET", -404, ""},
        {"head like get", "/metrics", "HEAD", 0, ""},
        {"post to get-only", "/metrics", "POST", -405, "GET, HEAD"},
        {"put", "/metrics", "PUT", -405, "GET, HEAD"},
        {"tree", "/o/abc.gif", "GET", 1, ""},
        {"tree root", "/o/", "GET", 1, ""},
        {"tree without slash", "/o", "GET", -404, ""},
        {"longest prefix", "/o/x/y", "POST", 2, ""},
        {"longest prefix, get-only tree", "/o/x/y", "GET", -405, "POST"},
        {"post tree", "/u/t", "POST", 3, ""},
        {"delete on post tree", "/u/t", "DELETE", -405, "GET, HEAD, POST"},
        {"root", "/", "GET", -404, ""},
        {"empty", "", "GET", -404, ""},
    };
    struct httpd_settings s;
    struct httpd *h;
    struct err e;
    char allow[32];
    size_t i;

    (void)state;
    memset(&s, 0, sizeof(s));
    assert_non_null(h = httpd_new(&s, &e));
    assert_int_equal(
        httpd_route_methods(h, "/metrics", HTTPD_GET, noop, NULL, &e), 0);
    assert_int_equal(httpd_route(h, "/o/", noop, NULL, &e), 0);
    assert_int_equal(
        httpd_route_methods(h, "/o/x/", HTTPD_POST, noop, NULL, &e), 0);
    assert_int_equal(httpd_route(h, "/u/", noop, NULL, &e), 0);
    unit_int_eq("twice", httpd_route(h, "/u/", noop, NULL, &e), -1);
    unit_int_eq("no slash", httpd_route(h, "u/", noop, NULL, &e), -1);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unit_int_eq(cases[i].name,
                    httpd_match(h, cases[i].path, cases[i].method, allow,
                                sizeof(allow)),
                    cases[i].want);
        if (cases[i].want == -405)
            unit_str_eq(cases[i].name, allow, cases[i].allow);
    }
    httpd_free(h);
}

static void
test_split(void **state)
{
    static const struct {
        const char *name, *uri;
        int want;
        const char *path, *query;
    } cases[] = {
        {"plain", "/c/TOKEN", 0, "/c/TOKEN", ""},
        {"query", "/c/T?a=1&b=%20", 0, "/c/T", "a=1&b=%20"},
        {"encoded kept", "/c/%2e%2e/x", 0, "/c/%2e%2e/x", ""},
        {"empty query", "/x?", 0, "/x", ""},
        {"absolute form", "http://a/x", -1, "", ""},
        {"asterisk", "*", -1, "", ""},
        {"too long", "/aaaaaaaaaaaaaaaaaaaa", -1, "", ""},
    };
    char path[16], query[16];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unit_int_eq(cases[i].name,
                    httpd_split_uri(cases[i].uri, path, query, sizeof(path)),
                    cases[i].want);
        if (cases[i].want == 0) {
            unit_str_eq(cases[i].name, path, cases[i].path);
            unit_str_eq(cases[i].name, query, cases[i].query);
        }
    }
    httpd_log_text("/a b\r\n\x80z", path, sizeof(path));
    unit_str_eq("log text", path, "/a?b???z");
}

static void
test_auth_parse(void **state)
{
    static const struct {
        const char *name, *in;
        int want;
        const char *user, *pass, *token;
    } cases[] = {
        {"basic", "Basic YWRtaW46c2VjcmV0IGhvcnNl", 1, "admin", "secret horse",
         ""},
        {"basic, case and spaces", "basic   YWRtaW46c2VjcmV0IGhvcnNl  ", 1,
         "admin", "secret horse", ""},
        {"colon in the password", "Basic YTpiOmM=", 1, "a", "b:c", ""},
        {"empty password", "Basic YTo=", 1, "a", "", ""},
        {"empty user", "Basic OmI=", -1, "", "", ""},
        {"no colon", "Basic YWJj", -1, "", "", ""},
        {"NUL inside", "Basic YQBiOmM=", -1, "", "", ""},
        {"bad base64", "Basic YW*k", -1, "", "", ""},
        {"padding inside", "Basic YQ==YTpi", -1, "", "", ""},
        {"length not a multiple of 4", "Basic YTpiY", -1, "", "", ""},
        {"empty", "Basic ", -1, "", "", ""},
        {"bearer", "Bearer tok-0123456789abcdefXYZ", 2, "", "",
         "tok-0123456789abcdefXYZ"},
        {"bearer with padding", "Bearer abc==", 2, "", "", "abc=="},
        {"bearer with a space inside", "Bearer abc def", -1, "", "", ""},
        {"bearer with a quote", "Bearer abc\"", -1, "", "", ""},
        {"digest", "Digest username=\"a\"", -1, "", "", ""},
        {"nothing", "", -1, "", "", ""},
    };
    char user[HTTPD_CRED_MAX + 1], pass[HTTPD_CRED_MAX + 1],
        tok[HTTPD_CRED_MAX + 1];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unit_int_eq(cases[i].name,
                    httpd_auth_parse(cases[i].in, user, pass, tok),
                    cases[i].want);
        unit_str_eq(cases[i].name, user, cases[i].user);
        unit_str_eq(cases[i].name, pass, cases[i].pass);
        unit_str_eq(cases[i].name, tok, cases[i].token);
    }
}

/* ---------------------------------------------------------- the server */

static void
echo(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    struct err e;

    (void)arg;
    rs->status = 201;
    rs->content_type = "text/plain";
    (void)buf_printf(&rs->body, &e, "%s %s ?%s from %s ua=%s body=%.*s",
                     rq->method, rq->path, rq->query, rq->client,
                     rq->user_agent, (int)rq->body_len, rq->body);
}

static void
redirect(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    (void)arg;
    (void)rq;
    rs->status = 302;
    snprintf(rs->location, sizeof(rs->location), "https://example.org/x");
}

static size_t
sink(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    struct err e;

    return buf_append(b, p, size * n, &e) < 0 ? 0 : size * n;
}

struct got {
    long status;
    long connects;
    struct buf body;
    char allow[64];
    char location[128];
};

static size_t
header(char *p, size_t size, size_t n, void *arg)
{
    struct got *g = arg;
    size_t len = size * n;

    if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0)
        snprintf(g->allow, sizeof(g->allow), "%.*s", (int)(len - 9), p + 7);
    if (len > 10 && strncasecmp(p, "Location: ", 10) == 0)
        snprintf(g->location, sizeof(g->location), "%.*s", (int)(len - 12),
                 p + 10);
    return len;
}

static void
fetch(CURL *c, int port, const char *method, const char *path,
      const char *body, struct got *g)
{
    char url[256];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    buf_reset(&g->body);
    g->allow[0] = g->location[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "unit/1");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_NOBODY,
                         strcmp(method, "HEAD") == 0 ? 1L : 0L);
    }
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &g->connects);
}

static void
test_server(void **state)
{
    struct httpd_settings s;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    struct httpd *h;
    struct got g;
    struct err e;
    char big[200];
    CURL *c;
    int fd, port;

    (void)state;
    memset(&s, 0, sizeof(s));
    s.threads = 1;
    s.max_connections = 16;
    s.max_per_client = 8;
    s.body_limit = 100;
    s.timeout_s = 5;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    port = ntohs(sin.sin_port);
    assert_non_null(h = httpd_new(&s, &e));
    assert_int_equal(httpd_add_socket(h, fd, &e), 0);
    assert_int_equal(httpd_route(h, "/e/", echo, NULL, &e), 0);
    assert_int_equal(
        httpd_route_methods(h, "/r", HTTPD_GET, redirect, NULL, &e), 0);
    assert_int_equal(httpd_start(h, &e), 0);
    unit_int_eq("route after start", httpd_route(h, "/z", echo, NULL, &e), -1);

    assert_non_null(c = curl_easy_init());
    memset(&g, 0, sizeof(g));
    buf_init(&g.body, 0);
    fetch(c, port, "GET", "/e/a%20b?x=1", NULL, &g);
    unit_int_eq("get status", g.status, 201);
    unit_str_eq("get body", buf_str(&g.body),
                "GET /e/a%20b ?x=1 from 127.0.0.1 ua=unit/1 body=");
    fetch(c, port, "POST", "/e/p", "k=v&w=1", &g);
    unit_int_eq("post status", g.status, 201);
    unit_str_eq("post body", buf_str(&g.body),
                "POST /e/p ? from 127.0.0.1 ua=unit/1 body=k=v&w=1");
    unit_int_eq("keep-alive: no new connection", g.connects, 0);
    fetch(c, port, "GET", "/r", NULL, &g);
    unit_int_eq("redirect", g.status, 302);
    unit_str_eq("location", g.location, "https://example.org/x");
    fetch(c, port, "GET", "/nothing", NULL, &g);
    unit_int_eq("unknown path", g.status, 404);
    fetch(c, port, "POST", "/r", "x", &g);
    unit_int_eq("post to get-only", g.status, 405);
    unit_str_eq("allow", g.allow, "GET, HEAD");
    fetch(c, port, "HEAD", "/e/h", NULL, &g);
    unit_int_eq("head", g.status, 201);
    unit_int_eq("head has no body", (long long)g.body.len, 0);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fetch(c, port, "POST", "/e/big", big, &g);
    unit_int_eq("body over the limit", g.status, 413);
    curl_easy_setopt(c, CURLOPT_REQUEST_TARGET, "*");
    fetch(c, port, "OPTIONS", "/e/", NULL, &g);
    unit_int_eq("asterisk target", g.status, 400);
    curl_easy_cleanup(c);
    buf_fini(&g.body);
    httpd_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_auth_parse),
        cmocka_unit_test(test_server),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
