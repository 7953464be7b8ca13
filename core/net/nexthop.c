/*
 * nexthop - the next-hop client's calls: settings, pools, transports
 *
 * See smtpc.h for the calls and smtpc_transport.h for the transports.
 * This file builds a pool's settings from the configuration (one
 * builder for the SMTP front end, the queue and its transport_map
 * routes, and a quarantine release) and checks the configuration's
 * next_hop_tls* keys; it picks the transport by the prefix of next_hop
 * and passes each call of a transaction on to it. It is the top of the
 * client: the transports never call back into it.
 *
 * next_hop is "smtp:[host]:port", "lmtp:[host]:port" (the brackets and
 * the port may be left out: smtp defaults to 25, lmtp to 24; an IPv6
 * address needs the brackets) or "maildir:/absolute/path".
 *
 * Nothing here logs: errors go to struct err and the replies, and the
 * caller logs. The pool owns its copies of the settings and the
 * credentials (wiped when it is freed); a connection belongs to one
 * thread between smtpc_get() and smtpc_put(). The pool's mutex guards
 * only the idle list and the Maildir name sequence.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "util/cfg.h"
#include "net/smtpc.h"
#include "net/smtpc_transport.h"

#define SMTPC_CONNECT_TIMEOUT_MS 30000
#define SMTPC_TIMEOUT_MS 300000
#define SMTPC_IDLE_TIMEOUT_MS 5000

/* The settings smtpc_settings_from_cfg() gives every pool. */
#define SMTPC_CFG_CONNECT_TIMEOUT_MS 30000
#define SMTPC_CFG_IDLE_TIMEOUT_MS 10000

/* The transports, by next_hop's prefix. */
static const struct smtpc_transport_ops *const smtpc_transports[] = {
    &smtpc_maildir_ops,
    &smtpc_smtp_ops,
    &smtpc_lmtp_ops,
};
#define SMTPC_TRANSPORTS                                                      \
    (sizeof(smtpc_transports) / sizeof(smtpc_transports[0]))

/* ------------------------------------------------------------ settings */

/* smtpc_parse_next_hop - the transport of hop, and its address, into p;
 * 0, or -1 with ERR_CONFIG in e. */
static int
smtpc_parse_next_hop(struct smtpc_pool *p, const char *hop, struct err *e)
{
    const struct smtpc_transport_ops *t;
    size_t i, n;

    if (hop == NULL || hop[0] == '\0')
        return err_set(e, ERR_CONFIG, "next_hop: not set");
    for (i = 0; i < SMTPC_TRANSPORTS; i++) {
        t = smtpc_transports[i];
        n = strlen(t->name);
        if (strncasecmp(hop, t->name, n) == 0 && hop[n] == ':') {
            p->ops = t;
            p->kind = t->kind;
            return t->parse(p, hop, hop + n + 1, e);
        }
    }
    return smtpc_hop_err(e, hop, "unknown kind");
}

int
smtpc_settings_from_cfg(const struct cfg *c, const char *next_hop,
                        struct smtpc_settings *s, struct err *e)
{
    memset(s, 0, sizeof(*s));
    s->next_hop = next_hop != NULL ? next_hop : cfg_str(c, "next_hop");
    if (s->next_hop == NULL)
        return err_set(e, ERR_CONFIG, "next_hop: not set");
    /* not set: smtpc_pool_new() takes the system's host name, as
     * myhostname's documentation says */
    s->helo_name = cfg_str(c, "myhostname");
    smtpc_settings_tls(s, c);
    s->auth_file = cfg_str(c, "next_hop_auth_file");
    s->connect_timeout_ms = SMTPC_CFG_CONNECT_TIMEOUT_MS;
    s->timeout_ms = (int)cfg_num(c, "next_hop_timeout");
    s->idle_timeout_ms = SMTPC_CFG_IDLE_TIMEOUT_MS;
    s->max_idle = 0;
    return 0;
}

