/*
 * antivirus - outbound virus scanning with libclamav (one shared engine)
 *     or clamd, and an attachment name and type policy
 *
 * Configuration (chain.d):
 *     engine = libclamav | clamd
 *     libclamav: database_directory, database_check_interval,
 *         missing_database, temporary_directory, max_scan_size,
 *         max_file_size, max_recursion, max_files, max_scan_time
 *     clamd: clamd_socket (unix:PATH or tcp:HOST:PORT), clamd_timeout
 *     on_infected, on_unscannable, on_scan_timeout, on_banned,
 *     banned_filename_rules,
 *     banned_types, add_header, notify_admin, notify_next_hop
 *
 * In a chain loaded for checking only (stage.h: "relaychain check", run
 * before every start) init() checks every setting but only opens and
 * reads the signature files: no engine is compiled and no watcher runs.
 *
 * libclamav: init() compiles one engine from database_directory; every
 * thread scans with it (libclamav engines are read-only once compiled and
 * reference-counted). The message is serialized once into memory and
 * handed to cl_scanmap_callback() through cl_fmap_open_memory() with mail
 * parsing on, so libclamav decodes MIME, base64, quoted-printable,
 * message/rfc822 parts and archives itself (its mail parser does write
 * the decoded parts to its temporary directory while it scans them;
 * temporary_directory puts them on a tmpfs). Limits are passed to the
 * engine, and libclamav's "exceeds max" and "encrypted archive"
 * heuristics are on, so a limit hit or an archive it cannot open is
 * reported, never taken for clean: the stage maps those names
 * (Heuristics.Limits.Exceeded.*, Heuristics.Encrypted.*) to "unchecked".
 * Unchecked comes in two kinds, because the sender's MTA retries a 4xx
 * for days: unscannable (a size, file count or nesting limit, an
 * encrypted archive, a file libclamav cannot parse), which the same
 * bytes hit again on every try, and a scan timeout (max_scan_time, the
 * clock under load), which a later try may pass.
 * libclamav does not report an archive member over max_file_size, so the
 * archive callback compares each member's size with the limit itself.
 *
 * Signature reload without downtime: a reload of relaychaind (SIGUSR1)
 * builds a whole new chain, and with it a new stage and a new engine,
 * beside the running one; sessions keep the chain they started with, so
 * scans in flight finish on the old engine, and a chain that fails to
 * load (a broken database included) is refused while the old one keeps
 * running. With database_check_interval, a thread of the stage also
 * looks at the directory (cl_statchkdir) and, when it changed, compiles
 * a new engine beside the current one and swaps the pointer under a
 * mutex; each scan holds a reference (cl_engine_addref) for its whole
 * length, so the old engine goes away with the last scan that uses it. A
 * failed compile keeps the current engine and logs why.
 *
 * clamd: one connection per scan, INSTREAM with 64 KiB chunks, one
 * deadline (clamd_timeout) over connect, send and answer. clamd's "size
 * limit exceeded" (StreamMaxLength) answer is "unchecked", never clean;
 * an answer that early is read as soon as it comes.
 *
 * A message whose MIME structure the shared parse flags as ambiguous
 * (duplicate or conflicting boundaries, which the chain only lets through
 * with ambiguous_mime_action = continue) is scanned once more for each
 * boundary value it names, as a multipart with that boundary, so a part
 * one reader would find is scanned whichever reading the scanner takes.
 *
 * Attachment policy: every leaf of the shared GMime parse (inside
 * message/rfc822 parts too) is checked by its declared type against
 * banned_types and by its names (Content-Disposition filename and
 * Content-Type name, RFC 2231 and RFC 2047 decoded by GMime, trailing dots
 * and spaces removed as Windows does) against banned_filename_rules, a
 * pcre_table(5) file whose first matching rule's result says why ("OK"
 * or "DUNNO" allows). With libclamav, member names of archives (from its
 * archive callback, encrypted members included) are checked too, and
 * banned_types items "CL_TYPE_*" match the file types libclamav detects
 * at any depth.
 *
 * Verdicts, in order of precedence: infected (on_infected: reject with
 * "554 5.7.1 virus=NAME", discard or quarantine), banned (on_banned),
 * unscannable (on_unscannable: reject with 554 5.7.0 and the reason by
 * default, or quarantine, tempfail, continue), scan timeout
 * (on_scan_timeout: tempfail by default), clean. The older on_unchecked
 * still loads and sets both, with a warning in the log. Scanner failures
 * (engine missing, clamd down, out of memory, temporary files) return -1: the
 * chain applies on_error, tempfail by default, so mail is never passed
 * unscanned unless the admin chose that. No notice ever goes to the sender;
 * notify_admin sends a short text notice (no part of the message) to one
 * address through notify_next_hop, with the null sender: the chain's notice
 * service (stage_env) sends it, over the program's next-hop client.
 *
 * The stage owns its engine reference, watcher thread, regmap, clamd
 * address and notifier; run() only reads them (the engine pointer
 * under the mutex), so it may be called from any number of threads.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <clamav.h>
#include <dirent.h>
#include <gmime/gmime.h>

#include "filters/antivirus/antivirus_int.h"
#include "util/addr.h"
#include "filters/filters.h"
#include "filters/filters_int.h"
#include "util/log.h"
#include "msg/mime.h"
#include "util/regmap.h"

static const char *const flt_av_engines[] = {
    [FLT_AV_LIBCLAMAV] = "libclamav", [FLT_AV_CLAMD] = "clamd", NULL};
static const char *const flt_av_infected_choices[] = {"reject", "discard",
                                                      "quarantine", NULL};
static const char *const flt_av_unchecked_choices[] = {
    "tempfail", "reject", "continue", "quarantine", NULL};
static const char *const flt_av_unscannable_choices[] = {
    "reject", "quarantine", "tempfail", "continue", NULL};
static const char *const flt_av_missing_choices[] = {
    [FLT_AV_MISSING_FAIL] = "fail",
    [FLT_AV_MISSING_TEMPFAIL] = "tempfail",
    NULL};

static const struct cfg_option flt_av_options[] = {
    {"engine", CFG_ENUM, "libclamav",
     "libclamav (in-process, one shared engine) or clamd (over its socket)",
     flt_av_engines, 0, 0, 0},
    {"database_directory", CFG_PATH, "/var/lib/clamav",
     "libclamav: directory of signature databases (.cvd, .cld, .hdb, .ndb, "
     ".ldb, .yar, ...), as freshclam keeps it",
     NULL, 0, 0, 0},
    {"database_check_interval", CFG_TIME, "10m",
     "libclamav: how often to look for changed databases and reload them "
     "in the background; 0: only on relaychaind's reload (SIGUSR1)",
     NULL, 0, 7LL * 24 * 3600 * 1000, 0},
    {"missing_database", CFG_ENUM, "fail",
     "libclamav: a database directory without signatures at start: fail "
     "(the configuration does not load) or tempfail (mail is tempfailed "
     "until the databases arrive)",
     flt_av_missing_choices, 0, 0, 0},
    {"temporary_directory", CFG_PATH, NULL,
     "libclamav: where its mail parser and unpackers keep decoded parts "
     "while they scan (default: $TMPDIR or /tmp); a tmpfs is fastest",
     NULL, 0, 0, 0},
    {"max_scan_size", CFG_SIZE, "400m",
     "libclamav: most octets scanned in one message, archives expanded", NULL,
     1, 4LL * 1024 * 1024 * 1024, 0},
    {"max_file_size", CFG_SIZE, "100m",
     "libclamav: largest single file (attachment or archive member) "
     "scanned",
     NULL, 1, 4LL * 1024 * 1024 * 1024, 0},
    {"max_recursion", CFG_INT, "17",
     "libclamav: deepest nesting of archives and attached messages", NULL, 1,
     100, 0},
    {"max_files", CFG_INT, "10000",
     "libclamav: most files scanned in one message", NULL, 1, 1000000, 0},
    {"max_scan_time", CFG_TIME, "120s",
     "libclamav: longest time one scan may take", NULL, 1, 3600LL * 1000, 0},
    {"clamd_socket", CFG_STRING, NULL,
     "clamd: unix:/run/clamav/clamd.ctl or tcp:HOST:PORT", NULL, 0, 0, 0},
    {"clamd_timeout", CFG_TIME, "120s",
     "clamd: the most a scan may take, connect and answer included", NULL, 1,
     3600LL * 1000, 0},
    {"on_infected", CFG_ENUM, "reject",
     "an infected message: reject (554 5.7.1 virus=NAME), discard or "
     "quarantine",
     flt_av_infected_choices, 0, 0, 0},
    {"on_unscannable", CFG_ENUM, "reject",
     "a message that can never be scanned whole, because the same bytes hit "
     "the same limit on every try (max_file_size, max_recursion, max_files, "
     "max_scan_size, clamd's StreamMaxLength, an encrypted archive, a file "
     "the engine cannot parse): reject (554 5.7.0 with the reason), "
     "quarantine, tempfail (the sender retries for days) or continue",
     flt_av_unscannable_choices, 0, 0, 0},
    {"on_scan_timeout", CFG_ENUM, "tempfail",
     "a message whose scan ran out of time (max_scan_time), which may pass "
     "when the scanner is less loaded: tempfail, reject, continue or "
     "quarantine",
     flt_av_unchecked_choices, 0, 0, 0},
    {"on_unchecked", CFG_ENUM, NULL,
     "deprecated: sets both on_unscannable and on_scan_timeout (tempfail, "
     "reject, continue or quarantine); set those instead",
     flt_av_unchecked_choices, 0, 0, 0},
    {"on_banned", CFG_ENUM, "reject",
     "a message with a banned attachment name or type: reject, discard or "
     "quarantine",
     flt_av_infected_choices, 0, 0, 0},
    {"banned_filename_rules", CFG_PATH, NULL,
     "pcre_table(5) file over decoded attachment and archive member names; "
     "the result says why (OK or DUNNO allows)",
     NULL, 0, 0, 0},
    {"banned_types", CFG_LIST, NULL,
     "MIME types (type/subtype or type/*) and libclamav file types "
     "(CL_TYPE_MSEXE) that are banned",
     NULL, 0, 0, 0},
    {"add_header", CFG_BOOL, "no",
     "add X-Virus-Scanned and X-Virus-Status (and remove any the message "
     "had)",
     NULL, 0, 0, 0},
    {"notify_admin", CFG_STRING, NULL,
     "address that gets a short notice for each infected or banned message",
     NULL, 0, 0, 0},
    {"notify_next_hop", CFG_STRING, "smtp:[127.0.0.1]:25",
     "where notices are sent (smtp:[HOST]:PORT or lmtp:...)", NULL, 0, 0, 0},
    CFG_OPTION_END,
};

/* Keys that only make sense with the in-process engine. */
static const char *const flt_av_libclamav_keys[] = {
    "database_directory", "database_check_interval",
    "missing_database",   "temporary_directory",
    "max_scan_size",      "max_file_size",
    "max_recursion",      "max_files",
    "max_scan_time",
};

