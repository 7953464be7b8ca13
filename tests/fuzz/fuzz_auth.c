/*
 * fuzz_auth - the SASL PLAIN and base64 decoders that read AUTH lines
 *
 * Each line of the input is what a client may send after "AUTH PLAIN":
 * it goes through auth_b64_decode() and auth_sasl_plain_decode(). The
 * whole input, as octets, goes through auth_b64_encode() and back.
 * Besides the sanitizers, the target traps when a promise is broken:
 * decoded base64 that does not encode back to exactly the line (only
 * canonical base64 is accepted), a round trip that changes the octets,
 * or a SASL result with an empty user or password, a user name with a
 * control character, or strings that overrun the buffers given.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LINE_MAX 16384

static void
fuzz_line(const char *s, size_t len)
{
    static const size_t sizes[] = {1, 4, 16, AUTH_USER_MAX + 1,
                                   AUTH_PASS_MAX + 1};
    unsigned char raw[FUZZ_LINE_MAX];
    char line[FUZZ_LINE_MAX + 1], back[FUZZ_LINE_MAX + 4];
    char user[AUTH_PASS_MAX + 1], pass[AUTH_PASS_MAX + 1];
    size_t i, k;
    long n;

    if (len > FUZZ_LINE_MAX)
        return;
    n = auth_b64_decode(s, len, raw, sizeof(raw));
    if (n >= 0) {
        if ((size_t)n > len / 4 * 3 ||
            auth_b64_encode(raw, (size_t)n, back, sizeof(back)) != (long)len ||
            memcmp(back, s, len) != 0)
            __builtin_trap();
    }
    /* auth_sasl_plain_decode() reads a C string, as the server has it */
    if (memchr(s, '\0', len) != NULL)
        return;
    memcpy(line, s, len);
    line[len] = '\0';
    for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        memset(user, 'U', sizeof(user));
        memset(pass, 'P', sizeof(pass));
        if (auth_sasl_plain_decode(line, user, pass, sizes[k]) != 0)
            continue;
        if (n < 0 || user[0] == '\0' || pass[0] == '\0' ||
            memchr(user, '\0', sizes[k]) == NULL ||
            memchr(pass, '\0', sizes[k]) == NULL ||
            strlen(user) > AUTH_USER_MAX || strlen(pass) > AUTH_PASS_MAX)
            __builtin_trap();
        for (i = 0; user[i] != '\0'; i++)
            if ((unsigned char)user[i] < ' ' || user[i] == 0x7f)
                __builtin_trap();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data, *p, *nl;
    unsigned char *raw;
    char *enc;
    size_t cap;
    long n;

    for (p = text; p < text + size; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + size - p));
        if (nl == NULL)
            nl = text + size;
        fuzz_line(p, (size_t)(nl - p));
    }
    if (size > 64 * 1024)
        return 0;
    cap = (size + 2) / 3 * 4 + 1;
    enc = malloc(cap);
    raw = malloc(size + 1);
    if (enc == NULL || raw == NULL) {
        free(enc);
        free(raw);
        return 0;
    }
    n = auth_b64_encode(data, size, enc, cap);
    if (n < 0 || (size_t)n != cap - 1 || enc[n] != '\0' ||
        auth_b64_decode(enc, (size_t)n, raw, size) != (long)size ||
        (size > 0 && memcmp(raw, data, size) != 0) ||
        (size > 0 && auth_b64_encode(data, size, enc, cap - 1) != -1))
        __builtin_trap();
    free(enc);
    free(raw);
    return 0;
}
