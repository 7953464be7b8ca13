/*
 * conf - relaychain.conf and the chain it names
 *
 * conf_options is the table of the main file; relaychain.conf(5) documents
 * each key and must agree with it. conf_load() parses and validates the
 * file, checks the values the table cannot express (a known syslog
 * facility, a non-empty syslog name, an existing chain_directory), derives
 * struct msg_limits and loads the chain from chain_directory, which is
 * relative to the directory of the main file unless absolute.
 *
 * A struct conf owns its cfg and chain; conf_free() releases both. Every
 * failure leaves nothing allocated and e says "path:line: reason", either
 * for the main file or, from chain_load(), for the chain.d file at fault.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "log.h"
#include "milterd.h"

static const char *const conf_ambiguous_choices[] = {"reject", "continue",
                                                     NULL};
static const char *const conf_delivery_choices[] = {"through", "queue", NULL};
static const char *const conf_bare_newline_choices[] = {"reject", "normalize",
                                                        NULL};
static const char *const conf_long_line_choices[] = {"reject", "wrap", NULL};
static const char *const conf_tls_choices[] = {"none", "may", "encrypt",
                                               NULL};
static const char *const conf_milter_size_choices[] = {"tempfail", "reject",
                                                       "accept", NULL};

const struct cfg_option conf_options[] = {
    {"chain_directory", CFG_PATH, "chain.d",
     "directory of the stage files, one stage per *.conf file, run in "
     "C-locale order of their names",
     NULL, 0, 0, 0},
    {"message_size_limit", CFG_SIZE, "10240000",
     "largest message accepted, header and body, in octets", NULL, 1024,
     1024LL * 1024 * 1024, 0},
    {"header_limit", CFG_INT, "1000", "most header fields a message may have",
     NULL, 1, 100000, 0},
    {"line_length_limit", CFG_INT, "998",
     "longest line of a message in octets, without its line end", NULL, 78,
     1000000, 0},
    {"mime_depth_limit", CFG_INT, "20",
     "deepest nesting of multiparts and attached messages", NULL, 1, 100, 0},
    {"mime_part_limit", CFG_INT, "1000", "most MIME parts in one message",
     NULL, 1, 100000, 0},
    {"syslog_facility", CFG_STRING, "mail",
     "syslog facility: mail, daemon, user or local0 to local7", NULL, 0, 0, 0},
    {"syslog_name", CFG_STRING, "relaychain",
     "program name at the start of each syslog line", NULL, 0, 0, 0},
    {"ambiguous_mime_action", CFG_ENUM, "reject",
     "what to do with a message whose MIME structure can be read in more "
     "than one way",
     conf_ambiguous_choices, 0, 0, 0},

    /* relaychaind: SMTP listener and its policy (relaychaind(8)) */
    {"smtp_listen", CFG_LIST, NULL,
     "SMTP listeners, host:port each: 127.0.0.1:10024, [::1]:10024", NULL,
     0, 0, 0},
    {"myhostname", CFG_STRING, NULL,
     "name in the greeting and in EHLO to the next hop (default: the "
     "system's host name)",
     NULL, 0, 0, 0},
    {"user", CFG_STRING, NULL,
     "user to run as after binding the listeners; the chain and its keys "
     "are read as this user, at start and at each reload",
     NULL, 0, 0, 0},
    {"group", CFG_STRING, NULL, "group to run as (default: the user's group)",
     NULL, 0, 0, 0},
    {"run_as_root", CFG_BOOL, "no",
     "let relaychaind started as root keep running as root when user is "
     "not set (it refuses to start otherwise)",
     NULL, 0, 0, 0},
    {"control_socket", CFG_STRING, "/run/relaychain/control",
     "UNIX socket (absolute path) on which relaychaind answers "
     "\"relaychain status\" and \"relaychain reload\"; only root and the "
     "daemon's user may connect",
     NULL, 0, 0, 0},
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
    {"shutdown_timeout", CFG_TIME, "30s",
     "on SIGTERM, how long transactions in flight may take to finish", NULL,
     0, 3600 * 1000LL, 0},
    {"error_limit", CFG_INT, "20",
     "client errors after which the connection is dropped (421)", NULL, 1,
     1000, 0},
    {"smtpd_junk_command_limit", CFG_INT, "100",
     "NOOP, VRFY and RSET commands a session may send before each one also "
     "counts toward error_limit",
     NULL, 1, 100000, 0},
    {"recipient_limit", CFG_INT, "1000",
     "recipients per message; more get 452 4.5.3", NULL, 1, 100000, 0},
    {"mynetworks", CFG_LIST, "127.0.0.0/8 [::1]/128",
     "client networks allowed to relay (CIDR)", NULL, 0, 0, 0},
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
    {"sender_login_map", CFG_PATH, NULL,
     "sender address (or @domain) to the logins that may use it; "
     "authenticated users may send only as their addresses",
     NULL, 0, 0, 0},
    {"bare_newline", CFG_ENUM, "reject",
     "bare LF or CR in DATA: reject (550 5.5.2) or normalize to CRLF",
     conf_bare_newline_choices, 0, 0, 0},
    {"long_line_action", CFG_ENUM, "reject",
     "text lines over 998 octets: reject (550 5.6.0) or wrap them",
     conf_long_line_choices, 0, 0, 0},
    {"delivery", CFG_ENUM, "through",
     "through: answer the client after the next hop answered; queue: "
     "store and forward",
     conf_delivery_choices, 0, 0, 0},
    {"next_hop", CFG_STRING, NULL,
     "smtp:[host]:port, lmtp:[host]:port or maildir:/path", NULL, 0, 0, 0},
    {"next_hop_tls", CFG_ENUM, "may",
     "STARTTLS to the next hop: none, may (when offered), encrypt (required)",
     conf_tls_choices, 0, 0, 0},
    {"next_hop_auth_file", CFG_PATH, NULL,
     "one user:password line for AUTH to the next hop", NULL, 0, 0, 0},
    {"next_hop_timeout", CFG_TIME, "300s",
     "how long to wait for the next hop's replies", NULL, 1000,
     3600 * 1000LL, 0},
    {"quarantine_directory", CFG_PATH, "/var/spool/relaychain/quarantine",
     "where quarantined messages are kept", NULL, 0, 0, 0},

    /* relaychaind: the queue of "delivery = queue" (core/queue.h) */
    {"queue_directory", CFG_PATH, "/var/spool/relaychain",
     "the spool of delivery = queue (tmp/, queue/, hold/, corrupt/, "
     "defer/)",
     NULL, 0, 0, 0},
    {"queue_minfree", CFG_SIZE, "0",
     "free space the spool must keep: MAIL gets 452 4.3.1 when less than "
     "this plus 1.5 times the announced SIZE is left",
     NULL, 0, 0, 0},
    {"delivery_concurrency", CFG_INT, "10",
     "queue delivery workers, one transaction each at a time", NULL, 1,
     1000, 0},
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
     "how often queue/ is scanned for messages the daemon does not know",
     NULL, 1000, 86400 * 1000LL, 0},
    {"transport_map", CFG_PATH, NULL,
     "\"domain next-hop\" lines (.domain for subdomains, * for the rest) "
     "routing queued mail per recipient domain",
     NULL, 0, 0, 0},

    /* relaychaind: milter listener (relaychaind(8), docs/postfix-milter.md) */
    {"milter_listen", CFG_STRING, NULL,
     "milter socket in libmilter's form: unix:/path (recommended), "
     "inet:port@host or inet6:port@host",
     NULL, 0, 0, 0},
    {"milter_socket_mode", CFG_STRING, "0660",
     "octal permissions of the milter UNIX socket", NULL, 0, 0, 0},
    {"milter_socket_group", CFG_STRING, NULL,
     "group of the milter UNIX socket (postfix, smmsp...)", NULL, 0, 0, 0},
    {"milter_tcp_nodelay", CFG_BOOL, "yes",
     "no Nagle delay on TCP milter connections (a 40 ms stall per message "
     "otherwise); turn off only to measure it",
     NULL, 0, 0, 0},
    {"milter_size_action", CFG_ENUM, "tempfail",
     "a message over message_size_limit or header_limit in milter mode: "
     "tempfail (452 4.3.4), reject (552 5.3.4) or accept (passed on "
     "unscanned, logged as a warning)",
     conf_milter_size_choices, 0, 0, 0},
    CFG_OPTION_END,
};

