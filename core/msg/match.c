/*
 * match - the condition under which a stage applies to a message
 *
 * match_new() turns the match_* keys of a validated stage file into
 * patterns: each sender or recipient item is checked and folded to lower
 * case once, so match_test() only compares strings. The kinds, as in
 * Postfix access tables:
 *
 *     <>                 the null sender
 *     user@example.org   that address only ("<user@example.org>" too)
 *     example.org        any address at that domain; "@example.org" too
 *     .example.org       any address at a subdomain, not the domain itself
 *
 * A domain is taken from after the last '@' of an address, so a quoted
 * local part holding '@' cannot move it. Only ASCII letters fold; UTF-8
 * compares octet for octet. match_client is a cidr list.
 *
 * A struct match owns copies of everything it needs (it does not borrow
 * the cfg) and is read-only after match_new(), so threads may share it.
 * A malformed pattern fails match_new() with "path:line: key: reason".
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cidr.h"
#include "msg/match.h"

#define MATCH_PATTERN_MAX 256 /* octets of one pattern: an address is 254 */

enum match_auth { MATCH_AUTH_ANY, MATCH_AUTH_YES, MATCH_AUTH_NO };

static const char *const match_auth_choices[] = {[MATCH_AUTH_ANY] = "any",
                                                 [MATCH_AUTH_YES] = "yes",
                                                 [MATCH_AUTH_NO] = "no",
                                                 NULL};

const struct cfg_option match_options[] = {
    {"match_sender", CFG_LIST, NULL,
     "envelope senders this stage applies to: user@domain, domain, "
     ".domain (subdomains) or <> (null sender)",
     NULL, 0, 0, 0},
    {"match_recipient", CFG_LIST, NULL,
     "recipients this stage applies to (any one is enough), in the "
     "match_sender syntax",
     NULL, 0, 0, 0},
    {"match_client", CFG_LIST, NULL,
     "client networks this stage applies to: 192.0.2.0/24, "
     "[2001:db8::]/32 or single addresses",
     NULL, 0, 0, 0},
    {"match_auth", CFG_ENUM, "any",
     "apply to authenticated clients (yes), the others (no) or both (any)",
     match_auth_choices, 0, 0, 0},
    CFG_OPTION_END,
};

enum match_kind {
    MATCH_NULL,     /* <> */
    MATCH_ADDRESS,  /* user@domain */
    MATCH_DOMAIN,   /* domain or @domain */
    MATCH_SUBDOMAIN /* .domain; text keeps the leading dot */
};

struct match_pattern {
    enum match_kind kind;
    char *text; /* lower-case form compared against */
    char *orig; /* as written, for match_describe() */
};

struct match_list {
    struct match_pattern *v;
    size_t n;
};

struct match {
    struct match_list sender;
    struct match_list rcpt;
    struct cidr_list *client;
    char **client_items; /* as written, for match_describe() */
    size_t nclient;
    enum match_auth auth;
};

static int
match_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* match_caseeq - compare n octets of a and b without regard to ASCII
 * case. */
static int
match_caseeq(const char *a, const char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (match_lower((unsigned char)a[i]) !=
            match_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static const char *
match_domain_check(const char *d)
{
    size_t i, label = 0, len = strlen(d);

    if (len == 0)
        return "empty domain";
    if (len > 255)
        return "domain longer than 255 octets";
    if (d[0] == '[')
        return d[len - 1] == ']' && len > 2 ? NULL
                                            : "unterminated address literal";
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)d[i];

        if (ch == '.') {
            if (label == 0)
                return "empty label in domain";
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch >= 0x80))
            return "invalid character in domain";
        label++;
    }
    if (label == 0)
        return "empty label in domain";
    return NULL;
}

/* match_pattern_parse - fill p from item; NULL, or the reason it is bad.
 * *nomem is set when the reason is a failed allocation. */
