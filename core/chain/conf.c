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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cidr.h"
#include "chain/conf.h"
#include "util/log.h"
#include "milterd/milterd.h"
#include "net/smtpc.h"

#define CONF_HOST_MAX 255    /* octets of a listener's host */
#define CONF_GROUPS_MAX 1    /* the daemon keeps one group (setgroups) */
#define CONF_PWBUF_MAX 16384 /* getpwnam_r buffer */

static const char *const conf_ambiguous_choices[] = {"reject", "continue",
                                                     NULL};
static const char *const conf_delivery_choices[] = {"through", "queue", NULL};
static const char *const conf_bare_newline_choices[] = {"reject", "normalize",
                                                        NULL};
static const char *const conf_long_line_choices[] = {"reject", "wrap", NULL};
static const char *const conf_tls_choices[] = {"none",   "may",    "encrypt",
                                               "verify", "secure", NULL};
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
    {"smtpd_memory_limit", CFG_SIZE, "512m",
     "message octets all SMTP and milter sessions together may hold in "
     "memory; past it new DATA gets 452 4.3.1 (0: no limit)",
     NULL, 0, 1024LL * 1024 * 1024 * 1024, 0},
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
    {"maillog_file", CFG_PATH, NULL,
     "append log lines to this file instead of syslog, as Postfix's "
     "maillog_file: relaychaind (without -f) and the quarantine and queue "
     "commands",
     NULL, 0, 0, 0},
    {"ambiguous_mime_action", CFG_ENUM, "reject",
     "what to do with a message whose MIME structure can be read in more "
     "than one way",
     conf_ambiguous_choices, 0, 0, 0},

    /* relaychaind: SMTP listener and its policy (relaychaind(8)) */
    {"smtp_listen", CFG_LIST, NULL,
     "SMTP listeners, host:port each: 127.0.0.1:10024, [::1]:10024", NULL, 0,
     0, 0},
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
     "on SIGTERM, how long transactions in flight may take to finish", NULL, 0,
     3600 * 1000LL, 0},
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
     "STARTTLS to the next hop: none, may (when offered), encrypt "
     "(required), verify (required, certificate chain verified), secure "
     "(chain and host name verified)",
     conf_tls_choices, 0, 0, 0},
    {"next_hop_tls_ca_file", CFG_PATH, NULL,
     "PEM CA certificates that verify and secure trust; default: the "
     "system's store",
     NULL, 0, 0, 0},
    {"next_hop_tls_protocols", CFG_STRING, ">=TLSv1.2",
     "TLS versions for the next hop, Postfix syntax: >=TLSv1.3, "
     "!TLSv1.2...",
     NULL, 0, 0, 0},
    {"next_hop_tls_fingerprint", CFG_STRING, NULL,
     "SHA-256 fingerprints of the next hop's certificate or public key, "
     "one of which it must show (with encrypt, verify or secure)",
     NULL, 0, 0, 0},
    {"next_hop_tls_name", CFG_STRING, NULL,
     "the name secure checks in the next hop's certificate (and sends as "
     "SNI); default: the host of next_hop",
     NULL, 0, 0, 0},
    {"next_hop_auth_file", CFG_PATH, NULL,
     "one user:password line for AUTH to the next hop", NULL, 0, 0, 0},
    {"next_hop_timeout", CFG_TIME, "300s",
     "how long to wait for the next hop's replies", NULL, 1000, 3600 * 1000LL,
     0},
    {"quarantine_directory", CFG_PATH, CONF_SPOOL_DIR "/quarantine",
     "where quarantined messages are kept", NULL, 0, 0, 0},

    /* relaychaind: the queue of "delivery = queue" (core/queue/queue.h) */
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
    {"smtpd_dsn_clients", CFG_LIST, "mynetworks authenticated",
     "clients whose DSN requests (RET, ENVID, NOTIFY, ORCPT) are honoured: "
     "mynetworks, authenticated, all, or networks (CIDR); others' are "
     "ignored and their failure reports return headers only",
     NULL, 0, 0, 0},
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

/* conf_listen_parse - check one smtp_listen item, "host:port" or
 * "[v6]:port" (an empty host: every address); the port is decimal, 1 to
 * 65535. Returns 0, or -1 with the reason in why. */
