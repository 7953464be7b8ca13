/*
 * test_antispam_hold - compromised accounts (hold_user): the tracker of
 *     antispam_hold.c on a fake clock
 *
 * The decision alone, table-driven (ceilings, spam share, floor, factor
 * times the baseline, no baseline yet); then scenarios, each a fake
 * clock that the test moves: a user at its usual rate for many windows
 * is never held; a burst past factor x baseline is held within the
 * window and names the measure; a burst below the floors is not; a
 * ceiling holds a key with no baseline; the spam share holds; another
 * user is not touched; the number of keys stays within hold_max_keys
 * and a held key outlives the eviction; a release starts the window
 * again; and with a directory, a hold is a file that a new tracker (a
 * restart) reads back and whose removal (relaychain user release) lifts
 * the hold. The stage against a real spamd and relaychaind is
 * tests/integration/antispam_hold.sh.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "filters/antispam/antispam_int.h"

#define T0 1764997200 /* a fake "now", a window boundary of 3600 s */

static void
limits(struct flt_as_hold_limits *l)
{
    memset(l, 0, sizeof(*l));
    l->window = 3600;
    l->factor = 10;
    l->floor[FLT_AS_HM_MESSAGES] = 100;
    l->floor[FLT_AS_HM_RCPTS] = 200;
    l->floor[FLT_AS_HM_DOMAINS] = 50;
    l->max_spam_share = 1.0;
    l->min_scored = 10;
    l->max_keys = 64;
}

static struct flt_as_hold *
tracker(const struct flt_as_hold_limits *l, int dfd)
{
    struct flt_as_hold *h;
    struct err e;

    err_clear(&e);
    h = flt_as_hold_new(l, dfd, &e);
    if (h == NULL)
        unit_fail("new", "%s", e.text);
    return h;
}

/* send - one message of key at now to n recipients "r<first+i>@d<(first
 * +i) % ndom>.example"; the result of flt_as_hold_record. */
static int
send(struct flt_as_hold *h, const char *key, time_t now, int first, int n,
     int ndom, int spam, char *why, size_t wn)
{
    char buf[64][64];
    const char *r[64];
    struct flt_as_hold_obs o;
    int i;

    assert_true(n <= 64);
    for (i = 0; i < n; i++) {
        snprintf(buf[i], sizeof(buf[i]), "r%d@d%d.example", first + i,
                 (first + i) % ndom);
        r[i] = buf[i];
    }
    o.rcpts = r;
    o.nrcpts = (size_t)n;
    o.scored = 1;
    o.spam = spam;
    return flt_as_hold_record(h, key, &o, now, why, wn);
}

/* ------------------------------------------------------------ decision */

struct judge_case {
    const char *name;
    unsigned long msgs, rcpts, doms, scored, spam;
    double base_rcpts;
    unsigned periods;
    unsigned long max_rcpts;
    double share;
    int want;
    const char *why; /* the start of why, when held */
};

static const struct judge_case judge_cases[] = {
    {"quiet", 5, 10, 1, 5, 0, 8, 4, 0, 1.0, 0, NULL},
    {"past 10x baseline and floor", 50, 412, 3, 50, 0, 37, 4, 0, 1.0, 1,
     "recipients 412 in 3600s > 10x baseline 37.0 (floor 200)"},
    {"past 10x baseline, not the floor", 50, 190, 3, 50, 0, 2, 4, 0, 1.0, 0,
     NULL},
    {"past the floor, not 10x baseline", 50, 412, 3, 50, 0, 50, 4, 0, 1.0, 0,
     NULL},
    {"no baseline yet: the factor waits", 50, 5000, 3, 50, 0, 0, 0, 0, 1.0, 0,
     NULL},
    {"no baseline, past a ceiling", 50, 5000, 3, 50, 0, 0, 0, 1000, 1.0, 1,
     "recipients 5000 in 3600s > ceiling 1000"},
    {"spam share past 0.5", 12, 12, 1, 12, 7, 12, 4, 0, 0.5, 1,
     "spam 7 of 12 scored in 3600s > share 0.50"},
    {"spam share at 0.5 exactly", 12, 12, 1, 12, 6, 12, 4, 0, 0.5, 0, NULL},
    {"spam share, too few scored", 9, 9, 1, 9, 9, 9, 4, 0, 0.5, 0, NULL},
};

