/*
 * splice - put new bytes in place of ranges of a message's bytes
 *
 * The stages that edit MIME parts (dkim's 7-bit re-encoding, the
 * disclaimer) find the parts in the shared GMime parse and change them
 * by splicing the serialized message at GMime's offsets, so that every
 * octet they do not change stays as it was. A struct splice says that the
 * octets [start, end) become data[0..len); splice_apply() makes the new
 * bytes from a set of them.
 *
 * The offsets come from a parser reading input an attacker wrote, so
 * they are checked, never trusted: a splice that runs backwards, past the
 * end of the data, before the range being rebuilt, or into another
 * splice is refused as ERR_INTERNAL (the parse and the bytes disagree;
 * the stage's on_error applies) and nothing is used. An insertion
 * (start == end) at the start of a replaced range is fine: splices are
 * made in order of start, then end.
 */
#ifndef RC_SPLICE_H
#define RC_SPLICE_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

struct splice {
    size_t start, end; /* the octets replaced: [start, end) of the data */
    const char *data;  /* by these (borrowed) */
    size_t len;
};

/* splice_apply - append to out the octets data[from..len) with every
 * splice of sp made (sp is sorted in place). Each splice must lie in
 * [from, len] and none may overlap another. Returns 0; -1 with e set:
 * ERR_INTERNAL for splices that break those rules (out untouched), or
 * out's error (ERR_LIMIT, ERR_NOMEM; out then holds part of the result). */
int splice_apply(const char *data, size_t len, size_t from, struct splice *sp,
                 size_t n, struct buf *out, struct err *e);

/* splice_check - the rules of splice_apply() without the copying; sorts
 * sp. 0, or -1 with ERR_INTERNAL in e. */
int splice_check(size_t len, size_t from, struct splice *sp, size_t n,
                 struct err *e);

#endif
