/*
 * bench_encrypt - the encrypt stage in-process, next to its engines'
 *     bare calls, gpgsm through GPGME, and a gpg process per message
 *
 *     bench_encrypt -g GNUPGHOME -p PGP_RCPT -c CERT_DIR -a CA_FILE
 *         -s SMIME_RCPT [-G GPGSM_HOME] [-n N] [-N N_CMS] [-w] message.eml...
 *
 * For each message, in the same run and on the same bytes, N times (the
 * in-process CMS paths N_CMS times, default 20 N):
 *   pgp stage      msg_parse + the stage's run() to PGP_RCPT's key
 *                  (lookup in the GnuPG home, PGP/MIME) + msg_write
 *   pgp run()      the time of those spent inside run() alone (the
 *                  chain parses and writes the message for every stage)
 *   pgp bare       gpgme_op_encrypt of the message's octets to the same
 *                  key, one context and the key found once
 *   smime stage    the same to SMIME_RCPT's certificate (OpenSSL CMS)
 *   smime bare     CMS_encrypt + DER of the same octets, the certificate
 *                  read once; bare+b64 also puts the DER in base64
 *                  lines, as an S/MIME body must be
 *   smime gpgsm    gpgme_op_encrypt with the CMS protocol (gpgsm) from
 *                  GPGSM_HOME, where the certificate was imported; only
 *                  with -G
 *   gpg process    "gpg --encrypt --armor" as a script gateway runs it:
 *                  one process per message, stdin from the file
 * With -w, glibc's heap is kept warm (no trimming, no mmap for blocks
 * under 64 MB), as a long-running daemon's heap is under steady load;
 * without it every ~100 KB buffer is fresh pages from the kernel.
 * Prints microseconds per message, messages per second and the stage's
 * ratio to its bare engine call (target 0.85 or more). Wall-clock time
 * on a busy machine wanders: run it twice and compare.
 */
#include "config.h"

#include <fcntl.h>
#include <gpgme.h>
#include <malloc.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/pem.h>

#include "filters/filters.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

#include "bench.h"

extern char **environ;

static const struct msg_limits bench_limits = {64 << 20, 10000, 998, 50,
                                               10000};

static int
load_stage(struct stage *st, const char *conf)
{
    const struct cfg_option *tables[2] = {flt_encrypt_type.options, NULL};
    struct err e;

    memset(st, 0, sizeof(*st));
    st->type = &flt_encrypt_type;
    st->name = "encrypt";
    st->flags = flt_encrypt_type.flags;
    if ((st->cfg = cfg_parse_text("bench.conf", conf, strlen(conf), &e)) ==
            NULL ||
        cfg_validate(st->cfg, tables, &e) < 0 ||
        flt_encrypt_type.init(st, st->cfg, &e) < 0) {
        fprintf(stderr, "bench_encrypt: %s\n", e.text);
        return -1;
    }
    return 0;
}

/* stage_once - one message through the stage; -1 unless it encrypted. */
static double run_us; /* time inside run(), summed by stage_once */

static int
stage_once(const struct stage *st, const struct buf *in, const char *rcpt,
           struct buf *out)
{
    double t0;
    struct verdict v;
    struct msg *m;
    struct err e;
    int rc = -1;

