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

#include "cfg.h"
#include "chain.h"
#include "err.h"
#include "msg.h"

#ifndef RC_SYSCONFDIR
#define RC_SYSCONFDIR "/etc"
#endif
#define CONF_DEFAULT_PATH RC_SYSCONFDIR "/relaychain/relaychain.conf"
/* The longest control_socket name: sun_path has 108 octets on Linux. */
#define CONF_SOCKET_PATH_MAX 108

extern const struct cfg_option conf_options[];

struct conf {
    struct cfg *cfg;           /* the main file */
    struct msg_limits limits;
    enum chain_ambiguous_action ambiguous;
    struct chain *chain;
};

struct conf *conf_load(const char *path, struct err *e);
void conf_free(struct conf *cf);

#endif
