/*
 * queue - the durable spool of "delivery = queue": store and forward
 *
 * Layout of queue_directory (created when missing, mode 0700):
 *
 *   tmp/QID      a queue file being written; never delivered. Whatever is
 *                left here at start-up is torn and removed.
 *   queue/QID    committed messages: new and deferred alike. Only these
 *                are delivered.
 *   hold/QID     messages put on hold ("relaychain queue hold").
 *   corrupt/QID  files that failed validation when read, kept for a look.
 *   defer/QID    the last deferral reason per recipient, for
 *                "queue list"; informational, not fsynced.
 *   lock         held (flock) by the running daemon: one per spool.
 *   trigger      a FIFO the daemon reads: "F" flush all, "F QID" flush
 *                one (each rescans queue/ first, after the suspended
 *                routes are revived), "S" rescan queue/.
 *
 * The file format is in queue_file.h, the reports in dsn.h.
 *
 * queue_commit() writes tmp/QID, fsyncs it, renames it to queue/QID
 * (never over an existing file) and fsyncs queue/, and returns 0 only
 * then: the SMTP front end answers 250 after that and not before. Any
 * failure removes the temporary file and leaves err with the errno, from
 * which queue_commit_reply() makes the 452 or 451 the client gets.
 *
 * The daemon's side (queue_open, queue_start, queue_stop, queue_free,
 * and queue_settings_load + queue_settings_apply on reload) keeps an
 * index of small entries (queue id, next attempt), never the
 * messages, and delivery_concurrency worker threads that read a file
 * when its time comes, deliver it through core/smtpc (per transport_map
 * route), mark recipients, send RFC 3464 notifications through the same
 * queue, and remove the file when nothing is left to do. A worker holds
 * an exclusive flock() on the file for the whole attempt; the
 * administration commands (core/cli/cmd_queue.c) take the same lock before
 * they move a file, so an attempt and a hold, release or requeue never
 * overlap. "delete" wins without waiting: the worker notices the file
 * is gone and neither marks nor resurrects it.
 *
 * Nothing here exits; errors go to struct err or to the log, keyed by
 * the queue id as Postfix's are.
 */
#ifndef RC_QUEUE_H
#define RC_QUEUE_H

#include <stddef.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"
#include "msg/msg.h"
#include "queue/queue_file.h"
#include "queue/dsn.h"

#define QUEUE_ID_MAX 32

/* --------------------------------------------------------- the daemon */

struct queue;

/* queue_open - check the queue settings of c, make the directories, take
 * the spool lock and build the routes. Nothing runs yet. */
struct queue *queue_open(const struct cfg *c, struct err *e);
/* queue_start - remove torn files, schedule the complete ones (in the
 * background) and start the workers and the trigger reader. */
int queue_start(struct queue *q, struct err *e);
/* queue_stop - stop taking new attempts, wait at most wait_ms for those
 * in flight; returns the number of threads still running (q must then
 * not be freed). */
unsigned queue_stop(struct queue *q, long long wait_ms);
void queue_free(struct queue *q);

/* Reload (SIGUSR1): the settings a reload may change -- the backoff
 * times, maximal_queue_lifetime, delay_warning_time, queue_run_delay,
 * delivery_concurrency, queue_minfree, next_hop with its TLS, auth and
 * timeout, and transport_map -- live in one reference-counted struct
 * queue_settings. queue_settings_load builds a new one from c (routes,
 * pools, transport_map read) on the caller's thread, or fails with e
 * and "file:line" for a bad transport_map, touching nothing; a changed
 * queue_directory is logged and ignored. queue_settings_apply swaps it
 * in under the queue's lock (a pointer exchange): attempts that start
 * afterwards use it, attempts in flight finish with the old one, whose
 * pools close when its last attempt ends. Waiting messages are due at
 * the latest after the new maximal_backoff_time; workers are started
 * or leave to match delivery_concurrency. queue_settings_release drops
 * a reference (a loaded set that is not applied). */
struct queue_settings;
struct queue_settings *queue_settings_load(struct queue *q,
                                           const struct cfg *c, struct err *e);
void queue_settings_apply(struct queue *q, struct queue_settings *set);
void queue_settings_release(struct queue_settings *set);

/* queue_settings_check - build the settings of c as queue_open would
 * (routes, transport_map) and drop them: 0, or -1 with e as queue_open
 * would fill it. For "relaychain check"; touches no spool. */
int queue_settings_check(const struct cfg *c, struct err *e);

/* queue_trigger_at - write line to the trigger FIFO of the spool whose
 * directory descriptor is dfd, for the commands that run as root in a
 * spool the daemon's user owns: never through a link, never blocking.
 * Returns 0; -1 when no daemon reads it (or it is missing); -2 when it is
 * not a FIFO (planted: nothing is written). */
int queue_trigger_at(int dfd, const char *line);

/* queue_commit - make m durable and schedule it now. 0 only when it is
 * on disk for good. */
int queue_commit(struct queue *q, const struct queue_msg *m, struct err *e);

/* ---- encrypt: a message split in copies (one per recipient group) is
 * made durable as one: queue_stage() writes and fsyncs each copy's
 * tmp/QID (never delivered, removed at start-up when torn), then
 * queue_publish() renames them all to queue/, fsyncs queue/ and
 * schedules them; 0 only then. When a rename or the fsync fails, the
 * copies already moved are removed from queue/ before any is scheduled
 * and every tmp/ file of ids is removed: -1 with e. queue_unstage()
 * removes a staged copy that will not be published. A rescan of queue/
 * between two renames (a trigger "S" at that moment) could index a copy
 * that a failing publish then removes; the worker finds it gone. */
int queue_stage(struct queue *q, const struct queue_msg *m, struct err *e);
int queue_publish(struct queue *q, const char *const *ids, size_t n,
                  struct err *e);
void queue_unstage(struct queue *q, const char *id);
/* ---- end encrypt */

/* queue_commit_reply - the reply for a failed commit: 452 4.3.1 when
 * out of space or quota, else 451 4.3.0. */
const char *queue_commit_reply(const struct err *e);

/* queue_has_space - 1 when the spool file system has queue_minfree plus
 * 1.5 times size free (Postfix's test), 0 when not. */
int queue_has_space(struct queue *q, unsigned long long size);

/* ---- events: the queue's events writer (queue/events.h), NULL when
 * events_store is unset; the SMTP front end emits and looks up the
 * suppression list through it. Owned by q. */
struct events;
struct events *queue_events(struct queue *q);

#endif
