/*
 * mtamodel - a model of Postfix's side of the milter edits, for tests
 *
 * A struct milterd_ops whose calls change an in-memory message the way
 * Postfix's cleanup server changes its queue file (cleanup_milter.c):
 *
 *   - the header starts with the MTA's own Received: field, which the
 *     filter never saw;
 *   - smfi_chgheader(name, i) skips that first field and counts the i-th
 *     field called name (without regard to case) among the rest; a
 *     change of a field that does not exist appends, a delete of one is
 *     ignored;
 *   - smfi_insheader(i) puts the field before the (i+1)-th field of the
 *     whole header, own Received: included (so 0 is above it), or
 *     appends when there are fewer;
 *   - smfi_addheader appends after every field, where chgheader and
 *     insheader cannot reach it any more;
 *   - smfi_replacebody chunks are concatenated.
 *
 * Each request is also written to log as one short line, so tests can
 * compare the exact requests. fail_at makes the n-th request (1-based)
 * fail, as an MTA that refuses one; strict makes a change or delete of a
 * field that is not there, or an insert past the end, abort the program
 * (the fuzzer's oracle for index bugs). Used by the unit tests and the
 * fuzzer; the model allocates, mtamodel_fini() frees.
 */
#ifndef RC_MTAMODEL_H
#define RC_MTAMODEL_H

#include "util/buf.h"
#include "milterd/milterd.h"

#define MTAMODEL_FIELDS 4096
#define MTAMODEL_RCPTS 256

struct mtamodel_field {
    char *name;
    char *value; /* as the filter sent it: after the colon, LF folding */
};

struct mtamodel {
    struct mtamodel_field main[MTAMODEL_FIELDS]; /* [0]: own Received: */
    size_t nmain;
    struct mtamodel_field app[MTAMODEL_FIELDS];
    size_t napp;
    struct buf body;
    int body_replaced;
    size_t chunks, max_chunk;
    char *sender;
    char *rcpts[MTAMODEL_RCPTS];
    size_t nrcpts;
    char reply[512];
    char quarantine[512];
    unsigned progress;
    unsigned requests;
    unsigned fail_at;
    int strict; /* abort() on a request that names no field: a replay bug */
    struct buf log;
};

extern const struct milterd_ops mtamodel_ops;

/* mtamodel_init - an MTA holding header (fields "Name:value\n", values
 * as received, folding "\n\t"), sender and recipients ("<a@b>"). */
void mtamodel_init(struct mtamodel *mm, const char *header, const char *sender,
                   const char *const *rcpts);
void mtamodel_fini(struct mtamodel *mm);

/* mtamodel_field - append a field the MTA received (value as sent to the
 * filter, leading space included). */
void mtamodel_field(struct mtamodel *mm, const char *name, const char *value);

/* mtamodel_header - the visible header now ("Name:value\n" each, own
 * Received: left out), into out. */
void mtamodel_header(const struct mtamodel *mm, struct buf *out);

#endif
