/*
 * smtpd_conf - the SMTP front end's keys of relaychain.conf
 *
 * smtpd_conf_part declares the SMTP listeners, the limits and timeouts
 * of a session, the relay policy (relay_domains, xforward_hosts,
 * smtpd_dsn_clients), STARTTLS and AUTH, and what to do with bare line
 * ends and long lines; it checks the listeners, the networks, the TLS
 * key's mode and, with listeners, the quarantine directory the front end
 * writes held mail to. Whoever loads relaychain.conf hands it to
 * conf_load() (chain/conf.h); smtpd_runtime_type builds on the values.
 */
#ifndef RC_SMTPD_CONF_H
#define RC_SMTPD_CONF_H

#include "chain/conf.h"

/* bare_newline and long_line_action, in the order of their choices. */
enum smtpd_bare_newline {
    SMTPD_BARE_NEWLINE_REJECT,
    SMTPD_BARE_NEWLINE_NORMALIZE
};
enum smtpd_long_line { SMTPD_LONG_LINE_REJECT, SMTPD_LONG_LINE_WRAP };

/* smtp_proxy_protocol (fleet) */
enum smtpd_proxy { SMTPD_PROXY_NONE, SMTPD_PROXY_HAPROXY };

#define SMTPD_LISTEN_MAX 16 /* smtp_listen items */

extern const struct conf_part smtpd_conf_part;

#endif
