/*
 * parts - the layers whose keys relaychain.conf holds, for the commands
 *
 * Layer by layer, lowest first: a part's check may read the keys of the
 * parts before it. Keep it the same as relaychaind's list
 * (core/daemon/parts.c; tests/unit/test_parts.c compares them).
 */
#include "config.h"

#include "cli/parts.h"
#include "milterd/milterd_conf.h"
#include "net/httpd_conf.h" /* ---- http */
#include "net/smtpc_conf.h"
#include "queue/queue_conf.h"
#include "queue/events_conf.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_conf.h"

const struct conf_part *const parts_all[] = {
    &smtpc_conf_part,
    &queue_conf_part,
    &events_conf_part, /* ---- events */
    &smtpd_conf_part,
    &milterd_conf_part,
    &httpd_conf_part, /* ---- http */
    NULL,
};

/* What relaychaind's runtime holds besides the configuration. */
const struct runtime_part_type *const parts_runtime[] = {
    &smtpd_runtime_type,
    NULL,
};
