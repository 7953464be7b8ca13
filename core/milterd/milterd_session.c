/*
 * milterd_session - the milter session: the envelope, the macros and the
 * message as the MTA's events bring them
 *
 * The message. Header fields and body chunks are gathered into one block
 * as the message would be written (CRLF line ends; a header value's LF
 * folding made CRLF), bounded by message_size_limit and header_limit;
 * beyond either nothing more is kept and the end of message answers with
 * milter_size_action. The block is also counted, 64 KiB at a time, in the
 * process-wide count the SMTP front end uses (smtpd_memory_limit): past
 * it the block is freed at once, nothing more is kept, and the end of
 * message answers tempfail 452 4.3.1; milterd_reset(), which every way
 * out of a transaction goes through, gives the count back. The field
 * names the MTA sent are kept, for the end of message to compare with
 * what msg_parse() makes of the block (milterd_eom.c).
 *
 * No event answers the MTA: a failure (memory, an event out of order) is
 * remembered in the session (milterd_break) and answered at the end of
 * the message with a tempfail. The session owns every string it keeps;
 * milterd_session_free() frees them.
 */
#include "config.h"

#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/addr.h"
#include "util/log.h"
#include "util/memlimit.h"
#include "milterd/milterd_int.h"

/* octets counted against smtpd_memory_limit at a time */
#define MILTERD_MEM_STEP 65536
#define MILTERD_VALUE_MAX 1024 /* a macro value we keep */

char *
milterd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

/* milterd_set - replace *field with a copy of value (NULL clears). */
static int
milterd_set(char **field, const char *value)
{
    char *p = NULL;

    if (value != NULL && (p = milterd_strdup(value)) == NULL)
        return -1;
    free(*field);
    *field = p;
    return 0;
}

static void
milterd_break(struct milterd_session *s, const char *why)
{
    if (!s->broken)
        snprintf(s->broken_why, sizeof(s->broken_why), "%s", why);
    s->broken = 1;
}

struct milterd_session *
milterd_session_new(const struct conf *cf, struct milterd_server *srv,
                    const struct milterd_ops *ops, void *ctx,
                    unsigned long actions, unsigned long proto, struct err *e)
{
    struct milterd_session *s;
    const char *const *nets;
    size_t nnets;

    if ((s = calloc(1, sizeof(*s))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    nnets = cfg_list(cf->cfg, "mynetworks", &nets);
    if ((s->mynetworks = cidr_list_new(nets, nnets, e)) == NULL) {
        free(s);
        return NULL;
    }
    s->cf = cf;
    s->srv = srv;
    s->ops = ops;
    s->ctx = ctx;
    s->actions = actions;
    s->proto = proto;
    s->size_action =
        (enum milterd_size_action)cfg_enum(cf->cfg, "milter_size_action");
    buf_init(&s->data, cf->limits.message_size);
    return s;
}

/* milterd_mem_give - give back what the message data counted. */
static void
milterd_mem_give(struct milterd_session *s)
{
    if (s->srv != NULL && s->srv->mem != NULL && s->mem_held > 0)
        memlimit_give(s->srv->mem, s->mem_held);
    s->mem_held = 0;
}

/* milterd_mem_take - count the data growing to want octets against
 * smtpd_memory_limit, a step at a time; -1 past the limit. */
static int
milterd_mem_take(struct milterd_session *s, size_t want)
{
    size_t more;

    if (s->srv == NULL || s->srv->mem == NULL || want <= s->mem_held)
        return 0;
    more = want - s->mem_held;
    if (more < MILTERD_MEM_STEP)
        more = MILTERD_MEM_STEP;
    if (memlimit_take(s->srv->mem, more, s->mem_held,
                      (size_t)cfg_num(s->cf->cfg, "smtpd_memory_limit")) < 0)
        return -1;
    s->mem_held += more;
    return 0;
}

void
milterd_reset(struct milterd_session *s)
{
    size_t i;

    msg_free(s->m);
    s->m = NULL;
    free(s->sender_raw);
    s->sender_raw = NULL;
    for (i = 0; i < s->nrcpts; i++)
        free(s->rcpts[i].raw);
    free(s->rcpts);
    s->rcpts = NULL;
    s->nrcpts = 0;
    for (i = 0; i < s->nnames; i++)
        free(s->names[i]);
    free(s->names);
    s->names = NULL;
    s->nnames = s->names_cap = 0;
    buf_fini(&s->data);
    buf_init(&s->data, s->cf->limits.message_size);
    milterd_mem_give(s);
    s->sep_done = s->over = s->mem_over = s->broken = 0;
    s->broken_why[0] = '\0';
    s->qid[0] = '\0';
}

void
milterd_session_free(struct milterd_session *s)
{
    if (s == NULL)
        return;
    milterd_reset(s);
    buf_fini(&s->data);
    free(s->client_addr);
    free(s->client_name);
    free(s->helo);
    free(s->auth_user);
    free(s->daemon_name);
    free(s->tls_version);
    cidr_list_free(s->mynetworks);
    free(s);
}

const char *
milterd_qid(const struct milterd_session *s)
{
    return s->qid[0] ? s->qid : "NOQUEUE";
}

void
milterd_macro(struct milterd_session *s, const char *name, const char *value)
{
    char **field = NULL;
    size_t n;

    if (name == NULL || value == NULL)
        return;
    n = strnlen(value, MILTERD_VALUE_MAX + 1);
    if (n > MILTERD_VALUE_MAX || memchr(value, '\n', n) ||
        memchr(value, '\r', n))
        return; /* not a value any MTA sends: ignored, not trusted */
    if (strcmp(name, "i") == 0 || strcmp(name, "{i}") == 0) {
        /* Queue ids go into log lines: letters and digits only. */
        if (n == 0 || n >= sizeof(s->qid) ||
            strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                          "wxyz0123456789") != n)
            return;
        memcpy(s->qid, value, n + 1);
        return;
    }
    if (strcmp(name, "{auth_authen}") == 0)
        field = &s->auth_user;
    else if (strcmp(name, "{daemon_name}") == 0)
        field = &s->daemon_name;
    else if (strcmp(name, "{tls_version}") == 0)
        field = &s->tls_version;
    if (field != NULL && milterd_set(field, n > 0 ? value : NULL) < 0)
        milterd_break(s, "out of memory");
}

void
milterd_connect(struct milterd_session *s, const char *hostname,
                const struct sockaddr *sa)
{
    char addr[INET6_ADDRSTRLEN];
    const char *a = NULL;

    if (sa != NULL && sa->sa_family == AF_INET)
        a = inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                      addr, sizeof(addr));
    else if (sa != NULL && sa->sa_family == AF_INET6) {
        a = inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
                      addr, sizeof(addr));
        if (a != NULL && strncmp(a, "::ffff:", 7) == 0 && strchr(a, '.'))
            a += 7;
    }
    if (milterd_set(&s->client_addr, a) < 0 ||
        milterd_set(&s->client_name, hostname) < 0)
        milterd_break(s, "out of memory");
    log_info(NULL, "milter connect from %s[%s]%s%s",
             hostname ? hostname : "unknown", a ? a : "unknown",
             s->daemon_name ? " via " : "",
             s->daemon_name ? s->daemon_name : "");
}

