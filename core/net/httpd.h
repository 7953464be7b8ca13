/*
 * httpd - relaychaind's HTTP listener: routes over libmicrohttpd
 *
 * The daemon binds the http_listen sockets before it drops privileges,
 * makes a struct httpd from the configuration (httpd_new), registers the
 * paths it serves (httpd_route: /metrics and /healthz from the daemon,
 * the tracking and unsubscribe paths from their own code), hands over
 * the sockets (httpd_add_socket) and starts it (httpd_start): one
 * libmicrohttpd daemon per socket, each with its internal polling thread
 * or a pool of http_threads. libmicrohttpd parses HTTP and holds the
 * limits of a connection (count, per client, timeout, header memory);
 * this module bounds the body (http_body_limit: 413 past it), finds the
 * route (longest prefix; 404 for none, 405 with Allow for a method the
 * route does not take), calls the handler with a complete struct
 * http_req (net/http_route.h), sends its struct http_resp and logs one
 * access line per request:
 *
 *   http: client=127.0.0.1, method=GET, path=/healthz, status=200,
 *         size=3, 0.2ms
 *
 * A prefix ending in '/' takes every path under it ("/o/" takes
 * "/o/TOKEN"); any other prefix is one exact path ("/metrics").
 *
 * Ownership: struct httpd owns its routes (the prefixes are copied; the
 * args are the caller's and must outlive httpd_stop), the sockets
 * handed over (closed by httpd_free) and the TLS certificate and key
 * read into memory. Routes are added before httpd_start and never after:
 * the request threads read the table without a lock. Errors come back in
 * struct err; nothing here prints.
 */
#ifndef RC_HTTPD_H
#define RC_HTTPD_H

#include <stddef.h>

#include "net/http_route.h"
#include "util/cfg.h"
#include "util/err.h"

#define HTTPD_ROUTE_MAX 32
#define HTTPD_LISTEN_MAX 8
#define HTTPD_PREFIX_MAX 64
#define HTTPD_PATH_MAX 2048

/* The methods a route takes, and whether it needs credentials. */
#define HTTPD_GET 0x1u  /* GET and HEAD */
#define HTTPD_POST 0x2u /* POST, with a body */
#define HTTPD_AUTH                                                            \
    0x4u /* Authorization: Basic or Bearer, checked by the                    \
            httpd_auth_fn; else 401 */

/* httpd_auth_fn - 1 when the credentials are good, 0 when not. For
 * Basic, user and pass are set and token NULL; for Bearer, token is set
 * and user and pass NULL. client is the client's address (for a
 * failure rate). */
typedef int (*httpd_auth_fn)(void *arg, const char *client, const char *user,
                             const char *pass, const char *token);

#define HTTPD_CRED_MAX 1024 /* user, password or token, in octets */

struct httpd_settings {
    unsigned threads;          /* per socket: 1 = the polling thread */
    unsigned max_connections;  /* per socket */
    unsigned max_per_client;   /* per socket and client address */
    size_t body_limit;         /* octets of a POST body */
    unsigned timeout_s;        /* an idle connection is closed after */
    const char *tls_cert_file; /* PEM; NULL: plain HTTP */
    const char *tls_key_file;
};

struct httpd;

/* httpd_settings_from - the settings of a checked main file; strings
 * borrowed from c. */
void httpd_settings_from(const struct cfg *c, struct httpd_settings *s);

/* httpd_new - a listener with no route and no socket yet; reads the
 * TLS files when set. NULL with e. Free with httpd_free. */
struct httpd *httpd_new(const struct httpd_settings *s, struct err *e);

/* httpd_route - serve prefix with fn(arg, ...), for GET, HEAD and POST.
 * 0, or -1 with e (too many routes, a prefix not starting with '/' or
 * too long, one registered twice, or the listener already started). */
int httpd_route(struct httpd *h, const char *prefix, http_handler_fn fn,
                void *arg, struct err *e);

/* httpd_route_methods - the same, for the methods of mask only. */
int httpd_route_methods(struct httpd *h, const char *prefix, unsigned mask,
                        http_handler_fn fn, void *arg, struct err *e);

/* httpd_set_auth - who checks the credentials of HTTPD_AUTH routes;
 * without it they answer 401 to everyone. Before httpd_start. */
void httpd_set_auth(struct httpd *h, httpd_auth_fn fn, void *arg);

/* httpd_add_socket - serve fd (bound and listening); h owns it from now
 * on, also when this fails. 0, or -1 with e. */
int httpd_add_socket(struct httpd *h, int fd, struct err *e);

/* httpd_start - start serving every socket. 0, or -1 with e. */
int httpd_start(struct httpd *h, struct err *e);

/* httpd_stop - stop accepting and end the threads; requests under way
 * are cut. */
void httpd_stop(struct httpd *h);

/* httpd_free - stop, close the sockets, free; accepts NULL. */
void httpd_free(struct httpd *h);

/* ---- the pure parts, for the tests and the fuzz target */

/* httpd_match - the route of path and method: its index (>= 0), or -404
 * (no route) or -405 (a route that does not take method; allow, of size
 * n, then names the methods it takes). */
int httpd_match(const struct httpd *h, const char *path, const char *method,
                char *allow, size_t n);

/* httpd_split_uri - the raw request target into path and query (after
 * '?', "" when none), each at most n - 1 octets; -1 when the target is
 * not an absolute path or does not fit. */
int httpd_split_uri(const char *uri, char *path, char *query, size_t n);

/* httpd_auth_parse - an Authorization header value: 1 for "Basic" with
 * the decoded user and password (each at most HTTPD_CRED_MAX octets,
 * no NUL, the user without ':'), 2 for "Bearer" with the token (the
 * RFC 6750 token68 characters only), -1 for anything else. user, pass
 * and token have HTTPD_CRED_MAX + 1 octets each. */
int httpd_auth_parse(const char *value, char *user, char *pass, char *token);

/* httpd_log_text - s made safe for one log line: at most n - 1 octets,
 * control characters, spaces and non-ASCII octets as '?'. */
void httpd_log_text(const char *s, char *out, size_t n);

#endif
