/*
 * track_http - the answers of relaychaind's HTTP listener to the
 * tracking paths: /o/TOKEN.gif (the open pixel), /c/TOKEN (a tracked
 * link) and /u/TOKEN (one-click unsubscribe, RFC 8058)
 *
 * Each handler is an http_handler_fn (net/http_route.h) whose arg is the
 * struct track_http; the listener registers them for "/o/", "/c/" and
 * "/u/". A token is checked with the key of key_file (the track stage's
 * key_file: util/track_token.h) before anything in it is used: a token
 * that does not verify, or is of another kind than its path, gets 404
 * and no redirect, and is counted. The module lives in core/queue
 * because it records events (queue/events.h); the listener above hands
 * it requests.
 *
 * Honest counting: an open fetched from a privacy proxy's network
 * (machine_networks, a file of CIDR ranges: the shipped one holds Apple
 * Mail Privacy Protection's) or by Google's image proxy (user agent
 * GoogleImageProxy) is a machine open; a click within click_window
 * seconds of the moment the stage made the token, or the click with
 * which one client has followed every link of a message (two to 64
 * links), is a machine click. The time rule counts from the moment the
 * stage ran, which is the delivery's within a second or two unless the
 * queue deferred the message; the clicks of a sweep before its last one
 * stay human (events are not rewritten). The events carry the flag in their
 * hard column, and "relaychain report" counts both apart. The "every link"
 * rule remembers clients in a bounded table (TRACK_HTTP_SLOTS, older
 * entries replaced), so a sweep spread over more time or more clients
 * than it holds is counted as human.
 *
 * Threads: the handlers may run in many listener threads at once; the
 * table has its own mutex, the counters are atomic. The object owns the
 * key, the network list and the table; the events store is borrowed
 * (NULL: nothing is recorded and an unsubscribe answers 503).
 */
#ifndef RC_TRACK_HTTP_H
#define RC_TRACK_HTTP_H

#include "util/err.h"
#include "net/http_route.h"
#include "queue/events.h"

/* The listener's defaults: the shipped list of networks (installed with
 * the documentation) and a window that link scanners fall in and
 * people, who open the message first, rarely do. */
#define TRACK_HTTP_NETWORKS_FILE "machine-networks.cidr"
#define TRACK_HTTP_CLICK_WINDOW 10

struct track_http_settings {
    const char *key_file;         /* required */
    const char *machine_networks; /* CIDR file, or NULL: none */
    long long click_window;       /* seconds; 0: no time rule */
};

struct track_http_stats {
    unsigned long long opens, opens_machine, clicks, clicks_machine,
        unsubscribes, forged;
};

struct track_http;

/* track_http_new - load the key and the network list. NULL with e set
 * ("key_file: PATH: ...", "machine_networks: PATH:LINE: ..."). */
struct track_http *track_http_new(const struct track_http_settings *s,
                                  struct events *ev, struct err *e);
void track_http_free(struct track_http *th);

void track_http_open(void *arg, const struct http_req *rq,
                     struct http_resp *rs);
void track_http_click(void *arg, const struct http_req *rq,
                      struct http_resp *rs);
void track_http_unsub(void *arg, const struct http_req *rq,
                      struct http_resp *rs);

void track_http_stats(struct track_http *th, struct track_http_stats *st);

#endif
