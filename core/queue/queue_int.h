/*
 * queue_int - what the parts of the queue daemon share, inside core/queue
 *
 * Not for callers outside core/queue: they use queue.h. The daemon is
 * five files, each calling only those after it:
 *
 *     queue_run.c      the threads: workers, trigger, start, stop, reload
 *     queue_deliver.c  one delivery attempt: transactions per route,
 *                      outcomes, notifications, marks, backoff
 *     queue.c          the spool: index, commit, scan, open, free
 *     queue_dest.c     per destination domain: limits and pauses
 *     queue_route.c    the settings a reload swaps: routes and pools
 *
 * The structs below are theirs in common; q->lock guards what struct
 * queue says it does. Each function is described where it is defined.
 */
#ifndef RC_QUEUE_INT_H
#define RC_QUEUE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "util/cfg.h"
#include "util/err.h"
#include "queue/queue.h"
#include "queue/events.h"

#define QUEUE_PATH_MAX 3072

struct queue_entry {
    struct queue_entry *hnext;
    long long due_ms;
    size_t heap_at; /* SIZE_MAX while its attempt runs */
    char id[QUEUE_ID_MAX];
};

struct queue_route {
    char *nexthop;
    struct smtpc_pool *pool;
    /* under q->lock */
    long long dead_until_ms;
    int dead_code;
    char dead_why[512];
};

struct queue_transport {
    char *domain; /* "example.com", ".example.com" or "*" */
    size_t route;
};

/* What a reload may change. Read-only once built, except the routes'
 * suspension state (under q->lock); shared by reference: the queue holds
 * one, every attempt holds the one it started with. */
struct queue_settings {
    atomic_uint refs;
    long long min_backoff_ms, max_backoff_ms, lifetime_ms, warn_ms;
    long long run_delay_ms;
    unsigned long long minfree;
    unsigned concurrency;
    struct queue_route *routes; /* routes[0] is next_hop */
    size_t nroutes;
    struct queue_transport *transports;
    size_t ntransports;
    /* queue_dest.c: per destination domain; 0: no limit */
    unsigned dest_limit;
    long long dest_delay_ms, throttle_ms;
};

struct queue {
    char dir[QUEUE_PATH_MAX];
    int dfd, tmp_fd, queue_fd, hold_fd, corrupt_fd, defer_fd;
    int lock_fd, fifo_fd;
    char hostname[256];
    size_t file_max;
    atomic_uint seq;

    pthread_mutex_t lock;       /* guards what follows and the routes' state */
    struct queue_settings *set; /* the current settings: one reference */
    unsigned workers;           /* worker threads running */
    pthread_cond_t wake;        /* workers: an entry may be due */
    pthread_cond_t gone;        /* a thread ended */
    struct queue_entry **heap;
    size_t nheap, heap_cap;
    struct queue_entry **table;
    size_t table_size, nentries;
    unsigned threads;
    int stopping;
    struct events *events; /* ---- events: NULL when events_store is unset */
    struct queue_dest **dests; /* queue_dest.c: the domains, by hash */
    size_t ndests;
    int dests_full_logged;
};

enum queue_verdict { QUEUE_DROP, QUEUE_RETRY };

/* queue.c */
long long queue_now_us(void);
long long queue_now_ms(void);
void queue_table_remove(struct queue *q, struct queue_entry *en);
void queue_heap_down(struct queue *q, size_t i);
int queue_heap_push(struct queue *q, struct queue_entry *en);
struct queue_entry *queue_heap_pop(struct queue *q);
void queue_schedule(struct queue *q, const char *id, long long due_ms);
void queue_flush(struct queue *q, const char *id);
int queue_write(struct queue *q, const struct queue_msg *m, struct err *e);
size_t queue_scan(struct queue *q, int recovery);
void queue_clean(struct queue *q);

/* queue_deliver.c */
int queue_attempt(struct queue *q, const char *id, long long *next_ms);

/* queue_dest.c */
#define QUEUE_DEST_WHY_MAX 440
#define QUEUE_DEST_BUSY_RETRY_MS 1000
enum {
    QUEUE_DEST_TAKEN,     /* go; give it back with queue_dest_give */
    QUEUE_DEST_UNTRACKED, /* go, without limits; nothing to give back */
    QUEUE_DEST_BUSY,      /* not now: free_ms says when */
    QUEUE_DEST_PAUSED     /* throttled: why, until free_ms */
};
void queue_dest_domain(const char *rcpt, char *out, size_t n);
int queue_dest_take(struct queue *q, const struct queue_settings *set,
                    const char *domain, long long now, long long *free_ms,
                    char *why, size_t n);
int queue_dest_throttles(int code, const char *text);
long long queue_dest_give(struct queue *q, const struct queue_settings *set,
                          const char *domain, long long now, int took,
                          int throttle_code, const char *throttle_text,
                          int delivered);
void queue_dest_resume(struct queue *q);
void queue_dest_free(struct queue *q);

/* queue_route.c */
size_t queue_route_for(const struct queue_settings *set, const char *rcpt);
struct queue_settings *queue_settings_new(const struct cfg *c, struct err *e);

#endif
