/*
 * bench_dkim - the dkim stage's signing rate in-process, next to the raw
 *     private-key operation and to libopendkim signing alone
 *
 *     bench_dkim -c relaychain.conf -k KEY.pem -d DOMAIN -s SELECTOR
 *                [-n ITERATIONS] message.eml
 *
 * Three loops over the same message (given with CRLF line ends, as SMTP
 * delivers it) in the same run:
 *   stage   msg_parse + chain_run over the configured chain (a dkim stage:
 *           7-bit check, signing, self-check over the final bytes) +
 *           msg_write, as the front ends use it; the stage's own run()
 *           time is read from the chain's per-step clock as well;
 *   raw     the private-key operation alone on a SHA-256 digest with one
 *           reused context, as "openssl speed" measures it;
 *   libdkim dkim_sign + the message's bytes + dkim_eom + dkim_getsighdr
 *           with the same key, nothing else: what libopendkim costs by
 *           itself (it parses the PEM key again for every message).
 * Stage and raw take turns, one iteration each, so that whatever else the
 * machine does weighs on both alike. Prints microseconds and messages
 * per second for each. scripts/bench/dkim runs this and "openssl speed"
 * and prints the ratios.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <opendkim/dkim.h>

#include "filters/filters.h"
#include "util/buf.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "cli/parts.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

#include "bench.h"

/* stage_once - parse, run the chain, serialize; -1 unless signed. *run_us
 * gets the time of the stages' run() calls. */
static int
stage_once(const struct conf *cf, const struct buf *in, struct buf *out,
           double *run_us)
{
    struct chain_result res;
    struct msg *m;
    struct err e;
    size_t i;
    int rc = -1;

    buf_reset(out);
    if ((m = msg_new(&cf->limits, MSG_FE_CLI, &e)) == NULL)
        return -1;
    /* Submitted here, as relaychain filter takes it: ours to sign. */
    if (msg_env_origin(m, 1, NULL, &e) < 0 ||
        msg_env_sender(m, "alice@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, "bob@example.net", NULL, &e) < 0 ||
        msg_parse(m, in->data, in->len, &e) < 0 ||
        chain_run(cf->chain, m, &res, &e) < 0)
        goto out;
    if (res.verdict.kind == VERDICT_CONTINUE &&
        msg_header_name_count(m, "DKIM-Signature") > 0)
        rc = msg_write(m, out, &e);
    else
        fprintf(stderr, "bench_dkim: not signed: %s %s\n",
                verdict_kind_name(res.verdict.kind),
                res.nsteps ? res.steps[0].verdict.note : "");
    for (i = 0; i < res.nsteps; i++)
        *run_us += (double)res.steps[i].usec;
    chain_result_fini(&res);
out:
    if (rc < 0 && e.text[0])
        fprintf(stderr, "bench_dkim: %s\n", e.text);
    msg_free(m);
    return rc;
}

/* raw_ctx - a context that signs SHA-256 digests with the RSA key pkey,
 * made once as "openssl speed" does; NULL on failure. */
static EVP_PKEY_CTX *
raw_ctx(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(pkey, NULL);

    if (pc == NULL || EVP_PKEY_sign_init(pc) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) <= 0) {
        EVP_PKEY_CTX_free(pc);
        return NULL;
    }
    return pc;
}

/* raw_once - one private-key operation on a digest: RSA through the
 * reused context, Ed25519 (whose one-shot API needs a digest context)
 * through a reused EVP_MD_CTX. */
static int
raw_once(EVP_PKEY_CTX *pc, EVP_MD_CTX *mc)
{
    static const unsigned char digest[32] = {1, 2, 3};
    unsigned char sig[1024];
    size_t len = sizeof(sig);

    if (mc != NULL)
        return EVP_DigestSign(mc, sig, &len, digest, sizeof(digest)) == 1
                   ? 0
                   : -1;
    return EVP_PKEY_sign(pc, sig, &len, digest, sizeof(digest)) == 1 ? 0 : -1;
}

/* libdkim_once - libopendkim alone over the CRLF message. */
static int
libdkim_once(DKIM_LIB *lib, const struct flt_dkim_key *key, const char *d,
             const char *s, const struct buf *wire)
{
    unsigned char *hdr;
    DKIM_STAT st;
    size_t hlen;
    DKIM *dkim;
    int rc = -1;

    dkim = dkim_sign(
        lib, (const unsigned char *)"bench", NULL,
        (dkim_sigkey_t)flt_dkim_key_pem_text(key), (const unsigned char *)s,
        (const unsigned char *)d, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
        strcmp(flt_dkim_key_type(key), "rsa") == 0 ? DKIM_SIGN_RSASHA256
                                                   : DKIM_SIGN_ED25519SHA256,
        -1, &st);
    if (dkim == NULL)
        return -1;
    if (dkim_chunk(dkim, (unsigned char *)wire->data, wire->len) ==
            DKIM_STAT_OK &&
        dkim_chunk(dkim, NULL, 0) == DKIM_STAT_OK &&
        dkim_eom(dkim, NULL) == DKIM_STAT_OK &&
        dkim_getsighdr_d(dkim, 16, &hdr, &hlen) == DKIM_STAT_OK)
        rc = 0;
    else
        fprintf(stderr, "bench_dkim: libopendkim: %s\n", dkim_geterror(dkim));
    dkim_free(dkim);
    return rc;
}

