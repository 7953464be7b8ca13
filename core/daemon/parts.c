/*
 * parts - the layers relaychaind's configuration and runtime are made of
 *
 * daemon_parts is what start-up and every reload hand conf_load(), and
 * daemon_runtime_parts what they hand runtime_new(). The commands hand
 * over their own lists (core/cli/parts.c): the daemon may not use the
 * commands' layer nor they the daemon's, and no layer below both knows
 * both front ends. tests/unit/test_parts.c checks that the two pairs of
 * lists are the same, entry by entry.
 */
#include "config.h"

#include "daemon/daemon_int.h"
#include "milterd/milterd_conf.h"
#include "net/httpd_conf.h" /* ---- http */
#include "net/smtpc_conf.h"
#include "queue/queue_conf.h"
#include "queue/events_conf.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_conf.h"

/* The layers whose keys relaychain.conf holds, lowest first (a part's
 * check may read the keys of those before it): the same list as the
 * commands' (core/cli/parts.c), so "relaychain check" refuses what the
 * daemon would. */
const struct conf_part *const daemon_parts[] = {
    &smtpc_conf_part,
    &queue_conf_part,
    &events_conf_part, /* ---- events */
    &smtpd_conf_part,
    &milterd_conf_part,
    &httpd_conf_part, /* ---- http */
    NULL,
};

/* What each runtime holds besides the configuration: the SMTP front
 * end's part (also without SMTP listeners, as "relaychain check" builds
 * it). The milter front end needs none. */
const struct runtime_part_type *const daemon_runtime_parts[] = {
    &smtpd_runtime_type,
    NULL,
};
