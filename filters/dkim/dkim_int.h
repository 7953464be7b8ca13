/*
 * dkim_int - what the parts of the dkim stage share
 *
 * The stage is one folder: dkim.c (the stage type: options, init, whose
 * mail, run), dkim_keys.c (keys and the OpenDKIM tables), dkim_sign.c
 * (which keys sign a message, the signatures that arrived, signing and
 * the self-check), dkim_sig.c (the signer and verifier) and
 * dkim_record.c (a new key and its DNS record, for "relaychain dkim").
 * Nothing here is seen outside the folder but through filters.h.
 */
#ifndef RC_DKIM_INT_H
#define RC_DKIM_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <opendkim/dkim.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/cidr.h"
#include "util/err.h"
#include "msg/msg.h"
#include "chain/stage.h"
#include "filters/dkim/dkim_sig.h"
#include "filters/filters.h"

#define FLT_DKIM_TABLE_MAX (16 * 1024 * 1024) /* octets of one table file */
#define FLT_DKIM_LINE_MAX 4096                /* octets of one table line */
#define FLT_DKIM_ENTRIES_MAX 100000           /* lines of one table */
#define FLT_DKIM_KEYFILE_MAX (64 * 1024)      /* octets of one key file */
#define FLT_DKIM_SIGS_MAX 8       /* signatures one message may get */
#define FLT_DKIM_DOMAIN_MAX 253   /* octets of d= */
#define FLT_DKIM_SELECTOR_MAX 253 /* octets of s= */
#define FLT_DKIM_SIGNER_MAX 320   /* octets of i= */
#define FLT_DKIM_ADDR_MAX 512     /* octets of a signing address */
#define FLT_DKIM_RECORD_MAX 2048  /* octets of a key's DNS record */
#define FLT_DKIM_LINE_LIMIT 998   /* RFC 5322 line limit, without CRLF */
#define FLT_DKIM_HDRS_MAX 64      /* names in sign_headers */
#define FLT_DKIM_WHY_MAX 768      /* a reason for a log note */
#define FLT_DKIM_HDR_PREFIX "DKIM-Signature: "

/* One private key, loaded and checked. */
struct flt_dkim_key {
    char *path;
    int alg; /* DKIM_SIGN_RSASHA256 or DKIM_SIGN_ED25519SHA256 */
    int bits;
    char *pem; /* PKCS#8 PEM, for "dkim testkey"; cleansed on free */
    size_t pem_len;
    char *record; /* "v=DKIM1; k=rsa; p=..." */
    EVP_PKEY *pkey;
    EVP_PKEY *pub;                /* decoded from the record's p= octets */
    struct flt_dkim_sig_key *sig; /* pkey and pub, ready to sign */
};

/* A key table line: name domain:selector:path. */
struct flt_dkim_kt {
    char *name;
    char *domain; /* "%" is the signing address's domain */
    char *selector;
    char *path; /* as written, relative to the key table */
    unsigned line;
    struct flt_dkim_key *key;
};

/* A signing table line: pattern name [signer]. */
struct flt_dkim_st {
    char *pattern; /* lower case */
    char *name;    /* key table name, or "%" */
    char *signer;  /* i= template, or NULL */
    unsigned line;
    size_t kt; /* index in keys, or SIZE_MAX when name is "%" */
};

struct flt_dkim_tables {
    char *kt_path;
    char *st_path;
    int refile;
    struct flt_dkim_kt *keys; /* file order */
    size_t nkeys, keys_cap;
    size_t *keys_by_name;     /* indexes, by name without regard to case */
    struct flt_dkim_st *sigs; /* file order */
    size_t nsigs, sigs_cap;
    size_t *sigs_by_pattern; /* flat files: by pattern, then line */
};

enum flt_dkim_source { FLT_DKIM_FROM, FLT_DKIM_SENDER, FLT_DKIM_ENVELOPE };

struct flt_dkim {
    struct flt_dkim_tables *tables; /* NULL in the short form */
    struct flt_dkim_key *key;       /* the short form's key */
    char *domain;                   /* the short form's domain, lower case */
    const char *selector;           /* borrowed from the cfg */
    enum flt_dkim_source source;
    enum flt_dkim_canon hcanon, bcanon;
    int encode;
    uint64_t ttl;           /* seconds; 0: no x= */
    DKIM_LIB *verify_lib;   /* self_check = libopendkim; else NULL */
    const char **sign_hdrs; /* NULL-terminated, borrowed names */
    const char **oversign_hdrs;
    int dkim_edit;                    /* dkim_signed = edit */
    int sign_all;                     /* sign_mail = all */
    struct cidr_list *internal_hosts; /* NULL: the front end's mynetworks */
    const char *const *mta_names;     /* borrowed from the cfg */
    size_t nmta_names;
};

/* One signature to make on one message. */
struct flt_dkim_plan {
    const struct flt_dkim_key *key;
    char domain[FLT_DKIM_DOMAIN_MAX + 1];
    char selector[FLT_DKIM_SELECTOR_MAX + 1];
    char signer[FLT_DKIM_SIGNER_MAX + 1]; /* "" for none */
};

/* dkim_keys.c */
size_t flt_dkim_find_key(const struct flt_dkim_tables *t, const char *name);
int flt_dkim_is_dns_name(const char *s, size_t max, int underscore);
int flt_dkim_is_header_name(const char *s);
size_t flt_dkim_lookup(const struct flt_dkim_tables *t, const char *addr,
                       const struct flt_dkim_st **out, size_t max);
int flt_dkim_lower(int c);
char *flt_dkim_strndup_lower(const char *s, size_t n);
struct flt_dkim_tables *flt_dkim_tables_load(const struct cfg *c,
                                             struct err *e);

/* dkim_sign.c */
int flt_dkim_crlf(const struct buf *raw, struct buf *conv, const char **wire,
                  size_t *wire_len, struct err *e);
DKIM_CBSTAT flt_dkim_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf,
                                size_t buflen);
int flt_dkim_long_line(const char *p, size_t n, int *in_header);
size_t flt_dkim_plans(const struct flt_dkim *fd, const struct msg *m,
                      struct flt_dkim_plan *plans, char *why, size_t wn);
/* flt_dkim_prescreen - the self-check verifies only the signatures the
 * stage just made; any other is ignored, so no key is looked up for it. */
DKIM_CBSTAT flt_dkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs);
int flt_dkim_self_check(const struct flt_dkim *fd, const struct msg *m,
                        const struct flt_dkim_plan *plans, size_t nplans,
                        const char *wire, size_t wire_len,
                        const struct flt_dkim_body_memo *memo, char *why,
                        size_t wn, struct err *e);
int flt_dkim_sign_one(const struct flt_dkim *fd, const struct flt_dkim_plan *p,
                      const char *wire, size_t wire_len,
                      struct flt_dkim_body_memo *memo,
                      const struct stage_env *env, struct buf *out,
                      struct err *e);
int flt_dkim_wire(const struct msg *m, struct buf *raw, struct buf *conv,
                  const char **wire, size_t *wire_len, struct err *e);

#endif
