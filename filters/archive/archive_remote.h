/*
 * archive_remote - what the archive stage needs to know of its remote
 * stores: their configuration keys and the journal store's sender
 *
 * The S3 store (archive_s3.c, store = s3://bucket/prefix) and the
 * journaling store (archive_journal.c, store = smtp:[host]:port) read
 * their own keys from the stage's configuration: the stage adds these
 * tables to the ones it validates its chain.d file against, so that a
 * key of theirs is known, typed and documented like its own. Both read
 * "retention" with cfg_raw() and so need not be told whether the stage
 * declares it.
 *
 * The journaling store sends its reports through the chain's notice
 * service (struct stage_env, chain/stage.h): a stage never reaches the
 * next-hop client itself. The stage hands the env to each journal store
 * it opened, before the first put, with arc_journal_set_env(); the
 * store borrows it until close.
 *
 * arc_journal_report() is the pure part of the journaling store: it
 * builds the report a put sends, and is unit-tested on its own.
 */
#ifndef RC_ARCHIVE_REMOTE_H
#define RC_ARCHIVE_REMOTE_H

#include <stddef.h>

#include "chain/stage.h"
#include "filters/archive/archive_store.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"

/* The entries of the two tables below, also spliced into the archive
 * stage's own option table (archive.c), so that one definition serves
 * the stores, the stage's validation and relaychain config. */
#define ARC_S3_OPTION_ENTRIES                                                 \
    {"s3_endpoint",                                                           \
     CFG_STRING,                                                              \
     NULL,                                                                    \
     "the S3 service, http(s)://host[:port], path-style requests",            \
     NULL,                                                                    \
     0,                                                                       \
     0,                                                                       \
     0},                                                                      \
        {"s3_region", CFG_STRING,                                             \
         "us-east-1", "the region the requests are signed for",               \
         NULL,        0,                                                      \
         0,           0},                                                     \
        {"s3_credentials_file",                                               \
         CFG_PATH,                                                            \
         NULL,                                                                \
         "access_key_id = and secret_access_key = lines, readable by its "    \
         "owner "                                                             \
         "only",                                                              \
         NULL,                                                                \
         0,                                                                   \
         0,                                                                   \
         0},                                                                  \
        {"s3_object_lock",                                                    \
         CFG_BOOL,                                                            \
         "no",                                                                \
         "store each record in Object Lock COMPLIANCE mode until now + "      \
         "retention",                                                         \
         NULL,                                                                \
         0,                                                                   \
         0,                                                                   \
         0},                                                                  \
        {"s3_timeout",  CFG_TIME,                                             \
         "30s",         "how long one S3 request may take",                   \
         NULL,          1000,                                                 \
         3600 * 1000LL, 0},                                                   \
        {"s3_list_page", CFG_INT,                                             \
         "1000",         "keys asked for in one ListObjectsV2 request",       \
         NULL,           1,                                                   \
         1000,           0},
#define ARC_JOURNAL_OPTION_ENTRIES                                            \
    {"journal_recipient",                                                     \
     CFG_STRING,                                                              \
     NULL,                                                                    \
     "the mailbox an smtp: store sends its journal reports to",               \
     NULL,                                                                    \
     0,                                                                       \
     0,                                                                       \
     0},                                                                      \
        {"journal_sender",                                                    \
         CFG_STRING,                                                          \
         NULL,                                                                \
         "the From: of the journal reports (the envelope sender is <>); "     \
         "default: MAILER-DAEMON",                                            \
         NULL,                                                                \
         0,                                                                   \
         0,                                                                   \
         0},                                                                  \
        {"journal_helo",                                                      \
         CFG_STRING,                                                          \
         NULL,                                                                \
         "the name the journal store greets with and puts in Message-IDs; "   \
         "default: the host name",                                            \
         NULL,                                                                \
         0,                                                                   \
         0,                                                                   \
         0},

/* The S3 store's keys: s3_endpoint, s3_region, s3_credentials_file,
 * s3_object_lock, s3_timeout, s3_list_page. */
extern const struct cfg_option arc_s3_options[];

/* The journaling store's keys: journal_recipient, journal_sender,
 * journal_helo. */
extern const struct cfg_option arc_journal_options[];

/* arc_s3_keeps_all - 1 when the S3 store s (from arc_store_s3.open) was
 * opened with s3_object_lock = yes: its remove then refuses every
 * record (ERR_CONFIG), as the server would, so the stage should not
 * purge at all; 0 otherwise. */
int arc_s3_keeps_all(const void *s);

/* arc_s3_list_parse - read one ListObjectsV2 answer (body, len octets,
 * from the server: input) and call fn(arg, key + strip) for each key at
 * or after from (when not NULL), as the S3 store's list does. Every key
 * must start with kprefix, have a name after its first strip octets and
 * come after last (the last key of the page before, "" at first; last
 * gets each key). token gets the next continuation token, "" when the
 * answer was the last page; *keys the number of keys on the page. 0, fn's
 * non-zero value, or -1 with e (ERR_IO for an answer that breaks these
 * rules or is not a ListBucketResult). Public for the fuzz target. */
int arc_s3_list_parse(const char *body, size_t len, const char *kprefix,
                      size_t strip, const char *from, struct buf *last,
                      struct buf *token, size_t *keys,
                      int (*fn)(void *arg, const char *name), void *arg,
                      struct err *e);

/* arc_journal_set_env - lend the journal store s (from
 * arc_store_smtp.open, not check_only) the chain's notice service; env
 * is borrowed until close. It makes the store's notifier for its host
 * (env->notifier_new, which checks and does not connect). -1 with e
 * (ERR_CONFIG) when env offers no notice service. A put before this
 * fails with ERR_CONFIG. */
int arc_journal_set_env(void *s, const struct stage_env *env, struct err *e);

/* The envelope of a journal report. */
struct arc_journal_from {
    const char *from; /* the report's From: address; NULL: the null
                         sender's "MAILER-DAEMON" form */
    const char *to;   /* the journal recipient, for the To: header */
    const char *host; /* this node's name, for the Message-ID */
};

/* arc_journal_report - append to out the journal report of message data
 * (len octets) whose envelope m describes, record name: a MIME message
 * (CRLF line ends) of type multipart/mixed with a text/plain part that
 * lists the envelope (Sender:, one Recipient: line each, Bcc included,
 * Message-ID, Queue-ID, Client, Auth-User, Point, Time, SHA-256, Record)
 * and a message/rfc822 part that holds data exactly as given, declared
 * 7bit, or 8bit when it has octets over 127. An envelope value that
 * could break the report's lines (a CR, LF or other control character)
 * is written with those characters as "?"; the rfc822 part is never
 * changed. The boundary is one that data does not contain. 0, or -1
 * with e (ERR_LIMIT from out's limit, ERR_NOMEM). */
int arc_journal_report(const struct arc_journal_from *f,
                       const struct arc_meta *m, const char *name,
                       const char *data, size_t len, struct buf *out,
                       struct err *e);

#endif
