/*
 * smtpc_tls - the next-hop client's TLS settings, certificate checks,
 * the relay's address and credentials
 *
 * Part of the SMTP transport (smtpc_transport.h); smtpc.c runs STARTTLS
 * and calls smtpc_tls_peer_check() after the handshake; when a pool is
 * made it parses next_hop's host and port with smtpc_smtp_parse() and
 * loads next_hop_auth_file with smtpc_auth_load().
 * nexthop.c checks the configuration's keys with the parsers here.
 *
 * Certificates, as Postfix's smtp_tls_security_level: may and encrypt
 * do not verify them; verify requires a chain to a trust anchor of
 * next_hop_tls_ca_file (or the system's store), secure that and the
 * host name too: next_hop_tls_name, else the host of next_hop (an
 * address literal has no name to check, so secure then needs
 * next_hop_tls_name). OpenSSL checks the chain and the name during the
 * handshake without failing it (SSL_VERIFY_NONE keeps the result), and
 * smtpc_tls_peer_check() reads the result afterwards so that the reply
 * says why: "4.7.5 Server certificate not verified: host[addr]:port:
 * certificate has expired", as Postfix logs it. next_hop_tls_fingerprint
 * pins the SHA-256 digest of the certificate or of its public key: with
 * encrypt it replaces the chain check (Postfix's "fingerprint" level),
 * with verify and secure it is checked as well. Levels from encrypt up
 * never fall back to plaintext. next_hop_tls_protocols limits the
 * versions, in Postfix's syntax (">=TLSv1.3", "!TLSv1.2"), within the
 * TLSv1.2 and TLSv1.3 that relaychain speaks.
 *
 * The pool owns its SSL_CTX (freed by the SMTP transport's fini), its
 * pins and the credentials (wiped when the pool is freed). Nothing here logs:
 * the checks of the configuration name the key at fault in e, the certificate
 * checks answer with a 4xx in the reply.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "net/auth.h"
#include "util/cfg.h"
#include "net/netio.h"
#include "net/smtpc.h"
#include "net/smtpc_transport.h"

/* ------------------------------------------------------------ settings */

static const struct {
    const char *name;
    int version;
} smtpc_protos[] = {
    {"SSLv2", 0x0002},           {"SSLv3", SSL3_VERSION},
    {"TLSv1", TLS1_VERSION},     {"TLSv1.1", TLS1_1_VERSION},
    {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION},
};
#define SMTPC_PROTOS (sizeof(smtpc_protos) / sizeof(smtpc_protos[0]))
/* What relaychain speaks: TLSv1.2 and TLSv1.3 (auth_tls_client_ctx). */
#define SMTPC_PROTOS_SPOKEN 0x30u

static int
smtpc_proto_index(const char *w, size_t n)
{
    size_t i;

    for (i = 0; i < SMTPC_PROTOS; i++)
        if (strlen(smtpc_protos[i].name) == n &&
            strncasecmp(w, smtpc_protos[i].name, n) == 0)
            return (int)i;
    return -1;
}

/* smtpc_protocols_parse - Postfix's smtp_tls_protocols syntax: names
 * ("TLSv1.3": only those), exclusions ("!TLSv1.2") and bounds
 * (">=TLSv1.2", "<=TLSv1.3"), separated by white space, commas or
 * colons; into the versions for SSL_CTX_set_min/max_proto_version. 0,
 * or -1 with e (the reason only). */
int
smtpc_protocols_parse(const char *s, int *min, int *max, struct err *e)
{
    unsigned want = 0, keep = (1u << SMTPC_PROTOS) - 1, set;
    const char *w;
    size_t n, lo, hi;
    int i, k;

    for (w = s; *w != '\0'; w += n) {
        w += strspn(w, " \t,:");
        if ((n = strcspn(w, " \t,:")) == 0)
            break;
        k = w[0] == '!'                                              ? 1
            : (n > 2 && (w[0] == '>' || w[0] == '<') && w[1] == '=') ? 2
                                                                     : 0;
        if ((i = smtpc_proto_index(w + k, n - (size_t)k)) < 0)
            return err_set(e, ERR_CONFIG,
                           "'%.*s' is not a protocol (SSLv2, SSLv3, TLSv1, "
                           "TLSv1.1, TLSv1.2 or TLSv1.3, with '!', '>=' or "
                           "'<=' before it)",
                           (int)(n > 40 ? 40 : n), w);
        if (k == 0)
            want |= 1u << i;
        else if (w[0] == '!')
            keep &= ~(1u << i);
        else if (w[0] == '>')
            keep &= ~((1u << i) - 1);
        else
            keep &= (2u << i) - 1;
    }
    set = (want != 0 ? want : (1u << SMTPC_PROTOS) - 1) & keep &
          SMTPC_PROTOS_SPOKEN;
    if (set == 0)
        return err_set(e, ERR_CONFIG,
                       "'%.100s' leaves none of the protocols relaychain "
                       "speaks (TLSv1.2, TLSv1.3)",
                       s);
    for (lo = 0; !(set & (1u << lo)); lo++)
        ;
    for (hi = SMTPC_PROTOS - 1; !(set & (1u << hi)); hi--)
        ;
    *min = smtpc_protos[lo].version;
    *max = smtpc_protos[hi].version;
    return 0;
}

