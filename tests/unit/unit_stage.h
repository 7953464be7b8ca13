/*
 * unit_stage.h - load one stage from configuration text, as the chain does
 *
 * For the stage tests: the text is parsed under the given file name (so
 * errors read "path:line: reason"), validated against the type's table and
 * the common match keys, and the type's init() is run.
 */
#ifndef RC_UNIT_STAGE_H
#define RC_UNIT_STAGE_H

#include <string.h>

#include "util/cfg.h"
#include "msg/match.h"
#include "chain/stage.h"

static inline int
unit_stage_load(struct stage *st, const struct stage_type *type,
                const char *name, const char *path, const char *conf,
                struct err *e)
{
    const struct cfg_option *tables[3] = {type->options, match_options, NULL};

    memset(st, 0, sizeof(*st));
    st->type = type;
    st->name = (char *)name;
    st->flags = type->flags;
    if ((st->cfg = cfg_parse_text(path, conf, strlen(conf), e)) == NULL)
        return -1;
    if (cfg_validate(st->cfg, tables, e) < 0 ||
        (type->init != NULL && type->init(st, st->cfg, e) < 0)) {
        cfg_free(st->cfg);
        st->cfg = NULL;
        return -1;
    }
    return 0;
}

static inline void
unit_stage_unload(struct stage *st)
{
    if (st->type->free != NULL)
        st->type->free(st);
    cfg_free(st->cfg);
}

#endif
