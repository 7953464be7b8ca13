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

/* The value of delivery, in the order of its choices. */
enum queue_delivery { QUEUE_DELIVERY_THROUGH, QUEUE_DELIVERY_QUEUE };

/* queue_delivery - what delivery c says (c validated with the part). */
enum queue_delivery queue_delivery(const struct cfg *c);

#endif
