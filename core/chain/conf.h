/*
 * conf - relaychain.conf and the chain it names
 *
 * conf_load() reads the main file against its option table (the keys are
 * documented in relaychain.conf(5)), derives the message limits, and loads
 * the chain from chain_directory. The result is read-only; a reload builds
 * a second struct conf and swaps it in.
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

struct conf {
    struct cfg *cfg; /* the main file */
    struct msg_limits limits;
    enum chain_ambiguous_action ambiguous;
    struct chain *chain;
};

/* conf_load - the main file and its chain, every value checked: the
 * same checks for relaychaind's start-up, its reload and every command,
 * so "relaychain check" refuses what the daemon would. NULL with e set to
 * "path:line: key: reason" on failure. */
struct conf *conf_load(const char *path, struct err *e);

/* conf_check_main - what a validated main file must hold beyond the
 * values of its keys (listeners, user, networks, directories, milter
 * socket, secret files), one path for "relaychain check", start-up and
 * reload. 0, or -1 with e naming file:line and the key. */
int conf_check_main(const struct cfg *c, struct err *e);

/* conf_load_flags - the same; CONF_LOAD_CHECK loads the chain for
 * checking only (CHAIN_LOAD_CHECK): every stage setting is checked, but
 * nothing only run() needs is built (no virus engine is compiled), and
 * the chain cannot run messages. */
#define CONF_LOAD_CHECK 0x1u
struct conf *conf_load_flags(const char *path, unsigned flags, struct err *e);

#define CONF_LISTEN_MAX 16 /* smtp_listen items */
void conf_free(struct conf *cf);

/* conf_log_open - the mail log for an admin command (quarantine release,
 * queue delete...), which logs what it did as postsuper does:
 * maillog_file when set, else syslog with syslog_name and
 * syslog_facility, all of the main file c (which may have been read
 * without its chain). Returns 0, or -1 with e naming the file. */
int conf_log_open(const struct cfg *c, struct err *e);

#endif
