/*
 * archive_int - what the files of the archive stage share
 *
 * The record (archive_record.c). A sealed record is one block of octets:
 *
 *     "RCARC1"        6  magic
 *     kind            1  'M' message, 'C' checkpoint, 'T' tombstone,
 *                        'O' outcome
 *     flags           1  0, or ARC_FLAG_ENCRYPTED (message records)
 *     seq             8  big-endian, from 1, per writer
 *     prev           32  the hash of the writer's record seq - 1 (zeros
 *                        for seq 1)
 *     writer_len      1  1 .. ARC_WRITER_MAX
 *     writer          w  printable ASCII, no "/" or white space
 *     meta_len        4  big-endian, at most ARC_META_MAX
 *     meta            m  "key value\n" lines (below)
 *     body_len        4  big-endian: the message, zstd-compressed (an
 *                        empty body for the other kinds); with
 *                        ARC_FLAG_ENCRYPTED, that zstd frame encrypted
 *                        (binary OpenPGP or CMS DER) to the key the
 *                        meta's encrypted-to names
 *     body            b
 *     hash           32  SHA-256 of every octet before it
 *
 * so each record's hash covers the hash of the one before it: the hash
 * chain. The meta lines come in a fixed order, each key at most once
 * (rcpt once per recipient, in envelope order); a value has every octet
 * below 0x21, 0x7f and '%' written as %XX, so a line is one line whatever
 * the client sent. arc_record_parse() reads a record back strictly: any
 * length that does not add up, an unknown or repeated key, a size or
 * SHA-256 that does not match the decompressed message, or a record hash
 * that does not match is an error that names the record.
 *
 * Encrypted records (encrypt_to, archive_crypt.c). Only the body is
 * encrypted: the meta (envelope, Subject, Message-ID, size and SHA-256
 * of the message) stays in clear, because search, the index and the
 * journal of outcomes work on it without the private key, and the record
 * hash covers the ciphertext, so verify checks the hash chain of an
 * encrypted store offline, without the private key. What verify cannot
 * check there is that the body holds the message of the meta's size and
 * SHA-256: that needs the key (gpg or openssl cms, then zstd -d and
 * sha256sum).
 *
 * The dir store's few calls beyond struct arc_store_ops (archive_dir.c)
 * let the stage's log append in chain order under its lock and wait for
 * the fsync outside it (group commit).
 */
#ifndef RC_ARCHIVE_INT_H
#define RC_ARCHIVE_INT_H

#include <stddef.h>

#include <openssl/evp.h>

#include "util/buf.h"
#include "util/err.h"
#include "filters/archive/archive_store.h"

#define ARC_MAGIC "RCARC1"
#define ARC_MAGIC_LEN 6
#define ARC_HASH_LEN 32
#define ARC_WRITER_MAX 64
#define ARC_META_MAX (1024 * 1024)
#define ARC_BODY_MAX (512UL * 1024 * 1024) /* a decompressed message */
#define ARC_RCPTS_MAX 100000
#define ARC_NAME_MAX (ARC_WRITER_MAX + 1 + 16 + 1) /* "WRITER/SEQ" */
/* The octets before meta: magic, kind, flags, seq, prev, writer_len. */
#define ARC_HEAD_LEN (ARC_MAGIC_LEN + 1 + 1 + 8 + ARC_HASH_LEN + 1)
#define ARC_FLAG_ENCRYPTED 0x01
#define ARC_TO_MAX 200 /* an encrypted-to value */

enum arc_kind {
    ARC_KIND_MESSAGE = 'M',
    ARC_KIND_CHECKPOINT = 'C',
    ARC_KIND_TOMBSTONE = 'T',
    ARC_KIND_OUTCOME = 'O'
};

/* What a record holds besides struct arc_meta (all borrowed when
 * sealing; pointing into the struct arc_rec when parsed). Unused fields
 * are NULL / 0. */
struct arc_extra {
    /* outcome: the message record this is about, and its final verdict
     * ("reject by antivirus: 554 5.7.1 ..."). tombstone: ref is the first
     * purged record's name. */
    const char *ref;
    const char *verdict;
    /* tombstone: the last purged seq; prev_hash the hash of the record
     * before the first purged one, last_hash of the last purged one. */
    unsigned long long to;
    const unsigned char *prev_hash;
    const unsigned char *last_hash;
    /* checkpoint: the signature (Ed25519, 64 octets) over
     * arc_checkpoint_text() and the key's id (hex of the first 8 octets
     * of SHA-256 of the raw public key). */
    const unsigned char *sig;
    const char *key_id;
    unsigned long long count; /* checkpoint: records of the writer so far */
};

