/*
 * events_conf - the keys of delivery events and the suppression list
 *
 * events_conf_part declares events_store, events_spool, events_buffer,
 * events_batch, events_batch_time, stream_map, suppress_scope,
 * suppress_expiry, on_suppressed, verp_domain, verp_key_file,
 * fbl_address, fbl_match_header and fbl_clients, refusing a bad one with
 * file:line. Whoever loads relaychain.conf hands it to conf_load()
 * (chain/conf.h).
 */
#ifndef RC_EVENTS_CONF_H
#define RC_EVENTS_CONF_H

#include "chain/conf.h"
#include "queue/events.h"

extern const struct conf_part events_conf_part;

/* events_settings_from - s from the checked file c; strings borrowed
 * from c. 1 when events_store is set, 0 when events are off. */
int events_settings_from(const struct cfg *c, struct events_settings *s);

#endif
