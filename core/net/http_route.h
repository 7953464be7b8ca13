/*
 * http_route.h - what relaychaind's HTTP listener hands to the code that
 * answers a path, and what it takes back.
 *
 * The listener (libmicrohttpd) owns the connection, the parsing and the
 * limits: a handler sees one complete request, already bounded, and fills
 * in one response. It never writes to a socket and never blocks on the
 * network; it may read the events store or the daemon's counters.
 *
 * Ownership: every field of struct http_req belongs to the listener and
 * lives until the handler returns. The handler owns nothing of the
 * response but what it puts in body; the listener sends it and calls
 * buf_fini on it.
 */
#ifndef RC_HTTP_ROUTE_H
#define RC_HTTP_ROUTE_H

#include <stddef.h>

#include "util/buf.h"

struct http_req {
    const char *method;     /* "GET", "HEAD", "POST" */
    const char *path;       /* as sent, without the query: "/c/TOKEN" */
    const char *query;      /* after '?', "" when none */
    const char *client;     /* the client's address, "192.0.2.1", "::1" */
    const char *user_agent; /* "" when none */
    const char *auth_user;  /* the authenticated user, NULL when none */
    const char *body;       /* POST: the body, bounded by the listener */
    size_t body_len;
};

#define HTTP_LOCATION_MAX 2048

struct http_resp {
    int status;                       /* 200, 302, 404, ... */
    const char *content_type;         /* a static string; NULL: none */
    char location[HTTP_LOCATION_MAX]; /* sent as Location when set */
    int no_store;                     /* Cache-Control: no-store */
    struct buf body;                  /* initialised by the listener */
};

/* http_handler_fn - answer rq in rs. The path matched the prefix the
 * handler was registered for. */
typedef void (*http_handler_fn)(void *arg, const struct http_req *rq,
                                struct http_resp *rs);

#endif /* RC_HTTP_ROUTE_H */
