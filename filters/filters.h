/*
 * filters - the stage types built into relaychain
 *
 * Each filters/<name>.c (or folder) exports one const struct stage_type;
 * filters/registry.c lists them in flt_registry, which the programs hand
 * to the chain. Apart from the few functions below that the admin CLI and
 * the fuzzers call, nothing else of a filter is visible outside its file.
 */
#ifndef RC_FILTERS_H
#define RC_FILTERS_H

#include <stdio.h>

#include "util/buf.h"
#include "util/err.h"
#include "chain/registry.h"
#include "chain/stage.h"
#include "filters/archive/archive_store.h"

struct regmap;

extern const struct stage_type flt_rewrite_type;
extern const struct stage_type flt_dkim_type;
extern const struct stage_type flt_disclaimer_type;
extern const struct stage_type flt_antivirus_type;
extern const struct stage_type flt_antispam_type;
/* ---- archive stage (filters/archive/) */
extern const struct stage_type flt_archive_type;
/* ---- encrypt */
extern const struct stage_type flt_encrypt_type;
/* ---- end encrypt */
/* ---- track: open and click tracking, List-Unsubscribe (filters/track/) */
extern const struct stage_type flt_track_type;
/* ---- end track */

/* The built-in types in registry order, for a list's initializer: the
 * one list, so a test registry that adds a stage stays in step. */
#define FLT_BUILTIN_TYPES                                                     \
    &flt_rewrite_type, &flt_dkim_type, &flt_disclaimer_type,                  \
        &flt_antivirus_type, &flt_antispam_type, &flt_archive_type,           \
        &flt_encrypt_type, /* ---- track */ &flt_track_type

/* flt_registry - the built-in types, without services (filters/registry.c):
 * a program copies it, fills in env and hands the copy to registry_set(). */
extern const struct stage_registry flt_registry;

/* flt_rewrite_test - for "relaychain rewrite-test": look addr up in each
 * table the rewrite stage st has and print one line per table,
 * "sender_rules: IN -> OUT (file:line)" or "sender_rules: IN: no match"
 * (a result that is not a valid address is marked refused). Returns 0,
 * or -1 when st is not a rewrite stage or a lookup fails. */
int flt_rewrite_test(const struct stage *st, const char *addr, FILE *out,
                     struct err *e);
/* flt_rewrite_test_matches - the same, with the number of tables in
 * which a rule matched in *matched, so that the command can exit 1 when
 * none did, as postmap -q does. */
int flt_rewrite_test_matches(const struct stage *st, const char *addr,
                             FILE *out, size_t *matched, struct err *e);

/* flt_rewrite_header_value - rewrite each mailbox of an address header
 * value (raw, folding kept) with rm. When an address changes, *changed is
 * 1 and the whole new value, folded, is appended to out; otherwise
 * *changed is 0 and out is untouched. Returns 0, or -1 with e set (a
 * result that is not a valid address, a line over 998 octets, the limit
 * of out). GMime must be initialised. The stage's own code path; exported
 * for the fuzzer. */
int flt_rewrite_header_value(const struct regmap *rm, const char *value,
                             struct buf *out, int *changed, struct err *e);

/* The dkim stage's keys and tables, for "relaychain dkim" and the fuzzer.
 *
 * flt_dkim_key_load - read and check a PEM private key (PKCS#1 or PKCS#8,
 * RSA of 1024 bits or more, or Ed25519). With check_mode, a file that
 * other users may read or write is refused, naming the file, its mode and
 * the chmod that fixes it. Returns the key (free it with
 * flt_dkim_key_free) or NULL with e set. */
struct flt_dkim_key;
struct flt_dkim_key *flt_dkim_key_load(const char *path, int check_mode,
                                       struct err *e);
void flt_dkim_key_free(struct flt_dkim_key *k);
const char *flt_dkim_key_alg(const struct flt_dkim_key *k);  /* a= value */
const char *flt_dkim_key_type(const struct flt_dkim_key *k); /* k= value */
int flt_dkim_key_bits(const struct flt_dkim_key *k);
/* flt_dkim_key_record - "v=DKIM1; k=rsa; p=..." for the public half;
 * borrowed. flt_dkim_key_pem_text - the key as PKCS#8 PEM; borrowed. */
const char *flt_dkim_key_record(const struct flt_dkim_key *k);
const char *flt_dkim_key_pem_text(const struct flt_dkim_key *k);
/* flt_dkim_key_matches - 1 when der (a decoded p= value: an RSA
 * SubjectPublicKeyInfo or RSAPublicKey, or 32 raw Ed25519 octets) is the
 * public half of k. */
