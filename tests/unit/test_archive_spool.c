/*
 * test_archive_spool - the archive spool (archive_spool.c)
 *
 * The store behind the spool is a real one, small: each put writes the
 * record to a file of its own in a directory (temporary file, rename),
 * keeps the order of the puts, and can be switched off (put fails with
 * ERR_TEMP, as a store whose server is down). Cases:
 *
 *   crash    a child process adds records with the store down and is
 *            killed (SIGKILL) after the last one was acknowledged; a
 *            write that never finished is left beside them. A new spool
 *            on the directory removes the unfinished write and ships
 *            every acknowledged record once, in name order.
 *   outage   with the store down the backlog grows (status counts it, the
 *            oldest age is given) and the thread keeps trying; the store
 *            comes back and the backlog drains, in order, none twice.
 *   damaged  a file that is not whole is set aside as NAME.bad, never
 *            shipped, and does not stop the others.
 *   names    names the spool cannot hold are refused (ERR_INPUT).
 *   group    6 threads add 40 records each at once (group commit: one
 *            thread commits what the others queued): every add returns
 *            0 with its record on disk, none left as .tmp; the store
 *            back, all 240 are shipped once, in name order.
 *   journal  behind a store that cannot read back (as the journal store)
 *            the spool opens each real sealed record and hands put its
 *            envelope and message; checkpoints are not handed on
 *            (counted); the last record shipped stays for
 *            arc_spool_last, which names the newest record of a writer,
 *            waiting or shipped.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filters/archive/archive_int.h"
#include "filters/archive/archive_spool.h"
#include "tests/unit/unit.h"
#include "util/log.h"

#define FS_MAX 256

/* ------------------------------------------------- a tiny real store */

struct fs_store {
    char dir[256];
    pthread_mutex_t lock;
    int down;
    unsigned long fails;
    char *order[FS_MAX]; /* names in the order put succeeded */
    size_t n;
};

static void
fs_file(const struct fs_store *s, const char *name, char *out, size_t n)
{
    size_t i, l;

    l = (size_t)snprintf(out, n, "%s/", s->dir);
    for (i = 0; name[i] && l + 1 < n; i++)
        out[l++] = name[i] == '/' ? '_' : name[i];
    out[l] = '\0';
}

