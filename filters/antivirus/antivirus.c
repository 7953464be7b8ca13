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

#include "util/addr.h"
#include "filters/filters.h"
#include "util/log.h"
#include "msg/mime.h"
#include "util/regmap.h"

#define FLT_AV_NAME_MAX 256   /* octets of one attachment name checked */
#define FLT_AV_NAMES_MAX 1000 /* archive member names kept per scan */
#define FLT_AV_TYPES_MAX 64   /* libclamav file types kept per scan */
#define FLT_AV_WHAT_MAX FLT_ANTIVIRUS_WHAT_MAX /* virus name or reason */
#define FLT_AV_PRINT_MAX 64     /* octets of a name in a reply */
#define FLT_AV_CHUNK 65536      /* INSTREAM chunk */
#define FLT_AV_REPLY_MAX 1024   /* octets of a clamd answer */
#define FLT_AV_BOUNDARIES_MAX 8 /* extra readings of an ambiguous msg */
#define FLT_AV_DEPTH_MAX 64     /* walk guard */
#define FLT_AV_NOTICE_RCPTS 20  /* recipients named in a notice */
#define FLT_AV_NOTICE_MAX (64 * 1024)

enum flt_av_engine_kind { FLT_AV_LIBCLAMAV, FLT_AV_CLAMD };

/* The choices of on_infected, on_banned and on_unchecked share these. */
enum flt_av_action {
    FLT_AV_REJECT,
    FLT_AV_DISCARD,
    FLT_AV_QUARANTINE,
    FLT_AV_TEMPFAIL,
    FLT_AV_CONTINUE
};

static const char *const flt_av_engines[] = {"libclamav", "clamd", NULL};
static const char *const flt_av_infected_choices[] = {"reject", "discard",
                                                      "quarantine", NULL};
static const char *const flt_av_unchecked_choices[] = {
    "tempfail", "reject", "continue", "quarantine", NULL};
static const char *const flt_av_unscannable_choices[] = {
    "reject", "quarantine", "tempfail", "continue", NULL};
static const char *const flt_av_missing_choices[] = {"fail", "tempfail", NULL};

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

struct flt_av {
    enum flt_av_engine_kind kind;
    char *stage_name; /* for the watcher's log lines */

    int check_only; /* the chain is only checked: no engine, no watcher */

    /* libclamav */
    char *dbdir;
    char *tmpdir;
    long long max_scan_size, max_file_size, max_recursion, max_files;
    long long max_scan_time;
    int want_meta;  /* archive member names are checked */
    int want_types; /* banned_types has CL_TYPE_* items */
    pthread_mutex_t lock;
    struct cl_engine *engine; /* one reference held here; NULL: none */
    unsigned sigs;
    int have_lock;

    /* the watcher */
    pthread_cond_t cond;
    int have_cond;
    pthread_t thread;
    int have_thread;
    int stop;
    long long interval_ms;
    struct cl_stat dbstat;
    int have_stat;

    /* clamd */
    struct sockaddr_storage clamd_addr;
    socklen_t clamd_addrlen;
    char *clamd_spec;
    long long clamd_timeout;

    /* policy */
    enum flt_av_action on_infected, on_banned;
    enum flt_av_action on_unscannable, on_scan_timeout;
    struct regmap *banned_names;
    char **banned_types;
    size_t nbanned_types;
    int add_header;
    char scanned_by[128]; /* X-Virus-Scanned value */
    char *notify_admin;
    struct stage_notifier *notify; /* the chain's notice service */
    void (*notifier_free)(struct stage_notifier *n);
    char hostname[256];
};

struct flt_av_result {
    enum flt_antivirus_status status;
    char what[FLT_AV_WHAT_MAX]; /* virus name, or why unchecked */
};

/* What one message's scans found besides the verdict, filled by the
 * libclamav callbacks (which run on the scanning thread). */
struct flt_av_scan {
    long long max_file_size;
    struct buf names; /* archive member names, NUL-separated */
    size_t nnames;
    struct buf types; /* libclamav file types, NUL-separated, distinct */
    size_t ntypes;
    char big[FLT_AV_WHAT_MAX]; /* an archive member over max_file_size */
    char libmsg[256];          /* libclamav's first error of the scan */
};

struct flt_av_ban {
    int banned;
    char what[FLT_AV_WHAT_MAX]; /* "name \"x.exe\": executable" */
    char rule[FLT_AV_WHAT_MAX]; /* "banned.pcre:3", for the log only */
};

/* ------------------------------------------------------------ helpers */

/* flt_av_printable - s (n octets) for a reply or a log line: printable
 * ASCII kept, anything else '?', '"' and '\\' as '\'', cut at max octets
 * with "...". Returns out (size size). */
