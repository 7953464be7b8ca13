/*
 * queue_conf - the queue's keys of relaychain.conf
 *
 * delivery is declared here because the queue is the lowest layer that
 * reads it (the SMTP front end, the daemon and "relaychain quarantine
 * release" read it too). The check is what relaychaind refuses at
 * start-up and on reload, so that "relaychain check" refuses it too;
 * errors name the key and its line. Nothing is allocated.
 */
#include "config.h"

#include "queue/queue_conf.h"

static const char *const queue_conf_delivery_choices[] = {
    [QUEUE_DELIVERY_THROUGH] = "through",
    [QUEUE_DELIVERY_QUEUE] = "queue",
    NULL};

static const struct cfg_option queue_conf_options[] = {
    {"delivery", CFG_ENUM, "through",
     "through: answer the client after the next hop answered; queue: "
     "store and forward",
     queue_conf_delivery_choices, 0, 0, 0},
    {"quarantine_directory", CFG_PATH, CONF_SPOOL_DIR "/quarantine",
     "where quarantined messages are kept", NULL, 0, 0, 0},
    {"queue_directory", CFG_PATH, CONF_SPOOL_DIR,
     "the spool of delivery = queue (tmp/, queue/, hold/, corrupt/, "
     "defer/)",
     NULL, 0, 0, 0},
    {"queue_minfree", CFG_SIZE, "0",
     "free space the spool must keep: MAIL gets 452 4.3.1 when less than "
     "this plus 1.5 times the announced SIZE is left",
     NULL, 0, 0, 0},
    {"delivery_concurrency", CFG_INT, "10",
     "queue delivery workers, one transaction each at a time", NULL, 1, 1000,
     0},
    {"destination_concurrency_limit", CFG_INT, "20",
     "transactions to one recipient domain at a time (0: no limit)", NULL, 0,
     1000, 0},
    {"destination_rate_delay", CFG_TIME, "0s",
     "pause between transactions to one recipient domain (0: none)", NULL, 0,
     3600 * 1000LL, 0},
    {"destination_throttle_time", CFG_TIME, "60s",
     "after a throttling reply (421 or 4.7.x) to a recipient, no delivery "
     "to its domain for this long, doubled at each throttle in a row up to "
     "maximal_backoff_time",
     NULL, 1000, 86400 * 1000LL, 0},
    {"minimal_backoff_time", CFG_TIME, "300s",
     "shortest wait before a deferred message is tried again", NULL, 100,
     7 * 86400 * 1000LL, 0},
    {"maximal_backoff_time", CFG_TIME, "4000s",
     "longest wait before a deferred message is tried again", NULL, 100,
     7 * 86400 * 1000LL, 0},
    {"maximal_queue_lifetime", CFG_TIME, "5d",
     "how long a message is retried before it is returned as undeliverable",
     NULL, 1000, 100 * 86400 * 1000LL, 0},
    {"delay_warning_time", CFG_TIME, "0",
     "send the sender one delay notice after this long in the queue; 0: "
     "never",
     NULL, 0, 100 * 86400 * 1000LL, 0},
    {"queue_run_delay", CFG_TIME, "300s",
     "how often queue/ is scanned for messages the daemon does not know", NULL,
     1000, 86400 * 1000LL, 0},
    {"transport_map", CFG_PATH, NULL,
     "\"domain next-hop\" lines (.domain for subdomains, * for the rest) "
     "routing queued mail per recipient domain",
     NULL, 0, 0, 0},
    CFG_OPTION_END,
};

static int
queue_conf_check(const struct cfg *c, struct err *e)
{
    if (queue_delivery(c) == QUEUE_DELIVERY_QUEUE &&
        conf_check_dir(c, "queue_directory", 0, 0, e) < 0)
        return -1;
    return 0;
}

const struct conf_part queue_conf_part = {
    .name = "queue",
    .options = queue_conf_options,
    .check = queue_conf_check,
};

enum queue_delivery
queue_delivery(const struct cfg *c)
{
    return (enum queue_delivery)cfg_enum(c, "delivery");
}