static int
conf_listen_parse(const char *spec, char *why, size_t n)
{
    char host[CONF_HOST_MAX + 1], addr[sizeof(struct in6_addr)];
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

/* The identity the daemon runs as once privileges are dropped: user and
 * group as configured, or this process when user is not set. */
struct conf_ident {
    const char *user; /* NULL: this process */
    uid_t uid;
    gid_t groups[CONF_GROUPS_MAX];
    int ngroups;
};

static int
conf_ident_load(const struct cfg *c, struct conf_ident *id, struct err *e)
{
    const char *user = cfg_str(c, "user"), *group = cfg_str(c, "group");
    struct passwd pw, *pwp = NULL;
    struct group gr, *grp = NULL;
    char buf[CONF_PWBUF_MAX];
    gid_t gid;
    int rc;

    memset(id, 0, sizeof(*id));
    id->user = user;
    if (user == NULL) {
        if (group != NULL)
            return cfg_err(e, c, "group",
                           "set user too: group applies to "
                           "the user the daemon runs as");
        return 0;
    }
    if ((rc = getpwnam_r(user, &pw, buf, sizeof(buf), &pwp)) != 0)
        return cfg_err(e, c, "user", "%.64s: %s", user, strerror(rc));
    if (pwp == NULL)
        return cfg_err(e, c, "user", "%.64s: no such user", user);
    id->uid = pw.pw_uid;
    gid = pw.pw_gid;
    if (group != NULL) {
        if ((rc = getgrnam_r(group, &gr, buf, sizeof(buf), &grp)) != 0)
            return cfg_err(e, c, "group", "%.64s: %s", group, strerror(rc));
        if (grp == NULL)
            return cfg_err(e, c, "group", "%.64s: no such group", group);
        /* The daemon runs with this one group only (setgroups). */
        id->groups[0] = gr.gr_gid;
        id->ngroups = 1;
        return 0;
    }
    id->groups[0] = gid;
    id->ngroups = 1;
    return 0;
}

/* conf_may - whether id has every access in want (R_OK, W_OK, X_OK, whose
 * values are the permission bits) to what sb describes, by its owner,
 * group and mode; ACLs are not read. */
static int
conf_may(const struct conf_ident *id, const struct stat *sb, int want)
{
    unsigned bits;
    int i;

    if (id->uid == 0)
        return 1;
    if (sb->st_uid == id->uid) {
        bits = (sb->st_mode >> 6) & 7u;
    } else {
        bits = sb->st_mode & 7u;
        for (i = 0; i < id->ngroups; i++)
            if (sb->st_gid == id->groups[i])
                bits = (sb->st_mode >> 3) & 7u;
    }
    return (bits & (unsigned)want) == (unsigned)want;
}

/* conf_access - whether id may reach path and use it with want; 0, or -1
 * with errno set (EACCES for a permission, as access(2) does). */
static int
conf_access(const struct conf_ident *id, const char *path, int want)
{
    char walk[4096];
    struct stat sb;
    size_t i, len = strlen(path);

    if (id->user == NULL)
        return faccessat(AT_FDCWD, path, want, AT_EACCESS);
    if (len >= sizeof(walk)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* Each directory on the way must be searchable. */
    memcpy(walk, path, len + 1);
    for (i = 1; i < len; i++) {
        if (walk[i] != '/')
            continue;
        walk[i] = '\0';
        if (stat(walk, &sb) < 0)
            return -1;
        if (!conf_may(id, &sb, X_OK)) {
            errno = EACCES;
            return -1;
        }
        walk[i] = '/';
    }
    if (stat(path, &sb) < 0)
        return -1;
    if (!conf_may(id, &sb, want)) {
        errno = EACCES;
        return -1;
    }
    return 0;
}

/* conf_check_dir - a directory the daemon writes in as id: it exists and
 * id may list, search and write it, or it does not exist yet and id may
 * create it in its parent (the daemon makes it at first use; with
 * mkparents, in the nearest existing ancestor, as the daemon makes the
 * quarantine with its parents at start). A missing default is only worth
 * a warning when optional is set: the feature is then simply not used. */
static int
conf_check_dir(const struct cfg *c, const char *key,
               const struct conf_ident *id, int optional, int mkparents,
               struct err *e)
{
    const char *dir = cfg_str(c, key), *who = id->user;
    char parent[4096], *slash;
    struct stat sb;

    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return cfg_err(e, c, key, "%s: not a directory", dir);
        if (conf_access(id, dir, R_OK | W_OK | X_OK) < 0)
            return cfg_err(e, c, key,
                           "%s: %s%s%s (it needs read, write "
                           "and search access)",
                           dir, strerror(errno), who ? " for user " : "",
                           who ? who : "");
        return 0;
    }
    if (errno != ENOENT)
        return cfg_err(e, c, key, "%s: %s", dir, strerror(errno));
    if (snprintf(parent, sizeof(parent), "%s", dir) >= (int)sizeof(parent))
        return cfg_err(e, c, key, "name too long");
    /* With mkparents the daemon makes missing parents too (mkdir -p):
     * what counts is the nearest one that exists. */
    do {
        while ((slash = strrchr(parent, '/')) != NULL && slash[1] == '\0' &&
               slash != parent)
            *slash = '\0';
        if ((slash = strrchr(parent, '/')) == NULL)
            snprintf(parent, sizeof(parent), ".");
        else if (slash == parent)
            slash[1] = '\0';
        else
            *slash = '\0';
    } while (mkparents && stat(parent, &sb) < 0 && errno == ENOENT &&
             strcmp(parent, "/") != 0 && strcmp(parent, ".") != 0);
    if (stat(parent, &sb) == 0 && S_ISDIR(sb.st_mode) &&
        conf_access(id, parent, W_OK | X_OK) == 0)
        return 0;
    if (optional && !cfg_is_set(c, key)) {
        log_warning(NULL,
                    "%s: %s (default) %s does not exist and cannot be "
                    "made: mail a stage quarantines is tempfailed",
                    cfg_path(c), key, dir);
        return 0;
    }
    return cfg_err(e, c, key,
                   "%s does not exist%s%s%s, and %s cannot be "
                   "created in %s",
                   dir, who ? " (checked as user " : "", who ? who : "",
                   who ? ")" : "", dir, parent);
}

/* conf_check_milter - what milterd_open() refuses at start-up: a group
 * that does not exist, a UNIX socket whose directory is missing. */
static int
conf_check_milter(const struct cfg *c, struct err *e)
{
    const char *spec = cfg_str(c, "milter_listen"), *g, *slash;
    struct group gr, *grp = NULL;
    char buf[CONF_PWBUF_MAX], dir[4096];
    struct stat sb;
    int rc;

    if ((g = cfg_str(c, "milter_socket_group")) != NULL) {
        if ((rc = getgrnam_r(g, &gr, buf, sizeof(buf), &grp)) != 0)
            return cfg_err(e, c, "milter_socket_group", "%.64s: %s", g,
                           strerror(rc));
        if (grp == NULL)
            return cfg_err(e, c, "milter_socket_group", "%.64s: no such group",
                           g);
    }
    if (spec == NULL || strncmp(spec, "inet", 4) == 0)
        return 0;
    /* unix:/path or local:/path, absolute (milterd_check_listen). */
    spec = strchr(spec, ':') + 1;
    slash = strrchr(spec, '/');
    if (slash == spec ||
        (size_t)snprintf(dir, sizeof(dir), "%.*s", (int)(slash - spec),
                         spec) >= sizeof(dir))
        return 0;
    if (stat(dir, &sb) < 0)
        return cfg_err(e, c, "milter_listen", "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cfg_err(e, c, "milter_listen", "%s: not a directory", dir);
    return 0;
}

/* conf_check_daemon - what the daemon itself refuses at start-up and on
 * reload, checked here so that "relaychain check" refuses it too: the
 * listeners, the user, the client networks and the directories. */
static int
conf_check_daemon(const struct cfg *c, struct err *e)
{
    char why[ERR_TEXT_MAX];
    const char *const *items;
    struct cidr_list *l;
    struct conf_ident id;
    size_t n, i;
    static const char *const cidr_keys[] = {"mynetworks", "xforward_hosts"};

    n = cfg_list(c, "smtp_listen", &items);
    if (n > CONF_LISTEN_MAX)
        return cfg_err(e, c, "smtp_listen", "at most %d listeners",
                       CONF_LISTEN_MAX);
    for (i = 0; i < n; i++)
        if (conf_listen_parse(items[i], why, sizeof(why)) < 0)
            return cfg_err(e, c, "smtp_listen", "%s", why);
    for (i = 0; i < sizeof(cidr_keys) / sizeof(cidr_keys[0]); i++) {
        const char *const *nets;
        size_t k = cfg_list(c, cidr_keys[i], &nets);

        if ((l = cidr_list_new(nets, k, e)) == NULL)
            return cfg_err(e, c, cidr_keys[i], "%s", e->text);
        cidr_list_free(l);
    }
    if (conf_ident_load(c, &id, e) < 0 || conf_check_milter(c, e) < 0)
        return -1;
    if (cfg_enum(c, "delivery") == 1 &&
        conf_check_dir(c, "queue_directory", &id, 0, 0, e) < 0)
        return -1;
    if (n > 0 && conf_check_dir(c, "quarantine_directory", &id, 1, 1, e) < 0)
        return -1;
    return 0;
}

int
conf_check_main(const struct cfg *c, struct err *e)
{
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
    if (smtpc_tls_check_cfg(c, e) < 0)
        return -1;
    /* Secret files, here too so the error names the line; the loaders
     * check again the very file they read. */
    if ((s = cfg_str(c, "tls_key_file")) != NULL && stat(s, &st) == 0 &&
        cfg_secret_check(s, &st, S_IROTH | S_IWOTH, "a TLS private key", e) <
            0)
        return cfg_err(e, c, "tls_key_file", "%s", e->text);
    if ((s = cfg_str(c, "next_hop_auth_file")) != NULL && stat(s, &st) == 0 &&
        cfg_secret_check(s, &st, S_IROTH | S_IWOTH, "the next hop's password",
                         e) < 0)
        return cfg_err(e, c, "next_hop_auth_file", "%s", e->text);
    /* A relative name would depend on the daemon's working directory,
     * and a UNIX socket name has a small fixed size. */
    s = cfg_str(c, "control_socket");
    if (s[0] != '/' || strlen(s) >= CONF_SOCKET_PATH_MAX)
        return cfg_err(e, c, "control_socket",
                       "'%.64s' is not an absolute path of at most %d "
                       "octets",
                       s, CONF_SOCKET_PATH_MAX - 1);
    s = cfg_str(c, "milter_socket_mode");
    /* As milterd_open() reads it: permission bits only, at most 0777. */
    if (s[0] == '\0' || strspn(s, "01234567") != strlen(s) || strlen(s) > 4 ||
        strtol(s, NULL, 8) > 0777)
        return cfg_err(e, c, "milter_socket_mode",
                       "'%.16s' is not an octal mode such as 0660", s);
    return conf_check_daemon(c, e);
}

/* conf_check - conf_check_main, then the message limits of cf. */
static int
conf_check(struct conf *cf, struct err *e)
{
    const struct cfg *c = cf->cfg;

    if (conf_check_main(c, e) < 0)
        return -1;
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
    return conf_load_flags(path, 0, e);
}

struct conf *
conf_load_flags(const char *path, unsigned flags, struct err *e)
{
    static const struct cfg_option *const tables[] = {conf_options, NULL};
    struct conf *cf;

    if ((cf = calloc(1, sizeof(*cf))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((cf->cfg = cfg_parse(path, e)) == NULL ||
        cfg_validate(cf->cfg, tables, e) < 0 || conf_check(cf, e) < 0 ||
        (cf->chain = chain_load_flags(
             cfg_str(cf->cfg, "chain_directory"), cf->ambiguous, NULL,
             (flags & CONF_LOAD_CHECK) ? CHAIN_LOAD_CHECK : 0, e)) == NULL) {
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

int
conf_log_open(const struct cfg *c, struct err *e)
{
    const char *name = cfg_str(c, "syslog_name");
    const char *file = cfg_str(c, "maillog_file");
    int fac = log_facility_parse(cfg_str(c, "syslog_facility"));

    if (file != NULL) {
        if (log_open_file(name, file) < 0)
            return err_sys(e, ERR_CONFIG, "maillog_file %s", file);
        return 0;
    }
    log_open(name, fac < 0 ? LOG_MAIL : fac, LOG_SINK_SYSLOG);
    return 0;
}
