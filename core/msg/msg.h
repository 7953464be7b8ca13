/*
 * msg - one message in flight: envelope, headers, body and edit journal
 *
 * A front end builds a struct msg from what it received (msg_new, the
 * msg_env_* setters, msg_parse), the chain's stages read it and change it
 * only through the msg_* calls below, and the front end then either
 * serializes it (msg_write) or replays the journal (msg_journal) as milter
 * calls.
 *
 * Headers are kept as the raw bytes that arrived, folding and line ends
 * included, in order and with duplicates, so an unedited message is written
 * back byte for byte. New or changed headers use the line end of the
 * message (CRLF or LF, from its first line). Header names compare without
 * regard to case; a per-name index is 1-based among the headers of that
 * name, as in smfi_chgheader().
 *
 * Every change appends one struct msg_edit to the journal, with indexes as
 * they were at the moment of the edit; replaying the journal in order on an
 * MTA's copy of the original message gives the same result.
 *
 * A mark (msg_mark) lets the chain take back the edits of a stage that
 * failed: msg_rollback() returns envelope, header, body and journal to
 * what they were at the mark, as if the edits since had never been made.
 *
 * A struct msg belongs to one thread at a time. msg_free() releases it and
 * everything the getters returned.
 */
#ifndef RC_MSG_H
#define RC_MSG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "util/err.h"

struct mime;

struct msg_limits {
    size_t message_size; /* octets of header and body */
    size_t header_count; /* header fields */
    size_t line_length;  /* octets of one line, without its line end */
    unsigned mime_depth; /* nesting of multiparts and message/rfc822 */
    unsigned mime_parts; /* MIME parts in the whole message */
};

/* Which front end built the message; stages that cannot keep a promise in
 * one of them (different bodies per recipient in milter mode) ask. */
enum msg_frontend { MSG_FE_CLI, MSG_FE_SMTP, MSG_FE_MILTER };

struct msg_rcpt {
    char *addr;   /* without angle brackets */
    char *params; /* ESMTP parameters as received, or NULL */
};

struct msg_env {
    char *qid;         /* queue id, or NULL: logs say NOQUEUE */
    char *client_addr; /* "192.0.2.1" or "2001:db8::1", or NULL */
    char *client_name;
    char *helo;
    int tls;         /* session was encrypted */
    char *auth_user; /* SASL login, or NULL */
    char *sender;    /* MAIL FROM address without <>; "" is the null sender */
    char *sender_params;
    struct msg_rcpt *rcpts;
    size_t nrcpts;
    enum msg_frontend frontend;
    /* Whether the mail is ours, as the front end knows it (msg_env_origin):
     * a signing stage signs only mail from our own clients. */
    int internal;      /* client in relaychain.conf mynetworks */
    char *daemon_name; /* the MTA daemon that took it ({daemon_name}), or
                          NULL */
};

enum msg_edit_kind {
    MSG_EDIT_HEADER_ADD,    /* append at the end of the header */
    MSG_EDIT_HEADER_INSERT, /* insert at position (0 = before the first) */
    MSG_EDIT_HEADER_CHANGE, /* index-th header called name gets value */
    MSG_EDIT_HEADER_DELETE, /* index-th header called name is removed */
    MSG_EDIT_BODY_REPLACE,  /* the whole body; value/len hold it */
    MSG_EDIT_SENDER,        /* value = new sender, params = ESMTP params */
    MSG_EDIT_RCPT_ADD,      /* value = address, params = ESMTP params */
    MSG_EDIT_RCPT_DELETE    /* value = address as it was */
};

struct msg_edit {
    enum msg_edit_kind kind;
    char *name;      /* header edits */
    size_t index;    /* CHANGE/DELETE: per-name 1-based index */
    size_t position; /* INSERT: 0-based position among all headers */
    char *value;     /* header value (after "name:", without the final
                        line end, folding kept), address, or body */
    size_t len;      /* length of value */
    char *params;
    const char *stage; /* name of the stage that made it; borrowed */
};

struct msg;

/* msg_new - an empty message with the given limits; NULL on ENOMEM. */
struct msg *msg_new(const struct msg_limits *limits, enum msg_frontend fe,
                    struct err *e);
void msg_free(struct msg *m);

const struct msg_limits *msg_limits(const struct msg *m);