/* ---------------------------------------------------------------- init */

static void
flt_av_free(struct stage *st)
{
    struct flt_av *fa = st->priv;
    size_t i;

    if (fa == NULL)
        return;
    if (fa->have_thread) {
        pthread_mutex_lock(&fa->lock);
        fa->stop = 1;
        pthread_cond_broadcast(&fa->cond);
        pthread_mutex_unlock(&fa->lock);
        pthread_join(fa->thread, NULL);
    }
    if (fa->engine != NULL)
        cl_engine_free(fa->engine);
    if (fa->have_stat)
        cl_statfree(&fa->dbstat);
    if (fa->have_cond)
        pthread_cond_destroy(&fa->cond);
    if (fa->have_lock)
        pthread_mutex_destroy(&fa->lock);
    regmap_free(fa->banned_names);
    for (i = 0; i < fa->nbanned_types; i++)
        free(fa->banned_types[i]);
    free(fa->banned_types);
    if (fa->notify != NULL)
        fa->notifier_free(fa->notify);
    free(fa->notify_admin);
    free(fa->clamd_spec);
    free(fa->dbdir);
    free(fa->tmpdir);
    free(fa->stage_name);
    free(fa);
    st->priv = NULL;
}

static enum flt_av_action
flt_av_action_of(const char *const *choices, int idx)
{
    const char *s = choices[idx];

    if (strcmp(s, "reject") == 0)
        return FLT_AV_REJECT;
    if (strcmp(s, "discard") == 0)
        return FLT_AV_DISCARD;
    if (strcmp(s, "quarantine") == 0)
        return FLT_AV_QUARANTINE;
    if (strcmp(s, "continue") == 0)
        return FLT_AV_CONTINUE;
    return FLT_AV_TEMPFAIL;
}

