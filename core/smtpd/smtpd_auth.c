/*
 * smtpd_auth - STARTTLS and AUTH
 *
 * STARTTLS drops what was pipelined behind it and everything learned
 * before it (RFC 3207). AUTH (PLAIN and LOGIN, RFC 4954) is offered only
 * under TLS; failures count toward auth_failure_limit in the session and
 * toward auth_failure_rate per client across sessions and reloads (the
 * server's struct auth_rate; with state_store = redis://, in Redis, so
 * that a client guessing through several nodes is counted once).
 * Passwords are wiped once verified.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/auth.h"
#include "net/netio.h"
#include "net/ratestate.h"
#include "util/ratelimit.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/metrics.h"
#include "smtpd/smtpd_int.h"

void
smtpd_cmd_starttls(struct smtpd_session *s, const char *arg)
{
    struct smtpd_facts f = smtpd_facts(s);
    const char *bad;
    char info[128];

    if ((bad = smtpd_starttls_refusal(s->rt, &f, arg)) != NULL) {
        smtpd_refuse(s, bad);
        return;
    }
    smtpd_reply(s, "220 2.0.0 Ready to start TLS");
    if (smtpd_flush(s) < 0) {
        s->quit = 1;
        return;
    }
    /* Anything pipelined behind STARTTLS arrived in plaintext and must not
     * be obeyed once the channel is encrypted (CVE-2011-0411). */
    netio_discard_input(s->io);
    if (netio_tls_accept(s->io, s->rt->tls, &s->e) < 0) {
        metrics_add(METRICS_SMTPD_TLS_FAILED, 1); /* ---- http */
        /* No reply can be given in the middle of a handshake. */
        if (netio_timed_out(s->io))
            log_info(NULL, "timeout after STARTTLS from %s[%s]", s->name,
                     s->addr);
        else
            log_warning(NULL, "%s from %s[%s]", s->e.text, s->name, s->addr);
        s->quit = 1;
        return;
    }
    s->n_starttls++;
    metrics_add(METRICS_SMTPD_TLS_OK, 1); /* ---- http */
    log_info(NULL, "TLS connection established from %s[%s]: %s", s->name,
             s->addr, netio_tls_info(s->io, info, sizeof(info)));
    /* RFC 3207: forget everything learned before TLS. */
    smtpd_reset(s, 1);
    s->helo_seen = 0;
    s->helo[0] = '\0';
}

/* smtpd_auth_shared - count n attempts of the client in the shared
 * store (n -1: a success given back): RATESTATE_TAKEN, RATESTATE_OVER,
 * or -1 when Redis does not answer and this node counts alone. The key
 * is the client's address (the PROXY header's, behind a balancer), an
 * IPv6 one cut to its /64 as in the node's own table. */
static int
smtpd_auth_shared(struct smtpd_session *s, long long n)
{
    struct ratelimit_rule r;
    struct ratelimit_set set;
    char name[64];
    size_t idx = 0, over;
    struct err e;
    int rc;

    memset(&r, 0, sizeof(r));
    r.who = RATELIMIT_CLIENT;
    r.unit = RATELIMIT_MESSAGES;
    r.count = s->rt->auth_failure_rate;
    r.period_ms = 60 * 1000;
    auth_rate_name(s->addr, name, sizeof(name));
    snprintf(r.key, sizeof(r.key), "auth_failures:%s", name);
    snprintf(r.id, sizeof(r.id), "auth_failure_rate");
    set.rules = &r;
    set.n = 1;
    set.path = NULL;
    rc = ratestate_take(s->rt->state, &set, &idx, &n, 1, &over, &e);
    return rc == RATESTATE_TAKEN || rc == RATESTATE_OVER ? rc : -1;
}

/* smtpd_auth_rate_refuses - past auth_failure_rate, AUTH is refused
 * before anything is decoded or hashed (1, the reply given); with take,
 * an attempt about to be verified is counted (0) or refused. Shared
 * through Redis, only the take asks (one round trip an attempt); while
 * Redis is away the node counts alone. */
static int
smtpd_auth_rate_refuses(struct smtpd_session *s, int take)
{
    unsigned rate = s->rt->auth_failure_rate;
    char client[SMTPD_CLIENT_MAX];
    long long now = netio_now_ms();
    int rc = -1;

    if (rate == 0)
        return 0;
    if (ratestate_shared(s->rt->state)) {
        if (!take)
            return 0;
        rc = smtpd_auth_shared(s, 1);
    }
    if (rc == RATESTATE_TAKEN)
        return 0;
    if (rc != RATESTATE_OVER &&
        (take ? !auth_rate_take(s->srv->auth_rate, s->addr, rate, now)
              : !auth_rate_over(s->srv->auth_rate, s->addr, rate, now)))
        return 0;
    log_warning(NULL,
                "%s: AUTH failure rate limit exceeded: more than %u "
                "a minute",
                smtpd_client(s, client, sizeof(client)), rate);
    smtpd_refuse(s, "454 4.7.0 Error: too many failed authentication "
                    "attempts, try again later");
    return 1;
}

