/*
 * registry - the stage types a program offers, and the services it lends
 *     them
 *
 * The chain knows no stage by name. A program hands it one struct
 * stage_registry with registry_set(), once, at start-up, before it loads
 * any chain and before any thread starts: the stage types it offers (the
 * built-in ones are filters/registry.c's flt_registry; test programs hand
 * one with test stages added) and the chain's services (struct stage_env,
 * stage.h) that the program fills in: how a notice is sent, and so on.
 * Lookup is by the value of "stage =" in a chain.d file.
 *
 * The registry is borrowed: the caller keeps it alive and unchanged until
 * the last chain is freed (a static, or a variable of main()). Without
 * registry_set() there are no stage types and no services.
 */
#ifndef RC_REGISTRY_H
#define RC_REGISTRY_H

#include <stddef.h>

#include "chain/stage.h"

struct stage_registry {
    const struct stage_type *const *types; /* NULL-terminated, in the order
                                              "known:" and the manual list */
    struct stage_env env;                  /* what every stage is lent */
};

/* registry_set - the registry every later chain_load() uses; borrowed. */
void registry_set(const struct stage_registry *reg);

/* registry_find - the type called name, or NULL. */
const struct stage_type *registry_find(const char *name);

/* registry_all - every registered type, in registry order; borrowed. */
size_t registry_all(const struct stage_type *const **types);

/* registry_env - the services of the registry; never NULL (an empty set
 * without registry_set()); borrowed. */
const struct stage_env *registry_env(void);

#endif