static const char *
flt_av_printable(const char *s, size_t n, size_t max, char *out, size_t size)
{
    size_t o = 0, i;

    for (i = 0; i < n && o + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];

        if (o >= max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\')
            out[o++] = '\'';
        else
            out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

static long long
flt_av_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* flt_av_buf_has - 1 when the NUL-separated list in b holds s. */
static int
flt_av_buf_has(const struct buf *b, const char *s)
{
    size_t off, len;

    for (off = 0; off < b->len; off += len + 1) {
        len = strlen(b->data + off);
        if (strcmp(b->data + off, s) == 0)
            return 1;
    }
    return 0;
}

/* ----------------------------------------------------- heuristic names */

/*
 * flt_antivirus_classify - what a detection name means. Names of
 * libclamav's "could not scan" heuristics are unchecked, with the reason
 * in terms of our options when the limit is ours (libclamav) or of
 * clamd.conf's (clamd); anything else is a virus.
 */
int
flt_antivirus_classify(const char *name, int clamd, char *why, size_t n)
{
    static const struct {
        const char *heur, *ours, *clamds;
    } limits[] = {
        {"MaxScanSize", "max_scan_size", "MaxScanSize"},
        {"MaxFileSize", "max_file_size", "MaxFileSize"},
        {"MaxRecursion", "max_recursion", "MaxRecursion"},
        {"MaxFiles", "max_files", "MaxFiles"},
        {"MaxScanTime", "max_scan_time", "MaxScanTime"},
    };
    static const char lim[] = "Heuristics.Limits.Exceeded.";
    static const char enc[] = "Heuristics.Encrypted.";
    char p[FLT_AV_WHAT_MAX];
    size_t i;

    flt_av_printable(name, strlen(name), FLT_AV_WHAT_MAX - 8, p, sizeof(p));
    if (strncmp(name, lim, sizeof(lim) - 1) == 0) {
        const char *what = name + sizeof(lim) - 1;

        for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
            if (strncmp(what, limits[i].heur, strlen(limits[i].heur)) == 0) {
                snprintf(why, n, "%s%s exceeded", clamd ? "clamd " : "",
                         clamd ? limits[i].clamds : limits[i].ours);
                /* The only limit that depends on the clock, not on the
                 * bytes. */
                return strcmp(limits[i].heur, "MaxScanTime") == 0
                           ? FLT_ANTIVIRUS_TIMEOUT
                           : FLT_ANTIVIRUS_UNCHECKED;
            }
        snprintf(why, n, "limit exceeded: %s", p);
        return FLT_ANTIVIRUS_UNCHECKED;
    }
    if (strncmp(name, enc, sizeof(enc) - 1) == 0) {
        snprintf(why, n, "encrypted content: %s", p);
        return FLT_ANTIVIRUS_UNCHECKED;
    }
    snprintf(why, n, "%s", p);
    return FLT_ANTIVIRUS_INFECTED;
}

/* ------------------------------------------------- libclamav callbacks */

/* The process-wide part of libclamav: cl_init() and the message callback
 * must be set once, before any engine exists, from whichever thread
 * loads the first antivirus stage. pthread_once is the one safe way to
 * do that without a mutable global of our own. */
static pthread_once_t flt_av_once = PTHREAD_ONCE_INIT;
static cl_error_t flt_av_once_rc = CL_SUCCESS; /* written by the once */

/* flt_av_clmsg - libclamav's messages. During a scan, context is our
 * struct flt_av_scan and the first error is kept for the error report;
 * outside a scan (loading databases) errors and warnings are logged. */
static void
flt_av_clmsg(enum cl_msg severity, const char *fullmsg, const char *msg,
             void *context)
{
    struct flt_av_scan *sc = context;
    size_t n;

    (void)fullmsg;
    if (severity != CL_MSG_ERROR && severity != CL_MSG_WARN)
        return;
    if (msg == NULL)
        return;
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        n--;
    if (sc != NULL) {
        if (severity == CL_MSG_ERROR && sc->libmsg[0] == '\0')
            flt_av_printable(msg, n, sizeof(sc->libmsg) - 8, sc->libmsg,
                             sizeof(sc->libmsg));
        return;
    }
    log_msg(severity == CL_MSG_ERROR ? LOG_ERR : LOG_WARNING, NULL,
            "libclamav: %.*s", (int)n, msg);
}

static void
flt_av_once_init(void)
{
    cl_set_clcb_msg(flt_av_clmsg);
    flt_av_once_rc = cl_init(CL_INIT_DEFAULT);
}

/* flt_av_meta - each member of an archive (not the parts of the mail,
 * which the GMime walk checks with properly decoded names). */
static cl_error_t
flt_av_meta(const char *container_type, unsigned long fsize_container,
            const char *filename, unsigned long fsize_real, int is_encrypted,
            unsigned int filepos_container, void *context)
{
    struct flt_av_scan *sc = context;
    struct err e;
    size_t len;

    (void)fsize_container;
    (void)is_encrypted;
    (void)filepos_container;
    if (sc == NULL || container_type == NULL ||
        strcmp(container_type, "CL_TYPE_MAIL") == 0)
        return CL_CLEAN;
    if (sc->max_file_size > 0 &&
        (unsigned long long)fsize_real >
            (unsigned long long)sc->max_file_size &&
        sc->big[0] == '\0') {
        char p[FLT_AV_PRINT_MAX + 8];

        snprintf(sc->big, sizeof(sc->big),
                 "max_file_size exceeded by archive member \"%s\" (%lu "
                 "octets)",
                 flt_av_printable(filename ? filename : "",
                                  filename ? strlen(filename) : 0,
                                  FLT_AV_PRINT_MAX, p, sizeof(p)),
                 fsize_real);
    }
    if (filename == NULL || filename[0] == '\0' ||
        sc->nnames >= FLT_AV_NAMES_MAX)
        return CL_CLEAN;
    len = strnlen(filename, FLT_AV_NAME_MAX);
    if (flt_av_buf_has(&sc->names, filename))
        return CL_CLEAN;
    if (buf_append(&sc->names, filename, len, &e) == 0 &&
        buf_putc(&sc->names, 0, &e) == 0)
        sc->nnames++;
    return CL_CLEAN;
}

/* flt_av_inspect - the file type of every layer, for banned_types. */
static cl_error_t
flt_av_inspect(int fd, const char *type, const char **ancestors,
               size_t parent_file_size, const char *file_name,
               size_t file_size, const char *file_buffer,
               uint32_t recursion_level, uint32_t layer_attributes,
               void *context)
{
    struct flt_av_scan *sc = context;
    struct err e;

    (void)fd;
    (void)ancestors;
    (void)parent_file_size;
    (void)file_name;
    (void)file_size;
    (void)file_buffer;
    (void)recursion_level;
    (void)layer_attributes;
    if (sc == NULL || type == NULL || sc->ntypes >= FLT_AV_TYPES_MAX ||
        flt_av_buf_has(&sc->types, type))
        return CL_CLEAN;
    if (buf_puts(&sc->types, type, &e) == 0 &&
        buf_putc(&sc->types, 0, &e) == 0)
        sc->ntypes++;
    return CL_CLEAN;
}

/* ------------------------------------------------------------- engine */

/* flt_av_engine_new - load database_directory and compile an engine with
 * the stage's limits and callbacks. NULL with e set on failure. */
static struct cl_engine *
flt_av_engine_new(const struct flt_av *fa, unsigned *sigs, struct err *e)
{
    struct cl_engine *en;
    struct dirent *de;
    cl_error_t rc;
    DIR *d;

    *sigs = 0;
    /* A precise reason for the common mistakes before libclamav's own. */
    if ((d = opendir(fa->dbdir)) == NULL) {
        err_sys(e, ERR_CONFIG, "%s", fa->dbdir);
        return NULL;
    }
    while ((de = readdir(d)) != NULL && de->d_name[0] == '.')
        ;
    closedir(d);
    if (de == NULL) {
        err_set(e, ERR_CONFIG,
                "%s: no signatures in it (point it at freshclam's "
                "DatabaseDirectory, /var/lib/clamav)",
                fa->dbdir);
        return NULL;
    }
    if ((en = cl_engine_new()) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (fa->tmpdir != NULL &&
        (rc = cl_engine_set_str(en, CL_ENGINE_TMPDIR, fa->tmpdir)) !=
            CL_SUCCESS) {
        err_set(e, ERR_LIB, "temporary_directory %s: %s", fa->tmpdir,
                cl_strerror(rc));
        goto fail;
    }
    if ((rc = cl_load(fa->dbdir, en, sigs, CL_DB_STDOPT)) != CL_SUCCESS) {
        err_set(e, ERR_CONFIG, "%s: libclamav cannot load it: %s", fa->dbdir,
                cl_strerror(rc));
        goto fail;
    }
    if (*sigs == 0) {
        err_set(e, ERR_CONFIG,
                "%s: no signatures in it (point it at freshclam's "
                "DatabaseDirectory, /var/lib/clamav)",
                fa->dbdir);
        goto fail;
    }
    if ((rc = cl_engine_set_num(en, CL_ENGINE_MAX_SCANSIZE,
                                fa->max_scan_size)) != CL_SUCCESS ||
        (rc = cl_engine_set_num(en, CL_ENGINE_MAX_FILESIZE,
                                fa->max_file_size)) != CL_SUCCESS ||
        (rc = cl_engine_set_num(en, CL_ENGINE_MAX_RECURSION,
                                fa->max_recursion)) != CL_SUCCESS ||
        (rc = cl_engine_set_num(en, CL_ENGINE_MAX_FILES, fa->max_files)) !=
            CL_SUCCESS ||
        (rc = cl_engine_set_num(en, CL_ENGINE_MAX_SCANTIME,
                                fa->max_scan_time)) != CL_SUCCESS) {
        err_set(e, ERR_LIB, "setting the scan limits: %s", cl_strerror(rc));
        goto fail;
    }
    /* The archive callback also watches max_file_size, so it is always
     * on; the per-layer one only when a CL_TYPE_* is banned. */
    cl_engine_set_clcb_meta(en, flt_av_meta);
    if (fa->want_types)
        cl_engine_set_clcb_file_inspection(en, flt_av_inspect);
    if ((rc = cl_engine_compile(en)) != CL_SUCCESS) {
        err_set(e, ERR_LIB, "%s: compiling the engine: %s", fa->dbdir,
                cl_strerror(rc));
        goto fail;
    }
    return en;

fail:
    cl_engine_free(en);
    return NULL;
}

/* The names libclamav's cl_load() reads from a database directory. */
static const char *const flt_av_db_suffixes[] = {
    ".cvd",  ".cld", ".cud", ".db",  ".hdb",  ".hdu", ".hsb",  ".hsu",
    ".mdb",  ".mdu", ".msb", ".msu", ".ndb",  ".ndu", ".ldb",  ".ldu",
    ".sdb",  ".zmd", ".rmd", ".pdb", ".gdb",  ".wdb", ".cbc",  ".ftm",
    ".cfg",  ".cdb", ".cat", ".crb", ".idb",  ".ioc", ".yar",  ".yara",
    ".pwdb", ".fp",  ".sfp", ".ign", ".ign2", ".imp", ".info", NULL};

static int
flt_av_is_db_name(const char *name)
{
    size_t n = strlen(name), k, i;

    for (i = 0; flt_av_db_suffixes[i] != NULL; i++) {
        k = strlen(flt_av_db_suffixes[i]);
        if (n > k && strcmp(name + n - k, flt_av_db_suffixes[i]) == 0)
            return 1;
    }
    return 0;
}

/* flt_av_db_check - for a chain that is only checked ("relaychain
 * check", which the unit runs before every start): database_directory
 * can be read and holds at least one non-empty signature file, and every
 * signature file in it can be read, without loading any: compiling an
 * engine takes seconds and hundreds of megabytes next to the daemon's
 * own. Errors read as flt_av_engine_new()'s do; what only libclamav's
 * parser finds (a corrupt signature line) is left to it. */
static int
flt_av_db_check(const struct flt_av *fa, struct err *e)
{
    struct dirent *de;
    unsigned found = 0;
    DIR *d;

    if ((d = opendir(fa->dbdir)) == NULL)
        return err_sys(e, ERR_CONFIG, "%s", fa->dbdir);
    while ((de = readdir(d)) != NULL) {
        char path[4096], one;
        struct stat sb;
        int fd;

        if (de->d_name[0] == '.' || !flt_av_is_db_name(de->d_name))
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", fa->dbdir,
                             de->d_name) >= sizeof(path))
            continue;
        if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
            err_sys(e, ERR_CONFIG, "%s", path);
            closedir(d);
            return -1;
        }
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) {
            close(fd);
            continue;
        }
        if (read(fd, &one, 1) != 1) {
            err_sys(e, ERR_CONFIG, "%s: read", path);
            close(fd);
            closedir(d);
            return -1;
        }
        close(fd);
        found++;
    }
    closedir(d);
    if (found == 0)
        return err_set(e, ERR_CONFIG,
                       "%s: no signatures in it (point it at freshclam's "
                       "DatabaseDirectory, /var/lib/clamav)",
                       fa->dbdir);
    return 0;
}

