/*
 * smtpd_policy - the SMTP front end's decisions
 *
 * Who may relay to whom, which parameters of MAIL and RCPT are taken,
 * whose DSN requests are honoured, who may name a sender: pure functions
 * over the runtime's settings, what is known of the client and the
 * command's argument, so that tests can ask them without a socket. Each
 * returns its answer; the commands (smtpd_envelope.c) give the replies
 * and keep the counts. Nothing here logs.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/addr.h"
#include "util/buf.h"
#include "util/cidr.h"
#include "util/esmtp.h"
#include "util/regmap.h"
#include "smtpd/smtpd_int.h"

/* smtpd_has_ctl - does text (n octets) hold a control character? What
 * a client sends is kept in the queue file, whose text records refuse
 * them, and written to the log and to other servers. */
int
smtpd_has_ctl(const char *text, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
            return 1;
    return 0;
}

/* smtpd_dsn_ok - are this client's DSN requests honoured
 * (smtpd_dsn_clients)? A report carries what the client chose to whom
 * it named as sender: an open reflector unless the client is known. */
int
smtpd_dsn_ok(const struct smtpd_session *s)
{
    const struct smtpd_runtime *rt = s->rt;

    return rt->dsn_all || (rt->dsn_auth && s->auth_user != NULL) ||
           (rt->dsn_mynetworks &&
            cidr_list_contains(rt->mynetworks, s->addr)) ||
           cidr_list_contains(rt->dsn_nets, s->addr);
}

/* smtpd_dsn_keys - the parameters dropped for a client whose DSN requests
 * are not honoured. */
static const char *const smtpd_dsn_keys[] = {"RET", "ENVID", "NOTIFY", "ORCPT",
                                             NULL};

/* smtpd_keep_params - the parameters to keep of a MAIL or RCPT that
 * passed its checks (caller frees; NULL when out of memory): all of them,
 * or without the DSN requests of a client not in smtpd_dsn_clients. */
char *
smtpd_keep_params(struct smtpd_session *s, const char *params)
{
    char *kept;
    int dropped;

    if (!s->rt->queue_mode || smtpd_dsn_ok(s))
        return strdup(params);
    if ((kept = esmtp_params_without(params, smtpd_dsn_keys, &dropped)) !=
            NULL &&
        dropped)
        s->dsn_ignored = 1;
    return kept;
}

/* smtpd_check_params - only the parameters we advertise; returns NULL or
 * the reply for a bad one. */
const char *
smtpd_check_mail_params(const char *params, size_t size_limit, int dsn,
                        int *too_big)
{
    const char *p = params;
    int ret = 0, envid = 0;

    *too_big = 0;
    while (p != NULL && *p) {
        const char *end, *eq;
        size_t n;

        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        end = strchr(p, ' ');
        if (end == NULL)
            end = p + strlen(p);
        n = (size_t)(end - p);
        eq = memchr(p, '=', n);
        if (smtpd_has_ctl(p, n))
            return "501 5.5.4 Bad parameter syntax";
        if (strncasecmp(p, "SIZE=", 5) == 0) {
            char num[24];
            unsigned long long v;
            char *stop;

            if (n - 5 == 0 || n - 5 >= sizeof(num))
                return "501 5.5.4 Bad SIZE parameter";
            memcpy(num, p + 5, n - 5);
            num[n - 5] = '\0';
            v = strtoull(num, &stop, 10);
            if (*stop != '\0' || num[0] == '-')
                return "501 5.5.4 Bad SIZE parameter";
            if (v > size_limit)
                *too_big = 1;
        } else if (strncasecmp(p, "BODY=", 5) == 0) {
            if (!(n == 13 && strncasecmp(p + 5, "8BITMIME", 8) == 0) &&
                !(n == 9 && strncasecmp(p + 5, "7BIT", 4) == 0))
                return "501 5.5.4 Bad BODY parameter";
        } else if (n == 8 && strncasecmp(p, "SMTPUTF8", 8) == 0) {
            /* accepted */
        } else if (strncasecmp(p, "AUTH=", 5) == 0) {
            char mailbox[ADDR_MAX + 1];

            /* accepted and ignored, as Postfix does for untrusted input,
             * but only when it is what RFC 4954 says: <> or xtext */
            if (!(n == 7 && strncmp(p + 5, "<>", 2) == 0) &&
                (n == 5 || esmtp_xtext_decode(p + 5, n - 5, mailbox,
                                              sizeof(mailbox)) < 0))
                return "501 5.5.4 Bad AUTH parameter";
        } else if (dsn && strncasecmp(p, "RET=", 4) == 0) {
            if (ret++ || !((n == 8 && strncasecmp(p + 4, "FULL", 4) == 0) ||
                           (n == 8 && strncasecmp(p + 4, "HDRS", 4) == 0)))
                return "501 5.5.4 Bad RET parameter";
        } else if (dsn && strncasecmp(p, "ENVID=", 6) == 0) {
            char id[128];

            /* RFC 3461: at most 100 characters of xtext */
            if (envid++ || n - 6 == 0 || n - 6 > 100 ||
                esmtp_xtext_decode(p + 6, n - 6, id, sizeof(id)) < 0)
                return "501 5.5.4 Bad ENVID parameter";
        } else {
            (void)eq;
            return "555 5.5.4 Unsupported option";
        }
        p = end;
    }
    return NULL;
}

