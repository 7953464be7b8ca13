/*
 * milterd - the milter front end (Sendmail's libmilter)
 *
 * Negotiation. The MTA offers actions and protocol steps once per
 * connection; milterd_negotiate() keeps only the actions the loaded
 * chain can use (from chain_flags(): header, body, sender and recipient
 * edits; quarantine whenever there is a stage), skips the unknown
 * command and end-of-header events, asks for header values with their
 * leading space (SMFIP_HDR_LEADSPC) so they round-trip exactly, and asks
 * the MTA not to wait for a reply to connect, HELO, MAIL, RCPT and each
 * header: the chain decides at the end of the message and only there.
 * DATA and the body chunks are answered all the same: over TCP, Postfix's
 * next command would otherwise wait 40 ms behind an unacknowledged one
 * (its Nagle algorithm against our delayed ACK; measured with
 * scripts/bench/milter). An empty chain needs neither the header nor the
 * body. The macros come through
 * smfi_setsymlist where they are sent: {daemon_name} at connect,
 * {tls_version} and {cipher} at HELO, i and {auth_authen} at MAIL, i at
 * end of message (Sendmail knows the queue id only then).
 *
 * The message. Header fields and body chunks are gathered into one block
 * as the message would be written (CRLF line ends; a header value's LF
 * folding made CRLF), bounded by message_size_limit and header_limit;
 * beyond either nothing more is kept and the end of message answers with
 * milter_size_action. The block is also counted, 64 KiB at a time, in the
 * process-wide count the SMTP front end uses (smtpd_memory_limit): past
 * it the block is freed at once, nothing more is kept, and the end of
 * message answers tempfail 452 4.3.1; milterd_reset(), which every way
 * out of a transaction goes through, gives the count back. At end of
 * message the block becomes a struct msg without a copy (msg_adopt;
 * frontend MSG_FE_MILTER, envelope from the events and macros) and the
 * chain runs. The field names the MTA sent are kept and compared with
 * what msg_parse() made of the block: if they differ, the MTA's header
 * cannot be addressed reliably and the message is refused.
 *
 * Replaying the edits. The journal records every header edit with the
 * per-name index it had at that moment. The MTA's indexes differ from
 * the chain's in two ways: Postfix (and Sendmail) count their own
 * Received: header for smfi_insheader but never show it to a filter, and
 * Postfix cannot find a header added with smfi_addheader again (so an
 * edit of a header the chain itself added must not be sent as an edit).
 * So the journal is first applied to a list of field identities (the
 * MTA's fields by number, and the chain's new ones), which gives the
 * final header as the MTA must end up with it. Then the MTA's fields are
 * deleted or changed in order, each index computed on a model of the
 * MTA's header as it is after the previous requests (the CVE-2022-48521
 * class of bug is computing it on the original); new fields before an
 * MTA field are inserted just above it, the others appended. The body,
 * when replaced, goes as smfi_replacebody calls of at most 65535 octets
 * with CRLF line ends; the envelope as the difference between the MTA's
 * sender and recipients and the chain's.
 *
 * Verdicts: reject and tempfail become smfi_setreply with the stage's
 * code and enhanced code and SMFIS_REJECT or SMFIS_TEMPFAIL; discard
 * SMFIS_DISCARD; quarantine replays the edits and calls smfi_quarantine
 * with the reason (Postfix puts the message on hold). A stage error has
 * become its on_error policy in chain_run(); anything that goes wrong
 * here (memory, an MTA request refused) answers tempfail, never accept.
 *
 * Threads and state. libmilter calls back on its own threads, one
 * connection at a time per thread, with a per-connection pointer
 * (smfi_setpriv) and no other argument; the one process-wide pointer
 * (milterd_running, set once by milterd_run() before smfi_main starts
 * and read-only afterwards) is the price of that interface: libmilter
 * serves one filter per process. A progress thread sends smfi_progress
 * for every session whose chain has run longer than the interval; it
 * holds the server lock while it does, and a session leaves the busy
 * list under that lock before it replays its edits, so the two never
 * write to the MTA at once.
 *
 * Stopping. libmilter's thread pool stops serving the MTA's connections
 * when it stops (SIGTERM) and leaves them open, each with the runtime it
 * holds. milterd_drain() lets the ends of message under way finish,
 * tempfails later ones without running the chain, and then takes the
 * connections back; every libmilter callback goes through a guard
 * (mlfi_enter) so that none runs while it does, and none touches a
 * connection afterwards.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/addr.h"
#include "util/buf.h"
#include "chain/chain.h"
#include "util/cidr.h"
#include "util/log.h"
#include "util/memlimit.h"
#include "chain/step.h"
#include "milterd/milterd.h"
#include "msg/msg.h"
#include "net/netio.h"

#define MILTERD_CHUNK 65535 /* octets of one smfi_replacebody call */
/* octets counted against smtpd_memory_limit at a time */
#define MILTERD_MEM_STEP 65536
#define MILTERD_OWN_HEADERS 1  /* the MTA's own Received: field */
#define MILTERD_VALUE_MAX 1024 /* a macro value we keep */
#define MILTERD_BACKLOG 1024
#define MILTERD_PROGRESS_MS 10000
#define MILTERD_FD_SCAN 4096

/* ------------------------------------------------------- negotiation */

int
milterd_negotiate(unsigned chain_flags, size_t nstages,
                  unsigned long offer_act, unsigned long offer_proto,
                  unsigned long *act, unsigned long *proto, struct err *e)
{
    static const struct {
        unsigned stage;
        unsigned long act;
        const char *what;
    } need[] = {
        {STAGE_EDITS_HEADERS, SMFIF_ADDHDRS | SMFIF_CHGHDRS,
         "add and change headers"},
        {STAGE_EDITS_BODY, SMFIF_CHGBODY, "replace the body"},
        {STAGE_EDITS_SENDER, SMFIF_CHGFROM, "change the sender"},
        {STAGE_EDITS_RCPTS, SMFIF_ADDRCPT | SMFIF_DELRCPT,
         "add and delete recipients"},
    };
    /* Steps skipped whenever the MTA can skip them, and events no reply
     * is needed for. DATA (its macros are the last thing Postfix's smtpd
     * writes before its cleanup server sends the header on the same
     * socket) and body chunks are answered all the same: over TCP,
     * Postfix's Nagle algorithm holds a write until the previous one is
     * acknowledged, which a receiver that sends nothing back delays by
     * 40 ms. A reply carries the acknowledgement at once. */
    const unsigned long skip = SMFIP_NOUNKNOWN | SMFIP_NOEOH;
    const unsigned long noreply = SMFIP_NR_CONN | SMFIP_NR_HELO |
                                  SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                                  SMFIP_NR_UNKN | SMFIP_NR_EOH | SMFIP_NR_HDR;
    size_t i;

    *act = 0;
    for (i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (!(chain_flags & need[i].stage))
            continue;
        if ((offer_act & need[i].act) != need[i].act)
            return err_set(e, ERR_CONFIG,
                           "the MTA does not let a filter %s, which the "
                           "chain needs",
                           need[i].what);
        *act |= need[i].act;
    }
    if ((chain_flags & STAGE_EDITS_RCPTS) && (offer_act & SMFIF_ADDRCPT_PAR))
        *act |= SMFIF_ADDRCPT_PAR;
    if (nstages > 0)
        *act |= offer_act & SMFIF_QUARANTINE;
    *act |= offer_act & SMFIF_SETSYMLIST;

    *proto = offer_proto & (skip | noreply | SMFIP_HDR_LEADSPC);
    if (nstages == 0)
        *proto |= offer_proto & (SMFIP_NOHDRS | SMFIP_NOBODY);
    return 0;
}

/* ----------------------------------------------------------- session */

