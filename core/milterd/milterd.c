/*
 * milterd - the milter front end (Sendmail's libmilter): libmilter's
 * callbacks and the life of each MTA connection
 *
 * The session model is in milterd_session.c, the end of message in
 * milterd_eom.c, the replay of the chain's edits in milterd_replay.c,
 * the progress ticker in milterd_server.c and the listening socket in
 * milterd_listen.c (milterd_int.h names what they share).
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
 * Threads and state. libmilter calls back on its own threads, one
 * connection at a time per thread, with a per-connection pointer
 * (smfi_setpriv) and no other argument; the one process-wide pointer
 * (milterd_running, set once by milterd_run() before smfi_main starts
 * and read-only afterwards) is the price of that interface: libmilter
 * serves one filter per process. Each connection holds one runtime from
 * its negotiation (or connect) to its close (struct milterd_conn).
 *
 * Stopping. libmilter's thread pool stops serving the MTA's connections
 * when it stops (SIGTERM) and leaves them open, each with the runtime it
 * holds. milterd_drain() lets the ends of message under way finish,
 * tempfails later ones without running the chain, and then takes the
 * connections back; every libmilter callback goes through a guard
 * (mlfi_begin, or mlfi_enter) so that none runs while it does, and none
 * touches a connection afterwards.
 */
#include "config.h"

#include <errno.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain/chain.h"
#include "util/log.h"
#include "util/metrics.h"
#include "milterd/milterd.h"
#include "milterd/milterd_int.h"

#define MILTERD_BACKLOG 1024

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

/* -------------------------------------------------------- connection */

/* milterd_negotiate_chain - milterd_negotiate() against cf's chain: *act
 * and *proto come in as the MTA's offer and go out as what was agreed. */
static int
milterd_negotiate_chain(const struct conf *cf, unsigned long *act,
                        unsigned long *proto, struct err *e)
{
    const struct stage *const *st;
    size_t n = chain_stages(cf->chain, &st);

    return milterd_negotiate(chain_flags(cf->chain), n, *act, *proto, act,
                             proto, e);
}

