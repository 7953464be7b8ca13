/*
 * stages - the registry of stage types
 *
 * Adding a stage: one file in filters/, one line here, one Makefile.am
 * line, one chain.d example and its tests (DESIGN.md).
 */
#include "config.h"

#include <string.h>

#include "filters/filters.h"
#include "chain/stages.h"

#ifdef RC_TEST_STAGES
extern const struct stage_type flt_testedit_type;
#endif

static const struct stage_type *const stages_registry[] = {
    &flt_rewrite_type,    &flt_dkim_type,
    &flt_disclaimer_type, &flt_antivirus_type,
#ifdef RC_TEST_STAGES
    &flt_testedit_type, /* tests/milter/testedit.c: test programs only */
#endif
};

const struct stage_type *
stages_find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(stages_registry) / sizeof(stages_registry[0]); i++)
        if (strcmp(stages_registry[i]->name, name) == 0)
            return stages_registry[i];
    return NULL;
}

size_t
stages_all(const struct stage_type *const **types)
{
    *types = stages_registry;
    return sizeof(stages_registry) / sizeof(stages_registry[0]);
}
