/*
 * smtpd_policy - the SMTP front end's decisions
 *
 * Who may relay to whom, which parameters of MAIL and RCPT are taken,
 * whose DSN requests are honoured, who may name a sender: pure functions
 * over the runtime's settings, what is known of the client and the
 * command's argument, so that tests can ask them without a socket. Each
 * returns its answer; the commands (smtpd.c, smtpd_auth.c,
 * smtpd_envelope.c) give the replies, log and keep the counts. Nothing
 * here keeps state or logs.
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

int
smtpd_clients_has(const struct smtpd_runtime *rt,
                  const struct smtpd_clients *l, const struct smtpd_facts *f)
{
    return l->all || (l->auth && f->auth_user != NULL) ||
           (l->mynetworks && cidr_list_contains(rt->mynetworks, f->addr)) ||
           cidr_list_contains(l->nets, f->addr);
}

/* smtpd_dsn_ok - are this client's DSN requests honoured
 * (smtpd_dsn_clients)? A report carries what the client chose to whom
 * it named as sender: an open reflector unless the client is known. */
int
smtpd_dsn_ok(const struct smtpd_runtime *rt, const struct smtpd_facts *f)
{
    return smtpd_clients_has(rt, &rt->dsn, f);
}

/* smtpd_dsn_offered - does EHLO offer DSN? Not to a client whose
 * requests would be ignored, as Postfix's
 * smtpd_discard_ehlo_keyword_address_maps; one that may still
 * authenticate is told, since it will not send EHLO again. */
int
smtpd_dsn_offered(const struct smtpd_runtime *rt, const struct smtpd_facts *f)
{
    return rt->queue_mode &&
           (smtpd_dsn_ok(rt, f) || (rt->dsn.auth && rt->auth != NULL));
}

/* smtpd_starttls_offered - does EHLO offer STARTTLS? */
int
smtpd_starttls_offered(const struct smtpd_runtime *rt,
                       const struct smtpd_facts *f)
{
    return rt->tls != NULL && !f->tls;
}

/* smtpd_auth_offered - does EHLO offer AUTH? Only under TLS, and only
 * until the client authenticated. */
int
smtpd_auth_offered(const struct smtpd_runtime *rt, const struct smtpd_facts *f)
{
    return rt->auth != NULL && f->tls && f->auth_user == NULL;
}

/* smtpd_xforward_ok - may the client send XFORWARD (xforward_hosts)? */
int
smtpd_xforward_ok(const struct smtpd_runtime *rt, const struct smtpd_facts *f)
{
    return cidr_list_contains(rt->xforward_hosts, f->addr);
}

/* smtpd_dsn_keys - the parameters dropped for a client whose DSN requests
 * are not honoured. */
static const char *const smtpd_dsn_keys[] = {"RET", "ENVID", "NOTIFY", "ORCPT",
                                             NULL};

/* smtpd_keep_params - the parameters to keep of a MAIL or RCPT that
 * passed its checks (caller frees; NULL when out of memory): all of them,
 * or without the DSN requests of a client not in smtpd_dsn_clients;
 * *dropped says whether any were. */
char *
smtpd_keep_params(const struct smtpd_runtime *rt, const struct smtpd_facts *f,
                  const char *params, int *dropped)
{
    *dropped = 0;
    if (!rt->queue_mode || smtpd_dsn_ok(rt, f))
        return strdup(params);
    return esmtp_params_without(params, smtpd_dsn_keys, dropped);
}

/* smtpd_param_size - the value of SIZE in params (checked before), 0
 * when there is none. */
