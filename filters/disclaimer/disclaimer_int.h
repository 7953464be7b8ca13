/*
 * disclaimer_int - what the parts of the disclaimer stage share
 *
 * The stage is one folder: disclaimer.c (the stage type: options, init,
 * and run's driver), disclaimer_mime.c (the MIME walk, part offsets,
 * decoding, charsets, one part's edit, new parts), disclaimer_text.c
 * (footers into text and HTML, encoding back) and disclaimer_conf.c
 * (templates, the template map, the HTML scanner, the normalization the
 * once check compares with, helpers). Each uses only those after it in
 * this list. Nothing here is seen outside the folder.
 */
#ifndef RC_DISCLAIMER_INT_H
#define RC_DISCLAIMER_INT_H

#include <stddef.h>

#include <gmime/gmime.h>

#include "util/buf.h"
#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "msg/splice.h"
#include "chain/stage.h"

#define FLT_DISCLAIMER_FILE_MAX (64 * 1024)  /* octets of one template */
#define FLT_DISCLAIMER_MAP_MAX (1024 * 1024) /* octets of the map file */
#define FLT_DISCLAIMER_RULES_MAX 10000       /* lines of the map */
#define FLT_DISCLAIMER_LINE_MAX 998          /* octets of any line */
#define FLT_DISCLAIMER_VALUE_MAX 256         /* octets of one variable */
#define FLT_DISCLAIMER_DEPTH_MAX 64          /* walk guard */
#define FLT_DISCLAIMER_SPLICES 8
#define FLT_DISCLAIMER_CHARSET_MAX 64

/* ------------------------------------------------------------- types */

/* One template pair. needles_* hold the template's fixed text, split at
 * its variables and normalized as a part's text is for the once check;
 * the pieces are NUL-separated. */
struct flt_disclaimer_tpl {
    char *name; /* "legal-en" from legal-en.txt, for the log */
    char *text; /* UTF-8, LF line ends, one final LF */
    char *html; /* UTF-8, or NULL: made from text */
    char *text_path;
    char *html_path;
    struct buf needles_text;
    struct buf needles_html;
};

struct flt_disclaimer_rule {
    struct match *match;
    struct flt_disclaimer_tpl *tpl; /* borrowed from tpls */
};

struct flt_disclaimer {
    struct flt_disclaimer_tpl *def; /* borrowed from tpls, or NULL */
    struct flt_disclaimer_rule *rules;
    size_t nrules;
    struct flt_disclaimer_tpl **tpls; /* owned */
    size_t ntpls;
    int prepend;
    int add_part;
    int once;
    int dkim_edit; /* dkim_signed = edit */
};

enum flt_disclaimer_var {
    FLT_DISCLAIMER_VAR_SENDER,
    FLT_DISCLAIMER_VAR_DOMAIN,
    FLT_DISCLAIMER_VAR_DATE,
    FLT_DISCLAIMER_VAR_NONE
};

/* ---------------------------------------------------------------- run */

enum flt_disclaimer_cs {
    FLT_DISCLAIMER_CS_UTF8,
    FLT_DISCLAIMER_CS_ASCII,
    FLT_DISCLAIMER_CS_COMPAT,   /* stateless, ASCII octets mean ASCII */
    FLT_DISCLAIMER_CS_STATEFUL, /* ISO-2022-*, HZ, UTF-7 */
    FLT_DISCLAIMER_CS_WIDE,     /* not ASCII-compatible: UTF-16, EBCDIC */
    FLT_DISCLAIMER_CS_NONE,     /* HTML without charset parameter */
    FLT_DISCLAIMER_CS_UNKNOWN
};

/* One body part the stage edits, and what it makes of it. */
struct flt_disclaimer_part {
    GMimeObject *obj; /* borrowed from the shared parse; NULL: none */
    const char *kind; /* "text/plain" or "text/html" */
    int html;
    int top;             /* the message's own part: message headers */
    size_t hstart, hend; /* its header fields in the body (!top) */
    size_t cstart, cend; /* its content in the body */
    GMimeContentEncoding cte;
    char charset[FLT_DISCLAIMER_CHARSET_MAX]; /* "" when none */
    int flowed, delsp;
    enum flt_disclaimer_cs cs;
    const char *raw_eol;  /* line end of the encoded lines */
    const char *text_eol; /* line end of the decoded text */
    struct buf dec;       /* decoded content (base64, QP) */
    const char *d;        /* decoded view: dec or the body */
    size_t dlen;
    struct buf out; /* the new encoded content */
    struct buf hdr; /* new header block; top: new Content-Type value */
    int to_utf8;    /* its charset becomes UTF-8 */
    int to_qp;      /* its encoding becomes quoted-printable */
    int edited;
    const char *skip; /* why it is left alone */
};

