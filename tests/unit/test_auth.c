/*
 * test_auth - password files, verification, passwd, SASL PLAIN, TLS
 *
 * Hashes are made in set-up: yescrypt and SHA-512-crypt by libcrypt
 * (crypt_gensalt_rn + crypt_r) and one SHA-512-crypt by "openssl passwd
 * -6", an implementation of its own, so verification is checked against
 * hashes relaychain did not make. The TLS cases use a self-signed P-256
 * certificate made with "openssl req" and handshake in memory (BIO pair)
 * between auth_tls_server_ctx() and auth_tls_client_ctx().
 */
#include "config.h"

#include <crypt.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "unit.h"

#include "net/auth.h"
#include "util/buf.h"

#define PW_Y "correct horse y"
#define PW_6 "battery staple 6"
#define PW_O "openssl made me"

static char tmp_dir[256];
static char hash_y[CRYPT_OUTPUT_SIZE], hash_6[CRYPT_OUTPUT_SIZE];
static char hash_o[CRYPT_OUTPUT_SIZE];
static char cert_path[512], key_path[512], other_key_path[512];
static char enc_key_path[512], junk_path[512];
static char open_key_path[512], fifo_key_path[512];

/* make_hash - a libcrypt hash of pass with a fresh salt for prefix. */
static int
make_hash(const char *prefix, const char *pass, char *out, size_t n)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *r;

    if (cd == NULL || crypt_gensalt_rn(prefix, 0, NULL, 0, setting,
                                       (int)sizeof(setting)) == NULL) {
        free(cd);
        return -1;
    }
    r = crypt_r(pass, setting, cd);
    if (r == NULL || r[0] == '*' || (size_t)snprintf(out, n, "%s", r) >= n) {
        free(cd);
        return -1;
    }
    free(cd);
    return 0;
}

/* run_out - the first line command prints, into out. */
static int
run_out(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    int ok;

    if (p == NULL)
        return -1;
    ok = fgets(out, (int)n, p) != NULL;
    if (pclose(p) != 0 || !ok)
        return -1;
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

static int
setup(void **state)
{
    char cmd[8192];

    (void)state;
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL ||
        make_hash("$y$", PW_Y, hash_y, sizeof(hash_y)) < 0 ||
        make_hash("$6$", PW_6, hash_6, sizeof(hash_6)) < 0 ||
        run_out("openssl passwd -6 '" PW_O "'", hash_o, sizeof(hash_o)) < 0)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmp_dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", tmp_dir);
    snprintf(other_key_path, sizeof(other_key_path), "%s/other.pem", tmp_dir);
    snprintf(enc_key_path, sizeof(enc_key_path), "%s/enc.pem", tmp_dir);
    snprintf(open_key_path, sizeof(open_key_path), "%s/open.pem", tmp_dir);
    snprintf(fifo_key_path, sizeof(fifo_key_path), "%s/fifo.pem", tmp_dir);
    unit_write(tmp_dir, "junk.pem", "not a certificate\n", junk_path,
               sizeof(junk_path));
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout %s -out %s -days 2 -subj /CN=localhost "
             "2>/dev/null && "
             "openssl genpkey -algorithm EC -pkeyopt "
             "ec_paramgen_curve:P-256 -out %s 2>/dev/null && "
             "openssl pkey -in %s -out %s -aes256 -passout pass:secret && "
             "cp %s %s && chmod 644 %s && mkfifo %s",
             key_path, cert_path, other_key_path, key_path, enc_key_path,
             key_path, open_key_path, open_key_path, fifo_key_path);
    if (system(cmd) != 0) {
        print_error("openssl could not make the test certificate\n");
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    return unit_rmtree(tmp_dir);
}

/* expand - text with {Y}, {6} and {O} replaced by the set-up hashes. */
static void
expand(const char *text, struct buf *out)
{
    struct err e;

    buf_reset(out);
    while (*text != '\0') {
        const char *h = NULL;

        if (strncmp(text, "{Y}", 3) == 0)
            h = hash_y;
        else if (strncmp(text, "{6}", 3) == 0)
            h = hash_6;
        else if (strncmp(text, "{O}", 3) == 0)
            h = hash_o;
        if (h != NULL) {
            assert_int_equal(buf_puts(out, h, &e), 0);
            text += 3;
        } else {
            assert_int_equal(buf_putc(out, *text++, &e), 0);
        }
    }
    if (out->data == NULL)
        assert_int_equal(buf_puts(out, "", &e), 0);
}

/* write_file - text to dir/name with mode; the path into out. */
static const char *
write_file(const char *name, const char *text, size_t len, mode_t mode,
           char *out, size_t n)
{
    FILE *fp;

    snprintf(out, n, "%s/%s", tmp_dir, name);
    assert_non_null(fp = fopen(out, "w"));
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(out, mode), 0);
    return out;
}

