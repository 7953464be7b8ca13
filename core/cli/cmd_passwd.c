/*
 * cmd_passwd - "relaychain passwd FILE USER": set a user's password in an
 * SMTP AUTH password file
 *
 * The file itself is core/net/auth.c's (auth_passwd_change: the hash,
 * the lock, the atomic rewrite); this is the command around it: its
 * arguments, the questions and what it prints. On a terminal it turns
 * echo off and blocks SIGINT, SIGQUIT, SIGTERM and SIGHUP except while
 * waiting in ppoll(), so such a signal ends the question with the echo
 * restored, without a global flag. The password is wiped from memory
 * before the command returns.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "net/auth.h"
#include "util/fdio.h"

static void
auth_passwd_usage(FILE *fp)
{
    fprintf(fp,
            "usage: relaychain passwd FILE USER\n"
            "\n"
            "Set USER's password in the SMTP AUTH password file FILE (one\n"
            "user:hash a line), adding USER if new, keeping the other lines\n"
            "as they are. The password is asked twice on the terminal\n"
            "without echo, or read as one line from standard input when\n"
            "that is not a terminal. It is stored as a yescrypt hash. FILE\n"
            "is created with mode 0640; an existing FILE keeps its owner,\n"
            "group and mode, less any access by others.\n");
}

/* auth_read_line - one line from fd into out (size n), without the
 * newline (or CR LF). With waitmask, the signals auth_tty_password()
 * blocks are let through only while waiting for input (ppoll), so one
 * that arrives at any time aborts the read. */
static int
auth_read_line(int fd, char *out, size_t n, const sigset_t *waitmask,
               const char *from, struct err *e)
{
    size_t len = 0;
    int toolong = 0;
    char c;

    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t r;

        if (waitmask != NULL && ppoll(&pfd, 1, NULL, waitmask) < 0) {
            if (errno == EINTR)
                return err_set(e, ERR_INPUT, "interrupted");
            return err_sys(e, ERR_IO, "waiting for %s", from);
        }
        r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR && waitmask == NULL)
            continue;
        if (r < 0)
            return err_sys(e, ERR_IO, "reading the password from %s", from);
        if (r == 0 && len == 0 && !toolong)
            return err_set(e, ERR_INPUT, "no password on %s", from);
        if (r == 0 || c == '\n')
            break;
        if (len + 1 >= n)
            toolong = 1;
        else
            out[len++] = c;
    }
    if (len > 0 && out[len - 1] == '\r')
        len--;
    out[len] = '\0';
    if (toolong)
        return err_set(e, ERR_INPUT, "password longer than %d octets",
                       AUTH_PASS_MAX);
    return 0;
}

static void
auth_sig_interrupt(int sig)
{
    (void)sig; /* only makes ppoll() fail with EINTR */
}

/* auth_prompt - text on the terminal (wfd). */
static int
auth_prompt(int wfd, const char *text, struct err *e)
{
    if (fdio_write_all(wfd, text, strlen(text)) < 0)
        return err_sys(e, ERR_IO, "writing to the terminal");
    return 0;
}

/* auth_tty_password - ask twice on the terminal, echo off. The signals
 * that would end the program are blocked and caught, and abort the
 * question instead, so the terminal always gets its echo back; one still
 * pending at the end is delivered after that, as it would have been. */
static int
auth_tty_password(char *pw, size_t n, struct err *e)
{
    static const int sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP};
    struct sigaction sa, saved[sizeof(sigs) / sizeof(sigs[0])];
    char again[AUTH_PASS_MAX + 2];
    sigset_t block, oldmask, waitmask;
    struct termios old, quiet;
    int fd, rc, wfd;
    size_t i;

    if ((fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY)) < 0)
        fd = STDIN_FILENO;
    wfd = fd == STDIN_FILENO ? STDERR_FILENO : fd;
    if (tcgetattr(fd, &old) < 0) {
        rc = err_sys(e, ERR_IO, "terminal");
        goto out_fd;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    sigemptyset(&block);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&block, sigs[i]);
    sigprocmask(SIG_BLOCK, &block, &oldmask);
    waitmask = oldmask;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = auth_sig_interrupt;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaction(sigs[i], &sa, &saved[i]);
        sigdelset(&waitmask, sigs[i]);
    }
    if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0) {
        rc = err_sys(e, ERR_IO, "terminal: cannot turn echo off");
        goto out_sig;
    }
    rc = auth_prompt(wfd, "New password: ", e);
    if (rc == 0)
        rc = auth_read_line(fd, pw, n, &waitmask, "the terminal", e);
    fdio_write_all(wfd, "\n", 1);
    if (rc == 0 && (rc = auth_prompt(wfd, "Retype new password: ", e)) == 0) {
        rc = auth_read_line(fd, again, sizeof(again), &waitmask,
                            "the terminal", e);
        fdio_write_all(wfd, "\n", 1);
    }
    tcsetattr(fd, TCSAFLUSH, &old);
    if (rc == 0 && strcmp(pw, again) != 0)
        rc = err_set(e, ERR_INPUT, "the passwords do not match");
out_sig:
    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &saved[i], NULL);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
out_fd:
    if (fd != STDIN_FILENO)
        close(fd);
    OPENSSL_cleanse(again, sizeof(again));
    return rc;
}

int
passwd_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char pw[AUTH_PASS_MAX + 2];
    const char *path, *user, *why;
    struct auth_table *t;
    int c, replaced, rc = 1;
    struct err e;

    err_clear(&e);
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h') {
            auth_passwd_usage(stdout);
            return 0;
        }
        auth_passwd_usage(stderr);
        return 1;
    }
    if (optind + 2 != argc) {
        auth_passwd_usage(stderr);
        return 1;
    }
    path = argv[optind];
    user = argv[optind + 1];
    if ((why = auth_user_why(user, strlen(user))) != NULL) {
        fprintf(stderr, "relaychain: passwd: '%s': %s\n", user, why);
        return 1;
    }
    if (isatty(STDIN_FILENO)) {
        if (auth_tty_password(pw, sizeof(pw), &e) < 0)
            goto out;
    } else if (auth_read_line(STDIN_FILENO, pw, sizeof(pw), NULL,
                              "standard input", &e) < 0) {
        goto out;
    }
    if (auth_passwd_change(path, user, pw, &replaced, &e) < 0)
        goto out;
    printf("%s: %s %s\n", path, replaced ? "changed the password of" : "added",
           user);
    rc = 0;
    /* The daemon must be able to use what was written. */
    if ((t = auth_table_load(path, &e)) == NULL)
        fprintf(stderr, "relaychain: passwd: warning: %s\n", e.text);
    auth_table_free(t);
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;

out:
    OPENSSL_cleanse(pw, sizeof(pw));
    fprintf(stderr, "relaychain: passwd: %s\n", e.text);
    return rc;
}
