/*
 * user_cli - "relaychain user": the users and clients the antispam
 *     stage holds (hold_user)
 *
 *     relaychain user [-c FILE] [-d DIR] list
 *     relaychain user [-c FILE] [-d DIR] release NAME | user:NAME |
 *         client:ADDR
 *
 * The antispam stage keeps each hold as a file in its hold_directory
 * (filters/antispam/antispam_hold.c), three lines:
 *     key: user:alice
 *     since: 1765100000
 *     reason: recipients 412 in 3600s > 10x baseline 37.0 (floor 200)
 * The command finds the directories in the chain: it loads it for
 * checking only (as "relaychain check", which builds no engine and
 * touches no directory) and takes hold_directory of every antispam stage
 * with hold_user set (or takes the one -d names, and then reads the main
 * file alone, so a chain.d file that does not load never keeps an admin
 * from the holds). list prints one line per hold; release removes the
 * file whose key matches (a bare NAME is an authenticated user), which
 * the daemon sees at the key's next message, with no reload; it also
 * logs the release to the mail log, as postsuper does.
 *
 * The directory is opened with cfg_open_dir() (root's links only) and
 * the files relative to it without following links; a file's name is
 * never built from the command line: the keys inside are compared.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/cfg.h"
#include "util/log.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "chain/stage.h"
#include "cli/cli.h"
#include "cli/parts.h"

#define USER_FILE_MAX 4096
#define USER_DIRS_MAX 16

/* A hold file's fields, pointing into its text. */
struct user_hold {
    char text[USER_FILE_MAX + 1];
    const char *key, *since, *reason;
};

/* user_hold_read - name in dfd into h; 0, or -1 when it is not a hold
 * file (or cannot be read). */
static int
user_hold_read(int dfd, const char *name, struct user_hold *h)
{
    char *p, *nl;
    ssize_t got;
    int fd;

    if ((fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return -1;
    got = read(fd, h->text, USER_FILE_MAX);
    close(fd);
    if (got <= 0)
        return -1;
    h->text[got] = '\0';
    h->key = h->since = h->reason = NULL;
    for (p = h->text; *p != '\0'; p = nl + 1) {
        if ((nl = strchr(p, '\n')) == NULL)
            break;
        *nl = '\0';
        if (strncmp(p, "key: ", 5) == 0)
            h->key = p + 5;
        else if (strncmp(p, "since: ", 7) == 0)
            h->since = p + 7;
        else if (strncmp(p, "reason: ", 8) == 0)
            h->reason = p + 8;
    }
    return h->key != NULL ? 0 : -1;
}

/* user_dirs - the hold_directory of each antispam stage of cf's chain
 * with hold_user set, without repeats; how many. */
static size_t
user_dirs(const struct conf *cf, const char **dirs, size_t max)
{
    const struct stage *const *st;
    size_t n, i, k, nd = 0;
    const char *d;

    n = chain_stages(cf->chain, &st);
    for (i = 0; i < n && nd < max; i++) {
        if (strcmp(st[i]->type->name, "antispam") != 0 ||
            cfg_enum(st[i]->cfg, "hold_user") == 0 ||
            (d = cfg_str(st[i]->cfg, "hold_directory")) == NULL)
            continue;
        for (k = 0; k < nd && strcmp(dirs[k], d) != 0; k++)
            ;
        if (k == nd)
            dirs[nd++] = d;
    }
    return nd;
}

/* user_open - dir's descriptor; -1 with *missing set when it does not
 * exist yet (no hold was ever made), -1 with the error printed else. */
static int
user_open(const char *dir, int *missing)
{
    struct err e;
    int dfd;

    *missing = 0;
    err_clear(&e);
    if ((dfd = cfg_open_dir(dir, &e)) >= 0)
        return dfd;
    if (e.sys_errno == ENOENT)
        *missing = 1;
    else
        fprintf(stderr, "relaychain: hold_directory %s\n", e.text);
    return -1;
}

static int
user_cmd_list(const char **dirs, size_t nd)
{
    struct user_hold *h;
    struct dirent *de;
    char when[64];
    size_t i;
    int dfd, dfd2, missing, rc = 0;
    DIR *d;

    if ((h = malloc(sizeof(*h))) == NULL) {
        fprintf(stderr, "relaychain: out of memory\n");
        return 1;
    }
    for (i = 0; i < nd; i++) {
        if ((dfd = user_open(dirs[i], &missing)) < 0) {
            rc = missing ? rc : 1;
            continue;
        }
        if ((dfd2 = dup(dfd)) < 0 || (d = fdopendir(dfd2)) == NULL) {
            fprintf(stderr, "relaychain: hold_directory %s: %s\n", dirs[i],
                    strerror(errno));
            if (dfd2 >= 0)
                close(dfd2);
            close(dfd);
            rc = 1;
            continue;
        }
        while ((de = readdir(d)) != NULL) {
            time_t t;
            struct tm tm;
            char *end;

            if (de->d_name[0] == '.' || user_hold_read(dfd, de->d_name, h) < 0)
                continue;
            snprintf(when, sizeof(when), "?");
            if (h->since != NULL) {
                t = (time_t)strtoll(h->since, &end, 10);
                if (*end == '\0' && gmtime_r(&t, &tm) != NULL)
                    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
            }
            printf("%s\theld since %s\t%s\n", h->key, when,
                   h->reason != NULL ? h->reason : "");
        }
        closedir(d);
        close(dfd);
    }
    free(h);
    return rc;
}

static int
user_cmd_release(const struct cfg *mc, const char **dirs, size_t nd,
                 const char *key)
{
    struct user_hold *h;
    struct dirent *de;
    struct err e;
    size_t i;
    int dfd, dfd2, missing, found = 0, failed = 0;
    DIR *d;

    if ((h = malloc(sizeof(*h))) == NULL) {
        fprintf(stderr, "relaychain: out of memory\n");
        return 1;
    }
    err_clear(&e);
    if (conf_log_open(mc, &e) < 0) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        free(h);
        return 1;
    }
    for (i = 0; i < nd; i++) {
        if ((dfd = user_open(dirs[i], &missing)) < 0) {
            failed |= !missing;
            continue;
        }
        if ((dfd2 = dup(dfd)) < 0 || (d = fdopendir(dfd2)) == NULL) {
            fprintf(stderr, "relaychain: hold_directory %s: %s\n", dirs[i],
                    strerror(errno));
            if (dfd2 >= 0)
                close(dfd2);
            close(dfd);
            failed = 1;
            continue;
        }
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.' ||
                user_hold_read(dfd, de->d_name, h) < 0 ||
                strcmp(h->key, key) != 0)
                continue;
            if (unlinkat(dfd, de->d_name, 0) < 0) {
                fprintf(stderr, "relaychain: %s/%s: %s\n", dirs[i], de->d_name,
                        strerror(errno));
                failed = 1;
                continue;
            }
            (void)fsync(dfd);
            found = 1;
        }
        closedir(d);
        close(dfd);
    }
    free(h);
    if (found) {
        printf("%s: released\n", key);
        log_info(NULL, "antispam: hold released by the admin, %s", key);
    } else if (!failed) {
        fprintf(stderr, "relaychain: %s is not held\n", key);
    }
    return found && !failed ? 0 : 1;
}

