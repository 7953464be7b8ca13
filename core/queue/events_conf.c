/*
 * events_conf - the keys of delivery events and the suppression list
 *
 * events_conf_part declares events_store (off when unset; SQLite or
 * PostgreSQL), events_store_password_file, the writer's
 * buffer and batch, stream_map, suppress_scope, suppress_expiry and
 * on_suppressed, and
 * refuses, with file:line, a PostgreSQL URI with a password in it or
 * without events_spool, a store without delivery = queue, the other keys
 * without a store, a stream_map that does not load, and VERP and
 * complaint keys that are malformed (a verp_key_file that does not
 * load or is too short, an fbl_clients item that is no network).
 * events_settings_from() fills the
 * writer's settings from a checked file; nothing is allocated.
 */
#include "config.h"

#include <string.h>

#include "util/cidr.h" /* ---- verp: fbl_clients */
#include "util/regmap.h"
#include "queue/events_conf.h"
#include "queue/events_db.h"
#include "queue/queue_conf.h"
#include "queue/verp.h" /* ---- verp */

static const char *const events_conf_scope_choices[] = {"global", "stream",
                                                        NULL};
static const char *const events_conf_suppressed_choices[] = {"reject", "drop",
                                                             NULL};
/* ten years, in milliseconds: beyond that "0" says what is meant */
#define EVENTS_CONF_EXPIRY_MAX (3650 * 86400 * 1000LL)

static const struct cfg_option events_conf_options[] = {
    {"events_store", CFG_STRING, NULL,
     "where delivery events and the suppression list are kept "
     "(sqlite:/var/lib/relaychain/events.db, or "
     "postgresql://user@host:port/db shared by several relays); unset: no "
     "events",
     NULL, 0, 0, 0},
    /* ---- events: PostgreSQL */
    {"events_store_password_file", CFG_PATH, NULL,
     "a file whose first line is the PostgreSQL password; unset: libpq's "
     "~/.pgpass or PGPASSFILE",
     NULL, 0, 0, 0},
    {"events_spool", CFG_PATH, NULL,
     "the file events go to while the store is failing or the buffer is "
     "full, replayed later; unset: the store's file with .spool added",
     NULL, 0, 0, 0},
    {"events_buffer", CFG_INT, "10000",
     "events held in memory for the writer before they go to the spool", NULL,
     1, 10000000, 0},
    {"events_batch", CFG_INT, "500", "events written per transaction", NULL, 1,
     100000, 0},
    {"events_batch_time", CFG_TIME, "200ms",
     "longest wait to fill a batch of events", NULL, 1, 60000, 0},
    {"stream_map", CFG_PATH, NULL,
     "pcre_table(5)-style map from the authenticated user or the sender "
     "to a stream name; set: only mail on a stream is checked against the "
     "suppression list",
     NULL, 0, 0, 0},
    {"suppress_scope", CFG_ENUM, "global",
     "a hard bounce suppresses the recipient for all mail (global) or for "
     "its stream only (stream)",
     events_conf_scope_choices, 0, 0, 0},
    {"suppress_expiry", CFG_TIME, "0",
     "how long the entries that hard bounces, complaints and unsubscribes "
     "put on the suppression list last (90d); 0: for ever",
     NULL, 0, EVENTS_CONF_EXPIRY_MAX, 0},
    {"on_suppressed", CFG_ENUM, "reject",
     "reject: RCPT of a suppressed recipient gets 550 5.7.1; drop: it is "
     "accepted and not delivered, with a suppressed event",
     events_conf_suppressed_choices, 0, 0, 0},
    /* ---- verp */
    {"verp_domain", CFG_STRING, NULL,
     "tracked mail leaves with the envelope sender bounces+TOKEN@ this "
     "domain, one transaction per recipient; relaychaind takes mail for it "
     "from anyone and reads the bounces and complaints; unset: no VERP",
     NULL, 0, 0, 0},
    {"verp_key_file", CFG_PATH, NULL,
     "the secret (32 octets or more, not readable by others) that signs the "
     "VERP tokens; needed with verp_domain",
     NULL, 0, 0, 0},
    {"fbl_address", CFG_STRING, NULL,
     "an address where ARF complaint reports (RFC 5965) arrive, taken from "
     "anyone like verp_domain; reports to the VERP domain are read too",
     NULL, 0, 0, 0},
    {"fbl_match_header", CFG_STRING, NULL,
     "a header of the reported message whose value is the Message-ID of "
     "the original, for senders whose Message-ID the reports lose",
     NULL, 0, 0, 0},
    {"fbl_clients", CFG_LIST, NULL,
     "networks (CIDR) the mailbox providers' feedback loops send from; a "
     "complaint matched by Message-ID or fbl_match_header to a message of "
     "several recipients counts only from them, and only for the recipient "
     "it names",
     NULL, 0, 0, 0},
    /* ---- end verp */
    CFG_OPTION_END,
};