static int
flt_av_init_types(struct flt_av *fa, const struct cfg *c, struct err *e)
{
    const char *const *items;
    size_t n = cfg_list(c, "banned_types", &items), i;
    const char *slash;

    if (n == 0)
        return 0;
    if ((fa->banned_types = calloc(n, sizeof(*fa->banned_types))) == NULL)
        return err_nomem(e);
    for (i = 0; i < n; i++) {
        slash = strchr(items[i], '/');
        if (strncmp(items[i], "CL_TYPE_", 8) == 0) {
            if (fa->kind == FLT_AV_CLAMD)
                return cfg_err(e, c, "banned_types",
                               "%s: libclamav file types need engine = "
                               "libclamav",
                               items[i]);
            fa->want_types = 1;
        } else if (slash == NULL || slash == items[i] || slash[1] == '\0' ||
                   strchr(slash + 1, '/') != NULL ||
                   (strchr(items[i], '*') != NULL &&
                    strcmp(slash, "/*") != 0)) {
            return cfg_err(e, c, "banned_types",
                           "'%s': want type/subtype, type/* or CL_TYPE_NAME",
                           items[i]);
        }
        if ((fa->banned_types[i] = strdup(items[i])) == NULL)
            return err_nomem(e);
        fa->nbanned_types++;
    }
    return 0;
}