int
user_main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *cmd, *dirs[USER_DIRS_MAX];
    const char *dir = NULL;
    const struct cfg *mc;
    struct cfg *main_cfg = NULL;
    char key[512];
    struct conf *cf = NULL;
    struct err e;
    size_t nd;
    int c, rc = 1;

    optind = 1;
    while ((c = getopt(argc, argv, "c:d:h")) != -1) {
        if (c == 'c') {
            path = optarg;
        } else if (c == 'd') {
            dir = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: relaychain user [-c FILE] [-d DIR] list\n"
                    "       relaychain user [-c FILE] [-d DIR] release NAME|"
                    "user:NAME|client:ADDR\n");
            return c == 'h' ? 0 : 1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: relaychain user [-c FILE] [-d DIR] "
                        "list|release [NAME]\n");
        return 1;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "list") == 0) {
        if (optind + 1 != argc) {
            fprintf(stderr, "relaychain: user list takes no NAME\n");
            return 1;
        }
    } else if (strcmp(cmd, "release") == 0) {
        if (optind + 2 != argc || argv[optind + 1][0] == '\0') {
            fprintf(stderr, "relaychain: user release needs one NAME\n");
            return 1;
        }
    } else {
        fprintf(stderr, "relaychain: unknown user command '%s'\n", cmd);
        return 1;
    }
    log_open("relaychain", LOG_MAIL, LOG_SINK_NONE);
    err_clear(&e);
    /* -d names the directory: the chain is not loaded, so a stage that
     * does not load (a broken chain.d file) never keeps an admin from
     * the holds; the main file is still read, for the mail log. */
    if (dir != NULL)
        mc = main_cfg = cli_main_cfg(path, &e);
    else
        mc = (cf = conf_load_flags(path, parts_all, CONF_LOAD_CHECK, &e)) !=
                     NULL
                 ? cf->cfg
                 : NULL;
    if (mc == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    if (dir != NULL) {
        dirs[0] = dir;
        nd = 1;
    } else if ((nd = user_dirs(cf, dirs, USER_DIRS_MAX)) == 0) {
        fprintf(stderr, "relaychain: no antispam stage of the chain sets "
                        "hold_user\n");
        goto out;
    }
    if (strcmp(cmd, "list") == 0) {
        rc = user_cmd_list(dirs, nd);
    } else {
        const char *name = argv[optind + 1];

        if (strncmp(name, "user:", 5) == 0 || strncmp(name, "client:", 7) == 0)
            snprintf(key, sizeof(key), "%s", name);
        else
            snprintf(key, sizeof(key), "user:%s", name);
        rc = user_cmd_release(mc, dirs, nd, key);
    }
out:
    conf_free(cf);
    cfg_free(main_cfg);
    return rc;
}