static void
test_judge(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold_counts c;
    char why[FLT_AS_HOLD_WHY_MAX];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(judge_cases) / sizeof(judge_cases[0]); i++) {
        const struct judge_case *k = &judge_cases[i];

        limits(&l);
        l.ceiling[FLT_AS_HM_RCPTS] = k->max_rcpts;
        l.max_spam_share = k->share;
        memset(&c, 0, sizeof(c));
        c.n[FLT_AS_HM_MESSAGES] = k->msgs;
        c.n[FLT_AS_HM_RCPTS] = k->rcpts;
        c.n[FLT_AS_HM_DOMAINS] = k->doms;
        c.scored = k->scored;
        c.spam = k->spam;
        c.baseline[FLT_AS_HM_MESSAGES] = (double)k->msgs;
        c.baseline[FLT_AS_HM_RCPTS] = k->base_rcpts;
        c.baseline[FLT_AS_HM_DOMAINS] = (double)k->doms;
        c.periods = k->periods;
        why[0] = '\0';
        unit_int_eq(k->name, flt_as_hold_judge(&l, &c, why, sizeof(why)),
                    k->want);
        if (k->want)
            unit_str_eq(k->name, why, k->why);
    }
}

/* ----------------------------------------------------------- scenarios */

/* usual - key's usual traffic for hours from start: 20 messages an hour,
 * each to 3 of 30 regular recipients in 3 domains; the number of times
 * it was held (0 wanted). */
static int
usual(struct flt_as_hold *h, const char *key, time_t start, int hours)
{
    char why[FLT_AS_HOLD_WHY_MAX];
    int i, held = 0;

    for (i = 0; i < hours * 20; i++)
        held += send(h, key, start + i * 180, (i * 3) % 30, 3, 3, 0, why,
                     sizeof(why));
    return held;
}

static void
test_usual_never_held(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold_counts c;
    struct flt_as_hold *h;

    (void)state;
    limits(&l);
    h = tracker(&l, -1);
    unit_int_eq("24 hours at the usual rate: holds",
                usual(h, "user:alice", T0, 24), 0);
    unit_int_eq("not held", flt_as_hold_is_held(h, "user:alice", T0 + 86400),
                0);
    assert_int_equal(flt_as_hold_counts(h, "user:alice", T0 + 86399, &c), 0);
    unit_int_eq("messages in the last hour", c.n[FLT_AS_HM_MESSAGES], 20);
    unit_int_eq("windows in the baseline", c.periods, 23);
    if (c.baseline[FLT_AS_HM_MESSAGES] < 19.0 ||
        c.baseline[FLT_AS_HM_MESSAGES] > 21.0)
        unit_fail("baseline", "got %.2f messages, want about 20",
                  c.baseline[FLT_AS_HM_MESSAGES]);
    flt_as_hold_free(h);

    /* Low floors and factor 3: a key first seen in the middle of a window
     * at its usual rate is not taken for a jump over that part of a
     * window. */
    l.factor = 3;
    l.floor[FLT_AS_HM_MESSAGES] = 5;
    l.floor[FLT_AS_HM_RCPTS] = 10;
    l.floor[FLT_AS_HM_DOMAINS] = 5;
    h = tracker(&l, -1);
    unit_int_eq("first seen mid-window, low floors: holds",
                usual(h, "user:zoe", T0 + 3000, 24), 0);
    flt_as_hold_free(h);
}