/* flt_av_unchecked_keys - on_unscannable and on_scan_timeout. An
 * on_unchecked from an older configuration still loads (a package upgrade
 * must not stop the mail) and sets both, as it did, with a warning; given
 * beside either new key it is refused, since one of the two would lose. */
static int
flt_av_unchecked_keys(struct flt_av *fa, const struct cfg *c, struct err *e)
{
    enum flt_av_action old;

    fa->on_unscannable = flt_av_action_of(flt_av_unscannable_choices,
                                          cfg_enum(c, "on_unscannable"));
    fa->on_scan_timeout = flt_av_action_of(flt_av_unchecked_choices,
                                           cfg_enum(c, "on_scan_timeout"));
    if (!cfg_is_set(c, "on_unchecked"))
        return 0;
    if (cfg_is_set(c, "on_unscannable") || cfg_is_set(c, "on_scan_timeout"))
        return cfg_err(e, c, "on_unchecked",
                       "replaced by on_unscannable and on_scan_timeout; "
                       "give only those");
    old = flt_av_action_of(flt_av_unchecked_choices,
                           cfg_enum(c, "on_unchecked"));
    fa->on_unscannable = fa->on_scan_timeout = old;
    log_warning(NULL,
                "%s:%u: on_unchecked is deprecated: it sets both "
                "on_unscannable (a limit the same message always hits; "
                "default reject) and on_scan_timeout (default tempfail) to "
                "%s; set those instead",
                cfg_path(c), cfg_line(c, "on_unchecked"),
                cfg_raw(c, "on_unchecked"));
    return 0;
}

