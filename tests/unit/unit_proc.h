/*
 * unit_proc.h - child processes for the unit tests that run real servers
 *
 * unit_spawn() starts a program with its output in a file; the child is
 * sent SIGTERM if the test process dies first, so a crashed case leaves
 * no server behind. unit_stop() ends one: SIGTERM, at most 2 s, then
 * SIGKILL; it is always reaped. unit_scripted_start() runs
 * tests/data/smtpc/scripted_server.py (an SMTP or LMTP server whose
 * replies the options choose, recording what it got in DIR/events.log
 * and DIR/data-N.bin) and waits, bounded, for the port it listens on.
 * Every wait here is bounded.
 */
#ifndef RC_UNIT_PROC_H
#define RC_UNIT_PROC_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#define UNIT_PYTHON "/usr/bin/python3"

static inline void
unit_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* unit_read_file - the whole file, NUL-terminated (free it), or NULL;
 * *len gets its size when len is not NULL. */
static inline char *
unit_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *s = NULL;
    long n;

    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 &&
        fseek(fp, 0, SEEK_SET) == 0 && (s = malloc((size_t)n + 1)) != NULL) {
        if (fread(s, 1, (size_t)n, fp) != (size_t)n) {
            free(s);
            s = NULL;
        } else {
            s[n] = '\0';
            if (len != NULL)
                *len = (size_t)n;
        }
    }
    fclose(fp);
    return s;
}

/* unit_count - occurrences of needle in the file at path (0 if it is
 * missing): what a server logged or received. */
static inline int
unit_count(const char *path, const char *needle)
{
    char *s = unit_read_file(path, NULL), *p;
    int n = 0;

    if (s == NULL)
        return 0;
    for (p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(s);
    return n;
}

/* unit_spawn - run argv[0] with stdout and stderr to the file out. */
static inline pid_t
unit_spawn(char *const argv[], const char *out)
{
    pid_t pid = fork();
    int fd;

    assert_true(pid >= 0);
    if (pid == 0) {
        /* a test that crashes takes its servers with it */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* unit_exited - pid has ended (and is reaped: it must not be signalled
 * after this returned 1). */
static inline int
unit_exited(pid_t pid)
{
    int status;

    return waitpid(pid, &status, WNOHANG) == pid;
}

/* unit_stop - end pid (when > 0) and reap it. */
static inline void
unit_stop(pid_t pid)
{
    int i;

    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (i = 0; i < 100 && !unit_exited(pid); i++)
        unit_sleep_ms(20);
    if (i == 100) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* unit_scripted_start - the scripted server on 127.0.0.1, recording in
 * dir, with the options opts (NULL-ended; at most 30); its output goes
 * to dir/server.out. Returns the port with *pid set, or -1 (the server
 * is then gone). */
static inline int
unit_scripted_start(const char *dir, const char *const *opts, pid_t *pid)
{
    char *argv[40], pf[320], out[320], script[512], *text;
    int n = 0, i, port;

    snprintf(pf, sizeof(pf), "%s/port", dir);
    snprintf(out, sizeof(out), "%s/server.out", dir);
    unit_data("smtpc/scripted_server.py", script, sizeof(script));
    argv[n++] = (char *)UNIT_PYTHON;
    argv[n++] = script;
    argv[n++] = (char *)"--port-file";
    argv[n++] = pf;
    argv[n++] = (char *)"--dir";
    argv[n++] = (char *)dir;
    for (i = 0; opts[i] != NULL && n < 38; i++)
        argv[n++] = (char *)opts[i];
    argv[n] = NULL;
    *pid = unit_spawn(argv, out);
    for (i = 0; i < 500; i++) {
        if ((text = unit_read_file(pf, NULL)) != NULL) {
            port = (int)strtol(text, NULL, 10);
            free(text);
            return port;
        }
        if (unit_exited(*pid)) {
            *pid = 0;
            return -1;
        }
        unit_sleep_ms(20);
    }
    unit_stop(*pid);
    *pid = 0;
    return -1;
}

#endif
