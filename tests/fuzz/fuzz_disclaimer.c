/*
 * fuzz_disclaimer - the disclaimer stage over random MIME
 *
 * Each input is a message. It is parsed into a struct msg and run
 * through a disclaimer stage whose footers hold characters outside
 * Latin-1 and ASCII (so charset conversion, UTF-8 fallback and HTML
 * character references all run); the input's last octet picks append or
 * prepend. Besides the sanitizers, the target traps when the stage
 * breaks a promise:
 *   - run() fails with anything but a temporary error (an internal
 *     error means GMime's offsets and the body disagreed);
 *   - it edits a message the shared parse flagged as ambiguous;
 *   - the edited message does not parse cleanly (any MIME flag), or has
 *     a different number of parts than the input (one or two more only
 *     when a footer part was added);
 *   - it has a line over 998 octets when the input had none, a CR when
 *     the input had LF line ends only, a bare LF when the input had only
 *     CRLF;
 *   - a second run over the edited message edits it again (the once
 *     check must find the stage's own footer).
 * The stage and its template files are made once per process.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/filters.h"
#include "util/cfg.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "fuzz_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_text[] = "\n-- \n"
                                "Vertraulich \xe2\x80\x94 confidential, "
                                "Gr\xc3\xbc\xc3\x9f"
                                "e %{sender}.\n"
                                "Sent %{date} from %{sender_domain}.\n";
static const char fuzz_html[] =
    "<div class=\"d\"><p>Vertraulich \xe2\x80\x94 confidential, "
    "Gr\xc3\xbc\xc3\x9f"
    "e %{sender}.</p>\n<!-- footer --><p>Sent from %{sender_domain}.</p>"
    "</div>\n";

/* fuzz_fail - say which promise broke, then trap. */
#define fuzz_fail(what)                                                       \
    do {                                                                      \
        fprintf(stderr, "fuzz_disclaimer: %s\n", (what));                     \
        __builtin_trap();                                                     \
    } while (0)

static const struct msg_limits fuzz_limits = {1 << 20, 1000, 998, 20, 200};

/* The two stages (append, prepend) and their files; made once. */
static struct stage fuzz_stages[2];
static int fuzz_ready;
static char fuzz_dir[256], fuzz_paths[2][320];

static void
fuzz_cleanup(void)
{
    int i;

    for (i = 0; i < 2; i++) {
        flt_disclaimer_type.free(&fuzz_stages[i]);
        cfg_free(fuzz_stages[i].cfg);
        unlink(fuzz_paths[i]);
    }
    rmdir(fuzz_dir);
}

static void
fuzz_write(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    if (fp == NULL)
        __builtin_trap();
    fputs(text, fp);
    fclose(fp);
}

static void
fuzz_setup(void)
{
    const struct cfg_option *tables[2] = {flt_disclaimer_type.options, NULL};
    const char *t = getenv("TMPDIR");
    char conf[1024];
    struct err e;
    int i;

    mime_init();
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/rc-fuzz-disclaimer-XXXXXX",
             t ? t : "/tmp");
    if (mkdtemp(fuzz_dir) == NULL)
        __builtin_trap();
    snprintf(fuzz_paths[0], sizeof(fuzz_paths[0]), "%s/f.txt", fuzz_dir);
    snprintf(fuzz_paths[1], sizeof(fuzz_paths[1]), "%s/f.html", fuzz_dir);
    fuzz_write(fuzz_paths[0], fuzz_text);
    fuzz_write(fuzz_paths[1], fuzz_html);
    for (i = 0; i < 2; i++) {
        struct stage *st = &fuzz_stages[i];

        snprintf(conf, sizeof(conf),
                 "text_file = %s\nhtml_file = %s\nposition = %s\n",
                 fuzz_paths[0], fuzz_paths[1], i ? "prepend" : "append");
        st->type = &flt_disclaimer_type;
        st->name = "disclaimer";
        st->flags = flt_disclaimer_type.flags;
        if ((st->cfg = cfg_parse_text("fuzz.conf", conf, strlen(conf), &e)) ==
                NULL ||
            cfg_validate(st->cfg, tables, &e) < 0 ||
            flt_disclaimer_type.init(st, st->cfg, &e) < 0) {
            fprintf(stderr, "fuzz_disclaimer: %s\n", e.text);
            __builtin_trap();
        }
    }
    atexit(fuzz_cleanup);
    fuzz_ready = 1;
}

