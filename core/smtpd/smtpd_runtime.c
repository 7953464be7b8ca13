/*
 * smtpd_runtime - the SMTP front end's part of a runtime
 *
 * smtpd_runtime_type builds a struct smtpd_runtime (smtpd_int.h) from a
 * loaded configuration: the networks and domains of the relay policy,
 * the AUTH users and the sender login map, the TLS context, the next-hop
 * pool, and the limits of a session. The runtime owns all of it and
 * frees it when the last session under it is done (chain/runtime.h). A
 * setting it refuses fails the build with "path:line: reason", the line
 * "relaychain check" prints as well.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "chain/runtime.h"
#include "net/auth.h"
#include "net/ratestate.h"
#include "net/smtpc.h"
#include "queue/queue_conf.h"
#include "util/cfg.h"
#include "util/cidr.h"
#include "util/ratelimit.h"
#include "util/regmap.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_conf.h"
#include "smtpd/smtpd_int.h"

static struct cidr_list *
smtpd_cidr(const struct cfg *c, const char *key, struct err *e)
{
    const char *const *items;
    size_t n = cfg_list(c, key, &items);
    struct cidr_list *l;

    if ((l = cidr_list_new(items, n, e)) == NULL)
        cfg_err(e, c, key, "%s", e->text);
    return l;
}

/* smtpd_clients - the list of clients at key (smtpd_dsn_clients,
 * stream_header_clients): the words "mynetworks", "authenticated" and
 * "all", and networks as in mynetworks. */
static int
smtpd_clients(struct smtpd_clients *l, const struct cfg *c, const char *key,
              struct err *e)
{
    const char *const *items;
    const char **nets;
    size_t n = cfg_list(c, key, &items), i, k = 0;

    if ((nets = calloc(n + 1, sizeof(*nets))) == NULL)
        return err_nomem(e);
    for (i = 0; i < n; i++) {
        if (strcasecmp(items[i], "mynetworks") == 0) {
            l->mynetworks = 1;
        } else if (strcasecmp(items[i], "authenticated") == 0) {
            l->auth = 1;
        } else if (strcasecmp(items[i], "all") == 0) {
            l->all = 1;
        } else if (strchr(items[i], '.') == NULL &&
                   strchr(items[i], ':') == NULL) {
            /* a word, not an address: a typo must not pass as a network */
            free(nets);
            return cfg_err(e, c, key,
                           "'%.100s': not mynetworks, authenticated, all or "
                           "a network",
                           items[i]);
        } else {
            nets[k++] = items[i];
        }
    }
    l->nets = cidr_list_new(nets, k, e);
    free(nets);
    if (l->nets == NULL)
        return cfg_err(e, c, key, "%s", e->text);
    return 0;
}

static void smtpd_runtime_free(void *part);

/* smtpd_runtime_build - the part from cf; NULL with e set, "path:line:
 * reason" for a setting it refuses. */