static void
test_burst_held(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold *h;
    char why[FLT_AS_HOLD_WHY_MAX];
    time_t t = T0 + 5 * 3600;
    int i, at = -1;

    (void)state;
    limits(&l);
    h = tracker(&l, -1);
    assert_int_equal(usual(h, "user:alice", T0, 5), 0);
    assert_int_equal(usual(h, "user:bob", T0, 5), 0);
    /* Then 40 messages in ten minutes, each to 10 new recipients. */
    for (i = 0; i < 40 && at < 0; i++)
        if (send(h, "user:alice", t + i * 15, 1000 + i * 10, 10, 3, 0, why,
                 sizeof(why)))
            at = i;
    if (at < 0)
        unit_fail("burst", "not held after 400 new recipients");
    unit_has("burst", why, "recipients 2");
    unit_has("burst", why, "(floor 200)");
    /* 200 recipients is the floor: the 21st message passes it. */
    unit_int_eq("burst: held at message", at, 20);
    unit_int_eq("held", flt_as_hold_is_held(h, "user:alice", t + 700), 1);
    unit_int_eq("held an hour later",
                flt_as_hold_is_held(h, "user:alice", t + 4300), 1);
    /* Others unaffected: bob goes on at his rate. */
    unit_int_eq("bob", flt_as_hold_is_held(h, "user:bob", t + 700), 0);
    unit_int_eq("bob: holds", usual(h, "user:bob", t, 2), 0);
    flt_as_hold_free(h);
}

static void
test_below_floor(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold *h;
    char why[FLT_AS_HOLD_WHY_MAX];
    int i, held = 0;

    (void)state;
    limits(&l);
    h = tracker(&l, -1);
    /* One message an hour to one recipient for five hours... */
    for (i = 0; i < 5; i++)
        held +=
            send(h, "user:carol", T0 + i * 3600, 0, 1, 1, 0, why, sizeof(why));
    /* ...then 90 messages to 180 recipients in 40 domains: far past 10x
     * its baseline, below every floor. */
    for (i = 0; i < 90; i++)
        held += send(h, "user:carol", T0 + 5 * 3600 + i * 30, 100 + i * 2, 2,
                     40, 0, why, sizeof(why));
    if (held)
        unit_fail("below the floors", "held: %s", why);
    flt_as_hold_free(h);
}

static void
test_ceiling_without_baseline(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold_counts c;
    struct flt_as_hold *h;
    char why[FLT_AS_HOLD_WHY_MAX];
    int i, at = -1;

    (void)state;
    limits(&l);
    l.ceiling[FLT_AS_HM_MESSAGES] = 50;
    h = tracker(&l, -1);
    for (i = 0; i < 60 && at < 0; i++)
        if (send(h, "client:192.0.2.9", T0 + 10 + i, 0, 1, 1, 0, why,
                 sizeof(why)))
            at = i;
    unit_int_eq("ceiling: held at message", at, 50);
    unit_str_eq("ceiling", why, "messages 51 in 3600s > ceiling 50");
    assert_int_equal(flt_as_hold_counts(h, "client:192.0.2.9", T0 + 100, &c),
                     0);
    unit_int_eq("no baseline yet", c.periods, 0);
    flt_as_hold_free(h);
}

static void
test_spam_share(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold *h;
    char why[FLT_AS_HOLD_WHY_MAX];
    int i, at = -1;

    (void)state;
    limits(&l);
    l.max_spam_share = 0.5;
    h = tracker(&l, -1);
    /* Four clean messages, then spam: at the 10th scored, 6 of 10. */
    for (i = 0; i < 20 && at < 0; i++)
        if (send(h, "user:dave", T0 + 60 + i * 60, 0, 1, 1, i >= 4, why,
                 sizeof(why)))
            at = i;
    unit_int_eq("spam share: held at message", at, 9);
    unit_str_eq("spam share", why,
                "spam 6 of 10 scored in 3600s > share 0.50");
    flt_as_hold_free(h);
}