/* smtpd_login_owns - the authenticated user may send as sender. */
int
smtpd_login_owns(struct smtpd_session *s, const char *sender)
{
    struct buf owners;
    const char *dom;
    int found, ok = 0;

    if (s->rt->login_map == NULL || s->auth_user == NULL)
        return 1;
    buf_init(&owners, 4096);
    found = regmap_lookup(s->rt->login_map, sender, &owners, NULL, &s->e);
    if (found == 0 && (dom = addr_domain(sender)) != NULL) {
        char key[ADDR_MAX + 2];

        snprintf(key, sizeof(key), "@%s", dom);
        found = regmap_lookup(s->rt->login_map, key, &owners, NULL, &s->e);
    }
    if (found == 1) {
        const char *p = buf_str(&owners);
        size_t ulen = strlen(s->auth_user);

        while (*p) {
            size_t n = strcspn(p, ", \t");

            if (n == ulen && strncmp(p, s->auth_user, n) == 0)
                ok = 1;
            p += n;
            p += strspn(p, ", \t");
        }
    }
    buf_fini(&owners);
    return ok;
}

/* smtpd_check_rcpt_params - the parameters of RCPT: with dsn (queue
 * mode, which offers DSN) NOTIFY and ORCPT, else none; NULL or the reply
 * for a bad one. */
const char *
smtpd_check_rcpt_params(const char *params, int dsn)
{
    int notify = 0, orcpt = 0;
    const char *p = params;

    while (*p != '\0') {
        size_t n;

        p += strspn(p, " ");
        if ((n = strcspn(p, " ")) == 0)
            break;
        if (smtpd_has_ctl(p, n))
            return "501 5.5.4 Bad parameter syntax";
        if (!dsn)
            return "555 5.5.4 Unsupported option";
        if (strncasecmp(p, "NOTIFY=", 7) == 0) {
            if (notify++ || esmtp_notify_check(p + 7, n - 7) < 0)
                return "501 5.5.4 Bad NOTIFY parameter";
        } else if (strncasecmp(p, "ORCPT=", 6) == 0) {
            char addr[600];
            size_t tl;

            /* addr-type ";" xtext, at most 500 characters */
            if (orcpt++ || n - 6 > 500 ||
                esmtp_orcpt_split(p + 6, n - 6, &tl, addr, sizeof(addr)) < 0)
                return "501 5.5.4 Bad ORCPT parameter";
        } else {
            return "555 5.5.4 Unsupported option";
        }
        p += n;
    }
    return NULL;
}

/* smtpd_relay_ok - may this client send to rcpt? Trusted clients
 * (mynetworks, authenticated) may relay anywhere; others only to
 * relay_domains, and then only with no routing hidden in the local part
 * (Postfix's allow_untrusted_routing = no). */
int
smtpd_relay_ok(const struct smtpd_session *s, const char *rcpt)
{
    const char *dom;
    size_t i, local_len;

    if (s->auth_user != NULL || cidr_list_contains(s->rt->mynetworks, s->addr))
        return 1;
    if ((dom = addr_domain(rcpt)) == NULL)
        return 0;
    local_len = (size_t)(dom - 1 - rcpt);
    if (memchr(rcpt, '%', local_len) || memchr(rcpt, '!', local_len) ||
        memchr(rcpt, '@', local_len))
        return 0;
    for (i = 0; i < s->rt->nrelay_domains; i++)
        if (addr_domain_equal(dom, s->rt->relay_domains[i]))
            return 1;
    return 0;
}
