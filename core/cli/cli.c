/*
 * cli - what the commands of relaychain share
 *
 * See cli.h. The option table is conf.c's, the one start-up validates
 * the main file against; this is the one place a command names it.
 */
#include "config.h"

#include "chain/conf.h"
#include "cli/cli.h"

struct cfg *
cli_main_cfg(const char *path, struct err *e)
{
    static const struct cfg_option *const tables[] = {conf_options, NULL};
    struct cfg *c;

    if ((c = cfg_parse(path, e)) == NULL)
        return NULL;
    if (cfg_validate(c, tables, e) < 0) {
        cfg_free(c);
        return NULL;
    }
    return c;
}