void
smtpc_settings_tls(struct smtpc_settings *s, const struct cfg *c)
{
    const char *hop = cfg_str(c, "next_hop");
    int own =
        hop != NULL && s->next_hop != NULL && strcmp(hop, s->next_hop) == 0;

    s->tls = (enum smtpc_tls)cfg_enum(c, "next_hop_tls");
    s->tls_ca_file = cfg_str(c, "next_hop_tls_ca_file");
    s->tls_protocols = cfg_str(c, "next_hop_tls_protocols");
    /* A name and a pin are those of one host: the next hop's own. */
    s->tls_fingerprint = own ? cfg_str(c, "next_hop_tls_fingerprint") : NULL;
    s->tls_name = own ? cfg_str(c, "next_hop_tls_name") : NULL;
}

int
smtpc_tls_check_cfg(const struct cfg *c, struct err *e)
{
    unsigned char pins[SMTPC_PINS_MAX][SMTPC_PIN_LEN];
    enum smtpc_tls level = (enum smtpc_tls)cfg_enum(c, "next_hop_tls");
    const char *v, *hop = cfg_str(c, "next_hop");
    struct smtpc_pool tmp;
    X509_STORE *store;
    size_t npins;
    int lo, hi, address;

    if ((v = cfg_str(c, "next_hop_tls_protocols")) != NULL &&
        smtpc_protocols_parse(v, &lo, &hi, e) < 0)
        return cfg_err(e, c, "next_hop_tls_protocols", "%s", e->text);
    if ((v = cfg_str(c, "next_hop_tls_fingerprint")) != NULL) {
        if (smtpc_pins_parse(v, pins, &npins, e) < 0)
            return cfg_err(e, c, "next_hop_tls_fingerprint", "%s", e->text);
        if (level < SMTPC_TLS_ENCRYPT)
            return cfg_err(e, c, "next_hop_tls_fingerprint",
                           "a pin needs next_hop_tls = encrypt, verify or "
                           "secure (with none or may TLS can be left out)");
    }
    if ((v = cfg_str(c, "next_hop_tls_name")) != NULL && !smtpc_name_ok(v))
        return cfg_err(e, c, "next_hop_tls_name",
                       "'%.100s' is not a host name", v);
    if ((v = cfg_str(c, "next_hop_tls_ca_file")) != NULL &&
        level >= SMTPC_TLS_VERIFY) {
        ERR_clear_error();
        if ((store = X509_STORE_new()) == NULL)
            return err_nomem(e);
        if (X509_STORE_load_file(store, v) != 1) {
            char why[256];

            smtpc_tls_why(why, sizeof(why), "no certificates in it");
            X509_STORE_free(store);
            return cfg_err(e, c, "next_hop_tls_ca_file",
                           "%s: cannot load the CA certificates: %s", v, why);
        }
        X509_STORE_free(store);
    }
    if (level == SMTPC_TLS_SECURE && cfg_str(c, "next_hop_tls_name") == NULL &&
        hop != NULL) {
        memset(&tmp, 0, sizeof(tmp));
        address = smtpc_parse_next_hop(&tmp, hop, e) == 0 &&
                  tmp.kind != SMTPC_MAILDIR && tmp.host_is_address;
        free(tmp.maildir);
        if (address)
            return cfg_err(e, c, "next_hop_tls",
                           "secure checks the certificate against the next "
                           "hop's name, and next_hop names the address %s: "
                           "set next_hop_tls_name to the name its "
                           "certificate is for",
                           tmp.host);
    }
    return 0;
}

/* ------------------------------------------------------------ pools */

