/*
 * httpd_conf - the keys of relaychaind's HTTP listener
 *
 * See httpd_conf.h. httpd_settings_from() reads a checked file into
 * struct httpd_settings; nothing is allocated.
 */
#include "config.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#include "net/auth.h"
#include "net/httpd_conf.h"
#include "util/track_token.h"

static const struct cfg_option httpd_conf_options[] = {
    {"http_listen", CFG_LIST, NULL,
     "addresses of the HTTP listener (/metrics, /healthz, tracking): "
     "127.0.0.1:8080 [::1]:8080; unset: no HTTP listener",
     NULL, 0, 0, 0},
    {"http_threads", CFG_INT, "1",
     "threads serving each http_listen address: 1 is one polling thread, "
     "more a pool",
     NULL, 1, 64, 0},
    {"http_max_connections", CFG_INT, "256",
     "HTTP connections open at once on each address", NULL, 1, 65536, 0},
    {"http_max_connections_per_client", CFG_INT, "32",
     "HTTP connections open at once from one client address; 0: no limit",
     NULL, 0, 65536, 0},
    {"http_body_limit", CFG_SIZE, "64k",
     "largest request body (POST) taken; a larger one gets 413", NULL, 1,
     16 * 1024 * 1024, 0},
    {"http_timeout", CFG_TIME, "30s",
     "an HTTP connection idle this long is closed", NULL, 1000, 3600000, 0},
    {"http_tls_cert_file", CFG_PATH, NULL,
     "PEM certificate chain: the listener speaks HTTPS (libmicrohttpd with "
     "GnuTLS)",
     NULL, 0, 0, 0},
    {"http_tls_key_file", CFG_PATH, NULL, "PEM private key of the certificate",
     NULL, 0, 0, 0},
    {"http_password_file", CFG_PATH, NULL,
     "users of /dashboard and /api/report (basic auth): user:hash lines, "
     "the format of auth_password_file, managed with relaychain passwd",
     NULL, 0, 0, 0},
    {"http_token_file", CFG_PATH, NULL,
     "a bearer token for /dashboard and /api/report, one line of at least "
     "16 characters",
     NULL, 0, 0, 0},
    /* ---- track: the tracking paths /o/, /c/, /u/ */
    {"track_key_file", CFG_PATH, NULL,
     "the track stage's key_file: with it the listener serves /o/ (open "
     "pixel), /c/ (tracked links) and /u/ (one-click unsubscribe)",
     NULL, 0, 0, 0},
    {"track_machine_networks", CFG_PATH, NULL,
     "CIDR file of privacy proxies and prefetchers whose opens are counted "
     "as machine opens (the package ships machine-networks.cidr)",
     NULL, 0, 0, 0},
    {"track_click_window", CFG_TIME, "10s",
     "a click this soon after the stage made the link is a machine click "
     "(a link scanner); 0: no time rule",
     NULL, 0, 3600 * 1000LL, 0},
    CFG_OPTION_END,
};

static int
httpd_conf_check(const struct cfg *c, struct err *e)
{
    static const char *const needs_listen[] = {
        "http_threads",
        "http_max_connections",
        "http_max_connections_per_client",
        "http_body_limit",
        "http_timeout",
        "http_tls_cert_file",
        "http_tls_key_file",
        "track_key_file",
        "track_machine_networks",
        NULL};
    const char *const *l;
    size_t i, n = cfg_list(c, "http_listen", &l);

    if (n == 0) {
        for (i = 0; needs_listen[i] != NULL; i++)
            if (cfg_is_set(c, needs_listen[i]))
                return cfg_err(e, c, needs_listen[i],
                               "does nothing without http_listen");
        return 0;
    }
    if (n > HTTPD_LISTEN_MAX)
        return cfg_err(e, c, "http_listen", "at most %d addresses",
                       HTTPD_LISTEN_MAX);
    if (cfg_is_set(c, "http_tls_cert_file") !=
        cfg_is_set(c, "http_tls_key_file"))
        return cfg_err(e, c,
                       cfg_is_set(c, "http_tls_cert_file")
                           ? "http_tls_cert_file"
                           : "http_tls_key_file",
                       "http_tls_cert_file and http_tls_key_file go "
                       "together");
    if (cfg_is_set(c, "http_tls_cert_file") &&
        MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return cfg_err(e, c, "http_tls_cert_file",
                       "this libmicrohttpd was built without TLS");
    if (cfg_is_set(c, "http_password_file")) {
        struct auth_table *t;
        struct err e2;

        if ((t = auth_table_load(cfg_str(c, "http_password_file"), &e2)) ==
            NULL)
            return cfg_err(e, c, "http_password_file", "%s", e2.text);
        auth_table_free(t);
    }
    if (cfg_is_set(c, "track_key_file")) { /* ---- track */
        struct track_key k;
        struct err e2;

        if (track_key_load(cfg_str(c, "track_key_file"), &k, &e2) < 0)
            return cfg_err(e, c, "track_key_file", "%s", e2.text);
        track_key_free(&k);
    }
    if (cfg_is_set(c, "track_machine_networks") &&
        !cfg_is_set(c, "track_key_file"))
        return cfg_err(e, c, "track_machine_networks",
                       "does nothing without track_key_file");
    if (cfg_is_set(c, "http_token_file")) {
        char tok[HTTPD_CRED_MAX + 1];
        struct err e2;

        if (httpd_token_read(cfg_str(c, "http_token_file"), tok, &e2) < 0)
            return cfg_err(e, c, "http_token_file", "%s", e2.text);
        explicit_bzero(tok, sizeof(tok));
    }
    return 0;
}

int
httpd_token_read(const char *path, char *tok, struct err *e)
{
    char line[HTTPD_CRED_MAX + 2];
    size_t len;
    FILE *fp;

    tok[0] = '\0';
    if ((fp = fopen(path, "re")) == NULL)
        return err_sys(e, ERR_CONFIG, "%s", path);
    if (fgets(line, sizeof(line), fp) == NULL) {
        fclose(fp);
        return err_set(e, ERR_CONFIG, "%s: empty", path);
    }
    fclose(fp);
    len = strcspn(line, "\r\n");
    line[len] = '\0';
    if (len < 16 || len > HTTPD_CRED_MAX ||
        strspn(line, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789-._~+/") != len) {
        explicit_bzero(line, sizeof(line));
        return err_set(e, ERR_CONFIG,
                       "%s: want one token of 16 to %d characters "
                       "A-Z a-z 0-9 - . _ ~ + /",
                       path, HTTPD_CRED_MAX);
    }
    memcpy(tok, line, len + 1);
    explicit_bzero(line, sizeof(line));
    return 0;
}

const struct conf_part httpd_conf_part = {
    .name = "httpd",
    .options = httpd_conf_options,
    .check = httpd_conf_check,
};

void
httpd_settings_from(const struct cfg *c, struct httpd_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->threads = (unsigned)cfg_num(c, "http_threads");
    s->max_connections = (unsigned)cfg_num(c, "http_max_connections");
    s->max_per_client =
        (unsigned)cfg_num(c, "http_max_connections_per_client");
    s->body_limit = (size_t)cfg_num(c, "http_body_limit");
    s->timeout_s = (unsigned)((cfg_num(c, "http_timeout") + 999) / 1000);
    s->tls_cert_file = cfg_str(c, "http_tls_cert_file");
    s->tls_key_file = cfg_str(c, "http_tls_key_file");
}
