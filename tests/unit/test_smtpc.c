/*
 * test_smtpc - the next-hop client against real servers on loopback
 *
 * Most cases start Postfix's smtp-sink on 127.0.0.1 and a free port,
 * with -v (every command it receives goes to its log) and -d (every
 * message it receives goes to a file), deliver through a struct
 * smtpc_pool and check what arrived: the message octets after
 * dot-stuffing and unstuffing, the XFORWARD and MAIL lines, the number
 * of connections, and the replies for the rejects and failures
 * smtp-sink can be told to produce (-f, -r, -q, -Q, -a, -F, -L, -t).
 *
 * tests/data/smtpc/scripted_server.py covers what smtp-sink can not
 * show: the exact octets of DATA on the wire, STARTTLS with AUTH inside
 * TLS (a certificate made by the openssl program), a subset of XFORWARD
 * attributes, mixed LMTP replies (each recipient's own, also when the
 * server goes away or says 421 part way through them), a 421 at MAIL on a
 * reused connection and a broken TLS handshake. Servers are killed at the
 * end of each case; every wait is bounded (tests/unit/unit_proc.h).
 *
 * Maildir delivery is checked by reading the folder back with Python's
 * mailbox module.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"
#include "unit_proc.h"

#include "net/smtpc.h"

#define SINK "/usr/sbin/smtp-sink"
#define TIMEOUT "/usr/bin/timeout"

struct server {
    pid_t pid;
    int port;
    size_t slot;    /* in running[] */
    char dir[256];  /* removed by server_stop */
    char log[300];  /* smtp-sink -v output, or the scripted events */
    char dump[300]; /* smtp-sink -d directory */
};

/* The servers started and not yet stopped, and the scratch directories
 * not yet removed, for teardown() to clean up when a case fails half-way.
 * Copies: a case's struct server is on its stack, gone by the time
 * teardown() runs. */
static struct {
    pid_t pid;
    char dir[256];
} running[8];

/* count_wait - count, waiting up to 2 s for want: servers log some
 * events (QUIT) after the client has gone on. */
static int
count_wait(const char *path, const char *needle, int want)
{
    int i, n = 0;

    for (i = 0; i < 100 && (n = unit_count(path, needle)) < want; i++)
        unit_sleep_ms(20);
    return n;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

/* listening - a socket on 127.0.0.1:port is in LISTEN state. Reading
 * /proc/net/tcp instead of connecting keeps the servers' logs clean. */
static int
listening(int port)
{
    FILE *fp = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned addr, p, st;
    int found = 0;

    if (fp == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), fp) != NULL)
        if (sscanf(line, " %*d: %8X:%4X %*8X:%*4X %2X", &addr, &p, &st) == 3 &&
            (int)p == port && st == 0x0A)
            found = 1;
    fclose(fp);
    return found;
}

/* stop_one - end a server we started and remove its directory. */
static void
stop_one(pid_t pid, const char *dir)
{
    unit_stop(pid);
    if (dir[0] != '\0')
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
server_stop(struct server *s)
{
    stop_one(s->pid, s->dir);
    s->pid = 0;
    s->dir[0] = '\0';
    running[s->slot].pid = 0;
    running[s->slot].dir[0] = '\0';
}

static void
server_started(struct server *s)
{
    running[s->slot].pid = s->pid;
}

static int
teardown(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
        stop_one(running[i].pid, running[i].dir);
        running[i].pid = 0;
        running[i].dir[0] = '\0';
    }
    return 0;
}

/* slot_new - a free entry of running[] for dir. */
static size_t
slot_new(const char *dir)
{
    size_t i;

    for (i = 0; i < sizeof(running) / sizeof(running[0]); i++)
        if (running[i].pid == 0 && running[i].dir[0] == '\0')
            break;
    assert_true(i < sizeof(running) / sizeof(running[0]));
    snprintf(running[i].dir, sizeof(running[i].dir), "%s", dir);
    return i;
}

/* scratch_dir/scratch_done - a temporary directory of a case, removed
 * with everything in it by scratch_done() or, after a failure, by
 * teardown(). */
static const char *
scratch_dir(char *dir, size_t n)
{
    assert_non_null(unit_tmpdir(dir, n));
    slot_new(dir);
    return dir;
}