/* flt_av_engine_hold - a reference to the current engine, or NULL when
 * none is loaded; release it with cl_engine_free(). */
static struct cl_engine *
flt_av_engine_hold(struct flt_av *fa)
{
    struct cl_engine *en;

    pthread_mutex_lock(&fa->lock);
    en = fa->engine;
    if (en != NULL && cl_engine_addref(en) != CL_SUCCESS)
        en = NULL;
    pthread_mutex_unlock(&fa->lock);
    return en;
}

/* flt_av_engine_swap - make en current; the old engine's reference is
 * dropped, so it is freed when the last scan using it ends. */
static void
flt_av_engine_swap(struct flt_av *fa, struct cl_engine *en, unsigned sigs)
{
    struct cl_engine *old;

    pthread_mutex_lock(&fa->lock);
    old = fa->engine;
    fa->engine = en;
    fa->sigs = sigs;
    pthread_mutex_unlock(&fa->lock);
    if (old != NULL)
        cl_engine_free(old);
}

static void
flt_av_log_loaded(const struct flt_av *fa, const struct cl_engine *en,
                  unsigned sigs, const char *how)
{
    int err = 0;
    long long ver = cl_engine_get_num(en, CL_ENGINE_DB_VERSION, &err);

    log_info(NULL,
             "%s: %s %u signatures from %s (libclamav %s, database version "
             "%lld)",
             fa->stage_name, how, sigs, fa->dbdir, cl_retver(),
             err == 0 ? ver : 0);
}

