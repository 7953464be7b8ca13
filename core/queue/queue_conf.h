/*
 * queue_conf - the queue's keys of relaychain.conf
 *
 * queue_conf_part declares delivery (through, or queue: store and
 * forward through the spool), the spool and its delivery schedule
 * (queue_*, delivery_concurrency, the backoff times, delay warnings,
 * transport_map) and quarantine_directory, where the quarantine store
 * keeps held messages; it checks that the spool is usable with delivery
 * = queue. Whoever loads relaychain.conf hands it to conf_load()
 * (chain/conf.h).
 */
#ifndef RC_QUEUE_CONF_H
#define RC_QUEUE_CONF_H

#include "chain/conf.h"

extern const struct conf_part queue_conf_part;

#endif
