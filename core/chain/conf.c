/*
 * conf - relaychain.conf and the chain it names
 *
 * conf_options is the table of the process's and the chain's own keys;
 * the layers above declare theirs in a struct conf_part each (smtpc_conf,
 * queue_conf, smtpd_conf, milterd_conf) and the caller hands them in.
 * conf_options_merge() makes one table of all of them in one fixed order
 * (conf_key_order); relaychain.conf(5) documents each key and must agree
 * with it. conf_load() parses and validates the file, checks the values
 * the tables cannot express (a known syslog facility, a non-empty syslog
 * name, an existing chain_directory, the user...), then each part's, then
 * derives struct msg_limits and loads the chain from chain_directory,
 * which is relative to the directory of the main file unless absolute.
 *
 * Which keys are the process's and the chain's: the message limits and
 * the memory limit both front ends count against, logging, the user and
 * the control socket, myhostname (the greeting, EHLO to the next hop and
 * the queue's DSNs), shutdown_timeout (for every front end and the queue)
 * and mynetworks (relaying in the SMTP front end, and the origin of a
 * message in both front ends, which stages match on).
 *
 * A struct conf owns its cfg, its merged option table and its chain;
 * conf_free() releases them. Every failure leaves nothing allocated and e
 * says "path:line: reason", either for the main file or, from
 * chain_load(), for the chain.d file at fault.
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

#define CONF_GROUPS_MAX 1    /* the daemon keeps one group (setgroups) */
#define CONF_PWBUF_MAX 16384 /* getpwnam_r buffer */

static const char *const conf_ambiguous_choices[] = {
    [CHAIN_AMBIGUOUS_REJECT] = "reject",
    [CHAIN_AMBIGUOUS_CONTINUE] = "continue",
    NULL};

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
    {"shutdown_timeout", CFG_TIME, "30s",
     "on SIGTERM, how long transactions in flight may take to finish", NULL, 0,
     3600 * 1000LL, 0},
    {"mynetworks", CFG_LIST, "127.0.0.0/8 [::1]/128",
     "client networks allowed to relay (CIDR)", NULL, 0, 0, 0},
    CFG_OPTION_END,
};

/* The order of the keys of the main file, whichever layer declares them:
 * the order the one table of relaychain.conf had, which "relaychain
 * config" and "relaychain check" list (scripts and diffs of admins read
 * it). A new key goes where it reads best among its neighbours. */