static int
flt_av_init(struct stage *st, const struct cfg *c, struct err *e)
{
    struct flt_av *fa;
    const char *admin;
    char why[128];
    size_t i;

    if ((fa = calloc(1, sizeof(*fa))) == NULL)
        return err_nomem(e);
    st->priv = fa;
    if (pthread_mutex_init(&fa->lock, NULL) != 0) {
        flt_av_free(st);
        return err_nomem(e);
    }
    fa->have_lock = 1;
    fa->check_only = st->check_only;
    if ((fa->stage_name = strdup(st->name ? st->name : "antivirus")) == NULL)
        goto nomem;
    fa->kind = (enum flt_av_engine_kind)cfg_enum(c, "engine");
    fa->on_infected =
        flt_av_action_of(flt_av_infected_choices, cfg_enum(c, "on_infected"));
    fa->on_banned =
        flt_av_action_of(flt_av_infected_choices, cfg_enum(c, "on_banned"));
    if (flt_av_unchecked_keys(fa, c, e) < 0)
        goto fail;
    fa->add_header = cfg_bool(c, "add_header");
    if (gethostname(fa->hostname, sizeof(fa->hostname) - 1) < 0 ||
        fa->hostname[0] == '\0')
        snprintf(fa->hostname, sizeof(fa->hostname), "localhost");

    if (fa->kind == FLT_AV_CLAMD) {
        for (i = 0; i < sizeof(flt_av_libclamav_keys) /
                            sizeof(flt_av_libclamav_keys[0]);
             i++)
            if (cfg_is_set(c, flt_av_libclamav_keys[i])) {
                cfg_err(e, c, flt_av_libclamav_keys[i],
                        "applies to engine = libclamav only (clamd takes "
                        "its databases and limits from clamd.conf)");
                goto fail;
            }
        if (cfg_str(c, "clamd_socket") == NULL) {
            err_set(e, ERR_CONFIG, "%s: engine = clamd needs clamd_socket",
                    cfg_path(c));
            goto fail;
        }
        if ((fa->clamd_spec = strdup(cfg_str(c, "clamd_socket"))) == NULL)
            goto nomem;
        if (flt_av_clamd_addr(fa, c, fa->clamd_spec, e) < 0)
            goto fail;
        fa->clamd_timeout = cfg_num(c, "clamd_timeout");
        snprintf(fa->scanned_by, sizeof(fa->scanned_by),
                 "relaychain antivirus (clamd)");
    } else {
        if (cfg_is_set(c, "clamd_socket") || cfg_is_set(c, "clamd_timeout")) {
            cfg_err(e, c,
                    cfg_is_set(c, "clamd_socket") ? "clamd_socket"
                                                  : "clamd_timeout",
                    "applies to engine = clamd only");
            goto fail;
        }
    }
    if (flt_av_init_types(fa, c, e) < 0)
        goto fail;
    if (flt_cfg_regmap(c, "banned_filename_rules", &fa->banned_names, e) < 0)
        goto fail;
    if (fa->banned_names != NULL)
        fa->want_meta = 1;
    if ((admin = cfg_str(c, "notify_admin")) != NULL) {
        if (!addr_is_valid(admin, 0, why, sizeof(why))) {
            cfg_err(e, c, "notify_admin", "'%s' is not an address: %s", admin,
                    why);
            goto fail;
        }
        if ((fa->notify_admin = strdup(admin)) == NULL)
            goto nomem;
        if (st->env == NULL || st->env->notifier_new == NULL ||
            st->env->notify == NULL || st->env->notifier_free == NULL) {
            cfg_err(e, c, "notify_admin", "this program sends no notices");
            goto fail;
        }
        fa->notifier_free = st->env->notifier_free;
        if ((fa->notify = st->env->notifier_new(cfg_str(c, "notify_next_hop"),
                                                fa->hostname, e)) == NULL) {
            flt_cfg_prefix(e, c, "notify_next_hop");
            goto fail;
        }
    } else if (cfg_is_set(c, "notify_next_hop")) {
        cfg_err(e, c, "notify_next_hop", "set notify_admin too");
        goto fail;
    }
    if (fa->kind == FLT_AV_LIBCLAMAV && flt_av_init_libclamav(fa, c, e) < 0)
        goto fail;
    if (!fa->add_header)
        st->flags &= ~STAGE_EDITS_HEADERS;
    return 0;

nomem:
    err_nomem(e);
fail:
    flt_av_free(st);
    return -1;
}

/* ----------------------------------------------------------------- run */

/* flt_av_scan_buf - one scan of data with the configured engine. */
static int
flt_av_scan_buf(struct flt_av *fa, struct flt_av_scan *sc, const char *data,
                size_t len, struct flt_av_result *r, struct err *e)
{
    r->status = FLT_ANTIVIRUS_CLEAN;
    r->what[0] = '\0';
    if (fa->kind == FLT_AV_CLAMD)
        return flt_av_clamd_scan(fa, data, len, r, e);
    return flt_av_libclamav_scan(fa, sc, data, len, r, e);
}

