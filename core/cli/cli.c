/*
 * cli - what the commands of relaychain share
 *
 * See cli.h. The option table is conf.c's, the one start-up validates
 * the main file against; this is the one place a command names it.
 */
#include "config.h"

#include "chain/conf.h"
#include "cli/cli.h"
#include "cli/parts.h"

struct cfg *
cli_main_cfg(const char *path, struct err *e)
{
    /* The cfg refers to its table for the defaults: the merged table
     * lives as long as the command. */
    static struct cfg_option *options;
    const struct cfg_option *tables[2] = {NULL, NULL};
    struct cfg *c;

    if (options == NULL &&
        (options = conf_options_merge(parts_all, e)) == NULL)
        return NULL;
    if ((c = cfg_parse(path, e)) == NULL)
        return NULL;
    tables[0] = options;
    if (cfg_validate(c, tables, e) < 0) {
        cfg_free(c);
        return NULL;
    }
    return c;
}