/* flt_av_check_dir - one look of the watcher: when the directory changed
 * (or no engine is loaded yet), compile a new engine and swap it in. */
static void
flt_av_check_dir(struct flt_av *fa)
{
    struct cl_engine *en;
    unsigned sigs;
    struct err e;
    int changed, loaded;

    pthread_mutex_lock(&fa->lock);
    loaded = fa->engine != NULL;
    pthread_mutex_unlock(&fa->lock);
    changed = !fa->have_stat || cl_statchkdir(&fa->dbstat) != 0;
    if (!changed && loaded)
        return;
    if (!changed && !loaded) {
        /* Waiting for the first databases: nothing new to try. */
        return;
    }
    /* The new snapshot is taken before the load, so a change made while
     * it runs is seen at the next look. */
    if (fa->have_stat)
        cl_statfree(&fa->dbstat);
    fa->have_stat = cl_statinidir(fa->dbdir, &fa->dbstat) == CL_SUCCESS;
    err_clear(&e);
    if ((en = flt_av_engine_new(fa, &sigs, &e)) == NULL) {
        log_error(NULL, "%s: signature reload failed, %s: %s", fa->stage_name,
                  loaded ? "keeping the loaded engine"
                         : "mail stays tempfailed",
                  e.text);
        return;
    }
    flt_av_engine_swap(fa, en, sigs);
    flt_av_log_loaded(fa, en, sigs, "reloaded");
}

static void *
flt_av_watch(void *arg)
{
    struct flt_av *fa = arg;
    struct timespec ts;
    long long until;
    int stop;

    for (;;) {
        until = flt_av_now_ms() + fa->interval_ms;
        pthread_mutex_lock(&fa->lock);
        while (!fa->stop && flt_av_now_ms() < until) {
            ts.tv_sec = (time_t)(until / 1000);
            ts.tv_nsec = (long)(until % 1000) * 1000000;
            pthread_cond_timedwait(&fa->cond, &fa->lock, &ts);
        }
        stop = fa->stop;
        pthread_mutex_unlock(&fa->lock);
        if (stop)
            break;
        flt_av_check_dir(fa);
    }
    return NULL;
}

/* --------------------------------------------------------------- scan */

static void
flt_av_scan_init(struct flt_av_scan *sc, const struct flt_av *fa)
{
    memset(sc, 0, sizeof(*sc));
    sc->max_file_size = fa->max_file_size;
    buf_init(&sc->names, FLT_AV_NAMES_MAX * (FLT_AV_NAME_MAX + 1));
    buf_init(&sc->types, FLT_AV_TYPES_MAX * 64);
}

static void
flt_av_scan_fini(struct flt_av_scan *sc)
{
    buf_fini(&sc->names);
    buf_fini(&sc->types);
}

static int
flt_av_libclamav_scan(struct flt_av *fa, struct flt_av_scan *sc,
                      const char *data, size_t len, struct flt_av_result *r,
                      struct err *e)
{
    struct cl_scan_options opts;
    const char *virname = NULL;
    unsigned long scanned = 0;
    struct cl_engine *en;
    cl_fmap_t *map;
    cl_error_t rc;

    if ((en = flt_av_engine_hold(fa)) == NULL)
        return err_set(e, ERR_TEMP,
                       "no signature database loaded from %s "
                       "(missing_database = tempfail)",
                       fa->dbdir);
    if ((map = cl_fmap_open_memory(data, len)) == NULL) {
        cl_engine_free(en);
        return err_nomem(e);
    }
    memset(&opts, 0, sizeof(opts));
    opts.general = CL_SCAN_GENERAL_HEURISTICS;
    opts.parse = ~0u;
    opts.heuristic =
        CL_SCAN_HEURISTIC_EXCEEDS_MAX | CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE;
    sc->libmsg[0] = '\0';
    rc = cl_scanmap_callback(map, NULL, &virname, &scanned, en, &opts, sc);
    cl_fmap_close(map);
    switch (rc) {
    case CL_CLEAN:
        r->status = FLT_ANTIVIRUS_CLEAN;
        break;
    case CL_VIRUS:
        r->status = (enum flt_antivirus_status)flt_antivirus_classify(
            virname ? virname : "unknown", 0, r->what, sizeof(r->what));
        break;
    case CL_ETIMEOUT:
        r->status = FLT_ANTIVIRUS_TIMEOUT;
        snprintf(r->what, sizeof(r->what), "max_scan_time exceeded");
        break;
    case CL_EFORMAT:
    case CL_EPARSE:
    case CL_EUNPACK:
    case CL_EMAXREC:
    case CL_EMAXSIZE:
    case CL_EMAXFILES:
        r->status = FLT_ANTIVIRUS_UNCHECKED;
        snprintf(r->what, sizeof(r->what), "libclamav: %s", cl_strerror(rc));
        break;
    default:
        cl_engine_free(en);
        return err_set(e, rc == CL_EMEM ? ERR_NOMEM : ERR_TEMP,
                       "libclamav scan failed: %s%s%s", cl_strerror(rc),
                       sc->libmsg[0] ? ": " : "", sc->libmsg);
    }
    cl_engine_free(en);
    return 0;
}

/* -------------------------------------------------------------- clamd */