static void
scratch_done(const char *dir)
{
    size_t i;

    for (i = 0; i < sizeof(running) / sizeof(running[0]); i++)
        if (running[i].pid == 0 && strcmp(running[i].dir, dir) == 0)
            running[i].dir[0] = '\0';
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
server_dir(struct server *s)
{
    memset(s, 0, sizeof(*s));
    assert_non_null(unit_tmpdir(s->dir, sizeof(s->dir)));
    s->slot = slot_new(s->dir);
    /* smtp-sink drops privileges to nobody before it writes dumps */
    chmod(s->dir, 0755);
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    snprintf(s->dump, sizeof(s->dump), "%s/dump", s->dir);
    assert_int_equal(mkdir(s->dump, 0777), 0);
    chmod(s->dump, 0777);
}

/* sink_start - smtp-sink with the given extra options (NULL-ended). */
static void
sink_start(struct server *s, ...)
{
    char *argv[32], tmpl[320], listen[64];
    const char *opt;
    int n, tries, i;
    va_list ap;

    server_dir(s);
    if (access(SINK, X_OK) != 0)
        fail_msg("%s is missing: run scripts/setup (package postfix)", SINK);
    snprintf(tmpl, sizeof(tmpl), "%s/%%M.", s->dump);
    for (tries = 0; tries < 3; tries++) {
        n = 0;
        argv[n++] = (char *)TIMEOUT;
        argv[n++] = (char *)"120";
        argv[n++] = (char *)SINK;
        argv[n++] = (char *)"-v";
        if (geteuid() == 0) {
            argv[n++] = (char *)"-u";
            argv[n++] = (char *)"nobody";
        }
        argv[n++] = (char *)"-d";
        argv[n++] = tmpl;
        va_start(ap, s);
        while ((opt = va_arg(ap, const char *)) != NULL && n < 24)
            argv[n++] = (char *)opt;
        va_end(ap);
        s->port = free_port();
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
        argv[n++] = listen;
        argv[n++] = (char *)"64";
        argv[n] = NULL;
        s->pid = unit_spawn(argv, s->log);
        server_started(s);
        for (i = 0; i < 250; i++) {
            if (listening(s->port))
                return;
            if (unit_exited(s->pid)) {
                s->pid = 0; /* reaped: never signal that pid again */
                break;
            }
            unit_sleep_ms(20);
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
        server_started(s);
    }
    fail_msg("smtp-sink did not start; see %s", s->log);
}

/* py_startv - the scripted server with the options in opts (NULL-ended). */
static void
py_startv(struct server *s, const char *const *opts)
{
    server_dir(s);
    if (access(UNIT_PYTHON, X_OK) != 0)
        fail_msg("%s is missing: run scripts/setup", UNIT_PYTHON);
    s->port = unit_scripted_start(s->dir, opts, &s->pid);
    server_started(s);
    snprintf(s->log, sizeof(s->log), "%s/events.log", s->dir);
    if (s->port < 0)
        fail_msg("scripted server did not start");
}

/* py_start - py_startv with the options as arguments (NULL-ended). */
static void
py_start(struct server *s, ...)
{
    const char *opts[36];
    size_t n = 0;
    va_list ap;

    va_start(ap, s);
    while ((opts[n] = va_arg(ap, const char *)) != NULL && n + 1 < 36)
        n++;
    va_end(ap);
    opts[n] = NULL;
    py_startv(s, opts);
}

static struct smtpc_pool *
pool_new(const char *kind, int port, enum smtpc_tls tls, const char *auth,
         size_t max_idle, int idle_ms, int timeout_ms)
{
    char hop[128];
    struct smtpc_settings s;
    struct smtpc_pool *p;
    struct err e;

    snprintf(hop, sizeof(hop), "%s:[127.0.0.1]:%d", kind, port);
    memset(&s, 0, sizeof(s));
    s.next_hop = hop;
    s.helo_name = "client.example";
    s.tls = tls;
    s.auth_file = auth;
    s.connect_timeout_ms = 2000;
    s.timeout_ms = timeout_ms;
    s.idle_timeout_ms = idle_ms;
    s.max_idle = max_idle;
    if ((p = smtpc_pool_new(&s, &e)) == NULL)
        fail_msg("smtpc_pool_new(%s): %s", hop, e.text);
    return p;
}

/* deliver - one whole transaction; returns what the last call returned,
 * with r its reply. */
static int
deliver(struct smtpc_pool *p, const struct msg_env *env, const char *rcpts,
        const char *data, size_t len, struct smtpc_reply *r)
{
    struct smtpc_conn *c;
    char one[256];
    const char *q, *comma;
    struct err e;
    int rc, ok = 0;

    if ((c = smtpc_get(p, r, &e)) == NULL)
        return -1;
    rc = smtpc_mail(c, env, "a@example.com",
                    "BODY=8BITMIME SIZE=1234 RET=HDRS", r, &e);
    if (rc < 0 || r->code / 100 != 2)
        goto out;
    for (q = rcpts; *q != '\0'; q = *comma ? comma + 1 : comma) {
        comma = q + strcspn(q, ",");
        snprintf(one, sizeof(one), "%.*s", (int)(comma - q), q);
        if ((rc = smtpc_rcpt(c, one, "NOTIFY=NEVER", r, &e)) < 0)
            goto out;
        ok += r->code / 100 == 2;
    }
    if (ok > 0)
        rc = smtpc_data(c, data, len, r, &e);
out:
    smtpc_put(p, c, rc == 0);
    return rc;
}

/* deliver_iov - deliver, with the message cut into pieces of step octets
 * (a last one shorter) sent by smtpc_data_iov. */
static int
deliver_iov(struct smtpc_pool *p, const char *data, size_t len, size_t step,
            struct smtpc_reply *r)
{
    struct iovec v[4096];
    struct smtpc_conn *c;
    struct err e;
    size_t n = 0, at;
    int rc;

    for (at = 0; at < len && n < 4096; at += step, n++) {
        v[n].iov_base = (void *)(uintptr_t)(data + at);
        v[n].iov_len = len - at < step ? len - at : step;
    }
    assert_true(at >= len);
    if ((c = smtpc_get(p, r, &e)) == NULL)
        return -1;
    rc = smtpc_mail(c, NULL, "a@example.com", NULL, r, &e);
    if (rc == 0 && r->code / 100 == 2)
        rc = smtpc_rcpt(c, "b@example.net", NULL, r, &e);
    if (rc == 0 && r->code / 100 == 2)
        rc = smtpc_data_iov(c, v, n, NULL, 0, r, &e);
    smtpc_put(p, c, rc == 0);
    return rc;
}

/* dump_files - the smtp-sink dumps, in no order; n gets how many. */
static char **
dump_files(const struct server *s, int want, int *n)
{
    char **out = calloc(64, sizeof(char *)), path[600];
    struct dirent *de;
    DIR *d;
    int i;

    assert_non_null(out);
    for (i = 0; i < 100; i++) {
        *n = 0;
        assert_non_null(d = opendir(s->dump));
        while ((de = readdir(d)) != NULL && *n < 63) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", s->dump, de->d_name);
            out[(*n)++] = unit_read_file(path, NULL);
        }
        closedir(d);
        if (*n >= want)
            break;
        while (*n > 0)
            free(out[--(*n)]);
        unit_sleep_ms(20);
    }
    return out;
}

static void
dump_files_free(char **f, int n)
{
    while (n > 0)
        free(f[--n]);
    free(f);
}

/* dump_with - the dump holding marker, or NULL. */
static const char *
dump_with(char **f, int n, const char *marker)
{
    int i;

    for (i = 0; i < n; i++)
        if (f[i] != NULL && strstr(f[i], marker) != NULL)
            return f[i];
    return NULL;
}

/* dump_message - the message in a dump: after smtp-sink's three-line
 * Received: header. */
static const char *
dump_message(const char *dump)
{
    const char *p = strstr(dump, "\nReceived: from ");
    int i;

    if (p == NULL)
        return NULL;
    for (p++, i = 0; i < 3 && p != NULL; i++)
        if ((p = strchr(p, '\n')) != NULL)
            p++;
    return p;
}

/* lf_form - the message as smtp-sink dumps it (and as a Maildir file
 * holds it, without the last "\n" a dump adds): every line end a LF, one
 * added at the end when missing. Written octet by octet on purpose, as a
 * reference independent of the client's conversion. */
static char *
lf_form(const char *in, size_t len, int dump)
{
    char *out = malloc(len + 3);
    size_t i, o = 0;

    assert_non_null(out);
    for (i = 0; i < len; i++) {
        if (in[i] == '\r') {
            out[o++] = '\n';
            if (i + 1 < len && in[i + 1] == '\n')
                i++;
        } else {
            out[o++] = in[i];
        }
    }
    if (o > 0 && out[o - 1] != '\n')
        out[o++] = '\n';
    if (dump)
        out[o++] = '\n';
    out[o] = '\0';
    return out;
}

/* wire_form - the DATA octets SMTP must carry: CRLF line ends, leading
 * dots doubled, ".\r\n" at the end. Octet by octet, as lf_form. */
static char *
wire_form(const char *in, size_t len, size_t *olen)
{
    char *out = malloc(2 * len + 8);
    size_t i, o = 0;
    int bol = 1;

    assert_non_null(out);
    for (i = 0; i < len; i++) {
        if (bol && in[i] == '.')
            out[o++] = '.';
        bol = 0;
        if (in[i] == '\r' || in[i] == '\n') {
            if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
                i++;
            out[o++] = '\r';
            out[o++] = '\n';
            bol = 1;
        } else {
            out[o++] = in[i];
        }
    }
    if (!bol) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 4);
    *olen = o + 3;
    return out;
}

/* Messages with every line-end and dot case, and one long message whose
 * 32 KiB conversion windows split a CRLF pair and start a line with a
 * dot. */
struct message {
    const char *name;
    const char *text;
};

static const struct message messages[] = {
    {"dots", "Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\n. \r\nend\r\n"},
    {"bare", "Subject: bare\n\nlf only\nline\rcr only\r\n.\rdot after cr\n"
             "\r\r\n\n.\nno final line end"},
    {"empty body", "Subject: empty body\r\n\r\n"},
    {"dot last", "Subject: dot last\r\n\r\nlast line is a dot\r\n."},
};

static char *
long_message(size_t *len)
{
    size_t n = 300 * 1024, o;
    char *s = malloc(n + 1);
    unsigned k = 1;

    assert_non_null(s);
    o = (size_t)snprintf(s, n, "Subject: long\r\n\r\n");
    while (o < n) {
        size_t w = 1 + (k * 37) % 120, i;

        for (i = 0; i < w && o < n; i++)
            s[o++] = (char)('a' + (k + i) % 26);
        if (o + 2 >= n)
            break;
        if (k % 3 == 0) {
            s[o++] = '\n';
        } else {
            s[o++] = '\r';
            s[o++] = '\n';
        }
        if (k % 5 == 0 && o < n)
            s[o++] = '.';
        k++;
    }
    /* a CRLF pair across the first window edge, a dot line after it */
    memcpy(s + 32 * 1024 - 1, "\r\n.edge\r\n", 9);
    memcpy(s + 64 * 1024 - 1, "\n.\r\nx", 5);
    s[o] = '\0';
    *len = o;
    return s;
}

/* ------------------------------------------------------------ cases */

static void
test_settings(void **state)
{
    static const struct {
        const char *hop;
        const char *want; /* NULL: accepted */
    } hops[] = {
        {"smtp:[127.0.0.1]:10025", NULL},
        {"lmtp:[::1]:24", NULL},
        {"smtp:localhost", NULL},
        {"SMTP:[relay.example]", NULL},
        {"lmtp:localhost:2424", NULL},
        {"", "not set"},
        {"relay.example", "unknown kind"},
        {"smtp:", "no host"},
        {"smtp:[]:25", "no host"},
        {"smtp:[127.0.0.1:25", "missing ']'"},
        {"smtp:[127.0.0.1]:0", "bad port"},
        {"smtp:[127.0.0.1]:65536", "bad port"},
        {"smtp:[127.0.0.1]:25x", "bad port"},
        {"smtp:[127.0.0.1]:", "bad port"},
        {"smtp:[127.0.0.1]x", "junk after the host"},
        {"smtp:::1", "no host"},
        {"smtp:relay example", "bad character in host"},
        {"smtp:relay\r\nexample", "bad character in host"},
        {"maildir:relative/path", "absolute path"},
        {"maildir:/", "absolute path"},
    };
    struct smtpc_settings s;
    struct smtpc_pool *p;
    struct err e;
    size_t i;

    (void)state;
    memset(&s, 0, sizeof(s));
    s.tls = SMTPC_TLS_NONE;
    for (i = 0; i < sizeof(hops) / sizeof(hops[0]); i++) {
        s.next_hop = hops[i].hop;
        err_clear(&e);
        p = smtpc_pool_new(&s, &e);
        if (hops[i].want == NULL) {
            if (p == NULL)
                unit_fail(hops[i].hop, "refused: %s", e.text);
            smtpc_pool_free(p);
            continue;
        }
        if (p != NULL)
            unit_fail(hops[i].hop, "accepted, want \"%s\"", hops[i].want);
        unit_int_eq(hops[i].hop, e.code, ERR_CONFIG);
        unit_has(hops[i].hop, e.text, hops[i].want);
    }
    s.next_hop = "smtp:[127.0.0.1]:25";
    s.helo_name = "bad helo\r\nMAIL FROM:<x>";
    unit_int_eq("bad helo", smtpc_pool_new(&s, &e) == NULL, 1);
    unit_has("bad helo", e.text, "not a host name");
}