/* ---- verp: events_conf_verp - the VERP and complaint keys: a domain
 * that is one, a key that loads, an address with one @, a header name;
 * each needs events_store. 0, or -1 with e (file:line). */
static int
events_conf_verp(const struct cfg *c, const char *store, struct err *e)
{
    static const char *const keys[] = {"verp_domain", "verp_key_file",
                                       "fbl_address", "fbl_match_header",
                                       "fbl_clients", NULL};
    const char *dom = cfg_str(c, "verp_domain");
    const char *fbl = cfg_str(c, "fbl_address");
    const char *hdr = cfg_str(c, "fbl_match_header");
    const char *kf = cfg_str(c, "verp_key_file");
    const char *const *items;
    struct cidr_list *l;
    size_t i, n;

    for (i = 0; keys[i] != NULL; i++)
        if (store == NULL && cfg_is_set(c, keys[i]))
            return cfg_err(e, c, keys[i], "does nothing without events_store");
    if (dom != NULL) {
        if (dom[0] == '\0' || dom[0] == '.' || dom[0] == '-' ||
            strlen(dom) > 200 ||
            dom[strspn(dom, "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")] !=
                '\0' ||
            strchr(dom, '.') == NULL || strstr(dom, "..") != NULL)
            return cfg_err(e, c, "verp_domain", "'%s' is not a domain name",
                           dom);
        if (kf == NULL)
            return cfg_err(e, c, "verp_domain", "needs verp_key_file");
    } else if (kf != NULL) {
        return cfg_err(e, c, "verp_key_file",
                       "does nothing without "
                       "verp_domain");
    }
    if (kf != NULL) {
        struct verp_key key;
        struct err e2;

        err_clear(&e2);
        if (verp_key_load(kf, &key, &e2) < 0)
            return cfg_err(e, c, "verp_key_file", "%s", e2.text);
        verp_key_wipe(&key);
    }
    if (fbl != NULL) {
        const char *at = strchr(fbl, '@');

        if (at == NULL || at == fbl || at[1] == '\0' ||
            strchr(at + 1, '@') != NULL || strlen(fbl) > 254 ||
            fbl[strcspn(fbl, " \t<>\"")] != '\0')
            return cfg_err(e, c, "fbl_address", "'%s' is not an address", fbl);
    }
    if (hdr != NULL &&
        (hdr[0] == '\0' || strlen(hdr) > 76 ||
         hdr[strspn(hdr, "abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")] != '\0'))
        return cfg_err(e, c, "fbl_match_header", "'%s' is not a header name",
                       hdr);
    if (hdr != NULL && dom == NULL && fbl == NULL)
        return cfg_err(e, c, "fbl_match_header",
                       "does nothing without verp_domain or fbl_address");
    n = cfg_list(c, "fbl_clients", &items);
    if ((l = cidr_list_new(items, n, e)) == NULL)
        return cfg_err(e, c, "fbl_clients", "%s", e->text);
    cidr_list_free(l);
    if (n > 0 && dom == NULL && fbl == NULL)
        return cfg_err(e, c, "fbl_clients",
                       "does nothing without verp_domain or fbl_address");
    return 0;
}
/* ---- end verp */

