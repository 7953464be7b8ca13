/*
 * antivirus_engine - the antivirus stage's libclamav engine
 *
 * The callbacks that collect archive member names and file types during
 * a scan, the compiled engine (one reference held by the stage, one by
 * each scan, swapped under the lock) with the thread that watches the
 * database directory and loads a new engine beside the old one, and the
 * scan of one message. See antivirus.c.
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
#include "util/log.h"
#include "msg/mime.h"
#include "util/regmap.h"

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
struct cl_engine *
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
int
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

void
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

void *
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

void
flt_av_scan_init(struct flt_av_scan *sc, const struct flt_av *fa)
{
    memset(sc, 0, sizeof(*sc));
    sc->max_file_size = fa->max_file_size;
    buf_init(&sc->names, FLT_AV_NAMES_MAX * (FLT_AV_NAME_MAX + 1));
    buf_init(&sc->types, FLT_AV_TYPES_MAX * 64);
}

void
flt_av_scan_fini(struct flt_av_scan *sc)
{
    buf_fini(&sc->names);
    buf_fini(&sc->types);
}

int
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

/* flt_av_db_missing - the database cannot be used (le says why): with
 * missing_database = fail an error for database_directory (-1), else a
 * log line that mail is tempfailed until it loads (0); check-only says
 * it would be. */
static int
flt_av_db_missing(const struct flt_av *fa, const struct cfg *c,
                  const struct err *le, struct err *e)
{
    if ((enum flt_av_missing)cfg_enum(c, "missing_database") ==
        FLT_AV_MISSING_FAIL)
        return cfg_err(e, c, "database_directory", "%s", le->text);
    if (fa->check_only)
        log_warning(NULL,
                    "%s: %s; mail would be tempfailed until it loads "
                    "(missing_database = tempfail)",
                    fa->stage_name, le->text);
    else
        log_error(NULL,
                  "%s: %s; mail is tempfailed until it loads "
                  "(missing_database = tempfail)",
                  fa->stage_name, le->text);
    return 0;
}

int
flt_av_init_libclamav(struct flt_av *fa, const struct cfg *c, struct err *e)
{
    struct cl_engine *en;
    unsigned sigs = 0;
    struct err le;

    if (fa->check_only) {
        if ((fa->dbdir = strdup(cfg_str(c, "database_directory"))) == NULL)
            return err_nomem(e);
        err_clear(&le);
        if (flt_av_db_check(fa, &le) < 0)
            return flt_av_db_missing(fa, c, &le, e);
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
        if (flt_av_db_missing(fa, c, &le, e) < 0)
            return -1;
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