int
main(int argc, char **argv)
{
    const char *conf_path = NULL, *key_path = NULL, *d = NULL, *s = NULL;
    struct flt_dkim_key *key;
    struct buf raw, in, out;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *pc = NULL;
    EVP_MD_CTX *mc = NULL;
    FILE *fp;
    struct conf *cf;
    DKIM_LIB *lib;
    long iterations = 500, k;
    double t0, t1, us_stage = 0, us_raw = 0, us_run = 0, us_lib;
    struct err e;
    size_t i;
    int c;

    while ((c = getopt(argc, argv, "c:d:k:n:s:")) != -1) {
        if (c == 'c')
            conf_path = optarg;
        else if (c == 'k')
            key_path = optarg;
        else if (c == 'd')
            d = optarg;
        else if (c == 's')
            s = optarg;
        else if (c == 'n')
            iterations = strtol(optarg, NULL, 10);
        else
            return 2;
    }
    if (conf_path == NULL || key_path == NULL || d == NULL || s == NULL ||
        optind + 1 != argc || iterations <= 0) {
        fprintf(stderr, "usage: bench_dkim -c CONF -k KEY -d DOMAIN -s "
                        "SELECTOR [-n N] MESSAGE\n");
        return 2;
    }
    log_open("bench_dkim", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    registry_set(&flt_registry);
    if ((cf = conf_load(conf_path, parts_all, &e)) == NULL ||
        (key = flt_dkim_key_load(key_path, 1, &e)) == NULL) {
        fprintf(stderr, "bench_dkim: %s\n", e.text);
        return 1;
    }
    if ((lib = dkim_init(NULL, NULL)) == NULL)
        return 1;
    buf_init(&raw, 0);
    buf_init(&in, 0);
    buf_init(&out, 0);
    if (bench_read_file(argv[optind], &raw) < 0)
        return 1;
    /* The CRLF form, as SMTP delivers it. */
    for (i = 0; i < raw.len; i++) {
        if (raw.data[i] == '\n' && (i == 0 || raw.data[i - 1] != '\r'))
            buf_putc(&in, '\r', &e);
        buf_putc(&in, raw.data[i], &e);
    }
    if ((fp = fopen(key_path, "r")) == NULL ||
        (pkey = PEM_read_PrivateKey(fp, NULL, NULL, NULL)) == NULL ||
        (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519
             ? (mc = EVP_MD_CTX_new()) == NULL ||
                   EVP_DigestSignInit(mc, NULL, NULL, NULL, pkey) != 1
             : (pc = raw_ctx(pkey)) == NULL)) {
        fprintf(stderr, "bench_dkim: %s: cannot set up the raw signer\n",
                key_path);
        return 1;
    }
    fclose(fp);

    for (k = 0; k < iterations / 10 + 1; k++) /* warm up */
        if (stage_once(cf, &in, &out, &us_run) < 0 || raw_once(pc, mc) < 0 ||
            libdkim_once(lib, key, d, s, &in) < 0)
            return 1;
    us_run = 0;
    for (k = 0; k < iterations; k++) {
        t0 = bench_now_us();
        if (stage_once(cf, &in, &out, &us_run) < 0)
            return 1;
        t1 = bench_now_us();
        if (raw_once(pc, mc) < 0)
            return 1;
        us_stage += t1 - t0;
        us_raw += bench_now_us() - t1;
    }
    us_stage /= (double)iterations;
    us_raw /= (double)iterations;
    us_run /= (double)iterations;
    t0 = bench_now_us();
    for (k = 0; k < iterations; k++)
        if (libdkim_once(lib, key, d, s, &in) < 0)
            return 1;
    us_lib = (bench_now_us() - t0) / (double)iterations;

    printf("%s %s octets=%zu chain_us=%.1f chain_per_s=%.0f "
           "stage_us=%.1f stage_per_s=%.0f raw_us=%.1f raw_per_s=%.0f "
           "libdkim_us=%.1f libdkim_per_s=%.0f\n",
           flt_dkim_key_alg(key), key_path, in.len, us_stage, 1e6 / us_stage,
           us_run, 1e6 / us_run, us_raw, 1e6 / us_raw, us_lib, 1e6 / us_lib);
    EVP_MD_CTX_free(mc);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pkey);
    buf_fini(&raw);
    buf_fini(&in);
    buf_fini(&out);
    dkim_close(lib);
    flt_dkim_key_free(key);
    conf_free(cf);
    mime_shutdown();
    return 0;
}
