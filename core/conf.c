/*
 * conf - relaychain.conf and the chain it names
 *
 * conf_options is the table of the main file; relaychain.conf(5) documents
 * each key and must agree with it. conf_load() parses and validates the
 * file, checks the values the table cannot express (a known syslog
 * facility, a non-empty syslog name, an existing chain_directory), derives
 * struct msg_limits and loads the chain from chain_directory, which is
 * relative to the directory of the main file unless absolute.
 *
 * A struct conf owns its cfg and chain; conf_free() releases both. Every
 * failure leaves nothing allocated and e says "path:line: reason", either
 * for the main file or, from chain_load(), for the chain.d file at fault.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "log.h"

static const char *const conf_ambiguous_choices[] = {"reject", "continue",
                                                     NULL};

const struct cfg_option conf_options[] = {
    {"chain_directory", CFG_PATH, "chain.d",
     "directory of the stage files, one stage per *.conf file, run in "
     "C-locale order of their names",
     NULL, 0, 0, 0},
    {"message_size_limit", CFG_SIZE, "10240000",
     "largest message accepted, header and body, in octets", NULL, 1024,
     1024LL * 1024 * 1024, 0},
    {"header_limit", CFG_INT, "1000", "most header fields a message may have",
     NULL, 1, 100000, 0},
    {"line_length_limit", CFG_INT, "998",
     "longest line of a message in octets, without its line end", NULL, 78,
     1000000, 0},
    {"mime_depth_limit", CFG_INT, "20",
     "deepest nesting of multiparts and attached messages", NULL, 1, 100, 0},
    {"mime_part_limit", CFG_INT, "1000", "most MIME parts in one message",
     NULL, 1, 100000, 0},
    {"syslog_facility", CFG_STRING, "mail",
     "syslog facility: mail, daemon, user or local0 to local7", NULL, 0, 0, 0},
    {"syslog_name", CFG_STRING, "relaychain",
     "program name at the start of each syslog line", NULL, 0, 0, 0},
    {"ambiguous_mime_action", CFG_ENUM, "reject",
     "what to do with a message whose MIME structure can be read in more "
     "than one way",
     conf_ambiguous_choices, 0, 0, 0},
    CFG_OPTION_END,
};

static int
conf_check(struct conf *cf, struct err *e)
{
    const struct cfg *c = cf->cfg;
    struct stat st;
    const char *s;

    s = cfg_str(c, "syslog_facility");
    if (log_facility_parse(s) < 0)
        return cfg_err(e, c, "syslog_facility",
                       "unknown facility '%.64s' (expected mail, daemon, "
                       "user or local0 to local7)",
                       s);
    if (cfg_str(c, "syslog_name")[0] == '\0')
        return cfg_err(e, c, "syslog_name", "empty name");
    /* Checked here so the error names the line that chose the directory;
     * chain_load() reports problems inside it. */
    s = cfg_str(c, "chain_directory");
    if (stat(s, &st) < 0)
        return cfg_err(e, c, "chain_directory", "%s: %s", s, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cfg_err(e, c, "chain_directory", "%s: not a directory", s);
    cf->limits.message_size = (size_t)cfg_num(c, "message_size_limit");
    cf->limits.header_count = (size_t)cfg_num(c, "header_limit");
    cf->limits.line_length = (size_t)cfg_num(c, "line_length_limit");
    cf->limits.mime_depth = (unsigned)cfg_num(c, "mime_depth_limit");
    cf->limits.mime_parts = (unsigned)cfg_num(c, "mime_part_limit");
    cf->ambiguous = cfg_enum(c, "ambiguous_mime_action") == 0
                        ? CHAIN_AMBIGUOUS_REJECT
                        : CHAIN_AMBIGUOUS_CONTINUE;
    return 0;
}

struct conf *
conf_load(const char *path, struct err *e)
{
    static const struct cfg_option *const tables[] = {conf_options, NULL};
    struct conf *cf;

    if ((cf = calloc(1, sizeof(*cf))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((cf->cfg = cfg_parse(path, e)) == NULL ||
        cfg_validate(cf->cfg, tables, e) < 0 || conf_check(cf, e) < 0 ||
        (cf->chain = chain_load(cfg_str(cf->cfg, "chain_directory"),
                                cf->ambiguous, e)) == NULL) {
        conf_free(cf);
        return NULL;
    }
    return cf;
}

void
conf_free(struct conf *cf)
{
    if (cf == NULL)
        return;
    chain_free(cf->chain);
    cfg_free(cf->cfg);
    free(cf);
}