static int
smtpd_auth_line(struct smtpd_session *s, const char *prompt, char *out,
                size_t n)
{
    int rc;

    smtpd_reply(s, "334 %s", prompt);
    if (smtpd_flush(s) < 0)
        return -1;
    /* RFC 4954: a SASL response line may be up to 12288 octets. */
    netio_set_line_limit(s->io, SMTPD_AUTH_LINE_MAX);
    rc = netio_getline(s->io, &s->line, &s->e);
    netio_set_line_limit(s->io, SMTPD_LINE_MAX);
    if (rc != NETIO_OK)
        return -1;
    smtpd_line_chomp(s);
    snprintf(out, n, "%s", buf_str(&s->line));
    return 0;
}

/* smtpd_login_decode - resp, a LOGIN response in base64, into out (n
 * octets with its NUL); -1 for "*" (the client gave up), bad base64, a
 * NUL in it, or more than out holds. */
static int
smtpd_login_decode(const char *resp, char *out, size_t n)
{
    unsigned char raw[AUTH_PASS_MAX + 1];
    long len;

    if (strcmp(resp, "*") == 0 ||
        (len = auth_b64_decode(resp, strlen(resp), raw, sizeof(raw) - 1)) <
            0 ||
        (size_t)len >= n || memchr(raw, '\0', (size_t)len))
        return -1;
    memcpy(out, raw, (size_t)len);
    out[len] = '\0';
    return 0;
}

void
smtpd_cmd_auth(struct smtpd_session *s, const char *arg)
{
    struct smtpd_facts f = smtpd_facts(s);
    char user[AUTH_PASS_MAX + 1], pass[AUTH_PASS_MAX + 1];
    char resp[SMTPD_AUTH_LINE_MAX];
    const char *mech, *initial, *bad;
    char client[SMTPD_CLIENT_MAX];

    if ((bad = smtpd_auth_refusal(s->rt, &f, s->in_mail, arg)) != NULL) {
        smtpd_refuse(s, bad);
        return;
    }
    if (smtpd_auth_rate_refuses(s, 0))
        return;
    mech = arg;
    initial = strchr(arg, ' ');
    if (initial != NULL)
        initial++;
    s->n_auth++;
    user[0] = pass[0] = '\0';
    if (strncasecmp(mech, "PLAIN", 5) == 0 &&
        (mech[5] == '\0' || mech[5] == ' ')) {
        /* arg lives in s->line, which the next read overwrites */
        mech = "PLAIN";
        if (initial == NULL || *initial == '\0') {
            if (smtpd_auth_line(s, "", resp, sizeof(resp)) < 0) {
                s->quit = 1;
                return;
            }
            initial = resp;
        }
        if (strcmp(initial, "*") == 0) {
            smtpd_reply(s, "501 5.7.0 Authentication aborted");
            return;
        }
        if (auth_sasl_plain_decode(initial, user, pass, sizeof(user)) < 0) {
            smtpd_refuse(s, "501 5.5.2 Cannot decode response");
            return;
        }
    } else if (strncasecmp(mech, "LOGIN", 5) == 0 &&
               (mech[5] == '\0' || mech[5] == ' ')) {
        mech = "LOGIN";
        /* "Username:" and "Password:" in base64 */
        if (initial != NULL && *initial) {
            snprintf(resp, sizeof(resp), "%s", initial);
        } else if (smtpd_auth_line(s, "VXNlcm5hbWU6", resp, sizeof(resp)) <
                   0) {
            s->quit = 1;
            return;
        }
        if (smtpd_login_decode(resp, user, sizeof(user)) < 0) {
            smtpd_refuse(s, "501 5.5.2 Cannot decode response");
            return;
        }
        if (smtpd_auth_line(s, "UGFzc3dvcmQ6", resp, sizeof(resp)) < 0) {
            s->quit = 1;
            return;
        }
        if (smtpd_login_decode(resp, pass, sizeof(pass)) < 0) {
            smtpd_refuse(s, "501 5.5.2 Cannot decode response");
            return;
        }
    } else {
        smtpd_reply(s, "535 5.7.8 Error: authentication failed: "
                       "unsupported mechanism");
        smtpd_error(s);
        return;
    }
    if (smtpd_auth_rate_refuses(s, 1)) {
        explicit_bzero(pass, sizeof(pass));
        return;
    }
    if (auth_verify(s->rt->auth, user, pass)) {
        metrics_add(METRICS_SMTPD_AUTH_OK, 1); /* ---- http */
        if (s->rt->auth_failure_rate > 0 &&
            (!ratestate_shared(s->rt->state) || smtpd_auth_shared(s, -1) < 0))
            auth_rate_refund(s->srv->auth_rate, s->addr,
                             s->rt->auth_failure_rate, netio_now_ms());
        s->auth_user = strdup(user);
        explicit_bzero(pass, sizeof(pass));
        if (s->auth_user == NULL) {
            smtpd_reply(s, "454 4.7.0 Temporary authentication failure");
            return;
        }
        log_info(NULL, "%s: sasl_method=%.5s, sasl_username=%s",
                 smtpd_client(s, client, sizeof(client)), mech, user);
        smtpd_reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    explicit_bzero(pass, sizeof(pass));
    metrics_add(METRICS_SMTPD_AUTH_FAILED, 1); /* ---- http */
    log_warning(NULL, "%s: SASL %.5s authentication failed",
                smtpd_client(s, client, sizeof(client)), mech);
    if (++s->auth_failures >= s->rt->auth_failure_limit) {
        smtpd_reply(s,
                    "421 4.7.0 %s Error: too many failed authentication "
                    "attempts",
                    s->rt->hostname);
        s->quit = 1;
        return;
    }
    smtpd_reply(s, "535 5.7.8 Error: authentication failed");
}