/* One record read back. Free with arc_rec_free(). */
struct arc_rec {
    enum arc_kind kind;
    char writer[ARC_WRITER_MAX + 1];
    unsigned long long seq;
    unsigned char prev[ARC_HASH_LEN];
    unsigned char hash[ARC_HASH_LEN];
    struct arc_meta meta; /* strings point into metabuf */
    struct arc_extra x;   /* the same */
    char *metabuf;        /* owned: the decoded meta values */
    const char **rcpts;   /* owned array; meta.rcpts points to it */
    unsigned char xhash[2][ARC_HASH_LEN]; /* tombstone hashes */
    unsigned char xsig[64];               /* checkpoint signature */
    struct buf msg; /* the decompressed message (message records); an
                       encrypted record's payload as stored (meta's
                       encrypted_to is set then) */
};

/* What arc_record_seal() needs (all borrowed). */
struct arc_seal_in {
    enum arc_kind kind;
    const char *writer;
    unsigned long long seq;
    const unsigned char *prev;   /* ARC_HASH_LEN octets */
    const struct arc_meta *meta; /* time is used for every kind; the rest
                                    for message records (size and sha256
                                    are computed here from data) */
    const struct arc_extra *x;
    const char *data; /* message records: the message */
    size_t len;
    int level; /* zstd level */
    /* encrypt_to: the zstd frame encrypted by encrypt(encrypt_arg, ...)
     * (arc_crypt_encrypt), which says the key used in to. NULL: clear. */
    int (*encrypt)(void *arg, const char *data, size_t len, struct buf *out,
                   char *to, size_t ton, struct err *e);
    void *encrypt_arg;
};

/* arc_record_seal - the record in, appended to out; its hash in hash.
 * 0, or -1 with e set (ERR_INPUT for a bad writer or an oversized field,
 * ERR_LIB for zstd, ERR_NOMEM). */
int arc_record_seal(const struct arc_seal_in *in, struct buf *out,
                    unsigned char hash[ARC_HASH_LEN], struct err *e);

/* The same in two steps, so that the costly part runs outside the
 * writer's lock: arc_record_prepare - the meta lines and the compressed
 * message into pt (of in: kind, meta, x, data, len, level);
 * arc_record_finish - header (in: kind, writer, seq, prev), pt and the
 * hash appended to out. Both 0, or -1 with e. */
struct arc_parts {
    struct buf meta;
    struct buf body;
    int encrypted; /* body is encrypted (ARC_FLAG_ENCRYPTED) */
};
void arc_parts_init(struct arc_parts *pt);
void arc_parts_fini(struct arc_parts *pt);
int arc_record_prepare(const struct arc_seal_in *in, struct arc_parts *pt,
                       struct err *e);
int arc_record_finish(const struct arc_seal_in *in, const struct arc_parts *pt,
                      struct buf *out, unsigned char hash[ARC_HASH_LEN],
                      struct err *e);

/* arc_record_parse - read sealed record p (n octets) strictly into out,
 * which belongs to the caller afterwards (arc_rec_free, also after a
 * failure). -1 with e set (ERR_INPUT, "record WRITER/SEQ: reason" once
 * the header is read) for any flaw. */
int arc_record_parse(const unsigned char *p, size_t n, struct arc_rec *out,
                     struct err *e);
void arc_rec_free(struct arc_rec *r);

/* arc_record_peek - kind, writer, seq and the stored hash of a sealed
 * record without checking it (for a store's listing); -1 when the header
 * cannot be read. */
int arc_record_peek(const unsigned char *p, size_t n, enum arc_kind *kind,
                    char writer[ARC_WRITER_MAX + 1], unsigned long long *seq);

/* arc_name - "WRITER/SEQ" into out (ARC_NAME_MAX + 1). arc_name_parse -
 * the reverse; -1 for a name that is not one. */
void arc_name(char *out, const char *writer, unsigned long long seq);
int arc_name_parse(const char *name, char writer[ARC_WRITER_MAX + 1],
                   unsigned long long *seq);
/* arc_writer_ok - 1 when w can be a writer name. */
int arc_writer_ok(const char *w);
const char *arc_kind_name(enum arc_kind k);

/* arc_checkpoint_text - what a checkpoint's signature covers, into out
 * (size n): the writer, the checkpoint's seq, the hash it follows and
 * its time and count. */