static int
fs_put(void *v, const struct arc_item *it, struct err *e)
{
    struct fs_store *s = v;
    char path[512], tmp[520];
    int fd, down;

    pthread_mutex_lock(&s->lock);
    down = s->down;
    if (down)
        s->fails++;
    pthread_mutex_unlock(&s->lock);
    if (down)
        return err_set(e, ERR_TEMP, "fs store: down");
    fs_file(s, it->name, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return err_sys(e, ERR_IO, "%s", tmp);
    if (write(fd, it->sealed, it->sealed_len) != (ssize_t)it->sealed_len ||
        fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0)
        return err_sys(e, ERR_IO, "%s", path);
    pthread_mutex_lock(&s->lock);
    if (s->n < FS_MAX)
        s->order[s->n++] = strdup(it->name);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* fs_get - the store reads back, so the spool hands it octets only. */
static int
fs_get(void *v, const char *name, struct buf *out, struct err *e)
{
    (void)v;
    (void)name;
    (void)out;
    return err_set(e, ERR_INPUT, "fs store: get is not used here");
}

static const struct arc_store_ops fs_ops = {
    .scheme = "fs",
    .put = fs_put,
    .get = fs_get,
};

static void
fs_init(struct fs_store *s, const char *dir, int down)
{
    size_t len = strlen(dir);

    assert_true(len < sizeof(s->dir));
    memset(s, 0, sizeof(*s));
    memcpy(s->dir, dir, len + 1);
    pthread_mutex_init(&s->lock, NULL);
    s->down = down;
    mkdir(dir, 0700);
}

static void
fs_set_down(struct fs_store *s, int down)
{
    pthread_mutex_lock(&s->lock);
    s->down = down;
    pthread_mutex_unlock(&s->lock);
}

static void
fs_fini(struct fs_store *s)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        free(s->order[i]);
    pthread_mutex_destroy(&s->lock);
}

/* fs_has - the octets the store holds for name equal want. */
static int
fs_has(const struct fs_store *s, const char *name, const char *want)
{
    char path[512], got[256];
    ssize_t r;
    int fd;

    fs_file(s, name, path, sizeof(path));
    if ((fd = open(path, O_RDONLY)) < 0)
        return 0;
    r = read(fd, got, sizeof(got));
    close(fd);
    return r == (ssize_t)strlen(want) && memcmp(got, want, (size_t)r) == 0;
}

/* ------------------------------------------------------------ helpers */

static char tdir[256];

static void
rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char p[512];
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int
setup(void **state)
{
    (void)state;
    snprintf(tdir, sizeof(tdir), "%s/rc-spool.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(tdir) == NULL)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    rm_rf(tdir);
    return 0;
}

static void
rec_name(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "node%u/%016x", i % 2, i);
}

static void
rec_data(unsigned i, char *out, size_t n)
{
    snprintf(out, n, "sealed record %u\n", i);
}

static int
add_rec(struct arc_spool *sp, unsigned i, struct err *e)
{
    char name[64], data[64];
    struct arc_item it;

    rec_name(i, name, sizeof(name));
    rec_data(i, data, sizeof(data));
    memset(&it, 0, sizeof(it));
    it.name = name;
    it.sealed = (const unsigned char *)data;
    it.sealed_len = strlen(data);
    return arc_spool_add(sp, &it, e);
}

/* wait_drained - up to ms for the spool to be empty, the store to hold
 * want records and the spool to count them shipped. */
static int
wait_drained(struct arc_spool *sp, struct fs_store *s, size_t want, long ms)
{
    long waited;

    for (waited = 0; waited < ms; waited += 20) {
        size_t count, n;
        long long oldest;
        struct err e;

        assert_int_equal(arc_spool_status(sp, &count, &oldest, &e), 0);
        pthread_mutex_lock(&s->lock);
        n = s->n;
        pthread_mutex_unlock(&s->lock);
        if (count == 0 && n >= want && arc_spool_shipped(sp) >= want)
            return 1;
        usleep(20000);
    }
    return 0;
}

/* check_order - the store got exactly the names of recs (each once), in
 * name order. */
static void
check_shipped(const char *cname, struct fs_store *s, const unsigned *recs,
              size_t nrecs)
{
    size_t i, j;

    if (s->n != nrecs)
        unit_fail(cname, "got %zu puts, want %zu", s->n, nrecs);
    for (i = 1; i < s->n; i++)
        if (strcmp(s->order[i - 1], s->order[i]) >= 0)
            unit_fail(cname, "put %s after %s: not in name order (or twice)",
                      s->order[i], s->order[i - 1]);
    for (j = 0; j < nrecs; j++) {
        char name[64], data[64];
        int seen = 0;

        rec_name(recs[j], name, sizeof(name));
        rec_data(recs[j], data, sizeof(data));
        for (i = 0; i < s->n; i++)
            seen += strcmp(s->order[i], name) == 0;
        if (seen != 1)
            unit_fail(cname, "record %s put %d times, want 1", name, seen);
        if (!fs_has(s, name, data))
            unit_fail(cname, "the store does not hold %s as written", name);
    }
}

/* -------------------------------------------------------------- cases */

static void
test_crash(void **state)
{
    char spool[300], store[300], tmp[400];
    unsigned acked[64];
    size_t nacked = 0;
    int pfd[2], status;
    pid_t pid;
    struct fs_store s;
    struct arc_spool *sp;
    struct err e;
    unsigned v;
    FILE *fp;

    (void)state;
    snprintf(spool, sizeof(spool), "%s/crash-spool", tdir);
    snprintf(store, sizeof(store), "%s/crash-store", tdir);
    snprintf(tmp, sizeof(tmp), "%s/.tmp.1.1", spool);
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct fs_store down;
        unsigned i;

        close(pfd[0]);
        fs_init(&down, store, 1);
        if ((sp = arc_spool_open(spool, &fs_ops, &down, &e)) == NULL)
            _exit(3);
        /* In an order other than the names'. */
        for (i = 0; i < 40; i++) {
            unsigned k = (i * 17) % 40;

            if (add_rec(sp, k, &e) == 0 &&
                write(pfd[1], &k, sizeof(k)) != (ssize_t)sizeof(k))
                _exit(4);
        }
        /* A write that never finished. */
        close(open(tmp, O_WRONLY | O_CREAT, 0600));
        raise(SIGKILL);
        _exit(5);
    }
    close(pfd[1]);
    fp = fdopen(pfd[0], "r");
    while (fread(&v, sizeof(v), 1, fp) == 1 && nacked < 64)
        acked[nacked++] = v;
    fclose(fp);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        unit_fail("crash", "child did not die by SIGKILL (status %d)", status);
    if (nacked != 40)
        unit_fail("crash", "got %zu acknowledged adds, want 40", nacked);

    if (access(tmp, F_OK) != 0)
        unit_fail("crash", "the child left no unfinished write %s", tmp);
    fs_init(&s, store, 0);
    sp = arc_spool_open(spool, &fs_ops, &s, &e);
    if (sp == NULL)
        unit_fail("crash", "arc_spool_open: %s", e.text);
    arc_spool_backoff(sp, 10, 50);
    if (!wait_drained(sp, &s, nacked, 10000))
        unit_fail("crash", "backlog not drained in 10 s");
    arc_spool_close(sp);
    if (access(tmp, F_OK) == 0)
        unit_fail("crash", "the unfinished write %s is still there", tmp);
    check_shipped("crash", &s, acked, nacked);
    fs_fini(&s);
}

