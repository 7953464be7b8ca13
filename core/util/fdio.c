/*
 * fdio - whole writes to a file descriptor
 *
 * See fdio.h. A short write moves on by what was written; EINTR is
 * retried; any other failure returns at once with errno as write(2) left
 * it, so the caller's err_sys() names the real cause.
 */
#include "config.h"

#include <errno.h>
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