/* flt_av_rank - infected over unscannable over timeout over clean: a
 * reading that can never be scanned makes the message unscannable, even
 * when another one only ran out of time. */
static int
flt_av_rank(enum flt_antivirus_status s)
{
    switch (s) {
    case FLT_ANTIVIRUS_INFECTED:
        return 3;
    case FLT_ANTIVIRUS_UNCHECKED:
        return 2;
    case FLT_ANTIVIRUS_TIMEOUT:
        return 1;
    default:
        return 0;
    }
}

/* flt_av_merge - keep the stronger of two results in r. */
static void
flt_av_merge(struct flt_av_result *r, const struct flt_av_result *more)
{
    if (flt_av_rank(more->status) > flt_av_rank(r->status))
        *r = *more;
}

/* flt_av_add_bounds - add the boundaries named in s to the nb already in
 * bounds (distinct, at most FLT_AV_BOUNDARIES_MAX); returns the count. */
static size_t
flt_av_add_bounds(char (*bounds)[FLT_ANTIVIRUS_BOUNDARY_SIZE], size_t nb,
                  const char *s, size_t n)
{
    char more[FLT_AV_BOUNDARIES_MAX][FLT_ANTIVIRUS_BOUNDARY_SIZE];
    size_t got = flt_antivirus_boundaries(s, n, more, FLT_AV_BOUNDARIES_MAX);
    size_t j, x;

    for (j = 0; j < got && nb < FLT_AV_BOUNDARIES_MAX; j++) {
        for (x = 0; x < nb; x++)
            if (strcmp(bounds[x], more[j]) == 0)
                break;
        if (x == nb)
            memcpy(bounds[nb++], more[j], sizeof(more[j]));
    }
    return nb;
}

/* flt_av_scan_ambiguous - scan the body once more as a multipart with
 * each boundary value the message names. */
static int
flt_av_scan_ambiguous(struct flt_av *fa, struct flt_av_scan *sc, struct msg *m,
                      struct flt_av_result *r, struct err *e)
{
    char bounds[FLT_AV_BOUNDARIES_MAX][FLT_ANTIVIRUS_BOUNDARY_SIZE];
    struct flt_av_result more;
    const struct mime *mm;
    const char *body;
    struct buf v;
    size_t blen, nb, i, k;
    const char *name, *value;
    size_t vlen;
    int rc = 0;

    if ((mm = msg_mime(m, e)) == NULL)
        return -1;
    if (mime_flags(mm) == 0)
        return 0;
    body = msg_body(m, &blen);
    nb = 0;
    /* The header's Content-Type fields first, then the body's. */
    for (k = 0; k < msg_header_count(m); k++)
        if (msg_header_at(m, k, &name, &value, &vlen) == 0 &&
            strcasecmp(name, "Content-Type") == 0)
            nb = flt_av_add_bounds(bounds, nb, value, vlen);
    nb = flt_av_add_bounds(bounds, nb, body, blen);
    buf_init(&v, 0);
    for (i = 0; i < nb && r->status != FLT_ANTIVIRUS_INFECTED; i++) {
        buf_reset(&v);
        if (buf_printf(&v, e,
                       "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                       "boundary=\"%s\"\r\n\r\n",
                       bounds[i]) < 0 ||
            buf_append(&v, body, blen, e) < 0) {
            rc = -1;
            break;
        }
        if ((rc = flt_av_scan_buf(fa, sc, v.data, v.len, &more, e)) < 0)
            break;
        flt_av_merge(r, &more);
    }
    buf_fini(&v);
    return rc;
}