static int
conf_check(struct conf *cf, struct err *e)
{
    const struct cfg *c = cf->cfg;
    struct stat st;
    const char *s;

    s = cfg_str(c, "syslog_facility");
    if (log_facility_parse(s) < 0)
        return cfg_err(e, c, "syslog_facility",
                       "unknown facility '%.64s' (expected mail, daemon, "
                       "user or local0 to local7)",
                       s);
    if (cfg_str(c, "syslog_name")[0] == '\0')
        return cfg_err(e, c, "syslog_name", "empty name");
    /* Checked here so the error names the line that chose the directory;
     * chain_load() reports problems inside it. */
    s = cfg_str(c, "chain_directory");
    if (stat(s, &st) < 0)
        return cfg_err(e, c, "chain_directory", "%s: %s", s, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cfg_err(e, c, "chain_directory", "%s: not a directory", s);
    if ((s = cfg_str(c, "milter_listen")) != NULL &&
        milterd_check_listen(s, e) < 0)
        return cfg_err(e, c, "milter_listen", "%s", e->text);
    /* A relative name would depend on the daemon's working directory,
     * and a UNIX socket name has a small fixed size. */
    s = cfg_str(c, "control_socket");
    if (s[0] != '/' || strlen(s) >= CONF_SOCKET_PATH_MAX)
        return cfg_err(e, c, "control_socket",
                       "'%.64s' is not an absolute path of at most %d "
                       "octets",
                       s, CONF_SOCKET_PATH_MAX - 1);
    s = cfg_str(c, "milter_socket_mode");
    if (s[0] == '\0' || strspn(s, "01234567") != strlen(s) || strlen(s) > 4)
        return cfg_err(e, c, "milter_socket_mode",
                       "'%.16s' is not an octal mode such as 0660", s);
    cf->limits.message_size = (size_t)cfg_num(c, "message_size_limit");
    cf->limits.header_count = (size_t)cfg_num(c, "header_limit");
    cf->limits.line_length = (size_t)cfg_num(c, "line_length_limit");
    cf->limits.mime_depth = (unsigned)cfg_num(c, "mime_depth_limit");
    cf->limits.mime_parts = (unsigned)cfg_num(c, "mime_part_limit");
    cf->ambiguous = cfg_enum(c, "ambiguous_mime_action") == 0
                        ? CHAIN_AMBIGUOUS_REJECT
                        : CHAIN_AMBIGUOUS_CONTINUE;
    return 0;
}

struct conf *
conf_load(const char *path, struct err *e)
{
    static const struct cfg_option *const tables[] = {conf_options, NULL};
    struct conf *cf;

    if ((cf = calloc(1, sizeof(*cf))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((cf->cfg = cfg_parse(path, e)) == NULL ||
        cfg_validate(cf->cfg, tables, e) < 0 || conf_check(cf, e) < 0 ||
        (cf->chain = chain_load(cfg_str(cf->cfg, "chain_directory"),
                                cf->ambiguous, e)) == NULL) {
        conf_free(cf);
        return NULL;
    }
    return cf;
}

void
conf_free(struct conf *cf)
{
    if (cf == NULL)
        return;
    chain_free(cf->chain);
    cfg_free(cf->cfg);
    free(cf);
}
