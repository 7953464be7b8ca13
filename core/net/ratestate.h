/*
 * ratestate - where the rate limit counters live: this process, or Redis
 *
 * state_store = memory keeps the counters of the sliding windows
 * (util/ratelimit.h) in a table of this process; redis://host:port/db
 * keeps them in Redis, so that every node behind a balancer counts
 * toward the same limits. In Redis one check is one EVALSHA of a Lua
 * script that reads the windows of every rule the message counts
 * toward and, when none would go over, adds to all of them: atomic, one
 * round trip, Redis' own clock (TIME) so the nodes' clocks need not
 * agree. Connect and command are bounded by timeout_ms.
 *
 * When Redis does not answer, on_error says what happens: count in this
 * process (RATESTATE_LOCAL, logged once at warning when Redis goes away
 * and once when it is back) or answer RATESTATE_UNAVAILABLE so the
 * caller gives a 4xx. A lost Redis is retried at most once a second.
 *
 * A struct ratestate is thread-safe (a few connections, each under its
 * own lock); ratestate_free() accepts NULL.
 */
#ifndef RC_RATESTATE_H
#define RC_RATESTATE_H

#include <stddef.h>

#include "util/err.h"

struct ratelimit_set;
struct ratestate;

enum ratestate_on_error { RATESTATE_LOCAL, RATESTATE_TEMPFAIL };

enum ratestate_result {
    RATESTATE_TAKEN = 0,      /* counted */
    RATESTATE_OVER = 1,       /* a rule would go over: nothing counted */
    RATESTATE_UNAVAILABLE = 2 /* Redis away and on_error is tempfail */
};

#define RATESTATE_SLOTS                                                       \
    4096 /* counters of the memory store: four times                          \
           RATELIMIT_RULES_MAX, one a rule */

/* ratestate_spec_check - 0 when spec is "memory" or redis://host[:port]
 * [/db], else -1 with the reason in e (for the config check). */
int ratestate_spec_check(const char *spec, struct err *e);

/* ratestate_new - a store for spec; with Redis, no connection is made
 * yet (the first check makes it). "memory" is one store for the
 * process, counted by its users: the runtime a reload makes shares the
 * old one's counts. NULL with e set. */
struct ratestate *ratestate_new(const char *spec,
                                enum ratestate_on_error on_error,
                                int timeout_ms, struct err *e);
void ratestate_free(struct ratestate *st);

/* ratestate_shared - 1 when st counts in Redis (shared by the nodes). */
int ratestate_shared(const struct ratestate *st);

/* ratestate_take - count amount[i] toward each rule idx[i] (i <
 * nidx) of set unless one of them would go over: then *over is that
 * rule's index (into set->rules) and nothing is counted. One round trip
 * to Redis for all of them. Returns an enum ratestate_result, or -1
 * with e set (out of memory). */
int ratestate_take(struct ratestate *st, const struct ratelimit_set *set,
                   const size_t *idx, const long long *amount, size_t nidx,
                   size_t *over, struct err *e);

/* ratestate_give - give back what ratestate_take() took for a message
 * that was not taken after all (a chain's refusal or tempfail), from the
 * window it falls in now (never below 0). 0, or -1 with e set when the
 * store did not answer (the count then stays: a limit errs on the safe
 * side). */
int ratestate_give(struct ratestate *st, const struct ratelimit_set *set,
                   const size_t *idx, const long long *amount, size_t nidx,
                   struct err *e);

#endif