    buf_reset(out);
    if ((m = msg_new(&bench_limits, MSG_FE_CLI, &e)) == NULL)
        return -1;
    if (msg_env_sender(m, "alice@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, rcpt, NULL, &e) < 0 ||
        msg_parse(m, in->data, in->len, &e) < 0)
        goto done;
    memset(&v, 0, sizeof(v));
    t0 = bench_now_us();
    rc = flt_encrypt_type.run(st, m, &v, &e);
    run_us += bench_now_us() - t0;
    if (rc < 0) {
        rc = -1;
        fprintf(stderr, "bench_encrypt: %s\n", e.text);
        goto done;
    }
    if (v.kind != VERDICT_CONTINUE || (strstr(v.note, " pgp 0x") == NULL &&
                                       strstr(v.note, " smime serial=") ==
                                           NULL)) {
        fprintf(stderr, "bench_encrypt: not encrypted: %s\n", v.note);
        goto done;
    }
    rc = msg_write(m, out, &e);
done:
    msg_free(m);
    return rc;
}

/* One recipient's key, found once, for the bare calls; each call makes
 * its context, as the stage does per message. */
struct gpg_bare {
    gpgme_ctx_t ctx;
    gpgme_protocol_t proto;
    const char *home;
    gpgme_key_t keys[2];
};

static int
gpg_bare_open(struct gpg_bare *g, gpgme_protocol_t proto, const char *home,
              const char *rcpt)
{
    gpgme_error_t ge;

    memset(g, 0, sizeof(*g));
    g->proto = proto;
    g->home = home;
    if ((ge = gpgme_new(&g->ctx)) != 0 ||
        (ge = gpgme_set_protocol(g->ctx, proto)) != 0 ||
        (ge = gpgme_ctx_set_engine_info(g->ctx, proto, NULL, home)) != 0) {
        fprintf(stderr, "bench_encrypt: gpgme: %s\n", gpgme_strerror(ge));
        return -1;
    }
    gpgme_set_armor(g->ctx, proto == GPGME_PROTOCOL_OpenPGP);
    if ((ge = gpgme_op_keylist_start(g->ctx, rcpt, 0)) != 0 ||
        (ge = gpgme_op_keylist_next(g->ctx, &g->keys[0])) != 0) {
        fprintf(stderr, "bench_encrypt: no key for %s in %s: %s\n", rcpt,
                home, gpgme_strerror(ge));
        return -1;
    }
    gpgme_op_keylist_end(g->ctx);
    gpgme_release(g->ctx);
    g->ctx = NULL;
    return 0;
}

static int
gpg_bare_once(struct gpg_bare *g, const struct buf *in)
{
    gpgme_data_t din, dout;
    gpgme_error_t ge;
    gpgme_ctx_t ctx;
    size_t len = 0;
    char *p;

    if (gpgme_new(&ctx) != 0)
        return -1;
    /* The stage made its home GPGME's OpenPGP default (without it each
     * context runs "gpg --version"): the bare OpenPGP call uses it the
     * same way; gpgsm's home is set on the context. */
    if (gpgme_set_protocol(ctx, g->proto) != 0 ||
        (g->proto != GPGME_PROTOCOL_OpenPGP &&
         gpgme_ctx_set_engine_info(ctx, g->proto, NULL, g->home) != 0) ||
        gpgme_data_new_from_mem(&din, in->data, in->len, 0) != 0) {
        gpgme_release(ctx);
        return -1;
    }
    if (gpgme_data_new(&dout) != 0) {
        gpgme_data_release(din);
        gpgme_release(ctx);
        return -1;
    }
    gpgme_set_armor(ctx, g->proto == GPGME_PROTOCOL_OpenPGP);
    ge = gpgme_op_encrypt(ctx, g->keys, GPGME_ENCRYPT_ALWAYS_TRUST, din,
                          dout);
    gpgme_release(ctx);
    gpgme_data_release(din);
    p = gpgme_data_release_and_get_mem(dout, &len);
    gpgme_free(p);
    if (ge != 0 || len == 0) {
        fprintf(stderr, "bench_encrypt: gpgme encrypt: %s\n",
                gpgme_strerror(ge));
        return -1;
    }
    return 0;
}

static void
gpg_bare_close(struct gpg_bare *g)
{
    if (g->keys[0] != NULL)
        gpgme_key_unref(g->keys[0]);
    if (g->ctx != NULL)
        gpgme_release(g->ctx);
}

/* cms_bare_once - CMS_encrypt and DER; with b64, the DER also put in
 * base64 lines, which an S/MIME body needs. */
static int
cms_bare_once(X509 *cert, const struct buf *in, int b64)
{
    STACK_OF(X509) *rc = sk_X509_new_null();
    BIO *bin = BIO_new_mem_buf(in->data, (int)in->len);
    BIO *der = BIO_new(BIO_s_mem());
    CMS_ContentInfo *cms = NULL;
    int ok = -1;

    if (rc != NULL && bin != NULL && der != NULL && sk_X509_push(rc, cert) &&
        (cms = CMS_encrypt(rc, bin, EVP_aes_256_cbc(), CMS_BINARY)) != NULL &&
        i2d_CMS_bio(der, cms) == 1)
        ok = 0;
    if (ok == 0 && b64) {
        const unsigned char *p;
        long len = BIO_get_mem_data(der, (char **)&p), off;
        unsigned char *text = malloc((size_t)len / 57 * 78 + 80);

        if (text == NULL)
            ok = -1;
        for (off = 0; text != NULL && off < len; off += 57) {
            int w = EVP_EncodeBlock(text + off / 57 * 78, p + off,
                                    len - off < 57 ? (int)(len - off) : 57);

            memcpy(text + off / 57 * 78 + w, "\r\n", 2);
        }
        free(text);
    }
    CMS_ContentInfo_free(cms);
    BIO_free(bin);
    BIO_free(der);
    sk_X509_free(rc);
    return ok;
}

/* gpg_process_once - gpg --encrypt over path, output to /dev/null. */
static int
gpg_process_once(const char *home, const char *rcpt, const char *path)
{
    const char *argv[] = {"gpg",      "--homedir",     home,
                          "--batch",  "--no-tty",      "--quiet",
                          "--trust-model", "always",   "--armor",
                          "--encrypt", "-r",           rcpt,
                          NULL};
    posix_spawn_file_actions_t fa;
    int status, rc;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, path, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return -1;
    return 0;
}

static void
report(const char *what, const char *file, double us, int n, double base)
{
    double per = us / n;

    if (base > 0)
        printf("  %-14s %9.0f us/msg %8.1f msg/s  %.2fx of bare\n", what, per,
               1e6 / per, base / per);
    else
        printf("  %-14s %9.0f us/msg %8.1f msg/s\n", what, per, 1e6 / per);
    (void)file;
}

static void
usage(void)
{
    fprintf(stderr, "usage: bench_encrypt -g GNUPGHOME -p PGP_RCPT -c "
                    "CERT_DIR -a CA_FILE -s SMIME_RCPT [-G GPGSM_HOME] "
                    "[-n N] [-N N_CMS] [-w] message.eml...\n");
}

int
main(int argc, char **argv)
{
    const char *gh = NULL, *prcpt = NULL, *cdir = NULL, *ca = NULL,
               *srcpt = NULL, *gsm = NULL;
    char conf[4096], cert_path[4096];
    struct stage pst, sst;
    struct gpg_bare gp, gs;
    struct buf in, out;
    X509 *cert;
    FILE *fp;
    double t0, t_stage, t_bare, t_b64;
    int c, n = 50, ncms = 0, i, f, rc = 0, bad = 0, warm = 0;

    while ((c = getopt(argc, argv, "g:p:c:a:s:G:n:N:w")) != -1) {
        switch (c) {
        case 'g': gh = optarg; break;
        case 'p': prcpt = optarg; break;
        case 'c': cdir = optarg; break;
        case 'a': ca = optarg; break;
        case 's': srcpt = optarg; break;
        case 'G': gsm = optarg; break;
        case 'n': n = (int)strtol(optarg, NULL, 10); break;
        case 'N': ncms = (int)strtol(optarg, NULL, 10); break;
        case 'w': warm = 1; break;
        default: usage(); return 2;
        }
    }
    if (gh == NULL || prcpt == NULL || cdir == NULL || ca == NULL ||
        srcpt == NULL || optind >= argc || n < 1) {
        usage();
        return 2;
    }
    if (ncms < 1)
        ncms = 20 * n;
    if (warm && (mallopt(M_TRIM_THRESHOLD, 64 << 20) == 0 ||
                 mallopt(M_MMAP_THRESHOLD, 64 << 20) == 0)) {
        fprintf(stderr, "bench_encrypt: mallopt failed\n");
        return 1;
    }
    log_open("bench_encrypt", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    gpgme_check_version(NULL);
    snprintf(conf, sizeof(conf), "default_policy = required\npgp_home = %s\n",
             gh);
    if (load_stage(&pst, conf) < 0)
        return 1;
    snprintf(conf, sizeof(conf),
             "default_policy = required\nsmime_cert_dir = %s\n"
             "smime_ca_file = %s\n",
             cdir, ca);
    if (load_stage(&sst, conf) < 0)
        return 1;
    if (gpg_bare_open(&gp, GPGME_PROTOCOL_OpenPGP, gh, prcpt) < 0)
        return 1;
    if (gsm != NULL && gpg_bare_open(&gs, GPGME_PROTOCOL_CMS, gsm, srcpt) < 0)
        return 1;
    snprintf(cert_path, sizeof(cert_path), "%s/%.*s.pem", cdir,
             (int)(strchr(srcpt, '@') - srcpt), srcpt);
    if ((fp = fopen(cert_path, "r")) == NULL ||
        (cert = PEM_read_X509(fp, NULL, NULL, NULL)) == NULL) {
        fprintf(stderr, "bench_encrypt: cannot read %s\n", cert_path);
        return 1;
    }
    fclose(fp);
    buf_init(&out, 0);
    for (f = optind; f < argc; f++) {
        buf_init(&in, 0);
        if (bench_read_file(argv[f], &in) < 0)
            return 1;
        printf("%s (%zu octets), %d messages each:\n", argv[f], in.len, n);
        /* Warm up each path once, checking it works. */
        if (stage_once(&pst, &in, prcpt, &out) < 0 ||
            gpg_bare_once(&gp, &in) < 0 ||
            stage_once(&sst, &in, srcpt, &out) < 0 ||
            cms_bare_once(cert, &in, 1) < 0 ||
            (gsm != NULL && gpg_bare_once(&gs, &in) < 0) ||
            gpg_process_once(gh, prcpt, argv[f]) < 0) {
            fprintf(stderr, "bench_encrypt: a path failed on %s\n", argv[f]);
            rc = 1;
            continue;
        }
        t0 = bench_now_us();
        for (i = 0; i < n; i++)
            bad += gpg_bare_once(&gp, &in) < 0;
        t_bare = bench_now_us() - t0;
        t0 = bench_now_us();
        run_us = 0;
        for (i = 0; i < n; i++)
            bad += stage_once(&pst, &in, prcpt, &out) < 0;
        t_stage = bench_now_us() - t0;
        report("pgp bare", argv[f], t_bare, n, 0);
        report("pgp stage", argv[f], t_stage, n, t_bare / n);
        report("pgp run()", argv[f], run_us, n, t_bare / n);
        t0 = bench_now_us();
        for (i = 0; i < n; i++)
            bad += gpg_process_once(gh, prcpt, argv[f]) < 0;
        report("gpg process", argv[f], bench_now_us() - t0, n, 0);

        t0 = bench_now_us();
        for (i = 0; i < ncms; i++)
            bad += cms_bare_once(cert, &in, 1) < 0;
        t_b64 = bench_now_us() - t0;
        t0 = bench_now_us();
        for (i = 0; i < ncms; i++)
            bad += cms_bare_once(cert, &in, 0) < 0;
        t_bare = bench_now_us() - t0;
        t0 = bench_now_us();
        run_us = 0;
        for (i = 0; i < ncms; i++)
            bad += stage_once(&sst, &in, srcpt, &out) < 0;
        t_stage = bench_now_us() - t0;
        report("smime bare", argv[f], t_bare, ncms, 0);
        report("smime stage", argv[f], t_stage, ncms, t_bare / ncms);
        report("smime run()", argv[f], run_us, ncms, t_bare / ncms);
        report("smime bare+b64", argv[f], t_b64, ncms, 0);
        printf("  %-14s %.2fx of bare+b64\n", "smime stage",
               t_b64 / t_stage);
        if (gsm != NULL) {
            t0 = bench_now_us();
            for (i = 0; i < n; i++)
                bad += gpg_bare_once(&gs, &in) < 0;
            report("smime gpgsm", argv[f], bench_now_us() - t0, n, 0);
        }
        buf_fini(&in);
        if (bad > 0) {
            fprintf(stderr, "bench_encrypt: %d calls failed: the figures "
                            "above are not valid\n", bad);
            rc = 1;
            bad = 0;
        }
    }
    buf_fini(&out);
    X509_free(cert);
    gpg_bare_close(&gp);
    if (gsm != NULL)
        gpg_bare_close(&gs);
    flt_encrypt_type.free(&pst);
    cfg_free(pst.cfg);
    flt_encrypt_type.free(&sst);
    cfg_free(sst.cfg);
    mime_shutdown();
    return rc;
}
