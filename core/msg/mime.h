/*
 * mime - the one shared GMime parse of a message, with ambiguity flags
 *
 * msg_mime() makes a struct mime on first use; every stage then walks the
 * same GMimeMessage. While parsing, GMime's warnings and a walk of the tree
 * record anything a receiver could read two ways: a boundary reused by a
 * nested multipart or by two multiparts, a Content-Type or boundary
 * parameter given twice with different values, a multipart without its
 * closing boundary, nesting deeper or more parts than the limits allow.
 * The chain turns a flagged message into its ambiguous_mime_action.
 *
 * A struct mime is owned by its struct msg. Stages must not modify the
 * GMime objects; they edit through msg_* and the parse is remade.
 */
#ifndef RC_MIME_H
#define RC_MIME_H

#include <stddef.h>

#include <gmime/gmime.h>

#include "util/err.h"
#include "msg/msg.h"

enum mime_flag {
    MIME_AMBIG_DUP_BOUNDARY = 1u << 0, /* same boundary in two multiparts */
    MIME_AMBIG_CONFLICTING_TYPE = 1u << 1, /* Content-Type twice, different */
    MIME_AMBIG_DUP_PARAM = 1u << 2,        /* boundary/charset param twice */
    MIME_AMBIG_MISSING_END = 1u << 3,    /* multipart lacks closing boundary */
    MIME_AMBIG_NO_BOUNDARY = 1u << 4,    /* multipart without boundary */
    MIME_AMBIG_TOO_DEEP = 1u << 5,       /* over mime_depth_limit */
    MIME_AMBIG_TOO_MANY_PARTS = 1u << 6, /* over mime_part_limit */
    MIME_AMBIG_MALFORMED = 1u << 7       /* other critical parser warning */
};

struct mime;

/* mime_init - once per process before any thread parses (g_mime_init). */
void mime_init(void);
void mime_shutdown(void);

/* mime_parse - parse data (a whole message). Returns NULL on a failure
 * GMime cannot recover from; ambiguity is not a failure, see mime_flags. */
struct mime *mime_parse(const char *data, size_t len,
                        const struct msg_limits *limits, struct err *e);
/* mime_parse_shared - mime_parse without a copy: GMime reads data where
 * it is, so data must stay allocated and unchanged until mime_free(). */
struct mime *mime_parse_shared(const char *data, size_t len,
                               const struct msg_limits *limits, struct err *e);
void mime_free(struct mime *mm);

GMimeMessage *mime_message(const struct mime *mm); /* borrowed */
unsigned mime_flags(const struct mime *mm);
unsigned mime_depth(const struct mime *mm);
unsigned mime_part_count(const struct mime *mm);

/* mime_flags_describe - "duplicate boundary, missing end boundary" into
 * out (size n); returns out. */
const char *mime_flags_describe(unsigned flags, char *out, size_t n);

/* mime_is_type - 1 when obj's Content-Type is type/subtype. */
int mime_is_type(GMimeObject *obj, const char *type, const char *subtype);

/* Where the parts GMime found sit in the body a stage edits: GMime
 * parsed the whole message from one memory stream, whose last blen
 * octets are msg_parse's body. The caller sets body and blen, stream
 * NULL; the first window found fixes stream and base (where the body
 * starts in it). */
struct mime_window {
    const char *body;
    size_t blen;
    GMimeStream *stream;
    size_t base;
};

/* mime_window_of - the body offsets [*start, *end) of s, a substream of
 * GMime's parse (a part's content). Returns 0; -2 when it starts in the
 * message header (GMime found the header's end elsewhere than msg_parse
 * did); -1 when GMime gave no window or it does not fit the body. */
int mime_window_of(struct mime_window *w, GMimeStream *s, size_t *start,
                   size_t *end);

/* mime_header_agrees - 1 when no header field GMime read as obj's own
 * lies in what msg_parse took for the body. */
int mime_header_agrees(const struct mime_window *w, GMimeObject *obj);

#endif
