/*
 * milterd_int - what the milter front end's files share
 *
 * The front end is in six files: milterd.c (libmilter's callbacks, the
 * negotiation and each MTA connection's life, start and stop),
 * milterd_session.c (the envelope, the macros and the message as the
 * events bring them, within their limits), milterd_eom.c (the end of
 * message: the step, the verdict and the reply), milterd_replay.c (the
 * chain's edits as requests to the MTA), milterd_server.c (the progress
 * ticker and the count of ends of message under way) and
 * milterd_listen.c (the listening socket: its spec, mode and group).
 * This header is theirs alone: nothing outside core/milterd/ includes
 * it. Ownership is as milterd.h says.
 */
#ifndef RC_MILTERD_INT_H
#define RC_MILTERD_INT_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"
#include "util/cidr.h"
#include "util/err.h"
#include "milterd/milterd.h"
#include "msg/msg.h"

#define MILTERD_PROGRESS_MS 10000

struct milterd_rcpt {
    char *raw; /* as the MTA sent it: "<a@b>" */
};

struct milterd_server {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t tid;
    int started, stop;
    long interval_ms;
    struct milterd_session *busy; /* sessions in chain_run */
    struct memlimit *mem;         /* shared with smtpd; NULL: no count */
    unsigned inflight;            /* sessions in milterd_eom */
    int draining;                 /* milterd_drain() was called */
};

struct milterd_session {
    const struct conf *cf;
    struct milterd_server *srv;
    const struct milterd_ops *ops;
    void *ctx;
    unsigned long actions, proto;
    enum milterd_size_action size_action;
    /* connection */
    char *client_addr, *client_name, *helo, *auth_user, *daemon_name;
    char *tls_version;
    struct cidr_list *mynetworks; /* relaychain.conf's, for msg_env_origin */
    char qid[32];
    /* transaction */
    struct msg *m;
    char *sender_raw;
    struct milterd_rcpt *rcpts;
    size_t nrcpts;
    struct buf data;
    char **names; /* the MTA's field names, in order */
    size_t nnames, names_cap;
    int sep_done;    /* the empty line is in data */
    int over;        /* over message_size_limit or header_limit */
    int mem_over;    /* over smtpd_memory_limit: nothing more is kept */
    size_t mem_held; /* octets of data counted in srv->mem */
    int broken;      /* an event failed: answer tempfail */
    char broken_why[160];
    /* progress */
    struct milterd_session *busy_next;
    long long t_last;
};

struct mlfi_conn;

struct milterd {
    char *spec;
    char *unix_path; /* NULL for inet */
    int port;        /* inet */
    milterd_hold_fn hold;
    int done_fd;
    struct memlimit *mem;
    struct milterd_server *srv;
    pthread_t tid;
    int running;
    int rc;
    /* Under srv->lock: the MTA's connections, the callbacks running now,
     * and whether milterd_drain() took the connections back. */
    struct mlfi_conn *conns;
    unsigned calls;
    int reaped;
};

/* milterd_session.c */
char *milterd_strdup(const char *s);
/* milterd_reset - end the transaction: free the message and what it
 * counted, keep the connection's state. */
void milterd_reset(struct milterd_session *s);
/* milterd_qid - the queue id the log lines carry ("NOQUEUE" before the
 * MTA gave one). */
const char *milterd_qid(const struct milterd_session *s);
int milterd_addr(const char *raw, struct buf *out, struct err *e);

/* milterd_replay.c */
/* milterd_mta_failed - e for a request the MTA refused; returns -1. */
int milterd_mta_failed(struct err *e, const char *what, const char *name);
/* milterd_replay - every edit of the chain in m to the MTA, counted in
 * *nops; *body says whether the body was replaced. 0, or -1 with e. */
int milterd_replay(struct milterd_session *s, struct msg *m, unsigned *nops,
                   int *body, struct err *e);

/* milterd_server.c */
int milterd_inflight_enter(struct milterd_session *s);
void milterd_inflight_leave(struct milterd_session *s);
void milterd_busy_enter(struct milterd_session *s);
void milterd_busy_leave(struct milterd_session *s);

/* milterd_listen.c */
int milterd_listen_fd(const struct milterd *md);
int milterd_socket_mode(const struct cfg *c, mode_t *out, struct err *e);
int milterd_socket_perms(const struct milterd *md, const struct cfg *c,
                         mode_t m, struct err *e);

#endif
