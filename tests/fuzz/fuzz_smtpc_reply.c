/*
 * fuzz_smtpc_reply - the next-hop client's reply parser
 *
 * The input goes to smtpc_reply_parse() as the octets a relay sent.
 * Besides the sanitizers, the target traps when a promise is broken: a
 * result other than -1, 0 or 1; octets reported consumed for an
 * incomplete or refused reply; a complete reply that does not end in LF
 * within the input and 64 KiB, whose code is not the three digits it
 * starts with (2xx to 5xx), or whose text is not a NUL-terminated string
 * without control characters other than TAB; a complete reply that reads
 * differently when given alone, or that is already complete one octet
 * earlier; and an incomplete one whose first half is already refused.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "net/smtpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct smtpc_reply r, again;
    size_t used = 99, used2 = 99, i, tlen;
    int rc, code;

    rc = smtpc_reply_parse(text, size, &r, &used);
    if (rc < -1 || rc > 1)
        __builtin_trap();
    if (rc != 1) {
        if (used != 0)
            __builtin_trap();
        if (rc == 0 && size > 1 &&
            smtpc_reply_parse(text, size / 2, &again, &used2) != 0)
            __builtin_trap();
        return 0;
    }
    if (used < 4 || used > size || used > 64 * 1024 || text[used - 1] != '\n')
        __builtin_trap();
    code = (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
    if (r.code != code || code < 200 || code > 559)
        __builtin_trap();
    tlen = strnlen(r.text, sizeof(r.text));
    if (tlen == sizeof(r.text))
        __builtin_trap();
    for (i = 0; i < tlen; i++)
        if (((unsigned char)r.text[i] < 0x20 && r.text[i] != '\t') ||
            r.text[i] == 0x7f)
            __builtin_trap();
    if (smtpc_reply_parse(text, used, &again, &used2) != 1 || used2 != used ||
        again.code != r.code || strcmp(again.text, r.text) != 0)
        __builtin_trap();
    if (smtpc_reply_parse(text, used - 1, &again, &used2) != 0)
        __builtin_trap();
    return 0;
}
