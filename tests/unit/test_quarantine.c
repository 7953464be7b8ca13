/*
 * test_quarantine - quarantine_store() writes only where it means to
 *
 * The quarantine directory is one the daemon's user can write, and so
 * can anything running as that user. A link planted under the temporary
 * name ".ID.tmp" must be replaced, not written through (the file it names
 * stays as it was), and a queue id that is not letters and digits (it
 * names the file) is refused before anything is created. Each case
 * checks the files on disk after the call.
 *
 * The store group writes held messages and reads them back the way the
 * quarantine commands do (quarantine_read, quarantine_field,
 * quarantine_file_msg): the envelope, the DSN parameters of each
 * recipient, the reason, the stage and the message come back as they
 * went in. Then the things an attacker with the daemon's user could
 * plant under a message's name -- a symbolic link, a hard link, a FIFO,
 * a directory -- must be refused by name, never followed or waited on,
 * and delete must remove only a regular file's own entry.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "msg/msg.h"
#include "queue/quarantine.h"

static const struct msg_limits limits = {1 << 20, 1000, 998, 20, 1000};
static const char body[] = "Subject: held\r\n\r\nheld body\r\n";

static struct msg *
held_msg(const char *qid)
{
    struct msg *m;
    struct err e;

    if ((m = msg_new(&limits, MSG_FE_SMTP, &e)) == NULL ||
        msg_env_set(m, qid, "192.0.2.1", "client.example", "client.example", 0,
                    NULL, &e) < 0 ||
        msg_env_sender(m, "a@example.org", NULL, &e) < 0 ||
        msg_env_rcpt(m, "b@example.net", NULL, &e) < 0)
        fail_msg("message: %s", e.text);
    return m;
}

/* read_all - the contents of path, or NULL; the caller frees. */
static char *
read_all(const char *path)
{
    char *buf = calloc(1, 65536);
    ssize_t n;
    int fd;

    if (buf == NULL || (fd = open(path, O_RDONLY)) < 0) {
        free(buf);
        return NULL;
    }
    n = read(fd, buf, 65535);
    close(fd);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void
test_planted_tmp_link(void **state)
{
    char dir[256], victim[300], link[300], file[300];
    struct msg *m = held_msg("AB12CD34EF");
    struct stat st;
    struct err e;
    char *text;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    unit_write(dir, "victim", "victim stays\n", victim, sizeof(victim));
    snprintf(link, sizeof(link), "%s/.AB12CD34EF.tmp", dir);
    assert_int_equal(symlink(victim, link), 0);
    err_clear(&e);
    if (quarantine_store(dir, m, body, sizeof(body) - 1, "test", "antivirus",
                         NULL, &e) < 0)
        unit_fail("planted link", "refused: %s", e.text);
    text = read_all(victim);
    unit_str_eq("planted link: the file it named", text, "victim stays\n");
    free(text);
    snprintf(file, sizeof(file), "%s/AB12CD34EF", dir);
    unit_int_eq("planted link: stored as a regular file",
                lstat(file, &st) == 0 && S_ISREG(st.st_mode), 1);
    unit_int_eq("planted link: mode 0600", st.st_mode & 07777, 0600);
    text = read_all(file);
    unit_has("planted link: the message", text, "Reason: test\n");
    unit_has("planted link: the message", text, "held body");
    free(text);
    unit_int_eq("planted link: no temporary left",
                lstat(link, &st) < 0 && errno == ENOENT, 1);
    msg_free(m);
    unit_rmtree(dir);
}

static void
test_bad_qid(void **state)
{
    static const char *const bad[] = {"../escaped", "a/b", ".hidden"};
    char dir[256], sub[300], path[400];
    struct stat st;
    struct err e;
    size_t i;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    snprintf(sub, sizeof(sub), "%s/q", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct msg *m = held_msg(bad[i]);

        err_clear(&e);
        unit_int_eq(bad[i],
                    quarantine_store(sub, m, body, sizeof(body) - 1, "test",
                                     "antivirus", NULL, &e),
                    -1);
        unit_has(bad[i], e.text, "is not letters and digits");
        msg_free(m);
    }
    snprintf(path, sizeof(path), "%s/escaped", dir);
    unit_int_eq("nothing outside", lstat(path, &st) < 0, 1);
    snprintf(path, sizeof(path), "%s/q/.escaped.tmp", dir);
    unit_int_eq("nothing inside", lstat(path, &st) < 0, 1);
    unit_rmtree(dir);
}

/* ------------------------------------------------------------- store */

struct held_rcpt {
    const char *addr, *params; /* params NULL: none */
};

static void
test_store_read_back(void **state)
{
    static const struct {
        const char *name, *qid, *sender, *sender_params, *auth, *reason,
            *stage;
        struct held_rcpt rcpts[3]; /* up to the first NULL addr */
    } cases[] = {
        {"one recipient",
         "A1B2C3D4E5F6",
         "a@example.org",
         NULL,
         NULL,
         "Infected: Eicar-Test-Signature",
         "antivirus",
         {{"b@example.net", NULL}, {NULL, NULL}, {NULL, NULL}}},
        {"DSN parameters kept per recipient",
         "0123456789AB",
         "a@example.org",
         "RET=HDRS ENVID=QQ314159",
         "alice",
         "spam score 12",
         "antispam",
         {{"b@example.net",
           "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net"},
          {"c@example.net", NULL},
          {"d@example.net", "NOTIFY=NEVER"}}},
        {"null sender, milter id",
         "4Lq8Fk3XWdz9sKM",
         "",
         NULL,
         NULL,
         "held by policy",
         NULL,
         {{"postmaster@example.net", NULL}, {NULL, NULL}, {NULL, NULL}}},
    };
    char dir[256];
    size_t i, j;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i].name;
        struct quarantine_file q;
        const struct msg_env *env;
        char got[256];
        struct msg *m, *back;
        struct err e;
        size_t n = 0, len;
        const char *b;
        int dfd;

        err_clear(&e);
        if ((m = msg_new(&limits, MSG_FE_SMTP, &e)) == NULL ||
            msg_env_set(m, cases[i].qid, "192.0.2.1", "client.example",
                        "helo.example", 1, cases[i].auth, &e) < 0 ||
            msg_env_sender(m, cases[i].sender, cases[i].sender_params, &e) < 0)
            unit_fail(name, "message: %s", e.text);
        for (j = 0; j < 3 && cases[i].rcpts[j].addr != NULL; j++, n++)
            if (msg_env_rcpt(m, cases[i].rcpts[j].addr,
                             cases[i].rcpts[j].params, &e) < 0)
                unit_fail(name, "recipient: %s", e.text);
        if (quarantine_store(dir, m, body, sizeof(body) - 1, cases[i].reason,
                             cases[i].stage, NULL, &e) < 0)
            unit_fail(name, "store: %s", e.text);
        msg_free(m);

        assert_true((dfd = open(dir, O_RDONLY | O_DIRECTORY)) >= 0);
        if (quarantine_read(dfd, dir, cases[i].qid, &q, &e) < 0)
            unit_fail(name, "read back: %s", e.text);
        close(dfd);
        unit_int_eq(name, q.body_len, sizeof(body) - 1);
        unit_int_eq(name, memcmp(q.body, body, q.body_len), 0);
        quarantine_field(&q, "Envelope-From", 0, got, sizeof(got));
        unit_str_eq(name, got, cases[i].sender);
        quarantine_field(&q, "Envelope-From-Params", 0, got, sizeof(got));
        unit_str_eq(name, got,
                    cases[i].sender_params ? cases[i].sender_params : "");
        quarantine_field(&q, "Reason", 0, got, sizeof(got));
        unit_str_eq(name, got, cases[i].reason);
        unit_int_eq(name,
                    quarantine_field(&q, "Stage", 0, got, sizeof(got)) != NULL,
                    cases[i].stage != NULL);
        if (cases[i].stage != NULL)
            unit_str_eq(name, got, cases[i].stage);
        unit_int_eq(name,
                    quarantine_field(&q, "Auth", 0, got, sizeof(got)) != NULL,
                    cases[i].auth != NULL);
        for (j = 0; j < n; j++) {
            quarantine_field(&q, "Envelope-To", (int)j, got, sizeof(got));
            unit_str_eq(name, got, cases[i].rcpts[j].addr);
            quarantine_field(&q, "Envelope-To-Params", (int)j, got,
                             sizeof(got));
            unit_str_eq(name, got,
                        cases[i].rcpts[j].params ? cases[i].rcpts[j].params
                                                 : "");
        }
        unit_int_eq(name,
                    quarantine_field(&q, "Envelope-To", (int)n, got,
                                     sizeof(got)) == NULL,
                    1);

        /* the message a release runs through the rest of the chain */
        if ((back = quarantine_file_msg(&limits, &q, cases[i].qid, &e)) ==
            NULL)
            unit_fail(name, "as a message: %s", e.text);
        env = msg_env(back);
        unit_str_eq(name, msg_qid(back), cases[i].qid);
        unit_str_eq(name, env->sender, cases[i].sender);
        unit_str_eq(name, env->client_addr, "192.0.2.1");
        unit_int_eq(name, env->tls, 1);
        unit_str_eq(name, env->auth_user, cases[i].auth);
        unit_int_eq(name, env->nrcpts, n);
        for (j = 0; j < n && j < env->nrcpts; j++) {
            unit_str_eq(name, env->rcpts[j].addr, cases[i].rcpts[j].addr);
            unit_str_eq(name, env->rcpts[j].params, cases[i].rcpts[j].params);
        }
        b = msg_body(back, &len);
        unit_int_eq(name, len, strlen("held body\r\n"));
        unit_int_eq(name, memcmp(b, "held body\r\n", len), 0);
        msg_free(back);
        quarantine_file_fini(&q);
    }
    unit_rmtree(dir);
}

