/*
 * fuzz_track_token - the tracking tokens' decoder, on any bytes
 *
 * The handlers of /o/, /c/ and /u/ decode whatever follows the prefix of
 * a request path; that text is the input. track_token_open() must
 * refuse it or fill every field as a NUL-terminated string within its
 * bound and without a control octet, and a click URL it accepts must
 * have been made by track_token_make() (under the target's fixed key):
 * remaking the token from the fields must give back the same text. The
 * input is then also split into fields for track_token_make(), whose
 * token must open and give the same fields back, and must stop opening
 * when one octet of it (chosen by the input) changes.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/track_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char fuzz_key_data[32] = "fuzz key of thirty-two octets...";
static const struct track_key fuzz_key = {fuzz_key_data, 32, NULL};

static void
fuzz_check_field(const char *s, size_t max)
{
    size_t i;

    for (i = 0; i <= max; i++)
        if (s[i] == '\0')
            return;
        else if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            __builtin_trap();
    __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct track_token t, u;
    static char tok[TRACK_TOKEN_MAX], again[TRACK_TOKEN_MAX];
    struct err e;
    size_t i, start, k;
    int n;

    if (track_token_open(&fuzz_key, (const char *)data, size, &t, &e) == 0) {
        fuzz_check_field(t.qid, TRACK_QID_MAX);
        fuzz_check_field(t.msgid, TRACK_MSGID_MAX);
        fuzz_check_field(t.sender, TRACK_ADDR_MAX);
        fuzz_check_field(t.rcpt, TRACK_ADDR_MAX);
        fuzz_check_field(t.url, TRACK_URL_MAX);
        n = track_token_make(&fuzz_key, &t, again, sizeof(again), &e);
        if (n < 0 || (size_t)n != size || memcmp(again, data, size) != 0)
            __builtin_trap();
    }

    /* The input as fields: qid, msgid, sender, rcpt, url split at NUL. */
    memset(&t, 0, sizeof(t));
    t.kind = size > 0 && data[0] % 3 == 0   ? TRACK_OPEN
             : size > 0 && data[0] % 3 == 1 ? TRACK_CLICK
                                            : TRACK_UNSUB;
    t.made = size > 4 ? (unsigned long)data[1] << 24 | data[2] << 16 |
                            data[3] << 8 | data[4]
                      : 0;
    t.index = size > 5 ? data[5] : 0;
    t.count = size > 6 ? data[6] : 0;
    {
        char *f[5] = {t.qid, t.msgid, t.sender, t.rcpt, t.url};
        static const size_t max[5] = {TRACK_QID_MAX, TRACK_MSGID_MAX,
                                      TRACK_ADDR_MAX, TRACK_ADDR_MAX,
                                      TRACK_URL_MAX};

        start = size > 7 ? 7 : size;
        for (k = 0; k < 5 && start <= size; k++) {
            for (i = start; i < size && data[i] != 0; i++)
                ;
            if (i - start <= max[k]) {
                memcpy(f[k], data + start, i - start);
                f[k][i - start] = '\0';
            }
            start = i + 1;
        }
    }
    n = track_token_make(&fuzz_key, &t, tok, sizeof(tok), &e);
    if (n < 0)
        return 0; /* a control octet in a field: refused, as it must be */
    if (track_token_open(&fuzz_key, tok, (size_t)n, &u, &e) < 0 ||
        u.kind != t.kind || u.made != (t.made & 0xffffffffUL) ||
        u.index != t.index || u.count != t.count ||
        strcmp(u.qid, t.qid) != 0 || strcmp(u.msgid, t.msgid) != 0 ||
        strcmp(u.sender, t.sender) != 0 || strcmp(u.rcpt, t.rcpt) != 0 ||
        strcmp(u.url, t.url) != 0)
        __builtin_trap();
    if (n > 0 && size > 0) {
        k = data[size - 1] % (size_t)n;
        tok[k] = tok[k] == 'A' ? 'B' : 'A';
        if (track_token_open(&fuzz_key, tok, (size_t)n, &u, &e) == 0)
            __builtin_trap();
    }
    return 0;
}