static void
test_eviction_bounded(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold *h;
    char why[FLT_AS_HOLD_WHY_MAX], key[64];
    int i;

    (void)state;
    limits(&l);
    l.max_keys = 16;
    l.ceiling[FLT_AS_HM_MESSAGES] = 3;
    h = tracker(&l, -1);
    for (i = 0; i < 4; i++)
        send(h, "user:mallory", T0 + i, 0, 1, 1, 0, why, sizeof(why));
    unit_int_eq("mallory held", flt_as_hold_is_held(h, "user:mallory", T0 + 5),
                1);
    /* An attacker's thousand client addresses; a regular user who keeps
     * sending in between is recent, and kept. */
    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "client:198.51.%d.%d", i / 250, i % 250);
        send(h, key, T0 + 10 + i, 0, 1, 1, 0, why, sizeof(why));
        if (i % 5 == 0)
            flt_as_hold_is_held(h, "user:regular", T0 + 10 + i);
        if (flt_as_hold_nkeys(h) > 16)
            unit_fail("eviction", "%zu keys after %d, want at most 16",
                      flt_as_hold_nkeys(h), i + 1);
    }
    unit_int_eq("mallory still held after the flood",
                flt_as_hold_is_held(h, "user:mallory", T0 + 2000), 1);
    {
        struct flt_as_hold_counts c;

        unit_int_eq("the regular user is still known",
                    flt_as_hold_counts(h, "user:regular", T0 + 2000, &c), 0);
        unit_int_eq("the first flood address is forgotten",
                    flt_as_hold_counts(h, "client:198.51.0.0", T0 + 2000, &c),
                    -1);
    }
    flt_as_hold_free(h);
}

static void
test_release_resets(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold_counts c;
    struct flt_as_hold *h;
    char why[FLT_AS_HOLD_WHY_MAX];
    int i, held = 0;

    (void)state;
    limits(&l);
    l.ceiling[FLT_AS_HM_MESSAGES] = 10;
    h = tracker(&l, -1);
    for (i = 0; i < 11; i++)
        held +=
            send(h, "user:erin", T0 + 60 + i, 0, 1, 1, 0, why, sizeof(why));
    unit_int_eq("erin held", held, 1);
    unit_int_eq("release of an unknown key",
                flt_as_hold_release(h, "user:nobody", T0 + 100), -1);
    unit_int_eq("release", flt_as_hold_release(h, "user:erin", T0 + 100), 0);
    unit_int_eq("not held after release",
                flt_as_hold_is_held(h, "user:erin", T0 + 101), 0);
    assert_int_equal(flt_as_hold_counts(h, "user:erin", T0 + 101, &c), 0);
    unit_int_eq("window empty after release", c.n[FLT_AS_HM_MESSAGES], 0);
    /* Within the same window, the next messages are not held at once. */
    held = 0;
    for (i = 0; i < 5; i++)
        held +=
            send(h, "user:erin", T0 + 200 + i, 0, 1, 1, 0, why, sizeof(why));
    unit_int_eq("after release: holds", held, 0);
    flt_as_hold_free(h);
}

/* ---------------------------------------------------- the hold files */