/* The TLS settings: Postfix's protocol syntax within TLSv1.2 and
 * TLSv1.3, pins in the forms openssl prints, a name for secure. */
static void
test_tls_settings(void **state)
{
    static const char pin[] =
        "47:E8:B9:62:BA:D7:DF:73:8C:56:55:38:B1:87:D4:F9:18:93:84:1C:2B:5D:"
        "C0:19:0A:50:9D:A7:A9:A0:71:53";
    static const char bare[] =
        "47e8b962bad7df738c565538b187d4f91893841c2b5dc0190a509da7a9a07153";
    static const struct {
        const char *name;
        enum smtpc_tls tls;
        const char *hop, *protocols, *fingerprint, *tls_name;
        const char *want; /* NULL: accepted */
    } cases[] = {
        {"default", SMTPC_TLS_SECURE, "smtp:[mx.example]:25", NULL, NULL, NULL,
         NULL},
        {"exclusions", SMTPC_TLS_MAY, NULL, "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1",
         NULL, NULL, NULL},
        {"at least 1.3", SMTPC_TLS_MAY, NULL, ">=TLSv1.3", NULL, NULL, NULL},
        {"at most 1.2", SMTPC_TLS_MAY, NULL, "<=TLSv1.2", NULL, NULL, NULL},
        {"list", SMTPC_TLS_MAY, NULL, "TLSv1.2:TLSv1.3", NULL, NULL, NULL},
        {"unknown", SMTPC_TLS_MAY, NULL, "TLSv1.4", NULL, NULL,
         "'TLSv1.4' is not a protocol"},
        {"only old", SMTPC_TLS_MAY, NULL, "<=TLSv1.1", NULL, NULL,
         "leaves none of the protocols"},
        {"none left", SMTPC_TLS_MAY, NULL, "!TLSv1.2 !TLSv1.3", NULL, NULL,
         "leaves none of the protocols"},
        {"pin", SMTPC_TLS_ENCRYPT, NULL, NULL, pin, NULL, NULL},
        {"pin sha256:, bare, two", SMTPC_TLS_VERIFY, NULL, NULL,
         "sha256:47e8b962bad7df738c565538b187d4f91893841c2b5dc0190a509da7a9a0"
         "7153, "
         "47E8B962BAD7DF738C565538B187D4F91893841C2B5DC0190A509DA7A9A07153",
         NULL, NULL},
        {"short pin", SMTPC_TLS_ENCRYPT, NULL, NULL, "47:E8:B9", NULL,
         "is not a SHA-256 fingerprint"},
        {"long pin", SMTPC_TLS_ENCRYPT, NULL, NULL, "00" /* + bare */, NULL,
         NULL},
        {"odd colon", SMTPC_TLS_ENCRYPT, NULL, NULL,
         "4:7E8B962BAD7DF738C565538B187D4F91893841C2B5DC0190A509DA7A9A07153",
         NULL, "is not a SHA-256 fingerprint"},
        {"pin with may", SMTPC_TLS_MAY, NULL, NULL, pin, NULL,
         "a pin needs next_hop_tls = encrypt"},
        {"secure, address", SMTPC_TLS_SECURE, NULL, NULL, NULL, NULL,
         "127.0.0.1 is an address: name the host instead, or set "
         "next_hop_tls_name"},
        {"secure, address, name", SMTPC_TLS_SECURE, NULL, NULL, NULL,
         "mx.example.net", NULL},
        {"bad name", SMTPC_TLS_SECURE, NULL, NULL, NULL, "mx example",
         "is not a host name"},
    };
    char longpin[sizeof(bare) + 2];
    struct smtpc_settings s;
    struct smtpc_pool *p;
    struct err e;
    size_t i;

    (void)state;
    snprintf(longpin, sizeof(longpin), "00%s", bare);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int is_long = strcmp(cases[i].name, "long pin") == 0;

        memset(&s, 0, sizeof(s));
        s.next_hop = cases[i].hop ? cases[i].hop : "smtp:[127.0.0.1]:25";
        s.tls = cases[i].tls;
        s.tls_protocols = cases[i].protocols;
        s.tls_fingerprint = is_long ? longpin : cases[i].fingerprint;
        s.tls_name = cases[i].tls_name;
        err_clear(&e);
        p = smtpc_pool_new(&s, &e);
        if (cases[i].want == NULL && !is_long) {
            if (p == NULL)
                unit_fail(cases[i].name, "refused: %s", e.text);
            smtpc_pool_free(p);
            continue;
        }
        if (p != NULL)
            unit_fail(cases[i].name, "accepted, want a refusal");
        smtpc_pool_free(p);
        unit_int_eq(cases[i].name, e.code, ERR_CONFIG);
        if (cases[i].want != NULL)
            unit_has(cases[i].name, e.text, cases[i].want);
    }
}

static void
test_auth_file(void **state)
{
    static const struct {
        const char *name;
        const char *text;   /* NULL: no file */
        const char *want;   /* NULL: accepted */
        const char *secret; /* must not show in the error */
        mode_t mode;        /* 0: 0600 */
    } files[] = {
        {"one line", "user:pass\n", NULL, NULL, 0},
        {"comments", "# next hop\n\nuser:pa:ss\n", NULL, NULL, 0},
        {"no newline", "user:pass", NULL, NULL, 0},
        {"missing", NULL, "No such file", NULL, 0},
        {"empty", "# nothing\n", "no user:password line", NULL, 0},
        {"no colon", "userpass\n", ":1: expected user:password", "userpass",
         0},
        {"no user", ":secret\n", ":1: expected user:password", "secret", 0},
        {"two lines", "a:b\nc:secret\n", ":2: more than one", "secret", 0},
        /* the same rule as the password file's and the keys' */
        {"group", "user:pass\n", NULL, NULL, 0640},
        {"world-readable", "user:secret\n",
         "mode 0644 lets all other users read it; the next hop's password "
         "must stay private: run chmod 640",
         "secret", 0644},
        {"world-writable", "user:secret\n",
         "mode 0602 lets other users write it", "secret", 0602},
    };
    char dir[256], path[512];
    struct smtpc_settings s;
    struct smtpc_pool *p;
    struct err e;
    size_t i;

    (void)state;
    scratch_dir(dir, sizeof(dir));
    memset(&s, 0, sizeof(s));
    s.next_hop = "smtp:[127.0.0.1]:25";
    s.tls = SMTPC_TLS_NONE;
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/auth", dir);
        unlink(path);
        if (files[i].text != NULL) {
            unit_write(dir, "auth", files[i].text, path, sizeof(path));
            chmod(path, files[i].mode != 0 ? files[i].mode : 0600);
        }
        s.auth_file = path;
        p = smtpc_pool_new(&s, &e);
        if (files[i].want == NULL) {
            if (p == NULL)
                unit_fail(files[i].name, "refused: %s", e.text);
            smtpc_pool_free(p);
            continue;
        }
        if (p != NULL)
            unit_fail(files[i].name, "accepted, want \"%s\"", files[i].want);
        unit_has(files[i].name, e.text, files[i].want);
        if (files[i].secret != NULL && strstr(e.text, files[i].secret))
            unit_fail(files[i].name, "error shows the line: %s", e.text);
    }
    scratch_done(dir);
}

/* Every message arrives as sent, through one connection; SIZE (not
 * offered by smtp-sink) is dropped from MAIL, DSN parameters kept. */
static void
test_sink_delivery(void **state)
{
    struct server s;
    struct smtpc_pool *p;
    struct smtpc_reply r;
    char **f, *want, *big;
    const char *got;
    size_t i, len;
    int n;

    (void)state;
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        unit_int_eq(messages[i].name,
                    deliver(p, NULL, "b@example.net", messages[i].text,
                            strlen(messages[i].text), &r),
                    0);
        unit_int_eq(messages[i].name, r.code, 250);
    }
    big = long_message(&len);
    unit_int_eq("long", deliver(p, NULL, "b@example.net", big, len, &r), 0);
    unit_int_eq("long", r.code, 250);
    smtpc_pool_free(p);

    f = dump_files(&s, 5, &n);
    unit_int_eq("dumps", n, 5);
    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        char marker[64];

        snprintf(marker, sizeof(marker), "Subject: %s\n", messages[i].name);
        got = dump_with(f, n, marker);
        if (got == NULL || (got = dump_message(got)) == NULL)
            unit_fail(messages[i].name, "not in any dump");
        want = lf_form(messages[i].text, strlen(messages[i].text), 1);
        unit_str_eq(messages[i].name, got, want);
        free(want);
    }
    got = dump_message(dump_with(f, n, "Subject: long\n"));
    want = lf_form(big, len, 1);
    if (got == NULL || strcmp(got, want) != 0)
        unit_fail("long", "the long message arrived changed");
    free(want);
    free(big);
    unit_has("MAIL", f[0],
             "X-Mail-Args: <a@example.com> BODY=8BITMIME "
             "RET=HDRS\n");
    unit_has("RCPT", f[0], "X-Rcpt-Args: <b@example.net> NOTIFY=NEVER\n");
    unit_has("EHLO", f[0], "X-Helo-Args: client.example\n");
    dump_files_free(f, n);
    unit_int_eq("connections", unit_count(s.log, ": connect ("), 1);
    unit_int_eq("QUIT at pool_free", count_wait(s.log, "smtp-sink: QUIT", 1),
                1);
    server_stop(&s);
}

