/*
 * confdoc - relaychain.conf(5) kept in step with the option tables
 *
 * The key entries of docs/relaychain.conf.5 are hand-written prose under
 * a heading that is generated from the tables the parser uses: name,
 * type, range, choices, default. confdoc_update() reads the page and
 * returns it with every key heading rewritten from its table, and with an
 * entry made from the key's one-line help for every key that has none;
 * "relaychain config --man" prints the result and "make man" writes it
 * back. A test fails when the checked-in page differs from what
 * confdoc_update() makes of it, so a new key, a changed default and a
 * removed key all show up as a diff to review.
 *
 * Where a key is documented: the keys of relaychain.conf in any section
 * other than those below (new ones are added at the end of MAIN
 * SETTINGS); the keys every stage file has (stage, on_error, match_*) in
 * COMMON STAGE SETTINGS; the keys of stage type T in the section STAGE T
 * (made before EXAMPLES when missing). An entry is a ".TP" line followed
 * by a ".B", ".BR" or ".BI" line whose first word is the key.
 */
#ifndef RC_CONFDOC_H
#define RC_CONFDOC_H

#include <stddef.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"

/* confdoc_heading - the roff heading line of option o, without its line
 * end, appended to out: .BR name " (size, 1k to 1g; default: " 10m ) */
int confdoc_heading(const struct cfg_option *o, struct buf *out,
                    struct err *e);

/* confdoc_update - page (len octets of roff) with its key headings
 * regenerated and missing keys added, appended to out. -1 with e set
 * ("relaychain.conf.5:LINE: reason") when a key is documented twice, a
 * heading names a key no table has, or a key has no help text. */
int confdoc_update(const char *name, const char *page, size_t len,
                   struct buf *out, struct err *e);

#endif
