/*
 * fdio - whole writes to a file descriptor
 *
 * write(2) may write less than asked (a signal, a pipe, a full disk part
 * way through); every caller that means "all of it or an error" uses
 * fdio_write_all() instead of a loop of its own. Nothing here allocates,
 * logs or keeps state; errno tells why a write failed.
 */
#ifndef RC_FDIO_H
#define RC_FDIO_H

#include <stddef.h>

/* fdio_write_all - the n octets at p to fd, retrying after EINTR and
 * short writes. Returns 0, or -1 with errno from the write that failed
 * (some octets may have been written by then). */
int fdio_write_all(int fd, const void *p, size_t n);

#endif
