/*
 * parts - the layers whose keys relaychain.conf holds, for the commands
 *
 * parts_all is what every relaychain command hands conf_load(): the
 * next-hop client's, the queue's, the SMTP and the milter front end's
 * keys, each with its check (chain/conf.h), in the order their checks
 * run. relaychaind hands over the same list (core/daemon/relaychaind.c),
 * so that "relaychain check" refuses what the daemon would.
 */
#ifndef RC_PARTS_H
#define RC_PARTS_H

#include "chain/conf.h"

extern const struct conf_part *const parts_all[];

#endif
