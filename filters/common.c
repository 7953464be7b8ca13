/*
 * common - the configuration steps the stages share
 *
 * Small helpers for the stages' init(): see filters_int.h. They read the
 * stage's validated section and own nothing; a regmap loaded here
 * belongs to the caller.
 */
#include "config.h"

#include "filters/filters.h"
#include "filters/filters_int.h"

int
flt_cfg_prefix(struct err *e, const struct cfg *c, const char *key)
{
    err_prefix(e, "%s:%u: %s", cfg_path(c), cfg_line(c, key), key);
    return -1;
}

int
flt_cfg_regmap(const struct cfg *c, const char *key, struct regmap **rm,
               struct err *e)
{
    const char *path = cfg_str(c, key);

    *rm = NULL;
    if (path == NULL)
        return 0;
    if ((*rm = regmap_load(path, e)) == NULL)
        return flt_cfg_prefix(e, c, key);
    return 0;
}

int
flt_cfg_dkim_edit(const struct cfg *c)
{
    return (enum flt_dkim_signed_action)cfg_enum(c, "dkim_signed") ==
           FLT_DKIM_SIGNED_EDIT;
}
