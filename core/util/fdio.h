/*
 * fdio - whole writes to a file descriptor, and waits with a deadline
 *
 * write(2) may write less than asked (a signal, a pipe, a full disk part
 * way through); every caller that means "all of it or an error" uses
 * fdio_write_all() instead of a loop of its own. A client that talks to a
 * server under one deadline for the whole exchange (clamd, spamd) waits
 * with fdio_wait() on the clock of fdio_now_ms(). Nothing here allocates,
 * logs or keeps state; errno tells why a write or a wait failed.
 */
#ifndef RC_FDIO_H
#define RC_FDIO_H

#include <stddef.h>

/* fdio_write_all - the n octets at p to fd, retrying after EINTR and
 * short writes. Returns 0, or -1 with errno from the write that failed
 * (some octets may have been written by then). */
int fdio_write_all(int fd, const void *p, size_t n);

/* fdio_now_ms - CLOCK_MONOTONIC in milliseconds: the clock deadlines are
 * counted on. */
long long fdio_now_ms(void);

/* fdio_wait - poll fd for events until deadline (fdio_now_ms()),
 * retrying after EINTR. Returns the revents, 0 when the deadline passed,
 * -1 with errno on a poll error. */
int fdio_wait(int fd, short events, long long deadline);

#endif
