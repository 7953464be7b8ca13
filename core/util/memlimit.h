/*
 * memlimit - a process-wide count of message octets held in memory
 *
 * Both front ends hold each message in memory from its first octet until
 * it is delivered, queued or refused. A struct memlimit counts those
 * octets across every session, so that many large messages at once are
 * refused with a 4xx (smtpd_memory_limit) instead of growing the process
 * until the kernel ends it.
 *
 * A holder takes octets before it keeps them (memlimit_take) and gives
 * back exactly what it took when it lets them go (memlimit_give), on
 * every path: a count that only grows would refuse all mail for good.
 * The limit is an argument rather than a field, so a reload that changes
 * it needs no lock and sessions under the old configuration keep theirs.
 *
 * Thread-safe (one atomic counter); memlimit_new() is the only
 * allocation.
 */
#ifndef RC_MEMLIMIT_H
#define RC_MEMLIMIT_H

#include <stddef.h>

#include "util/err.h"

struct memlimit;

/* memlimit_new - a count at zero; NULL with e set on ENOMEM. */
struct memlimit *memlimit_new(struct err *e);
void memlimit_free(struct memlimit *ml);

/* memlimit_take - count n more octets for a holder that has held
 * octets so far. Returns 0 when the total stays within limit (0: no
 * limit), or when the holder would be the only one holding anything, so
 * that one message at a time always gets through; else -1 with nothing
 * counted. */
int memlimit_take(struct memlimit *ml, size_t n, size_t held, size_t limit);

/* memlimit_fits - 1 when memlimit_take(ml, n, held, limit) would
 * succeed now, else 0; counts nothing. */
int memlimit_fits(const struct memlimit *ml, size_t n, size_t held,
                  size_t limit);

/* memlimit_give - count n octets fewer; n is what the caller took. */
void memlimit_give(struct memlimit *ml, size_t n);

/* memlimit_used - octets counted now. */
size_t memlimit_used(const struct memlimit *ml);

#endif
