/*
 * stage - verdict helpers shared by every stage
 *
 * See stage.h for the contract itself.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

#include "chain/stage.h"

int
verdict_set(struct verdict *v, enum verdict_kind kind, const char *reply,
            const char *note_fmt, ...)
{
    va_list ap;

    v->kind = kind;
    snprintf(v->reply, sizeof(v->reply), "%s", reply ? reply : "");
    v->note[0] = '\0';
    if (note_fmt != NULL) {
        va_start(ap, note_fmt);
        vsnprintf(v->note, sizeof(v->note), note_fmt, ap);
        va_end(ap);
    }
    return 0;
}

const char *
verdict_kind_name(enum verdict_kind kind)
{
    switch (kind) {
    case VERDICT_CONTINUE:
        return "continue";
    case VERDICT_REJECT:
        return "reject";
    case VERDICT_TEMPFAIL:
        return "tempfail";
    case VERDICT_DISCARD:
        return "discard";
    case VERDICT_QUARANTINE:
        return "quarantine";
    }
    return "unknown";
}
