/*
 * stages - the registry of stage types
 *
 * One line in core/chain/stages.c per stage file in filters/. Lookup is by the
 * value of "stage =" in a chain.d file.
 */
#ifndef RC_STAGES_H
#define RC_STAGES_H

#include <stddef.h>

#include "chain/stage.h"

const struct stage_type *stages_find(const char *name);

/* stages_all - every registered type, in registry order; borrowed. */
size_t stages_all(const struct stage_type *const **types);

#endif
