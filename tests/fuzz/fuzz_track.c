/*
 * fuzz_track - the track stage over random MIME and HTML
 *
 * Each input is a message, run through a track stage that rewrites text
 * links too and adds List-Unsubscribe. Besides the sanitizers, the
 * target traps when the stage breaks a promise:
 *   - run() fails with anything but a temporary error or a limit (an
 *     internal error means GMime's offsets and the body disagreed);
 *   - it edits a message the shared parse flagged as ambiguous;
 *   - the edited message does not parse cleanly, or has another number
 *     of parts than the input;
 *   - it has a line over 998 octets when the input had none;
 *   - a second run over the edited message rewrites a link (its own
 *     links must never be tracked twice).
 * The stage and its key file are made once per process.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filters/filters.h"
#include "util/cfg.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "fuzz_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(what)                                                       \
    do {                                                                      \
        fprintf(stderr, "fuzz_track: %s\n", (what));                          \
        __builtin_trap();                                                     \
    } while (0)

static const struct msg_limits fuzz_limits = {1 << 20, 1000, 998, 20, 200};

static struct stage fuzz_stage;
static int fuzz_ready;
static char fuzz_dir[256], fuzz_key[320];

static void
fuzz_cleanup(void)
{
    flt_track_type.free(&fuzz_stage);
    cfg_free(fuzz_stage.cfg);
    unlink(fuzz_key);
    rmdir(fuzz_dir);
}

static void
fuzz_setup(void)
{
    const struct cfg_option *tables[2] = {flt_track_type.options, NULL};
    const char *t = getenv("TMPDIR");
    char conf[1024];
    struct err e;
    FILE *fp;

    mime_init();
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/rc-fuzz-track-XXXXXX",
             t ? t : "/tmp");
    if (mkdtemp(fuzz_dir) == NULL)
        __builtin_trap();
    snprintf(fuzz_key, sizeof(fuzz_key), "%s/key", fuzz_dir);
    if ((fp = fopen(fuzz_key, "w")) == NULL)
        __builtin_trap();
    fputs("fuzz key of thirty-two octets...", fp);
    fclose(fp);
    if (chmod(fuzz_key, 0600) < 0)
        __builtin_trap();
    snprintf(conf, sizeof(conf),
             "track_host = t.example.com\nkey_file = %s\nbulk = yes\n"
             "track_text_links = yes\n"
             "unsubscribe_mailto = unsub@example.com\n",
             fuzz_key);
    fuzz_stage.type = &flt_track_type;
    fuzz_stage.name = "track";
    fuzz_stage.flags = flt_track_type.flags;
    if ((fuzz_stage.cfg =
             cfg_parse_text("fuzz.conf", conf, strlen(conf), &e)) == NULL ||
        cfg_validate(fuzz_stage.cfg, tables, &e) < 0 ||
        flt_track_type.init(&fuzz_stage, fuzz_stage.cfg, &e) < 0) {
        fprintf(stderr, "fuzz_track: %s\n", e.text);
        __builtin_trap();
    }
    atexit(fuzz_cleanup);
    fuzz_ready = 1;
}

static size_t
fuzz_longest(const char *s, size_t n)
{
    size_t i, start = 0, len, longest = 0;

    for (i = 0; i < n; i++) {
        if (s[i] != '\n')
            continue;
        len = i - start;
        if (i > 0 && s[i - 1] == '\r')
            len--;
        if (len > longest)
            longest = len;
        start = i + 1;
    }
    return n - start > longest ? n - start : longest;
}

/* fuzz_run - run the stage over m; the verdict's note in v. 1 when it
 * edited the body, 0 when not. */
static int
fuzz_run(struct msg *m, struct verdict *v)
{
    const struct msg_edit *ed;
    struct err e;
    size_t i, n;

    memset(v, 0, sizeof(*v));
    err_clear(&e);
    if (flt_track_type.run(&fuzz_stage, m, v, &e) < 0) {
        if (e.code == ERR_NOMEM || e.code == ERR_LIMIT)
            return 0;
        fprintf(stderr, "fuzz_track: run: %s\n", e.text);
        __builtin_trap();
    }
    n = msg_journal(m, &ed);
    for (i = 0; i < n; i++)
        if (ed[i].kind == MSG_EDIT_BODY_REPLACE)
            return 1;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct mime *mm;
    struct msg *m, *m2;
    struct verdict v;
    struct buf out;
    struct err e;
    unsigned parts_in, flags_in;

    if (!fuzz_ready)
        fuzz_setup();
    if ((m = fuzz_msg(&fuzz_limits, (const char *)data, size)) == NULL)
        return 0;
    if ((mm = msg_mime(m, &e)) == NULL) {
        msg_free(m);
        return 0;
    }
    parts_in = mime_part_count(mm);
    flags_in = mime_flags(mm);
    if (!fuzz_run(m, &v)) {
        msg_free(m);
        return 0;
    }
    if (flags_in != 0)
        fuzz_fail("edited an ambiguous message");
    buf_init(&out, 0);
    if (msg_write(m, &out, &e) < 0)
        fuzz_fail("msg_write failed");
    if (fuzz_longest((const char *)data, size) <= 998 &&
        fuzz_longest(out.data, out.len) > 998)
        fuzz_fail("line over 998 octets");
    if ((m2 = fuzz_msg(&fuzz_limits, out.data, out.len)) == NULL)
        fuzz_fail("the output does not parse");
    if ((mm = msg_mime(m2, &e)) == NULL || mime_flags(mm) != 0)
        fuzz_fail("the output does not parse cleanly");
    if (mime_part_count(mm) != parts_in)
        fuzz_fail("the number of parts changed");
    (void)fuzz_run(m2, &v);
    if (strstr(v.note, "links=0,") == NULL &&
        strstr(v.note, "skipped") == NULL) {
        fprintf(stderr, "fuzz_track: second run: %s\n", v.note);
        __builtin_trap();
    }
    msg_free(m2);
    buf_fini(&out);
    msg_free(m);
    return 0;
}