int flt_dkim_key_matches(const struct flt_dkim_key *k,
                         const unsigned char *der, size_t len);

/* flt_dkim_tables_parse - an OpenDKIM KeyTable and SigningTable (refile:
 * wildcard patterns when refile is set) from text, without loading the
 * keys; errors are "path:line: reason". flt_dkim_tables_lookup - the key
 * names (and table lines) that sign for addr, at most max; returns how
 * many. */
struct flt_dkim_tables;
struct flt_dkim_tables *
flt_dkim_tables_parse(const char *kt_path, const char *kt_text, size_t kt_len,
                      const char *st_path, int refile, const char *st_text,
                      size_t st_len, struct err *e);
size_t flt_dkim_tables_lookup(const struct flt_dkim_tables *t,
                              const char *addr, const char **names,
                              unsigned *lines, size_t max);
void flt_dkim_tables_free(struct flt_dkim_tables *t);

/* flt_dkim_tag_value - the value of tag in a DKIM tag list (a signature
 * or a key record), white space removed, into out (size n; a longer value
 * is cut short); 1 when the tag is there, else 0. The list is read as RFC
 * 6376 3.2 says (filters/dkim/dkim_sig.c): one that is not a tag list (a
 * malformed name, a tag without "=", a tag twice) has no tags. */
int flt_dkim_tag_value(const char *list, const char *tag, char *out, size_t n);

/* flt_dkim_name_ok - 1 when s can be a d= domain (selector 0) or an s=
 * selector (selector 1): dot-separated labels of letters, digits and
 * hyphens (and underscores in a selector). */
int flt_dkim_name_ok(const char *s, int selector);

/* dkim_signed, a key of the stages that edit a message before it is
 * signed (rewrite, disclaimer, dkim): skip a message whose arriving
 * signature the edit would break, or edit it all the same. */
enum flt_dkim_signed_action { FLT_DKIM_SIGNED_SKIP, FLT_DKIM_SIGNED_EDIT };
extern const char *const flt_dkim_signed_choices[];

/* flt_dkim_signed - for the stages that run before signing: 1 when m
 * arrived with a DKIM-Signature that changing field would break (its h=
 * names field, without regard to case; an h= too long to read counts as
 * naming every field), or, with field NULL, one that a change of the
 * body would break: every signature covers the body, but one whose bh=
 * does not match the body any more (SHA-256, no l=) is broken already
 * and does not count, so a "DKIM-Signature:" field a sender makes up does
 * not stop a footer unless it carries the body's true hash. A field
 * without the tags RFC 6376 requires (v a b bh d h s) never counts. who (size
 * n) then gets "d=..., s=..." of that signature, printable, for a log note. 0
 * when there is none. The header hash cannot be checked without the signer's
 * key (DNS): a field named in h= counts even when the signature is forged. */
int flt_dkim_signed(const struct msg *m, const char *field, char *who,
                    size_t n);

/* A key and its DNS record, for "relaychain dkim" (dkim/dkim_record.c).
 *
 * flt_dkim_keygen_pem - a new key as PKCS#8 PEM: Ed25519 with ed25519,
 * else RSA of bits bits (the caller checks the size). Returns the text,
 * *len octets and a NUL, to be freed with flt_dkim_pem_free(), which
 * wipes it; NULL with e set ("key generation failed: REASON").
 * flt_dkim_key_zone - the record of key in opendkim-genkey's zone-file
 * form, lines of "..." strings for SELECTOR._domainkey; a new string the
 * caller frees, NULL when out of memory.
 * flt_dkim_txt_record - the record in text, into out (size n): the
 * quoted strings of a zone-file entry joined (";" comments outside them
 * skipped), or text itself with its line ends removed when it has no
 * quotes. 0, or -1 for unbalanced quotes or a record longer than n - 1.
 * flt_dkim_key_test - record rec against key (read from keypath, named
 * in the findings): appends the findings to out, one line each starting
 * "NAME: ". Returns 0 when the record verifies the key's signatures, 1
 * when not, -1 with e set when out is full.
 * flt_dkim_key_test_dns - the same for the record published at
 * SELECTOR._domainkey.DOMAIN (name), fetched and checked by libopendkim;
 * 1 without a finding when libopendkim does not start. */
char *flt_dkim_keygen_pem(int ed25519, long bits, size_t *len, struct err *e);
void flt_dkim_pem_free(char *pem, size_t len);
char *flt_dkim_key_zone(const struct flt_dkim_key *key, const char *domain,
                        const char *selector);
