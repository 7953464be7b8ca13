/*
 * faultregistry - the built-in stage types, lent a fault hook
 *
 * Linked into tests/unit/test_dkim and tests/relaychain-faults (relaychain
 * with this registry), never into the installed programs: this
 * flt_registry comes first, so the linker leaves filters/registry.c's out.
 * Its fault hook (stage_env) corrupts, at the dkim stage's point
 * "dkim.sign", the copy of the message the signer hashes when the
 * environment variable RELAYCHAIN_DKIM_FAULT says so: "body" changes the
 * last letter of the body, "header" one letter of the From field. The
 * tests then show that the self-check catches a broken signing path.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/filters.h"

static void
faultregistry_fault(const char *point, char *p, size_t n)
{
    const char *what = getenv("RELAYCHAIN_DKIM_FAULT");
    char *q, *body;
    size_t i;

    if (strcmp(point, "dkim.sign") != 0 || what == NULL || n < 4)
        return;
    body = memmem(p, n, "\r\n\r\n", 4);
    if (strcmp(what, "body") == 0 && body != NULL) {
        for (i = n; i-- > (size_t)(body - p) + 4;)
            if ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')) {
                p[i] ^= 0x20;
                return;
            }
    } else if (strcmp(what, "header") == 0) {
        for (q = p; q + 5 < p + n; q++)
            if ((q == p || q[-1] == '\n') && strncasecmp(q, "From:", 5) == 0)
                for (q += 5; q < p + n && *q != '\r'; q++)
                    if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')) {
                        *q ^= 0x20;
                        return;
                    }
    }
}

static const struct stage_type *const faultregistry_types[] = {
    FLT_BUILTIN_TYPES,
    NULL,
};

const struct stage_registry flt_registry = {
    .types = faultregistry_types,
    .env = {.fault = faultregistry_fault},
};
