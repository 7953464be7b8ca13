/*
 * milterd_conf - the milter front end's keys of relaychain.conf
 *
 * The check is what relaychaind refuses at start-up and on reload, so
 * that "relaychain check" refuses it too; errors name the key and its
 * line. Nothing is allocated.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "milterd/milterd.h"
#include "milterd/milterd_conf.h"

#define MILTERD_CONF_PWBUF_MAX 16384 /* getgrnam_r buffer */

static const char *const milterd_conf_size_choices[] = {
    [MILTERD_SIZE_TEMPFAIL] = "tempfail",
    [MILTERD_SIZE_REJECT] = "reject",
    [MILTERD_SIZE_ACCEPT] = "accept",
    NULL};

static const struct cfg_option milterd_conf_options[] = {
    {"milter_listen", CFG_STRING, NULL,
     "milter socket in libmilter's form: unix:/path (recommended), "
     "inet:port@host or inet6:port@host",
     NULL, 0, 0, 0},
    {"milter_socket_mode", CFG_STRING, "0660",
     "octal permissions of the milter UNIX socket", NULL, 0, 0, 0},
    {"milter_socket_group", CFG_STRING, NULL,
     "group of the milter UNIX socket (postfix, smmsp...)", NULL, 0, 0, 0},
    {"milter_tcp_nodelay", CFG_BOOL, "yes",
     "no Nagle delay on TCP milter connections (a 40 ms stall per message "
     "otherwise); turn off only to measure it",
     NULL, 0, 0, 0},
    {"milter_size_action", CFG_ENUM, "tempfail",
     "a message over message_size_limit or header_limit in milter mode: "
     "tempfail (452 4.3.4), reject (552 5.3.4) or accept (passed on "
     "unscanned, logged as a warning)",
     milterd_conf_size_choices, 0, 0, 0},
    CFG_OPTION_END,
};

/* milterd_conf_check_socket - what milterd_open() refuses at start-up: a group
 * that does not exist, a UNIX socket whose directory is missing. */
static int
milterd_conf_check_socket(const struct cfg *c, struct err *e)
{
    const char *spec = cfg_str(c, "milter_listen"), *g, *slash;
    struct group gr, *grp = NULL;
    char buf[MILTERD_CONF_PWBUF_MAX], dir[4096];
    struct stat sb;
    int rc;

    if ((g = cfg_str(c, "milter_socket_group")) != NULL) {
        if ((rc = getgrnam_r(g, &gr, buf, sizeof(buf), &grp)) != 0)
            return cfg_err(e, c, "milter_socket_group", "%.64s: %s", g,
                           strerror(rc));
        if (grp == NULL)
            return cfg_err(e, c, "milter_socket_group", "%.64s: no such group",
                           g);
    }
    if (spec == NULL || strncmp(spec, "inet", 4) == 0)
        return 0;
    /* unix:/path or local:/path, absolute (milterd_check_listen). */
    spec = strchr(spec, ':') + 1;
    slash = strrchr(spec, '/');
    if (slash == spec ||
        (size_t)snprintf(dir, sizeof(dir), "%.*s", (int)(slash - spec),
                         spec) >= sizeof(dir))
        return 0;
    if (stat(dir, &sb) < 0)
        return cfg_err(e, c, "milter_listen", "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cfg_err(e, c, "milter_listen", "%s: not a directory", dir);
    return 0;
}

static int
milterd_conf_check(const struct cfg *c, struct err *e)
{
    const char *s;

    if ((s = cfg_str(c, "milter_listen")) != NULL &&
        milterd_check_listen(s, e) < 0)
        return cfg_err(e, c, "milter_listen", "%s", e->text);
    s = cfg_str(c, "milter_socket_mode");
    /* As milterd_open() reads it: permission bits only, at most 0777. */
    if (s[0] == '\0' || strspn(s, "01234567") != strlen(s) || strlen(s) > 4 ||
        strtol(s, NULL, 8) > 0777)
        return cfg_err(e, c, "milter_socket_mode",
                       "'%.16s' is not an octal mode such as 0660", s);
    return milterd_conf_check_socket(c, e);
}

const struct conf_part milterd_conf_part = {
    .name = "milterd",
    .options = milterd_conf_options,
    .check = milterd_conf_check,
};