struct milterd_rcpt {
    char *raw; /* as the MTA sent it: "<a@b>" */
};

struct milterd_server {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t tid;
    int started, stop;
    long interval_ms;
    struct milterd_session *busy; /* sessions in chain_run */
    struct memlimit *mem;         /* shared with smtpd; NULL: no count */
    unsigned inflight;            /* sessions in milterd_eom */
    int draining;                 /* milterd_drain() was called */
};

struct milterd_session {
    const struct conf *cf;
    struct milterd_server *srv;
    const struct milterd_ops *ops;
    void *ctx;
    unsigned long actions, proto;
    enum milterd_size_action size_action;
    /* connection */
    char *client_addr, *client_name, *helo, *auth_user, *daemon_name;
    char *tls_version;
    struct cidr_list *mynetworks; /* relaychain.conf's, for msg_env_origin */
    char qid[32];
    /* transaction */
    struct msg *m;
    char *sender_raw;
    struct milterd_rcpt *rcpts;
    size_t nrcpts;
    struct buf data;
    char **names; /* the MTA's field names, in order */
    size_t nnames, names_cap;
    int sep_done;    /* the empty line is in data */
    int over;        /* over message_size_limit or header_limit */
    int mem_over;    /* over smtpd_memory_limit: nothing more is kept */
    size_t mem_held; /* octets of data counted in srv->mem */
    int broken;      /* an event failed: answer tempfail */
    char broken_why[160];
    /* progress */
    struct milterd_session *busy_next;
    long long t_last;
};

static char *
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

static void
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

static const char *
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
static int
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

void
milterd_mail(struct milterd_session *s, char *const *argv)
{
    struct buf addr, params;
    struct err e;

    milterd_reset(s);
    if (argv == NULL || argv[0] == NULL) {
        milterd_break(s, "MAIL without an address");
        return;
    }
    buf_init(&addr, ADDR_MAX * 4);
    buf_init(&params, 4096);
    if ((s->m = msg_new(&s->cf->limits, MSG_FE_MILTER, &e)) == NULL ||
        (s->sender_raw = milterd_strdup(argv[0])) == NULL ||
        milterd_addr(argv[0], &addr, &e) < 0 ||
        milterd_params(argv, &params, &e) < 0 ||
        msg_env_sender(s->m, buf_str(&addr),
                       params.len ? buf_str(&params) : NULL, &e) < 0)
        milterd_break(s, "cannot record the sender");
    buf_fini(&addr);
    buf_fini(&params);
}

void
milterd_rcpt(struct milterd_session *s, char *const *argv)
{
    struct milterd_rcpt *r;
    struct buf addr, params;
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
    buf_init(&addr, ADDR_MAX * 4);
    buf_init(&params, 4096);
    if (milterd_addr(argv[0], &addr, &e) < 0 ||
        milterd_params(argv, &params, &e) < 0 ||
        msg_env_rcpt(s->m, buf_str(&addr),
                     params.len ? buf_str(&params) : NULL, &e) < 0)
        milterd_break(s, "cannot record a recipient");
    buf_fini(&addr);
    buf_fini(&params);
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

/* ------------------------------------------------------------ replay */

/* One header field during replay: one of the MTA's (orig = its number)
 * or one the chain added (orig = -1). */
struct milterd_field {
    const char *name;
    long orig;
};

struct milterd_fields {
    struct milterd_field *v;
    size_t n, cap;
};

static int
milterd_fields_insert(struct milterd_fields *f, size_t pos, const char *name,
                      long orig)
{
    if (f->n == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 32;
        struct milterd_field *p = realloc(f->v, ncap * sizeof(*p));

        if (p == NULL)
            return -1;
        f->v = p;
        f->cap = ncap;
    }
    memmove(&f->v[pos + 1], &f->v[pos], (f->n - pos) * sizeof(*f->v));
    f->v[pos].name = name;
    f->v[pos].orig = orig;
    f->n++;
    return 0;
}

static void
milterd_fields_remove(struct milterd_fields *f, size_t pos)
{
    memmove(&f->v[pos], &f->v[pos + 1], (f->n - pos - 1) * sizeof(*f->v));
    f->n--;
}

/* milterd_fields_find - position of the index-th (1-based) field called
 * name, or -1. */
static long
milterd_fields_find(const struct milterd_fields *f, const char *name,
                    size_t index)
{
    size_t i, seen = 0;

    for (i = 0; i < f->n; i++)
        if (strcasecmp(f->v[i].name, name) == 0 && ++seen == index)
            return (long)i;
    return -1;
}

/* milterd_fields_pos - position of the MTA's field number orig, or -1. */
static long
milterd_fields_pos(const struct milterd_fields *f, long orig)
{
    size_t i;

    for (i = 0; i < f->n; i++)
        if (f->v[i].orig == orig)
            return (long)i;
    return -1;
}

/* milterd_fields_index - the per-name 1-based index the MTA gives the
 * field at pos. */
static int
milterd_fields_index(const struct milterd_fields *f, size_t pos)
{
    size_t i;
    int n = 1;

    for (i = 0; i < pos; i++)
        if (strcasecmp(f->v[i].name, f->v[pos].name) == 0)
            n++;
    return n;
}

/* milterd_value - a header value as the MTA takes it: LF folding, and
 * without the leading space the MTA puts in itself when
 * SMFIP_HDR_LEADSPC was not agreed. */
static int
milterd_value(const struct milterd_session *s, const char *v, size_t len,
              struct buf *out, struct err *e)
{
    size_t i;

    buf_reset(out);
    if (!(s->proto & SMFIP_HDR_LEADSPC) && len > 0 && v[0] == ' ') {
        v++;
        len--;
    }
    for (i = 0; i < len; i++)
        if (!(v[i] == '\r' && i + 1 < len && v[i + 1] == '\n') &&
            buf_putc(out, v[i], e) < 0)
            return -1;
    return buf_reserve(out, 1, e);
}

static int
milterd_mta_failed(struct err *e, const char *what, const char *name)
{
    return err_set(e, ERR_TEMP, "the MTA refused the request to %s%s%s", what,
                   name ? " " : "", name ? name : "");
}

/* milterd_replay_headers - see the file comment. */
static int
milterd_replay_headers(struct milterd_session *s, struct msg *m,
                       unsigned *nops, struct err *e)
{
    struct milterd_fields fin = {NULL, 0, 0}, mta = {NULL, 0, 0};
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i, k;
    unsigned char *changed = NULL, *deleted = NULL;
    struct buf val;
    int rc = -1, any = 0;

    for (i = 0; i < ned; i++)
        if (ed[i].kind <= MSG_EDIT_HEADER_DELETE)
            any = 1;
    if (!any)
        return 0;
    buf_init(&val, 0);
    if ((changed = calloc(s->nnames + 1, 1)) == NULL ||
        (deleted = calloc(s->nnames + 1, 1)) == NULL)
        goto nomem;
    for (k = 0; k < s->nnames; k++)
        if (milterd_fields_insert(&fin, k, s->names[k], (long)k) < 0 ||
            milterd_fields_insert(&mta, k, s->names[k], (long)k) < 0)
            goto nomem;

    /* The journal applied to identities: fin is the header as it must
     * end, field by field. */
    for (i = 0; i < ned; i++) {
        long pos;

        switch (ed[i].kind) {
        case MSG_EDIT_HEADER_ADD:
            if (milterd_fields_insert(&fin, fin.n, ed[i].name, -1) < 0)
                goto nomem;
            break;
        case MSG_EDIT_HEADER_INSERT:
            if (ed[i].position > fin.n) {
                err_set(e, ERR_INTERNAL, "journal: insert past the header");
                goto out;
            }
            if (milterd_fields_insert(&fin, ed[i].position, ed[i].name, -1) <
                0)
                goto nomem;
            break;
        case MSG_EDIT_HEADER_CHANGE:
        case MSG_EDIT_HEADER_DELETE:
            if ((pos = milterd_fields_find(&fin, ed[i].name, ed[i].index)) <
                0) {
                err_set(e, ERR_INTERNAL, "journal: no %s field number %zu",
                        ed[i].name, ed[i].index);
                goto out;
            }
            if (ed[i].kind == MSG_EDIT_HEADER_CHANGE) {
                if (fin.v[pos].orig >= 0)
                    changed[fin.v[pos].orig] = 1;
            } else {
                if (fin.v[pos].orig >= 0)
                    deleted[fin.v[pos].orig] = 1;
                milterd_fields_remove(&fin, (size_t)pos);
            }
            break;
        default:
            break;
        }
    }
    if (fin.n != msg_header_count(m)) {
        err_set(e, ERR_INTERNAL,
                "journal: %zu fields replayed, message has "
                "%zu",
                fin.n, msg_header_count(m));
        goto out;
    }

    /* The MTA's own fields, in order, each index taken on mta as it is
     * after the requests before it. */
    for (k = 0; k < s->nnames; k++) {
        long pos = milterd_fields_pos(&mta, (long)k), fpos;
        const char *v;
        size_t vlen;
        int index;

        if (pos < 0 || (!deleted[k] && !changed[k]))
            continue;
        index = milterd_fields_index(&mta, (size_t)pos);
        if (deleted[k]) {
            if (s->ops->chgheader(s->ctx, s->names[k], index, NULL) < 0) {
                milterd_mta_failed(e, "delete header", s->names[k]);
                goto out;
            }
            milterd_fields_remove(&mta, (size_t)pos);
        } else {
            fpos = milterd_fields_pos(&fin, (long)k);
            if (fpos < 0 ||
                msg_header_at(m, (size_t)fpos, NULL, &v, &vlen) < 0) {
                err_set(e, ERR_INTERNAL, "journal: lost field %s",
                        s->names[k]);
                goto out;
            }
            if (milterd_value(s, v, vlen, &val, e) < 0)
                goto out;
            if (s->ops->chgheader(s->ctx, s->names[k], index, buf_str(&val)) <
                0) {
                milterd_mta_failed(e, "change header", s->names[k]);
                goto out;
            }
        }
        (*nops)++;
    }

    /* The chain's new fields: above the next MTA field, or appended. */
    for (i = 0; i < fin.n; i++) {
        const char *name, *v;
        size_t vlen, j;
        long pos = -1;

        if (fin.v[i].orig >= 0)
            continue;
        for (j = i + 1; j < fin.n && pos < 0; j++)
            if (fin.v[j].orig >= 0)
                pos = milterd_fields_pos(&mta, fin.v[j].orig);
        if (msg_header_at(m, i, &name, &v, &vlen) < 0 ||
            milterd_value(s, v, vlen, &val, e) < 0)
            goto out;
        if (pos < 0) {
            if (s->ops->addheader(s->ctx, name, buf_str(&val)) < 0) {
                milterd_mta_failed(e, "add header", name);
                goto out;
            }
        } else {
            if (s->ops->insheader(s->ctx, (int)pos + MILTERD_OWN_HEADERS, name,
                                  buf_str(&val)) < 0) {
                milterd_mta_failed(e, "insert header", name);
                goto out;
            }
            if (milterd_fields_insert(&mta, (size_t)pos, name, -1) < 0)
                goto nomem;
        }
        (*nops)++;
    }
    rc = 0;
    goto out;

nomem:
    err_nomem(e);
out:
    buf_fini(&val);
    free(changed);
    free(deleted);
    free(fin.v);
    free(mta.v);
    return rc;
}

/* milterd_replay_body - the body in chunks, every line end CRLF. */
static int
milterd_replay_body(struct milterd_session *s, struct msg *m, struct err *e)
{
    unsigned char *chunk;
    const char *body;
    size_t len, i, n = 0;
    int rc = 0;

    body = msg_body(m, &len);
    if ((chunk = malloc(MILTERD_CHUNK)) == NULL)
        return err_nomem(e);
    for (i = 0; i < len && rc == 0; i++) {
        if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) {
            if (n + 1 >= MILTERD_CHUNK) {
                rc = s->ops->replacebody(s->ctx, chunk, n);
                n = 0;
            }
            chunk[n++] = '\r';
        }
        chunk[n++] = (unsigned char)body[i];
        if (n == MILTERD_CHUNK) {
            rc = s->ops->replacebody(s->ctx, chunk, n);
            n = 0;
        }
    }
    /* An empty body is replaced by one empty call. */
    if (rc == 0 && (n > 0 || len == 0))
        rc = s->ops->replacebody(s->ctx, chunk, n);
    free(chunk);
    return rc < 0 ? milterd_mta_failed(e, "replace the body", NULL) : 0;
}