static int
flt_av_headers(const struct stage *st, const struct flt_av *fa, struct msg *m,
               const char *status, struct err *e)
{
    static const char *const names[] = {"X-Virus-Scanned", "X-Virus-Status"};
    size_t i, k;

    /* A message without a header (all body, as Postfix reads it) is left
     * as it is: a field added would turn all of it into body text. */
    if (!fa->add_header || msg_header_count(m) == 0)
        return 0;
    /* Only our verdict may travel on: a sender's own claims go. */
    for (i = 0; i < 2; i++)
        for (k = msg_header_name_count(m, names[i]); k > 0; k--)
            if (msg_header_delete(m, st->name, names[i], k, e) < 0)
                return -1;
    if (msg_header_add(m, st->name, names[0], fa->scanned_by, e) < 0 ||
        msg_header_add(m, st->name, names[1], status, e) < 0)
        return -1;
    return 0;
}

static const char *
flt_av_engine_name(const struct flt_av *fa)
{
    return fa->kind == FLT_AV_CLAMD ? "clamd" : "libclamav";
}

static int
flt_av_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    struct flt_av *fa = st->priv;
    struct flt_av_result res;
    struct flt_av_scan sc;
    struct flt_av_ban ban;
    char status[FLT_AV_WHAT_MAX * 2 + 32], reply[VERDICT_REPLY_MAX];
    const char *eng = flt_av_engine_name(fa);
    enum flt_av_action act = FLT_AV_CONTINUE;
    const char *raw;
    size_t raw_len;
    int rc, unchecked;

    memset(&ban, 0, sizeof(ban));
    flt_av_scan_init(&sc, fa);
    /* The message as it goes out, without a copy of our own: the
     * received octets, or the one flat copy the MIME parse shares. */
    rc = (raw = msg_flat(m, &raw_len, e)) == NULL ? -1 : 0;
    if (rc == 0)
        rc = flt_av_scan_buf(fa, &sc, raw, raw_len, &res, e);
    if (rc == 0 && res.status != FLT_ANTIVIRUS_INFECTED)
        rc = flt_av_scan_ambiguous(fa, &sc, m, &res, e);
    if (rc == 0 && flt_av_rank(res.status) < 2 && sc.big[0] != '\0') {
        res.status = FLT_ANTIVIRUS_UNCHECKED;
        snprintf(res.what, sizeof(res.what), "%s", sc.big);
    }
    if (rc == 0 && res.status != FLT_ANTIVIRUS_INFECTED)
        rc = flt_av_policy(fa, m, &sc, &ban, e) < 0 ? -1 : 0;
    flt_av_scan_fini(&sc);
    if (rc < 0) {
        err_prefix(e, "%s", st->name);
        return -1;
    }

    unchecked = res.status == FLT_ANTIVIRUS_UNCHECKED ||
                res.status == FLT_ANTIVIRUS_TIMEOUT;
    if (res.status == FLT_ANTIVIRUS_INFECTED) {
        act = fa->on_infected;
        snprintf(status, sizeof(status), "Infected (%s)", res.what);
        snprintf(reply, sizeof(reply),
                 "554 5.7.1 virus=%s (message content rejected)", res.what);
    } else if (ban.banned) {
        act = fa->on_banned;
        snprintf(status, sizeof(status), "Banned (%s)", ban.what);
        snprintf(reply, sizeof(reply),
                 "554 5.7.1 banned=%s (message content rejected)", ban.what);
    } else if (unchecked) {
        act = res.status == FLT_ANTIVIRUS_TIMEOUT ? fa->on_scan_timeout
                                                  : fa->on_unscannable;
        snprintf(status, sizeof(status), "Unchecked (%s)", res.what);
        if (act == FLT_AV_TEMPFAIL)
            snprintf(reply, sizeof(reply),
                     "451 4.7.1 message could not be scanned (%s), try "
                     "again later",
                     res.what);
        else
            snprintf(reply, sizeof(reply),
                     "554 5.7.0 message could not be scanned (%s)", res.what);
    } else {
        snprintf(status, sizeof(status), "Clean");
    }
    if ((act == FLT_AV_CONTINUE || act == FLT_AV_QUARANTINE) &&
        flt_av_headers(st, fa, m, status, e) < 0) {
        err_prefix(e, "%s", st->name);
        return -1;
    }
    if (fa->notify != NULL &&
        (res.status == FLT_ANTIVIRUS_INFECTED || ban.banned))
        flt_av_notify(st, fa, m,
                      act == FLT_AV_REJECT    ? "rejected"
                      : act == FLT_AV_DISCARD ? "discarded"
                                              : "quarantined",
                      res.status == FLT_ANTIVIRUS_INFECTED ? res.what
                                                           : ban.what);

    if (res.status == FLT_ANTIVIRUS_INFECTED) {
        switch (act) {
        case FLT_AV_DISCARD:
            return verdict_set(v, VERDICT_DISCARD, NULL, "virus=%s, engine=%s",
                               res.what, eng);
        case FLT_AV_QUARANTINE:
            return verdict_set(v, VERDICT_QUARANTINE, NULL,
                               "virus=%s, engine=%s", res.what, eng);
        default:
            return verdict_set(v, VERDICT_REJECT, reply, "virus=%s, engine=%s",
                               res.what, eng);
        }
    }
    if (ban.banned) {
        switch (act) {
        case FLT_AV_DISCARD:
            return verdict_set(v, VERDICT_DISCARD, NULL,
                               "banned=%s (%s), engine=%s", ban.what, ban.rule,
                               eng);
        case FLT_AV_QUARANTINE:
            return verdict_set(v, VERDICT_QUARANTINE, NULL,
                               "banned=%s (%s), engine=%s", ban.what, ban.rule,
                               eng);
        default:
            return verdict_set(v, VERDICT_REJECT, reply,
                               "banned=%s (%s), engine=%s", ban.what, ban.rule,
                               eng);
        }
    }
    if (unchecked) {
        switch (act) {
        case FLT_AV_CONTINUE:
            return verdict_set(v, VERDICT_CONTINUE, NULL,
                               "unchecked (%s), engine=%s, passed (%s = "
                               "continue)",
                               res.what, eng,
                               res.status == FLT_ANTIVIRUS_TIMEOUT
                                   ? "on_scan_timeout"
                                   : "on_unscannable");
        case FLT_AV_QUARANTINE:
            return verdict_set(v, VERDICT_QUARANTINE, NULL,
                               "unchecked (%s), engine=%s", res.what, eng);
        case FLT_AV_REJECT:
            return verdict_set(v, VERDICT_REJECT, reply,
                               "unchecked (%s), engine=%s", res.what, eng);
        default:
            return verdict_set(v, VERDICT_TEMPFAIL, reply,
                               "unchecked (%s), engine=%s", res.what, eng);
        }
    }
    return verdict_set(v, VERDICT_CONTINUE, NULL, "result=clean, engine=%s",
                       eng);
}

