/*
 * fuzz_bounce - the bounce and complaint reader and the VERP token, on
 * any bytes
 *
 * The input is a message that came back to the VERP domain: it goes
 * through bounce_parse() under small limits (depth 4, 50 parts). The
 * target traps when a recipient is not a NUL-terminated string of its
 * buffer, when more than BOUNCE_RCPT_MAX come back, or when a status is
 * not "d.d.d". The same bytes are then looked for VERP addresses
 * (verp_find: a token found lies inside the input and is 32 long) and
 * their first 32 octets checked as a token (verp_check: one that
 * passes gives a queue id of 12 hex digits).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msg/mime.h"
#include "queue/bounce.h"
#include "queue/verp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bounce_report fuzz_rep;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    struct msg_limits lim = {size + 1, 1000, 100000, 4, 50};
    struct verp_key key;
    unsigned char hash[VERP_HASH_LEN];
    const char *tok;
    char qid[13];
    size_t i, tl;
    struct err e;

    if (!ready) {
        mime_init();
        ready = 1;
    }
    err_clear(&e);
    if (bounce_parse((const char *)data, size, &lim, "verp.example",
                     "X-Campaign-Id", &fuzz_rep, &e) == 0) {
        if (fuzz_rep.n > BOUNCE_RCPT_MAX)
            __builtin_trap();
        for (i = 0; i < fuzz_rep.n; i++) {
            const struct bounce_rcpt *r = &fuzz_rep.r[i];

            if (memchr(r->addr, '\0', sizeof(r->addr)) == NULL ||
                memchr(r->diag, '\0', sizeof(r->diag)) == NULL ||
                memchr(r->status, '\0', sizeof(r->status)) == NULL)
                __builtin_trap();
            if (r->status[0] != '\0' &&
                (strchr("245", r->status[0]) == NULL || r->status[1] != '.'))
                __builtin_trap();
        }
    }
    memset(&key, 0x5a, sizeof(key));
    key.len = 32;
    if (verp_find((const char *)data, size, "verp.example", &tok, &tl) &&
        (tl != VERP_TOKEN_LEN || tok < (const char *)data ||
         tok + tl > (const char *)data + size))
        __builtin_trap();
    /* a token that verifies gives a queue id of 12 hex digits (for
     * random input: practically never reached) */
    if (size >= VERP_TOKEN_LEN &&
        verp_check(&key, (const char *)data, VERP_TOKEN_LEN, qid, hash) &&
        (strlen(qid) != 12 || strspn(qid, "0123456789ABCDEF") != 12))
        __builtin_trap();
    return 0;
}
