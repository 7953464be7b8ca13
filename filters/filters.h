/*
 * filters - the stage types built into relaychain
 *
 * Each filters/<name>.c exports one const struct stage_type; core/stages.c
 * lists them. Nothing else of a filter is visible outside its file.
 */
#ifndef RC_FILTERS_H
#define RC_FILTERS_H

#include "stage.h"

extern const struct stage_type flt_rewrite_type;

#endif