const struct stage_type flt_antivirus_type = {
    .name = "antivirus",
    .summary = "virus scanning with libclamav or clamd, and banned "
               "attachment names and types",
    .flags = STAGE_EDITS_HEADERS,
    .options = flt_av_options,
    .init = flt_av_init,
    .run = flt_av_run,
    .free = flt_av_free,
};

/* For "relaychain status": the engine in force now, so a reference is
 * taken under the lock (the watcher may swap it meanwhile). */
int
flt_antivirus_info(const struct stage *st, struct flt_antivirus_info *info)
{
    struct flt_av *fa;
    struct cl_engine *en;
    int err = 0;

    memset(info, 0, sizeof(*info));
    if (st->type != &flt_antivirus_type || st->priv == NULL)
        return -1;
    fa = st->priv;
    if (fa->kind == FLT_AV_CLAMD) {
        info->clamd = fa->clamd_spec;
        return 0;
    }
    info->database_directory = fa->dbdir;
    pthread_mutex_lock(&fa->lock);
    en = fa->engine;
    if (en != NULL && cl_engine_addref(en) != CL_SUCCESS)
        en = NULL;
    info->signatures = fa->sigs;
    pthread_mutex_unlock(&fa->lock);
    if (en == NULL)
        return 0;
    info->loaded = 1;
    info->version =
        (long long)cl_engine_get_num(en, CL_ENGINE_DB_VERSION, &err);
    if (err != 0)
        info->version = 0;
    err = 0;
    info->built = (long long)cl_engine_get_num(en, CL_ENGINE_DB_TIME, &err);
    if (err != 0)
        info->built = 0;
    cl_engine_free(en);
    return 0;
}
