/*
 * msg_int - the message's representation, shared by its files in core/msg
 *
 * Not for callers outside core/msg: they use msg.h. See msg.c for the
 * representation. msg.c has the model: envelope, parse, reading, and
 * freeing; msg_edit.c the edits, their journal and the marks;
 * msg_write.c the serializer, the pieces without a copy and the flat copy
 * the MIME parse shares. msg_edit.c and msg_write.c call msg.c, never
 * the other way round.
 */
#ifndef RC_MSG_INT_H
#define RC_MSG_INT_H

#include <stddef.h>

#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg.h"

/* Line end codes; msg_eol_str and msg_eol_len are indexed by them. */
enum { MSG_EOL_NONE, MSG_EOL_LF, MSG_EOL_CRLF };
extern const char *const msg_eol_str[];
extern const size_t msg_eol_len[];

struct msg_hdr {
    char *name;  /* NUL-terminated, in raw or in own */
    char *value; /* raw value after the colon, NUL-terminated */
    size_t name_len;
    size_t value_len;
    char *own; /* "name\0value\0" of an edited field, or NULL */
    unsigned char eol;
};

/* A recipient msg_rcpt_delete() took out, and where it stood. */
struct msg_gone {
    size_t at;
    struct msg_rcpt rcpt;
};

/* What undoing one journal entry takes; see msg_edit.c. Owns
 * hdr.own, sender, sender_params and gone with its strings. */
struct msg_undo {
    size_t at;          /* field or recipient position the edit used */
    struct msg_hdr hdr; /* HEADER_CHANGE, HEADER_DELETE: the field before */
    const char *body;   /* BODY_REPLACE: the body before; borrowed */
    size_t body_len;
    char *sender; /* SENDER: the sender and parameters before */
    char *sender_params;
    struct msg_gone *gone; /* RCPT_DELETE: in ascending position */
    size_t ngone;
};

struct msg {
    struct msg_limits limits;
    struct msg_env env;
    char *raw; /* the message as it came, see above */
    size_t raw_len;
    char *hraw;  /* the header section cut into C strings */
    size_t hlen; /* octets of the header section, the empty line too */
    char *flat;  /* msg_flat() of an edited message, or NULL */
    size_t flat_len;
    struct msg_hdr *hdrs;
    size_t nhdrs;
    size_t hdrs_cap;
    const char *body; /* in raw, in an edit's value, or NULL */
    size_t body_len;
    unsigned char sep; /* line end of the empty line, or NONE */
    unsigned char eol; /* LF or CRLF */
    int parsed;
    int edited; /* header or body changed */
    size_t longest;
    struct msg_edit *edits;
    size_t nedits;
    size_t edits_cap;
    struct mime *mime;
    size_t rcpts_cap;      /* room in env.rcpts; it never shrinks */
    unsigned marks;        /* marks open */
    size_t undo_base;      /* journal length at the outermost open mark */
    struct msg_undo *undo; /* undo[i - undo_base] for journal entry i */
    size_t undo_cap;
    /* The chain's verdicts so far (msg_trail_add), for the archive stage:
     * "antivirus=continue rewrite=continue". */
    char *trail;
    size_t trail_len;
};

/* msg.c */
int msg_is_wsp(int c);
int msg_dup(const char *s, char **out);
void msg_mime_drop(struct msg *m);
void msg_undo_release(struct msg *m);
int msg_sender_set(struct msg *m, const char *addr, const char *params,
                   struct msg_undo *u, struct err *e);
int msg_rcpt_append(struct msg *m, const char *addr, const char *params,
                    struct err *e);
int msg_hdrs_reserve(struct msg_hdr **hdrs, size_t n, size_t *cap);
long msg_header_find(const struct msg *m, const char *name, size_t index);

#endif
