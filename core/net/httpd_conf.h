/*
 * httpd_conf - the keys of relaychaind's HTTP listener
 *
 * httpd_conf_part declares http_listen and the listener's threads,
 * limits and TLS files; its check refuses, with file:line, a TLS
 * certificate without its key (or the other way round), a TLS setting
 * this libmicrohttpd cannot serve, any other http_ key without
 * http_listen, and a password or token file that does not load.
 */
#ifndef RC_HTTPD_CONF_H
#define RC_HTTPD_CONF_H

#include "chain/conf.h"
#include "net/httpd.h"

extern const struct conf_part httpd_conf_part;

/* httpd_token_read - the bearer token of path (its first line, 16 to
 * HTTPD_CRED_MAX token characters) into tok (HTTPD_CRED_MAX + 1 octets);
 * 0, or -1 with e. */
int httpd_token_read(const char *path, char *tok, struct err *e);

#endif