static void
test_outage(void **state)
{
    char spool[300], store[300];
    unsigned recs[30];
    struct fs_store s;
    struct arc_spool *sp;
    struct err e;
    size_t count;
    long long oldest;
    unsigned i;
    long waited;

    (void)state;
    snprintf(spool, sizeof(spool), "%s/outage-spool", tdir);
    snprintf(store, sizeof(store), "%s/outage-store", tdir);
    fs_init(&s, store, 1);
    sp = arc_spool_open(spool, &fs_ops, &s, &e);
    if (sp == NULL)
        unit_fail("outage", "arc_spool_open: %s", e.text);
    arc_spool_backoff(sp, 20, 200);
    for (i = 0; i < 30; i++) {
        recs[i] = 29 - i;
        if (add_rec(sp, recs[i], &e) != 0)
            unit_fail("outage", "add: %s", e.text);
    }
    /* The thread keeps trying while the store is down: several failures,
     * nothing shipped, the whole backlog counted. */
    for (waited = 0; waited < 5000; waited += 20) {
        unsigned long f;

        pthread_mutex_lock(&s.lock);
        f = s.fails;
        pthread_mutex_unlock(&s.lock);
        if (f >= 3)
            break;
        usleep(20000);
    }
    if (s.fails < 3)
        unit_fail("outage", "got %lu tries in 5 s, want 3 or more", s.fails);
    assert_int_equal(arc_spool_status(sp, &count, &oldest, &e), 0);
    if (count != 30 || s.n != 0)
        unit_fail("outage", "got backlog %zu and %zu shipped, want 30 and 0",
                  count, s.n);
    if (oldest < 0 || oldest > 60)
        unit_fail("outage", "oldest age %lld s", oldest);
    assert_int_equal(arc_spool_scan(spool, &count, &oldest, &e), 0);
    if (count != 30)
        unit_fail("outage", "scan got %zu, want 30", count);
    fs_set_down(&s, 0);
    if (!wait_drained(sp, &s, 30, 10000))
        unit_fail("outage", "backlog not drained in 10 s after the store "
                            "came back");
    if (arc_spool_shipped(sp) != 30)
        unit_fail("outage", "shipped %lu, want 30", arc_spool_shipped(sp));
    arc_spool_close(sp);
    check_shipped("outage", &s, recs, 30);
    fs_fini(&s);
}

