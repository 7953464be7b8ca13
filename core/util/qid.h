/*
 * qid - queue ids: made by the SMTP front end and the queue, checked
 * wherever one names a file
 *
 * An id is what log lines are keyed by and what the spool and the
 * quarantine name their files with, so one check says what an id may be:
 * letters and digits only, never empty, shorter than the caller's
 * buffer. Such a name cannot leave its directory ("../x", "a/b") nor hide
 * (".x"). Each store passes its own size: the queue's ids are its own,
 * the quarantine also keeps milter mode's MTA ids ({i}), which may be
 * longer.
 *
 * qid_new() makes the ids relaychaind gives out: 12 upper-case hex
 * digits, the low 20 bits of the time in seconds and then 28 bits of a
 * counter the caller owns (one per server or queue, seeded from the pid),
 * so they are unique in a process and unlikely to repeat across restarts.
 * Nothing here allocates or fails.
 */
#ifndef RC_QID_H
#define RC_QID_H

#include <stdatomic.h>
#include <stddef.h>

/* qid_new - a new id into out (n octets, 13 or more for all of it),
 * taking the next number of seq. Safe from many threads at once. */
void qid_new(atomic_uint *seq, char *out, size_t n);

/* qid_is_valid - 1 when id is 1 to size - 1 letters and digits, else 0. */
int qid_is_valid(const char *id, size_t size);

#endif
