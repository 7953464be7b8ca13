/*
 * smtpc_conf - the next-hop client's keys of relaychain.conf
 *
 * The keys of the next hop, used by the SMTP front end (delivery =
 * through), the queue and "relaychain quarantine release", all through
 * struct smtpc_settings. The check is what relaychaind refuses at
 * start-up and on reload, so that "relaychain check" refuses it too;
 * errors name the key and its line. Nothing is allocated.
 */
#include "config.h"

#include <sys/stat.h>

#include "net/smtpc.h"
#include "net/smtpc_conf.h"

static const char *const smtpc_conf_tls_choices[] = {
    [SMTPC_TLS_NONE] = "none",       [SMTPC_TLS_MAY] = "may",
    [SMTPC_TLS_ENCRYPT] = "encrypt", [SMTPC_TLS_VERIFY] = "verify",
    [SMTPC_TLS_SECURE] = "secure",   NULL};

static const struct cfg_option smtpc_conf_options[] = {
    {"next_hop", CFG_STRING, NULL,
     "smtp:[host]:port, lmtp:[host]:port or maildir:/path", NULL, 0, 0, 0},
    {"next_hop_tls", CFG_ENUM, "may",
     "STARTTLS to the next hop: none, may (when offered), encrypt "
     "(required), verify (required, certificate chain verified), secure "
     "(chain and host name verified)",
     smtpc_conf_tls_choices, 0, 0, 0},
    {"next_hop_tls_ca_file", CFG_PATH, NULL,
     "PEM CA certificates that verify and secure trust; default: the "
     "system's store",
     NULL, 0, 0, 0},
    {"next_hop_tls_protocols", CFG_STRING, ">=TLSv1.2",
     "TLS versions for the next hop, Postfix syntax: >=TLSv1.3, "
     "!TLSv1.2...",
     NULL, 0, 0, 0},
    {"next_hop_tls_fingerprint", CFG_STRING, NULL,
     "SHA-256 fingerprints of the next hop's certificate or public key, "
     "one of which it must show (with encrypt, verify or secure)",
     NULL, 0, 0, 0},
    {"next_hop_tls_name", CFG_STRING, NULL,
     "the name secure checks in the next hop's certificate (and sends as "
     "SNI); default: the host of next_hop",
     NULL, 0, 0, 0},
    {"next_hop_auth_file", CFG_PATH, NULL,
     "one user:password line for AUTH to the next hop", NULL, 0, 0, 0},
    {"next_hop_timeout", CFG_TIME, "300s",
     "how long to wait for the next hop's replies", NULL, 1000, 3600 * 1000LL,
     0},
    CFG_OPTION_END,
};

static int
smtpc_conf_check(const struct cfg *c, struct err *e)
{
    struct stat st;
    const char *s;

    if (smtpc_tls_check_cfg(c, e) < 0)
        return -1;
    /* Here too so the error names the line; the loaders check again the
     * very file they read. */
    if ((s = cfg_str(c, "next_hop_auth_file")) != NULL && stat(s, &st) == 0 &&
        cfg_secret_check(s, &st, S_IROTH | S_IWOTH, "the next hop's password",
                         e) < 0)
        return cfg_err(e, c, "next_hop_auth_file", "%s", e->text);
    return 0;
}

const struct conf_part smtpc_conf_part = {
    .name = "smtpc",
    .options = smtpc_conf_options,
    .check = smtpc_conf_check,
};