static void
test_damaged(void **state)
{
    char spool[300], store[300], bad[400], badkeep[420];
    unsigned recs[3] = {1, 2, 3};
    struct fs_store s;
    struct arc_spool *sp;
    struct err e;
    int fd;

    (void)state;
    snprintf(spool, sizeof(spool), "%s/damaged-spool", tdir);
    snprintf(store, sizeof(store), "%s/damaged-store", tdir);
    mkdir(spool, 0700);
    /* A record file cut short: the hex of "node0/0" then half a record. */
    snprintf(bad, sizeof(bad), "%s/6e6f6465302f30", spool);
    fd = open(bad, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "RCARCSPOOL1\nnode0/0\n100\nshort", 29), 29);
    close(fd);
    fs_init(&s, store, 1);
    sp = arc_spool_open(spool, &fs_ops, &s, &e);
    assert_non_null(sp);
    arc_spool_backoff(sp, 10, 50);
    assert_int_equal(add_rec(sp, 1, &e), 0);
    assert_int_equal(add_rec(sp, 2, &e), 0);
    assert_int_equal(add_rec(sp, 3, &e), 0);
    fs_set_down(&s, 0);
    if (!wait_drained(sp, &s, 3, 10000))
        unit_fail("damaged", "the good records were not shipped");
    arc_spool_close(sp);
    check_shipped("damaged", &s, recs, 3);
    snprintf(badkeep, sizeof(badkeep), "%s.bad", bad);
    if (access(badkeep, F_OK) != 0)
        unit_fail("damaged", "%s was not kept aside", badkeep);
    fs_fini(&s);
}

static void
test_names(void **state)
{
    static const struct {
        const char *name;
        const char *rec;
        int ok;
    } cases[] = {
        {"plain", "w/0000000000000001", 1},
        {"empty", "", 0},
        {"control", "w/00\n01", 0},
        {"long",
         "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"
         "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"
         "/0000000000000001",
         0},
    };
    char spool[300], store[300];
    struct fs_store s;
    struct arc_spool *sp;
    struct err e;
    size_t i;

    (void)state;
    snprintf(spool, sizeof(spool), "%s/names-spool", tdir);
    snprintf(store, sizeof(store), "%s/names-store", tdir);
    fs_init(&s, store, 1);
    sp = arc_spool_open(spool, &fs_ops, &s, &e);
    assert_non_null(sp);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct arc_item it;
        int rc;

        memset(&it, 0, sizeof(it));
        it.name = cases[i].rec;
        it.sealed = (const unsigned char *)"x";
        it.sealed_len = 1;
        err_clear(&e);
        rc = arc_spool_add(sp, &it, &e);
        if ((rc == 0) != cases[i].ok)
            unit_fail(cases[i].name, "got %d (%s), want %s", rc, e.text,
                      cases[i].ok ? "0" : "-1");
        if (!cases[i].ok && e.code != ERR_INPUT)
            unit_fail(cases[i].name, "got code %d, want ERR_INPUT", e.code);
    }
    arc_spool_close(sp);
    fs_fini(&s);
}

struct group_arg {
    struct arc_spool *sp;
    unsigned first;
    int failed;
};

static void *
group_thread(void *v)
{
    struct group_arg *g = v;
    struct err e;
    unsigned i;

    for (i = 0; i < 40; i++)
        if (add_rec(g->sp, g->first + i, &e) != 0)
            g->failed = 1;
    return NULL;
}

static void
test_group(void **state)
{
    char spool[300], store[300];
    unsigned recs[240];
    struct group_arg g[6];
    pthread_t th[6];
    struct fs_store s;
    struct arc_spool *sp;
    struct dirent *de;
    struct err e;
    size_t count;
    long long oldest;
    unsigned i;
    DIR *d;

    (void)state;
    snprintf(spool, sizeof(spool), "%s/group-spool", tdir);
    snprintf(store, sizeof(store), "%s/group-store", tdir);
    fs_init(&s, store, 1);
    sp = arc_spool_open(spool, &fs_ops, &s, &e);
    assert_non_null(sp);
    arc_spool_backoff(sp, 20, 200);
    for (i = 0; i < 6; i++) {
        g[i].sp = sp;
        g[i].first = 1000 + 40 * i;
        g[i].failed = 0;
        assert_int_equal(pthread_create(&th[i], NULL, group_thread, &g[i]), 0);
    }
    for (i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        if (g[i].failed)
            unit_fail("group", "an add of thread %u failed", i);
    }
    for (i = 0; i < 240; i++)
        recs[i] = 1000 + i;
    assert_int_equal(arc_spool_status(sp, &count, &oldest, &e), 0);
    if (count != 240)
        unit_fail("group", "backlog %zu, want 240", count);
    if ((d = opendir(spool)) == NULL)
        unit_fail("group", "opendir %s", spool);
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, ".tmp.", 5) == 0)
            unit_fail("group", "%s left after every add returned", de->d_name);
    closedir(d);
    fs_set_down(&s, 0);
    if (!wait_drained(sp, &s, 240, 20000))
        unit_fail("group", "backlog not drained in 20 s");
    arc_spool_close(sp);
    check_shipped("group", &s, recs, 240);
    fs_fini(&s);
}

