/*
 * auth - SMTP AUTH users and TLS contexts for the SMTP server
 *
 * The password file holds one "user:hash" a line, the hash in any crypt(3)
 * form libcrypt verifies (yescrypt "$y$", SHA-512-crypt "$6$", ...),
 * '#' comments and blank lines allowed; errors are "path:line: reason".
 * A loaded table is read-only and shared by threads; verification uses
 * crypt_r() so threads do not share state, and takes the same time for
 * unknown users (a dummy hash is checked) so user names do not leak.
 */
#ifndef RC_AUTH_H
#define RC_AUTH_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "util/err.h"

/* Longest user name and password, in octets, that the password file,
 * auth_passwd_set() and auth_sasl_plain_decode() accept (RFC 4616 asks for
 * 255 at least); buffers for auth_sasl_plain_decode() need one more. */
#define AUTH_USER_MAX 255
#define AUTH_PASS_MAX 1024

struct auth_table;

struct auth_table *auth_table_load(const char *path, struct err *e);
void auth_table_free(struct auth_table *t);

/* auth_verify - 1 when user's password is pass, 0 when not (or unknown). */
int auth_verify(const struct auth_table *t, const char *user,
                const char *pass);

/* auth_rate - failed AUTH attempts per client across sessions, as
 * Postfix's anvil counts them: a bounded table (slots entries, each an
 * IPv4 address or an IPv6 /64, so one host cannot spread its attempts
 * over the addresses of its own network) whose counts decay at the rate
 * they are limited to. Thread-safe. auth_rate_new() returns NULL with e
 * set; auth_rate_free() accepts NULL. */
struct auth_rate;

struct auth_rate *auth_rate_new(size_t slots, struct err *e);
void auth_rate_free(struct auth_rate *r);

/* auth_rate_over - 1 when one more attempt would make addr (text form)
 * fail more than limit times a minute: its failures count one each and
 * decay at limit a minute, so a client may fail limit times at once and
 * then once every 60/limit seconds. 0 otherwise, or when limit is 0.
 * now_ms is a monotonic clock. Counts nothing. */
int auth_rate_over(struct auth_rate *r, const char *addr, unsigned limit,
                   long long now_ms);

/* auth_rate_name - the entry addr is counted under, printable: an IPv4
 * address ("192.0.2.1", also from ::ffff:192.0.2.1), an IPv6 /64
 * ("2001:db8:1:2::/64"), or "local" for anything else. */
void auth_rate_name(const char *addr, char *out, size_t n);

/* auth_rate_take - count an attempt of addr that is about to be
 * verified: 0 when it may go on, 1 (nothing counted) when addr is at its
 * limit. Counting before the hash is computed keeps parallel sessions
 * from one client under the limit too. When the table is full, the
 * entry of lowest count among those addr may take is replaced. */
int auth_rate_take(struct auth_rate *r, const char *addr, unsigned limit,
                   long long now_ms);

/* auth_rate_refund - uncount an attempt that succeeded: only failures
 * count in the end. */
void auth_rate_refund(struct auth_rate *r, const char *addr, unsigned limit,
                      long long now_ms);

/* auth_passwd_set - add or replace user in path with a new yescrypt (or
 * SHA-512-crypt where yescrypt is unavailable) hash of pass, atomically
 * (temporary file, fsync, rename), keeping other lines as they are and the
 * file mode 0640. */
int auth_passwd_set(const char *path, const char *user, const char *pass,
                    struct err *e);

/* auth_passwd_change - auth_passwd_set() that also says whether the user
 * was there before (*replaced). */
int auth_passwd_change(const char *path, const char *user, const char *pass,
                       int *replaced, struct err *e);

/* auth_user_why - NULL when name (len octets) can be a user in the
 * password file, else why not, as a static string. */
const char *auth_user_why(const char *name, size_t len);

/* auth_sasl_plain_decode - decode an AUTH PLAIN response (base64 of
 * authzid NUL authcid NUL passwd) into user and pass (each of size n).
 * Returns 0, or -1 for malformed input or an authzid different from the
 * authcid. */
int auth_sasl_plain_decode(const char *b64, char *user, char *pass, size_t n);

/* auth_b64_decode/auth_b64_encode - into out (size n); returns the length
 * or -1. Decoding refuses invalid characters and bad padding. */
long auth_b64_decode(const char *in, size_t len, unsigned char *out, size_t n);
long auth_b64_encode(const unsigned char *in, size_t len, char *out, size_t n);

/* auth_tls_server_ctx - a server SSL_CTX with cert and key (PEM), TLS 1.2
 * at least. The key file is refused when it is not a regular file or
 * when other users may read or write it (cfg_secret_check). Errors name
 * the file and OpenSSL's reason. */
SSL_CTX *auth_tls_server_ctx(const char *cert_file, const char *key_file,
                             struct err *e);
/* auth_tls_client_ctx - a client SSL_CTX, TLS 1.2 at least, no
 * certificate verification (opportunistic, as Postfix's "may"). */
SSL_CTX *auth_tls_client_ctx(struct err *e);

#endif