void
milterd_helo(struct milterd_session *s, const char *helo)
{
    if (milterd_set(&s->helo, helo) < 0)
        milterd_break(s, "out of memory");
}

/* milterd_addr - the mailbox of an address as the MTA sent it ("<a@b>",
 * or bare), into out; "" for the null sender. Addresses the SMTP parser
 * refuses but the MTA took (Sendmail and Postfix accept "<user>") are
 * kept as the MTA's word, without the brackets. */
int
milterd_addr(const char *raw, struct buf *out, struct err *e)
{
    size_t used, n = strlen(raw);

    buf_reset(out);
    if (raw[0] == '<' && addr_parse_path(raw, n, out, &used, e) == 0)
        return 0;
    buf_reset(out);
    if (n >= 2 && raw[0] == '<' && raw[n - 1] == '>')
        return buf_append(out, raw + 1, n - 2, e);
    return buf_append(out, raw, n, e);
}

/* milterd_params - the ESMTP parameters after argv[0], space-separated,
 * or NULL when there are none. */
static int
milterd_params(char *const *argv, struct buf *out, struct err *e)
{
    size_t i;

    for (i = 1; argv[i] != NULL; i++)
        if ((i > 1 && buf_putc(out, ' ', e) < 0) ||
            buf_puts(out, argv[i], e) < 0)
            return -1;
    return 0;
}

/* milterd_record - the address argv[0] and the ESMTP parameters after
 * it, given to s->m by record (msg_env_sender or msg_env_rcpt). */
static int
milterd_record(struct milterd_session *s, char *const *argv,
               int (*record)(struct msg *, const char *, const char *,
                             struct err *),
               struct err *e)
{
    struct buf addr, params;
    int rc = -1;

    buf_init(&addr, ADDR_MAX * 4);
    buf_init(&params, 4096);
    if (milterd_addr(argv[0], &addr, e) == 0 &&
        milterd_params(argv, &params, e) == 0)
        rc = record(s->m, buf_str(&addr), params.len ? buf_str(&params) : NULL,
                    e);
    buf_fini(&addr);
    buf_fini(&params);
    return rc;
}

