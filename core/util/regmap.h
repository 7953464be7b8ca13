/*
 * regmap - lookup tables in the syntax of Postfix pcre_table(5)
 *
 *     # comment
 *     /^(.*)@old\.example$/    ${1}@new.example
 *     !/@example\.com$/        outside@example.com
 *     if /@example\.org$/
 *     /^postmaster@/           admin@example.org
 *     endif
 *
 * Patterns are matched in file order; the first match wins and its result
 * is expanded ($1..$9, ${n}, $$). As in Postfix, matching is
 * case-insensitive unless the pattern has the i flag, which toggles it;
 * flags m, s, x, A, E, U and X are accepted too. A line that starts with
 * white space continues the previous one. Errors are "path:line: reason",
 * with pcre2's own message for a bad pattern.
 *
 * A loaded map is read-only and may be shared by threads.
 */
#ifndef RC_REGMAP_H
#define RC_REGMAP_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

struct regmap;

struct regmap *regmap_load(const char *path, struct err *e);
struct regmap *regmap_parse_text(const char *name, const char *text,
                                 size_t len, struct err *e);
void regmap_free(struct regmap *rm);

/* regmap_lookup - 1 and the expanded result appended to out when a rule
 * matches key; 0 when none does; -1 on error (limit, pcre2 failure).
 * *line, when not NULL, gets the line of the rule that matched. */
int regmap_lookup(const struct regmap *rm, const char *key, struct buf *out,
                  unsigned *line, struct err *e);

size_t regmap_rule_count(const struct regmap *rm);
const char *regmap_path(const struct regmap *rm);

/* regmap_rule_at - the result template of the i-th rule (0 up to
 * regmap_rule_count() - 1, in file order) as written, unexpanded, and
 * its line in *line; NULL past the last. For a map whose results must
 * be checked at load (the encrypt stage's sign_key_map names keys). */
const char *regmap_rule_at(const struct regmap *rm, size_t i, unsigned *line);

#endif