unsigned long long
smtpd_param_size(const char *params)
{
    unsigned long long size = 0;
    const char *v;
    char num[24];
    size_t len;

    if ((v = esmtp_param(params, "SIZE", &len)) != NULL && len < sizeof(num)) {
        memcpy(num, v, len);
        num[len] = '\0';
        size = strtoull(num, NULL, 10);
    }
    return size;
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

/* smtpd_login_owns - auth_user (NULL: none) may send as sender
 * (sender_login_map); a lookup that fails (e) says no. */
int
smtpd_login_owns(const struct smtpd_runtime *rt, const char *auth_user,
                 const char *sender, struct err *e)
{
    struct buf owners;
    const char *dom;
    int found, ok = 0;

    if (rt->login_map == NULL || auth_user == NULL)
        return 1;
    buf_init(&owners, 4096);
    found = regmap_lookup(rt->login_map, sender, &owners, NULL, e);
    if (found == 0 && (dom = addr_domain(sender)) != NULL) {
        char key[ADDR_MAX + 2];

        snprintf(key, sizeof(key), "@%s", dom);
        found = regmap_lookup(rt->login_map, key, &owners, NULL, e);
    }
    if (found == 1) {
        const char *p = buf_str(&owners);
        size_t ulen = strlen(auth_user);

        while (*p) {
            size_t n = strcspn(p, ", \t");

            if (n == ulen && strncmp(p, auth_user, n) == 0)
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
smtpd_relay_ok(const struct smtpd_runtime *rt, const struct smtpd_facts *f,
               const char *rcpt)
{
    const char *dom;
    size_t i, local_len;

    if (f->auth_user != NULL || cidr_list_contains(rt->mynetworks, f->addr))
        return 1;
    if ((dom = addr_domain(rcpt)) == NULL)
        return 0;
    local_len = (size_t)(dom - 1 - rcpt);
    if (memchr(rcpt, '%', local_len) || memchr(rcpt, '!', local_len) ||
        memchr(rcpt, '@', local_len))
        return 0;
    /* ---- verp: relaychaind is the MX of verp_domain and takes the
     * complaint address; such mail is read, never relayed */
    if (rt->inbound_domain != NULL &&
        addr_domain_equal(dom, rt->inbound_domain))
        return 1;
    if (rt->inbound_fbl != NULL && strcasecmp(rcpt, rt->inbound_fbl) == 0)
        return 1;
    /* ---- end verp */
    for (i = 0; i < rt->nrelay_domains; i++)
        if (addr_domain_equal(dom, rt->relay_domains[i]))
            return 1;
    return 0;
}

/* smtpd_refused - fill a with reply; fault: it counts toward
 * error_limit. */
static void
smtpd_refused(struct smtpd_answer *a, const char *reply, int fault)
{
    a->reply = reply;
    a->fault = fault;
}

/* smtpd_path - the path of a MAIL or RCPT after its verb (the first
 * prefix_len octets of line) into addr, with *params at what follows
 * it; -1 when it does not parse. */
static int
smtpd_path(const char *line, size_t prefix_len, struct buf *addr,
           const char **params, struct err *e)
{
    const char *p = line + prefix_len;
    size_t used;

    while (*p == ' ')
        p++;
    if (addr_parse_path(p, strlen(p), addr, &used, e) < 0)
        return -1;
    p += used;
    while (*p == ' ')
        p++;
    *params = p;
    return 0;
}

/* smtpd_mail_check - the policy's answer to line, a MAIL command, the
 * syntax, the sender's path, the parameters and the announced SIZE:
 * a->reply NULL when it passes, with the sender in addr ("" for the
 * null sender) and *params at its parameters in line. */
void
smtpd_mail_check(const struct smtpd_runtime *rt, const char *line,
                 struct buf *addr, const char **params, struct smtpd_answer *a,
                 struct err *e)
{
    const char *bad;
    int too_big;

    memset(a, 0, sizeof(*a));
    if (strncasecmp(line, "MAIL FROM:", 10) != 0)
        smtpd_refused(a, "501 5.5.4 Syntax: MAIL FROM:<address>", 1);
    else if (smtpd_path(line, 10, addr, params, e) < 0)
        smtpd_refused(a, "501 5.1.7 Bad sender address syntax", 1);
    else if ((bad = smtpd_check_mail_params(*params, rt->size_limit,
                                            rt->queue_mode, &too_big)) != NULL)
        smtpd_refused(a, bad, 1);
    else if (too_big)
        smtpd_refused(a, "552 5.3.4 Message size exceeds fixed limit", 0);
}

/* smtpd_sender_check - may the client send as sender (not the null
 * sender)? a->reply NULL when it may, else the 553 to give and log. */
void
smtpd_sender_check(const struct smtpd_runtime *rt, const struct smtpd_facts *f,
                   const char *sender, struct smtpd_answer *a, struct err *e)
{
    memset(a, 0, sizeof(*a));
    if (sender[0] == '\0' || smtpd_login_owns(rt, f->auth_user, sender, e))
        return;
    /* at most 400 octets, as this reply always had */
    snprintf(a->text, 400,
             "553 5.7.1 <%s>: Sender address rejected: not owned by "
             "user %s",
             sender, f->auth_user);
    a->reply = a->text;
    a->noqueue = 1;
}

/* smtpd_rcpt_check - the policy's answer to line, a RCPT command from f
 * with nrcpts recipients taken: the syntax, the path, the recipient
 * limit, the parameters and relaying. a->reply NULL when it passes, with
 * the recipient in addr and *params at its parameters in line. */
void
smtpd_rcpt_check(const struct smtpd_runtime *rt, const struct smtpd_facts *f,
                 size_t nrcpts, const char *line, struct buf *addr,
                 const char **params, struct smtpd_answer *a, struct err *e)
{
    const char *bad;

    memset(a, 0, sizeof(*a));
    if (strncasecmp(line, "RCPT TO:", 8) != 0) {
        smtpd_refused(a, "501 5.5.4 Syntax: RCPT TO:<address>", 1);
    } else if (smtpd_path(line, 8, addr, params, e) < 0 || addr->len == 0) {
        smtpd_refused(a, "501 5.1.3 Bad recipient address syntax", 1);
    } else if (nrcpts >= rt->rcpt_limit) {
        smtpd_refused(a, "452 4.5.3 Error: too many recipients", 0);
    } else if ((bad = smtpd_check_rcpt_params(*params, rt->queue_mode)) !=
               NULL) {
        /* checked in both modes: through mode replays them to the next
         * hop when the chain changed the envelope */
        smtpd_refused(a, bad, 1);
    } else if (!smtpd_relay_ok(rt, f, buf_str(addr))) {
        snprintf(a->text, sizeof(a->text),
                 "554 5.7.1 <%s>: Relay access denied", buf_str(addr));
        smtpd_refused(a, a->text, 1);
        a->noqueue = 1;
    }
}
/* smtpd_xforward_check - XFORWARD arg from f, in a transaction or not:
 * NULL when it is taken, the attributes it names decoded into xf (those
 * it does not name are left as they were), else the reply; a refused
 * command leaves xf as it was. */
const char *
smtpd_xforward_check(const struct smtpd_runtime *rt,
                     const struct smtpd_facts *f, int in_mail, const char *arg,
                     struct smtpd_xforward *xf)
{
    static const struct {
        const char *key;
        size_t off, size;
    } keys[] = {
        {"NAME", offsetof(struct smtpd_xforward, name),
         sizeof(((struct smtpd_xforward *)0)->name)},
        {"ADDR", offsetof(struct smtpd_xforward, addr),
         sizeof(((struct smtpd_xforward *)0)->addr)},
        {"HELO", offsetof(struct smtpd_xforward, helo),
         sizeof(((struct smtpd_xforward *)0)->helo)},
        {"PROTO", offsetof(struct smtpd_xforward, proto),
         sizeof(((struct smtpd_xforward *)0)->proto)},
        {"IDENT", offsetof(struct smtpd_xforward, ident),
         sizeof(((struct smtpd_xforward *)0)->ident)},
    };
    const char *p;
    int pass;

    if (!smtpd_xforward_ok(rt, f))
        return "550 5.7.0 Error: insufficient authorization";
    if (in_mail)
        return "503 5.5.1 Error: MAIL transaction in progress";
    if (arg == NULL)
        return "501 5.5.4 Syntax: XFORWARD attribute=value...";
    /* Every value is checked before any is kept: a refused command
     * leaves what an earlier one set. */
    for (pass = 0; pass < 2; pass++) {
        p = arg;
        while (*p) {
            const char *end = strchr(p, ' '), *eq;
            char check[256];
            size_t n, i, klen;

            if (end == NULL)
                end = p + strlen(p);
            n = (size_t)(end - p);
            eq = memchr(p, '=', n);
            if (eq == NULL)
                return "501 5.5.4 Bad XFORWARD attribute syntax";
            klen = (size_t)(eq - p);
            for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                char *field = (char *)xf + keys[i].off;
                int helo = strcmp(keys[i].key, "HELO") == 0;

                if (strlen(keys[i].key) != klen ||
                    strncasecmp(p, keys[i].key, klen) != 0)
                    continue;
                if (pass == 0) {
                    if (esmtp_xforward_decode(
                            eq + 1, (size_t)(end - eq - 1), check,
                            keys[i].size < sizeof(check) ? keys[i].size
                                                         : sizeof(check),
                            helo) < 0)
                        return "501 5.5.4 Bad XFORWARD attribute value";
                    /* IDENT goes into every log line of the message: a
                     * queue id is letters and digits, nothing else. */
                    if (i == 4 &&
                        check[strspn(check, SMTPD_QID_CHARS)] != '\0')
                        return "501 5.5.4 Bad XFORWARD attribute value";
                    continue;
                }
                (void)esmtp_xforward_decode(eq + 1, (size_t)(end - eq - 1),
                                            field, keys[i].size, helo);
                if (strcmp(field, "[UNAVAILABLE]") == 0 ||
                    strcmp(field, "[TEMPUNAVAIL]") == 0)
                    field[0] = '\0';
                /* Postfix sends IPv6 addresses as "IPv6:..." */
                if (i == 1 && strncasecmp(field, "IPv6:", 5) == 0)
                    memmove(field, field + 5, strlen(field + 5) + 1);
            }
            p = end;
            while (*p == ' ')
                p++;
        }
    }
    return NULL;
}

/* smtpd_starttls_refusal - NULL when STARTTLS (with arg) may begin, else
 * the reply. */
const char *
smtpd_starttls_refusal(const struct smtpd_runtime *rt,
                       const struct smtpd_facts *f, const char *arg)
{
    if (arg != NULL)
        return "501 5.5.4 Syntax: STARTTLS";
    if (!smtpd_starttls_offered(rt, f))
        return "502 5.5.1 Error: command not implemented";
    return NULL;
}

/* smtpd_auth_refusal - NULL when AUTH arg from f may begin, in a
 * transaction or not, else the reply. The rate limit is the server's
 * (smtpd_auth.c). */
const char *
smtpd_auth_refusal(const struct smtpd_runtime *rt, const struct smtpd_facts *f,
                   int in_mail, const char *arg)
{
    if (rt->auth == NULL || !f->tls)
        return "503 5.5.1 Error: authentication not enabled";
    if (f->auth_user != NULL)
        return "503 5.5.1 Error: already authenticated";
    if (in_mail)
        return "503 5.5.1 Error: MAIL transaction in progress";
    if (arg == NULL)
        return "501 5.5.4 Syntax: AUTH mechanism";
    return NULL;
}