/* Envelope. The setters copy their arguments; the getters' results are
 * borrowed and valid until the next change of that field. */
int msg_env_set(struct msg *m, const char *qid, const char *client_addr,
                const char *client_name, const char *helo, int tls,
                const char *auth_user, struct err *e);
/* msg_env_origin - internal: the client (the one XFORWARD or the MTA
 * named, not the MTA in between) is in mynetworks, or the message was
 * submitted locally; daemon_name: the milter macro {daemon_name}, or
 * NULL. */
int msg_env_origin(struct msg *m, int internal, const char *daemon_name,
                   struct err *e);
int msg_env_sender(struct msg *m, const char *addr, const char *params,
                   struct err *e);
int msg_env_rcpt(struct msg *m, const char *addr, const char *params,
                 struct err *e);
const struct msg_env *msg_env(const struct msg *m);
const char *msg_qid(const struct msg *m); /* "NOQUEUE" when unset */

/* msg_parse - split raw message bytes into headers and body. Fails with
 * ERR_LIMIT over message_size or header_count. A line in the header that
 * is neither a field nor a continuation starts the body, as in Postfix. */
int msg_parse(struct msg *m, const char *data, size_t len, struct err *e);
/* msg_adopt - msg_parse without a copy: data (malloc()ed, len octets and
 * room for one more, which becomes NUL) belongs to m from now on, also
 * when this fails. */
int msg_adopt(struct msg *m, char *data, size_t len, struct err *e);

/* Reading the header. */
size_t msg_header_count(const struct msg *m);
/* msg_header_at - name and raw value of the i-th header (0-based);
 * returns 0, or -1 when i is out of range. Borrowed. */
int msg_header_at(const struct msg *m, size_t i, const char **name,
                  const char **value, size_t *value_len);
/* msg_header_get - the index-th (1-based) header called name: its raw
 * value (after the colon, folding kept, no final line end), or NULL. */
const char *msg_header_get(const struct msg *m, const char *name,
                           size_t index);
size_t msg_header_name_count(const struct msg *m, const char *name);
/* msg_raw_field - the first field called name (any case) in the header
 * of raw message octets data[0..len), before any struct msg is made:
 * its value unfolded, line ends dropped, blanks trimmed at both ends,
 * into out (n > 0 octets). 1 when found, -1 when found and longer than
 * n - 1 (out holds its start), 0 when the header has no such field. */
int msg_raw_field(const char *data, size_t len, const char *name, char *out,
                  size_t n);

/* Editing the header. value is what follows "name:"; a leading space is
 * added when value does not start with white space. Values must not hold
 * bare CR, LF or NUL except as folding (CRLF or LF followed by white
 * space); anything else is refused with ERR_INPUT. */
int msg_header_add(struct msg *m, const char *stage, const char *name,
                   const char *value, struct err *e);
int msg_header_insert(struct msg *m, const char *stage, size_t position,
                      const char *name, const char *value, struct err *e);
int msg_header_change(struct msg *m, const char *stage, const char *name,
                      size_t index, const char *value, struct err *e);
int msg_header_delete(struct msg *m, const char *stage, const char *name,
                      size_t index, struct err *e);

/* The body: everything after the empty line, as bytes. */
const char *msg_body(const struct msg *m, size_t *len);
int msg_body_replace(struct msg *m, const char *stage, const char *data,
                     size_t len, struct err *e);
/* msg_body_adopt - msg_body_replace without a copy: data (malloc()ed,
 * len octets and room for one more, which becomes NUL) belongs to m from
 * now on, also when this fails. */
int msg_body_adopt(struct msg *m, const char *stage, char *data, size_t len,
                   struct err *e);

/* Envelope edits (recorded in the journal). */
int msg_sender_change(struct msg *m, const char *stage, const char *addr,
                      const char *params, struct err *e);
int msg_rcpt_add(struct msg *m, const char *stage, const char *addr,
                 const char *params, struct err *e);
int msg_rcpt_delete(struct msg *m, const char *stage, const char *addr,
                    struct err *e);

/* The journal, in order; borrowed. */
size_t msg_journal(const struct msg *m, const struct msg_edit **edits);
const char *msg_edit_kind_name(enum msg_edit_kind kind);

