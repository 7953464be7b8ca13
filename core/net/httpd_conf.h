/*
 * httpd_conf - the keys of relaychaind's HTTP listener
 *
 * httpd_conf_part declares http_listen and the listener's threads,
 * limits and TLS files; its check refuses, with file:line, a TLS
 * certificate without its key (or the other way round), a TLS setting
 * this libmicrohttpd cannot serve, any other http_ key without
 * http_listen, and the dashboard's keys, which this version does not
 * build.
 */
#ifndef RC_HTTPD_CONF_H
#define RC_HTTPD_CONF_H

#include "chain/conf.h"
#include "net/httpd.h"

extern const struct conf_part httpd_conf_part;

#endif
