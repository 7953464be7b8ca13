/*
 * smtpd_conf - the SMTP front end's keys of relaychain.conf
 *
 * The check is what relaychaind refuses at start-up and on reload, so
 * that "relaychain check" refuses it too; errors name the key and its
 * line. It reads quarantine_directory, a key of the queue's part: the
 * SMTP front end is what keeps held mail there (quarantine_store). What
 * only building the runtime shows (AUTH table, TLS context, next hop) is
 * the runtime part's (smtpd_runtime_type). Nothing is allocated.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "net/ratestate.h"
#include "util/cidr.h"
#include "util/ratelimit.h"
#include "smtpd/smtpd_conf.h"

#define SMTPD_CONF_HOST_MAX 255 /* octets of a listener's host */

static const char *const smtpd_conf_bare_newline_choices[] = {
    [SMTPD_BARE_NEWLINE_REJECT] = "reject",
    [SMTPD_BARE_NEWLINE_NORMALIZE] = "normalize",
    NULL};
static const char *const smtpd_conf_long_line_choices[] = {
    [SMTPD_LONG_LINE_REJECT] = "reject",
    [SMTPD_LONG_LINE_WRAP] = "wrap",
    NULL};
/* ---- fleet: rate limits, their shared state, the PROXY protocol */
static const char *const smtpd_conf_state_on_error_choices[] = {
    [RATESTATE_LOCAL] = "local", [RATESTATE_TEMPFAIL] = "tempfail", NULL};
static const char *const smtpd_conf_proxy_choices[] = {
    [SMTPD_PROXY_NONE] = "no", [SMTPD_PROXY_HAPROXY] = "haproxy", NULL};
/* ---- end fleet */