static void *
smtpd_runtime_build(const struct conf *cf, struct err *e)
{
    const struct cfg *c = cf->cfg;
    struct smtpc_settings hop;
    struct smtpd_runtime *rt;
    const char *s;

    if ((rt = calloc(1, sizeof(*rt))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    rt->cf = cf;
    if ((s = cfg_str(c, "myhostname")) == NULL) {
        if (gethostname(rt->hostbuf, sizeof(rt->hostbuf) - 1) < 0)
            snprintf(rt->hostbuf, sizeof(rt->hostbuf), "localhost");
        s = rt->hostbuf;
    }
    rt->hostname = s;
    if ((rt->mynetworks = smtpd_cidr(c, "mynetworks", e)) == NULL ||
        (rt->xforward_hosts = smtpd_cidr(c, "xforward_hosts", e)) == NULL)
        goto fail;
    if (smtpd_clients(&rt->dsn, c, "smtpd_dsn_clients", e) < 0)
        goto fail;
    /* ---- events */
    rt->stream_header = cfg_str(c, "stream_header");
    if (smtpd_clients(&rt->stream_clients, c, "stream_header_clients", e) < 0)
        goto fail;
    rt->nrelay_domains = cfg_list(c, "relay_domains", &rt->relay_domains);
    /* Each failure names the key and its line: relaychain check prints
     * these too (one validation path). */
    if ((s = cfg_str(c, "auth_password_file")) != NULL &&
        (rt->auth = auth_table_load(s, e)) == NULL) {
        cfg_err(e, c, "auth_password_file", "%s", e->text);
        goto fail;
    }
    if ((s = cfg_str(c, "sender_login_map")) != NULL &&
        (rt->login_map = regmap_load(s, e)) == NULL) {
        cfg_err(e, c, "sender_login_map", "%s", e->text);
        goto fail;
    }
    if ((cfg_str(c, "tls_cert_file") == NULL) !=
        (cfg_str(c, "tls_key_file") == NULL)) {
        cfg_err(e, c,
                cfg_str(c, "tls_cert_file") ? "tls_cert_file" : "tls_key_file",
                "tls_cert_file and tls_key_file go together");
        goto fail;
    }
    if (cfg_str(c, "tls_cert_file") != NULL &&
        (rt->tls = auth_tls_server_ctx(cfg_str(c, "tls_cert_file"),
                                       cfg_str(c, "tls_key_file"), e)) ==
            NULL) {
        s = cfg_str(c, "tls_key_file");
        cfg_err(e, c,
                strncmp(e->text, s, strlen(s)) == 0 &&
                        strcmp(s, cfg_str(c, "tls_cert_file")) != 0
                    ? "tls_key_file"
                    : "tls_cert_file",
                "%s", e->text);
        goto fail;
    }
    if (rt->auth != NULL && rt->tls == NULL) {
        cfg_err(e, c, "auth_password_file",
                "AUTH is offered only after STARTTLS: set tls_cert_file and "
                "tls_key_file");
        goto fail;
    }
    rt->queue_mode = queue_delivery(c) == QUEUE_DELIVERY_QUEUE;
    /* ---- verp: the keys need events_store (checked at load), which
     * needs delivery = queue; restart-only, as the events writer is */
    if (rt->queue_mode && cfg_raw(c, "events_store") != NULL) {
        /* raw: a program that loads no events part has none of them */
        rt->inbound_domain = cfg_raw(c, "verp_domain");
        rt->inbound_fbl = cfg_raw(c, "fbl_address");
    }
    if (cfg_str(c, "next_hop") == NULL) {
        const char *const *l;

        /* A milter-only daemon hands messages back to the MTA. */
        if (cfg_list(c, "smtp_listen", &l) == 0 &&
            cfg_str(c, "milter_listen") != NULL)
            goto limits;
        cfg_err(e, c, "next_hop", "relaychaind needs a next_hop");
        goto fail;
    }
    if (smtpc_settings_from_cfg(c, NULL, &hop, e) < 0)
        goto fail;
    hop.max_idle = 64;
    if ((rt->hop = smtpc_pool_new(&hop, e)) == NULL) {
        if (e->code == ERR_CONFIG)
            cfg_err_prefixed(e, c, "next_hop");
        goto fail;
    }
limits:
    rt->size_limit = cf->limits.message_size;
    rt->memory_limit = (size_t)cfg_num(c, "smtpd_memory_limit");
    rt->rcpt_limit = (size_t)cfg_num(c, "recipient_limit");
    rt->timeout_ms = (int)cfg_num(c, "smtpd_timeout");
    rt->record_deadline = cfg_bool(c, "smtpd_per_record_deadline");
    rt->greet_pause_ms = (int)cfg_num(c, "smtpd_greet_pause");
    rt->error_limit = (int)cfg_num(c, "error_limit");
    rt->junk_limit = (int)cfg_num(c, "smtpd_junk_command_limit");
    rt->auth_failure_limit = (int)cfg_num(c, "auth_failure_limit");
    rt->auth_failure_rate = (unsigned)cfg_num(c, "auth_failure_rate");
    rt->normalize_newlines =
        (enum smtpd_bare_newline)cfg_enum(c, "bare_newline") ==
        SMTPD_BARE_NEWLINE_NORMALIZE;
    rt->wrap_long_lines = (enum smtpd_long_line)cfg_enum(
                              c, "long_line_action") == SMTPD_LONG_LINE_WRAP;
    rt->max_conn = (unsigned)cfg_num(c, "max_connections");
    rt->max_conn_client = (unsigned)cfg_num(c, "max_connections_per_client");
    /* ---- fleet: rate limits and the PROXY protocol */
    if ((s = cfg_str(c, "rate_limits")) != NULL &&
        (rt->limits = ratelimit_load(s, e)) == NULL) {
        cfg_err(e, c, "rate_limits", "%s", e->text);
        goto fail;
    }
    /* a Redis store also shares the AUTH failure counts (smtpd_auth.c) */
    if (rt->limits != NULL ||
        strncmp(cfg_str(c, "state_store"), "redis://", 8) == 0) {
        if ((rt->state = ratestate_new(
                 cfg_str(c, "state_store"),
                 (enum ratestate_on_error)cfg_enum(c, "state_on_error"),
                 (int)cfg_num(c, "state_timeout"), e)) == NULL) {
            cfg_err(e, c, "state_store", "%s", e->text);
            goto fail;
        }
    }
    rt->proxy = cfg_enum(c, "smtp_proxy_protocol") == SMTPD_PROXY_HAPROXY;
    if ((rt->proxy_hosts = smtpd_cidr(c, "proxy_protocol_hosts", e)) == NULL)
        goto fail;
    rt->proxy_timeout_ms = (int)cfg_num(c, "proxy_protocol_timeout");
    /* ---- end fleet */
    return rt;

fail:
    smtpd_runtime_free(rt);
    return NULL;
}

static void
smtpd_runtime_free(void *part)
{
    struct smtpd_runtime *rt = part;

    if (rt == NULL)
        return;
    /* ---- fleet */
    ratestate_free(rt->state);
    ratelimit_set_free(rt->limits);
    cidr_list_free(rt->proxy_hosts);
    /* ---- end fleet */
    smtpc_pool_free(rt->hop);
    if (rt->tls != NULL)
        SSL_CTX_free(rt->tls);
    regmap_free(rt->login_map);
    auth_table_free(rt->auth);
    cidr_list_free(rt->stream_clients.nets); /* ---- events */
    cidr_list_free(rt->dsn.nets);
    cidr_list_free(rt->xforward_hosts);
    cidr_list_free(rt->mynetworks);
    free(rt);
}

const struct runtime_part_type smtpd_runtime_type = {
    .name = "smtpd",
    .build = smtpd_runtime_build,
    .free = smtpd_runtime_free,
};
