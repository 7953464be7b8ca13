/*
 * events_int - the events writer's object, shared by events.c (the
 * writer) and events_in.c (what comes back to the VERP domain and the
 * complaint address); nothing else includes it.
 */
#ifndef RC_EVENTS_INT_H
#define RC_EVENTS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "queue/events.h"
#include "queue/verp.h"

#define EVENTS_PATH_MAX 4096
/* RCPT lookups in flight at once: one connection each (a lookup waits
 * for a free one, never for the writer) */
#define EVENTS_READERS 4

struct regmap;
struct events_db;
struct cidr_list; /* ---- verp */

struct events {
    char store[EVENTS_PATH_MAX], password_file[EVENTS_PATH_MAX];
    char spool[EVENTS_PATH_MAX], replay[EVENTS_PATH_MAX + 8];
    struct regmap *streams;
    int stream_header; /* streams also come from stream_header */
    int suppress_stream, drop;
    long long suppress_expiry; /* seconds; 0: entries never expire */
    size_t batch_max;
    long long batch_ms;

    pthread_mutex_t lock; /* guards the ring, the counters, the flags */
    pthread_cond_t wake, idle;
    char **ring;
    size_t cap, head, n;
    int stopping, busy, store_ok, spill;
    unsigned long long written, replayed, lost;
    char last_error[ERR_TEXT_MAX];
    atomic_uint seq;

    pthread_mutex_t spool_lock; /* guards spool_fd and spool_lines */
    int spool_fd, spool_dirty;
    size_t spool_lines, replay_lines;

    /* the suppression lookups' connections, each under its lock */
    struct events_reader {
        pthread_mutex_t lock;
        struct events_db *db;
        int bad; /* a lookup failed: the writer reopens it */
    } readers[EVENTS_READERS];
    int nreaders;
    atomic_uint next_reader;
    long long rdb_retry_ms;

    struct events_db *db; /* the writer's; NULL while failing */
    long long retry_ms, retry_step;
    pthread_t thread;
    int started;

    /* ---- verp: set once at open, read by every thread */
    char verp_domain[256], fbl_address[256], fbl_header[80];
    struct verp_key verp_key;
    struct cidr_list *fbl_clients; /* never NULL once open */
    /* what came back (events_in.c), under lock */
    struct events_inbound_counts in;
    /* ---- end verp */
};

/* events_spool_durable - lines[0..n) appended to the spool with one
 * fdatasync; 0 or -1 (logged). */
int events_spool_durable(struct events *ev, char *const *lines, size_t n);

/* events_reader_take - a reader connection, locked: the first free one
 * from a rotating start, else the start's when all are busy; NULL (none
 * locked) when that one failed and waits for the writer to reopen it.
 * events_reader_give - unlock r; failed: its lookup failed, so the
 * writer reopens it. */
struct events_reader *events_reader_take(struct events *ev);
void events_reader_give(struct events_reader *r, int failed);

#endif