static const struct cfg_option smtpd_conf_options[] = {
    {"smtp_listen", CFG_LIST, NULL,
     "SMTP listeners, host:port each: 127.0.0.1:10024, [::1]:10024", NULL, 0,
     0, 0},
    {"max_connections", CFG_INT, "1000", "SMTP connections at once, in all",
     NULL, 1, 100000, 0},
    {"max_connections_per_client", CFG_INT, "100",
     "SMTP connections at once from one client address", NULL, 1, 100000, 0},
    {"smtpd_timeout", CFG_TIME, "300s",
     "how long to wait for a client command or data", NULL, 1000,
     3600 * 1000LL, 0},
    {"smtpd_per_record_deadline", CFG_BOOL, "yes",
     "smtpd_timeout bounds a whole command line, message line, reply or "
     "TLS handshake instead of each read or write, so a client that "
     "trickles one octet at a time cannot hold a session",
     NULL, 0, 0, 0},
    {"smtpd_greet_pause", CFG_TIME, "0",
     "wait this long before the greeting; a client that talks first is "
     "rejected",
     NULL, 0, 60 * 1000LL, 0},
    {"error_limit", CFG_INT, "20",
     "client errors after which the connection is dropped (421)", NULL, 1,
     1000, 0},
    {"smtpd_junk_command_limit", CFG_INT, "100",
     "NOOP, VRFY and RSET commands a session may send before each one also "
     "counts toward error_limit",
     NULL, 1, 100000, 0},
    {"recipient_limit", CFG_INT, "1000",
     "recipients per message; more get 452 4.5.3", NULL, 1, 100000, 0},
    {"relay_domains", CFG_LIST, NULL,
     "recipient domains accepted from any client", NULL, 0, 0, 0},
    {"xforward_hosts", CFG_LIST, NULL,
     "clients allowed to send XFORWARD (CIDR); normally the Postfix that "
     "hands mail to relaychaind",
     NULL, 0, 0, 0},
    {"tls_cert_file", CFG_PATH, NULL, "PEM certificate chain for STARTTLS",
     NULL, 0, 0, 0},
    {"tls_key_file", CFG_PATH, NULL, "PEM private key for STARTTLS", NULL, 0,
     0, 0},
    {"auth_password_file", CFG_PATH, NULL,
     "user:crypt-hash lines; enables AUTH PLAIN and LOGIN after STARTTLS",
     NULL, 0, 0, 0},
    {"auth_failure_limit", CFG_INT, "3",
     "failed AUTH attempts after which the connection is dropped", NULL, 1,
     100, 0},
    {"auth_failure_rate", CFG_INT, "10",
     "failed AUTH attempts a minute from one client address (an IPv6 /64) "
     "after which AUTH gets 454 4.7.0 before any password is checked; 0: "
     "no limit",
     NULL, 0, 100000, 0},
    {"sender_login_map", CFG_PATH, NULL,
     "sender address (or @domain) to the logins that may use it; "
     "authenticated users may send only as their addresses",
     NULL, 0, 0, 0},
    {"bare_newline", CFG_ENUM, "reject",
     "bare LF or CR in DATA: reject (550 5.5.2) or normalize to CRLF",
     smtpd_conf_bare_newline_choices, 0, 0, 0},
    {"long_line_action", CFG_ENUM, "reject",
     "text lines over 998 octets: reject (550 5.6.0) or wrap them",
     smtpd_conf_long_line_choices, 0, 0, 0},
    {"smtpd_dsn_clients", CFG_LIST, "mynetworks authenticated",
     "clients whose DSN requests (RET, ENVID, NOTIFY, ORCPT) are honoured: "
     "mynetworks, authenticated, all, or networks (CIDR); others' are "
     "ignored and their failure reports return headers only",
     NULL, 0, 0, 0},
    /* ---- fleet: rate limits, their shared state, the PROXY protocol */
    {"rate_limits", CFG_PATH, NULL,
     "file of rate limit rules, WHO COUNT/PERIOD [messages|recipients] a "
     "line (client:CIDR, user:NAME, sender_domain:DOM, rcpt_domain:DOM, "
     "stream:NAME); counted once a message, after its data; over a limit "
     "the message gets 452 4.7.1",
     NULL, 0, 0, 0},
    {"state_store", CFG_STRING, "memory",
     "where rate limit counters live: memory (this node) or "
     "redis://host:port/db (shared by every node that names it)",
     NULL, 0, 0, 0},
    {"state_on_error", CFG_ENUM, "local",
     "when the Redis of state_store does not answer: local (count on this "
     "node) or tempfail (451 4.3.0 to messages a limit applies to)",
     smtpd_conf_state_on_error_choices, 0, 0, 0},
    {"state_timeout", CFG_TIME, "250ms",
     "bound on connecting to and each request of the state_store Redis", NULL,
     10, 10 * 1000LL, 0},
    {"smtp_proxy_protocol", CFG_ENUM, "no",
     "haproxy: every SMTP connection starts with a PROXY protocol header "
     "(v1 or v2) from one of proxy_protocol_hosts, and the client it names "
     "is the client",
     smtpd_conf_proxy_choices, 0, 0, 0},
    {"proxy_protocol_hosts", CFG_LIST, NULL,
     "load balancers (CIDR) allowed to send a PROXY header; required with "
     "smtp_proxy_protocol; connections from others are closed",
     NULL, 0, 0, 0},
    {"proxy_protocol_timeout", CFG_TIME, "5s",
     "how long to wait for the PROXY header", NULL, 100, 60 * 1000LL, 0},
    /* ---- end fleet */
    /* ---- events: the stream named in a header */
    {"stream_header", CFG_STRING, NULL,
     "header field (X-Relaychain-Stream) in which a client of "
     "stream_header_clients names the message's stream for the delivery "
     "events, over stream_map; removed from every message before the chain",
     NULL, 0, 0, 0},
    {"stream_header_clients", CFG_LIST, "mynetworks",
     "clients whose stream_header is believed: mynetworks, authenticated, "
     "all, or networks (CIDR); from others it is removed and ignored",
     NULL, 0, 0, 0},
    /* ---- end events */
    CFG_OPTION_END,
};

/* smtpd_conf_listen_parse - check one smtp_listen item, "host:port" or
 * "[v6]:port" (an empty host: every address); the port is decimal, 1 to
 * 65535. Returns 0, or -1 with the reason in why. */
static int
smtpd_conf_listen_parse(const char *spec, char *why, size_t n)
{
    char host[SMTPD_CONF_HOST_MAX + 1], addr[sizeof(struct in6_addr)];
    const char *colon, *p;
    unsigned long port = 0;
    size_t hlen;

    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');

        if (close == NULL || close[1] != ':') {
            snprintf(why, n, "'%.100s' is not [address]:port", spec);
            return -1;
        }
        hlen = (size_t)(close - spec - 1);
        if (hlen >= sizeof(host)) {
            snprintf(why, n, "'%.100s': address too long", spec);
            return -1;
        }
        memcpy(host, spec + 1, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1) {
            snprintf(why, n, "'%.100s': '%s' is not an IPv6 address", spec,
                     host);
            return -1;
        }
        colon = close + 1;
    } else if ((colon = strrchr(spec, ':')) == NULL) {
        snprintf(why, n,
                 "'%.100s' is not host:port (127.0.0.1:10024, [::1]:10024)",
                 spec);
        return -1;
    }
    p = colon + 1;
    if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 5 ||
        (port = strtoul(p, NULL, 10)) < 1 || port > 65535) {
        snprintf(why, n, "'%.100s': port '%.16s' is not 1 to 65535", spec, p);
        return -1;
    }
    return 0;
}