static void
test_files(void **state)
{
    struct flt_as_hold_limits l;
    struct flt_as_hold *h;
    char dir[] = "/tmp/test_antispam_hold.XXXXXX", path[512], text[512];
    char why[FLT_AS_HOLD_WHY_MAX], longkey[300];
    struct err e;
    struct stat sb;
    ssize_t n;
    int i, fd, dfd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    limits(&l);
    l.ceiling[FLT_AS_HM_MESSAGES] = 2;
    err_clear(&e);
    if ((dfd = flt_as_hold_dir(dir, 1, &e)) < 0)
        unit_fail("dir", "%s", e.text);
    h = tracker(&l, dfd);
    for (i = 0; i < 3; i++)
        send(h, "client:2001:db8::1", T0 + i, 0, 1, 1, 0, why, sizeof(why));
    for (i = 0; i < 3; i++)
        send(h, "user:frank", T0 + i, 0, 1, 1, 0, why, sizeof(why));
    /* A login name too long for a file name: cut, with a hash. */
    memset(longkey, 'x', sizeof(longkey) - 1);
    memcpy(longkey, "user:", 5);
    longkey[sizeof(longkey) - 1] = '\0';
    for (i = 0; i < 3; i++)
        send(h, longkey, T0 + i, 0, 1, 1, 0, why, sizeof(why));
    flt_as_hold_free(h);

    snprintf(path, sizeof(path), "%s/user.frank", dir);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        unit_fail("file", "%s missing", path);
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    assert_true(n > 0);
    text[n] = '\0';
    unit_str_eq("file", text,
                "key: user:frank\nsince: 1764997202\nreason: messages 3 in "
                "3600s > ceiling 2\n");
    snprintf(path, sizeof(path), "%s/client.2001%%3Adb8%%3A%%3A1", dir);
    unit_int_eq("client file (IPv6 encoded)", access(path, F_OK), 0);

    /* A restart: a new tracker reads the holds back. */
    dfd = flt_as_hold_dir(dir, 0, &e);
    assert_true(dfd >= 0);
    h = tracker(&l, dfd);
    unit_int_eq("loaded", flt_as_hold_load(h, T0 + 10, &e), 3);
    unit_int_eq("the long key held after restart",
                flt_as_hold_is_held(h, longkey, T0 + 10), 1);
    unit_int_eq("frank held after restart",
                flt_as_hold_is_held(h, "user:frank", T0 + 10), 1);
    unit_int_eq("client held after restart",
                flt_as_hold_is_held(h, "client:2001:db8::1", T0 + 10), 1);
    /* relaychain user release removes the file: lifted at the next look. */
    snprintf(path, sizeof(path), "%s/user.frank", dir);
    assert_int_equal(unlink(path), 0);
    unit_int_eq("frank released by file",
                flt_as_hold_is_held(h, "user:frank", T0 + 11), 0);
    unit_int_eq("client still held",
                flt_as_hold_is_held(h, "client:2001:db8::1", T0 + 11), 1);
    unit_int_eq("frank's next message passes",
                send(h, "user:frank", T0 + 12, 0, 1, 1, 0, why, sizeof(why)),
                0);
    flt_as_hold_free(h);
    snprintf(path, sizeof(path), "%s/client.2001%%3Adb8%%3A%%3A1", dir);
    unlink(path);
    /* The long key's file: its name cut, with a hash. */
    {
        DIR *d = opendir(dir);
        struct dirent *de;
        int found = 0;

        assert_non_null(d);
        while ((de = readdir(d)) != NULL)
            if (strncmp(de->d_name, "user.xxx", 8) == 0) {
                found = 1;
                if (strlen(de->d_name) > 240 ||
                    strchr(de->d_name, '#') == NULL)
                    unit_fail("long key", "file name %s", de->d_name);
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            }
        closedir(d);
        unit_int_eq("long key: a file", found, 1);
        unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);

    /* A directory everyone may write is refused. */
    assert_non_null(mkdtemp(strcpy(dir, "/tmp/test_antispam_hold.XXXXXX")));
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(stat(dir, &sb), 0);
    unit_int_eq("world-writable directory", flt_as_hold_dir(dir, 1, &e), -1);
    unit_has("world-writable directory", e.text, "writable by everyone");
    assert_int_equal(rmdir(dir), 0);
}

static void
test_key(void **state)
{
    char out[FLT_AS_HOLD_KEY_MAX], big[400];

    (void)state;
    unit_str_eq("user",
                flt_as_hold_key("alice", "192.0.2.1", out, sizeof(out)),
                "user:alice");
    unit_str_eq("client", flt_as_hold_key(NULL, "192.0.2.1", out, sizeof(out)),
                "client:192.0.2.1");
    unit_str_eq("empty user",
                flt_as_hold_key("", "192.0.2.1", out, sizeof(out)),
                "client:192.0.2.1");
    unit_str_eq("neither", flt_as_hold_key(NULL, NULL, out, sizeof(out)),
                NULL);
    unit_str_eq("control octets",
                flt_as_hold_key("a\nkey: x", NULL, out, sizeof(out)),
                "user:a?key: x");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    unit_str_eq("too long", flt_as_hold_key(big, NULL, out, sizeof(out)),
                NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_usual_never_held),
        cmocka_unit_test(test_burst_held),
        cmocka_unit_test(test_below_floor),
        cmocka_unit_test(test_ceiling_without_baseline),
        cmocka_unit_test(test_spam_share),
        cmocka_unit_test(test_eviction_bounded),
        cmocka_unit_test(test_release_resets),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_key),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
