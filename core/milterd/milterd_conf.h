/*
 * milterd_conf - the milter front end's keys of relaychain.conf
 *
 * milterd_conf_part declares the milter socket (milter_listen, its mode
 * and group, Nagle on TCP) and what to do with a message over the size
 * limits in milter mode, and checks what milterd_open() would refuse:
 * the socket's form, its mode, its group and its directory. Whoever
 * loads relaychain.conf hands it to conf_load() (chain/conf.h).
 */
#ifndef RC_MILTERD_CONF_H
#define RC_MILTERD_CONF_H

#include "chain/conf.h"

extern const struct conf_part milterd_conf_part;

#endif