struct smtpc_pool *
smtpc_pool_new(const struct smtpc_settings *s, struct err *e)
{
    struct smtpc_pool *p;
    char host[SMTPC_HOST_MAX + 1];
    const char *helo = s->helo_name;
    size_t i;

    if ((p = calloc(1, sizeof(*p))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        err_set(e, ERR_TEMP, "smtpc: cannot create a mutex");
        return NULL;
    }
    if (smtpc_parse_next_hop(p, s->next_hop, e) < 0)
        goto fail;
    if (helo == NULL || helo[0] == '\0') {
        if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        helo = host;
    }
    for (i = 0; helo[i] != '\0'; i++)
        if (!smtpc_host_char_ok(helo[i], 1) && helo[i] != '[' &&
            helo[i] != ']')
            break;
    if (helo[i] != '\0' || i > SMTPC_HOST_MAX) {
        err_set(e, ERR_CONFIG, "helo name '%.100s': not a host name", helo);
        goto fail;
    }
    if ((p->helo = strdup(helo)) == NULL) {
        err_nomem(e);
        goto fail;
    }
    p->tls = s->tls;
    p->connect_timeout_ms = s->connect_timeout_ms > 0
                                ? s->connect_timeout_ms
                                : SMTPC_CONNECT_TIMEOUT_MS;
    p->timeout_ms = s->timeout_ms > 0 ? s->timeout_ms : SMTPC_TIMEOUT_MS;
    p->idle_timeout_ms =
        s->idle_timeout_ms > 0 ? s->idle_timeout_ms : SMTPC_IDLE_TIMEOUT_MS;
    p->max_idle = s->max_idle;
    if (p->ops->init(p, s, e) < 0)
        goto fail;
    return p;
fail:
    smtpc_pool_free(p);
    return NULL;
}

void
smtpc_pool_free(struct smtpc_pool *p)
{
    if (p == NULL)
        return;
    /* the transport's part; a pool whose next_hop did not parse has
     * none */
    if (p->ops != NULL && p->ops->fini != NULL)
        p->ops->fini(p);
    explicit_bzero(p->user, sizeof(p->user));
    explicit_bzero(p->pass, sizeof(p->pass));
    free(p->maildir);
    free(p->helo);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

enum smtpc_kind
smtpc_pool_kind(const struct smtpc_pool *p)
{
    return p->kind;
}

/* ------------------------------------------------------------ transaction */

const char *
smtpc_relay_name(const struct smtpc_conn *c)
{
    return c != NULL ? c->relay : "none";
}

void
smtpc_set_id(struct smtpc_conn *c, const char *qid)
{
    snprintf(c->id, sizeof(c->id), "%s", qid != NULL ? qid : "");
}

struct smtpc_conn *
smtpc_get(struct smtpc_pool *p, struct smtpc_reply *r, struct err *e)
{
    r->code = 0;
    r->text[0] = '\0';
    return p->ops->get(p, r, e);
}

void
smtpc_put(struct smtpc_pool *p, struct smtpc_conn *c, int ok)
{
    if (c == NULL)
        return;
    p->ops->put(p, c, ok);
}

int
smtpc_rset(struct smtpc_conn *c, struct err *e)
{
    return c->pool->ops->rset(c, e);
}

int
smtpc_mail(struct smtpc_conn *c, const struct msg_env *env, const char *sender,
           const char *params, struct smtpc_reply *r, struct err *e)
{
    if (env != NULL && env->qid != NULL)
        smtpc_set_id(c, env->qid);
    return c->pool->ops->mail(c, env, sender, params, r, e);
}

int
smtpc_rcpt(struct smtpc_conn *c, const char *rcpt, const char *params,
           struct smtpc_reply *r, struct err *e)
{
    return c->pool->ops->rcpt(c, rcpt, params, r, e);
}

int
smtpc_data_iov(struct smtpc_conn *c, const struct iovec *iov, size_t niov,
               struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
               struct err *e)
{
    return c->pool->ops->data(c, iov, niov, each, n, r, e);
}

int
smtpc_data_rcpts(struct smtpc_conn *c, const char *data, size_t len,
                 struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                 struct err *e)
{
    struct iovec one;

    one.iov_base = (void *)(uintptr_t)data;
    one.iov_len = len;
    return smtpc_data_iov(c, &one, 1, each, n, r, e);
}

int
smtpc_data(struct smtpc_conn *c, const char *data, size_t len,
           struct smtpc_reply *r, struct err *e)
{
    return smtpc_data_rcpts(c, data, len, NULL, 0, r, e);
}