static int
milterd_bracket(const char *addr, struct buf *out, struct err *e)
{
    buf_reset(out);
    return buf_printf(out, e, "<%s>", addr);
}

/* milterd_replay_envelope - the difference between the MTA's envelope
 * and the chain's. */
static int
milterd_replay_envelope(struct milterd_session *s, struct msg *m,
                        unsigned *nops, struct err *e)
{
    const struct msg_env *env = msg_env(m);
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i, j;
    const char *sender_params = NULL;
    int sender = 0, rcpts = 0, rc = -1;
    struct buf a, b;

    for (i = 0; i < ned; i++) {
        if (ed[i].kind == MSG_EDIT_SENDER) {
            sender = 1;
            sender_params = ed[i].params;
        } else if (ed[i].kind == MSG_EDIT_RCPT_ADD ||
                   ed[i].kind == MSG_EDIT_RCPT_DELETE) {
            rcpts = 1;
        }
    }
    if (!sender && !rcpts)
        return 0;
    buf_init(&a, ADDR_MAX * 4);
    buf_init(&b, ADDR_MAX * 4);
    if (sender) {
        if (milterd_addr(s->sender_raw, &a, e) < 0)
            goto out;
        if (strcmp(buf_str(&a), env->sender) != 0) {
            if (milterd_bracket(env->sender, &b, e) < 0)
                goto out;
            if (s->ops->chgfrom(s->ctx, buf_str(&b), sender_params) < 0) {
                milterd_mta_failed(e, "change the sender to", buf_str(&b));
                goto out;
            }
            (*nops)++;
        }
    }
    if (rcpts) {
        for (i = 0; i < s->nrcpts; i++) {
            int kept = 0;

            if (milterd_addr(s->rcpts[i].raw, &a, e) < 0)
                goto out;
            for (j = 0; j < env->nrcpts && !kept; j++)
                kept = strcmp(env->rcpts[j].addr, buf_str(&a)) == 0;
            if (kept)
                continue;
            if (s->ops->delrcpt(s->ctx, s->rcpts[i].raw) < 0) {
                milterd_mta_failed(e, "delete recipient", s->rcpts[i].raw);
                goto out;
            }
            (*nops)++;
        }
        for (j = 0; j < env->nrcpts; j++) {
            int known = 0;

            for (i = 0; i < s->nrcpts && !known; i++) {
                if (milterd_addr(s->rcpts[i].raw, &a, e) < 0)
                    goto out;
                known = strcmp(env->rcpts[j].addr, buf_str(&a)) == 0;
            }
            if (known)
                continue;
            if (milterd_bracket(env->rcpts[j].addr, &b, e) < 0)
                goto out;
            if (s->ops->addrcpt(s->ctx, buf_str(&b),
                                (s->actions & SMFIF_ADDRCPT_PAR)
                                    ? env->rcpts[j].params
                                    : NULL) < 0) {
                milterd_mta_failed(e, "add recipient", buf_str(&b));
                goto out;
            }
            (*nops)++;
        }
    }
    rc = 0;
out:
    buf_fini(&a);
    buf_fini(&b);
    return rc;
}

