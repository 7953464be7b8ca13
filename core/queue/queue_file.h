/*
 * queue_file - the queue file format, read and written
 *
 * A queue file is a sequence of records, each one type octet, a 32-bit
 * big-endian payload length and the payload (see QUEUE_REC_*). String
 * payloads end with their NUL. The last record is QUEUE_REC_END, whose
 * payload is the CRC-32 (8 hex digits and a NUL) of every octet before
 * it, with the mutable octets (the first octet of a QUEUE_REC_STATE or
 * QUEUE_REC_RCPT payload) counted as 0. The file must end exactly there.
 * Those mutable octets are the only ones ever changed in place: a
 * recipient's status ('N' pending, 'D' delivered, 'B' bounced) and the
 * delay-warning flag ('-' or 'W'), each written with pwrite() and made
 * durable with fdatasync() before anything depends on it.
 *
 * Records come in this order: V S T C N H [A] [Y] F P O... R... M E,
 * each once but the recipients ('O' as the client gave them, 'R' after the
 * chain). A reader refuses anything else -- an unknown type, a record
 * out of order or repeated, a length past the end, text with control
 * characters, a bad checksum, data after the end record -- so a torn or
 * planted file is never taken for a message.
 *
 * Nothing here exits or logs; failures are ERR_INPUT (the file) or
 * ERR_LIMIT / ERR_NOMEM / ERR_IO in struct err.
 */
#ifndef RC_QUEUE_FILE_H
#define RC_QUEUE_FILE_H

#include <stddef.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "util/err.h"
#include "msg/msg.h"

/* The end record: its header and the checksum as 8 hex digits and NUL. */
#define QUEUE_TAIL_LEN 14

/* Record types. */
#define QUEUE_REC_VERSION 'V' /* "relaychain-queue 1" */
#define QUEUE_REC_STATE 'S'   /* mutable flag octet: '-' or 'W' */
#define QUEUE_REC_TIME 'T'    /* "ARRIVAL_US QUEUED_US" */
#define QUEUE_REC_CLIENT 'C'  /* client address */
#define QUEUE_REC_NAME 'N'    /* client name */
#define QUEUE_REC_HELO 'H'
#define QUEUE_REC_AUTH 'A' /* SASL login (optional) */
#define QUEUE_REC_STREAM                                                      \
    'Y'                      /* the stream a trusted client named (optional)  \
                              */
#define QUEUE_REC_FROM 'F'   /* envelope sender, "" for the null sender */
#define QUEUE_REC_PARAMS 'P' /* MAIL FROM parameters as the client sent */
#define QUEUE_REC_ORIG                                                        \
    'O'                       /* a recipient as the client gave it:           \
                                 addr NUL params NUL */
#define QUEUE_REC_RCPT 'R'    /* status octet, addr NUL params NUL */
#define QUEUE_REC_MESSAGE 'M' /* the processed message */
#define QUEUE_REC_END 'E'

#define QUEUE_RCPT_PENDING 'N'
#define QUEUE_RCPT_DONE 'D'
#define QUEUE_RCPT_BOUNCED 'B'

/* What the SMTP front end hands to queue_commit(). Strings are borrowed. */
struct queue_msg {
    const char *qid;
    long long arrival_us; /* when MAIL FROM came */
    const char *client_addr, *client_name, *helo, *auth_user;
    const char *stream; /* stream_header's; NULL or "": none */
    const char *sender, *sender_params;
    const struct msg_rcpt *rcpts; /* the envelope after the chain */
    size_t nrcpts;
    const struct msg_rcpt *orig; /* the envelope as the client gave it */
    size_t norig;
    const char *data;        /* the processed message */
    size_t len;              /* its octets; with iov, the pieces' total */
    const struct iovec *iov; /* or the message in pieces (msg_iov), data */
    size_t niov;             /* then NULL: written without a copy */
};

/* A queue file as read back. Every pointer points into the buffer given
 * to queue_file_parse() and lives as long as it does. */
struct queue_file_rcpt {
    char status;       /* QUEUE_RCPT_* */
    size_t status_off; /* offset of the status octet in the file */
    const char *addr;
    const char *params; /* "" when none */
};

struct queue_file {
    long long arrival_us, queued_us;
    char warned;       /* '-' or 'W' */
    size_t warned_off; /* offset of that octet */
    const char *client_addr, *client_name, *helo, *auth_user; /* "" */
    const char *stream;                                       /* "" */
    const char *sender, *sender_params;
    struct queue_file_rcpt *rcpts; /* owned: queue_file_fini() */
    size_t nrcpts;
    const char **orig; /* pairs: addr, params; owned */
    size_t norig;
    const char *data;
    size_t len;
};

/* queue_file_serialize - append a whole queue file for m (all recipients
 * pending) to out; its T record's queued time is m's arrival. */
int queue_file_serialize(const struct queue_msg *m, struct buf *out,
                         struct err *e);

/* queue_file_parse - check and read a queue file held in buf[0..len).
 * Returns 0 with qf filled, or -1 with ERR_INPUT and the first problem
 * (truncation, bad record, bad checksum, missing record). With head_only
 * the message record is not required to be complete and the checksum is
 * not checked: enough to list the envelope. queue_file_fini() frees what
 * qf owns, also after a failure. */
int queue_file_parse(const char *buf, size_t len, int head_only,
                     struct queue_file *qf, struct err *e);
void queue_file_fini(struct queue_file *qf);

/* queue_file_head - check m (recipients, size, pieces) and append every
 * record of its file up to and including the message record's header,
 * with queued_us as the queued time, to out. The message octets follow
 * it, then the end record queue_file_tail() makes. */
int queue_file_head(const struct queue_msg *m, long long queued_us,
                    struct buf *out, struct err *e);

/* queue_file_tail - the end record (QUEUE_TAIL_LEN octets) of the file
 * that is head[0..len), as queue_file_head() made it, then m's octets. */
void queue_file_tail(const struct queue_msg *m, const char *head, size_t len,
                     char tail[QUEUE_TAIL_LEN]);

/* queue_file_seal - write the end record (QUEUE_TAIL_LEN octets at the
 * end of buf[0..len)) for what comes before it: for tests and fuzzing,
 * which make or change files by hand. */
void queue_file_seal(char *buf, size_t len);

/* queue_file_tail_ok - 1 when the last octets of a file of size len are
 * an end record (the cheap check made for every file at start-up). */
int queue_file_tail_ok(const char *tail, size_t n, size_t len);

/* queue_read_fd - the whole file fd into out (limit max octets). */
int queue_read_fd(int fd, size_t max, struct buf *out, struct err *e);

#endif
