/*
 * dsn - RFC 3464 delivery status notifications for queued mail
 *
 * queue_dsn_build() (dsn.c) turns a queue file as read back and the
 * outcome of some of its recipients into a whole report message; the
 * queue commits it as a new queue file with the null sender.
 * queue_dsn_code() gives the status code the delivery log line shows.
 * Nothing here logs or touches the disk.
 */
#ifndef RC_QUEUE_DSN_H
#define RC_QUEUE_DSN_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"
#include "queue/queue_file.h"

/* queue_dsn_build - an RFC 3464 report for the recipients idx[0..n) of
 * qf (reply texts in replies, each "550 5.1.1 text"; remote the relay
 * that gave it or NULL), action "failed", "delayed" or "relayed". With
 * RET=FULL the whole message is returned, else its header. Appends the
 * whole message to out. */
struct queue_dsn_rcpt {
    size_t idx;
    const char *reply;
    const char *remote;
};
int queue_dsn_build(const struct queue_file *qf, const char *qid,
                    const char *hostname, const char *action,
                    const struct queue_dsn_rcpt *list, size_t n,
                    long long now_us, long long retry_until_us,
                    struct buf *out, struct err *e);

/* queue_dsn_code - the enhanced status code of a delivery log line
 * (dsn=), into out (n octets): "5.1.1" when the reply text starts with
 * one followed by a space or nothing, else "5.0.0" of the reply code's
 * class (2 to 5, else 4). */
void queue_dsn_code(int code, const char *text, char *out, size_t n);

#endif