/* The octets on the wire, exactly: CRLF only, dots doubled. */
static void
test_wire_octets(void **state)
{
    struct server s;
    struct smtpc_pool *p;
    struct smtpc_reply r;
    char path[400], *got, *want, *big;
    size_t i, len, glen, wlen;

    (void)state;
    py_start(&s, "--ehlo", "PIPELINING", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        unit_int_eq(messages[i].name,
                    deliver(p, NULL, "b@example.net", messages[i].text,
                            strlen(messages[i].text), &r),
                    0);
        unit_int_eq(messages[i].name, r.code, 250);
        snprintf(path, sizeof(path), "%s/data-%zu.bin", s.dir, i + 1);
        got = unit_read_file(path, &glen);
        want = wire_form(messages[i].text, strlen(messages[i].text), &wlen);
        if (got == NULL || glen != wlen || memcmp(got, want, wlen) != 0)
            unit_fail(messages[i].name,
                      "got %zu octets \"%s\", want %zu \"%s\"", got ? glen : 0,
                      got ? got : "(none)", wlen, want);
        free(got);
        free(want);
    }
    /* the reference itself, on two small cases */
    want = wire_form("a\n.b\rc", 6, &wlen);
    unit_str_eq("reference", want, "a\r\n..b\r\nc\r\n.\r\n");
    free(want);
    want = wire_form("", 0, &wlen);
    unit_str_eq("reference", want, ".\r\n");
    free(want);

    big = long_message(&len);
    unit_int_eq("long", deliver(p, NULL, "b@example.net", big, len, &r), 0);
    snprintf(path, sizeof(path), "%s/data-%zu.bin", s.dir, i + 1);
    got = unit_read_file(path, &glen);
    want = wire_form(big, len, &wlen);
    if (got == NULL || glen != wlen || memcmp(got, want, wlen) != 0)
        unit_fail("long", "got %zu octets, want %zu", got ? glen : 0, wlen);
    free(got);
    free(want);
    free(big);
    smtpc_pool_free(p);
    server_stop(&s);
}

/* A message in pieces goes out as the same octets as in one block, cut
 * anywhere: between CR and LF, before a dot that starts a line, into
 * single octets, or into many pieces of a long message. */
static void
test_wire_pieces(void **state)
{
    static const size_t steps[] = {1, 2, 3, 5, 16};
    struct server s;
    struct smtpc_pool *p;
    struct smtpc_reply r;
    char path[400], name[80], *got, *want, *big;
    size_t i, k, len, glen, wlen, nth = 0;

    (void)state;
    py_start(&s, "--ehlo", "PIPELINING", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        for (k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
            snprintf(name, sizeof(name), "%s, pieces of %zu", messages[i].name,
                     steps[k]);
            unit_int_eq(name,
                        deliver_iov(p, messages[i].text,
                                    strlen(messages[i].text), steps[k], &r),
                        0);
            unit_int_eq(name, r.code, 250);
            snprintf(path, sizeof(path), "%s/data-%zu.bin", s.dir, ++nth);
            got = unit_read_file(path, &glen);
            want =
                wire_form(messages[i].text, strlen(messages[i].text), &wlen);
            if (got == NULL || glen != wlen || memcmp(got, want, wlen) != 0)
                unit_fail(name, "got %zu octets \"%s\", want %zu \"%s\"",
                          got ? glen : 0, got ? got : "(none)", wlen, want);
            free(got);
            free(want);
        }
    }
    big = long_message(&len);
    unit_int_eq("long", deliver_iov(p, big, len, 1000, &r), 0);
    snprintf(path, sizeof(path), "%s/data-%zu.bin", s.dir, ++nth);
    got = unit_read_file(path, &glen);
    want = wire_form(big, len, &wlen);
    if (got == NULL || glen != wlen || memcmp(got, want, wlen) != 0)
        unit_fail("long in pieces", "got %zu octets, want %zu", got ? glen : 0,
                  wlen);
    free(got);
    free(want);
    free(big);
    smtpc_pool_free(p);
    server_stop(&s);
}