/* plant - put something other than a held message under name in dir
 * (victim a file outside it); 0 or -1. */
enum plant_kind { PLANT_SYMLINK, PLANT_HARDLINK, PLANT_FIFO, PLANT_DIR };

static int
plant(const char *dir, const char *name, enum plant_kind kind,
      const char *victim)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    switch (kind) {
    case PLANT_SYMLINK:
        return symlink(victim, path);
    case PLANT_HARDLINK:
        return link(victim, path);
    case PLANT_FIFO:
        return mkfifo(path, 0600);
    case PLANT_DIR:
        return mkdir(path, 0700);
    }
    return -1;
}

static void
test_planted(void **state)
{
    static const struct {
        const char *name;
        enum plant_kind kind;
        const char *read_refusal; /* what quarantine_read says */
        int delete_ok;            /* quarantine_delete removes the entry */
    } cases[] = {
        {"symbolic link", PLANT_SYMLINK, "not a regular file", 0},
        {"hard link", PLANT_HARDLINK, "has 2 names", 1},
        {"FIFO", PLANT_FIFO, "not a regular file", 0},
        {"directory", PLANT_DIR, "not a regular file", 0},
    };
    static const char victim_text[] = "Envelope-From: a@b\n\nsecret\n";
    char top[256], dir[300], victim[400], path[400];
    size_t i;
    int dfd;

    (void)state;
    assert_non_null(unit_tmpdir(top, sizeof(top)));
    snprintf(dir, sizeof(dir), "%s/quarantine", top);
    assert_int_equal(mkdir(dir, 0700), 0);
    unit_write(top, "victim", victim_text, victim, sizeof(victim));
    assert_true((dfd = open(dir, O_RDONLY | O_DIRECTORY)) >= 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i].name;
        struct quarantine_file q;
        struct stat st;
        struct err e;
        char id[16];
        char *text;

        snprintf(id, sizeof(id), "PLANTED%zu", i);
        if (plant(dir, id, cases[i].kind, victim) < 0)
            unit_fail(name, "cannot plant: %s", strerror(errno));
        err_clear(&e);
        unit_int_eq(name, quarantine_read(dfd, dir, id, &q, &e), -1);
        quarantine_file_fini(&q);
        unit_has(name, e.text, cases[i].read_refusal);
        unit_has(name, e.text, id);

        err_clear(&e);
        unit_int_eq(name, quarantine_delete(dfd, dir, id, &e),
                    cases[i].delete_ok ? 0 : -1);
        snprintf(path, sizeof(path), "%s/%s", dir, id);
        unit_int_eq(name, lstat(path, &st) == 0, !cases[i].delete_ok);
        if (!cases[i].delete_ok)
            unit_has(name, e.text, "refused");
        text = read_all(victim);
        unit_str_eq(name, text, victim_text);
        free(text);
    }
    close(dfd);
    unit_rmtree(top);
}

static void
test_delete(void **state)
{
    struct msg *m = held_msg("DEL0123456");
    char dir[256], path[300];
    struct stat st;
    struct err e;
    int dfd;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    err_clear(&e);
    if (quarantine_store(dir, m, body, sizeof(body) - 1, "test", NULL, NULL,
                         &e) < 0)
        unit_fail("delete", "store: %s", e.text);
    msg_free(m);
    assert_true((dfd = open(dir, O_RDONLY | O_DIRECTORY)) >= 0);
    unit_int_eq("delete: a held message",
                quarantine_delete(dfd, dir, "DEL0123456", &e), 0);
    snprintf(path, sizeof(path), "%s/DEL0123456", dir);
    unit_int_eq("delete: the file is gone", lstat(path, &st) < 0, 1);
    unit_int_eq("delete: again", quarantine_delete(dfd, dir, "DEL0123456", &e),
                -1);
    unit_has("delete: again", e.text, "No such file");
    close(dfd);
    unit_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_tmp_link),
        cmocka_unit_test(test_bad_qid),
        cmocka_unit_test(test_store_read_back),
        cmocka_unit_test(test_planted),
        cmocka_unit_test(test_delete),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