int
milterd_conn_open(struct milterd_conn *c, milterd_hold_fn hold, int negotiate,
                  unsigned long *act, unsigned long *proto,
                  struct milterd_server *srv, const struct milterd_ops *ops,
                  void *ctx, struct err *e)
{
    const struct conf *cf;

    memset(c, 0, sizeof(*c));
    c->rt = hold();
    cf = runtime_conf(c->rt);
    if (negotiate) {
        if (milterd_negotiate_chain(cf, act, proto, e) < 0) {
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
        if (milterd_negotiate_chain(runtime_conf(c->conn.rt), act, proto, &e) <
            0) {
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

/* mlfi_begin - an event of the connection: the guard entered, and the
 * connection's session, with the macros sent with where read (SMFIM_*,
 * or -1 for none). NULL, with the guard left, when the callback must
 * answer tempfail; else the callback ends with mlfi_end() or
 * mlfi_leave(). */
static struct milterd_session *
mlfi_begin(SMFICTX *ctx, int where)
{
    unsigned long act = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY |
                        SMFIF_ADDRCPT | SMFIF_DELRCPT | SMFIF_QUARANTINE,
                  proto = 0;
    struct mlfi_conn *c;
    int refused;

    if (!mlfi_enter())
        return NULL;
    if ((c = mlfi_conn(ctx, 0, &act, &proto, &refused)) == NULL) {
        mlfi_leave();
        return NULL;
    }
    mlfi_getmacros(ctx, c->conn.s, where);
    return c->conn.s;
}

/* mlfi_end - leave the guard with the answer to an event before end of
 * message. */
static sfsistat
mlfi_end(struct milterd_session *s, unsigned long noreply)
{
    sfsistat r = (s->proto & noreply) ? SMFIS_NOREPLY : SMFIS_CONTINUE;

    mlfi_leave();
    return r;
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
    if (!mlfi_enter())
        return SMFIS_TEMPFAIL;
    /* The connection's runtime is held once, here, and the offer is
     * negotiated against its chain. */
    if ((c = mlfi_conn(ctx, 1, &act, &proto, &refused)) == NULL) {
        mlfi_leave();
        return refused ? SMFIS_REJECT : SMFIS_TEMPFAIL;
    }
    if (act & SMFIF_SETSYMLIST)
        for (i = 0; i < sizeof(mlfi_macros) / sizeof(mlfi_macros[0]); i++)
            (void)smfi_setsymlist(ctx, mlfi_macros[i].where,
                                  (char *)mlfi_macros[i].list);
    *pf0 = act;
    *pf1 = proto;
    *pf2 = 0;
    *pf3 = 0;
    mlfi_leave();
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
    struct milterd_session *s;

    metrics_add(METRICS_MILTER_CONNECTIONS, 1); /* ---- http: /metrics */
    if ((s = mlfi_begin(ctx, SMFIM_CONNECT)) == NULL)
        return SMFIS_TEMPFAIL;
    milterd_connect(s, hostname, sa);
    return mlfi_end(s, SMFIP_NR_CONN);
}

static sfsistat
mlfi_helo(SMFICTX *ctx, char *helo)
{
    struct milterd_session *s;

    if ((s = mlfi_begin(ctx, SMFIM_HELO)) == NULL)
        return SMFIS_TEMPFAIL;
    milterd_helo(s, helo);
    return mlfi_end(s, SMFIP_NR_HELO);
}

static sfsistat
mlfi_envfrom(SMFICTX *ctx, char **argv)
{
    struct milterd_session *s;

    if ((s = mlfi_begin(ctx, -1)) == NULL)
        return SMFIS_TEMPFAIL;
    /* MAIL starts the transaction, which clears the queue id: the
     * macros sent with it are read after. */
    milterd_mail(s, argv);
    mlfi_getmacros(ctx, s, SMFIM_ENVFROM);
    return mlfi_end(s, SMFIP_NR_MAIL);
}

static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
    struct milterd_session *s;

    if ((s = mlfi_begin(ctx, -1)) == NULL)
        return SMFIS_TEMPFAIL;
    milterd_rcpt(s, argv);
    return mlfi_end(s, SMFIP_NR_RCPT);
}

static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
    struct milterd_session *s;

    if ((s = mlfi_begin(ctx, -1)) == NULL)
        return SMFIS_TEMPFAIL;
    milterd_header(s, name, value);
    return mlfi_end(s, SMFIP_NR_HDR);
}

static sfsistat
mlfi_eoh(SMFICTX *ctx)
{
    struct milterd_session *s;

    if ((s = mlfi_begin(ctx, -1)) == NULL)
        return SMFIS_TEMPFAIL;
    milterd_eoh(s);
    return mlfi_end(s, SMFIP_NR_EOH);
}

static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *p, size_t len)
{
    struct milterd_session *s;

    if ((s = mlfi_begin(ctx, -1)) == NULL)
        return SMFIS_TEMPFAIL;
    milterd_body(s, p, len);
    return mlfi_end(s, SMFIP_NR_BODY);
}

static sfsistat
mlfi_eom(SMFICTX *ctx)
{
    struct milterd_session *s;
    sfsistat r = SMFIS_TEMPFAIL;

    if ((s = mlfi_begin(ctx, SMFIM_EOM)) == NULL)
        return SMFIS_TEMPFAIL;
    switch (milterd_eom(s)) {
    case MILTERD_CONTINUE:
        r = SMFIS_CONTINUE;
        break;
    case MILTERD_REJECT:
        r = SMFIS_REJECT;
        break;
    case MILTERD_DISCARD:
        r = SMFIS_DISCARD;
        break;
    case MILTERD_TEMPFAIL:
        break;
    }
    mlfi_leave();
    return r;
}

static sfsistat
mlfi_abort(SMFICTX *ctx)
{
    struct mlfi_conn *c;

    if (!mlfi_enter())
        return SMFIS_CONTINUE;
    if ((c = smfi_getpriv(ctx)) != NULL)
        milterd_abort(c->conn.s);
    mlfi_leave();
    return SMFIS_CONTINUE;
}

static sfsistat
mlfi_close(SMFICTX *ctx)
{
    struct milterd *md = milterd_running;
    struct mlfi_conn *c, **pp;

    if (!mlfi_enter())
        return SMFIS_CONTINUE;
    if ((c = smfi_getpriv(ctx)) != NULL) {
        (void)smfi_setpriv(ctx, NULL);
        pthread_mutex_lock(&md->srv->lock);
        for (pp = &md->conns; *pp != NULL; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
        pthread_mutex_unlock(&md->srv->lock);
        milterd_conn_close(&c->conn);
        free(c);
    }
    mlfi_leave();
    return SMFIS_CONTINUE;
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
    desc.xxfi_connect = mlfi_connect;
    desc.xxfi_helo = mlfi_helo;
    desc.xxfi_envfrom = mlfi_envfrom;
    desc.xxfi_envrcpt = mlfi_envrcpt;
    desc.xxfi_header = mlfi_header;
    desc.xxfi_eoh = mlfi_eoh;
    desc.xxfi_body = mlfi_body;
    desc.xxfi_eom = mlfi_eom;
    desc.xxfi_abort = mlfi_abort;
    desc.xxfi_close = mlfi_close;
    desc.xxfi_negotiate = mlfi_negotiate;
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

/* milterd_drain_wait - with srv->lock held, let *count (a count under
 * that lock) fall to 0, 20 ms at a time, until *waited reaches wait_ms. */
static void
milterd_drain_wait(struct milterd_server *srv, const unsigned *count,
                   long long *waited, long long wait_ms)
{
    while (*count > 0 && *waited < wait_ms) {
        pthread_mutex_unlock(&srv->lock);
        usleep(20000);
        *waited += 20;
        pthread_mutex_lock(&srv->lock);
    }
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
    milterd_drain_wait(srv, &srv->inflight, &waited, wait_ms);
    /* Then the connections libmilter left: no callback may be running
     * while they are taken back (see mlfi_enter). */
    md->reaped = 1;
    milterd_drain_wait(srv, &md->calls, &waited, wait_ms);
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
