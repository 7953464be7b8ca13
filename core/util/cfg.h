/*
 * cfg - Postfix main.cf-style configuration files checked against tables
 *
 * Syntax: "key = value" lines, '#' comments on lines of their own, blank
 * lines ignored, and a line that starts with white space continues the
 * previous value (joined with one space, as in main.cf). Every key must be
 * declared in an option table; values are checked against their type when
 * the file is validated, so a configuration that loads is fully valid.
 *
 * Loading is two steps so that a chain.d file can name its own table:
 * cfg_parse() reads the text (syntax, duplicate keys), cfg_raw() peeks at a
 * value such as "stage", and cfg_validate() checks every key against one
 * or more tables (unknown key, bad value, missing required key). Every
 * failure is "path:line: reason" in the struct err.
 *
 * Types and units:
 *   CFG_SIZE  bytes, with optional k, m, g suffix (powers of 1024)
 *   CFG_TIME  stored in milliseconds; suffix ms, s (default), m, h, d, w
 *   CFG_BOOL  yes/no, true/false, on/off, 1/0
 *   CFG_LIST  items separated by commas and/or white space
 *   CFG_PATH  a file name; relative names are taken relative to the
 *             directory of the file that names them
 *
 * A struct cfg is read-only after cfg_validate() and may be shared by
 * threads. cfg_free() releases it and every string the getters returned.
 */
#ifndef RC_CFG_H
#define RC_CFG_H

#include <stdio.h>
#include <sys/stat.h>

#include "util/err.h"

enum cfg_type {
    CFG_STRING,
    CFG_PATH,
    CFG_INT,
    CFG_SIZE,
    CFG_TIME,
    CFG_BOOL,
    CFG_ENUM,
    CFG_LIST
};

#define CFG_REQUIRED 0x1u

struct cfg_option {
    const char *name;
    enum cfg_type type;
    const char *def;  /* default, as it would be written; NULL: none */
    const char *help; /* one line: "relaychain config --man" makes
                         the entry of a key relaychain.conf(5)
                         lacks from it (core/cli/confdoc.h) */
    const char *const *choices; /* CFG_ENUM: NULL-terminated list */
    long long min, max;         /* CFG_INT/SIZE/TIME bounds; both 0: none */
    unsigned flags;             /* CFG_REQUIRED */
};

#define CFG_OPTION_END                                                        \
    {                                                                         \
        NULL, CFG_STRING, NULL, NULL, NULL, 0, 0, 0                           \
    }

struct cfg;

/* cfg_parse - read and tokenize a file. Returns NULL with "path:line:" in
 * e on a syntax error, a duplicate key or an unreadable file. */
struct cfg *cfg_parse(const char *path, struct err *e);

/* cfg_parse_text - the same over a string, for tests and fuzzing; name is
 * used in error messages and for resolving relative paths. */
struct cfg *cfg_parse_text(const char *name, const char *text, size_t len,
                           struct err *e);

/* cfg_raw - the unvalidated value of key, or NULL; borrowed. */
const char *cfg_raw(const struct cfg *c, const char *key);

/* cfg_raw_line - the line that set key before validation, 0 if unset. */
unsigned cfg_raw_line(const struct cfg *c, const char *key);

/* cfg_validate - check every key against tables, a NULL-terminated array
 * of option arrays each ending with CFG_OPTION_END. Returns 0 or -1. */
int cfg_validate(struct cfg *c, const struct cfg_option *const *tables,
                 struct err *e);

void cfg_free(struct cfg *c);

/* Getters, after cfg_validate(). The key must be declared in one of the
 * tables (asserted). Strings are borrowed from c. */
const char *cfg_str(const struct cfg *c, const char *key); /* NULL: unset */
long long cfg_num(const struct cfg *c,
                  const char *key); /* INT, SIZE, TIME(ms) */
int cfg_bool(const struct cfg *c, const char *key);
int cfg_enum(const struct cfg *c, const char *key); /* index in choices */
size_t cfg_list(const struct cfg *c, const char *key,
                const char *const **items);
int cfg_is_set(const struct cfg *c, const char *key);

/* cfg_line - the line that set key, 0 when it has its default. */
unsigned cfg_line(const struct cfg *c, const char *key);
const char *cfg_path(const struct cfg *c);

/* cfg_err - fill e with "path:line: key: reason" for a value that passed
 * the type check but that the consumer refuses; returns -1. */
int cfg_err(struct err *e, const struct cfg *c, const char *key,
            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* cfg_err_prefixed - cfg_err() with e's own text as the reason, for the
 * key that text starts with ("next_hop_auth_file: ...") when c declares
 * it, else for key; the prefix is not repeated. Returns -1. */
int cfg_err_prefixed(struct err *e, const struct cfg *c, const char *key);

/* cfg_print - write "key = value" for every declared key, defaults
 * included (marked "(default)"), each line prefixed with indent. */
void cfg_print(const struct cfg *c, FILE *fp, const char *indent);

/* cfg_print_values - "key = value" for every declared key, as postconf
 * prints them: defaults unmarked, an unset key as "key =". With set_only,
 * only the keys the file sets (postconf -n); with keys (NULL-terminated),
 * only those. */
void cfg_print_values(const struct cfg *c, FILE *fp, int set_only,
                      const char *const *keys);

/* cfg_format_bound - a CFG_INT, CFG_SIZE or CFG_TIME (milliseconds)
 * bound written the way a user would write it ("1k", "5m"); returns out. */
const char *cfg_format_bound(enum cfg_type type, long long v, char *out,
                             size_t n);

/* cfg_type_name - the name relaychain.conf(5) gives a type: "string",
 * "file name", "number", "size", "time", "boolean", "choice", "list". */
const char *cfg_type_name(enum cfg_type type);
/* Secret files (password hashes, private keys, credentials): one rule
 * for all of them. cfg_secret_problem - what the bits of forbidden that
 * mode m has let other users do ("lets all other users read it"), or
 * NULL. forbidden is S_IROTH | S_IWOTH for files a group may share (the
 * daemon's group reads them), or those and S_IRGRP | S_IWGRP for a
 * private key readable by its owner only. */
const char *cfg_secret_problem(mode_t m, mode_t forbidden);

/* cfg_secret_check - 0 when the file of st (named path) keeps what is
 * secret in it from other users, else -1 with e (ERR_CONFIG) saying
 * "path: mode 0644 lets all other users read it; what must stay
 * private: run chmod 640 path". Callers fstat() the descriptor they read
 * from, so the file checked is the file read. */
int cfg_secret_check(const char *path, const struct stat *st, mode_t forbidden,
                     const char *what, struct err *e);

/* cfg_open_dir - an O_DIRECTORY descriptor for the directory path (a
 * spool that the configuration names), or -1 with e. Each component is
 * looked at without following it; a symbolic link on the way is followed
 * only when root owns it, so that a user who may write one of the
 * directories (the daemon's, in its spool) can not send root's commands
 * elsewhere with a planted link. Files inside are then opened with
 * openat() and O_NOFOLLOW relative to the descriptor. */
int cfg_open_dir(const char *path, struct err *e);

/* Value parsers, shared with code that takes values from elsewhere. */
int cfg_parse_size(const char *s, long long *out);
int cfg_parse_time(const char *s, long long *out_ms);
int cfg_parse_bool(const char *s, int *out);

#endif