static const char *
match_pattern_parse(const char *item, struct match_pattern *p, int *nomem)
{
    size_t len = strlen(item), i;
    const char *at;
    char *t;

    if (len == 0)
        return "empty pattern";
    if (len > MATCH_PATTERN_MAX)
        return "longer than 256 octets";
    if ((p->orig = strdup(item)) == NULL || (t = strdup(item)) == NULL) {
        *nomem = 1;
        return "out of memory";
    }
    p->text = t;
    for (i = 0; i < len; i++)
        t[i] = (char)match_lower((unsigned char)t[i]);
    if (strcmp(t, "<>") == 0) {
        p->kind = MATCH_NULL;
        return NULL;
    }
    if (t[0] == '<' || t[len - 1] == '>') {
        if (len < 3 || t[0] != '<' || t[len - 1] != '>')
            return "unbalanced '<' or '>'";
        memmove(t, t + 1, len - 2);
        t[len - 2] = '\0';
        len -= 2;
    }
    if (t[0] == '@') {
        p->kind = MATCH_DOMAIN;
        memmove(t, t + 1, len);
        return match_domain_check(t);
    }
    if (t[0] == '.') {
        p->kind = MATCH_SUBDOMAIN;
        return match_domain_check(t + 1);
    }
    if ((at = strrchr(t, '@')) != NULL) {
        p->kind = MATCH_ADDRESS;
        if (t[0] != '"' && memchr(t, '@', (size_t)(at - t)) != NULL)
            return "more than one '@'";
        return match_domain_check(at + 1);
    }
    p->kind = MATCH_DOMAIN;
    return match_domain_check(t);
}

static void
match_list_fini(struct match_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->v[i].text);
        free(l->v[i].orig);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int
match_list_init(struct match_list *l, const struct cfg *c, const char *key,
                struct err *e)
{
    const char *const *items;
    size_t n = cfg_list(c, key, &items), i;
    const char *why;
    int nomem = 0;

    if (n == 0)
        return 0;
    if ((l->v = calloc(n, sizeof(*l->v))) == NULL)
        return err_nomem(e);
    for (i = 0; i < n; i++) {
        l->n = i + 1;
        if ((why = match_pattern_parse(items[i], &l->v[i], &nomem)) == NULL)
            continue;
        if (nomem)
            return err_nomem(e);
        return cfg_err(e, c, key, "bad pattern '%.64s': %s", items[i], why);
    }
    return 0;
}

