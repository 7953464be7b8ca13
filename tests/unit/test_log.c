/*
 * test_log - where a daemon in the foreground logs, and what a line looks
 * like there
 *
 * log_sink_foreground() is tried with stderr redirected to a file (the
 * journal's stream is faked by naming that file's device and inode in
 * $JOURNAL_STREAM, as systemd does) and to a pseudo-terminal; the lines
 * written to each sink are read back.
 */
#include "config.h"

#include <fcntl.h>
#include <regex.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "util/log.h"

/* with_stderr - make fd the process's stderr; returns the old one. */
static int
with_stderr(int fd)
{
    int saved = dup(STDERR_FILENO);

    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    return saved;
}

static void
restore_stderr(int saved)
{
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
}

static int
temp_file(char *path, size_t size)
{
    int fd;

    snprintf(path, size, "/tmp/test_log.XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    return fd;
}

static void
test_log_sink_foreground(void **state)
{
    /* "@" stands for stderr's own "device:inode". */
    static const struct {
        const char *name;
        const char *journal_stream;
        enum log_sink want;
    } cases[] = {
        {"no JOURNAL_STREAM, a file", NULL, LOG_SINK_STDERR},
        {"JOURNAL_STREAM is stderr", "@", LOG_SINK_SYSLOG},
        {"another stream (inherited, stderr redirected)", "1:2",
         LOG_SINK_STDERR},
        {"empty", "", LOG_SINK_STDERR},
        {"no inode", "12:", LOG_SINK_STDERR},
        {"no device", ":12", LOG_SINK_STDERR},
        {"trailing junk", "@x", LOG_SINK_STDERR},
        {"not a number", "abc:def", LOG_SINK_STDERR},
        {"overflow", "99999999999999999999999:1", LOG_SINK_STDERR},
    };
    char path[64], value[128];
    struct stat st;
    size_t i;
    int fd, saved;

    (void)state;
    fd = temp_file(path, sizeof(path));
    assert_int_equal(fstat(fd, &st), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *js = cases[i].journal_stream;
        enum log_sink got;

        if (js == NULL) {
            unsetenv("JOURNAL_STREAM");
        } else {
            if (js[0] == '@')
                snprintf(value, sizeof(value), "%ju:%ju%s",
                         (uintmax_t)st.st_dev, (uintmax_t)st.st_ino, js + 1);
            else
                snprintf(value, sizeof(value), "%s", js);
            setenv("JOURNAL_STREAM", value, 1);
        }
        saved = with_stderr(fd);
        got = log_sink_foreground();
        restore_stderr(saved);
        unit_int_eq(cases[i].name, got, cases[i].want);
    }
    unsetenv("JOURNAL_STREAM");
    close(fd);
    unlink(path);
}

/* read_all_fd - what is waiting on fd, NUL-terminated. */
static void
read_all_fd(int fd, char *out, size_t size)
{
    size_t len = 0;
    ssize_t n;

    while (len + 1 < size && (n = read(fd, out + len, size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
}

static void
test_log_terminal_stamp(void **state)
{
    char text[4096], want[128];
    regex_t re;
    int master, slave, saved, flags;
    char *name;

    (void)state;
    unsetenv("JOURNAL_STREAM");
    master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    name = ptsname(master);
    assert_non_null(name);
    slave = open(name, O_RDWR | O_NOCTTY);
    assert_true(slave >= 0);

    saved = with_stderr(slave);
    unit_int_eq("a terminal", log_sink_foreground(), LOG_SINK_TERMINAL);
    log_open("relaychain", LOG_MAIL, log_sink_foreground());
    log_info("0A1B2C3D4E", "from=<a@example.com>, size=1, nrcpt=1");
    log_warning(NULL, "a warning");
    log_close();
    restore_stderr(saved);
    close(slave);

    flags = fcntl(master, F_GETFL);
    assert_int_equal(fcntl(master, F_SETFL, flags | O_NONBLOCK), 0);
    read_all_fd(master, text, sizeof(text));
    close(master);

    /* "Dec  7 00:27:45 host relaychain[812]: ..." as in mail.log; the
     * terminal turns each \n into \r\n. */
    snprintf(want, sizeof(want),
             "^[A-Z][a-z]{2} [ 123][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] "
             "[^ ]+ relaychain\\[%ld\\]: ",
             (long)getpid());
    assert_int_equal(regcomp(&re, want, REG_EXTENDED | REG_NEWLINE), 0);
    if (regexec(&re, text, 0, NULL, 0) != 0)
        unit_fail("terminal line", "got \"%s\", want it to match /%s/", text,
                  want);
    regfree(&re);
    unit_has("terminal line", text,
             "]: 0A1B2C3D4E: from=<a@example.com>, size=1, nrcpt=1\r\n");
    unit_has("terminal warning", text, "]: warning: a warning\r\n");
}

static void
test_log_plain_stderr(void **state)
{
    char path[64], text[4096], want[128];
    int fd, saved;

    (void)state;
    unsetenv("JOURNAL_STREAM");
    fd = temp_file(path, sizeof(path));
    saved = with_stderr(fd);
    log_open("relaychain", LOG_MAIL, log_sink_foreground());
    log_info("0A1B2C3D4E", "removed");
    log_close();
    restore_stderr(saved);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    read_all_fd(fd, text, sizeof(text));
    close(fd);
    unlink(path);

    /* A pipe or a file gets the line as it was, with no time stamp: a
     * log collector in front adds its own. */
    snprintf(want, sizeof(want), "relaychain[%ld]: 0A1B2C3D4E: removed\n",
             (long)getpid());
    unit_str_eq("file line", text, want);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_sink_foreground),
        cmocka_unit_test(test_log_terminal_stamp),
        cmocka_unit_test(test_log_plain_stderr),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
