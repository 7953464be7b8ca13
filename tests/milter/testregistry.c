/*
 * testregistry - the built-in stage types and the testedit stage
 *
 * Linked into tests/relaychaind-test, test_milterd and the milter
 * fuzzer in place of filters/registry.c: this flt_registry comes first,
 * so the linker leaves the library's out. Programs fill in the services
 * as they do with the installed registry.
 */
#include "config.h"

#include "filters/filters.h"

extern const struct stage_type flt_testedit_type;

static const struct stage_type *const testregistry_types[] = {
    FLT_BUILTIN_TYPES,
    &flt_testedit_type, /* tests/milter/testedit.c */
    NULL,
};

const struct stage_registry flt_registry = {.types = testregistry_types};