struct match *
match_new(const struct cfg *c, struct err *e)
{
    const char *const *items;
    struct match *mt;
    char reason[ERR_TEXT_MAX];
    size_t n, i;

    if ((mt = calloc(1, sizeof(*mt))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (match_list_init(&mt->sender, c, "match_sender", e) < 0 ||
        match_list_init(&mt->rcpt, c, "match_recipient", e) < 0)
        goto fail;
    n = cfg_list(c, "match_client", &items);
    if (n > 0) {
        if ((mt->client = cidr_list_new(items, n, e)) == NULL) {
            if (e != NULL && e->code == ERR_CONFIG) {
                snprintf(reason, sizeof(reason), "%s", e->text);
                cfg_err(e, c, "match_client", "%s", reason);
            }
            goto fail;
        }
        if ((mt->client_items = calloc(n, sizeof(char *))) == NULL) {
            err_nomem(e);
            goto fail;
        }
        for (i = 0; i < n; i++) {
            mt->nclient = i + 1;
            if ((mt->client_items[i] = strdup(items[i])) == NULL) {
                err_nomem(e);
                goto fail;
            }
        }
    }
    switch ((enum match_auth)cfg_enum(c, "match_auth")) {
    case 1:
        mt->auth = MATCH_AUTH_YES;
        break;
    case 2:
        mt->auth = MATCH_AUTH_NO;
        break;
    default:
        mt->auth = MATCH_AUTH_ANY;
        break;
    }
    return mt;

fail:
    match_free(mt);
    return NULL;
}

void
match_free(struct match *mt)
{
    size_t i;

    if (mt == NULL)
        return;
    match_list_fini(&mt->sender);
    match_list_fini(&mt->rcpt);
    cidr_list_free(mt->client);
    for (i = 0; i < mt->nclient; i++)
        free(mt->client_items[i]);
    free(mt->client_items);
    free(mt);
}

static int
match_address(const struct match_list *l, const char *addr)
{
    const char *at = strrchr(addr, '@');
    const char *dom = at ? at + 1 : NULL;
    size_t alen = strlen(addr), dlen = dom ? strlen(dom) : 0, tlen, i;

    for (i = 0; i < l->n; i++) {
        const struct match_pattern *p = &l->v[i];

        tlen = strlen(p->text);
        switch (p->kind) {
        case MATCH_NULL:
            if (alen == 0)
                return 1;
            break;
        case MATCH_ADDRESS:
            if (alen == tlen && match_caseeq(addr, p->text, tlen))
                return 1;
            break;
        case MATCH_DOMAIN:
            if (dom != NULL && dlen == tlen &&
                match_caseeq(dom, p->text, tlen))
                return 1;
            break;
        case MATCH_SUBDOMAIN:
            if (dom != NULL && dlen > tlen &&
                match_caseeq(dom + dlen - tlen, p->text, tlen))
                return 1;
            break;
        }
    }
    return 0;
}

static void match_why(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
match_why(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || n == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
}

int
match_test(const struct match *mt, const struct msg *m, char *why, size_t n)
{
    const struct msg_env *env = msg_env(m);
    size_t i;

    if (mt->sender.n > 0) {
        if (env->sender == NULL) {
            match_why(why, n, "no envelope sender for match_sender");
            return 0;
        }
        if (!match_address(&mt->sender, env->sender)) {
            if (env->sender[0] == '\0')
                match_why(why, n, "sender <> not in match_sender");
            else
                match_why(why, n, "sender %.200s not in match_sender",
                          env->sender);
            return 0;
        }
    }
    if (mt->rcpt.n > 0) {
        for (i = 0; i < env->nrcpts; i++)
            if (env->rcpts[i].addr != NULL &&
                match_address(&mt->rcpt, env->rcpts[i].addr))
                break;
        if (i == env->nrcpts) {
            if (env->nrcpts == 0)
                match_why(why, n, "no recipients for match_recipient");
            else if (env->nrcpts == 1)
                match_why(why, n, "recipient %.200s not in match_recipient",
                          env->rcpts[0].addr ? env->rcpts[0].addr : "");
            else
                match_why(why, n, "none of %zu recipients in match_recipient",
                          env->nrcpts);
            return 0;
        }
    }
    if (mt->client != NULL) {
        if (env->client_addr == NULL) {
            match_why(why, n, "no client address for match_client");
            return 0;
        }
        if (!cidr_list_contains(mt->client, env->client_addr)) {
            match_why(why, n, "client %.64s not in match_client",
                      env->client_addr);
            return 0;
        }
    }
    if (mt->auth != MATCH_AUTH_ANY) {
        int authed = env->auth_user != NULL && env->auth_user[0] != '\0';

        if (mt->auth == MATCH_AUTH_YES && !authed) {
            match_why(why, n, "client not authenticated (match_auth = yes)");
            return 0;
        }
        if (mt->auth == MATCH_AUTH_NO && authed) {
            match_why(why, n, "client authenticated (match_auth = no)");
            return 0;
        }
    }
    if (mt->sender.n == 0 && mt->rcpt.n == 0 && mt->client == NULL &&
        mt->auth == MATCH_AUTH_ANY)
        match_why(why, n, "all mail");
    else
        match_why(why, n, "all conditions hold");
    return 1;
}

/* match_put - append to out (size n) at *len, truncating; never fails. */
static void
match_put(char *out, size_t n, size_t *len, const char *s)
{
    int w;

    if (*len >= n)
        return;
    w = snprintf(out + *len, n - *len, "%s", s);
    if (w > 0)
        *len += (size_t)w < n - *len ? (size_t)w : n - *len - 1;
}

static void
match_put_list(char *out, size_t n, size_t *len, const char *label,
               char *const *items, size_t count,
               const struct match_pattern *pats)
{
    size_t i;

    if (*len > 0)
        match_put(out, n, len, ", ");
    match_put(out, n, len, label);
    match_put(out, n, len, " in (");
    for (i = 0; i < count; i++) {
        if (i > 0)
            match_put(out, n, len, ", ");
        match_put(out, n, len, items != NULL ? items[i] : pats[i].orig);
    }
    match_put(out, n, len, ")");
}

const char *
match_describe(const struct match *mt, char *out, size_t n)
{
    size_t len = 0;

    if (n == 0)
        return out;
    out[0] = '\0';
    if (mt->sender.n > 0)
        match_put_list(out, n, &len, "sender", NULL, mt->sender.n,
                       mt->sender.v);
    if (mt->rcpt.n > 0)
        match_put_list(out, n, &len, "recipient", NULL, mt->rcpt.n,
                       mt->rcpt.v);
    if (mt->nclient > 0)
        match_put_list(out, n, &len, "client", mt->client_items, mt->nclient,
                       NULL);
    if (mt->auth != MATCH_AUTH_ANY) {
        if (len > 0)
            match_put(out, n, &len, ", ");
        match_put(out, n, &len,
                  mt->auth == MATCH_AUTH_YES ? "auth=yes" : "auth=no");
    }
    if (len == 0)
        match_put(out, n, &len, "all mail");
    return out;
}
