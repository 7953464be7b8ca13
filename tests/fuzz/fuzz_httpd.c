/*
 * fuzz_httpd - the request handling the HTTP listener does itself
 *
 * libmicrohttpd parses HTTP; what relaychain adds is fuzzed here: the
 * request target split into path and query, the route found for a path
 * and method, the Authorization header (Basic and Bearer) and the text
 * an access line gets. The input is one octet choosing the method, then
 * the target up to the first newline, then the Authorization value.
 * Besides the sanitizers, the target traps when a promise is broken: a
 * split that does not give the target back, a route whose prefix does
 * not take the path, a 405 without its Allow, Basic credentials with an
 * empty user or a ':' in it, a token of other characters, outputs left
 * set on a refusal, or a log text with a space or control character.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_noop(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    (void)arg;
    (void)rq;
    (void)rs;
}

static struct httpd *
fuzz_httpd(void)
{
    static struct httpd *h;
    struct httpd_settings s;
    struct err e;

    if (h != NULL)
        return h;
    memset(&s, 0, sizeof(s));
    if ((h = httpd_new(&s, &e)) == NULL ||
        httpd_route_methods(h, "/metrics", HTTPD_GET, fuzz_noop, NULL, &e) <
            0 ||
        httpd_route_methods(h, "/healthz", HTTPD_GET, fuzz_noop, NULL, &e) <
            0 ||
        httpd_route(h, "/o/", fuzz_noop, NULL, &e) < 0 ||
        httpd_route(h, "/c/", fuzz_noop, NULL, &e) < 0 ||
        httpd_route(h, "/u/", fuzz_noop, NULL, &e) < 0 ||
        httpd_route_methods(h, "/api/", HTTPD_GET | HTTPD_AUTH, fuzz_noop,
                            NULL, &e) < 0)
        abort();
    return h;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", ""};
    char in[4 * 1024 + 1], path[HTTPD_PATH_MAX], query[HTTPD_PATH_MAX];
    char user[HTTPD_CRED_MAX + 1], pass[HTTPD_CRED_MAX + 1],
        tok[HTTPD_CRED_MAX + 1], allow[32], logt[256];
    const char *method, *uri, *auth;
    struct httpd *h = fuzz_httpd();
    char *nl;
    size_t i;
    int rc;

    if (size < 1 || size > sizeof(in) - 1)
        return 0;
    method = methods[data[0] % 8];
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    uri = in;
    auth = "";
    if ((nl = strchr(in, '\n')) != NULL) {
        *nl = '\0';
        auth = nl + 1;
    }

    /* the target */
    if (httpd_split_uri(uri, path, query, sizeof(path)) == 0) {
        size_t pl = strlen(path);

        if (path[0] != '/' || strchr(path, '?') != NULL ||
            strncmp(uri, path, pl) != 0)
            abort();
        if (uri[pl] == '?' ? strcmp(uri + pl + 1, query) != 0
                           : (uri[pl] != '\0' || query[0] != '\0'))
            abort();
        rc = httpd_match(h, path, method, allow, sizeof(allow));
        if (rc == -405 && allow[0] == '\0')
            abort();
        if (rc != -404 && rc != -405 && (rc < 0 || rc >= 6))
            abort();
    }

    /* the Authorization header */
    rc = httpd_auth_parse(auth, user, pass, tok);
    if (rc == 1 && (user[0] == '\0' || strchr(user, ':') != NULL ||
                    strlen(user) > HTTPD_CRED_MAX ||
                    strlen(pass) > HTTPD_CRED_MAX || tok[0] != '\0'))
        abort();
    if (rc == 2 &&
        (tok[0] == '\0' || user[0] != '\0' || pass[0] != '\0' ||
         strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789-._~+/=") != strlen(tok)))
        abort();
    if (rc == -1 && (user[0] != '\0' || pass[0] != '\0' || tok[0] != '\0'))
        abort();
    if (rc != 1 && rc != 2 && rc != -1)
        abort();

    /* the access line */
    httpd_log_text(uri, logt, sizeof(logt));
    for (i = 0; logt[i] != '\0'; i++)
        if (logt[i] <= ' ' || logt[i] >= 0x7f)
            abort();
    if (i >= sizeof(logt))
        abort();
    return 0;
}