static char *
read_file(const char *path)
{
    char *text = NULL;
    size_t n = 0;
    FILE *fp = fopen(path, "r");

    assert_non_null(fp);
    assert_int_equal(getdelim(&text, &n, '\0', fp) >= 0 || feof(fp), 1);
    fclose(fp);
    if (text == NULL)
        text = calloc(1, 1);
    return text;
}

/* with_path - want with each "%s" replaced by path. */
static const char *
with_path(const char *want, const char *path, char *out, size_t n)
{
    const char *mark;
    size_t len = 0;

    while ((mark = strstr(want, "%s")) != NULL && len < n) {
        len += (size_t)snprintf(out + len, n - len, "%.*s%s",
                                (int)(mark - want), want, path);
        want = mark + 2;
    }
    if (len < n)
        snprintf(out + len, n - len, "%s", want);
    return out;
}

static void
test_load_errors(void **state)
{
    static const struct {
        const char *name;
        const char *text; /* {Y} {6} {O}: hashes from set-up */
        mode_t mode;
        const char *want; /* %s: the file's path; NULL: loads */
    } cases[] = {
        {"ok", "# users\n\nalice:{Y}\r\n  bob:{6}  \ncarol:{O}", 0640, NULL},
        {"ok-empty", "# nobody yet\n", 0600, NULL},
        {"no-colon", "# c\nalice {Y}\n", 0640,
         "%s:2: no ':' between user and hash"},
        {"empty-user", "# c\n\n:{Y}\n", 0640, "%s:3: empty user name"},
        {"space-user", "al ice:{Y}\n", 0640,
         "%s:1: user name has white space or control characters"},
        {"empty-hash", "alice:{Y}\nbob:\n", 0640,
         "%s:2: empty hash for user 'bob'"},
        {"extra-field", "alice:{Y}:1000\n", 0640,
         "%s:1: more than one ':' (the format is user:hash)"},
        {"unknown-method", "alice:{Y}\nbob:$x$abc$def\n", 0640,
         "%s:2: user 'bob': crypt(3) cannot use this hash (unknown or "
         "disabled method, or a malformed salt)"},
        {"locked", "bob:!{6}\n", 0640,
         "%s:1: user 'bob': crypt(3) cannot use this hash (unknown or "
         "disabled method, or a malformed salt)"},
        {"salt-only", "bob:$6$saltsaltsalt\n", 0640,
         "%s:1: user 'bob': the hash is incomplete or damaged (a salt "
         "without the hashed password?)"},
        {"truncated", "bob:$6$saltsaltsalt$tooshort\n", 0640,
         "%s:1: user 'bob': the hash is incomplete or damaged (a salt "
         "without the hashed password?)"},
        /* the earliest line is reported, not the first name in order */
        {"first-bad-line", "zed:$x$1\nadam:$x$2\n", 0640,
         "%s:1: user 'zed': crypt(3) cannot use this hash (unknown or "
         "disabled method, or a malformed salt)"},
        {"duplicate", "alice:{Y}\nbob:{6}\nalice:{O}\nbob:{Y}\n", 0640,
         "%s:3: duplicate user 'alice' (first on line 1)"},
        {"world-readable", "alice:{Y}\n", 0644,
         "%s: mode 0644 lets all other users read it; password hashes "
         "must stay private: run chmod 640 %s"},
        {"world-writable", "alice:{Y}\n", 0622,
         "%s: mode 0622 lets other users write it; password hashes must "
         "stay private: run chmod 620 %s"},
        /* the group may share it: the daemon reads it through its group */
        {"group-readable", "alice:{Y}\n", 0640, NULL},
    };
    char path[512], want[1024];
    struct auth_table *t;
    struct buf text;
    struct err e;
    size_t i;

    (void)state;
    buf_init(&text, 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expand(cases[i].text, &text);
        write_file("passwd", text.data, text.len, cases[i].mode, path,
                   sizeof(path));
        err_clear(&e);
        t = auth_table_load(path, &e);
        if (cases[i].want == NULL) {
            if (t == NULL)
                unit_fail(cases[i].name, "got \"%s\", want it to load",
                          e.text);
            auth_table_free(t);
            continue;
        }
        if (t != NULL)
            unit_fail(cases[i].name, "loaded, want \"%s\"", cases[i].want);
        unit_str_eq(cases[i].name, e.text,
                    with_path(cases[i].want, path, want, sizeof(want)));
        unit_int_eq(cases[i].name, e.code, ERR_CONFIG);
    }
    buf_fini(&text);
}