struct flt_disclaimer_ctx {
    const struct stage *st;
    const struct flt_disclaimer *fd;
    struct msg *m;
    const struct flt_disclaimer_tpl *tpl;
    GMimeMessage *message;
    struct mime_window win; /* the body, and where it is in GMime's parse
                               (base SIZE_MAX: unknown) */
    const char *eol;        /* the message's line end */
    size_t limit;           /* octets of a buffer */
    char skip[80];          /* the whole message is skipped: why */
    int broken;             /* an offset did not agree: internal error */
    struct flt_disclaimer_part plain, html;
    struct buf text_footer; /* expanded, UTF-8, LF */
    struct buf html_footer;
};

/* What the scanner learns about an HTML document. */
struct flt_disclaimer_html {
    size_t body_open_end; /* after the first <body ...> tag; SIZE_MAX: none */
    size_t body_close;    /* at the '<' of the last </body>; SIZE_MAX: none */
    int ends_in_text;     /* the end is outside any tag, comment, raw text */
};

/* disclaimer_conf.c */
int flt_disclaimer_code(GMimeContentEncoding enc, int encode, const char *in,
                        size_t n, const char *eol, struct buf *out,
                        struct err *e);
int flt_disclaimer_ncr(const char *s, size_t n, struct buf *out,
                       struct err *e);
const char *flt_disclaimer_eol_of(const char *s, size_t n, const char *def);
int flt_disclaimer_has_8bit(const char *s, size_t n);
int flt_disclaimer_has_needles(const struct buf *needles, const char *hay,
                               size_t n);
int flt_disclaimer_html_scan(const char *d, size_t n,
                             struct flt_disclaimer_html *h, struct buf *text,
                             struct err *e);
int flt_disclaimer_iconv(const char *to, const char *from, const char *in,
                         size_t n, int strict, struct buf *out, struct err *e);
int flt_disclaimer_is_space(int c);
int flt_disclaimer_is_wsp(int c);
int flt_disclaimer_line_has(const char *s, size_t n, const char *what);
size_t flt_disclaimer_longest(const char *s, size_t n);
int flt_disclaimer_map_load(struct flt_disclaimer *fd, const char *path,
                            struct err *e);
int flt_disclaimer_norm_html(const char *s, size_t n, struct buf *out,
                             struct err *e);
int flt_disclaimer_norm_text(const char *s, size_t n, int flowed, int delsp,
                             struct buf *out, struct err *e);
int flt_disclaimer_put_lines(struct buf *out, const char *s, size_t n,
                             const char *eol, struct err *e);
void flt_disclaimer_tpl_free(struct flt_disclaimer_tpl *t);
struct flt_disclaimer_tpl *flt_disclaimer_tpl_get(struct flt_disclaimer *fd,
                                                  const char *text_path,
                                                  const char *html_path,
                                                  struct err *e);
int flt_disclaimer_var_at(const char *s, size_t *len);

/* disclaimer_text.c */
int flt_disclaimer_build(struct flt_disclaimer_ctx *cx,
                         struct flt_disclaimer_part *p, struct buf *nb,
                         struct err *e);
int flt_disclaimer_charset_value(const char *v, size_t n, size_t col,
                                 const char *eol, struct buf *out,
                                 struct err *e);
int flt_disclaimer_encode(struct flt_disclaimer_ctx *cx,
                          struct flt_disclaimer_part *p, const struct buf *nb,
                          struct err *e);
int flt_disclaimer_footers(struct flt_disclaimer_ctx *cx, struct err *e);
int flt_disclaimer_part_headers(struct flt_disclaimer_ctx *cx,
                                struct flt_disclaimer_part *p, struct err *e);
int flt_disclaimer_text_footer(const struct flt_disclaimer_ctx *cx,
                               const struct flt_disclaimer_part *p,
                               struct buf *out, struct err *e);

/* disclaimer_mime.c */
int flt_disclaimer_add_to_mixed(struct flt_disclaimer_ctx *cx,
                                GMimeMultipart *mp, struct buf *part,
                                struct splice *sp, struct err *e);
int flt_disclaimer_edit(struct flt_disclaimer_ctx *cx,
                        struct flt_disclaimer_part *p, struct err *e);
int flt_disclaimer_find_base(struct flt_disclaimer_ctx *cx, GMimeObject *obj,
                             unsigned depth);
int flt_disclaimer_prepare(struct flt_disclaimer_ctx *cx,
                           struct flt_disclaimer_part *p, struct err *e);
void flt_disclaimer_set_skip(struct flt_disclaimer_ctx *cx, const char *why);
int flt_disclaimer_top_headers(struct flt_disclaimer_ctx *cx,
                               const struct flt_disclaimer_part *p,
                               struct err *e);
void flt_disclaimer_walk(struct flt_disclaimer_ctx *cx, GMimeObject *obj,
                         int body, unsigned depth, int top);
int flt_disclaimer_wrap(struct flt_disclaimer_ctx *cx, char *boundary,
                        size_t bn, struct buf *out, struct err *e);
int flt_disclaimer_wrap_headers(struct flt_disclaimer_ctx *cx,
                                const char *boundary, struct err *e);

#endif