/* fuzz_lines - the longest line, and whether there is a CR or a bare LF. */
static void
fuzz_lines(const char *s, size_t n, size_t *longest, int *cr, int *bare_lf)
{
    size_t i, start = 0, len;

    *longest = 0;
    *cr = memchr(s, '\r', n) != NULL;
    *bare_lf = 0;
    for (i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        len = i - start;
        if (i == 0 || s[i - 1] != '\r')
            *bare_lf = 1;
        else
            len--;
        if (len > *longest)
            *longest = len;
        start = i + 1;
    }
    if (n - start > *longest)
        *longest = n - start;
}

/* fuzz_run - run st over m; 1 when it edited, 0 when not. */
static int
fuzz_run(const struct stage *st, struct msg *m, struct verdict *v)
{
    const struct msg_edit *ed;
    struct err e;
    int rc;

    memset(v, 0, sizeof(*v));
    err_clear(&e);
    rc = flt_disclaimer_type.run(st, m, v, &e);
    if (rc < 0) {
        if (e.code == ERR_NOMEM || e.code == ERR_LIMIT)
            return 0;
        fprintf(stderr, "fuzz_disclaimer: run: %s\n", e.text);
        __builtin_trap();
    }
    return msg_journal(m, &ed) > 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct stage *st;
    const struct mime *mm;
    struct msg *m, *m2;
    struct verdict v;
    struct buf out;
    struct err e;
    size_t longest_in, longest_out;
    unsigned parts_in, parts_out, flags_in;
    int cr_in, cr_out, lf_in, lf_out, added;

    if (!fuzz_ready)
        fuzz_setup();
    st = &fuzz_stages[size > 0 && (data[size - 1] & 1)];
    if ((m = fuzz_msg(&fuzz_limits, (const char *)data, size)) == NULL)
        return 0;
    if ((mm = msg_mime(m, &e)) == NULL) {
        msg_free(m);
        return 0;
    }
    /* The parse is dropped by the stage's first edit. */
    parts_in = mime_part_count(mm);
    flags_in = mime_flags(mm);
    if (!fuzz_run(st, m, &v)) {
        msg_free(m);
        return 0;
    }
    if (flags_in != 0)
        fuzz_fail("edited an ambiguous message");
    added = strstr(v.note, "new text/plain part") != NULL;

    buf_init(&out, 0);
    if (msg_write(m, &out, &e) < 0)
        fuzz_fail("msg_write failed");
    fuzz_lines((const char *)data, size, &longest_in, &cr_in, &lf_in);
    fuzz_lines(out.data, out.len, &longest_out, &cr_out, &lf_out);
    if (longest_in <= 998 && longest_out > 998)
        fuzz_fail("line over 998 octets");
    /* A message without any line end gets msg's CRLF. */
    if (!cr_in && cr_out && memchr(data, '\n', size) != NULL)
        fuzz_fail("CR in the output of an LF message");
    if (cr_in && !lf_in && lf_out)
        fuzz_fail("bare LF in the output of a CRLF message");

    if ((m2 = fuzz_msg(&fuzz_limits, out.data, out.len)) == NULL)
        fuzz_fail("the output does not parse");
    if ((mm = msg_mime(m2, &e)) == NULL || mime_flags(mm) != 0)
        fuzz_fail("the output does not parse cleanly");
    parts_out = mime_part_count(mm);
    if (added ? parts_out < parts_in + 1 || parts_out > parts_in + 2
              : parts_out != parts_in)
        fuzz_fail("the number of parts changed");
    if (fuzz_run(st, m2, &v)) {
        fprintf(stderr, "fuzz_disclaimer: second run edited again: %s\n",
                v.note);
        __builtin_trap();
    }
    msg_free(m2);
    buf_fini(&out);
    msg_free(m);
    return 0;
}