static void
test_load_limits(void **state)
{
    char path[512], want[1024];
    size_t big = 1024 * 1024 + 1;
    char *text = malloc(big);
    struct err e;

    (void)state;
    assert_non_null(text);
    /* a long comment is still a line over the limit */
    memset(text, '#', 1025);
    text[1025] = '\n';
    write_file("long", text, 1026, 0640, path, sizeof(path));
    assert_null(auth_table_load(path, &e));
    snprintf(want, sizeof(want), "%s:1: line longer than 1024 octets", path);
    unit_str_eq("long-line", e.text, want);

    memset(text, '\n', big);
    write_file("big", text, big, 0640, path, sizeof(path));
    assert_null(auth_table_load(path, &e));
    snprintf(want, sizeof(want), "%s: larger than 1048576 octets", path);
    unit_str_eq("big", e.text, want);
    unit_int_eq("big", e.code, ERR_LIMIT);

    memcpy(text, "alice:x\0y\n", 10);
    write_file("nul", text, 10, 0640, path, sizeof(path));
    assert_null(auth_table_load(path, &e));
    snprintf(want, sizeof(want), "%s:1: NUL octet in the line", path);
    unit_str_eq("nul", e.text, want);

    snprintf(path, sizeof(path), "%s/missing", tmp_dir);
    assert_null(auth_table_load(path, &e));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory",
             path);
    unit_str_eq("missing", e.text, want);

    assert_null(auth_table_load(tmp_dir, &e));
    snprintf(want, sizeof(want), "%s: not a regular file", tmp_dir);
    unit_str_eq("directory", e.text, want);
    /* refused at once, not waited on for a writer */
    assert_null(auth_table_load(fifo_key_path, &e));
    snprintf(want, sizeof(want), "%s: not a regular file", fifo_key_path);
    unit_str_eq("fifo", e.text, want);
    free(text);
}

static void
test_verify(void **state)
{
    static const struct {
        const char *user, *pass;
        int want;
    } cases[] = {
        {"alice", PW_Y, 1}, /* yescrypt */
        {"alice", PW_Y "x", 0},
        {"alice", "correct horse", 0},
        {"alice", "", 0},
        {"alice", PW_6, 0},
        {"bob", PW_6, 1}, /* SHA-512-crypt by libcrypt */
        {"bob", "battery staple", 0},
        {"carol", PW_O, 1}, /* by openssl */
        {"carol", "openssl made m", 0},
        {"mallory", PW_Y, 0}, /* unknown, with the dummy's password */
        {"ali", PW_Y, 0},
        {"alice ", PW_Y, 0},
        {"Alice", PW_Y, 0},
        {"", PW_Y, 0},
    };
    struct auth_table *t;
    struct buf text;
    char path[512];
    struct err e;
    size_t i;

    (void)state;
    buf_init(&text, 0);
    expand("alice:{Y}\nbob:{6}\ncarol:{O}\n", &text);
    write_file("verify", text.data, text.len, 0640, path, sizeof(path));
    if ((t = auth_table_load(path, &e)) == NULL)
        fail_msg("load: %s", e.text);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[128];

        snprintf(name, sizeof(name), "%s/%s", cases[i].user, cases[i].pass);
        unit_int_eq(name, auth_verify(t, cases[i].user, cases[i].pass),
                    cases[i].want);
    }
    unit_int_eq("NULL user", auth_verify(t, NULL, PW_Y), 0);
    unit_int_eq("NULL table", auth_verify(NULL, "alice", PW_Y), 0);
    auth_table_free(t);

    /* a table with nobody in it refuses everything */
    write_file("empty", "# none\n", 7, 0640, path, sizeof(path));
    if ((t = auth_table_load(path, &e)) == NULL)
        fail_msg("load empty: %s", e.text);
    unit_int_eq("empty table", auth_verify(t, "alice", PW_Y), 0);
    auth_table_free(t);
    buf_fini(&text);
}

static double
seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------- rate */

struct rate_thread {
    struct auth_rate *r;
    int over;
};

static void *
rate_taker(void *arg)
{
    struct rate_thread *t = arg;
    int i;

    for (i = 0; i < 1000; i++)
        t->over += auth_rate_take(t->r, "198.51.100.1", 4000, 1000);
    return NULL;
}

/* auth_rate: per address (IPv6 per /64), decaying, bounded, locked. */
/* The name an address is counted under in a shared store: the same
 * entry as the node's own table (IPv4 whatever its form, IPv6 by /64). */
