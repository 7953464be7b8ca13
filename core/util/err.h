/*
 * err - error reports that travel up the stack
 *
 * A function that can fail takes a struct err * as its last argument and,
 * on failure, fills it with err_set() and returns -1 (or NULL). The text is
 * complete and ready for a log line or a "path:line: reason" message; the
 * caller adds context only where it knows more. Library error strings
 * (cl_strerror, dkim_geterror, pcre2 messages) are copied into the text.
 *
 * The code tells the caller how to treat the failure: ERR_TEMP and
 * ERR_NOMEM become a 4xx tempfail, never a pass.
 */
#ifndef RC_ERR_H
#define RC_ERR_H

#include <stddef.h>

enum err_code {
    ERR_NONE = 0,
    ERR_CONFIG,  /* configuration is invalid: stop start-up */
    ERR_INPUT,   /* the message or command is malformed */
    ERR_LIMIT,   /* a configured limit was exceeded */
    ERR_NOMEM,   /* out of memory: temporary */
    ERR_IO,      /* system call failed: see sys_errno */
    ERR_TEMP,    /* other temporary failure */
    ERR_LIB,     /* an external library reported an error */
    ERR_INTERNAL /* a bug: an invariant did not hold */
};

#define ERR_TEXT_MAX 512

struct err {
    enum err_code code;
    int sys_errno;
    char text[ERR_TEXT_MAX];
};

/* err_set - record a failure; returns -1 so callers can "return err_set()". */
int err_set(struct err *e, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* err_sys - like err_set, appending ": strerror(errno)" and saving errno. */
int err_sys(struct err *e, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* err_nomem - shorthand for an allocation failure; returns -1. */
int err_nomem(struct err *e);

/* err_prefix - put "prefix: " in front of the existing text. */
void err_prefix(struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* err_clear - reset to ERR_NONE with empty text. */
void err_clear(struct err *e);

/* err_is_temporary - true when the failure should become a 4xx. */
int err_is_temporary(const struct err *e);

/* err_code_name - a short lower-case name for logs ("config", "nomem"). */
const char *err_code_name(enum err_code code);

#endif