/* A store like the journal one: no get, shows each message. */
struct jr_seen {
    unsigned puts;
    int bad; /* a put without meta or with the wrong message */
    char last_rcpt[64];
};

static int
jr_put(void *v, const struct arc_item *it, struct err *e)
{
    struct jr_seen *j = v;

    (void)e;
    if (it->meta == NULL || it->data == NULL || it->meta->nrcpts != 2 ||
        it->len != 18 || memcmp(it->data, "Subject: x\r\n\r\nhi\r\n", 18) != 0)
        j->bad = 1;
    else
        snprintf(j->last_rcpt, sizeof(j->last_rcpt), "%s", it->meta->rcpts[1]);
    j->puts++;
    return 0;
}

static const struct arc_store_ops jr_ops = {
    .scheme = "jr",
    .put = jr_put,
};

static void
seal_one(enum arc_kind kind, unsigned long long seq,
         unsigned char prev[ARC_HASH_LEN], struct buf *out)
{
    static const char *rcpts[] = {"to@example.org", "bcc@example.org"};
    struct arc_seal_in in;
    struct arc_meta meta;
    struct arc_extra x;
    unsigned char sig[64];
    struct err e;

    memset(&in, 0, sizeof(in));
    memset(&meta, 0, sizeof(meta));
    memset(&x, 0, sizeof(x));
    memset(sig, 7, sizeof(sig));
    meta.time = 1700000000;
    meta.point = "archive";
    meta.sender = "from@example.org";
    meta.rcpts = rcpts;
    meta.nrcpts = 2;
    meta.verdicts = "";
    in.kind = kind;
    in.writer = "node1";
    in.seq = seq;
    in.prev = prev;
    in.meta = &meta;
    in.level = 3;
    if (kind == ARC_KIND_MESSAGE) {
        in.data = "Subject: x\r\n\r\nhi\r\n";
        in.len = 18;
    } else {
        x.sig = sig;
        x.key_id = "0123456789abcdef";
        x.count = seq - 1;
        in.x = &x;
    }
    buf_reset(out);
    err_clear(&e);
    if (arc_record_seal(&in, out, prev, &e) < 0)
        fail_msg("seal: %s", e.text);
}

