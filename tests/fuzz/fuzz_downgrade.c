/*
 * fuzz_downgrade - the 8bit-to-7bit re-encoder over random messages
 *
 * The input is a message, parsed as a front end parses one (bad input is
 * dropped there, as the front ends refuse it). downgrade_body() runs over
 * msg_write()'s bytes of it. The target traps when the re-encoder claims
 * no change but the journal grew, or changes the message without saying
 * so, or leaves a message that can no longer be written; when it changed
 * the message, the result is parsed again and run through a second time
 * under the same checks.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg/downgrade.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "fuzz_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(what)                                                       \
    do {                                                                      \
        fprintf(stderr, "fuzz_downgrade: %s\n", (what));                      \
        __builtin_trap();                                                     \
    } while (0)

static const struct msg_limits fuzz_limits = {1 << 20, 1000, 998, 20, 200};

/* fuzz_once - downgrade m; 1 when it changed m, 0 when not, -1 on an
 * error, with its code in *code. */
static int
fuzz_once(struct msg *m, enum err_code *code)
{
    const struct msg_edit *edits;
    unsigned encoded = 0, relabelled = 0;
    size_t before, after;
    struct buf raw;
    struct err e;
    int rc;

    err_clear(&e);
    buf_init(&raw, 0);
    if (msg_write(m, &raw, &e) < 0)
        fuzz_fail("msg_write before");
    before = msg_journal(m, &edits);
    rc = downgrade_body(m, "downgrade", raw.data ? raw.data : "", raw.len,
                        &encoded, &relabelled, &e);
    after = msg_journal(m, &edits);
    buf_fini(&raw);
    if (rc < 0) {
        *code = e.code;
        return -1;
    }
    if (encoded == 0 && relabelled == 0 && after != before)
        fuzz_fail("journal grew without a change counted");
    if ((encoded || relabelled) && after == before)
        fuzz_fail("a change counted but none made");
    buf_init(&raw, 0);
    if (msg_write(m, &raw, &e) < 0)
        fuzz_fail("msg_write after");
    buf_fini(&raw);
    return after != before;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    enum err_code code = ERR_NONE;
    struct msg *m, *again;
    struct buf out;
    struct err e;
    int rc;

    if (!ready) {
        mime_init();
        ready = 1;
    }
    if (size > (1 << 18) ||
        (m = fuzz_msg(&fuzz_limits, (const char *)data, size)) == NULL)
        return 0;
    rc = fuzz_once(m, &code);
    if (rc == 1) {
        buf_init(&out, 0);
        if (msg_write(m, &out, &e) < 0)
            fuzz_fail("msg_write");
        if ((again = fuzz_msg(&fuzz_limits, out.data ? out.data : "",
                              out.len)) != NULL) {
            (void)fuzz_once(again, &code);
            msg_free(again);
        }
        buf_fini(&out);
    }
    msg_free(m);
    return 0;
}