static void
test_xforward(void **state)
{
    struct msg_env env;
    struct server s;
    struct smtpc_pool *p;
    struct smtpc_reply r;
    struct smtpc_conn *c;
    struct err e;
    const char *m = "Subject: x\r\n\r\nx\r\n";
    char name[700];

    (void)state;
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    memset(&env, 0, sizeof(env));
    env.client_name = "mail.example.org";
    env.client_addr = "192.0.2.1";
    env.helo = "he lo+x=y";
    env.frontend = MSG_FE_SMTP;
    unit_int_eq("full", deliver(p, &env, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("full", r.code, 250);
    unit_int_eq("full",
                unit_count(s.log, "smtp-sink: XFORWARD NAME=mail.example.org "
                                  "ADDR=192.0.2.1 PROTO=ESMTP "
                                  "HELO=he+20lo+2Bx+3Dy\n"),
                1);
    memset(&env, 0, sizeof(env));
    env.client_addr = "2001:db8::1";
    env.frontend = MSG_FE_MILTER;
    unit_int_eq("sparse", deliver(p, &env, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("sparse",
                unit_count(s.log, "smtp-sink: XFORWARD NAME=[UNAVAILABLE] "
                                  "ADDR=2001:db8::1 PROTO=[UNAVAILABLE] "
                                  "HELO=[UNAVAILABLE]\n"),
                1);
    unit_int_eq("none", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("none", unit_count(s.log, "XFORWARD"), 2);
    smtpc_pool_free(p);
    server_stop(&s);

    /* not offered (-F): not sent */
    sink_start(&s, "-F", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    assert_non_null(c = smtpc_get(p, &r, &e));
    unit_int_eq("-F", smtpc_has_xforward(c), 0);
    smtpc_put(p, c, 1);
    memset(&env, 0, sizeof(env));
    env.client_addr = "192.0.2.1";
    unit_int_eq("-F", deliver(p, &env, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("-F", r.code, 250);
    unit_int_eq("-F", unit_count(s.log, "XFORWARD"), 0);
    smtpc_pool_free(p);
    server_stop(&s);

    /* only the attributes listed; a long value in a command of its own,
     * one too long for any command as unavailable */
    py_start(&s, "--ehlo", "XFORWARD NAME ADDR", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    memset(&env, 0, sizeof(env));
    memset(name, 'n', 495);
    name[495] = '\0';
    env.client_name = name;
    env.client_addr = "192.0.2.7";
    env.helo = "helo.example";
    env.frontend = MSG_FE_SMTP;
    unit_int_eq("subset", deliver(p, &env, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("subset", unit_count(s.log, "> XFORWARD NAME=nnnnnnnnnn"), 1);
    unit_int_eq("subset", unit_count(s.log, "> XFORWARD ADDR=192.0.2.7\n"), 1);
    unit_int_eq("subset", unit_count(s.log, "PROTO="), 0);
    unit_int_eq("subset", unit_count(s.log, "HELO="), 0);
    memset(name, 'n', 600);
    name[600] = '\0';
    unit_int_eq("too long",
                deliver(p, &env, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq(
        "too long",
        unit_count(s.log, "> XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.7\n"),
        1);
    smtpc_pool_free(p);
    server_stop(&s);

    /* XFORWARD refused: its reply is the answer, MAIL (pipelined behind
     * it and accepted) is undone with RSET, and the connection stays */
    py_start(&s, "--ehlo", "PIPELINING", "--ehlo", "XFORWARD NAME ADDR",
             "--xforward-reply", "550 5.5.4 Bad XFORWARD attribute", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("refused", deliver(p, &env, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("refused", r.code, 550);
    unit_str_eq("refused", r.text, "5.5.4 Bad XFORWARD attribute");
    unit_int_eq("refused", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("refused", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("refused", unit_count(s.log, "1 > RSET"), 1);
    unit_int_eq("refused", unit_count(s.log, " conn\n"), 1);
    unit_int_eq("refused", unit_count(s.log, " data data-"), 1);
    server_stop(&s);
}

/* with_port - tmpl with its "PORT" replaced by port. */
static const char *
with_port(const char *tmpl, int port, char *out, size_t n)
{
    const char *at = strstr(tmpl, "PORT");

    if (at == NULL)
        snprintf(out, n, "%s", tmpl);
    else
        snprintf(out, n, "%.*s%d%s", (int)(at - tmpl), tmpl, port, at + 4);
    return out;
}

struct reject_case {
    const char *name;
    const char *opt, *arg; /* smtp-sink option */
    const char *step;      /* where it shows: mail, rcpt, data */
    int rc, code;
    const char *text;
};

static void
test_rejects(void **state)
{
    static const struct reject_case cases[] = {
        {"MAIL 5xx", "-f", "MAIL", "mail", 0, 500,
         "5.3.0 Error: command failed"},
        {"RCPT 4xx", "-r", "RCPT", "rcpt", 0, 450,
         "4.3.0 Error: command failed"},
        {"RCPT 5xx", "-f", "RCPT", "rcpt", 0, 500,
         "5.3.0 Error: command failed"},
        {"DATA 5xx", "-f", "DATA", "data", 0, 500,
         "5.3.0 Error: command failed"},
        {"end of data 4xx", "-r", ".", "data", 0, 450, "4.3.0 Error"},
        {"end of data 5xx", "-f", ".", "data", 0, 500, "5.3.0 Error"},
        {"421 at MAIL", "-Q", "MAIL", "mail", 0, 451, ""},
        {"421 at end of data", "-Q", ".", "data", 0, 451, ""},
        {"lost at RCPT", "-q", "RCPT", "rcpt", -1, 451,
         "4.4.2 lost connection with 127.0.0.1[127.0.0.1]:PORT while "
         "sending RCPT TO"},
        {"lost at end of data", "-q", ".", "data", -1, 451,
         "4.4.2 lost connection with 127.0.0.1[127.0.0.1]:PORT while "
         "sending end of data -- message may be sent more than once"},
    };
    const char *m = "Subject: r\r\n\r\nr\r\n";
    char want[300];
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct smtpc_conn *c;
    struct server s;
    struct err e;
    size_t i;
    int rc = 0;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct reject_case *k = &cases[i];

        sink_start(&s, k->opt, k->arg, NULL);
        p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
        if ((c = smtpc_get(p, &r, &e)) == NULL)
            unit_fail(k->name, "no connection: %d %s", r.code, r.text);
        rc = smtpc_mail(c, NULL, "a@example.com", NULL, &r, &e);
        if (strcmp(k->step, "mail") != 0) {
            unit_int_eq(k->name, rc, 0);
            unit_int_eq(k->name, r.code, 250);
            rc = smtpc_rcpt(c, "b@example.net", NULL, &r, &e);
        }
        if (strcmp(k->step, "data") == 0) {
            unit_int_eq(k->name, rc, 0);
            unit_int_eq(k->name, r.code, 250);
            rc = smtpc_data(c, m, strlen(m), &r, &e);
        }
        unit_int_eq(k->name, rc, k->rc);
        unit_int_eq(k->name, r.code, k->code);
        unit_has(k->name, r.text,
                 with_port(k->text, s.port, want, sizeof(want)));
        if (k->code == 451 && rc == 0) {
            /* a 421 closes the connection: the next command fails */
            unit_int_eq(k->name, smtpc_rcpt(c, "c@example.net", NULL, &r, &e),
                        -1);
            unit_has(k->name, r.text, "already lost");
        }
        smtpc_put(p, c, rc == 0);
        smtpc_pool_free(p);
        server_stop(&s);
    }
}

/* Failures before MAIL: no connection, 451 the client can be given. */
static void
test_unreachable(void **state)
{
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    struct server s;
    char want[200];
    struct err e;
    int port, fd;
    time_t t0;

    (void)state;
    port = free_port();
    p = pool_new("smtp", port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("refused", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("refused", r.code, 451);
    snprintf(want, sizeof(want),
             "4.4.1 Connection refused by 127.0.0.1[127.0.0.1]:%d", port);
    unit_str_eq("refused", r.text, want);
    unit_int_eq("refused", err_is_temporary(&e), 1);
    smtpc_pool_free(p);

    /* a listener that never speaks: the greeting times out */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
    port = ntohs(sin.sin_port);
    p = pool_new("smtp", port, SMTPC_TLS_MAY, NULL, 4, 5000, 400);
    t0 = time(NULL);
    unit_int_eq("silent", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("silent", r.code, 451);
    unit_has("silent", r.text, "4.4.2 conversation with 127.0.0.1[127.0.0.1]");
    unit_has("silent", r.text,
             "timed out while receiving the initial server "
             "greeting");
    if (time(NULL) - t0 > 3)
        unit_fail("silent", "took %lds, want about 0.4s",
                  (long)(time(NULL) - t0));
    smtpc_pool_free(p);
    close(fd);

    /* greeting refused (smtp-sink -f CONNECT): 451, never 5xx */
    sink_start(&s, "-f", "CONNECT", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("greeting", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("greeting", r.code, 451);
    unit_has("greeting", r.text, "refused to talk to me: 5");
    smtpc_pool_free(p);
    server_stop(&s);

    /* EHLO refused: HELO, and mail still goes */
    sink_start(&s, "-f", "EHLO", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("HELO", deliver(p, NULL, "b@example.net", "x\r\n", 3, &r), 0);
    unit_int_eq("HELO", r.code, 250);
    unit_int_eq("HELO", unit_count(s.log, "smtp-sink: HELO client.example"),
                1);
    smtpc_pool_free(p);
    server_stop(&s);
}

/* A server that talks nonsense. */
static void
test_bad_reply(void **state)
{
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct err e;
    int fd, cfd, port;
    pid_t pid;

    (void)state;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
    port = ntohs(sin.sin_port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        if ((cfd = accept(fd, NULL, NULL)) >= 0 &&
            write(cfd, "HTTP/1.0 200 OK\r\n\r\n", 19) == 19)
            sleep(5);
        _exit(0);
    }
    close(fd);
    p = pool_new("smtp", port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("junk", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("junk", r.code, 451);
    unit_has("junk", r.text, "4.5.0 protocol error: malformed reply from");
    smtpc_pool_free(p);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void
test_reuse(void **state)
{
    const char *m = "Subject: reuse\r\n\r\nreuse\r\n";
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct smtpc_conn *c;
    struct server s;
    struct err e;
    int i;

    (void)state;
    /* kept, reset after an unfinished transaction, kept again */
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 1, 5000, 5000);
    for (i = 0; i < 3; i++)
        unit_int_eq("kept",
                    deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    assert_non_null(c = smtpc_get(p, &r, &e));
    unit_int_eq("open", smtpc_mail(c, NULL, "a@example.com", NULL, &r, &e), 0);
    unit_int_eq("open", smtpc_rcpt(c, "b@example.net", NULL, &r, &e), 0);
    smtpc_put(p, c, 1);
    unit_int_eq("RSET", unit_count(s.log, "smtp-sink: RSET"), 1);
    unit_int_eq("after RSET",
                deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("after RSET", r.code, 250);
    /* a connection put back as failed is closed */
    assert_non_null(c = smtpc_get(p, &r, &e));
    smtpc_put(p, c, 0);
    unit_int_eq("after failure",
                deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    smtpc_pool_free(p);
    unit_int_eq("kept", unit_count(s.log, ": connect ("), 2);
    server_stop(&s);

    /* max_idle 0: nothing kept */
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 0, 5000, 5000);
    for (i = 0; i < 2; i++)
        unit_int_eq("max_idle 0",
                    deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    smtpc_pool_free(p);
    unit_int_eq("max_idle 0", unit_count(s.log, ": connect ("), 2);
    unit_int_eq("max_idle 0", count_wait(s.log, "smtp-sink: QUIT", 2), 2);
    server_stop(&s);

    /* idle timeout: the old connection is not used */
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 150, 5000);
    unit_int_eq("idle", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_sleep_ms(400);
    unit_int_eq("idle", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("idle", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("idle", unit_count(s.log, ": connect ("), 2);
    server_stop(&s);

    /* the server closed the idle connection (-t 1): noticed, replaced;
     * 3 s leave smtp-sink two seconds to close it on a loaded machine */
    sink_start(&s, "-t", "1", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 10000, 5000);
    unit_int_eq("closed", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_sleep_ms(3000);
    unit_int_eq("closed", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("closed", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("closed", unit_count(s.log, ": connect ("), 2);
    server_stop(&s);

    /* 421 at MAIL on a reused connection: replaced once, transparently */
    py_start(&s, "--ehlo", "PIPELINING", "--mail-421-reuse", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 10000, 5000);
    unit_int_eq("421", deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("421", deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("421", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("421 connections", unit_count(s.log, " conn\n"), 2);
    unit_int_eq("421 messages", unit_count(s.log, " data data-"), 2);
    server_stop(&s);
}

struct thread_arg {
    struct smtpc_pool *pool;
    int id, ok;
};

static void *
thread_main(void *v)
{
    struct thread_arg *a = v;
    struct smtpc_reply r;
    char m[128];
    int i;

    for (i = 0; i < 5; i++) {
        snprintf(m, sizeof(m), "Subject: thread %d message %d\r\n\r\nx\r\n",
                 a->id, i);
        if (deliver(a->pool, NULL, "b@example.net", m, strlen(m), &r) == 0 &&
            r.code == 250)
            a->ok++;
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct thread_arg args[4];
    pthread_t tid[4];
    struct smtpc_pool *p;
    struct server s;
    char **f, marker[64];
    int i, j, n;

    (void)state;
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 2, 5000, 5000);
    for (i = 0; i < 4; i++) {
        args[i].pool = p;
        args[i].id = i;
        args[i].ok = 0;
        assert_int_equal(pthread_create(&tid[i], NULL, thread_main, &args[i]),
                         0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        unit_int_eq("thread", args[i].ok, 5);
    }
    smtpc_pool_free(p);
    f = dump_files(&s, 20, &n);
    unit_int_eq("threads", n, 20);
    for (i = 0; i < 4; i++)
        for (j = 0; j < 5; j++) {
            snprintf(marker, sizeof(marker), "thread %d message %d\n", i, j);
            if (dump_with(f, n, marker) == NULL)
                unit_fail("threads", "%s missing", marker);
        }
    dump_files_free(f, n);
    /* LIFO reuse: far fewer connections than messages */
    if (unit_count(s.log, ": connect (") > 16)
        unit_fail("threads", "got %d connections for 20 messages",
                  unit_count(s.log, ": connect ("));
    server_stop(&s);
}

static void
make_cert(const char *dir, char *cert, char *key, size_t n)
{
    char cmd[1400];

    snprintf(cert, n, "%s/cert.pem", dir);
    snprintf(key, n, "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -subj /CN=localhost -days 2 -keyout %s -out %s "
             ">/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        fail_msg("openssl could not make a test certificate");
}

static void
test_tls_auth(void **state)
{
    const char *m = "Subject: tls\r\n\r\ntls\r\n";
    char dir[256], cert[400], key[400], auth[400], want[300];
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct server s;
    struct err e;
    char *log, *a, *t;

    (void)state;
    scratch_dir(dir, sizeof(dir));
    make_cert(dir, cert, key, sizeof(cert));
    unit_write(dir, "auth", "# relay login\nrelayuser:pa:ss word\n", auth,
               sizeof(auth));
    chmod(auth, 0600);

    /* may: STARTTLS, EHLO again, AUTH PLAIN inside TLS */
    py_start(&s, "--ehlo", "PIPELINING", "--ehlo", "STARTTLS", "--ehlo",
             "AUTH LOGIN PLAIN", "--tls-cert", cert, "--tls-key", key, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, auth, 4, 5000, 5000);
    unit_int_eq("tls", deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("tls", r.code, 250);
    /* the TLS connection is reused */
    unit_int_eq("tls", deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("tls", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("tls reuse", unit_count(s.log, " conn\n"), 1);
    unit_int_eq("tls reuse", unit_count(s.log, "1 data data-"), 2);
    log = unit_read_file(s.log, NULL);
    assert_non_null(log);
    t = strstr(log, "1 tls\n");
    /* base64 of "\0relayuser\0pa:ss word" */
    a = strstr(log, "1 > AUTH PLAIN AHJlbGF5dXNlcgBwYTpzcyB3b3Jk\n");
    if (t == NULL || a == NULL || a < t)
        unit_fail("tls", "want TLS, then AUTH PLAIN; got:\n%s", log);
    unit_int_eq("tls", unit_count(s.log, "1 > EHLO client.example"), 2);
    free(log);
    server_stop(&s);

    /* encrypt, not offered (smtp-sink has no STARTTLS) */
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_ENCRYPT, NULL, 4, 5000, 5000);
    unit_int_eq("encrypt", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("encrypt", r.code, 451);
    snprintf(want, sizeof(want),
             "4.7.5 TLS is required, but was not offered by host "
             "127.0.0.1[127.0.0.1]:%d",
             s.port);
    unit_str_eq("encrypt", r.text, want);
    unit_int_eq("encrypt", unit_count(s.log, "MAIL"), 0);
    smtpc_pool_free(p);

    /* AUTH without TLS, to loopback only (smtp-sink answers any AUTH) */
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, auth, 4, 5000, 5000);
    unit_int_eq("loopback auth",
                deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("loopback auth", r.code, 250);
    unit_int_eq("loopback auth",
                unit_count(s.log, "AUTH PLAIN AHJlbGF5dXNlcgBwYTpzcyB3b3Jk\n"),
                1);
    smtpc_pool_free(p);
    server_stop(&s);

    /* AUTH PLAIN not offered (-a): no mail without the login */
    sink_start(&s, "-a", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, auth, 4, 5000, 5000);
    unit_int_eq("no AUTH", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("no AUTH", r.code, 451);
    unit_has("no AUTH", r.text, "4.7.0 host 127.0.0.1[127.0.0.1]");
    unit_has("no AUTH", r.text, "does not offer AUTH PLAIN");
    smtpc_pool_free(p);
    server_stop(&s);

    /* plaintext pipelined behind the STARTTLS reply */
    py_start(&s, "--ehlo", "STARTTLS", "--tls-cert", cert, "--tls-key", key,
             "--inject-after-starttls", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("injection", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("injection", r.code, 451);
    unit_has("injection", r.text, "sent data behind its STARTTLS reply");
    smtpc_pool_free(p);
    server_stop(&s);

    /* handshake fails: may goes on in plaintext, encrypt does not */
    py_start(&s, "--ehlo", "STARTTLS", "--tls-cert", cert, "--tls-key", key,
             "--break-tls", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("broken may",
                deliver(p, NULL, "b@example.net", m, strlen(m), &r), 0);
    unit_int_eq("broken may", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("broken may", unit_count(s.log, " conn\n"), 2);
    unit_int_eq("broken may", unit_count(s.log, "2 > STARTTLS"), 0);
    p = pool_new("smtp", s.port, SMTPC_TLS_ENCRYPT, NULL, 4, 5000, 5000);
    unit_int_eq("broken encrypt", smtpc_get(p, &r, &e) == NULL, 1);
    unit_int_eq("broken encrypt", r.code, 451);
    unit_has("broken encrypt", r.text, "4.7.5 TLS with 127.0.0.1[127.0.0.1]");
    smtpc_pool_free(p);
    unit_int_eq("broken", unit_count(s.log, " > MAIL"), 1);
    server_stop(&s);

    scratch_done(dir);
}

static void
test_lmtp(void **state)
{
    const char *m = "Subject: lmtp\r\n\r\nlmtp\r\n";
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct server s;
    char **f;
    int n;

    (void)state;
    sink_start(&s, "-L", NULL);
    p = pool_new("lmtp", s.port, SMTPC_TLS_NONE, NULL, 4, 5000, 5000);
    unit_int_eq(
        "sink",
        deliver(p, NULL, "b@example.net,c@example.net", m, strlen(m), &r), 0);
    unit_int_eq("sink", r.code, 250);
    unit_int_eq("sink", deliver(p, NULL, "d@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("sink", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("LHLO", unit_count(s.log, "smtp-sink: LHLO client.example"),
                1);
    f = dump_files(&s, 2, &n);
    unit_int_eq("sink", n, 2);
    dump_files_free(f, n);
    server_stop(&s);

    /* one reply per accepted recipient; smtpc_data gives the first 4xx */
    py_start(&s, "--lmtp", "--ehlo", "PIPELINING", "--rcpt",
             "c@example.net:550 5.1.1 unknown user", "--final",
             "d@example.net:452 4.2.2 mailbox full", "--final",
             "e@example.net:552 5.2.2 over quota", NULL);
    p = pool_new("lmtp", s.port, SMTPC_TLS_NONE, NULL, 4, 5000, 3000);
    unit_int_eq("mixed",
                deliver(p, NULL,
                        "b@example.net,c@example.net,d@example.net,"
                        "e@example.net",
                        m, strlen(m), &r),
                0);
    unit_int_eq("mixed", r.code, 452);
    unit_str_eq("mixed", r.text, "4.2.2 mailbox full");
    /* all delivered: the last reply, and the connection is in step */
    unit_int_eq(
        "all",
        deliver(p, NULL, "b@example.net,c@example.net", m, strlen(m), &r), 0);
    unit_int_eq("all", r.code, 250);
    unit_int_eq("all", deliver(p, NULL, "f@example.net", m, strlen(m), &r), 0);
    unit_int_eq("all", r.code, 250);
    smtpc_pool_free(p);
    unit_int_eq("mixed", unit_count(s.log, " conn\n"), 1);
    unit_int_eq("mixed", unit_count(s.log, "> LHLO client.example"), 1);
    server_stop(&s);
}

/* Each recipient's reply to the message (smtpc_data_rcpts): with LMTP
 * the host's own for each accepted recipient, in RCPT order; after a
 * lost connection or a 421 part way, the replies read are kept and the
 * rest get the 4xx; with SMTP, or DATA refused, every entry is r. r is
 * the one reply for all: a 4xx over a 5xx over a 2xx. */
struct split_case {
    const char *name;
    const char *kind;     /* "lmtp" or "smtp" */
    const char *opts[10]; /* scripted server options, NULL-ended */
    const char *rcpts;    /* given to RCPT, comma-separated */
    size_t n;             /* entries of each */
    int rc, code;         /* what smtpc_data_rcpts returns, r.code */
    const char *text;     /* in r.text (PORT: the server's) */
    struct {
        int code;
        const char *text;
    } each[4];
};

static void
test_lmtp_each(void **state)
{
    static const char lost[] =
        "4.4.2 lost connection with 127.0.0.1[127.0.0.1]:PORT while "
        "sending end of data -- message may be sent more than once";
    static const struct split_case cases[] = {
        {"delivered, then deferred",
         "lmtp",
         {"--lmtp", "--final", "c@example.net:452 4.2.2 c is full", NULL},
         "b@example.net,c@example.net",
         2,
         0,
         452,
         "4.2.2 c is full",
         {{250, "2.0.0 Ok: delivered"}, {452, "4.2.2 c is full"}}},
        {"bounced, then delivered",
         "lmtp",
         {"--lmtp", "--final", "b@example.net:550 5.1.1 b is gone", NULL},
         "b@example.net,c@example.net",
         2,
         0,
         550,
         "5.1.1 b is gone",
         {{550, "5.1.1 b is gone"}, {250, "2.0.0 Ok: delivered"}}},
        {"a 4xx outranks an earlier 5xx",
         "lmtp",
         {"--lmtp", "--final", "b@example.net:552 5.2.2 b over quota",
          "--final", "c@example.net:452 4.2.2 c is full", NULL},
         "b@example.net,c@example.net,d@example.net",
         3,
         0,
         452,
         "4.2.2 c is full",
         {{552, "5.2.2 b over quota"},
          {452, "4.2.2 c is full"},
          {250, "2.0.0 Ok: delivered"}}},
        {"all delivered: the last reply",
         "lmtp",
         {"--lmtp", "--final", "b@example.net:250 2.0.0 b saved", NULL},
         "b@example.net,c@example.net",
         2,
         0,
         250,
         "2.0.0 Ok: delivered",
         {{250, "2.0.0 b saved"}, {250, "2.0.0 Ok: delivered"}}},
        {"refused at RCPT: no entry, no reply",
         "lmtp",
         {"--lmtp", "--rcpt", "c@example.net:550 5.1.1 unknown", "--final",
          "d@example.net:452 4.2.2 d is full", NULL},
         "b@example.net,c@example.net,d@example.net",
         2,
         0,
         452,
         "4.2.2 d is full",
         {{250, "2.0.0 Ok: delivered"}, {452, "4.2.2 d is full"}}},
        {"lost after the first reply",
         "lmtp",
         {"--lmtp", "--final", "c@example.net:CLOSE", NULL},
         "b@example.net,c@example.net,d@example.net",
         3,
         -1,
         451,
         lost,
         {{250, "2.0.0 Ok: delivered"}, {451, lost}, {451, lost}}},
        {"421 part way",
         "lmtp",
         {"--lmtp", "--final", "c@example.net:421 4.3.2 shutting down", NULL},
         "b@example.net,c@example.net,d@example.net",
         3,
         0,
         451,
         "4.3.2 shutting down",
         {{250, "2.0.0 Ok: delivered"},
          {451, "4.3.2 shutting down"},
          {451, "4.3.2 shutting down"}}},
        {"more entries than recipients",
         "lmtp",
         {"--lmtp", "--final", "b@example.net:550 5.1.1 b is gone", NULL},
         "b@example.net",
         3,
         0,
         550,
         "5.1.1 b is gone",
         {{550, "5.1.1 b is gone"},
          {550, "5.1.1 b is gone"},
          {550, "5.1.1 b is gone"}}},
        {"DATA refused",
         "lmtp",
         {"--lmtp", "--data-reply", "554 5.5.1 no valid recipients", NULL},
         "b@example.net,c@example.net",
         2,
         0,
         554,
         "5.5.1 no valid recipients",
         {{554, "5.5.1 no valid recipients"},
          {554, "5.5.1 no valid recipients"}}},
        {"SMTP: one reply for all",
         "smtp",
         {"--final", "*:452 4.3.1 try later", NULL},
         "b@example.net,c@example.net",
         2,
         0,
         452,
         "4.3.1 try later",
         {{452, "4.3.1 try later"}, {452, "4.3.1 try later"}}},
    };
    const char *m = "Subject: each\r\n\r\neach\r\n";
    struct smtpc_reply r, each[4];
    char one[64], want[300], name[128];
    const char *q, *comma;
    struct smtpc_pool *p;
    struct smtpc_conn *c;
    struct server s;
    struct err e;
    size_t i, k;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct split_case *t = &cases[i];

        py_startv(&s, t->opts);
        p = pool_new(t->kind, s.port, SMTPC_TLS_NONE, NULL, 4, 5000, 3000);
        if ((c = smtpc_get(p, &r, &e)) == NULL)
            unit_fail(t->name, "no connection: %d %s", r.code, r.text);
        unit_int_eq(t->name,
                    smtpc_mail(c, NULL, "a@example.com", NULL, &r, &e), 0);
        for (q = t->rcpts; *q != '\0'; q = *comma ? comma + 1 : comma) {
            comma = q + strcspn(q, ",");
            snprintf(one, sizeof(one), "%.*s", (int)(comma - q), q);
            unit_int_eq(t->name, smtpc_rcpt(c, one, NULL, &r, &e), 0);
        }
        memset(each, 0, sizeof(each));
        rc = smtpc_data_rcpts(c, m, strlen(m), each, t->n, &r, &e);
        unit_int_eq(t->name, rc, t->rc);
        unit_int_eq(t->name, r.code, t->code);
        unit_has(t->name, r.text,
                 with_port(t->text, s.port, want, sizeof(want)));
        for (k = 0; k < t->n; k++) {
            snprintf(name, sizeof(name), "%s, entry %zu", t->name, k);
            unit_int_eq(name, each[k].code, t->each[k].code);
            unit_str_eq(
                name, each[k].text,
                with_port(t->each[k].text, s.port, want, sizeof(want)));
        }
        if (t->n < 4) /* nothing written past n */
            unit_int_eq(t->name, each[t->n].code, 0);
        smtpc_put(p, c, rc == 0);
        if (rc == 0 && r.code != 451) { /* 451: the 421, closed */
            /* every reply was read: the next message goes through the
             * same connection (one left behind would break it) */
            unit_int_eq(t->name,
                        deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                        0);
            unit_int_eq(t->name, unit_count(s.log, " conn\n"), 1);
        }
        smtpc_pool_free(p);
        server_stop(&s);
    }
}

/* DATA refused: the transaction is reset when the connection goes back,
 * and the next message goes through it. */
static void
test_data_refused(void **state)
{
    const char *m = "Subject: d\r\n\r\nd\r\n";
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct server s;

    (void)state;
    sink_start(&s, "-f", "DATA", NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    unit_int_eq("refused", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("refused", r.code, 500);
    unit_int_eq("again", deliver(p, NULL, "b@example.net", m, strlen(m), &r),
                0);
    unit_int_eq("again", r.code, 500);
    smtpc_pool_free(p);
    unit_int_eq("RSET", unit_count(s.log, "smtp-sink: RSET"), 2);
    unit_int_eq("connections", unit_count(s.log, ": connect ("), 1);
    server_stop(&s);
}

/* Bad characters never reach the wire. */
static void
test_injection(void **state)
{
    struct smtpc_reply r;
    struct smtpc_pool *p;
    struct smtpc_conn *c;
    struct server s;
    struct err e;

    (void)state;
    sink_start(&s, NULL);
    p = pool_new("smtp", s.port, SMTPC_TLS_MAY, NULL, 4, 5000, 5000);
    assert_non_null(c = smtpc_get(p, &r, &e));
    unit_int_eq("sender",
                smtpc_mail(c, NULL, "a@x\r\nRCPT TO:<evil@x>", NULL, &r, &e),
                0);
    unit_int_eq("sender", r.code, 501);
    unit_int_eq("params",
                smtpc_mail(c, NULL, "a@x", "BODY=8BITMIME\nRSET", &r, &e), 0);
    unit_int_eq("params", r.code, 501);
    unit_int_eq("mail", smtpc_mail(c, NULL, "a@x", NULL, &r, &e), 0);
    unit_int_eq("mail", r.code, 250);
    unit_int_eq("rcpt", smtpc_rcpt(c, "b@x\rDATA", NULL, &r, &e), 0);
    unit_int_eq("rcpt", r.code, 501);
    smtpc_put(p, c, 1);
    smtpc_pool_free(p);
    unit_int_eq("nothing injected", unit_count(s.log, "evil"), 0);
    unit_int_eq("nothing injected", unit_count(s.log, "DATA"), 0);
    unit_int_eq("one MAIL", unit_count(s.log, "smtp-sink: MAIL"), 1);
    server_stop(&s);
}

static int
dir_count(const char *path)
{
    struct dirent *de;
    DIR *d = opendir(path);
    int n = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* maildir_send - one transaction on a Maildir pool, the message in
 * pieces of step octets (0: whole), for nrcpt recipients; returns what
 * the data call returned, each[0..nrcpt) the replies per recipient. */
static int
maildir_send(struct smtpc_pool *p, const char *qid, const char *data,
             size_t len, size_t step, size_t nrcpt, struct smtpc_reply *each,
             struct smtpc_reply *r)
{
    struct iovec v[64];
    struct msg_env env;
    struct smtpc_conn *c;
    struct err e;
    size_t i, k, n = 0;
    int rc;

    for (i = 0; i < len; i += k) {
        k = step == 0 || n == 63 || len - i < step ? len - i : step;
        v[n].iov_base = (void *)(uintptr_t)(data + i);
        v[n++].iov_len = k;
    }
    memset(&env, 0, sizeof(env));
    env.qid = (char *)qid;
    if ((c = smtpc_get(p, r, &e)) == NULL)
        return -2;
    unit_str_eq("relay", smtpc_relay_name(c), "maildir");
    if (smtpc_mail(c, qid != NULL ? &env : NULL, "a@example.com", "SIZE=1", r,
                   &e) != 0 ||
        r->code != 250) {
        smtpc_put(p, c, 0);
        return -3;
    }
    for (i = 0; i < nrcpt; i++)
        if (smtpc_rcpt(c, "b@example.net", "NOTIFY=NEVER", r, &e) != 0 ||
            r->code != 250) {
            smtpc_put(p, c, 0);
            return -3;
        }
    rc = smtpc_data_iov(c, v, n, each, nrcpt, r, &e);
    smtpc_put(p, c, rc == 0);
    return rc;
}

static void
test_maildir(void **state)
{
    char dir[256], hop[300], path[600], cmd[900], *got, *want, *big;
    static const size_t steps[] = {0, 1, 2, 7};
    const char *name;
    struct smtpc_settings st;
    struct smtpc_reply r, each[3];
    struct smtpc_pool *p;
    struct err e;
    size_t i, len;
    FILE *fp;

    (void)state;
    scratch_dir(dir, sizeof(dir));
    memset(&st, 0, sizeof(st));
    snprintf(hop, sizeof(hop), "maildir:%s/", dir);
    st.next_hop = hop;
    assert_non_null(p = smtpc_pool_new(&st, &e));
    unit_int_eq("kind", smtpc_pool_kind(p), SMTPC_MAILDIR);
    for (i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        const char *m = messages[i].text;

        unit_int_eq(messages[i].name,
                    maildir_send(p, "QID1", m, strlen(m), 0, 1, each, &r), 0);
        unit_int_eq(messages[i].name, r.code, 250);
        unit_has(messages[i].name, r.text,
                 "2.0.0 Ok: QID1 delivered to maildir as ");
        name = strrchr(r.text, ' ') + 1;
        snprintf(path, sizeof(path), "%s/new/%s", dir, name);
        got = unit_read_file(path, NULL);
        want = lf_form(m, strlen(m), 0);
        unit_str_eq(messages[i].name, got, want);
        free(got);
        free(want);
    }
    big = long_message(&len);
    unit_int_eq("long", maildir_send(p, NULL, big, len, 0, 1, each, &r), 0);
    unit_has("long", r.text, "2.0.0 Ok: NOQUEUE delivered to maildir as ");
    name = strrchr(r.text, ' ') + 1;
    snprintf(path, sizeof(path), "%s/new/%s", dir, name);
    got = unit_read_file(path, NULL);
    want = lf_form(big, len, 0);
    if (got == NULL || strcmp(got, want) != 0)
        unit_fail("long", "the file differs from the message");
    free(got);
    free(want);
    free(big);
    snprintf(path, sizeof(path), "%s/new", dir);
    unit_int_eq("new/", dir_count(path), 5);
    snprintf(path, sizeof(path), "%s/tmp", dir);
    unit_int_eq("tmp/", dir_count(path), 0);
    snprintf(path, sizeof(path), "%s/cur", dir);
    unit_int_eq("cur/", dir_count(path), 0);

    /* a Maildir reader sees the five messages */
    snprintf(cmd, sizeof(cmd),
             UNIT_PYTHON
             " -c 'import mailbox,sys; md=mailbox.Maildir(sys.argv[1],"
             " create=False); print(\",\".join(sorted(m[\"Subject\"] "
             "for m in md)))' %s",
             dir);
    assert_non_null(fp = popen(cmd, "r"));
    memset(path, 0, sizeof(path));
    if (fgets(path, sizeof(path), fp) == NULL)
        path[0] = '\0';
    pclose(fp);
    unit_str_eq("reader", path, "bare,dot last,dots,empty body,long\n");

    /* in pieces (a CRLF split between two of them too), for three
     * recipients: one file, the octets of the message as one block, and
     * every recipient the one reply */
    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        const char *m = "Subject: pieces\r\n\r\n.a\r\nb\rc\n\r\nend";

        memset(each, 0, sizeof(each));
        unit_int_eq(
            "pieces",
            maildir_send(p, "QID2", m, strlen(m), steps[i], 3, each, &r), 0);
        unit_int_eq("pieces", r.code, 250);
        unit_str_eq("pieces: each", each[0].text, r.text);
        unit_str_eq("pieces: each", each[2].text, r.text);
        name = strrchr(r.text, ' ') + 1;
        snprintf(path, sizeof(path), "%s/new/%s", dir, name);
        got = unit_read_file(path, NULL);
        want = lf_form(m, strlen(m), 0);
        unit_str_eq("pieces", got, want);
        free(got);
        free(want);
        unlink(path);
    }

    /* new/ gone: 451, nothing left in tmp/ */
    snprintf(path, sizeof(path), "%s/new", dir);
    nftw(path, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    unit_int_eq("no new/", maildir_send(p, "Q", "x\n", 2, 0, 2, each, &r), -1);
    unit_int_eq("no new/: each", each[1].code, 451);
    unit_int_eq("no new/", r.code, 451);
    unit_has("no new/", r.text, "4.3.0 maildir delivery failed: link ");
    snprintf(path, sizeof(path), "%s/tmp", dir);
    unit_int_eq("no new/", dir_count(path), 0);
    smtpc_pool_free(p);

    /* an existing empty directory becomes a Maildir; a missing one or a
     * file is a configuration error */
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_non_null(p = smtpc_pool_new(&st, &e));
    snprintf(path, sizeof(path), "%s/cur", dir);
    unit_int_eq("created", dir_count(path), 0);
    smtpc_pool_free(p);
    snprintf(hop, sizeof(hop), "maildir:%s/missing", dir);
    unit_int_eq("missing", smtpc_pool_new(&st, &e) == NULL, 1);
    unit_int_eq("missing", e.code, ERR_CONFIG);
    unit_has("missing", e.text, "No such file or directory");
    unit_write(dir, "file", "x", path, sizeof(path));
    snprintf(hop, sizeof(hop), "maildir:%s", path);
    unit_int_eq("file", smtpc_pool_new(&st, &e) == NULL, 1);
    unit_has("file", e.text, "not a directory");
    scratch_done(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_settings, teardown),
        cmocka_unit_test_teardown(test_tls_settings, teardown),
        cmocka_unit_test_teardown(test_auth_file, teardown),
        cmocka_unit_test_teardown(test_sink_delivery, teardown),
        cmocka_unit_test_teardown(test_wire_octets, teardown),
        cmocka_unit_test_teardown(test_wire_pieces, teardown),
        cmocka_unit_test_teardown(test_xforward, teardown),
        cmocka_unit_test_teardown(test_rejects, teardown),
        cmocka_unit_test_teardown(test_unreachable, teardown),
        cmocka_unit_test_teardown(test_bad_reply, teardown),
        cmocka_unit_test_teardown(test_reuse, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
        cmocka_unit_test_teardown(test_tls_auth, teardown),
        cmocka_unit_test_teardown(test_lmtp, teardown),
        cmocka_unit_test_teardown(test_lmtp_each, teardown),
        cmocka_unit_test_teardown(test_data_refused, teardown),
        cmocka_unit_test_teardown(test_injection, teardown),
        cmocka_unit_test_teardown(test_maildir, teardown),
    };

    /* a TLS peer that goes away must not kill the test with SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