/* flt_av_clamd_addr - parse clamd_socket into fa->clamd_addr. */
static int
flt_av_clamd_addr(struct flt_av *fa, const struct cfg *c, const char *spec,
                  struct err *e)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    const char *p, *colon;
    int rc;

    memset(&fa->clamd_addr, 0, sizeof(fa->clamd_addr));
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&fa->clamd_addr;

        p = spec + 5;
        if (p[0] != '/' || strlen(p) >= sizeof(sun->sun_path))
            return cfg_err(e, c, "clamd_socket",
                           "'%s': want an absolute socket path of at most "
                           "%zu octets",
                           p, sizeof(sun->sun_path) - 1);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, p, strlen(p) + 1);
        fa->clamd_addrlen = sizeof(*sun);
        return 0;
    }
    if (strncmp(spec, "tcp:", 4) != 0)
        return cfg_err(e, c, "clamd_socket",
                       "'%s': want unix:/path or tcp:host:port", spec);
    p = spec + 4;
    if (p[0] == '[') {
        const char *close = strchr(p, ']');

        if (close == NULL || close[1] != ':' ||
            (size_t)(close - p - 1) >= sizeof(host))
            return cfg_err(e, c, "clamd_socket", "'%s': bad address", spec);
        memcpy(host, p + 1, (size_t)(close - p - 1));
        host[close - p - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof(host))
            return cfg_err(e, c, "clamd_socket", "'%s': want tcp:host:port",
                           spec);
        memcpy(host, p, (size_t)(colon - p));
        host[colon - p] = '\0';
    }
    /* getaddrinfo() would take 99999 as 99999 modulo 65536. */
    if (snprintf(port, sizeof(port), "%s", colon + 1) >= (int)sizeof(port) ||
        port[0] == '\0' || strspn(port, "0123456789") != strlen(port) ||
        strlen(port) > 5 || strtol(port, NULL, 10) < 1 ||
        strtol(port, NULL, 10) > 65535)
        return cfg_err(e, c, "clamd_socket",
                       "'%s': bad port (want 1 to 65535)", spec);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
        return cfg_err(e, c, "clamd_socket", "'%s': %s", spec,
                       gai_strerror(rc));
    if (res->ai_addrlen > sizeof(fa->clamd_addr)) {
        freeaddrinfo(res);
        return cfg_err(e, c, "clamd_socket", "'%s': address too long", spec);
    }
    memcpy(&fa->clamd_addr, res->ai_addr, res->ai_addrlen);
    fa->clamd_addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* flt_av_wait - poll fd for events until the deadline; returns revents,
 * 0 on timeout, -1 on a poll error. */
static int
flt_av_wait(int fd, short events, long long deadline)
{
    struct pollfd pfd;
    long long left;
    int rc;

    for (;;) {
        left = deadline - flt_av_now_ms();
        if (left <= 0)
            return 0;
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -1;
        if (rc > 0)
            return pfd.revents;
    }
}

/* flt_av_send - send all of p unless clamd answers first. Returns 0 when
 * sent, 1 when an answer (or the end of the connection) is waiting to be
 * read, -1 with e set. */