static const char *const conf_key_order[] = {
    "chain_directory",
    "message_size_limit",
    "smtpd_memory_limit",
    "header_limit",
    "line_length_limit",
    "mime_depth_limit",
    "mime_part_limit",
    "syslog_facility",
    "syslog_name",
    "maillog_file",
    "ambiguous_mime_action",
    "smtp_listen",
    "myhostname",
    "user",
    "group",
    "run_as_root",
    "control_socket",
    "max_connections",
    "max_connections_per_client",
    "smtpd_timeout",
    "smtpd_per_record_deadline",
    "smtpd_greet_pause",
    "shutdown_timeout",
    "error_limit",
    "smtpd_junk_command_limit",
    "recipient_limit",
    "mynetworks",
    "relay_domains",
    "xforward_hosts",
    "smtp_proxy_protocol",
    "proxy_protocol_hosts",
    "proxy_protocol_timeout",
    "tls_cert_file",
    "tls_key_file",
    "auth_password_file",
    "auth_failure_limit",
    "auth_failure_rate",
    "sender_login_map",
    "rate_limits",
    "state_store",
    "state_on_error",
    "state_timeout",
    "bare_newline",
    "long_line_action",
    "delivery",
    "next_hop",
    "next_hop_tls",
    "next_hop_tls_ca_file",
    "next_hop_tls_protocols",
    "next_hop_tls_fingerprint",
    "next_hop_tls_name",
    "next_hop_auth_file",
    "next_hop_timeout",
    "quarantine_directory",
    "queue_directory",
    "queue_minfree",
    "delivery_concurrency",
    "destination_concurrency_limit",
    "destination_rate_delay",
    "destination_throttle_time",
    "minimal_backoff_time",
    "maximal_backoff_time",
    "maximal_queue_lifetime",
    "delay_warning_time",
    "queue_run_delay",
    "smtpd_dsn_clients",
    "transport_map",
    /* ---- events: delivery events and the suppression list */
    "events_store",
    "events_store_password_file", /* ---- events: PostgreSQL */
    "events_spool",
    "events_buffer",
    "events_batch",
    "events_batch_time",
    "stream_map",
    "stream_header", /* ---- events: read by the SMTP front end */
    "stream_header_clients",
    "suppress_scope",
    "suppress_expiry", /* ---- events: expiring suppression entries */
    "on_suppressed",
    "verp_domain",
    "verp_key_file", /* ---- verp */
    "fbl_address",
    "fbl_match_header", /* ---- verp */
    "fbl_clients",      /* ---- verp: feedback loops */
    /* ---- http: relaychaind's HTTP listener */
    "http_listen",
    "http_threads",
    "http_max_connections",
    "http_max_connections_per_client",
    "http_body_limit",
    "http_timeout",
    "http_tls_cert_file",
    "http_tls_key_file",
    "http_password_file",
    "http_token_file",
    "track_key_file",
    "track_machine_networks",
    "track_click_window",
    "milter_listen",
    "milter_socket_mode",
    "milter_socket_group",
    "milter_tcp_nodelay",
    "milter_size_action",
};

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

/* conf_check_dir_as - a directory the daemon writes in as id: it exists
 * and id may list, search and write it, or it does not exist yet and id
 * may create it in its parent (the daemon makes it at first use; with
 * mkparents, in the nearest existing ancestor, as the daemon makes the
 * quarantine with its parents at start). A missing default is only worth
 * a warning when optional is set: the feature is then simply not used. */
