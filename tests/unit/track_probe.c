/*
 * track-probe - answer one request with the tracking handlers, for the
 * tests
 *
 *   track-probe KEY_FILE STORE METHOD PATH [BODY]
 *
 * Opens the events store STORE ("sqlite:/path", as relaychain.conf's
 * events_store) and the handlers of queue/track_http.h with KEY_FILE,
 * hands them one request (client 192.0.2.80, user agent "probe") as
 * relaychaind's HTTP listener would, waits until the events are written,
 * and prints "STATUS LOCATION" (LOCATION "-" when none) and the body.
 * Exit 0 when the handler answered, 1 when the store or the key could
 * not be opened, 2 on misuse. The handlers are the code under test; the
 * HTTP transport is the listener's.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "util/buf.h"
#include "queue/events.h"
#include "queue/track_http.h"

int
main(int argc, char **argv)
{
    struct track_http_settings hs = {NULL, NULL, TRACK_HTTP_CLICK_WINDOW};
    struct events_settings es;
    struct track_http *th;
    struct events *ev;
    struct http_req rq;
    struct http_resp rs;
    struct err e;
    http_handler_fn fn;

    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: track-probe KEY_FILE STORE METHOD PATH "
                        "[BODY]\n");
        return 2;
    }
    if (strncmp(argv[4], "/o/", 3) == 0)
        fn = track_http_open;
    else if (strncmp(argv[4], "/c/", 3) == 0)
        fn = track_http_click;
    else if (strncmp(argv[4], "/u/", 3) == 0)
        fn = track_http_unsub;
    else {
        fprintf(stderr, "track-probe: no handler for %s\n", argv[4]);
        return 2;
    }
    memset(&es, 0, sizeof(es));
    es.store = argv[2];
    es.buffer_max = 100;
    es.batch_max = 10;
    es.batch_ms = 10;
    err_clear(&e);
    if ((ev = events_open(&es, &e)) == NULL) {
        fprintf(stderr, "track-probe: %s\n", e.text);
        return 1;
    }
    hs.key_file = argv[1];
    if ((th = track_http_new(&hs, ev, &e)) == NULL) {
        fprintf(stderr, "track-probe: %s\n", e.text);
        events_close(ev);
        return 1;
    }
    memset(&rq, 0, sizeof(rq));
    rq.method = argv[3];
    rq.path = argv[4];
    rq.query = "";
    rq.client = "192.0.2.80";
    rq.user_agent = "probe";
    rq.body = argc == 6 ? argv[5] : NULL;
    rq.body_len = argc == 6 ? strlen(argv[5]) : 0;
    memset(&rs, 0, sizeof(rs));
    buf_init(&rs.body, 1 << 20);
    fn(th, &rq, &rs);
    printf("%d %s\n", rs.status, rs.location[0] ? rs.location : "-");
    if (rs.body.len > 0)
        fwrite(rs.body.data, 1, rs.body.len, stdout);
    buf_fini(&rs.body);
    if (events_flush(ev, 10000) < 0)
        fprintf(stderr, "track-probe: events not written in 10 s\n");
    track_http_free(th);
    events_close(ev);
    return 0;
}
