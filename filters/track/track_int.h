/*
 * track_int - what the parts of the track stage share
 *
 * The stage is one folder: track.c (the stage type: options, init, the
 * recipient groups, run's driver and the List-Unsubscribe fields),
 * track_mime.c (the walk over the shared MIME parse, each part's
 * content found by GMime's offsets, decoded, rewritten and encoded back
 * in its own transfer encoding and charset, spliced into the body) and
 * track_html.c (the link and pixel rewriting of one decoded text). Each
 * uses only those after it in this list. Nothing here is seen outside
 * the folder but flt_track_rewrite, which the fuzzer and the bench call
 * through filters.h.
 */
#ifndef RC_TRACK_INT_H
#define RC_TRACK_INT_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/regmap.h"
#include "util/track_token.h"
#include "msg/msg.h"
#include "chain/stage.h"

#define FLT_TRACK_HOST_MAX 253
#define FLT_TRACK_LINKS_MAX 1000 /* links rewritten in one message */
#define FLT_TRACK_PARTS_MAX 32   /* parts edited in one message */
#define FLT_TRACK_DEPTH_MAX 64
#define FLT_TRACK_LINE_MAX 998
#define FLT_TRACK_WRAP 500 /* a longer line gets a line end after a link */

struct flt_track {
    struct track_key key;
    char host[FLT_TRACK_HOST_MAX + 1];
    struct regmap *map; /* track_map, or NULL: all mail the stage matches */
    int text_links;     /* track_text_links */
    int bulk;           /* bulk = yes */
    int per_rcpt;       /* per_recipient = yes */
    char *mailto;       /* unsubscribe_mailto, or NULL */
};

/* One message's token maker: every token of it shares these fields;
 * links are numbered across the message. */
struct flt_track_tokens {
    const struct flt_track *ft;
    struct track_token base; /* kind, index, url filled per token */
    unsigned links;          /* links in the message (the count) */
    unsigned next;           /* the next link's index */
    const char *eol;         /* line end of the text being rewritten */
};

/* track_html.c */

/* flt_track_url - "https://HOST/KIND/TOKEN[.gif]" for url (click: the
 * next index) appended to out. 0, or -1 with e set. */
int flt_track_url(struct flt_track_tokens *tk, enum track_kind kind,
                  const char *url, struct buf *out, struct err *e);

/* flt_track_html / flt_track_text - rewrite the links of the decoded
 * text d (n octets) into out, and with *pixel set (pixel may be NULL)
 * the open pixel before the last </body>, or at the end when the text
 * ends outside any tag, comment or script (else *pixel becomes 0). With
 * out NULL only count the links that would be rewritten into *links.
 * 0, or -1 with e set (out's limit). */
int flt_track_html(struct flt_track_tokens *tk, const char *d, size_t n,
                   int *pixel, struct buf *out, unsigned *links,
                   struct err *e);
int flt_track_text(struct flt_track_tokens *tk, const char *d, size_t n,
                   struct buf *out, unsigned *links, struct err *e);

/* track_mime.c */

/* flt_track_body - rewrite m's HTML parts (and text parts with
 * text_links) with tk; on success *edited says whether the body was
 * replaced, and note (size n) what was done or why a part was left
 * alone. 0, 1 when the whole message is skipped (why in note), or -1
 * with e set. */
int flt_track_body(struct flt_track_tokens *tk, struct msg *m,
                   const char *stage, int *edited, unsigned *links, int *pixel,
                   char *note, size_t n, struct err *e);

#endif
