/*
 * test_log_escape - control characters never reach a log line as they are
 *
 * The stderr sink is pointed at a temporary file (fd 2 redirected for
 * the test); each case logs one line with log_info() and the file must
 * hold exactly the line expected, so a CR or LF from a client can not
 * start a forged line, and text without control characters is left
 * alone.
 */
#include "config.h"

#include <fcntl.h>
#include <unistd.h>

#include "unit.h"

#include "util/log.h"

/* logged - log one line (qid, text) and return what reached stderr,
 * without the "ident[pid]: " prefix, into out. */
static void
logged(const char *qid, const char *text, char *out, size_t n)
{
    char path[] = "/tmp/rc-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    ssize_t got;
    char buf[8192], *p;

    assert_true(fd >= 0 && saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    log_info(qid, "%s", text);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    got = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(got > 0);
    buf[got] = '\0';
    p = strstr(buf, "]: ");
    assert_non_null(p);
    snprintf(out, n, "%s", p + 3);
}

static void
test_escape(void **state)
{
    static const struct {
        const char *name, *qid, *text, *want;
    } cases[] = {
        {"plain", NULL, "connect from unknown[192.0.2.1]",
         "connect from unknown[192.0.2.1]\n"},
        {"8-bit kept", NULL, "from=<j\xc3\xb6rg@example.com>",
         "from=<j\xc3\xb6rg@example.com>\n"},
        {"CR LF", NULL, "helo=<a\r\nrelaychaind[1]: forged>",
         "helo=<a\\x0d\\x0arelaychaind[1]: forged>\n"},
        {"ESC, TAB, DEL", NULL, "x\x1b[2Jy\tz\x7f", "x\\x1b[2Jy\\x09z\\x7f\n"},
        {"backslash kept", NULL, "a\\b", "a\\b\n"},
        {"queue id", "Q\nID", "text", "Q\\x0aID: text\n"},
    };
    char got[8192], longtext[2100];
    size_t i;

    (void)state;
    log_open("test", LOG_MAIL, LOG_SINK_STDERR);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        logged(cases[i].qid, cases[i].text, got, sizeof(got));
        unit_str_eq(cases[i].name, got, cases[i].want);
    }

    /* a line of control characters is cut at whole escapes, one line */
    memset(longtext, '\n', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    logged(NULL, longtext, got, sizeof(got));
    if (strchr(got, '\n') != got + strlen(got) - 1)
        unit_fail("long", "more than one line: \"%.60s...\"", got);
    if ((strlen(got) - 1) % 4 != 0 || strncmp(got, "\\x0a", 4) != 0)
        unit_fail("long", "an escape was cut: %zu octets", strlen(got));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