static int
flt_av_send(const struct flt_av *fa, int fd, const void *p, size_t n,
            long long deadline, struct err *e)
{
    const char *s = p;
    ssize_t k;
    int ev;

    while (n > 0) {
        ev = flt_av_wait(fd, POLLOUT | POLLIN, deadline);
        if (ev == 0)
            return err_set(e, ERR_TEMP, "clamd %s: timed out sending",
                           fa->clamd_spec);
        if (ev < 0)
            return err_sys(e, ERR_TEMP, "clamd %s: poll", fa->clamd_spec);
        if (ev & (POLLIN | POLLHUP))
            return 1;
        k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
            return 1; /* clamd closed: its answer may be waiting */
        if (k < 0)
            return err_sys(e, ERR_TEMP, "clamd %s: send", fa->clamd_spec);
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/*
 * flt_antivirus_clamd_reply - read one clamd INSTREAM answer (without its
 * final NUL or newline) into r. Returns 0, or -1 with e set for an error
 * answer. Exported for the fuzzer.
 */
int
flt_antivirus_clamd_reply(const char *reply, size_t len,
                          enum flt_antivirus_status *status, char *what,
                          size_t wn, struct err *e)
{
    static const char found[] = " FOUND";
    char p[FLT_AV_REPLY_MAX + 8], name[FLT_AV_WHAT_MAX];
    const char *s = reply;
    size_t n = len;

    while (n > 0 && (s[n - 1] == '\0' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    flt_av_printable(s, n, FLT_AV_REPLY_MAX, p, sizeof(p));
    if (n == 0)
        return err_set(e, ERR_TEMP,
                       "clamd closed the connection without an "
                       "answer");
    if (memchr(s, '\0', n) != NULL)
        return err_set(e, ERR_TEMP, "clamd answer holds a NUL: \"%s\"", p);
    if (n >= 10 && strncasecmp(s + n - 6, " ERROR", 6) == 0) {
        /* clamd's StreamMaxLength: the message was not scanned whole. */
        if (n >= 19 && (memmem(s, n, "size limit exceeded", 19) != NULL ||
                        memmem(s, n, "Size limit reached", 18) != NULL)) {
            *status = FLT_ANTIVIRUS_UNCHECKED;
            snprintf(what, wn, "clamd StreamMaxLength exceeded");
            return 0;
        }
        return err_set(e, ERR_TEMP, "clamd: %s", p);
    }
    if (n < 8 || strncmp(s, "stream: ", 8) != 0)
        return err_set(e, ERR_TEMP, "clamd: unexpected answer \"%s\"", p);
    s += 8;
    n -= 8;
    if (n == 2 && memcmp(s, "OK", 2) == 0) {
        *status = FLT_ANTIVIRUS_CLEAN;
        what[0] = '\0';
        return 0;
    }
    if (n > sizeof(found) - 1 &&
        memcmp(s + n - (sizeof(found) - 1), found, sizeof(found) - 1) == 0) {
        n -= sizeof(found) - 1;
        if (n == 0 || n >= sizeof(name))
            return err_set(e, ERR_TEMP, "clamd: unexpected answer \"%s\"", p);
        memcpy(name, s, n);
        name[n] = '\0';
        *status = (enum flt_antivirus_status)flt_antivirus_classify(name, 1,
                                                                    what, wn);
        return 0;
    }
    return err_set(e, ERR_TEMP, "clamd: unexpected answer \"%s\"", p);
}

static int
flt_av_clamd_scan(const struct flt_av *fa, const char *data, size_t len,
                  struct flt_av_result *r, struct err *e)
{
    static const char cmd[] = "zINSTREAM"; /* sent with its NUL */
    long long deadline = flt_av_now_ms() + fa->clamd_timeout;
    char reply[FLT_AV_REPLY_MAX + 1];
    size_t got = 0, off, n;
    uint32_t hdr;
    int fd, rc, ev, soerr;
    socklen_t sl = sizeof(soerr);
    ssize_t k;

    fd = socket(fa->clamd_addr.ss_family,
                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_sys(e, ERR_TEMP, "clamd %s: socket", fa->clamd_spec);
    if (connect(fd, (const struct sockaddr *)&fa->clamd_addr,
                fa->clamd_addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            err_sys(e, ERR_TEMP, "clamd %s: connect", fa->clamd_spec);
            goto fail;
        }
        ev = flt_av_wait(fd, POLLOUT, deadline);
        if (ev <= 0) {
            err_set(e, ERR_TEMP, "clamd %s: connect timed out",
                    fa->clamd_spec);
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ||
            soerr != 0) {
            errno = soerr;
            err_sys(e, ERR_TEMP, "clamd %s: connect", fa->clamd_spec);
            goto fail;
        }
    }
    rc = flt_av_send(fa, fd, cmd, sizeof(cmd), deadline, e);
    for (off = 0; rc == 0 && off < len; off += n) {
        n = len - off < FLT_AV_CHUNK ? len - off : FLT_AV_CHUNK;
        hdr = htonl((uint32_t)n);
        rc = flt_av_send(fa, fd, &hdr, sizeof(hdr), deadline, e);
        if (rc == 0)
            rc = flt_av_send(fa, fd, data + off, n, deadline, e);
    }
    if (rc == 0) {
        hdr = 0;
        rc = flt_av_send(fa, fd, &hdr, sizeof(hdr), deadline, e);
    }
    if (rc < 0)
        goto fail;
    /* The answer ends with a NUL (z-command) or at the end of the
     * connection. */
    while (got < FLT_AV_REPLY_MAX &&
           (got == 0 || memchr(reply, '\0', got) == NULL)) {
        ev = flt_av_wait(fd, POLLIN, deadline);
        if (ev == 0) {
            err_set(e, ERR_TEMP, "clamd %s: no answer within clamd_timeout",
                    fa->clamd_spec);
            goto fail;
        }
        if (ev < 0) {
            err_sys(e, ERR_TEMP, "clamd %s: poll", fa->clamd_spec);
            goto fail;
        }
        k = recv(fd, reply + got, FLT_AV_REPLY_MAX - got, 0);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k < 0 && errno != ECONNRESET) {
            err_sys(e, ERR_TEMP, "clamd %s: recv", fa->clamd_spec);
            goto fail;
        }
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    reply[got] = '\0';
    if (memchr(reply, '\0', got) != NULL)
        got = strlen(reply);
    if (flt_antivirus_clamd_reply(reply, got, &r->status, r->what,
                                  sizeof(r->what), e) < 0) {
        err_prefix(e, "%s", fa->clamd_spec);
        return -1;
    }
    return 0;

fail:
    close(fd);
    return -1;
}

/* ---------------------------------------------------- ambiguous MIME */

/*
 * flt_antivirus_boundaries - the distinct boundary parameter values in s
 * (n octets), at most max of them, each NUL-terminated in out[i] (values
 * longer than FLT_AV_BOUNDARY_MAX octets, or holding a quote, backslash
 * or control octet, are skipped). Returns how many. Exported for the
 * fuzzer.
 */
size_t
flt_antivirus_boundaries(const char *s, size_t n,
                         char (*out)[FLT_ANTIVIRUS_BOUNDARY_SIZE], size_t max)
{
    static const char key[] = "boundary";
    size_t i = 0, count = 0, j, start, len;
    int quoted, ok;

    while (count < max && i + sizeof(key) - 1 < n) {
        if (strncasecmp(s + i, key, sizeof(key) - 1) != 0) {
            i++;
            continue;
        }
        i += sizeof(key) - 1;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= n || s[i] != '=')
            continue;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        quoted = i < n && s[i] == '"';
        if (quoted)
            i++;
        start = i;
        ok = 1;
        while (i < n) {
            unsigned char c = (unsigned char)s[i];

            if (quoted ? c == '"'
                       : (c == ';' || c == ' ' || c == '\t' || c == '"'))
                break;
            if (c < 0x20 || c == 0x7f || c == '\\')
                ok = 0;
            if (c == '\r' || c == '\n')
                break;
            i++;
        }
        len = i - start;
        if (!ok || len == 0 || len >= FLT_ANTIVIRUS_BOUNDARY_SIZE)
            continue;
        for (j = 0; j < count; j++)
            if (strlen(out[j]) == len && memcmp(out[j], s + start, len) == 0)
                break;
        if (j < count)
            continue;
        memcpy(out[count], s + start, len);
        out[count][len] = '\0';
        count++;
    }
    return count;
}

/* ------------------------------------------------------------ policy */

static int
flt_av_is_allow(const char *result)
{
    return strcasecmp(result, "OK") == 0 || strcasecmp(result, "DUNNO") == 0;
}

/* flt_av_name_check - one attachment or member name against the rules;
 * 1 with ban filled when banned, 0 when not, -1 on a lookup error. */
static int
flt_av_name_check(const struct flt_av *fa, const char *name, const char *where,
                  struct flt_av_ban *ban, struct err *e)
{
    char norm[FLT_AV_NAME_MAX + 1], p[FLT_AV_PRINT_MAX + 8];
    char why[FLT_AV_PRINT_MAX + 8];
    struct buf res;
    unsigned line = 0;
    size_t len;
    int rc;

    if (fa->banned_names == NULL || name == NULL)
        return 0;
    len = strnlen(name, FLT_AV_NAME_MAX);
    memcpy(norm, name, len);
    norm[len] = '\0';
    /* Windows ignores trailing dots and spaces: "x.exe." runs as x.exe. */
    while (len > 0 && (norm[len - 1] == '.' || norm[len - 1] == ' ' ||
                       norm[len - 1] == '\t'))
        norm[--len] = '\0';
    if (len == 0)
        return 0;
    buf_init(&res, FLT_AV_WHAT_MAX);
    rc = regmap_lookup(fa->banned_names, norm, &res, &line, e);
    if (rc < 0) {
        buf_fini(&res);
        err_prefix(e, "banned_filename_rules");
        return -1;
    }
    if (rc == 0 || flt_av_is_allow(buf_str(&res))) {
        buf_fini(&res);
        return 0;
    }
    flt_av_printable(buf_str(&res), res.len, FLT_AV_PRINT_MAX, why,
                     sizeof(why));
    buf_fini(&res);
    ban->banned = 1;
    snprintf(ban->what, sizeof(ban->what), "%s \"%s\": %s", where,
             flt_av_printable(norm, len, FLT_AV_PRINT_MAX, p, sizeof(p)), why);
    snprintf(ban->rule, sizeof(ban->rule), "%s:%u",
             regmap_path(fa->banned_names), line);
    return 1;
}

/* flt_av_type_check - a MIME type ("type/subtype", lower case) or a
 * libclamav type ("CL_TYPE_...") against banned_types. */
static int
flt_av_type_check(const struct flt_av *fa, const char *type,
                  struct flt_av_ban *ban)
{
    const char *slash;
    size_t i, k;

    for (i = 0; i < fa->nbanned_types; i++) {
        const char *b = fa->banned_types[i];

        k = strlen(b);
        if (k >= 2 && strcmp(b + k - 2, "/*") == 0) {
            slash = strchr(type, '/');
            if (slash == NULL || (size_t)(slash - type) != k - 2 ||
                strncasecmp(type, b, k - 2) != 0)
                continue;
        } else if (strcasecmp(type, b) != 0) {
            continue;
        }
        ban->banned = 1;
        snprintf(ban->what, sizeof(ban->what), "type %.*s", FLT_AV_PRINT_MAX,
                 b);
        snprintf(ban->rule, sizeof(ban->rule), "banned_types");
        return 1;
    }
    return 0;
}

/* flt_av_walk - the leaves of the shared parse: declared types and
 * names. Returns 1 when banned, 0 when not, -1 on error. */
static int
flt_av_walk(const struct flt_av *fa, GMimeObject *obj, unsigned depth,
            struct flt_av_ban *ban, struct err *e)
{
    GMimeContentType *ct;
    char type[256];
    const char *a, *b;
    int i, n, rc;

    if (obj == NULL || depth > FLT_AV_DEPTH_MAX)
        return 0;
    if (fa->nbanned_types > 0 &&
        (ct = g_mime_object_get_content_type(obj)) != NULL) {
        a = g_mime_content_type_get_media_type(ct);
        b = g_mime_content_type_get_media_subtype(ct);
        snprintf(type, sizeof(type), "%s/%s", a ? a : "", b ? b : "");
        if (flt_av_type_check(fa, type, ban))
            return 1;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        for (i = 0; i < n; i++)
            if ((rc = flt_av_walk(
                     fa, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i),
                     depth + 1, ban, e)) != 0)
                return rc;
        return 0;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner =
            g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

        return inner ? flt_av_walk(fa, g_mime_message_get_mime_part(inner),
                                   depth + 1, ban, e)
                     : 0;
    }
    /* Both names: readers differ in which one they show or save. */
    a = g_mime_object_get_content_disposition_parameter(obj, "filename");
    b = g_mime_object_get_content_type_parameter(obj, "name");
    if ((rc = flt_av_name_check(fa, a, "name", ban, e)) != 0)
        return rc;
    if (b != NULL && (a == NULL || strcmp(a, b) != 0))
        return flt_av_name_check(fa, b, "name", ban, e);
    return 0;
}

/* flt_av_policy - banned names and types: the shared parse, then what
 * libclamav saw inside archives. */
static int
flt_av_policy(const struct flt_av *fa, struct msg *m,
              const struct flt_av_scan *sc, struct flt_av_ban *ban,
              struct err *e)
{
    const struct mime *mm;
    size_t off, len;
    int rc;

    if (fa->banned_names == NULL && fa->nbanned_types == 0)
        return 0;
    if ((mm = msg_mime(m, e)) == NULL)
        return -1;
    rc = flt_av_walk(fa, g_mime_message_get_mime_part(mime_message(mm)), 0,
                     ban, e);
    if (rc != 0)
        return rc;
    for (off = 0; off < sc->names.len; off += len + 1) {
        len = strlen(sc->names.data + off);
        if ((rc = flt_av_name_check(fa, sc->names.data + off, "archive member",
                                    ban, e)) != 0)
            return rc;
    }
    for (off = 0; off < sc->types.len; off += len + 1) {
        len = strlen(sc->types.data + off);
        if (strncmp(sc->types.data + off, "CL_TYPE_", 8) == 0 &&
            flt_av_type_check(fa, sc->types.data + off, ban))
            return 1;
    }
    return 0;
}

/* -------------------------------------------------------------- notice */

static void
flt_av_notify(const struct stage *st, const struct flt_av *fa,
              const struct msg *m, const char *verdict, const char *what)
{
    const struct msg_env *env = msg_env(m);
    char p[FLT_AV_REPLY_MAX], date[64];
    struct stage_reply r;
    const char *subj;
    struct buf b;
    struct err e;
    time_t now = time(NULL);
    struct tm tm;
    size_t i;

    err_clear(&e);
    buf_init(&b, FLT_AV_NOTICE_MAX);
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_printf(&b, &e,
               "From: relaychain antivirus <MAILER-DAEMON@%s>\r\n"
               "To: <%s>\r\n"
               "Subject: %s: %s\r\n"
               "Date: %s\r\n"
               "Message-ID: <%s.%lld.antivirus@%s>\r\n"
               "Auto-Submitted: auto-generated\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n"
               "\r\n"
               "The %s stage stopped a message; it is not attached.\r\n"
               "\r\n"
               "Queue ID:   %s\r\n"
               "Verdict:    %s\r\n"
               "Found:      %s\r\n",
               fa->hostname, fa->notify_admin, verdict, what, date, msg_qid(m),
               (long long)now, fa->hostname, st->name, msg_qid(m), verdict,
               what);
    buf_printf(&b, &e, "Sender:     <%s> (envelope; it may be forged)\r\n",
               flt_av_printable(env->sender ? env->sender : "",
                                env->sender ? strlen(env->sender) : 0,
                                ADDR_MAX, p, sizeof(p)));
    for (i = 0; i < env->nrcpts && i < FLT_AV_NOTICE_RCPTS; i++)
        buf_printf(
            &b, &e, "%s<%s>\r\n", i == 0 ? "Recipients: " : "            ",
            flt_av_printable(env->rcpts[i].addr, strlen(env->rcpts[i].addr),
                             ADDR_MAX, p, sizeof(p)));
    if (env->nrcpts > FLT_AV_NOTICE_RCPTS)
        buf_printf(&b, &e, "            and %zu more\r\n",
                   env->nrcpts - FLT_AV_NOTICE_RCPTS);
    buf_printf(&b, &e, "Client:     %s [%s]%s%s\r\n",
               env->client_name ? env->client_name : "unknown",
               env->client_addr ? env->client_addr : "unknown",
               env->auth_user ? ", authenticated as " : "",
               env->auth_user ? env->auth_user : "");
    if ((subj = msg_header_get(m, "Subject", 1)) != NULL)
        buf_printf(&b, &e, "Subject:    %s\r\n",
                   flt_av_printable(subj, strlen(subj), 200, p, sizeof(p)));
    if (e.code != ERR_NONE) {
        log_warning(msg_qid(m), "%s: notice to %s not sent: %s", st->name,
                    fa->notify_admin, e.text);
        buf_fini(&b);
        return;
    }
    if (st->env->notify(fa->notify, fa->notify_admin, &b, &r) == 0)
        log_info(msg_qid(m), "%s: notice sent to %s (%d %s)", st->name,
                 fa->notify_admin, r.code, r.text);
    else
        log_warning(msg_qid(m), "%s: notice to %s not sent: %d %s", st->name,
                    fa->notify_admin, r.code, r.text);
    buf_fini(&b);
}

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

static int
flt_av_init_libclamav(struct flt_av *fa, const struct cfg *c, struct err *e)
{
    struct cl_engine *en;
    unsigned sigs = 0;
    struct err le;

    if (fa->check_only) {
        if ((fa->dbdir = strdup(cfg_str(c, "database_directory"))) == NULL)
            return err_nomem(e);
        err_clear(&le);
        if (flt_av_db_check(fa, &le) < 0) {
            if (cfg_enum(c, "missing_database") == 0)
                return cfg_err(e, c, "database_directory", "%s", le.text);
            log_warning(NULL,
                        "%s: %s; mail would be tempfailed until it loads "
                        "(missing_database = tempfail)",
                        fa->stage_name, le.text);
        } else
            log_info(NULL,
                     "%s: signature files in %s can be read (checked, not "
                     "compiled)",
                     fa->stage_name, fa->dbdir);
        return 0;
    }
    pthread_once(&flt_av_once, flt_av_once_init);
    if (flt_av_once_rc != CL_SUCCESS)
        return err_set(e, ERR_LIB, "cl_init: %s", cl_strerror(flt_av_once_rc));
    if ((fa->dbdir = strdup(cfg_str(c, "database_directory"))) == NULL ||
        (cfg_str(c, "temporary_directory") != NULL &&
         (fa->tmpdir = strdup(cfg_str(c, "temporary_directory"))) == NULL))
        return err_nomem(e);
    fa->max_scan_size = cfg_num(c, "max_scan_size");
    fa->max_file_size = cfg_num(c, "max_file_size");
    fa->max_recursion = cfg_num(c, "max_recursion");
    fa->max_files = cfg_num(c, "max_files");
    fa->max_scan_time = cfg_num(c, "max_scan_time");
    fa->interval_ms = cfg_num(c, "database_check_interval");
    snprintf(fa->scanned_by, sizeof(fa->scanned_by),
             "relaychain antivirus (libclamav %s)", cl_retver());

    /* The snapshot first: a change during the load is seen later. */
    fa->have_stat = cl_statinidir(fa->dbdir, &fa->dbstat) == CL_SUCCESS;
    err_clear(&le);
    if ((en = flt_av_engine_new(fa, &sigs, &le)) == NULL) {
        if (cfg_enum(c, "missing_database") == 0)
            return cfg_err(e, c, "database_directory", "%s", le.text);
        log_error(NULL,
                  "%s: %s; mail is tempfailed until it loads "
                  "(missing_database = tempfail)",
                  fa->stage_name, le.text);
    } else {
        fa->engine = en;
        fa->sigs = sigs;
        flt_av_log_loaded(fa, en, sigs, "loaded");
    }
    if (fa->interval_ms > 0) {
        pthread_condattr_t ca;

        if (pthread_condattr_init(&ca) != 0)
            return err_nomem(e);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (pthread_cond_init(&fa->cond, &ca) != 0) {
            pthread_condattr_destroy(&ca);
            return err_nomem(e);
        }
        pthread_condattr_destroy(&ca);
        fa->have_cond = 1;
        if ((errno = pthread_create(&fa->thread, NULL, flt_av_watch, fa)) != 0)
            return err_sys(e, ERR_TEMP, "starting the database watcher");
        fa->have_thread = 1;
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
    fa->kind = cfg_enum(c, "engine") == 1 ? FLT_AV_CLAMD : FLT_AV_LIBCLAMAV;
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
    if (cfg_str(c, "banned_filename_rules") != NULL) {
        if ((fa->banned_names = regmap_load(
                 cfg_str(c, "banned_filename_rules"), e)) == NULL) {
            err_prefix(e, "%s:%u: banned_filename_rules", cfg_path(c),
                       cfg_line(c, "banned_filename_rules"));
            goto fail;
        }
        fa->want_meta = 1;
    }
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
            err_prefix(e, "%s:%u: notify_next_hop", cfg_path(c),
                       cfg_line(c, "notify_next_hop"));
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
