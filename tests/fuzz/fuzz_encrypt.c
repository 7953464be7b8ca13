/*
 * fuzz_encrypt - the encrypt stage over random MIME
 *
 * Each input is a message from alice@example.com to carol@example.org,
 * whose policy is required S/MIME; an S/MIME certificate for her (and a
 * CA) is made in the process once (tests/unit/unit_enc.h). The input's
 * last octet picks one of two stages: plain, or with protect_subject,
 * subject_tag and trigger_header. Besides the sanitizers, the target
 * traps when the stage breaks a promise:
 *   - run() fails with an error that is not temporary;
 *   - the message goes on in clear: a continue verdict leaves a body
 *     that is not application/pkcs7-mime, unless the stage found the
 *     input encrypted already (labelled so, and so inside) and left it
 *     untouched;
 *   - the encrypted body does not decrypt with carol's key, or what it
 *     decrypts to does not end with the input's body (line ends made
 *     CRLF);
 *   - the output does not parse cleanly as MIME.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/cms.h>

#include "filters/encrypt/encrypt_int.h"
#include "filters/filters.h"
#include "util/cfg.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "tests/unit/unit_enc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(what)                                                       \
    do {                                                                      \
        fprintf(stderr, "fuzz_encrypt: %s\n", (what));                        \
        __builtin_trap();                                                     \
    } while (0)

static const struct msg_limits fuzz_limits = {1 << 20, 1000, 998, 20, 200};

static struct stage fuzz_stages[2];
static int fuzz_ready;
static char fuzz_dir[256];
static EVP_PKEY *fuzz_key;

static void
fuzz_cleanup(void)
{
    int i;

    for (i = 0; i < 2; i++) {
        flt_encrypt_type.free(&fuzz_stages[i]);
        cfg_free(fuzz_stages[i].cfg);
    }
    EVP_PKEY_free(fuzz_key);
    unit_enc_rmtree(fuzz_dir);
}

static void
fuzz_setup(void)
{
    const struct cfg_option *tables[2] = {flt_encrypt_type.options, NULL};
    char conf[2048];
    struct err e;
    int i;

    mime_init();
    fuzz_key = unit_enc_pki(fuzz_dir, sizeof(fuzz_dir));
    for (i = 0; i < 2; i++) {
        struct stage *st = &fuzz_stages[i];

        snprintf(conf, sizeof(conf),
                 "default_policy = required\nsmime_cert_dir = %s/certs\n"
                 "smime_ca_file = %s/ca.pem\n%s",
                 fuzz_dir, fuzz_dir,
                 i ? "protect_subject = yes\nsubject_tag = [secure]\n"
                     "trigger_header = X-Encrypt: yes\n"
                   : "");
        st->type = &flt_encrypt_type;
        st->name = "encrypt";
        st->flags = flt_encrypt_type.flags;
        if ((st->cfg = cfg_parse_text("fuzz.conf", conf, strlen(conf), &e)) ==
                NULL ||
            cfg_validate(st->cfg, tables, &e) < 0 ||
            flt_encrypt_type.init(st, st->cfg, &e) < 0) {
            fprintf(stderr, "fuzz_encrypt: %s\n", e.text);
            __builtin_trap();
        }
    }
    atexit(fuzz_cleanup);
    fuzz_ready = 1;
}

/* fuzz_crlf - s with every LF that no CR precedes made CRLF. */
static void
fuzz_crlf(const char *s, size_t n, struct buf *out)
{
    struct err e;
    size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r') &&
            buf_putc(out, '\r', &e) < 0)
            fuzz_fail("buffer");
        if (buf_putc(out, s[i], &e) < 0)
            fuzz_fail("buffer");
    }
}

/* fuzz_decrypt - the CMS in base64 body decrypted with carol's key. */
static void
fuzz_decrypt(const char *body, size_t len, struct buf *out)
{
    BIO *in = BIO_new_mem_buf(body, (int)len), *b64 = BIO_new(BIO_f_base64());
    BIO *plain = BIO_new(BIO_s_mem());
    CMS_ContentInfo *cms;
    struct err e;
    char *p;
    long n;

    in = BIO_push(b64, in);
    if ((cms = d2i_CMS_bio(in, NULL)) == NULL)
        fuzz_fail("the body is not CMS");
    if (CMS_decrypt(cms, fuzz_key, NULL, NULL, plain, CMS_BINARY) != 1)
        fuzz_fail("the body does not decrypt with carol's key");
    n = BIO_get_mem_data(plain, &p);
    if (buf_append(out, p, (size_t)n, &e) < 0)
        fuzz_fail("buffer");
    CMS_ContentInfo_free(cms);
    BIO_free_all(in);
    BIO_free(plain);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct stage *st;
    const struct msg_edit *ed;
    const struct mime *mm;
    const char *ct, *body;
    struct msg *m, *m2;
    struct verdict v;
    struct buf in_body, plain, out;
    struct err e;
    size_t blen;
    int was_encrypted;

    if (!fuzz_ready)
        fuzz_setup();
    st = &fuzz_stages[size > 0 && (data[size - 1] & 1)];
    if ((m = msg_new(&fuzz_limits, MSG_FE_SMTP, &e)) == NULL)
        return 0;
    if (msg_env_sender(m, "alice@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, "carol@example.org", NULL, &e) < 0 ||
        msg_parse(m, (const char *)data, size, &e) < 0) {
        msg_free(m);
        return 0;
    }
    was_encrypted = flt_enc_is_encrypted(msg_header_get(m, "Content-Type", 1));
    buf_init(&in_body, 0);
    body = msg_body(m, &blen);
    fuzz_crlf(body, blen, &in_body);

    memset(&v, 0, sizeof(v));
    err_clear(&e);
    if (flt_encrypt_type.run(st, m, &v, &e) < 0) {
        if (!err_is_temporary(&e)) {
            fprintf(stderr, "fuzz_encrypt: run: %s\n", e.text);
            __builtin_trap();
        }
        goto done;
    }
    if (v.kind != VERDICT_CONTINUE)
        goto done;
    if (strcmp(v.note, "already encrypted, passed as is") == 0) {
        if (!was_encrypted)
            fuzz_fail("passed as encrypted a message not labelled so");
        if (msg_journal(m, &ed) != 0)
            fuzz_fail("edited mail already encrypted");
        goto done;
    }
    ct = msg_header_get(m, "Content-Type", 1);
    if (ct == NULL || strstr(ct, "application/pkcs7-mime") == NULL ||
        msg_header_name_count(m, "Content-Type") != 1)
        fuzz_fail("a message went on in clear");
    buf_init(&plain, 0);
    body = msg_body(m, &blen);
    fuzz_decrypt(body, blen, &plain);
    if (plain.len < in_body.len || memcmp(plain.data + plain.len - in_body.len,
                                          in_body.data, in_body.len) != 0)
        fuzz_fail("the decrypted entity does not end with the body");
    buf_fini(&plain);

    buf_init(&out, 0);
    if (msg_write(m, &out, &e) < 0)
        fuzz_fail("msg_write failed");
    if ((m2 = msg_new(&fuzz_limits, MSG_FE_SMTP, &e)) == NULL)
        fuzz_fail("msg_new");
    if (msg_parse(m2, out.data, out.len, &e) < 0)
        fuzz_fail("the output does not parse");
    if ((mm = msg_mime(m2, &e)) == NULL || mime_flags(mm) != 0)
        fuzz_fail("the output does not parse cleanly");
    msg_free(m2);
    buf_fini(&out);

done:
    buf_fini(&in_body);
    msg_free(m);
    return 0;
}
