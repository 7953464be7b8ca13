/*
 * test_quarantine - quarantine_store() writes only where it means to
 *
 * The quarantine directory is one the daemon's user can write, and so
 * can anything running as that user. A link planted under the temporary
 * name ".ID.tmp" must be replaced, not written through (the file it names
 * stays as it was), and a queue id that is not letters and digits (it
 * names the file) is refused before anything is created. Each case
 * checks the files on disk after the call.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
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
                         &e) < 0)
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
                                     "antivirus", &e),
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_tmp_link),
        cmocka_unit_test(test_bad_qid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