void arc_checkpoint_text(char *out, size_t n, const char *writer,
                         unsigned long long seq, const unsigned char *prev,
                         long long time, unsigned long long count);

/* arc_hex - 2n hex digits and a NUL into out. */
void arc_hex(char *out, const unsigned char *p, size_t n);

/* flt_archive_key_load - an Ed25519 key from a PEM file: the private
 * key (private_half), or for checking, a public key or a private one.
 * key_id gets its id (arc_extra.key_id). 0, or -1 with e (ERR_CONFIG). */
int flt_archive_key_load(const char *path, int private_half, EVP_PKEY **out,
                         char key_id[17], struct err *e);
/* flt_archive_spool_dir - the spool directory of store value store for
 * the archive stage configured by c: spool_directory/SCHEME-HASH. -1 when
 * it does not fit n. */
struct cfg;
int flt_archive_spool_dir(const struct cfg *c, const char *store, char *out,
                          size_t n);
/* flt_arcv_cfg - what flt_archive_store_config() set (archive_verify.c),
 * for the CLI's calls that open a store. */
const struct cfg *flt_arcv_cfg(void);
/* flt_arc_store_ops - the store ops for a store value ("dir:/path") and
 * the spec after the scheme; NULL with e (ERR_CONFIG) for one this build
 * does not have (archive.c). */
const struct arc_store_ops *
flt_arc_store_ops(const char *value, const char **spec, struct err *e);

/* archive_crypt.c: arc_crypt_new - the key of an encrypt_to value
 * ("pgp:FPR", "pgp:ADDRESS", "smime:/path/cert.pem") with pgp_home or
 * ca_file (either may be NULL), checked usable now; what records will
 * name it by ("pgp:FPR", "smime:serial=HEX") into to (size ton). NULL
 * with e (ERR_CONFIG with the engine's reason: expired, revoked, no
 * encryption subkey, wrong key usage). arc_crypt_encrypt - the
 * encrypt callback of struct arc_seal_in (arg: the struct arc_crypt);
 * ERR_TEMP for any failure of the engine. */
struct arc_crypt;
struct arc_crypt *arc_crypt_new(const char *value, const char *pgp_home,
                                const char *ca_file, char *to, size_t ton,
                                struct err *e);
int arc_crypt_encrypt(void *arg, const char *data, size_t len, struct buf *out,
                      char *to, size_t ton, struct err *e);
void arc_crypt_free(struct arc_crypt *k);

/* The dir store's split put (archive_dir.c): arc_dir_append writes the
 * record (not yet durable) and gives the ticket arc_dir_sync waits for;
 * many appends share one fsync. */
int arc_dir_append(void *s, const struct arc_item *it,
                   unsigned long long *ticket, struct err *e);
int arc_dir_sync(void *s, unsigned long long ticket, struct err *e);
/* arc_dir_claim_writer - make writer this process's before its last
 * record is read back: its lock taken (ERR_TEMP when another process
 * holds it), what it holds read again under the lock, a torn tail cut. */
int arc_dir_claim_writer(void *s, const char *writer, struct err *e);
/* arc_dir_segment_of - for verify's messages: the segment file and offset
 * of record name, into out (size n); "" when unknown. */
void arc_dir_where(void *s, const char *name, char *out, size_t n);
/* arc_dir_problems - what the dir store found wrong while reading its
 * segments (a torn or garbled frame, a record out of place), one line
 * each; borrowed, "" when nothing. */
const char *arc_dir_problems(void *s);
/* arc_dir_segments - fn for each segment of writer holding records,
 * oldest first: its number, the first and last seq in it, how many, and
 * whether it is the one the writer appends to. arc_dir_drop_segment -
 * delete one (not the writer's last), its directory synced. */
struct arc_dir_seg {
    unsigned segno;
    unsigned long long first, last;
    size_t count;
    int is_last;
};
int arc_dir_segments(void *s, const char *writer,
                     int (*fn)(void *arg, const struct arc_dir_seg *seg),
                     void *arg, struct err *e);
int arc_dir_drop_segment(void *s, const char *writer, unsigned segno,
                         struct err *e);

/* Tombstones of a purge are written by writer WRITER ARC_PURGE_SUFFIX,
 * a chain of their own: the node's chain belongs to the running daemon.
 * flt_arc_retention - "7y", "90d", "12w", "36m" in seconds. */
#define ARC_PURGE_SUFFIX "~purge"
int flt_arc_retention(const char *s, long long *out);

#endif
