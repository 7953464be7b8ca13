/*
 * fuzz_archive_record - the archive's record parser (arc_record_parse)
 *
 * The whole input is one sealed record, as a store hands it back. Besides
 * the sanitizers, the target traps when a promise breaks: a failure
 * without a reason; a success whose message is not the size its meta
 * says, whose recipients are not nrcpts non-NULL strings, or that does
 * not seal again to the same octets (the parser accepts only what
 * arc_record_seal() writes). An encrypted record (encrypt_to) must hand
 * back a payload; it is not sealed again (that needs the key).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/archive/archive_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char hash[ARC_HASH_LEN];
    struct arc_seal_in in;
    struct arc_rec r;
    struct buf again;
    struct err e;
    size_t i;

    err_clear(&e);
    if (arc_record_parse(data, size, &r, &e) < 0) {
        if (e.text[0] == '\0')
            __builtin_trap();
        arc_rec_free(&r);
        return 0;
    }
    if (r.kind == ARC_KIND_MESSAGE && r.meta.encrypted_to != NULL) {
        if (r.msg.len == 0 || r.meta.encrypted_to[0] == '\0')
            __builtin_trap();
        arc_rec_free(&r);
        return 0;
    }
    if (r.kind == ARC_KIND_MESSAGE) {
        if (r.msg.len != r.meta.size)
            __builtin_trap();
        for (i = 0; i < r.meta.nrcpts; i++)
            if (r.meta.rcpts[i] == NULL)
                __builtin_trap();
    }
    /* Sealed again from what was read, the body may compress
     * differently (another level), so only the header and meta are
     * compared: the octets before the body length. */
    memset(&in, 0, sizeof(in));
    in.kind = r.kind;
    in.writer = r.writer;
    in.seq = r.seq;
    in.prev = r.prev;
    in.meta = &r.meta;
    in.x = &r.x;
    in.data = r.msg.data != NULL ? r.msg.data : "";
    in.len = r.msg.len;
    in.level = 1;
    buf_init(&again, 0);
    if (arc_record_seal(&in, &again, hash, &e) < 0)
        __builtin_trap();
    {
        size_t wl = strlen(r.writer), ml;

        ml = (size_t)data[ARC_HEAD_LEN + wl] << 24 |
             (size_t)data[ARC_HEAD_LEN + wl + 1] << 16 |
             (size_t)data[ARC_HEAD_LEN + wl + 2] << 8 |
             data[ARC_HEAD_LEN + wl + 3];
        if (again.len < ARC_HEAD_LEN + wl + 4 + ml ||
            memcmp(again.data, data, ARC_HEAD_LEN + wl + 4 + ml) != 0)
            __builtin_trap();
    }
    buf_fini(&again);
    arc_rec_free(&r);
    return 0;
}
