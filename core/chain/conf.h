/*
 * conf - relaychain.conf and the chain it names
 *
 * conf_load() reads the main file against its option tables (the keys are
 * documented in relaychain.conf(5)), derives the message limits, and loads
 * the chain from chain_directory. The result is read-only; a reload builds
 * a second struct conf and swaps it in.
 *
 * The main file is shared: conf_options holds the keys of the process and
 * the chain, and each layer above that has keys of its own (the next-hop
 * client, the queue, the SMTP and the milter front end) declares them in
 * a struct conf_part with the check that goes with them. The loader calls
 * none of them by name: whoever loads the file (relaychaind, relaychain,
 * the tests) hands it the parts, and the file may then set the keys of
 * conf_options and of those parts.
 */
#ifndef RC_CONF_H
#define RC_CONF_H

#include "util/cfg.h"
#include "chain/chain.h"
#include "util/err.h"
#include "msg/msg.h"

#ifndef RC_SYSCONFDIR
#define RC_SYSCONFDIR "/etc"
#endif
#define CONF_DEFAULT_PATH RC_SYSCONFDIR "/relaychain/relaychain.conf"
/* configure's localstatedir: /var unless a --prefix other than /usr. */
#ifndef RC_LOCALSTATEDIR
#define RC_LOCALSTATEDIR "/var"
#endif
#define CONF_SPOOL_DIR RC_LOCALSTATEDIR "/spool/relaychain"
/* The longest control_socket name: sun_path has 108 octets on Linux. */
#define CONF_SOCKET_PATH_MAX 108

extern const struct cfg_option conf_options[];

/* One layer's share of the main file: its keys and what must hold of
 * their values beyond their types (check may be NULL). check sees the
 * whole validated file, so it may read the keys of conf_options and of
 * the layers below its own; it returns 0, or -1 with e set to
 * "path:line: key: reason" (cfg_err). */
struct conf_part {
    const char *name;                 /* "smtpd", "milterd"...: for tests */
    const struct cfg_option *options; /* ends with CFG_OPTION_END */
    int (*check)(const struct cfg *c, struct err *e);
};

struct conf {
    struct cfg *cfg;            /* the main file */
    struct cfg_option *options; /* its keys, as conf_options_merge() */
    struct msg_limits limits;
    enum chain_ambiguous_action ambiguous;
    struct chain *chain;
};

/* conf_options_merge - one table of the keys of conf_options and of
 * parts (NULL-terminated), ending with CFG_OPTION_END, for
 * cfg_validate() and for listing the keys. The keys are in one fixed
 * order, that of the single table the main file had before the layers
 * declared their own ("relaychain config -d", "relaychain check" and
 * the hints for a misspelt key follow it), whichever layer declares
 * them; a key that order does not name yet follows the others, part by
 * part. The caller
 * frees the table with free() after any cfg validated against it. NULL
 * with e: out of memory, or a key declared twice (ERR_INTERNAL). */
struct cfg_option *conf_options_merge(const struct conf_part *const *parts,
                                      struct err *e);

/* conf_load - the main file and its chain, every value checked: the
 * same checks for relaychaind's start-up, its reload and every command,
 * so "relaychain check" refuses what the daemon would. parts are the
 * layers whose keys the file may set, as conf_options_merge(); the file
 * is checked by conf_check_main(). NULL with e set to "path:line: key:
 * reason" on failure. */
struct conf *conf_load(const char *path, const struct conf_part *const *parts,
                       struct err *e);

/* conf_check_main - what a validated main file must hold beyond the
 * values of its keys, one path for "relaychain check", start-up and
 * reload: the checks of the process's own keys (syslog, chain_directory,
 * control socket, networks, user), then each part's check, in the order
 * of parts. 0, or -1 with e naming file:line and the key. */
int conf_check_main(const struct cfg *c, const struct conf_part *const *parts,
                    struct err *e);

/* conf_load_flags - the same; CONF_LOAD_CHECK loads the chain for
 * checking only (CHAIN_LOAD_CHECK): every stage setting is checked, but
 * nothing only run() needs is built (no virus engine is compiled), and
 * the chain cannot run messages. CONF_LOAD_MAIN reads the main file
 * alone, checked as always, and leaves chain NULL (relaychaind before it
 * drops privileges). */
#define CONF_LOAD_CHECK 0x1u
#define CONF_LOAD_MAIN 0x2u
struct conf *conf_load_flags(const char *path,
                             const struct conf_part *const *parts,
                             unsigned flags, struct err *e);

void conf_free(struct conf *cf);

/* conf_check_dir - for a part's check: the directory named by key is one
 * the daemon can use as the configured user (or as this process without
 * user): it exists and that user may list, search and write it, or it
 * does not exist yet and may be made in its parent; with mkparents in
 * the nearest existing ancestor (mkdir -p). With optional, a missing
 * default that cannot be made is only logged as a warning: the feature
 * is then not used. 0, or -1 with e naming the key and its line. */
int conf_check_dir(const struct cfg *c, const char *key, int optional,
                   int mkparents, struct err *e);

/* conf_log_open - the mail log for an admin command (quarantine release,
 * queue delete...), which logs what it did as postsuper does:
 * maillog_file when set, else syslog with syslog_name and
 * syslog_facility, all of the main file c (which may have been read
 * without its chain). Returns 0, or -1 with e naming the file. */
int conf_log_open(const struct cfg *c, struct err *e);

#endif