static int
smtpc_hex(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* smtpc_pins_parse - SHA-256 fingerprints, 64 hex digits each with
 * optional colons between octets (as "openssl x509 -fingerprint
 * -sha256" prints them) and an optional "sha256:" before, separated by
 * white space or commas; 0, or -1 with e (the reason only). */
int
smtpc_pins_parse(const char *s, unsigned char pins[][SMTPC_PIN_LEN],
                 size_t *npins, struct err *e)
{
    const char *w, *d, *end;
    size_t n, k;
    int hi, lo;

    *npins = 0;
    for (w = s; *w != '\0'; w += n) {
        w += strspn(w, " \t,");
        if ((n = strcspn(w, " \t,")) == 0)
            break;
        d = w;
        if (n > 7 && strncasecmp(d, "sha256:", 7) == 0)
            d += 7;
        if (*npins == SMTPC_PINS_MAX)
            return err_set(e, ERR_CONFIG, "more than %d fingerprints",
                           SMTPC_PINS_MAX);
        end = w + n;
        for (k = 0; k < SMTPC_PIN_LEN; k++) {
            if (k > 0 && d < end && *d == ':')
                d++;
            if (end - d < 2 || (hi = smtpc_hex(d[0])) < 0 ||
                (lo = smtpc_hex(d[1])) < 0)
                break;
            pins[*npins][k] = (unsigned char)(hi << 4 | lo);
            d += 2;
        }
        if (k != SMTPC_PIN_LEN || d != end)
            return err_set(e, ERR_CONFIG,
                           "'%.*s' is not a SHA-256 fingerprint (64 hex "
                           "digits, colons between octets allowed)",
                           (int)(n > 100 ? 100 : n), w);
        (*npins)++;
    }
    if (*npins == 0)
        return err_set(e, ERR_CONFIG, "no fingerprint given");
    return 0;
}

/* smtpc_name_ok - a host name to check: letters, digits, '.', '-',
 * '_', and '*' for nothing (a wildcard is the certificate's business). */
int
smtpc_name_ok(const char *name)
{
    size_t i;

    for (i = 0; name[i] != '\0'; i++)
        if (!smtpc_host_char_ok(name[i], 0))
            return 0;
    return i > 0 && i <= SMTPC_HOST_MAX;
}

/* smtpc_key_err - "key: " before the reason already in e; -1. */
static int
smtpc_key_err(struct err *e, const char *key)
{
    char why[ERR_TEXT_MAX];

    snprintf(why, sizeof(why), "%s", e->text);
    return err_set(e, ERR_CONFIG, "%s: %s", key, why);
}

void
smtpc_tls_why(char *why, size_t n, const char *none)
{
    unsigned long code = ERR_get_error();

    if (code != 0)
        ERR_error_string_n(code, why, n);
    else
        snprintf(why, n, "%s", none);
    ERR_clear_error();
}

int
smtpc_tls_init(struct smtpc_pool *p, const struct smtpc_settings *s,
               struct err *e)
{
    const char *name = s->tls_name;
    int min = TLS1_2_VERSION, max = TLS1_3_VERSION;
    char why[256];
    X509_VERIFY_PARAM *vp;

    if (s->tls_protocols != NULL &&
        smtpc_protocols_parse(s->tls_protocols, &min, &max, e) < 0)
        return smtpc_key_err(e, "next_hop_tls_protocols");
    if (s->tls_fingerprint != NULL) {
        if (smtpc_pins_parse(s->tls_fingerprint, p->pins, &p->npins, e) < 0)
            return smtpc_key_err(e, "next_hop_tls_fingerprint");
        if (p->tls < SMTPC_TLS_ENCRYPT)
            return err_set(e, ERR_CONFIG,
                           "next_hop_tls_fingerprint: a pin needs "
                           "next_hop_tls = encrypt, verify or secure");
    }
    if (name == NULL || name[0] == '\0')
        name = p->host_is_address ? NULL : p->host;
    else if (!smtpc_name_ok(name))
        return err_set(e, ERR_CONFIG,
                       "next_hop_tls_name: '%.100s' is not a host name", name);
    if (name != NULL)
        snprintf(p->tls_name, sizeof(p->tls_name), "%s", name);
    if (p->tls == SMTPC_TLS_SECURE && name == NULL)
        return err_set(e, ERR_CONFIG,
                       "next_hop_tls = secure checks the certificate "
                       "against a name, and %s is an address: name the "
                       "host instead, or set next_hop_tls_name",
                       p->host);
    if ((p->tls_ctx = auth_tls_client_ctx(e)) == NULL)
        return -1;
    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(p->tls_ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(p->tls_ctx, max) != 1)
        goto ssl_fail;
    if (p->tls >= SMTPC_TLS_VERIFY &&
        (s->tls_ca_file != NULL
             ? SSL_CTX_load_verify_locations(p->tls_ctx, s->tls_ca_file, NULL)
             : SSL_CTX_set_default_verify_paths(p->tls_ctx)) != 1) {
        smtpc_tls_why(why, sizeof(why), "no certificates in it");
        return err_set(e, ERR_CONFIG,
                       "next_hop_tls_ca_file: %s: cannot load the CA "
                       "certificates: %s",
                       s->tls_ca_file != NULL ? s->tls_ca_file
                                              : "the system's store",
                       why);
    }
    if (p->tls == SMTPC_TLS_SECURE) {
        /* The handshake checks the name; SSL_new() copies this. */
        vp = SSL_CTX_get0_param(p->tls_ctx);
        X509_VERIFY_PARAM_set_hostflags(vp,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_host(vp, p->tls_name, 0) != 1)
            goto ssl_fail;
    }
    return 0;
ssl_fail:
    smtpc_tls_why(why, sizeof(why), "no reason given by OpenSSL");
    return err_set(e, ERR_LIB, "next hop TLS settings: %s", why);
}

/* smtpc_pin_match - the certificate's or its public key's SHA-256 is one
 * of the pins; hex gets the certificate's, "AB:CD:...", for the reply. */
static int
smtpc_pin_match(const struct smtpc_pool *p, X509 *cert, char *hex, size_t n)
{
    unsigned char md[2][EVP_MAX_MD_SIZE];
    unsigned len[2] = {0, 0};
    size_t i, k, o = 0;

    hex[0] = '\0';
    if (X509_digest(cert, EVP_sha256(), md[0], &len[0]) != 1 ||
        X509_pubkey_digest(cert, EVP_sha256(), md[1], &len[1]) != 1) {
        ERR_clear_error();
        return 0;
    }
    for (i = 0; i < len[0] && o + 4 <= n; i++)
        o +=
            (size_t)snprintf(hex + o, n - o, "%s%02X", i ? ":" : "", md[0][i]);
    for (i = 0; i < p->npins; i++)
        for (k = 0; k < 2; k++)
            if (len[k] == SMTPC_PIN_LEN &&
                memcmp(md[k], p->pins[i], SMTPC_PIN_LEN) == 0)
                return 1;
    return 0;
}

/* smtpc_tls_peer_check - OpenSSL verified the chain, and the name for
 * secure, while the handshake ran; this reads its verdict. */
int
smtpc_tls_peer_check(struct smtpc_conn *c, struct smtpc_reply *r,
                     struct err *e)
{
    const struct smtpc_pool *p = c->pool;
    SSL *ssl = netio_tls_ssl(c->io);
    X509 *cert;
    char why[SMTPC_HOST_MAX + 100], hex[SMTPC_PIN_LEN * 3 + 1];
    long v;

    if (p->tls < SMTPC_TLS_VERIFY && p->npins == 0)
        return 0;
    if (ssl == NULL || (cert = SSL_get0_peer_certificate(ssl)) == NULL) {
        snprintf(why, sizeof(why), "the host sent no certificate");
    } else if (p->tls >= SMTPC_TLS_VERIFY &&
               (v = SSL_get_verify_result(ssl)) != X509_V_OK) {
        if (v == X509_V_ERR_HOSTNAME_MISMATCH)
            snprintf(why, sizeof(why),
                     "hostname mismatch (the certificate is not for %s)",
                     p->tls_name);
        else
            snprintf(why, sizeof(why), "%s", X509_verify_cert_error_string(v));
    } else if (p->npins > 0 && !smtpc_pin_match(p, cert, hex, sizeof(hex))) {
        snprintf(why, sizeof(why),
                 "its fingerprint %s is not in next_hop_tls_fingerprint", hex);
    } else {
        c->verified = 1;
        return 0;
    }
    c->broken = 1;
    return smtpc_fail(r, e, "4.7.5 Server certificate not verified: %s: %s",
                      c->relay, why);
}

/* ------------------------------------------------------------ address */

/* smtpc_smtp_parse - "[host]:port" or "host:port", the port optional. */
int
smtpc_smtp_parse(struct smtpc_pool *p, const char *hop, const char *rest,
                 struct err *e)
{
    const char *h, *hend, *after;
    unsigned char a6[sizeof(struct in6_addr)];
    size_t i, n;
    long port = 0;

    memcpy(p->port, p->kind == SMTPC_LMTP ? "24" : "25", 3);
    if (rest[0] == '[') {
        h = rest + 1;
        if ((hend = strchr(h, ']')) == NULL)
            return smtpc_hop_err(e, hop, "missing ']'");
        after = hend + 1;
    } else {
        h = rest;
        hend = h + strcspn(h, ":");
        after = hend;
    }
    n = (size_t)(hend - h);
    if (n == 0)
        return smtpc_hop_err(e, hop, "no host");
    if (n > SMTPC_HOST_MAX)
        return smtpc_hop_err(e, hop, "host name too long");
    for (i = 0; i < n; i++)
        if (!smtpc_host_char_ok(h[i], rest[0] == '['))
            return smtpc_hop_err(e, hop, "bad character in host");
    memcpy(p->host, h, n);
    p->host[n] = '\0';
    if (after[0] == ':') {
        for (i = 1; after[i] != '\0'; i++) {
            if (after[i] < '0' || after[i] > '9' || i > 5)
                return smtpc_hop_err(e, hop, "bad port");
            port = port * 10 + (after[i] - '0');
        }
        if (port < 1 || port > 65535)
            return smtpc_hop_err(e, hop, "bad port");
        snprintf(p->port, sizeof(p->port), "%ld", port);
    } else if (after[0] != '\0') {
        return smtpc_hop_err(e, hop, "junk after the host");
    }
    p->host_is_address = inet_pton(AF_INET, p->host, a6) == 1 ||
                         inet_pton(AF_INET6, p->host, a6) == 1;
    return 0;
}

/* ------------------------------------------------------------ credentials */

int
smtpc_auth_load(struct smtpc_pool *p, const char *path, struct err *e)
{
    char *line = NULL, *colon;
    size_t cap = 0, len, ulen, plen;
    ssize_t got;
    unsigned lineno = 0, found = 0;
    struct stat st;
    FILE *fp;
    int fd, rc = 0;

    /* Checked and read through one descriptor; O_NONBLOCK so that a FIFO
     * in its place is refused instead of waited on. */
    if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    if (fstat(fd, &st) < 0) {
        close(fd);
        return err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_CONFIG,
                       "next_hop_auth_file: %s: not a regular file", path);
    }
    if (cfg_secret_check(path, &st, S_IROTH | S_IWOTH,
                         "the next hop's password", e) < 0) {
        close(fd);
        return -1;
    }
    if ((fp = fdopen(fd, "r")) == NULL) {
        close(fd);
        return err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    }
    while (rc == 0 && (got = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        line[len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        colon = memchr(line, ':', len);
        if (found++) {
            rc = err_set(e, ERR_CONFIG,
                         "%s:%u: more than one user:password line", path,
                         lineno);
        } else if (colon == NULL || colon == line) {
            rc = err_set(e, ERR_CONFIG, "%s:%u: expected user:password", path,
                         lineno);
        } else if (strlen(line) != len) {
            rc = err_set(e, ERR_CONFIG, "%s:%u: NUL in line", path, lineno);
        } else {
            ulen = (size_t)(colon - line);
            plen = len - ulen - 1;
            if (ulen > SMTPC_CRED_MAX || plen > SMTPC_CRED_MAX)
                rc = err_set(e, ERR_CONFIG,
                             "%s:%u: user or password over %d octets", path,
                             lineno, SMTPC_CRED_MAX);
            else {
                memcpy(p->user, line, ulen);
                p->user[ulen] = '\0';
                memcpy(p->pass, colon + 1, plen);
                p->pass[plen] = '\0';
            }
        }
        explicit_bzero(line, cap);
    }
    if (rc == 0 && ferror(fp))
        rc = err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    if (rc == 0 && !found)
        rc = err_set(e, ERR_CONFIG, "%s: no user:password line", path);
    free(line);
    fclose(fp);
    if (rc == 0)
        p->has_auth = 1;
    return rc;
}