int flt_dkim_txt_record(const char *text, char *out, size_t n);
int flt_dkim_key_test(const struct flt_dkim_key *key, const char *keypath,
                      const char *name, const char *rec, struct buf *out,
                      struct err *e);
int flt_dkim_key_test_dns(const struct flt_dkim_key *key, const char *keypath,
                          const char *domain, const char *selector,
                          const char *name, struct buf *out, struct err *e);

/* The antivirus stage's parsers, for the fuzzer and the tests.
 *
 * flt_antivirus_classify - what a detection name means: returns
 * FLT_ANTIVIRUS_UNCHECKED for libclamav's "could not scan" heuristics
 * (Heuristics.Limits.Exceeded.*, Heuristics.Encrypted.*) with the reason
 * in why, FLT_ANTIVIRUS_TIMEOUT for the one of them that the same bytes
 * may pass later (MaxScanTime), FLT_ANTIVIRUS_INFECTED with the printable name
 * in why otherwise. clamd says whose limits they are (clamd.conf's or ours).
 * flt_antivirus_clamd_reply - one clamd INSTREAM answer ("stream: OK",
 * "stream: NAME FOUND", "... ERROR"); 0 with *status and what (size n)
 * set, -1 with e set for an error answer (StreamMaxLength is unchecked,
 * not an error). flt_antivirus_boundaries - the distinct boundary
 * parameter values in s, at most max, each NUL-terminated in out[i];
 * returns how many. */
enum flt_antivirus_status {
    FLT_ANTIVIRUS_CLEAN,
    FLT_ANTIVIRUS_INFECTED,
    FLT_ANTIVIRUS_UNCHECKED, /* never scannable whole: the same bytes hit
                                the same limit again */
    FLT_ANTIVIRUS_TIMEOUT    /* out of scan time: may pass when the scanner
                                is less loaded */
};
#define FLT_ANTIVIRUS_WHAT_MAX 200
#define FLT_ANTIVIRUS_BOUNDARY_SIZE 201 /* 200 octets and the NUL */
int flt_antivirus_classify(const char *name, int clamd, char *why, size_t n);
int flt_antivirus_clamd_reply(const char *reply, size_t len,
                              enum flt_antivirus_status *status, char *what,
                              size_t n, struct err *e);
size_t flt_antivirus_boundaries(const char *s, size_t n,
                                char (*out)[FLT_ANTIVIRUS_BOUNDARY_SIZE],
                                size_t max);

/* flt_antivirus_info - what "relaychain status" says about antivirus
 * stage st: the clamd address, or the libclamav database in force (its
 * version and build time, 0 when libclamav does not know them, and the
 * signature count; loaded 0 while missing_database = tempfail waits for
 * one). Strings are borrowed from st. Returns -1 when st is not an
 * antivirus stage. */
struct flt_antivirus_info {
    const char *clamd;              /* engine = clamd: clamd_socket */
    const char *database_directory; /* engine = libclamav */
    int loaded;
    long long version;
    long long built; /* seconds since the epoch */
    unsigned signatures;
};
int flt_antivirus_info(const struct stage *st,
                       struct flt_antivirus_info *info);

/* ---- archive stage: for "relaychain archive" (filters/archive/).
 *
 * flt_archive_stage_store - the store value, checkpoint_key and
 * retention (NULL when unset) of archive stage st; -1 when st is not
 * one. Borrowed.
 *
 * flt_archive_verify - check every writer's hash chain, every record and
 * every checkpoint signature of the store (a store value, "dir:/path"),
 * with the public key in pubkey (PEM; a private key file is read for its
 * public half; NULL: signatures are counted as unchecked). Returns 0 with
 * r filled (r->problems 0: the store verifies; r->text names each finding,
 * first first), or -1 with e when the store cannot be read at all. Free r
 * with flt_archive_report_fini(). With from (seconds since the epoch;
 * 0: all), each writer is walked from the last signed checkpoint before
 * its first record at or after from: the signature vouches for what
 * came before it, which is not read.
 *
 * flt_archive_status - what the store holds, per writer, appended to out
 * as lines of text. */
struct flt_archive_report {
    unsigned long long records, messages, outcomes, checkpoints, tombstones;
    unsigned long long writers;
    unsigned long long unchecked; /* checkpoints not checked: no key */
    unsigned long long purged;    /* records gone under a tombstone */
    unsigned long long skipped;   /* before the --from checkpoint */
    unsigned long long encrypted; /* messages encrypted to a key
                                     (encrypt_to): their hash chain is
                                     checked, their message needs the key */
    unsigned long long problems;
    double seconds;
    struct buf text;
};
int flt_archive_stage_store(const struct stage *st, const char **store,
                            const char **key, const char **retention);
