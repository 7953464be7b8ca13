/*
 * runtime - what a reload swaps: the configuration and what is built on it
 *
 * A struct runtime owns one struct conf (and so the chain in it) and one
 * opaque part per front end or layer that asked for one: the SMTP front
 * end's relay policy, TLS context and next-hop pool, for instance. Each
 * part type is a static const struct runtime_part_type (build and free);
 * runtime_new() builds the parts in the order given, and the owner of a
 * type finds its data again with runtime_part(rt, &its_type). Front ends
 * need nothing else of each other: the milter front end uses the conf
 * only.
 *
 * The runtime is reference-counted (atomic): the daemon holds the current
 * one, each session or milter connection holds the one it started with,
 * so a reload never changes the rules under a transaction in flight, and
 * the old runtime goes away with its last holder. Everything in it is
 * read-only once built, and may be used by many threads at once.
 */
#ifndef RC_RUNTIME_H
#define RC_RUNTIME_H

#include "chain/conf.h"
#include "util/err.h"

/* A kind of part. build returns the part made from cf (borrowed; it
 * outlives the part), or NULL with e set ("path:line: key: reason" for a
 * setting it refuses); free releases what build made. */
struct runtime_part_type {
    const char *name;
    void *(*build)(const struct conf *cf, struct err *e);
    void (*free)(void *part);
};

struct runtime;

/* runtime_new - a runtime holding cf, which it adopts (freed with the
 * runtime, also on failure), with one part of each of types
 * (NULL-terminated, may be NULL), built in that order. One reference,
 * the caller's; NULL with e set from the part that failed. */
struct runtime *runtime_new(struct conf *cf,
                            const struct runtime_part_type *const *types,
                            struct err *e);

/* runtime_hold - one more reference to rt. */
void runtime_hold(struct runtime *rt);

/* runtime_release - give one reference back (rt may be NULL); the last
 * frees the parts, in the reverse order of their building, then the
 * conf. */
void runtime_release(struct runtime *rt);

/* runtime_conf - the configuration and chain of rt; borrowed. */
const struct conf *runtime_conf(const struct runtime *rt);

/* runtime_part - the part of type built for rt, or NULL when rt was
 * built without that type; borrowed. */
void *runtime_part(const struct runtime *rt,
                   const struct runtime_part_type *type);

#endif
