/*
 * listen - relaychaind's SMTP listeners and session threads
 *
 * listen_one() binds one smtp_listen address before privileges are
 * dropped; the socket is the caller's. accept_one() takes a connection
 * and runs its SMTP session on a detached thread of its own with the
 * runtime current when it was accepted, held until the session ends. A
 * failure to accept or to start a thread is logged and costs that one
 * connection.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/daemon_int.h"
#include "util/log.h"
#include "util/metrics.h"

#define LISTEN_BACKLOG 4096

struct session_arg {
    struct smtpd_server *srv;
    struct runtime *rt;
    int fd;
    struct sockaddr_storage peer;
    socklen_t len;
};

/* listen_one - bind "host:port" or "[v6]:port"; returns the socket. */
int
listen_one(const char *spec, struct err *e)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    const char *colon;
    int fd = -1, one = 1, rc;

    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');

        if (close == NULL || close[1] != ':' ||
            (size_t)(close - spec - 1) >= sizeof(host))
            return err_set(e, ERR_CONFIG, "smtp_listen: bad address '%s'",
                           spec);
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
            return err_set(e, ERR_CONFIG, "smtp_listen: '%s' is not host:port",
                           spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    if (snprintf(port, sizeof(port), "%s", colon + 1) >= (int)sizeof(port) ||
        port[0] == '\0')
        return err_set(e, ERR_CONFIG, "smtp_listen: bad port in '%s'", spec);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0)
        return err_set(e, ERR_CONFIG, "smtp_listen: %s: %s", spec,
                       gai_strerror(rc));
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                res->ai_protocol);
    if (fd < 0) {
        err_sys(e, ERR_IO, "smtp_listen: %s: socket", spec);
        goto fail;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (res->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        err_sys(e, ERR_IO, "smtp_listen: bind %s", spec);
        goto fail;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        err_sys(e, ERR_IO, "smtp_listen: listen %s", spec);
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

static void *
session_thread(void *p)
{
    struct session_arg *a = p;

    smtpd_session_run(a->srv, a->rt, a->fd, (struct sockaddr *)&a->peer,
                      a->len);
    runtime_release(a->rt);
    free(a);
    return NULL;
}

void
accept_one(struct smtpd_server *srv, int lfd, pthread_attr_t *attr)
{
    struct session_arg *a;
    pthread_t tid;
    int fd;

    if ((a = calloc(1, sizeof(*a))) == NULL)
        return;
    a->len = sizeof(a->peer);
    fd = accept4(lfd, (struct sockaddr *)&a->peer, &a->len, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warning(NULL, "accept: %s", strerror(errno));
        if (errno == EMFILE || errno == ENFILE)
            usleep(100000); /* let sessions close before trying again */
        free(a);
        return;
    }
    metrics_add(METRICS_SMTPD_CONNECTIONS, 1); /* ---- http: /metrics */
    a->srv = srv;
    a->fd = fd;
    a->rt = runtime_hold_current();
    if (pthread_create(&tid, attr, session_thread, a) != 0) {
        log_warning(NULL, "cannot start a session thread: %s",
                    strerror(errno));
        close(fd);
        runtime_release(a->rt);
        free(a);
    }
}
