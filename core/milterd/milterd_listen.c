/*
 * milterd_listen - the milter front end's listening socket
 *
 * libmilter opens the socket itself (smfi_opensocket) from a spec in its
 * own form; milterd_check_listen() accepts only the forms this front end
 * serves. Once the socket is open, its descriptor is found among the
 * process's (milterd_listen_fd), and a UNIX socket gets
 * milter_socket_group through a descriptor opened on the entry itself,
 * never by name (milterd_socket_perms). Errors name the key or the
 * path; nothing is kept open on return.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "milterd/milterd_int.h"

#define MILTERD_FD_SCAN 4096

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

/* milterd_listen_fd - the listening socket libmilter opened for md: the
 * one descriptor that accepts connections on md's port or path. */
int
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
int
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
int
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