/* Marks.
 *
 * msg_mark() notes the journal length; msg_rollback() undoes every edit
 * made since, newest first, and drops their journal entries, so the
 * envelope (sender, recipients in their order), the header fields, the
 * body and msg_journal() are what they were at the mark and msg_write()
 * gives the same octets. The mark stays open: the message may be edited
 * and rolled back again. msg_unmark() ends it and keeps the edits made
 * since. Marks nest; each msg_unmark() ends the latest one still open,
 * and every msg_mark() needs its msg_unmark() (msg_free() ends any left).
 *
 * Ownership: while a mark is open, each edit keeps what undoing it takes
 * in the message (not in the struct msg_mark): the field it changed or
 * deleted, with the block that field lives in; the sender and parameters
 * it replaced; the recipients it deleted, with their positions. A
 * replaced body is kept by pointer only: it lives in the parsed copy or in
 * an earlier journal entry, both freed by msg_free() alone. All of this is
 * allocated by the edit before it changes anything (an edit that cannot
 * get it fails with ERR_NOMEM and leaves the message as it was), and the
 * field and recipient arrays never shrink, so msg_rollback() only moves
 * pointers and frees: it cannot fail. msg_unmark() frees what a rollback
 * would have needed. Without an open mark an edit keeps nothing extra.
 *
 * Pointers from the getters to anything a rollback undid (a field, the
 * body, the sender, a recipient, a journal entry, the msg_mime() parse)
 * become invalid, as after an edit. The envelope setters msg_env_sender()
 * and msg_env_rcpt() are for front ends before the chain runs and are
 * refused with ERR_INTERNAL while a mark is open.
 *
 * struct msg_mark is the caller's (on its stack, say); msg_mark() fills
 * it and only msg.c reads it. */
struct msg_mark {
    size_t nedits;  /* journal length at the mark */
    int edited;     /* header or body already changed then */
    unsigned depth; /* marks open, this one included */
};

void msg_mark(struct msg *m, struct msg_mark *mark);
/* msg_rollback - undo the edits since mark; returns how many were undone
 * (0 when there were none). mark must be open. */
size_t msg_rollback(struct msg *m, const struct msg_mark *mark);
/* msg_unmark - end mark, the latest one open, keeping the edits. */
void msg_unmark(struct msg *m, const struct msg_mark *mark);

/* msg_mime - the shared MIME parse of the message as it is now, made on
 * first use and remade after a body or header edit. NULL with e set when
 * GMime cannot parse it at all. Borrowed. */
const struct mime *msg_mime(struct msg *m, struct err *e);

/* msg_flat - the message as msg_write() would give it, in one block:
 * the received octets while the header and body are unedited, else a
 * copy made once and kept until the next header or body edit or
 * rollback, when the pointer becomes invalid (as msg_mime's). Borrowed;
 * NULL with e set on ENOMEM. */
const char *msg_flat(struct msg *m, size_t *len, struct err *e);

/* msg_eol - "\r\n" or "\n", the line end the message arrived with. */
const char *msg_eol(const struct msg *m);

/* msg_longest_line - octets of the longest line seen by msg_parse(). */
size_t msg_longest_line(const struct msg *m);

/* msg_size - octets msg_write() would produce. */
size_t msg_size(const struct msg *m);

/* The trail of verdicts. msg_trail_add - chain_run() notes
 * "stage=verdict" after each stage that ran; msg_trail - the trail so
 * far, "antivirus=continue rewrite=continue", or "" (borrowed, valid
 * until the next msg_trail_add). For a stage that records what the
 * stages before it decided (archive). */
int msg_trail_add(struct msg *m, const char *stage, const char *verdict,
                  struct err *e);
const char *msg_trail(const struct msg *m);

/* msg_write - the message as it is now: header fields, the empty line,
 * the body. Appends to out (bounded by its limit). */
int msg_write(const struct msg *m, struct buf *out, struct err *e);
int msg_write_file(const struct msg *m, FILE *fp, struct err *e);

/* msg_iov - the message as msg_write() gives it, as pieces that point
 * into the message (the received octets, edited fields, the body),
 * adjacent ones joined: one piece while header and body are unedited.
 * Fills at most n of iov and returns how many there are, so a first
 * call with n = 0 sizes the array. The pieces are borrowed, valid until
 * the next edit, and read-only: iov_base is void * only because struct
 * iovec has no const. */
size_t msg_iov(const struct msg *m, struct iovec *iov, size_t n);

#endif
