/*
 * fuzz_dkimsig - the dkim stage's signer and verifier over random messages
 *
 * The input is a message; its line ends are made CRLF, as the stage makes
 * them before signing, and an input whose first line is a continuation
 * (which no parsed message has) gets a header field put in front. The
 * first octet picks the canonicalizations. The message is signed with a
 * fixed Ed25519 key, the new field is put on top as the front ends put it,
 * and the result must verify: the target traps when the verifier rejects
 * what the signer made (with the reason in the trap's message), or when
 * the signer fails on a message that fits in memory. The raw input is
 * also given to the verifier as it is, which must not crash whatever it
 * holds.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "filters/dkim/dkim_sig.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX (256 * 1024)

static const char *const sign_hdrs[] = {"From", "To", "Subject", "Date", NULL};
static const char *const oversign_hdrs[] = {"From", "Subject", NULL};

/* fuzz_key - the fixed key pair, made on the first call and kept for the
 * process's life (a fuzz target runs one input at a time). */
static const struct flt_dkim_sig_key *
fuzz_key(void)
{
    static const unsigned char seed[32] = {
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
        0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
        0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
    static struct flt_dkim_sig_key *key;
    static EVP_PKEY *priv, *pub;
    unsigned char raw[32];
    size_t len = sizeof(raw);
    struct err e;

    if (key != NULL)
        return key;
    priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed,
                                        sizeof(seed));
    if (priv == NULL || EVP_PKEY_get_raw_public_key(priv, raw, &len) != 1 ||
        (pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
                                           len)) == NULL ||
        (key = flt_dkim_sig_key_new(priv, pub, &e)) == NULL)
        abort();
    return key;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct flt_dkim_sig_key *key = fuzz_key();
    struct flt_dkim_sign s = {
        .key = key,
        .domain = "example.com",
        .selector = "fz",
        .sign_hdrs = sign_hdrs,
        .oversign_hdrs = oversign_hdrs,
        .time = 1795680000,
    };
    struct buf wire, value, out;
    char why[256];
    struct err e;
    size_t i;
    int rc;

    if (size == 0 || size > FUZZ_MAX)
        return 0;
    s.hcanon = data[0] & 1 ? FLT_DKIM_RELAXED : FLT_DKIM_SIMPLE;
    s.bcanon = data[0] & 2 ? FLT_DKIM_RELAXED : FLT_DKIM_SIMPLE;
    data++;
    size--;

    /* Whatever the bytes, the verifier only answers. */
    (void)flt_dkim_sig_check(key, "example.com", "fz", (const char *)data,
                             size, NULL, why, sizeof(why), &e);

    buf_init(&wire, 0);
    buf_init(&value, 0);
    buf_init(&out, 0);
    if (size > 0 && (data[0] == ' ' || data[0] == '\t'))
        buf_puts(&wire, "X-Fuzz: 1\r\n", &e);
    for (i = 0; i < size; i++) {
        if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
            buf_putc(&wire, '\r', &e);
        buf_putc(&wire, data[i], &e);
    }
    if (flt_dkim_sig_make(&s, wire.data ? wire.data : "", wire.len, NULL,
                          &value, &e) < 0) {
        fprintf(stderr, "fuzz_dkimsig: signing failed: %s\n", e.text);
        __builtin_trap();
    }
    buf_puts(&out, "DKIM-Signature: ", &e);
    for (i = 0; i < value.len; i++) {
        if (value.data[i] == '\n')
            buf_putc(&out, '\r', &e);
        buf_putc(&out, value.data[i], &e);
    }
    buf_puts(&out, "\r\n", &e);
    buf_append(&out, wire.data ? wire.data : "", wire.len, &e);
    rc = flt_dkim_sig_check(key, "example.com", "fz", out.data, out.len, NULL,
                            why, sizeof(why), &e);
    if (rc != 0) {
        fprintf(stderr, "fuzz_dkimsig: own signature rejected: %s\n",
                rc < 0 ? e.text : why);
        __builtin_trap();
    }
    buf_fini(&wire);
    buf_fini(&value);
    buf_fini(&out);
    return 0;
}
