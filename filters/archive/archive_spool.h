/*
 * archive_spool - a local durable directory in front of a remote store
 *
 * With required = no the archive stage does not make a message wait for
 * its store: it hands each sealed record to the spool, which writes it
 * to its directory (a temporary file, fsync, rename, fsync of the
 * directory) and returns; the message goes on at once. One thread per
 * spool ships the spooled records through the store's put in name
 * order, and deletes each file only after put said it is durable (the
 * last one shipped is kept as "last", replaced by the next, so that the
 * stage can continue its writer's chain when the store cannot be read). When
 * put fails the thread waits (1 s, doubling to 60 s, reset by the next
 * success) and tries again from the oldest name: a store outage never
 * drops a record, it only grows the backlog, which is logged at warning
 * level each time it doubles (from 100 on) and at each failure. A
 * record may be put twice (a crash between put and the delete of its
 * file), never lost.
 *
 * The spool keeps the sealed octets only; a record read back is handed
 * to put with meta and data NULL. The journaling store, which shows the
 * message, needs them: the spool then reads them out of the record (see
 * the single call site marked "arc_record_parse" in archive_spool.c).
 *
 * Files: one a record, named by the hex of the record name (so that the
 * directory's order is the names' order), mode 0600, holding a header,
 * the name, the length and the octets, and an end marker; ".tmp." files
 * are writes that never finished (never acknowledged) and are removed at
 * open; a file that does not read back whole is renamed NAME.bad and
 * left for the admin, logged, never shipped and never deleted.
 *
 * Ownership: the spool borrows ops and store (the caller closes the
 * store after arc_spool_close) and owns its thread and directory
 * descriptor. arc_spool_add and arc_spool_status may be called from
 * many threads at once.
 */
#ifndef RC_ARCHIVE_SPOOL_H
#define RC_ARCHIVE_SPOOL_H

#include <stddef.h>

#include "filters/archive/archive_store.h"
#include "util/err.h"

/* The default spool_directory; the stage names one per store. */
#define ARC_SPOOL_DEFAULT_DIR RC_LOCALSTATEDIR "/spool/relaychain/archive"

/* The longest record name a spool takes (its file name is the hex). */
#define ARC_SPOOL_NAME_MAX 120

struct arc_spool;

/* arc_spool_open - open (and create, mode 0700, when it is missing: its
 * parent must exist) the spool directory dir, remove unfinished writes,
 * and start the thread that ships its records through ops->put on
 * store. NULL with e: ERR_CONFIG for a directory that cannot be used
 * (a planted link, not a directory), ERR_IO, ERR_NOMEM. */
struct arc_spool *arc_spool_open(const char *dir,
                                 const struct arc_store_ops *ops, void *store,
                                 struct err *e);

/* arc_spool_add - make it->name and it->sealed durable in the spool and
 * wake the thread. 0 only when the record is on disk, fsynced with its
 * directory; -1 with e (ERR_IO, ERR_INPUT for a name the spool cannot
 * hold). it->meta and it->data are not kept. */
int arc_spool_add(struct arc_spool *sp, const struct arc_item *it,
                  struct err *e);

/* arc_spool_append, arc_spool_sync - arc_spool_add in two steps, for a
 * caller that appends in order under its own lock and waits outside it:
 * append writes the record (not yet durable, not yet visible to the
 * thread) and gives a ticket; sync returns 0 once every record up to
 * that ticket is durable, records appended meanwhile by other threads
 * sharing one commit (group commit). Records become visible in ticket
 * order, each only once its octets are on disk. After a failed commit
 * the spool takes no more records (ERR_IO) until it is opened again. */
int arc_spool_append(struct arc_spool *sp, const struct arc_item *it,
                     unsigned long long *ticket, struct err *e);
int arc_spool_sync(struct arc_spool *sp, unsigned long long ticket,
                   struct err *e);

/* arc_spool_status - the backlog: count records waiting and the age in
 * seconds of the oldest (0 when none). -1 with e when the directory
 * cannot be read. */
int arc_spool_status(struct arc_spool *sp, size_t *count, long long *oldest,
                     struct err *e);

/* arc_spool_scan - the same for a spool directory no thread of this
 * process ships ("relaychain archive status" reads the daemon's). */
int arc_spool_scan(const char *dir, size_t *count, long long *oldest,
                   struct err *e);

/* arc_spool_last - the newest record of writer that spool directory dir
 * holds, waiting or (for a store that cannot read back) the last one
 * shipped, its sealed octets into out (left empty when there is none, or
 * no directory). For the stage, before arc_spool_open, to continue the
 * writer's chain from the newest of the store's and the spool's. -1 with
 * e when a file cannot be read. */
struct buf;
int arc_spool_last(const char *dir, const char *writer, struct buf *out,
                   struct err *e);

/* arc_spool_skipped - checkpoints and tombstones not handed to a store
 * that shows messages (the journaling store) since open. */
unsigned long arc_spool_skipped(struct arc_spool *sp);

/* arc_spool_backoff - the shipping thread's waits after a failure: first
 * first_ms, doubling to max_ms (defaults 1000 and 60000). For tests. */
void arc_spool_backoff(struct arc_spool *sp, long first_ms, long max_ms);

/* arc_spool_shipped - records put and deleted since open. */
unsigned long arc_spool_shipped(struct arc_spool *sp);

/* arc_spool_record_parse - read the spool file named f whose octets are
 * data[0..len) (modified: the name is NUL-terminated in place). *name,
 * and the record's octets [*p, *p + *n), point into data. -1 with e
 * (ERR_INPUT) when it is not a whole record of the name f says. Public
 * for the fuzz target. */
int arc_spool_record_parse(const char *f, char *data, size_t len,
                           const char **name, const unsigned char **p,
                           size_t *n, struct err *e);

/* arc_spool_close - stop the thread (a put in progress finishes first)
 * and free sp; the files stay for the next open. NULL is ignored. */
void arc_spool_close(struct arc_spool *sp);

#endif
