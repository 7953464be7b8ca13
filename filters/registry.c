/*
 * registry - the stage types built into relaychain
 *
 * relaychaind and relaychain hand flt_registry to the chain
 * (registry_set, chain/registry.h) with the services they lend the
 * stages filled in. Adding a stage: one file (or folder) in filters/, one
 * name in FLT_BUILTIN_TYPES (filters.h), one Makefile.am line, one
 * chain.d example and its tests (DESIGN.md).
 *
 * This file defines flt_registry and nothing else, so that a test program
 * can define its own (tests/milter/testregistry.c adds the test stage, the
 * dkim fault program lends a fault hook) and the linker then leaves this
 * object out of the library.
 */
#include "config.h"

#include "filters/filters.h"

static const struct stage_type *const flt_builtin_types[] = {
    FLT_BUILTIN_TYPES,
    NULL,
};

const struct stage_registry flt_registry = {.types = flt_builtin_types};
