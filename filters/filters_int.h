/*
 * filters_int - what the stages share (filters/common.c)
 *
 * The steps that more than one stage's init() takes on its configuration
 * section: naming the key whose file failed in an error, loading a
 * pcre_table(5) file a key names, reading dkim_signed. Only stages
 * include this header; the programs see filters.h.
 */
#ifndef RC_FILTERS_INT_H
#define RC_FILTERS_INT_H

#include "util/cfg.h"
#include "util/err.h"
#include "util/regmap.h"

/* flt_cfg_prefix - put "path:line: key" in front of e's text, for a file
 * or value that key of c names and that could not be used; the error code
 * stays. Returns -1. */
int flt_cfg_prefix(struct err *e, const struct cfg *c, const char *key);

/* flt_cfg_regmap - the pcre_table(5) file that key of c names into *rm
 * (NULL when key is unset); the caller frees it with regmap_free().
 * Returns 0, or -1 with e set ("path:line: key: file:line: reason"). */
int flt_cfg_regmap(const struct cfg *c, const char *key, struct regmap **rm,
                   struct err *e);

/* flt_cfg_dkim_edit - 1 when c says dkim_signed = edit (change a message
 * even where that breaks the signature it arrived with), 0 for skip. */
int flt_cfg_dkim_edit(const struct cfg *c);

#endif