static void
test_rate_name(void **state)
{
    static const struct {
        const char *addr, *want;
    } cases[] = {
        {"192.0.2.7", "192.0.2.7"},
        {"::ffff:192.0.2.7", "192.0.2.7"},
        {"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
        {"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
        {"2001:db8:1:3::1", "2001:db8:1:3::/64"},
        {"unknown", "local"},
        {"", "local"},
    };
    char out[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        auth_rate_name(cases[i].addr, out, sizeof(out));
        unit_str_eq(cases[i].addr, out, cases[i].want);
    }
}

static void
test_rate(void **state)
{
    static const struct {
        const char *name, *fail, *ask;
        int want;
    } cases[] = {
        {"same address", "192.0.2.1", "192.0.2.1", 1},
        {"other address", "192.0.2.1", "192.0.2.2", 0},
        {"IPv4-mapped is IPv4", "192.0.2.1", "::ffff:192.0.2.1", 1},
        {"same IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", 1},
        {"other IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:3::1", 0},
        {"IPv6 is not IPv4", "::c000:201", "192.0.2.1", 0},
    };
    struct rate_thread th[4];
    pthread_t tid[4];
    struct auth_rate *r;
    struct err e;
    size_t i;
    int k;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(r = auth_rate_new(1024, &e));
        for (k = 0; k < 3; k++)
            unit_int_eq(cases[i].name,
                        auth_rate_take(r, cases[i].fail, 3, 1000), 0);
        unit_int_eq(cases[i].name, auth_rate_over(r, cases[i].ask, 3, 1000),
                    cases[i].want);
        unit_int_eq(cases[i].name, auth_rate_take(r, cases[i].ask, 3, 1000),
                    cases[i].want);
        auth_rate_free(r);
    }

    /* 3 a minute: one failure decays in 20 s */
    assert_non_null(r = auth_rate_new(1024, &e));
    for (k = 0; k < 3; k++)
        assert_int_equal(auth_rate_take(r, "192.0.2.1", 3, 0), 0);
    unit_int_eq("at the limit", auth_rate_over(r, "192.0.2.1", 3, 0), 1);
    unit_int_eq("20 s later", auth_rate_over(r, "192.0.2.1", 3, 20000), 0);
    unit_int_eq("one more then", auth_rate_take(r, "192.0.2.1", 3, 20000), 0);
    unit_int_eq("and no more", auth_rate_take(r, "192.0.2.1", 3, 20000), 1);
    unit_int_eq("a minute later", auth_rate_over(r, "192.0.2.1", 3, 80000), 0);
    /* a success is not a failure */
    for (k = 0; k < 10; k++) {
        assert_int_equal(auth_rate_take(r, "192.0.2.5", 3, 0), 0);
        auth_rate_refund(r, "192.0.2.5", 3, 0);
    }
    unit_int_eq("successes", auth_rate_over(r, "192.0.2.5", 3, 0), 0);
    unit_int_eq("no limit", auth_rate_take(r, "192.0.2.1", 0, 20000), 0);
    auth_rate_free(r);

    /* 8 slots: a flood of addresses failing once each evicts the entries
     * of lowest count, never the one at its limit */
    assert_non_null(r = auth_rate_new(8, &e));
    for (k = 0; k < 3; k++)
        assert_int_equal(auth_rate_take(r, "203.0.113.9", 3, 0), 0);
    for (k = 0; k < 5000; k++) {
        char a[64];

        snprintf(a, sizeof(a), "2001:db8:%x:%x::1", k >> 8, k & 0xff);
        (void)auth_rate_take(r, a, 3, 0);
    }
    unit_int_eq("kept over a flood", auth_rate_over(r, "203.0.113.9", 3, 0),
                1);
    auth_rate_free(r);

    /* four threads at once: every attempt counted once */
    assert_non_null(r = auth_rate_new(64, &e));
    for (k = 0; k < 4; k++) {
        th[k].r = r;
        th[k].over = 0;
        assert_int_equal(pthread_create(&tid[k], NULL, rate_taker, &th[k]), 0);
    }
    for (k = 0; k < 4; k++) {
        assert_int_equal(pthread_join(tid[k], NULL), 0);
        unit_int_eq("threads: none over", th[k].over, 0);
    }
    unit_int_eq("threads: 4000 counted",
                auth_rate_over(r, "198.51.100.1", 4000, 1000), 1);
    auth_rate_free(r);
    auth_rate_free(NULL);
}

/* An unknown user costs one hash, as a known one does: the fastest of a
 * few tries each, so a busy machine does not make it flaky. */
static void
test_verify_timing(void **state)
{
    double known = 1e9, unknown = 1e9, t0, d;
    struct auth_table *t;
    struct buf text;
    char path[512];
    struct err e;
    int i;

    (void)state;
    buf_init(&text, 0);
    expand("alice:{Y}\n", &text);
    write_file("timing", text.data, text.len, 0640, path, sizeof(path));
    if ((t = auth_table_load(path, &e)) == NULL)
        fail_msg("load: %s", e.text);
    for (i = 0; i < 5; i++) {
        t0 = seconds();
        assert_int_equal(auth_verify(t, "alice", "wrong"), 0);
        if ((d = seconds() - t0) < known)
            known = d;
        t0 = seconds();
        assert_int_equal(auth_verify(t, "nobody", "wrong"), 0);
        if ((d = seconds() - t0) < unknown)
            unknown = d;
    }
    if (unknown < known / 2 || unknown > known * 2)
        unit_fail("timing", "unknown user %.3f ms, known user %.3f ms",
                  unknown * 1e3, known * 1e3);
    auth_table_free(t);
    buf_fini(&text);
}

/* no_temp_left - fail when a "name.XXXXXX" file stayed in tmp_dir. */
static void
no_temp_left(const char *name)
{
    size_t n = strlen(name);
    struct dirent *d;
    DIR *dir;

    assert_non_null(dir = opendir(tmp_dir));
    while ((d = readdir(dir)) != NULL)
        if (strncmp(d->d_name, name, n) == 0 && d->d_name[n] == '.')
            unit_fail(name, "temporary file %s left behind", d->d_name);
    closedir(dir);
}

static mode_t
file_mode(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* user_line - user's line of text (copied into out), or "" */
static const char *
user_line(const char *text, const char *user, char *out, size_t n)
{
    size_t ulen = strlen(user);
    const char *p = text;

    out[0] = '\0';
    while (p != NULL && *p != '\0') {
        if (strncmp(p, user, ulen) == 0 && p[ulen] == ':') {
            snprintf(out, n, "%.*s", (int)strcspn(p, "\n"), p);
            break;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return out;
}

static void
test_passwd_set(void **state)
{
    char path[512], line[512], want[4096];
    struct auth_table *t;
    struct buf text;
    struct err e;
    char *got;

    (void)state;
    buf_init(&text, 0);

    /* a new file: mode 0640, one yescrypt line */
    snprintf(path, sizeof(path), "%s/new", tmp_dir);
    unlink(path);
    if (auth_passwd_set(path, "alice", "first", &e) < 0)
        fail_msg("new: %s", e.text);
    unit_int_eq("new: mode", file_mode(path), 0640);
    got = read_file(path);
    if (strncmp(got, "alice:$y$", 9) != 0 || strchr(got, '\n') == NULL ||
        strchr(got, '\n')[1] != '\0')
        unit_fail("new", "got \"%s\", want one line alice:$y$...", got);
    free(got);
    if ((t = auth_table_load(path, &e)) == NULL)
        fail_msg("new: load: %s", e.text);
    unit_int_eq("new: verify", auth_verify(t, "alice", "first"), 1);
    auth_table_free(t);
    no_temp_left("new");

    /* add to a file with comments, other users and no final newline;
     * a stricter mode (0600) is kept */
    expand("# relay users\n\nbob:{6}\n  # carol left\ncarol:{O}", &text);
    write_file("keep", text.data, text.len, 0600, path, sizeof(path));
    if (auth_passwd_set(path, "alice", "second", &e) < 0)
        fail_msg("add: %s", e.text);
    got = read_file(path);
    snprintf(want, sizeof(want), "%s\n%s\n", text.data,
             user_line(got, "alice", line, sizeof(line)));
    unit_str_eq("add: other lines kept", got, want);
    unit_int_eq("add: mode", file_mode(path), 0600);
    free(got);

    /* replace bob: his line changes in place, nothing else does */
    if (auth_passwd_set(path, "bob", "new bob", &e) < 0)
        fail_msg("replace: %s", e.text);
    got = read_file(path);
    user_line(got, "bob", line, sizeof(line));
    expand("# relay users\n\n", &text);
    snprintf(want, sizeof(want), "%s%s\n  # carol left\ncarol:%s\n", text.data,
             line, hash_o);
    if (strncmp(got, want, strlen(want)) != 0 ||
        strncmp(line, "bob:$y$", 7) != 0)
        unit_fail("replace", "got \"%s\", want it to start \"%s\"", got, want);
    free(got);
    if ((t = auth_table_load(path, &e)) == NULL)
        fail_msg("replace: load: %s", e.text);
    unit_int_eq("replace: new password", auth_verify(t, "bob", "new bob"), 1);
    unit_int_eq("replace: old password", auth_verify(t, "bob", PW_6), 0);
    unit_int_eq("replace: alice", auth_verify(t, "alice", "second"), 1);
    unit_int_eq("replace: carol", auth_verify(t, "carol", PW_O), 1);
    auth_table_free(t);
    no_temp_left("keep");

    /* a world-readable file is fixed; duplicates of the user collapse */
    expand("alice:{Y}\nbob:{6}\nalice:{O}\n", &text);
    write_file("fix", text.data, text.len, 0644, path, sizeof(path));
    if (auth_passwd_set(path, "alice", "third", &e) < 0)
        fail_msg("fix: %s", e.text);
    unit_int_eq("fix: mode", file_mode(path), 0640);
    got = read_file(path);
    snprintf(want, sizeof(want), "%s\nbob:%s\n",
             user_line(got, "alice", line, sizeof(line)), hash_6);
    unit_str_eq("fix: one alice", got, want);
    free(got);
    buf_fini(&text);
}

static void
test_passwd_set_errors(void **state)
{
    static const struct {
        const char *name, *user, *pass, *want;
    } cases[] = {
        {"colon", "a:b", "pw", "'a:b': user name has a ':'"},
        {"empty-user", "", "pw", "'': empty user name"},
        {"comment", "#x", "pw", "'#x': user name starts with '#'"},
        {"space", "a b", "pw",
         "'a b': user name has white space or control characters"},
        {"newline", "a\nb", "pw",
         "'a\nb': user name has white space or control characters"},
        {"empty-pass", "alice", "", "empty password"},
    };
    char path[512], link[512], want[1024];
    struct err e;
    size_t i;

    (void)state;
    write_file("errs", "# x\n", 4, 0640, path, sizeof(path));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_clear(&e);
        unit_int_eq(cases[i].name,
                    auth_passwd_set(path, cases[i].user, cases[i].pass, &e),
                    -1);
        unit_str_eq(cases[i].name, e.text, cases[i].want);
    }
    {
        char *got = read_file(path);

        unit_str_eq("errors leave the file", got, "# x\n");
        free(got);
    }
    snprintf(link, sizeof(link), "%s/errs-link", tmp_dir);
    assert_int_equal(symlink(path, link), 0);
    unit_int_eq("symlink", auth_passwd_set(link, "alice", "pw", &e), -1);
    snprintf(want, sizeof(want),
             "%s: is a symbolic link; name the file it points to", link);
    unit_str_eq("symlink", e.text, want);
    snprintf(link, sizeof(link), "%s/no/such/dir/passwd", tmp_dir);
    unit_int_eq("no dir", auth_passwd_set(link, "alice", "pw", &e), -1);
    unit_has("no dir", e.text, "cannot open the directory");
    no_temp_left("errs");
}

static void
test_b64(void **state)
{
    static const struct {
        const char *in;
        size_t n; /* output room */
        long want;
        const char *out;
    } dec[] = {
        {"", 8, 0, ""},
        {"QQ==", 8, 1, "A"},
        {"QUI=", 8, 2, "AB"},
        {"QUJD", 8, 3, "ABC"},
        {"QUJDRA==", 8, 4, "ABCD"},
        {"QUJD", 3, 3, "ABC"},
        {"QUJD", 2, -1, NULL},
        {"QQ==", 1, 1, "A"},
        {"QQ=A", 8, -1, NULL},
        {"QQ", 8, -1, NULL},
        {"Q===", 8, -1, NULL},
        {"====", 8, -1, NULL},
        {"=QUJ", 8, -1, NULL},
        {"QUJD====", 8, -1, NULL},
        {"QR==", 8, -1, NULL}, /* non-zero bits under the padding */
        {"QUJ=", 8, -1, NULL},
        {" QUJD", 8, -1, NULL},
        {"QUJD\n", 8, -1, NULL},
        {"QU JD", 8, -1, NULL},
        {"QU-_", 8, -1, NULL}, /* base64url is not base64 */
        {"QUJD!A==", 8, -1, NULL},
    };
    static const struct {
        const char *in;
        size_t n;
        long want;
        const char *out;
    } enc[] = {
        {"", 1, 0, ""},        {"A", 5, 4, "QQ=="},
        {"A", 4, -1, NULL},    {"AB", 8, 4, "QUI="},
        {"ABC", 8, 4, "QUJD"}, {"ABCD", 9, 8, "QUJDRA=="},
        {"ABCD", 8, -1, NULL},
    };
    unsigned char bytes[256], back[256];
    char out[512];
    size_t i;
    long n;

    (void)state;
    for (i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
        unsigned char got[16];

        memset(got, 0, sizeof(got));
        n = auth_b64_decode(dec[i].in, strlen(dec[i].in), got, dec[i].n);
        unit_int_eq(dec[i].in, n, dec[i].want);
        if (n >= 0)
            unit_str_eq(dec[i].in, (char *)got, dec[i].out);
    }
    unit_int_eq("NUL inside", auth_b64_decode("QU\0D", 4, back, 8), -1);
    for (i = 0; i < sizeof(enc) / sizeof(enc[0]); i++) {
        n = auth_b64_encode((const unsigned char *)enc[i].in,
                            strlen(enc[i].in), out, enc[i].n);
        unit_int_eq(enc[i].in, n, enc[i].want);
        if (n >= 0)
            unit_str_eq(enc[i].in, out, enc[i].out);
    }
    for (i = 0; i < sizeof(bytes); i++)
        bytes[i] = (unsigned char)i;
    for (i = 0; i <= sizeof(bytes); i++) {
        n = auth_b64_encode(bytes, i, out, sizeof(out));
        assert_true(n >= 0);
        unit_int_eq("round trip",
                    auth_b64_decode(out, (size_t)n, back, sizeof(back)),
                    (long)i);
        if (memcmp(back, bytes, i) != 0)
            unit_fail("round trip", "%zu octets differ", i);
    }
}

static void
test_sasl_plain(void **state)
{
    static const struct {
        const char *name;
        const char *raw; /* encoded here; NULL: b64 as given */
        size_t rawlen;
        const char *b64;
        size_t n;
        int want;
        const char *user, *pass;
    } cases[] = {
        /* RFC 4616 section 4's example */
        {"rfc4616", NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 64, 0, "tim",
         "tanstaaftanstaaf"},
        {"same-authzid", "tim\0tim\0pw", 10, NULL, 64, 0, "tim", "pw"},
        {"other-authzid", "admin\0tim\0pw", 12, NULL, 64, -1, NULL, NULL},
        {"authzid-prefix", "ti\0tim\0pw", 9, NULL, 64, -1, NULL, NULL},
        {"one-nul", "\0timpw", 6, NULL, 64, -1, NULL, NULL},
        {"no-nul", "timpw", 5, NULL, 64, -1, NULL, NULL},
        {"empty-user", "\0\0pw", 4, NULL, 64, -1, NULL, NULL},
        {"empty-pass", "\0tim\0", 5, NULL, 64, -1, NULL, NULL},
        {"third-nul", "\0tim\0pw\0x", 9, NULL, 64, -1, NULL, NULL},
        {"control-in-user", "\0ti\r\nm\0pw", 9, NULL, 64, -1, NULL, NULL},
        {"pass-with-space", "\0tim\0a b:c", 10, NULL, 64, 0, "tim", "a b:c"},
        {"utf8", "\0j\xc3\xbcrgen\0p\xc3\xa4ss", 14, NULL, 64, 0,
         "j\xc3\xbcrgen", "p\xc3\xa4ss"},
        {"fits", "\0tim\0abc", 8, NULL, 4, 0, "tim", "abc"},
        {"user-too-long", "\0timo\0abc", 9, NULL, 4, -1, NULL, NULL},
        {"pass-too-long", "\0tim\0abcd", 9, NULL, 4, -1, NULL, NULL},
        {"empty", NULL, 0, "", 64, -1, NULL, NULL},
        {"bad-b64", NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm!", 64, -1, NULL,
         NULL},
        {"bad-padding", NULL, 0, "AHRpbQB0YW5zdGFhZnRhbnN0YWE", 64, -1, NULL,
         NULL},
        {"star", NULL, 0, "*", 64, -1, NULL, NULL},
    };
    char b64[8192], user[2048], pass[2048], raw[2048];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *in = cases[i].b64;
        int rc;

        if (cases[i].raw != NULL) {
            assert_true(auth_b64_encode((const unsigned char *)cases[i].raw,
                                        cases[i].rawlen, b64,
                                        sizeof(b64)) >= 0);
            in = b64;
        }
        user[0] = pass[0] = '\0';
        rc = auth_sasl_plain_decode(in, user, pass, cases[i].n);
        unit_int_eq(cases[i].name, rc, cases[i].want);
        if (rc == 0) {
            unit_str_eq(cases[i].name, user, cases[i].user);
            unit_str_eq(cases[i].name, pass, cases[i].pass);
        }
    }

    /* the limits: a 255-octet user name is taken, 256 is not */
    raw[0] = '\0';
    memset(raw + 1, 'u', AUTH_USER_MAX);
    raw[AUTH_USER_MAX + 1] = '\0';
    memcpy(raw + AUTH_USER_MAX + 2, "pw", 2);
    assert_true(auth_b64_encode((unsigned char *)raw, AUTH_USER_MAX + 4, b64,
                                sizeof(b64)) > 0);
    unit_int_eq("255-user", auth_sasl_plain_decode(b64, user, pass, 2048), 0);
    unit_int_eq("255-user", strlen(user), AUTH_USER_MAX);
    memset(raw + 1, 'u', AUTH_USER_MAX + 1);
    raw[AUTH_USER_MAX + 2] = '\0';
    memcpy(raw + AUTH_USER_MAX + 3, "pw", 2);
    assert_true(auth_b64_encode((unsigned char *)raw, AUTH_USER_MAX + 5, b64,
                                sizeof(b64)) > 0);
    unit_int_eq("256-user", auth_sasl_plain_decode(b64, user, pass, 2048), -1);
    /* longer than any valid response decodes to */
    memset(b64, 'A', 4000);
    b64[4000] = '\0';
    unit_int_eq("huge", auth_sasl_plain_decode(b64, user, pass, 2048), -1);
}

/* handshake - an in-memory TLS handshake; the protocol version or -1. */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *bs = NULL, *bc = NULL;
    int done_s = 0, done_c = 0, i, version = -1;

    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (i = 0; i < 50 && !(done_s && done_c); i++) {
        int r;

        if (!done_c) {
            r = SSL_do_handshake(c);
            if (r == 1)
                done_c = 1;
            else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
                break;
        }
        if (!done_s) {
            r = SSL_do_handshake(s);
            if (r == 1)
                done_s = 1;
            else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
                break;
        }
    }
    if (done_s && done_c)
        version = SSL_version(c);
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return version;
}

static void
test_tls(void **state)
{
    static const struct {
        const char *name;
        const char *cert, *key;
        const char *want[3];
    } bad[] = {
        {"mismatched-key",
         cert_path,
         other_key_path,
         {other_key_path, "does not match the certificate in", "mismatch"}},
        {"missing-cert",
         "/nonexistent/cert.pem",
         key_path,
         {"/nonexistent/cert.pem: cannot load the certificate chain: error:",
          NULL, NULL}},
        {"junk-cert",
         junk_path,
         key_path,
         {"cannot load the certificate chain", "no start line", NULL}},
        {"missing-key",
         cert_path,
         "/nonexistent/key.pem",
         {"/nonexistent/key.pem: cannot open the private key", NULL, NULL}},
        /* the rule of the password file: no access for other users */
        {"world-readable-key",
         cert_path,
         open_key_path,
         {open_key_path,
          ": mode 0644 lets all other users read it; a TLS private key must "
          "stay private: run chmod 640",
          NULL}},
        /* refused at once: a FIFO would hang the reader */
        {"fifo-key",
         cert_path,
         fifo_key_path,
         {fifo_key_path, "the private key is not a regular file", NULL}},
        {"encrypted-key",
         cert_path,
         enc_key_path,
         {enc_key_path, "it is encrypted", NULL}},
        {"key-as-cert",
         key_path,
         key_path,
         {"cannot load the certificate chain", NULL, NULL}},
    };
    SSL_CTX *sctx, *cctx;
    struct err e;
    size_t i, j;

    (void)state;
    if ((sctx = auth_tls_server_ctx(cert_path, key_path, &e)) == NULL)
        fail_msg("server ctx: %s", e.text);
    if ((cctx = auth_tls_client_ctx(&e)) == NULL)
        fail_msg("client ctx: %s", e.text);
    unit_int_eq("server min", SSL_CTX_get_min_proto_version(sctx),
                TLS1_2_VERSION);
    unit_int_eq("client min", SSL_CTX_get_min_proto_version(cctx),
                TLS1_2_VERSION);
    unit_int_eq("no renegotiation",
                (SSL_CTX_get_options(sctx) & SSL_OP_NO_RENEGOTIATION) != 0, 1);
    unit_int_eq("client verify", SSL_CTX_get_verify_mode(cctx),
                SSL_VERIFY_NONE);
    /* the self-signed certificate is accepted by the opportunistic client */
    if (handshake(sctx, cctx) < TLS1_2_VERSION)
        unit_fail("handshake", "no TLS 1.2+ session");
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err_clear(&e);
        sctx = auth_tls_server_ctx(bad[i].cert, bad[i].key, &e);
        if (sctx != NULL) {
            SSL_CTX_free(sctx);
            unit_fail(bad[i].name, "accepted");
        }
        for (j = 0; j < 3 && bad[i].want[j] != NULL; j++)
            unit_has(bad[i].name, e.text, bad[i].want[j]);
        unit_int_eq(bad[i].name, ERR_peek_error(), 0);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_limits),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_verify_timing),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_rate_name),
        cmocka_unit_test(test_passwd_set),
        cmocka_unit_test(test_passwd_set_errors),
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_sasl_plain),
        cmocka_unit_test(test_tls),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
