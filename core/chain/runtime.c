/*
 * runtime - what a reload swaps: the configuration and what is built on it
 *
 * One allocation holds the count, the conf and the parts' pointers, each
 * with its type; a part is found by comparing type pointers, so a type
 * must be one static object. Building stops at the first part that
 * fails, and what was built is freed as at the last release.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "chain/runtime.h"

#define RUNTIME_PARTS_MAX 8 /* front ends and layers with a part */

struct runtime_slot {
    const struct runtime_part_type *type;
    void *data;
};

struct runtime {
    atomic_int refs;
    struct conf *cf;
    size_t nparts;
    struct runtime_slot parts[RUNTIME_PARTS_MAX];
};

struct runtime *
runtime_new(struct conf *cf, const struct runtime_part_type *const *types,
            struct err *e)
{
    struct runtime *rt;
    size_t i;

    if ((rt = calloc(1, sizeof(*rt))) == NULL) {
        conf_free(cf);
        err_nomem(e);
        return NULL;
    }
    atomic_init(&rt->refs, 1);
    rt->cf = cf;
    for (i = 0; types != NULL && types[i] != NULL; i++) {
        struct runtime_slot *slot = &rt->parts[rt->nparts];

        if (rt->nparts == RUNTIME_PARTS_MAX) {
            err_set(e, ERR_INTERNAL, "more than %d runtime parts",
                    RUNTIME_PARTS_MAX);
            runtime_release(rt);
            return NULL;
        }
        if ((slot->data = types[i]->build(cf, e)) == NULL) {
            runtime_release(rt);
            return NULL;
        }
        slot->type = types[i];
        rt->nparts++;
    }
    return rt;
}

void
runtime_hold(struct runtime *rt)
{
    atomic_fetch_add(&rt->refs, 1);
}

void
runtime_release(struct runtime *rt)
{
    size_t i;

    if (rt == NULL || atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    for (i = rt->nparts; i > 0; i--)
        rt->parts[i - 1].type->free(rt->parts[i - 1].data);
    conf_free(rt->cf);
    free(rt);
}

const struct conf *
runtime_conf(const struct runtime *rt)
{
    return rt->cf;
}

void *
runtime_part(const struct runtime *rt, const struct runtime_part_type *type)
{
    size_t i;

    for (i = 0; i < rt->nparts; i++)
        if (rt->parts[i].type == type)
            return rt->parts[i].data;
    return NULL;
}
