/*
 * parts - the layers whose keys relaychain.conf holds, for the commands
 *
 * parts_all is what every relaychain command hands conf_load(): the
 * next-hop client's, the queue's, the SMTP and the milter front end's
 * keys, each with its check (chain/conf.h), in the order their checks
 * run. parts_runtime is what "relaychain check" hands runtime_new() to
 * build what relaychaind's runtime holds besides the configuration.
 * relaychaind hands over the same lists (core/daemon/parts.c), so that
 * "relaychain check" refuses what the daemon would; neither may use the
 * other's layer, and tests/unit/test_parts.c keeps the two the same.
 */
#ifndef RC_PARTS_H
#define RC_PARTS_H

#include "chain/conf.h"
#include "chain/runtime.h"

extern const struct conf_part *const parts_all[];
extern const struct runtime_part_type *const parts_runtime[];

#endif
