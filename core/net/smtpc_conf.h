/*
 * smtpc_conf - the next-hop client's keys of relaychain.conf
 *
 * smtpc_conf_part declares next_hop and the next_hop_* keys (TLS to the
 * next hop, its password file, its timeout) and checks them as a whole:
 * smtpc_tls_check_cfg(), and the password file kept from other users.
 * Whoever loads relaychain.conf hands it to conf_load() (chain/conf.h).
 */
#ifndef RC_SMTPC_CONF_H
#define RC_SMTPC_CONF_H

#include "chain/conf.h"

extern const struct conf_part smtpc_conf_part;

#endif
