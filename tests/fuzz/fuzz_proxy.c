/*
 * fuzz_proxy - PROXY protocol headers as a balancer (or an attacker
 * on a listed address) sends them
 *
 * The input goes through proxy_parse() whole and at every length up to
 * the first answer, so that each partial header is seen as the reader
 * would see it. Besides the sanitizers, the target traps when a promise
 * is broken: a header length past the input, a refusal without a
 * reason, a length that changes when more octets follow it, an accepted
 * non-local header whose source address does not parse back, or a v1
 * header accepted over PROXY_V1_MAX octets.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char bin[sizeof(struct in6_addr)];
    struct proxy_hdr h;
    char why[160];
    size_t k;
    int whole, rc;

    if (size > 4096)
        return 0;
    whole = proxy_parse(data, size, &h, why, sizeof(why));
    if (whole > 0 && (size_t)whole > size)
        abort();
    if (whole == PROXY_BAD && why[0] == '\0')
        abort();
    if (whole > 0 && !h.local && inet_pton(h.family, h.src, bin) != 1)
        abort();
    if (whole > 0 && h.version == 1 && whole > PROXY_V1_MAX)
        abort();
    for (k = 0; k <= size && k < 700; k++) {
        rc = proxy_parse(data, k, &h, why, sizeof(why));
        if (rc > 0 && rc != whole)
            abort();
        if (rc != PROXY_MORE)
            break;
    }
    return 0;
}