static int
events_conf_check(const struct cfg *c, struct err *e)
{
    const char *store = cfg_str(c, "events_store");

    if (events_conf_verp(c, store, e) < 0) /* ---- verp */
        return -1;
    if (store == NULL) {
        /* a key that would do nothing is refused, not ignored */
        static const char *const needs_store[] = {"events_spool",
                                                  "events_buffer",
                                                  "events_store_password_file",
                                                  "events_batch",
                                                  "events_batch_time",
                                                  "stream_map",
                                                  "suppress_scope",
                                                  "suppress_expiry",
                                                  "on_suppressed",
                                                  NULL};
        size_t i;

        for (i = 0; needs_store[i] != NULL; i++)
            if (cfg_is_set(c, needs_store[i]))
                return cfg_err(e, c, needs_store[i],
                               "does nothing without events_store");
        return 0;
    }
    {
        struct err e2;
        struct regmap *rm;

        err_clear(&e2);
        if (events_db_check(store, &e2) < 0)
            return cfg_err(e, c, "events_store", "%s", e2.text);
        if (!events_db_is_pg(store) &&
            cfg_is_set(c, "events_store_password_file"))
            return cfg_err(e, c, "events_store_password_file",
                           "only a PostgreSQL store takes a password");
        if (events_db_is_pg(store) && !cfg_is_set(c, "events_spool"))
            return cfg_err(e, c, "events_store",
                           "a PostgreSQL store needs events_spool, the "
                           "local file events wait in while it is down");
        /* the store keeps whole seconds: "1500ms" would not last what
         * it says */
        if (cfg_num(c, "suppress_expiry") % 1000 != 0)
            return cfg_err(e, c, "suppress_expiry",
                           "'%s' is not a whole number of seconds",
                           cfg_raw(c, "suppress_expiry"));
        if (queue_delivery(c) != QUEUE_DELIVERY_QUEUE)
            return cfg_err(e, c, "events_store",
                           "events are recorded with delivery = queue only");
        if (cfg_str(c, "stream_map") != NULL) {
            if ((rm = regmap_load(cfg_str(c, "stream_map"), &e2)) == NULL)
                return cfg_err(e, c, "stream_map", "%s", e2.text);
            regmap_free(rm);
        }
    }
    return 0;
}

const struct conf_part events_conf_part = {
    .name = "events",
    .options = events_conf_options,
    .check = events_conf_check,
};

int
events_settings_from(const struct cfg *c, struct events_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->store = cfg_str(c, "events_store");
    if (s->store == NULL)
        return 0;
    s->spool = cfg_str(c, "events_spool");
    s->password_file = cfg_str(c, "events_store_password_file");
    s->stream_map = cfg_str(c, "stream_map");
    /* a key of the SMTP front end's, which reads the header */
    s->stream_header = cfg_is_set(c, "stream_header");
    s->buffer_max = (size_t)cfg_num(c, "events_buffer");
    s->batch_max = (size_t)cfg_num(c, "events_batch");
    s->batch_ms = cfg_num(c, "events_batch_time");
    s->suppress_stream = cfg_enum(c, "suppress_scope") == 1;
    s->suppress_expiry = cfg_num(c, "suppress_expiry") / 1000;
    s->drop = cfg_enum(c, "on_suppressed") == 1;
    /* ---- verp */
    s->verp_domain = cfg_str(c, "verp_domain");
    s->verp_key_file = cfg_str(c, "verp_key_file");
    s->fbl_address = cfg_str(c, "fbl_address");
    s->fbl_match_header = cfg_str(c, "fbl_match_header");
    s->nfbl_clients = cfg_list(c, "fbl_clients", &s->fbl_clients);
    /* ---- end verp */
    return 1;
}
