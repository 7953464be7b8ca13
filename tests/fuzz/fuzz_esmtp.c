/*
 * fuzz_esmtp - ESMTP parameter strings and xtext as a client sends them
 *
 * The input, up to its first NUL, is a MAIL or RCPT parameter string as
 * the SMTP server would store it. It goes through every reader of
 * util/esmtp: esmtp_param() for the DSN keywords, the NOTIFY check and
 * query, the ORCPT split, picking and dropping parameters, and both
 * xtext decoders over the whole input and over each value. Besides the
 * sanitizers, the target traps when a promise is broken: a value found
 * outside the string, a decoded xtext with a control character, or one
 * that encoded and decoded again is not the same; a NOTIFY value that
 * passes the check but asks for nothing (NEVER aside) or, for NEVER,
 * asks for something; picked parameters that read back differently
 * from the input; a string without DSN parameters that still holds one
 * of them, or "dropped" said when nothing was.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/esmtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_keys[] = {"RET", "ENVID", "NOTIFY", "ORCPT",
                                        NULL};

/* fuzz_xtext - in[0..len) through the strict decoder; what it accepts
 * must be free of controls and survive encode + decode unchanged. */
static void
fuzz_xtext(const char *in, size_t len)
{
    char out[1024], again[1024];
    struct buf b;
    struct err e;
    size_t i;

    if (esmtp_xtext_decode(in, len, out, sizeof(out)) == 0) {
        for (i = 0; out[i] != '\0'; i++)
            if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                __builtin_trap();
        buf_init(&b, 0);
        if (esmtp_xtext_encode(&b, out, &e) < 0) {
            buf_fini(&b);
            return; /* out of memory */
        }
        if (esmtp_xtext_decode(b.data ? b.data : "", b.len, again,
                               sizeof(again)) < 0 ||
            strcmp(out, again) != 0)
            __builtin_trap();
        buf_fini(&b);
    }
    (void)esmtp_xforward_decode(in, len, out, sizeof(out), 0);
    if (esmtp_xforward_decode(in, len, out, sizeof(out), 1) == 0)
        for (i = 0; out[i] != '\0'; i++)
            if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                __builtin_trap();
}

static void
fuzz_params(const char *params)
{
    size_t plen = strlen(params), len, i, tl;
    const char *v;
    char picked[512], addr[1024];
    char *without;
    int dropped;

    for (i = 0; fuzz_keys[i] != NULL; i++) {
        if ((v = esmtp_param(params, fuzz_keys[i], &len)) == NULL)
            continue;
        if (v < params || v + len > params + plen)
            __builtin_trap();
        fuzz_xtext(v, len);
    }
    if ((v = esmtp_param(params, "NOTIFY", &len)) != NULL &&
        esmtp_notify_check(v, len) == 0) {
        int s = esmtp_notify_wants(params, "SUCCESS"),
            f = esmtp_notify_wants(params, "FAILURE"),
            d = esmtp_notify_wants(params, "DELAY");
        /* checked: NEVER comes alone ("NEVER" or "NEVER,") */
        int never = len >= 5 && strncasecmp(v, "NEVER", 5) == 0;

        if (never ? s || f || d : !(s || f || d))
            __builtin_trap();
    }
    if ((v = esmtp_param(params, "ORCPT", &len)) != NULL &&
        esmtp_orcpt_split(v, len, &tl, addr, sizeof(addr)) == 0 &&
        (tl == 0 || tl >= len || v[tl] != ';'))
        __builtin_trap();
    esmtp_params_pick(params, fuzz_keys, picked, sizeof(picked));
    for (i = 0; fuzz_keys[i] != NULL; i++) {
        size_t plen2;
        const char *a = esmtp_param(params, fuzz_keys[i], &len);
        const char *b = esmtp_param(picked, fuzz_keys[i], &plen2);

        /* picked holds a prefix of the keys, each with its value */
        if (b != NULL && (a == NULL || len != plen2 || memcmp(a, b, len) != 0))
            __builtin_trap();
    }
    if ((without = esmtp_params_without(params, fuzz_keys, &dropped)) == NULL)
        return;
    for (i = 0; fuzz_keys[i] != NULL; i++)
        if (esmtp_param(without, fuzz_keys[i], &len) != NULL ||
            (!dropped && esmtp_param(params, fuzz_keys[i], &len) != NULL))
            __builtin_trap();
    if (strlen(without) > plen)
        __builtin_trap();
    free(without);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size > 4096 || (s = malloc(size + 1)) == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_xtext(s, size);
    fuzz_params(s);
    free(s);
    return 0;
}
