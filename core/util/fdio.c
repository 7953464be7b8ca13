/*
 * fdio - whole writes to a file descriptor
 *
 * See fdio.h. A short write moves on by what was written; EINTR is
 * retried; any other failure returns at once with errno as write(2) left
 * it, so the caller's err_sys() names the real cause.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "util/fdio.h"

int
fdio_write_all(int fd, const void *p, size_t n)
{
    const char *s = p;

    while (n > 0) {
        ssize_t w = write(fd, s, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

long long
fdio_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
fdio_wait(int fd, short events, long long deadline)
{
    struct pollfd pfd;
    long long left;
    int rc;

    for (;;) {
        left = deadline - fdio_now_ms();
        if (left <= 0)
            return 0;
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        /* poll takes an int: wait in slices of a minute at most. */
        rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -1;
        if (rc > 0)
            return pfd.revents;
    }
}
