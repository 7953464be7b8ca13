/*
 * registry - the stage types a program offers, and the services it lends
 *     them
 *
 * One pointer, set by the program before it loads a chain or starts a
 * thread and only read afterwards, so the threads that load a reloaded
 * chain read it without a lock. See registry.h.
 */
#include "config.h"

#include <string.h>

#include "chain/registry.h"

static const struct stage_type *const registry_none[] = {NULL};
static const struct stage_registry registry_empty = {.types = registry_none};
static const struct stage_registry *registry_current = &registry_empty;

void
registry_set(const struct stage_registry *reg)
{
    registry_current = reg != NULL ? reg : &registry_empty;
}

const struct stage_type *
registry_find(const char *name)
{
    const struct stage_type *const *t;

    for (t = registry_current->types; *t != NULL; t++)
        if (strcmp((*t)->name, name) == 0)
            return *t;
    return NULL;
}

size_t
registry_all(const struct stage_type *const **types)
{
    size_t n = 0;

    *types = registry_current->types;
    while (registry_current->types[n] != NULL)
        n++;
    return n;
}

const struct stage_env *
registry_env(void)
{
    return &registry_current->env;
}