static void
test_journal(void **state)
{
    unsigned char prev[ARC_HASH_LEN];
    char spool[300], name[ARC_NAME_MAX + 1];
    struct jr_seen j;
    struct arc_spool *sp;
    struct arc_rec r;
    struct buf b, last;
    struct err e;
    unsigned long long seq;
    size_t count = 1;
    long long oldest;
    int i;

    (void)state;
    memset(&j, 0, sizeof(j));
    memset(prev, 0, sizeof(prev));
    snprintf(spool, sizeof(spool), "%s/journal-spool", tdir);
    buf_init(&b, 1 << 20);
    buf_init(&last, 1 << 20);
    /* No directory yet: nothing to continue from. */
    err_clear(&e);
    assert_int_equal(arc_spool_last(spool, "node1", &last, &e), 0);
    assert_int_equal(last.len, 0);
    sp = arc_spool_open(spool, &jr_ops, &j, &e);
    assert_non_null(sp);
    /* Three messages and a checkpoint, the checkpoint last. */
    for (seq = 1; seq <= 4; seq++) {
        struct arc_item it;

        seal_one(seq == 4 ? ARC_KIND_CHECKPOINT : ARC_KIND_MESSAGE, seq, prev,
                 &b);
        arc_name(name, "node1", seq);
        memset(&it, 0, sizeof(it));
        it.name = name;
        it.sealed = (const unsigned char *)b.data;
        it.sealed_len = b.len;
        assert_int_equal(arc_spool_add(sp, &it, &e), 0);
    }
    for (i = 0; i < 500 && (arc_spool_shipped(sp) < 4 || count > 0); i++) {
        usleep(10000);
        assert_int_equal(arc_spool_status(sp, &count, &oldest, &e), 0);
    }
    if (arc_spool_shipped(sp) != 4 || count != 0)
        unit_fail("journal", "%lu shipped, %zu waiting; want 4 and 0",
                  arc_spool_shipped(sp), count);
    if (j.puts != 3 || j.bad || strcmp(j.last_rcpt, "bcc@example.org") != 0)
        unit_fail("journal",
                  "%u puts (want 3, the checkpoint skipped), bad %d, "
                  "last rcpt \"%s\"",
                  j.puts, j.bad, j.last_rcpt);
    if (arc_spool_skipped(sp) != 1)
        unit_fail("journal", "%lu skipped, want 1", arc_spool_skipped(sp));
    arc_spool_close(sp);
    /* Drained: the last one shipped is still where the chain goes on. */
    assert_int_equal(arc_spool_last(spool, "node1", &last, &e), 0);
    memset(&r, 0, sizeof(r));
    if (last.len == 0 ||
        arc_record_parse((const unsigned char *)last.data, last.len, &r, &e) <
            0 ||
        r.seq != 4 || memcmp(r.hash, prev, ARC_HASH_LEN) != 0)
        unit_fail("journal",
                  "arc_spool_last after the drain: %zu octets, seq "
                  "%llu",
                  last.len, r.seq);
    arc_rec_free(&r);
    /* Another writer has nothing here. */
    assert_int_equal(arc_spool_last(spool, "node2", &last, &e), 0);
    assert_int_equal(last.len, 0);
    buf_fini(&b);
    buf_fini(&last);
}

/* arc_spool_last with records waiting: the newest of the writer's. */
static void
test_last_waiting(void **state)
{
    unsigned char prev[ARC_HASH_LEN];
    char spool[300], store[300], name[ARC_NAME_MAX + 1];
    struct fs_store s;
    struct arc_spool *sp;
    struct arc_rec r;
    struct buf b, last;
    struct err e;
    unsigned long long seq;

    (void)state;
    memset(prev, 0, sizeof(prev));
    snprintf(spool, sizeof(spool), "%s/last-spool", tdir);
    snprintf(store, sizeof(store), "%s/last-store", tdir);
    fs_init(&s, store, 1); /* down: everything stays */
    buf_init(&b, 1 << 20);
    buf_init(&last, 1 << 20);
    sp = arc_spool_open(spool, &fs_ops, &s, &e);
    assert_non_null(sp);
    for (seq = 1; seq <= 12; seq++) {
        struct arc_item it;

        seal_one(ARC_KIND_MESSAGE, seq, prev, &b);
        arc_name(name, "node1", seq);
        memset(&it, 0, sizeof(it));
        it.name = name;
        it.sealed = (const unsigned char *)b.data;
        it.sealed_len = b.len;
        assert_int_equal(arc_spool_add(sp, &it, &e), 0);
    }
    arc_spool_close(sp);
    err_clear(&e);
    assert_int_equal(arc_spool_last(spool, "node1", &last, &e), 0);
    memset(&r, 0, sizeof(r));
    if (last.len == 0 ||
        arc_record_parse((const unsigned char *)last.data, last.len, &r, &e) <
            0 ||
        r.seq != 12 || memcmp(r.hash, prev, ARC_HASH_LEN) != 0)
        unit_fail("last", "want seq 12 and the last hash, got seq %llu (%s)",
                  r.seq, e.text);
    arc_rec_free(&r);
    buf_fini(&b);
    buf_fini(&last);
    fs_fini(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash),        cmocka_unit_test(test_outage),
        cmocka_unit_test(test_damaged),      cmocka_unit_test(test_names),
        cmocka_unit_test(test_group),        cmocka_unit_test(test_journal),
        cmocka_unit_test(test_last_waiting),
    };

    log_open("test_archive_spool", LOG_MAIL, LOG_SINK_NONE);
    return cmocka_run_group_tests(tests, setup, teardown);
}
