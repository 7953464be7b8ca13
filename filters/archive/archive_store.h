/*
 * archive_store - where the archive stage's records go
 *
 * The archive stage (archive.c) turns each message into a sealed record:
 * the octets of one record, compressed, linked into its writer's hash
 * chain and, with encrypt_to, encrypted (archive_record.c). A store keeps
 * sealed records under their names and hands them back; it does not look
 * inside them, except the journaling store, which shows the message and
 * its envelope to a mailbox and so is also handed what the record says.
 *
 * Names. Each relaychaind node writes one chain per store (two archive
 * stages of one chain that name the same store share it): a record is
 * named "WRITER/SEQ", WRITER the node's archive_node (printable, no "/"),
 * SEQ sixteen lower-case hex digits counting from 1. Names sort in chain
 * order within a writer. Checkpoints and tombstones are records too.
 *
 * Threads. A store is opened once per stage load and used by many threads
 * at once: put, get, list and remove must be thread-safe.
 *
 * Errors. -1 with e set: ERR_IO or ERR_TEMP for a fault that may pass
 * (the stage tempfails the message when required = yes, or keeps the
 * record in its spool when required = no), ERR_CONFIG for a bad spec,
 * ERR_INPUT from get for a name the store does not hold.
 */
#ifndef RC_ARCHIVE_STORE_H
#define RC_ARCHIVE_STORE_H

#include <stddef.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"

/* What one record says about its message (all borrowed). */
struct arc_meta {
    long long time;           /* seconds since the epoch, when archived */
    const char *point;        /* the archive stage's instance name */
    const char *qid;          /* may be NULL */
    const char *message_id;   /* may be NULL */
    const char *subject;      /* may be NULL */
    const char *client_addr;  /* may be NULL */
    const char *client_name;  /* may be NULL */
    const char *auth_user;    /* may be NULL */
    const char *sender;       /* envelope sender, "" for <> */
    const char *const *rcpts; /* every envelope recipient, Bcc included */
    size_t nrcpts;
    const char *verdicts; /* "antivirus=continue rewrite=continue", or "" */
    size_t size;          /* octets of the message */
    unsigned char sha256[32]; /* of the message octets */
    /* encrypt_to: the key the record's body is encrypted to ("pgp:FPR",
     * "smime:serial=HEX"); NULL: in clear. */
    const char *encrypted_to;
};

/* One record handed to put (all borrowed). */
struct arc_item {
    const char *name;            /* "WRITER/SEQ" */
    const unsigned char *sealed; /* the record as stored */
    size_t sealed_len;
    /* For stores that show the message (smtp): NULL for checkpoints and
     * tombstones, and when the record was read back from a spool. */
    const struct arc_meta *meta;
    const char *data; /* the message octets as archived */
    size_t len;
};

struct arc_store_ops {
    const char *scheme; /* "dir", "s3", "smtp": the prefix of store = */
    /* open - spec is the store value after "scheme:" ("/var/lib/...",
     * "//bucket/prefix", "[host]:port"); c the stage's configuration, for
     * the store's own keys (s3_endpoint ...). With check_only, check the
     * spec and keys without contacting anything. */
    void *(*open)(const char *spec, const struct cfg *c, int check_only,
                  struct err *e);
    /* put - make the record durable under it->name: 0 only when it is. */
    int (*put)(void *s, const struct arc_item *it, struct err *e);
    /* get - append record name's octets to out. NULL for a store that
     * cannot read back (smtp). */
    int (*get)(void *s, const char *name, struct buf *out, struct err *e);
    /* list - fn(arg, name) for each record name of writer (every writer
     * when NULL) in name order, from name from on (all when NULL); fn
     * returning non-zero stops the walk and list returns that value. NULL
     * for a store that cannot read back. */
    int (*list)(void *s, const char *writer, const char *from,
                int (*fn)(void *arg, const char *name), void *arg,
                struct err *e);
    /* remove - delete record name (purge past retention: the stage has
     * written its tombstone first). NULL when the store keeps everything
     * (S3 Object Lock, a journal mailbox). */
    int (*remove)(void *s, const char *name, struct err *e);
    void (*close)(void *s);
};

extern const struct arc_store_ops arc_store_dir;  /* archive_dir.c */
extern const struct arc_store_ops arc_store_s3;   /* archive_s3.c */
extern const struct arc_store_ops arc_store_smtp; /* archive_journal.c */

#endif
