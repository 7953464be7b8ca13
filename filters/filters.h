/*
 * filters - the stage types built into relaychain
 *
 * Each filters/<name>.c exports one const struct stage_type; core/stages.c
 * lists them. Apart from the few functions below that the admin CLI and
 * the fuzzers call, nothing else of a filter is visible outside its file.
 */
#ifndef RC_FILTERS_H
#define RC_FILTERS_H

#include <stdio.h>

#include "buf.h"
#include "err.h"
#include "stage.h"

struct regmap;

extern const struct stage_type flt_rewrite_type;

/* flt_rewrite_test - for "relaychain rewrite-test": look addr up in each
 * table the rewrite stage st has and print one line per table,
 * "sender_rules: IN -> OUT (file:line)" or "sender_rules: IN: no match"
 * (a result that is not a valid address is marked refused). Returns 0,
 * or -1 when st is not a rewrite stage or a lookup fails. */
int flt_rewrite_test(const struct stage *st, const char *addr, FILE *out,
                     struct err *e);

/* flt_rewrite_header_value - rewrite each mailbox of an address header
 * value (raw, folding kept) with rm. When an address changes, *changed is
 * 1 and the whole new value, folded, is appended to out; otherwise
 * *changed is 0 and out is untouched. Returns 0, or -1 with e set (a
 * result that is not a valid address, a line over 998 octets, the limit
 * of out). GMime must be initialised. The stage's own code path; exported
 * for the fuzzer. */
int flt_rewrite_header_value(const struct regmap *rm, const char *value,
                             struct buf *out, int *changed, struct err *e);

#endif