/* milterd_replay - every edit of the chain, to the MTA. */
static int
milterd_replay(struct milterd_session *s, struct msg *m, unsigned *nops,
               int *body, struct err *e)
{
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i;

    *body = 0;
    if (milterd_replay_envelope(s, m, nops, e) < 0 ||
        milterd_replay_headers(s, m, nops, e) < 0)
        return -1;
    for (i = 0; i < ned; i++)
        if (ed[i].kind == MSG_EDIT_BODY_REPLACE)
            *body = 1;
    if (*body && milterd_replay_body(s, m, e) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------- verdict */

/* milterd_reply - give the MTA an SMTP reply "DDD [X.Y.Z] text"; the
 * first digit must be want ('4' or '5') or a default is used. libmilter
 * and Sendmail take the text as a format: '%' is doubled. */
static void
milterd_reply(struct milterd_session *s, const char *reply, char want)
{
    char rcode[4], xcode[32], text[VERDICT_REPLY_MAX * 2];
    const char *p = reply, *x;
    size_t i, j, n;

    if (p == NULL || p[0] != want || strspn(p, "0123456789") != 3 ||
        (p[3] != ' ' && p[3] != '\0'))
        p = want == '5' ? "550 5.7.1 Message rejected"
                        : "451 4.3.0 Temporary failure, try again later";
    memcpy(rcode, p, 3);
    rcode[3] = '\0';
    p += 3;
    while (*p == ' ')
        p++;
    xcode[0] = '\0';
    x = p;
    n = strcspn(x, " ");
    if (n > 4 && n < sizeof(xcode) && x[0] == want && x[1] == '.' &&
        strspn(x, "0123456789.") == n) {
        memcpy(xcode, x, n);
        xcode[n] = '\0';
        p = x + n;
        while (*p == ' ')
            p++;
    }
    for (i = j = 0; p[i] != '\0' && j + 2 < sizeof(text); i++) {
        if (p[i] == '\r' || p[i] == '\n')
            continue;
        if (p[i] == '%')
            text[j++] = '%';
        text[j++] = p[i];
    }
    text[j] = '\0';
    /* The queue id the log lines carry (the MTA's own): the sender's
     * bounce and the admin's log then meet. */
    if (s->qid[0] != '\0' && j + strlen(s->qid) + 6 < sizeof(text))
        snprintf(text + j, sizeof(text) - j, "%s(id %s)", j ? " " : "",
                 s->qid);
    if (s->ops->setreply(s->ctx, rcode, xcode[0] ? xcode : NULL,
                         text[0] ? text : NULL) < 0)
        log_warning(milterd_qid(s), "milter: the MTA refused the reply %s %s",
                    rcode, xcode);
}

/* milterd_log_summary - the one line per message in amavisd-new's
 * habit (see smtpd.c), with what the MTA was told to do in tag. */
static void
milterd_log_summary(struct milterd_session *s, const struct chain_result *res,
                    const char *tag)
{
    const struct msg_env *env = msg_env(s->m);
    char words[200], to[1024];
    size_t i, used = 0;

    chain_summary(res, words, sizeof(words));
    to[0] = '\0';
    for (i = 0; i < env->nrcpts && used < sizeof(to); i++) {
        int k;

        if (i == 8 && env->nrcpts > 9) {
            snprintf(to + used, sizeof(to) - used, ",...(%zu more)",
                     env->nrcpts - i);
            break;
        }
        k = snprintf(to + used, sizeof(to) - used, "%s<%s>", i ? "," : "",
                     env->rcpts[i].addr);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    log_info(milterd_qid(s),
             "%s {%s}%s%s, client=%s[%s], from=<%s>, to=%s, size=%zu", words,
             tag, res->by ? ", by=" : "", res->by ? res->by->name : "",
             env->client_name ? env->client_name : "unknown",
             env->client_addr ? env->client_addr : "unknown",
             env->sender ? env->sender : "", to, s->data.len);
}

static enum milterd_status
milterd_tempfail(struct milterd_session *s, const char *reply)
{
    milterd_reply(s, reply, '4');
    return MILTERD_TEMPFAIL;
}

/* --------------------------------------------------------- draining */

/* milterd_inflight_enter - count an end of message under way; -1 when
 * the daemon is stopping, and the chain must not start. */
static int
milterd_inflight_enter(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;
    int rc = 0;

    if (srv == NULL)
        return 0;
    pthread_mutex_lock(&srv->lock);
    if (srv->draining)
        rc = -1;
    else
        srv->inflight++;
    pthread_mutex_unlock(&srv->lock);
    return rc;
}

static void
milterd_inflight_leave(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->inflight--;
    pthread_mutex_unlock(&srv->lock);
}

/* --------------------------------------------------------- progress */

static void
milterd_busy_enter(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    s->t_last = netio_now_ms();
    s->busy_next = srv->busy;
    srv->busy = s;
    pthread_mutex_unlock(&srv->lock);
}

static void
milterd_busy_leave(struct milterd_session *s)
{
    struct milterd_server *srv = s->srv;
    struct milterd_session **pp;

    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    for (pp = &srv->busy; *pp != NULL; pp = &(*pp)->busy_next)
        if (*pp == s) {
            *pp = s->busy_next;
            break;
        }
    s->busy_next = NULL;
    pthread_mutex_unlock(&srv->lock);
}

static void *
milterd_progress_thread(void *arg)
{
    struct milterd_server *srv = arg;
    long tick = srv->interval_ms / 4 > 10 ? srv->interval_ms / 4 : 10;

    pthread_mutex_lock(&srv->lock);
    while (!srv->stop) {
        struct milterd_session *s;
        struct timespec ts;
        long long now;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += tick / 1000;
        ts.tv_nsec += (tick % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&srv->cond, &srv->lock, &ts);
        now = netio_now_ms();
        for (s = srv->busy; s != NULL; s = s->busy_next)
            if (now - s->t_last >= srv->interval_ms) {
                (void)s->ops->progress(s->ctx);
                s->t_last = now;
            }
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

struct milterd_server *
milterd_server_new(long interval_ms, struct err *e)
{
    struct milterd_server *srv;

    if ((srv = calloc(1, sizeof(*srv))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    srv->interval_ms = interval_ms > 0 ? interval_ms : MILTERD_PROGRESS_MS;
    if (pthread_create(&srv->tid, NULL, milterd_progress_thread, srv) != 0) {
        err_set(e, ERR_TEMP, "cannot start the milter progress thread");
        pthread_cond_destroy(&srv->cond);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return NULL;
    }
    srv->started = 1;
    return srv;
}

void
milterd_server_set_memlimit(struct milterd_server *srv, struct memlimit *ml)
{
    srv->mem = ml;
}

void
milterd_server_free(struct milterd_server *srv)
{
    if (srv == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    srv->stop = 1;
    pthread_cond_signal(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
    if (srv->started)
        pthread_join(srv->tid, NULL);
    pthread_cond_destroy(&srv->cond);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

/* --------------------------------------------------- end of message */

/* milterd_check_fields - the fields msg_parse() found are the MTA's. */
static int
milterd_check_fields(const struct milterd_session *s, const struct msg *m)
{
    size_t i;
    const char *name;

    if (msg_header_count(m) != s->nnames)
        return -1;
    for (i = 0; i < s->nnames; i++)
        if (msg_header_at(m, i, &name, NULL, NULL) < 0 ||
            strcmp(name, s->names[i]) != 0)
            return -1;
    return 0;
}

static enum milterd_status
milterd_size(struct milterd_session *s)
{
    const char *what = s->nnames >= s->cf->limits.header_count &&
                               s->cf->limits.header_count != 0
                           ? "header_limit"
                           : "message_size_limit";

    switch (s->size_action) {
    case MILTERD_SIZE_REJECT:
        log_info(milterd_qid(s),
                 "milter-reject: END-OF-MESSAGE: over %s: "
                 "552 5.3.4",
                 what);
        milterd_reply(s, "552 5.3.4 Message size exceeds fixed limit", '5');
        return MILTERD_REJECT;
    case MILTERD_SIZE_ACCEPT:
        log_warning(milterd_qid(s),
                    "milter: over %s: passed on UNSCANNED "
                    "(milter_size_action = accept)",
                    what);
        return MILTERD_CONTINUE;
    case MILTERD_SIZE_TEMPFAIL:
        break;
    }
    log_info(milterd_qid(s),
             "milter-tempfail: END-OF-MESSAGE: over %s: "
             "452 4.3.4",
             what);
    return milterd_tempfail(s, "452 4.3.4 Message too big for the content "
                               "filter");
}

/* milterd_prepare - the step's preparation (chain/step.h): the fields
 * must be the MTA's (else 554, refused), then the "from=" line. */
static int
milterd_prepare(void *arg, struct msg *m, size_t size, struct err *e)
{
    struct milterd_session *s = arg;
    const struct msg_env *env;

    (void)e;
    if (milterd_check_fields(s, m) < 0) {
        log_info(milterd_qid(s), "milter-reject: END-OF-MESSAGE: a header "
                                 "field the MTA sent is not a valid field");
        milterd_reply(s, "554 5.6.0 Malformed header field", '5');
        return 1;
    }
    env = msg_env(m);
    log_info(milterd_qid(s), "milter: from=<%s>, size=%zu, nrcpt=%zu%s%s",
             env->sender ? env->sender : "", size, env->nrcpts,
             s->auth_user ? ", sasl_username=" : "",
             s->auth_user ? s->auth_user : "");
    return 0;
}

/* milterd_running_chain - the step's chain starts (on) and ends: the
 * progress thread may send notices meanwhile. */
static void
milterd_running_chain(void *arg, int on)
{
    if (on)
        milterd_busy_enter(arg);
    else
        milterd_busy_leave(arg);
}

enum milterd_status
milterd_eom(struct milterd_session *s)
{
    struct chain_result res;
    enum milterd_status st = MILTERD_TEMPFAIL;
    enum step_outcome outcome;
    struct step_in in;
    unsigned nops = 0;
    int body = 0, ran = 0;
    struct err e;

    memset(&res, 0, sizeof(res));
    err_clear(&e);
    if (milterd_inflight_enter(s) < 0) {
        log_info(milterd_qid(s), "milter-tempfail: END-OF-MESSAGE: "
                                 "relaychaind is stopping");
        st = milterd_tempfail(s, "451 4.3.2 Error: the content filter is "
                                 "stopping, try again later");
        milterd_reset(s);
        return st;
    }
    if (s->broken || s->m == NULL) {
        log_error(milterd_qid(s), "milter: %s",
                  s->m == NULL ? "end of message outside a transaction"
                               : s->broken_why);
        st = milterd_tempfail(s, "451 4.3.0 Error: internal error in the "
                                 "content filter");
        goto out;
    }
    if (s->over) {
        st = milterd_size(s);
        goto out;
    }
    if (s->mem_over) {
        log_info(milterd_qid(s), "milter-tempfail: END-OF-MESSAGE: over "
                                 "smtpd_memory_limit: 452 4.3.1");
        st = milterd_tempfail(s, "452 4.3.1 Insufficient system resources");
        goto out;
    }
    milterd_eoh(s);
    memset(&in, 0, sizeof(in));
    in.cf = s->cf;
    in.log_qid = milterd_qid(s);
    in.qid = s->qid[0] ? s->qid : NULL;
    in.client_addr = s->client_addr;
    in.client_name = s->client_name;
    in.helo = s->helo;
    in.tls = s->tls_version != NULL;
    in.auth_user = s->auth_user;
    in.internal = cidr_list_contains(s->mynetworks, s->client_addr);
    in.daemon_name = s->daemon_name;
    /* The message takes the block over: no second copy. */
    in.data = &s->data;
    in.prepare = milterd_prepare;
    in.running = milterd_running_chain;
    in.arg = s;
    in.log_tag = "milter-";
    in.log_where = "END-OF-MESSAGE: ";

    outcome = step_run(&in, s->m, &res, &e);
    ran = outcome >= STEP_REJECT;
    switch (outcome) {
    case STEP_ERROR:
        goto internal;
    case STEP_TOO_BIG:
        s->over = 1;
        st = milterd_size(s);
        goto out;
    case STEP_REFUSED:
        st = MILTERD_REJECT;
        goto out;
    case STEP_REJECT:
        milterd_reply(s, res.verdict.reply, '5');
        st = MILTERD_REJECT;
        goto out;
    case STEP_TEMPFAIL:
        st = milterd_tempfail(s, res.verdict.reply);
        goto out;
    case STEP_DISCARD:
    case STEP_NO_RCPTS:
        st = MILTERD_DISCARD;
        goto out;
    case STEP_QUARANTINE:
    case STEP_CONTINUE:
        break;
    }
    if (milterd_replay(s, s->m, &nops, &body, &e) < 0)
        goto internal;
    if (res.verdict.kind == VERDICT_QUARANTINE) {
        char reason[VERDICT_NOTE_MAX + 64];

        snprintf(reason, sizeof(reason), "relaychain %s%s%s",
                 res.by ? res.by->name : "chain",
                 res.verdict.note[0] ? ": " : "", res.verdict.note);
        if (s->ops->quarantine(s->ctx, reason) < 0) {
            milterd_mta_failed(&e, "quarantine the message", NULL);
            goto internal;
        }
        log_info(milterd_qid(s), "milter-hold: END-OF-MESSAGE: %s", reason);
    }
    log_info(milterd_qid(s), "milter: continue, %u edit request(s)%s", nops,
             body ? ", body replaced" : "");
    st = MILTERD_CONTINUE;
    goto out;

internal:
    log_error(milterd_qid(s), "milter: %s",
              e.text[0] ? e.text : "internal error");
    st = milterd_tempfail(s, "451 4.3.0 Error: internal error in the "
                             "content filter");
out:
    if (ran)
        milterd_log_summary(s, &res,
                            st == MILTERD_REJECT     ? "Rejected"
                            : st == MILTERD_DISCARD  ? "Discarded"
                            : st == MILTERD_TEMPFAIL ? "TempFailed"
                            : res.verdict.kind == VERDICT_QUARANTINE
                                ? "Held"
                                : "Accepted");
    chain_result_fini(&res);
    milterd_reset(s);
    milterd_inflight_leave(s);
    return st;
}

/* ------------------------------------------------------ socket spec */

int
milterd_check_listen(const char *spec, struct err *e)
{
    const char *p;
    char *end;
    long port;

    if (spec == NULL || *spec == '\0')
        return err_set(e, ERR_CONFIG, "empty socket");
    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        p = strchr(spec, ':') + 1;
        if (p[0] != '/')
            return err_set(e, ERR_CONFIG,
                           "'%s': a UNIX socket needs an absolute path", spec);
        if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return err_set(e, ERR_CONFIG, "'%s': path too long", spec);
        return 0;
    }
    if (strncmp(spec, "inet:", 5) == 0 || strncmp(spec, "inet6:", 6) == 0) {
        p = strchr(spec, ':') + 1;
        errno = 0;
        port = strtol(p, &end, 10);
        if (end == p || errno != 0 || port < 1 || port > 65535 ||
            (*end != '\0' && *end != '@') || (*end == '@' && end[1] == '\0'))
            return err_set(e, ERR_CONFIG,
                           "'%s' is not inet:port@host (libmilter's form, "
                           "port first)",
                           spec);
        return 0;
    }
    return err_set(e, ERR_CONFIG,
                   "'%s': expected unix:/path, local:/path, inet:port@host or "
                   "inet6:port@host",
                   spec);
}

/* -------------------------------------------------------- connection */

int
milterd_conn_open(struct milterd_conn *c, milterd_hold_fn hold, int negotiate,
                  unsigned long *act, unsigned long *proto,
                  struct milterd_server *srv, const struct milterd_ops *ops,
                  void *ctx, struct err *e)
{
    const struct conf *cf;
    const struct stage *const *st;
    size_t n;

    memset(c, 0, sizeof(*c));
    c->rt = hold();
    cf = runtime_conf(c->rt);
    if (negotiate) {
        n = chain_stages(cf->chain, &st);
        if (milterd_negotiate(chain_flags(cf->chain), n, *act, *proto, act,
                              proto, e) < 0) {
            runtime_release(c->rt);
            c->rt = NULL;
            return -1;
        }
    }
    if ((c->s = milterd_session_new(cf, srv, ops, ctx, *act, *proto, e)) ==
        NULL) {
        runtime_release(c->rt);
        c->rt = NULL;
        return -2;
    }
    return 0;
}

void
milterd_conn_close(struct milterd_conn *c)
{
    milterd_session_free(c->s);
    runtime_release(c->rt);
    c->s = NULL;
    c->rt = NULL;
}

/* --------------------------------------------------------- libmilter */

struct mlfi_conn;

struct milterd {
    char *spec;
    char *unix_path; /* NULL for inet */
    int port;        /* inet */
    milterd_hold_fn hold;
    int done_fd;
    struct memlimit *mem;
    struct milterd_server *srv;
    pthread_t tid;
    int running;
    int rc;
    /* Under srv->lock: the MTA's connections, the callbacks running now,
     * and whether milterd_drain() took the connections back. */
    struct mlfi_conn *conns;
    unsigned calls;
    int reaped;
};

/* Set once by milterd_run() before smfi_main starts; see the file
 * comment. */
static struct milterd *milterd_running;

struct mlfi_conn {
    struct milterd_conn conn;
    struct mlfi_conn *next; /* md->conns */
};

static int
mlfi_addheader(void *ctx, const char *name, const char *value)
{
    return smfi_addheader(ctx, (char *)name, (char *)value);
}

static int
mlfi_insheader(void *ctx, int index, const char *name, const char *value)
{
    return smfi_insheader(ctx, index, (char *)name, (char *)value);
}

static int
mlfi_chgheader(void *ctx, const char *name, int index, const char *value)
{
    return smfi_chgheader(ctx, (char *)name, index, (char *)value);
}

static int
mlfi_replacebody(void *ctx, const unsigned char *p, size_t len)
{
    return smfi_replacebody(ctx, (unsigned char *)p, (int)len);
}

static int
mlfi_chgfrom(void *ctx, const char *addr, const char *params)
{
    return smfi_chgfrom(ctx, (char *)addr, (char *)params);
}

static int
mlfi_addrcpt(void *ctx, const char *addr, const char *params)
{
    if (params != NULL)
        return smfi_addrcpt_par(ctx, (char *)addr, (char *)params);
    return smfi_addrcpt(ctx, (char *)addr);
}

static int
mlfi_delrcpt(void *ctx, const char *addr)
{
    return smfi_delrcpt(ctx, (char *)addr);
}

static int
mlfi_quarantine(void *ctx, const char *reason)
{
    return smfi_quarantine(ctx, (char *)reason);
}

static int
mlfi_setreply(void *ctx, const char *rcode, const char *xcode,
              const char *text)
{
    return smfi_setreply(ctx, (char *)rcode, (char *)xcode, (char *)text);
}

static int
mlfi_progress(void *ctx)
{
    return smfi_progress(ctx);
}

static const struct milterd_ops mlfi_ops = {
    mlfi_addheader, mlfi_insheader, mlfi_chgheader, mlfi_replacebody,
    mlfi_chgfrom,   mlfi_addrcpt,   mlfi_delrcpt,   mlfi_quarantine,
    mlfi_setreply,  mlfi_progress,
};

/* The macros relaychain reads, by the event they are sent with. */
static const struct {
    int where;
    const char *list;
} mlfi_macros[] = {
    {SMFIM_CONNECT, "{daemon_name} j"},
    {SMFIM_HELO, "{tls_version} {cipher}"},
    {SMFIM_ENVFROM, "i {auth_authen} {auth_type}"},
    {SMFIM_EOM, "i"},
};

static void
mlfi_getmacros(SMFICTX *ctx, struct milterd_session *s, int where)
{
    static const char *const names[][3] = {
        [SMFIM_CONNECT] = {"{daemon_name}", NULL, NULL},
        [SMFIM_HELO] = {"{tls_version}", NULL, NULL},
        [SMFIM_ENVFROM] = {"i", "{auth_authen}", NULL},
        [SMFIM_ENVRCPT] = {NULL, NULL, NULL},
        [SMFIM_DATA] = {NULL, NULL, NULL},
        [SMFIM_EOM] = {"i", NULL, NULL},
    };
    size_t i;

    if (where < 0 || where > SMFIM_EOM)
        return;
    for (i = 0; i < 3 && names[where][i] != NULL; i++)
        milterd_macro(s, names[where][i],
                      smfi_getsymval(ctx, (char *)names[where][i]));
}

/* mlfi_conn - the connection's state, made on first use: at negotiation
 * (negotiate set: *act and *proto are the MTA's offer, and become what
 * was agreed), or at connect with an MTA that does not negotiate. NULL,
 * with *refused set when the MTA must be refused (logged), else for a
 * tempfail. */
static struct mlfi_conn *
mlfi_conn(SMFICTX *ctx, int negotiate, unsigned long *act,
          unsigned long *proto, int *refused)
{
    struct mlfi_conn *c = smfi_getpriv(ctx);
    struct milterd *md = milterd_running;
    struct err e;
    int rc;

    *refused = 0;
    err_clear(&e);
    if (c != NULL && negotiate) {
        /* Negotiated once per connection; should the MTA do it again,
         * the answer is for the chain the connection already has. */
        const struct conf *cf = runtime_conf(c->conn.rt);
        const struct stage *const *st;
        size_t n = chain_stages(cf->chain, &st);

        if (milterd_negotiate(chain_flags(cf->chain), n, *act, *proto, act,
                              proto, &e) < 0) {
            log_error(NULL, "milter: %s", e.text);
            *refused = 1;
            return NULL;
        }
        return c;
    }
    if (c != NULL || md == NULL)
        return c;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    if ((rc = milterd_conn_open(&c->conn, md->hold, negotiate, act, proto,
                                md->srv, &mlfi_ops, ctx, &e)) < 0) {
        if (rc == -1) {
            log_error(NULL, "milter: %s", e.text);
            *refused = 1;
        }
        free(c);
        return NULL;
    }
    if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
        milterd_conn_close(&c->conn);
        free(c);
        return NULL;
    }
    pthread_mutex_lock(&md->srv->lock);
    c->next = md->conns;
    md->conns = c;
    pthread_mutex_unlock(&md->srv->lock);
    return c;
}

static struct milterd_session *
mlfi_session(SMFICTX *ctx)
{
    unsigned long act = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY |
                        SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_QUARANTINE,
                  proto = 0;
    struct mlfi_conn *c;
    int refused;

    c = mlfi_conn(ctx, 0, &act, &proto, &refused);
    return c != NULL ? c->conn.s : NULL;
}

/* mlfi_ret - the answer to an event before end of message. */
static sfsistat
mlfi_ret(struct milterd_session *s, unsigned long noreply)
{
    if (s == NULL)
        return SMFIS_TEMPFAIL;
    return (s->proto & noreply) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat
mlfi_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
               unsigned long f2, unsigned long f3, unsigned long *pf0,
               unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    unsigned long act = f0, proto = f1;
    struct mlfi_conn *c;
    int refused;
    size_t i;

    (void)f2;
    (void)f3;
    if (milterd_running == NULL)
        return SMFIS_REJECT;
    /* The connection's runtime is held once, here, and the offer is
     * negotiated against its chain. */
    if ((c = mlfi_conn(ctx, 1, &act, &proto, &refused)) == NULL)
        return refused ? SMFIS_REJECT : SMFIS_TEMPFAIL;
    if (act & SMFIF_SETSYMLIST)
        for (i = 0; i < sizeof(mlfi_macros) / sizeof(mlfi_macros[0]); i++)
            (void)smfi_setsymlist(ctx, mlfi_macros[i].where,
                                  (char *)mlfi_macros[i].list);
    *pf0 = act;
    *pf1 = proto;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    mlfi_getmacros(ctx, s, SMFIM_CONNECT);
    milterd_connect(s, hostname, sa);
    return mlfi_ret(s, SMFIP_NR_CONN);
}

static sfsistat
mlfi_helo(SMFICTX *ctx, char *helo)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    mlfi_getmacros(ctx, s, SMFIM_HELO);
    milterd_helo(s, helo);
    return mlfi_ret(s, SMFIP_NR_HELO);
}

static sfsistat
mlfi_envfrom(SMFICTX *ctx, char **argv)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    milterd_mail(s, argv);
    mlfi_getmacros(ctx, s, SMFIM_ENVFROM);
    return mlfi_ret(s, SMFIP_NR_MAIL);
}

static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    milterd_rcpt(s, argv);
    return mlfi_ret(s, SMFIP_NR_RCPT);
}

static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    milterd_header(s, name, value);
    return mlfi_ret(s, SMFIP_NR_HDR);
}

static sfsistat
mlfi_eoh(SMFICTX *ctx)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    milterd_eoh(s);
    return mlfi_ret(s, SMFIP_NR_EOH);
}

static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *p, size_t len)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    milterd_body(s, p, len);
    return mlfi_ret(s, SMFIP_NR_BODY);
}

static sfsistat
mlfi_eom(SMFICTX *ctx)
{
    struct milterd_session *s = mlfi_session(ctx);

    if (s == NULL)
        return SMFIS_TEMPFAIL;
    mlfi_getmacros(ctx, s, SMFIM_EOM);
    switch (milterd_eom(s)) {
    case MILTERD_CONTINUE:
        return SMFIS_CONTINUE;
    case MILTERD_REJECT:
        return SMFIS_REJECT;
    case MILTERD_DISCARD:
        return SMFIS_DISCARD;
    case MILTERD_TEMPFAIL:
        break;
    }
    return SMFIS_TEMPFAIL;
}

static sfsistat
mlfi_abort(SMFICTX *ctx)
{
    struct mlfi_conn *c = smfi_getpriv(ctx);

    if (c != NULL)
        milterd_abort(c->conn.s);
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_close(SMFICTX *ctx)
{
    struct mlfi_conn *c = smfi_getpriv(ctx);
    struct milterd *md = milterd_running;

    if (c == NULL)
        return SMFIS_CONTINUE;
    (void)smfi_setpriv(ctx, NULL);
    if (md != NULL) {
        struct mlfi_conn **pp;

        pthread_mutex_lock(&md->srv->lock);
        for (pp = &md->conns; *pp != NULL; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        pthread_mutex_unlock(&md->srv->lock);
    }
    milterd_conn_close(&c->conn);
    free(c);
    return SMFIS_CONTINUE;
}

/*
 * The guard around every callback. After SIGTERM, libmilter's thread
 * pool stops serving the MTA's open connections and leaves them as they
 * are (the program is shutting down, its source says), each with the
 * runtime it holds; milterd_drain() takes them back once no callback
 * runs. A callback that starts after that -- a worker still finishing
 * the commands it had read -- answers tempfail and touches nothing.
 */
static int
mlfi_enter(void)
{
    struct milterd *md = milterd_running;
    int ok;

    if (md == NULL)
        return 0;
    pthread_mutex_lock(&md->srv->lock);
    if ((ok = !md->reaped))
        md->calls++;
    pthread_mutex_unlock(&md->srv->lock);
    return ok;
}

static void
mlfi_leave(void)
{
    struct milterd *md = milterd_running;

    pthread_mutex_lock(&md->srv->lock);
    md->calls--;
    pthread_mutex_unlock(&md->srv->lock);
}

static sfsistat
mlfi_g_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                 unsigned long f2, unsigned long f3, unsigned long *pf0,
                 unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_negotiate(ctx, f0, f1, f2, f3, pf0, pf1, pf2, pf3);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_connect(ctx, hostname, sa);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_helo(SMFICTX *ctx, char *helo)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_helo(ctx, helo);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_envfrom(SMFICTX *ctx, char **argv)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_envfrom(ctx, argv);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_envrcpt(SMFICTX *ctx, char **argv)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_envrcpt(ctx, argv);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_header(SMFICTX *ctx, char *name, char *value)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_header(ctx, name, value);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_eoh(SMFICTX *ctx)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_eoh(ctx);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_body(SMFICTX *ctx, unsigned char *p, size_t len)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_body(ctx, p, len);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_eom(SMFICTX *ctx)
{
    sfsistat r = SMFIS_TEMPFAIL;

    if (mlfi_enter()) {
        r = mlfi_eom(ctx);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_abort(SMFICTX *ctx)
{
    sfsistat r = SMFIS_CONTINUE;

    if (mlfi_enter()) {
        r = mlfi_abort(ctx);
        mlfi_leave();
    }
    return r;
}

static sfsistat
mlfi_g_close(SMFICTX *ctx)
{
    sfsistat r = SMFIS_CONTINUE;

    if (mlfi_enter()) {
        r = mlfi_close(ctx);
        mlfi_leave();
    }
    return r;
}

/* milterd_listen_fd - the listening socket libmilter opened for md: the
 * one descriptor that accepts connections on md's port or path. */
static int
milterd_listen_fd(const struct milterd *md)
{
    int fd, found = -1;

    for (fd = 0; fd < MILTERD_FD_SCAN; fd++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss), olen;
        int listening = 0;

        olen = sizeof(listening);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) < 0 ||
            !listening || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
            continue;
        if (md->unix_path != NULL && ss.ss_family == AF_UNIX &&
            strcmp(((struct sockaddr_un *)&ss)->sun_path, md->unix_path) == 0)
            found = fd;
        else if (md->unix_path == NULL && ss.ss_family == AF_INET &&
                 ntohs(((struct sockaddr_in *)&ss)->sin_port) == md->port)
            found = fd;
        else if (md->unix_path == NULL && ss.ss_family == AF_INET6 &&
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == md->port)
            found = fd;
    }
    return found;
}

/* milterd_socket_mode - milter_socket_mode as a mode, or -1 with e. */
static int
milterd_socket_mode(const struct cfg *c, mode_t *out, struct err *e)
{
    const char *mode = cfg_str(c, "milter_socket_mode");
    char *end;
    long m;

    errno = 0;
    m = strtol(mode, &end, 8);
    if (*mode == '\0' || *end != '\0' || errno != 0 || m < 0 || m > 0777)
        return cfg_err(e, c, "milter_socket_mode",
                       "'%s' is not an octal mode such as 0660", mode);
    *out = (mode_t)m;
    return 0;
}

/* milterd_socket_perms - the group of the UNIX socket that bind() just
 * made with mode m (through the umask), without a path race: the socket's
 * directory may be writable by the MTA's user (inside Postfix's queue
 * directory), who must not be able to swap the socket for a link to a
 * file that root would then chown. The entry itself is opened with
 * O_PATH | O_NOFOLLOW, checked to be a socket with mode m, and changed
 * through that descriptor. */
static int
milterd_socket_perms(const struct milterd *md, const struct cfg *c, mode_t m,
                     struct err *e)
{
    const char *group = cfg_str(c, "milter_socket_group");
    struct group *gr;
    struct stat st;
    int fd;

    if ((fd = open(md->unix_path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "milter socket %s", md->unix_path);
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        (st.st_mode & 0777) != m) {
        close(fd);
        return err_set(e, ERR_IO,
                       "milter socket %s: not the socket just made (mode "
                       "%04o, want a socket with %04o): refused",
                       md->unix_path, (unsigned)(st.st_mode & 07777),
                       (unsigned)m);
    }
    if (group != NULL) {
        if ((gr = getgrnam(group)) == NULL) {
            close(fd);
            return cfg_err(e, c, "milter_socket_group", "%s: no such group",
                           group);
        }
        if (fchownat(fd, "", (uid_t)-1, gr->gr_gid, AT_EMPTY_PATH) < 0) {
            err_sys(e, ERR_IO, "chown %s to group %s", md->unix_path, group);
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
}

struct milterd *
milterd_open(const struct cfg *c, struct err *e)
{
    static char name[] = "relaychain";
    struct smfiDesc desc;
    struct milterd *md;
    const char *spec = cfg_str(c, "milter_listen");
    mode_t mode = 0660, old_umask = 0;
    int fd, one = 1, ok;

    if (milterd_check_listen(spec, e) < 0) {
        cfg_err(e, c, "milter_listen", "%s", e->text);
        return NULL;
    }
    if ((md = calloc(1, sizeof(*md))) == NULL ||
        (md->spec = milterd_strdup(spec)) == NULL) {
        free(md);
        err_nomem(e);
        return NULL;
    }
    if (strncmp(spec, "inet", 4) == 0) {
        md->port = (int)strtol(strchr(spec, ':') + 1, NULL, 10);
    } else if ((md->unix_path = milterd_strdup(strchr(spec, ':') + 1)) ==
               NULL) {
        err_nomem(e);
        goto fail;
    }
    memset(&desc, 0, sizeof(desc));
    desc.xxfi_name = name;
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY |
                      SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT |
                      SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_SETSYMLIST;
    desc.xxfi_connect = mlfi_g_connect;
    desc.xxfi_helo = mlfi_g_helo;
    desc.xxfi_envfrom = mlfi_g_envfrom;
    desc.xxfi_envrcpt = mlfi_g_envrcpt;
    desc.xxfi_header = mlfi_g_header;
    desc.xxfi_eoh = mlfi_g_eoh;
    desc.xxfi_body = mlfi_g_body;
    desc.xxfi_eom = mlfi_g_eom;
    desc.xxfi_abort = mlfi_g_abort;
    desc.xxfi_close = mlfi_g_close;
    desc.xxfi_negotiate = mlfi_g_negotiate;
    if (smfi_register(desc) != MI_SUCCESS) {
        err_set(e, ERR_LIB, "smfi_register failed");
        goto fail;
    }
    if (smfi_setconn(md->spec) != MI_SUCCESS) {
        err_set(e, ERR_CONFIG, "milter_listen: libmilter refuses '%s'", spec);
        goto fail;
    }
    (void)smfi_setbacklog(MILTERD_BACKLOG);
    if (md->unix_path != NULL && milterd_socket_mode(c, &mode, e) < 0)
        goto fail;
    /* bind() gives the socket its mode from the umask, so it never exists
     * with a wider one and no chmod() by name follows. Start-up has one
     * thread, so nothing else creates files meanwhile. */
    if (md->unix_path != NULL)
        old_umask = umask(~mode & 0777);
    /* true: remove a stale UNIX socket left by a crash. */
    ok = smfi_opensocket(true) == MI_SUCCESS;
    if (md->unix_path != NULL)
        umask(old_umask);
    if (!ok) {
        err_set(e, ERR_IO,
                "milter_listen: cannot listen on %s (in use, or the "
                "directory is missing or not writable)",
                spec);
        goto fail;
    }
    if ((fd = milterd_listen_fd(md)) < 0) {
        err_set(e, ERR_INTERNAL,
                "milter_listen: libmilter's listening socket for %s not "
                "found",
                spec);
        goto fail;
    }
    if (md->unix_path != NULL) {
        if (milterd_socket_perms(md, c, mode, e) < 0)
            goto fail;
    } else if (cfg_bool(c, "milter_tcp_nodelay") &&
               setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) <
                   0) {
        /* Accepted sockets inherit it on Linux: no Nagle delay on the
         * modification requests before the final reply. */
        err_sys(e, ERR_IO, "milter_listen: TCP_NODELAY on %s", spec);
        goto fail;
    }
    return md;

fail:
    free(md->unix_path);
    free(md->spec);
    free(md);
    return NULL;
}

static void *
milterd_thread(void *arg)
{
    struct milterd *md = arg;
    char one = 'x';

    md->rc = smfi_main();
    while (write(md->done_fd, &one, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

int
milterd_run(struct milterd *md, milterd_hold_fn hold, int done_fd,
            struct err *e)
{
    md->hold = hold;
    md->done_fd = done_fd;
    if ((md->srv = milterd_server_new(MILTERD_PROGRESS_MS, e)) == NULL)
        return -1;
    milterd_server_set_memlimit(md->srv, md->mem);
    milterd_running = md;
    if (pthread_create(&md->tid, NULL, milterd_thread, md) != 0) {
        milterd_running = NULL;
        return err_set(e, ERR_TEMP, "cannot start the milter thread");
    }
    md->running = 1;
    log_info(NULL, "milter listening on %s", md->spec);
    return 0;
}

void
milterd_set_memlimit(struct milterd *md, struct memlimit *ml)
{
    md->mem = ml;
}

unsigned
milterd_drain(struct milterd *md, long long wait_ms)
{
    struct milterd_server *srv;
    struct mlfi_conn *c, *list;
    long long waited = 0;
    unsigned n = 0;

    if (md == NULL || (srv = md->srv) == NULL)
        return 0;
    pthread_mutex_lock(&srv->lock);
    srv->draining = 1;
    while (srv->inflight > 0 && waited < wait_ms) {
        pthread_mutex_unlock(&srv->lock);
        usleep(20000);
        waited += 20;
        pthread_mutex_lock(&srv->lock);
    }
    /* Then the connections libmilter left: no callback may be running
     * while they are taken back (see mlfi_enter). */
    md->reaped = 1;
    while (md->calls > 0 && waited < wait_ms) {
        pthread_mutex_unlock(&srv->lock);
        usleep(20000);
        waited += 20;
        pthread_mutex_lock(&srv->lock);
    }
    list = md->calls == 0 ? md->conns : NULL;
    if (list != NULL)
        md->conns = NULL;
    n = md->calls;
    pthread_mutex_unlock(&srv->lock);
    if (n > 0)
        return n; /* a callback still runs: leave everything be */
    while ((c = list) != NULL) {
        list = c->next;
        milterd_conn_close(&c->conn);
        free(c);
    }
    return 0;
}

int
milterd_wait(struct milterd *md)
{
    int rc;

    if (md == NULL)
        return 0;
    if (md->running)
        pthread_join(md->tid, NULL);
    rc = md->rc;
    milterd_server_free(md->srv);
    if (md->unix_path != NULL)
        (void)unlink(md->unix_path);
    free(md->unix_path);
    free(md->spec);
    free(md);
    return rc;
}
