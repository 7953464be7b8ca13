/*
 * antivirus_int - what the parts of the antivirus stage share
 *
 * The stage is one folder: antivirus.c (the stage type: options, init,
 * run), antivirus_engine.c (libclamav: callbacks, the engine and its
 * database watcher, scanning), antivirus_clamd.c (the clamd client) and
 * antivirus_policy.c (names and heuristics, ambiguous MIME, banned
 * names and types, the admin notice). Nothing here is seen outside the
 * folder but through filters.h.
 */
#ifndef RC_ANTIVIRUS_INT_H
#define RC_ANTIVIRUS_INT_H

#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>

#include <clamav.h>
#include <gmime/gmime.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/regmap.h"
#include "msg/msg.h"
#include "chain/stage.h"
#include "filters/filters.h"

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
/* missing_database: refuse to start, or tempfail mail until it loads */
enum flt_av_missing { FLT_AV_MISSING_FAIL, FLT_AV_MISSING_TEMPFAIL };

/* The choices of on_infected, on_banned and on_unchecked share these. */
enum flt_av_action {
    FLT_AV_REJECT,
    FLT_AV_DISCARD,
    FLT_AV_QUARANTINE,
    FLT_AV_TEMPFAIL,
    FLT_AV_CONTINUE
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

/* antivirus_engine.c */
int flt_av_init_libclamav(struct flt_av *fa, const struct cfg *c,
                          struct err *e);
int flt_av_db_check(const struct flt_av *fa, struct err *e);
struct cl_engine *flt_av_engine_new(const struct flt_av *fa, unsigned *sigs,
                                    struct err *e);
int flt_av_libclamav_scan(struct flt_av *fa, struct flt_av_scan *sc,
                          const char *data, size_t len,
                          struct flt_av_result *r, struct err *e);
void flt_av_log_loaded(const struct flt_av *fa, const struct cl_engine *en,
                       unsigned sigs, const char *how);
void flt_av_scan_fini(struct flt_av_scan *sc);
void flt_av_scan_init(struct flt_av_scan *sc, const struct flt_av *fa);
void *flt_av_watch(void *arg);

/* antivirus_clamd.c */
int flt_av_clamd_addr(struct flt_av *fa, const struct cfg *c, const char *spec,
                      struct err *e);
int flt_av_clamd_scan(const struct flt_av *fa, const char *data, size_t len,
                      struct flt_av_result *r, struct err *e);

/* antivirus_policy.c */
int flt_av_buf_has(const struct buf *b, const char *s);
void flt_av_notify(const struct stage *st, const struct flt_av *fa,
                   const struct msg *m, const char *verdict, const char *what);
long long flt_av_now_ms(void);
int flt_av_policy(const struct flt_av *fa, struct msg *m,
                  const struct flt_av_scan *sc, struct flt_av_ban *ban,
                  struct err *e);
const char *flt_av_printable(const char *s, size_t n, size_t max, char *out,
                             size_t size);

#endif
