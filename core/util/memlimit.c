/*
 * memlimit - a process-wide count of message octets held in memory
 *
 * See memlimit.h. The count is one atomic size_t changed with
 * compare-and-swap, so a take that would pass the limit changes nothing
 * and two sessions can never both slip under it. A give larger than the
 * count is a caller's bug; it is caught by an assertion and otherwise
 * leaves the count at zero rather than wrapping it around to a huge
 * number that would refuse every message.
 */
#include "config.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/memlimit.h"

struct memlimit {
    atomic_size_t used;
};

struct memlimit *
memlimit_new(struct err *e)
{
    struct memlimit *ml;

    if ((ml = malloc(sizeof(*ml))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    atomic_init(&ml->used, 0);
    return ml;
}

void
memlimit_free(struct memlimit *ml)
{
    free(ml);
}

int
memlimit_take(struct memlimit *ml, size_t n, size_t held, size_t limit)
{
    size_t old = atomic_load(&ml->used), want;

    do {
        if (n > SIZE_MAX - old)
            return -1;
        want = old + n;
        if (limit != 0 && want > limit && old > held)
            return -1;
    } while (!atomic_compare_exchange_weak(&ml->used, &old, want));
    return 0;
}

int
memlimit_fits(const struct memlimit *ml, size_t n, size_t held, size_t limit)
{
    size_t old = atomic_load((atomic_size_t *)&ml->used);

    return limit == 0 || old <= held ||
           (n <= SIZE_MAX - old && old + n <= limit);
}

void
memlimit_give(struct memlimit *ml, size_t n)
{
    size_t old = atomic_load(&ml->used), want;

    do {
        assert(n <= old);
        want = n <= old ? old - n : 0;
    } while (!atomic_compare_exchange_weak(&ml->used, &old, want));
}

size_t
memlimit_used(const struct memlimit *ml)
{
    return atomic_load((atomic_size_t *)&ml->used);
}