static int
smtpd_conf_check(const struct cfg *c, struct err *e)
{
    char why[ERR_TEXT_MAX];
    const char *const *items, *s;
    struct cidr_list *l;
    struct stat st;
    size_t n, k, i;

    /* Here too so the error names the line; the loaders check again the
     * very file they read. */
    if ((s = cfg_str(c, "tls_key_file")) != NULL && stat(s, &st) == 0 &&
        cfg_secret_check(s, &st, S_IROTH | S_IWOTH, "a TLS private key", e) <
            0)
        return cfg_err(e, c, "tls_key_file", "%s", e->text);
    n = cfg_list(c, "smtp_listen", &items);
    if (n > SMTPD_LISTEN_MAX)
        return cfg_err(e, c, "smtp_listen", "at most %d listeners",
                       SMTPD_LISTEN_MAX);
    for (i = 0; i < n; i++)
        if (smtpd_conf_listen_parse(items[i], why, sizeof(why)) < 0)
            return cfg_err(e, c, "smtp_listen", "%s", why);
    k = cfg_list(c, "xforward_hosts", &items);
    if ((l = cidr_list_new(items, k, e)) == NULL)
        return cfg_err(e, c, "xforward_hosts", "%s", e->text);
    cidr_list_free(l);
    if (n > 0 && conf_check_dir(c, "quarantine_directory", 1, 1, e) < 0)
        return -1;
    /* ---- fleet */
    if ((s = cfg_str(c, "rate_limits")) != NULL) {
        struct ratelimit_set *rs = ratelimit_load(s, e);
        const struct ratelimit_rule *r;

        if (rs == NULL)
            return cfg_err(e, c, "rate_limits", "%s", e->text);
        /* a message's stream comes from the delivery events' stream_map */
        if ((r = ratelimit_first_of(rs, RATELIMIT_STREAM)) != NULL &&
            !cfg_is_set(c, "stream_map") && !cfg_is_set(c, "stream_header")) {
            cfg_err(e, c, "rate_limits",
                    "%s: a stream rule needs stream_map or stream_header "
                    "(and events_store)",
                    r->id);
            ratelimit_set_free(rs);
            return -1;
        }
        ratelimit_set_free(rs);
    }
    if (ratestate_spec_check(cfg_str(c, "state_store"), e) < 0)
        return cfg_err(e, c, "state_store", "%s", e->text);
    k = cfg_list(c, "proxy_protocol_hosts", &items);
    if ((l = cidr_list_new(items, k, e)) == NULL)
        return cfg_err(e, c, "proxy_protocol_hosts", "%s", e->text);
    cidr_list_free(l);
    if (cfg_enum(c, "smtp_proxy_protocol") != SMTPD_PROXY_NONE && k == 0)
        return cfg_err(e, c, "smtp_proxy_protocol",
                       "needs proxy_protocol_hosts, the balancers that may "
                       "send the header");
    /* ---- end fleet */
    /* ---- events */
    if (cfg_is_set(c, "stream_header_clients") &&
        !cfg_is_set(c, "stream_header"))
        return cfg_err(e, c, "stream_header_clients",
                       "without stream_header it has nothing to say");
    if ((s = cfg_str(c, "stream_header")) != NULL) {
        if (s[0] == '\0' || strlen(s) > 76 ||
            strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789-") != strlen(s))
            return cfg_err(e, c, "stream_header",
                           "'%.100s' is not a header field name (letters, "
                           "digits and '-')",
                           s);
        if (!cfg_is_set(c, "events_store"))
            return cfg_err(e, c, "stream_header",
                           "streams are kept with the delivery events: it "
                           "needs events_store");
    }
    /* ---- end events */
    return 0;
}

const struct conf_part smtpd_conf_part = {
    .name = "smtpd",
    .options = smtpd_conf_options,
    .check = smtpd_conf_check,
};