void
milterd_mail(struct milterd_session *s, char *const *argv)
{
    struct err e;

    milterd_reset(s);
    if (argv == NULL || argv[0] == NULL) {
        milterd_break(s, "MAIL without an address");
        return;
    }
    if ((s->m = msg_new(&s->cf->limits, MSG_FE_MILTER, &e)) == NULL ||
        (s->sender_raw = milterd_strdup(argv[0])) == NULL ||
        milterd_record(s, argv, msg_env_sender, &e) < 0)
        milterd_break(s, "cannot record the sender");
}

void
milterd_rcpt(struct milterd_session *s, char *const *argv)
{
    struct milterd_rcpt *r;
    struct err e;
    char *raw;

    if (s->m == NULL) {
        milterd_break(s, "RCPT before MAIL");
        return;
    }
    if (argv == NULL || argv[0] == NULL) {
        milterd_break(s, "RCPT without an address");
        return;
    }
    if ((raw = milterd_strdup(argv[0])) == NULL ||
        (r = realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*r))) == NULL) {
        free(raw);
        milterd_break(s, "out of memory");
        return;
    }
    s->rcpts = r;
    s->rcpts[s->nrcpts++].raw = raw;
    if (milterd_record(s, argv, msg_env_rcpt, &e) < 0)
        milterd_break(s, "cannot record a recipient");
}

/* milterd_put - append to the message block; past the size limit keep
 * nothing more. */
static void
milterd_put(struct milterd_session *s, const void *p, size_t len)
{
    struct err e;

    if (s->over || s->mem_over)
        return;
    if (milterd_mem_take(s, s->data.len + len) < 0) {
        /* Keep nothing more and let the others have the memory; the
         * end of message answers 452 4.3.1. */
        s->mem_over = 1;
        buf_fini(&s->data);
        buf_init(&s->data, s->cf->limits.message_size);
        milterd_mem_give(s);
        return;
    }
    if (buf_append(&s->data, p, len, &e) < 0) {
        if (e.code == ERR_LIMIT) {
            s->over = 1;
            buf_fini(&s->data);
            buf_init(&s->data, s->cf->limits.message_size);
        } else {
            milterd_break(s, "out of memory");
        }
    }
}

void
milterd_header(struct milterd_session *s, const char *name, const char *value)
{
    const char *p, *nl;
    char **grown;

    if (s->m == NULL || name == NULL || value == NULL) {
        milterd_break(s, "header outside a transaction");
        return;
    }
    if (s->over || s->sep_done)
        return;
    if (s->cf->limits.header_count != 0 &&
        s->nnames >= s->cf->limits.header_count) {
        s->over = 1;
        return;
    }
    if (s->nnames == s->names_cap) {
        size_t ncap = s->names_cap ? s->names_cap * 2 : 32;

        if ((grown = realloc(s->names, ncap * sizeof(*grown))) == NULL) {
            milterd_break(s, "out of memory");
            return;
        }
        s->names = grown;
        s->names_cap = ncap;
    }
    if ((s->names[s->nnames] = milterd_strdup(name)) == NULL) {
        milterd_break(s, "out of memory");
        return;
    }
    s->nnames++;
    milterd_put(s, name, strlen(name));
    milterd_put(s, ":", 1);
    /* Without SMFIP_HDR_LEADSPC the MTA took the space after the colon. */
    if (!(s->proto & SMFIP_HDR_LEADSPC))
        milterd_put(s, " ", 1);
    /* Folding comes with LF (Postfix) or CRLF: make every line end CRLF. */
    for (p = value; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        size_t n = (size_t)(nl - p);

        if (n > 0 && nl[-1] == '\r')
            n--;
        milterd_put(s, p, n);
        milterd_put(s, "\r\n", 2);
    }
    milterd_put(s, p, strlen(p));
    milterd_put(s, "\r\n", 2);
}

void
milterd_eoh(struct milterd_session *s)
{
    if (s->m == NULL) {
        milterd_break(s, "end of header outside a transaction");
        return;
    }
    if (!s->sep_done)
        milterd_put(s, "\r\n", 2);
    s->sep_done = 1;
}

void
milterd_body(struct milterd_session *s, const unsigned char *p, size_t len)
{
    if (s->m == NULL) {
        milterd_break(s, "body outside a transaction");
        return;
    }
    milterd_eoh(s);
    if (p != NULL)
        milterd_put(s, p, len);
}

void
milterd_abort(struct milterd_session *s)
{
    if (s->m != NULL)
        log_info(milterd_qid(s), "milter: transaction aborted by the MTA");
    milterd_reset(s);
}