static int
conf_check_dir_as(const struct cfg *c, const char *key,
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

int
conf_check_dir(const struct cfg *c, const char *key, int optional,
               int mkparents, struct err *e)
{
    struct conf_ident id;

    if (conf_ident_load(c, &id, e) < 0)
        return -1;
    return conf_check_dir_as(c, key, &id, optional, mkparents, e);
}

/* conf_check_own - what the daemon refuses of the process's own keys at
 * start-up and on reload, checked here so that "relaychain check"
 * refuses it too: logging, the chain's directory, the control socket,
 * the client networks and the user. */
static int
conf_check_own(const struct cfg *c, struct err *e)
{
    const char *const *nets;
    struct cidr_list *l;
    struct conf_ident id;
    struct stat st;
    const char *s;
    size_t n;

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
    /* A relative name would depend on the daemon's working directory,
     * and a UNIX socket name has a small fixed size. */
    s = cfg_str(c, "control_socket");
    if (s[0] != '/' || strlen(s) >= CONF_SOCKET_PATH_MAX)
        return cfg_err(e, c, "control_socket",
                       "'%.64s' is not an absolute path of at most %d "
                       "octets",
                       s, CONF_SOCKET_PATH_MAX - 1);
    n = cfg_list(c, "mynetworks", &nets);
    if ((l = cidr_list_new(nets, n, e)) == NULL)
        return cfg_err(e, c, "mynetworks", "%s", e->text);
    cidr_list_free(l);
    return conf_ident_load(c, &id, e);
}

int
conf_check_main(const struct cfg *c, const struct conf_part *const *parts,
                struct err *e)
{
    size_t i;

    if (conf_check_own(c, e) < 0)
        return -1;
    for (i = 0; parts != NULL && parts[i] != NULL; i++)
        if (parts[i]->check != NULL && parts[i]->check(c, e) < 0)
            return -1;
    return 0;
}

/* conf_order_rank - the place of name in conf_key_order, or its size. */
static size_t
conf_order_rank(const char *name)
{
    size_t n = sizeof(conf_key_order) / sizeof(conf_key_order[0]), i;

    for (i = 0; i < n; i++)
        if (strcmp(conf_key_order[i], name) == 0)
            return i;
    return n;
}

struct cfg_option *
conf_options_merge(const struct conf_part *const *parts, struct err *e)
{
    static const struct cfg_option end = CFG_OPTION_END;
    const struct cfg_option *o;
    struct cfg_option *all, tmp;
    size_t *rank, n = 0, i, j, k = 0;

    for (o = conf_options; o->name != NULL; o++)
        n++;
    for (i = 0; parts != NULL && parts[i] != NULL; i++)
        for (o = parts[i]->options; o->name != NULL; o++)
            n++;
    if ((all = calloc(n + 1, sizeof(*all))) == NULL ||
        (rank = calloc(n + 1, sizeof(*rank))) == NULL) {
        free(all);
        err_nomem(e);
        return NULL;
    }
    for (o = conf_options; o->name != NULL; o++)
        all[k++] = *o;
    for (i = 0; parts != NULL && parts[i] != NULL; i++)
        for (o = parts[i]->options; o->name != NULL; o++)
            all[k++] = *o;
    for (i = 0; i < n; i++)
        rank[i] = conf_order_rank(all[i].name);
    /* Insertion sort by rank: stable, so the keys no order names keep
     * the order of their parts; a few dozen keys, once per load. */
    for (i = 1; i < n; i++) {
        size_t r = rank[i];

        tmp = all[i];
        for (j = i; j > 0 && rank[j - 1] > r; j--) {
            all[j] = all[j - 1];
            rank[j] = rank[j - 1];
        }
        all[j] = tmp;
        rank[j] = r;
    }
    free(rank);
    for (i = 1; i < n; i++)
        for (j = 0; j < i; j++)
            if (strcmp(all[i].name, all[j].name) == 0) {
                err_set(e, ERR_INTERNAL, "key '%s' declared twice",
                        all[i].name);
                free(all);
                return NULL;
            }
    all[n] = end;
    return all;
}

/* conf_check - conf_check_main, then the message limits of cf. */
static int
conf_check(struct conf *cf, const struct conf_part *const *parts,
           struct err *e)
{
    const struct cfg *c = cf->cfg;

    if (conf_check_main(c, parts, e) < 0)
        return -1;
    cf->limits.message_size = (size_t)cfg_num(c, "message_size_limit");
    cf->limits.header_count = (size_t)cfg_num(c, "header_limit");
    cf->limits.line_length = (size_t)cfg_num(c, "line_length_limit");
    cf->limits.mime_depth = (unsigned)cfg_num(c, "mime_depth_limit");
    cf->limits.mime_parts = (unsigned)cfg_num(c, "mime_part_limit");
    cf->ambiguous =
        (enum chain_ambiguous_action)cfg_enum(c, "ambiguous_mime_action");
    return 0;
}

struct conf *
conf_load(const char *path, const struct conf_part *const *parts,
          struct err *e)
{
    return conf_load_flags(path, parts, 0, e);
}

struct conf *
conf_load_flags(const char *path, const struct conf_part *const *parts,
                unsigned flags, struct err *e)
{
    const struct cfg_option *tables[2] = {NULL, NULL};
    struct conf *cf;

    if ((cf = calloc(1, sizeof(*cf))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((cf->options = conf_options_merge(parts, e)) == NULL) {
        conf_free(cf);
        return NULL;
    }
    tables[0] = cf->options;
    if ((cf->cfg = cfg_parse(path, e)) == NULL ||
        cfg_validate(cf->cfg, tables, e) < 0 || conf_check(cf, parts, e) < 0) {
        conf_free(cf);
        return NULL;
    }
    if (!(flags & CONF_LOAD_MAIN) &&
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
    free(cf->options);
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
