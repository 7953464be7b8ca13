/*
 * fuzz_smtpd - the SMTP server's command and DATA parsers, through a
 * whole session
 *
 * Each input is what a client sends after the greeting. The session runs
 * on a thread over one end of a socketpair, exactly as relaychaind runs
 * it on an accepted socket; this side waits for the greeting, writes the
 * input, closes its write side and reads replies until the session ends.
 * The next hop is a Maildir in a private temporary directory, emptied as
 * it fills, so every accepted message goes through the chain and the
 * delivery path too.
 */
#include "config.h"

#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain/conf.h"
#include "cli/parts.h"
#include "util/log.h"
#include "msg/mime.h"
#include "smtpd/smtpd.h"

static const struct runtime_part_type *const fuzz_parts[] = {
    &smtpd_runtime_type, NULL};

struct fuzz_state {
    struct smtpd_server *srv;
    struct runtime *rt;
    char dir[256];
    unsigned runs;
};

struct fuzz_session {
    struct fuzz_state *st;
    int fd;
};

static void
fuzz_write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    if (fp == NULL)
        abort();
    fputs(text, fp);
    fclose(fp);
}

static struct fuzz_state *
fuzz_setup(void)
{
    static struct fuzz_state st;
    char path[512], conf[1024];
    struct conf *cf;
    struct err e;
    const char *tmp = getenv("TMPDIR");

    if (st.rt != NULL)
        return &st;
    log_open("fuzz_smtpd", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    snprintf(st.dir, sizeof(st.dir), "%s/fuzz-smtpd-XXXXXX",
             tmp ? tmp : "/tmp");
    if (mkdtemp(st.dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/chain.d", st.dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/md", st.dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/md/tmp", st.dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/md/new", st.dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/md/cur", st.dir);
    mkdir(path, 0700);
    snprintf(conf, sizeof(conf),
             "next_hop = maildir:%s/md\n"
             "myhostname = fuzz.example\n"
             "message_size_limit = 64k\n"
             "recipient_limit = 20\n"
             "smtpd_timeout = 2s\n"
             "relay_domains = example.org\n"
             "xforward_hosts = 127.0.0.1/32\n",
             st.dir);
    snprintf(path, sizeof(path), "%s/relaychain.conf", st.dir);
    fuzz_write_file(path, conf);
    if ((cf = conf_load(path, parts_all, &e)) == NULL ||
        (st.rt = runtime_new(cf, fuzz_parts, &e)) == NULL ||
        (st.srv = smtpd_server_new(&e)) == NULL) {
        fprintf(stderr, "fuzz_smtpd: %s\n", e.text);
        abort();
    }
    return &st;
}

static void *
fuzz_session_thread(void *p)
{
    struct fuzz_session *fs = p;
    struct sockaddr_in peer;

    memset(&peer, 0, sizeof(peer));
    peer.sin_family = AF_INET;
    peer.sin_addr.s_addr = htonl(0x7f000001);
    peer.sin_port = htons(40000);
    smtpd_session_run(fs->st->srv, fs->st->rt, fs->fd,
                      (struct sockaddr *)&peer, sizeof(peer));
    return NULL;
}

static void
fuzz_empty_maildir(const struct fuzz_state *st)
{
    char path[512], file[1024];
    struct dirent *de;
    DIR *d;

    snprintf(path, sizeof(path), "%s/md/new", st->dir);
    if ((d = opendir(path)) == NULL)
        return;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') {
            snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
            unlink(file);
        }
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_state *st = fuzz_setup();
    struct fuzz_session fs;
    char reply[4096];
    pthread_t tid;
    int sv[2];
    size_t off = 0;
    ssize_t n;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    fs.st = st;
    fs.fd = sv[0];
    runtime_hold(st->rt);
    if (pthread_create(&tid, NULL, fuzz_session_thread, &fs) != 0)
        abort();
    /* The greeting first: input before it would be an early talker. */
    n = read(sv[1], reply, sizeof(reply));
    while (n > 0 && off < size) {
        ssize_t w = write(sv[1], data + off, size - off);

        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    while (read(sv[1], reply, sizeof(reply)) > 0)
        ;
    pthread_join(tid, NULL);
    runtime_release(st->rt);
    close(sv[1]);
    if (++st->runs % 256 == 0)
        fuzz_empty_maildir(st);
    return 0;
}