int flt_archive_verify(const char *store, const char *pubkey, long long from,
                       struct flt_archive_report *r, struct err *e);
void flt_archive_report_fini(struct flt_archive_report *r);
int flt_archive_status(const char *store, struct buf *out, struct err *e);
/* flt_archive_store_config - the configuration of the archive stage that
 * names the store the next flt_archive_* calls open (NULL: none): an
 * s3:// store reads its endpoint and credentials there, and status the
 * spool's backlog. Borrowed until the next call. */
void flt_archive_store_config(const struct cfg *c);

/* flt_archive_purge - for a dir: store: drop, oldest first, each whole
 * segment of a writer whose newest record is older than retention ("7y",
 * "90d") before now (seconds since the epoch), never the segment a writer
 * appends to; first a tombstone naming the range and the hashes on both
 * sides of it is made durable in the writer's purge chain (WRITER~purge),
 * so verify still passes. 0 with r filled, or -1 with e. */
struct flt_archive_purge_report {
    unsigned long long writers, segments, records;
};
int flt_archive_purge(const char *store, const char *retention, long long now,
                      struct flt_archive_purge_report *r, struct err *e);

/* The SQLite index (filters/archive/archive_index.c), a file of its own
 * (index NULL: ROOT/index.sqlite of a dir:/ROOT store) brought up to date
 * from the store before each search.
 *
 * flt_archive_reindex - add what the index lacks (full: rebuild it);
 * *added records. flt_archive_search - fn for each message record
 * matching q (NULL/0 fields match everything; sender and recipient whole
 * addresses, any case; message_id and subject substrings; since and
 * until seconds since the epoch, until exclusive), in time order.
 * flt_archive_export - the same messages into dir as NAME.eml files or
 * into the mbox file mbox (exactly one of them), with a manifest file
 * (name, SHA-256, size, the checkpoint that covers it); new files only.
 * Each returns 0, or -1 with e. */
struct flt_archive_query {
    const char *sender, *recipient, *message_id, *subject;
    long long since, until;
};
struct flt_archive_hit {
    const char *name, *point, *qid, *message_id, *subject, *sender;
    const char *rcpts;      /* every recipient, space-separated */
    const char *sha256;     /* hex */
    const char *checkpoint; /* the first checkpoint after it, or NULL */
    long long time;
    size_t size;
};
int flt_archive_reindex(const char *store, const char *index, int full,
                        unsigned long long *added, struct err *e);
int flt_archive_search(const char *store, const char *index,
                       const struct flt_archive_query *q,
                       int (*fn)(void *arg, const struct flt_archive_hit *hit),
                       void *arg, struct err *e);
int flt_archive_export(const char *store, const char *index,
                       const struct flt_archive_query *q, const char *dir,
                       const char *mbox, const char *manifest,
                       unsigned long long *count, struct err *e);

/* flt_archive_walk - read every record of the store (or only the one
 * named only), each checked as verify checks it, and hand it to fn in
 * the store's order; fn returning non-zero stops the walk. 0 (or what
 * fn returned when it stopped it with a positive value), or -1 with e at
 * the first record that does not read back. */
struct flt_archive_entry {
    const char *name;
    const char *kind;            /* "message", "outcome", ... */
    const struct arc_meta *meta; /* message records; time for all */
    const char *ref, *verdict;   /* outcome records */
    const char *data; /* message records: the message (encrypted ones,
                         meta->encrypted_to set: the payload) */
    size_t len;
};
int flt_archive_walk(const char *store, const char *only,
                     int (*fn)(void *arg, const struct flt_archive_entry *ent),
                     void *arg, struct err *e);
/* ---- encrypt: for "relaychain keys" (filters/encrypt/encrypt.c)
 *
 * flt_encrypt_keys_lookup - what encrypt stage st does for addr: its
 * policy (and the policy_map line), every key and certificate found for
 * it, usable or refused and why ("expired", "revoked", "wrong key usage
 * (no keyEncipherment)", "untrusted ..."), and the one it would use,
 * appended to out as lines. flt_encrypt_keys_list - every key and
 * certificate of the stage, usable or refused. 0, or -1 with e set when
 * st is not an encrypt stage or a keyring cannot be read. */
int flt_encrypt_keys_lookup(const struct stage *st, const char *addr,
                            struct buf *out, struct err *e);
int flt_encrypt_keys_list(const struct stage *st, struct buf *out,
                          struct err *e);
/* ---- end encrypt */

#endif
