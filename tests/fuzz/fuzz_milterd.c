/*
 * fuzz_milterd - the milter front end's session, through random event
 * sequences
 *
 * The input is read as a program of milter events, one after the other:
 * an opcode octet, then its arguments (strings are a length octet and
 * that many octets, cut at a NUL as libmilter would deliver them). The
 * events go straight to the milterd_* calls libmilter's callbacks make,
 * in any order and any number, against a chain (tests/milter/testedit
 * stages and a rewrite stage, picked by the envelope sender) that edits
 * duplicate headers, inserts, adds, replaces bodies over 64 KB, rewrites
 * the envelope and gives every verdict. The MTA is tests/milter/mtamodel
 * in strict mode: a header change or delete that names no field, or an
 * insert past the end, aborts, so an index computed wrongly is a crash,
 * not just a wrong edit; the model may also refuse a request.
 */
#include "config.h"

#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../milter/mtamodel.h"
#include "chain/conf.h"
#include "filters/filters.h"
#include "cli/parts.h"
#include "util/log.h"
#include "milterd/milterd.h"
#include "msg/mime.h"

#define FUZZ_STR 255

struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static struct conf *fuzz_cf;
static struct mtamodel fuzz_mm;

static const char *const fuzz_senders[] = {
    "<dup@example.org>",    "<ins@example.org>",
    "<big@example.org>",    "<rej@example.org>",
    "<hold@example.org>",   "<drop@example.org>",
    "<alice@corp.example>", "<>",
    "<bob@example.net>",    "user",
};
static const char *const fuzz_names[] = {
    "X-A", "x-a", "From", "To", "Subject", "Received", "X-I", "X-N", "Cc",
};
static const char *const fuzz_macros[] = {
    "i", "{i}", "{auth_authen}", "{daemon_name}", "{tls_version}", "j",
};

static void
fuzz_file(const char *dir, const char *name, const char *text)
{
    char path[1400];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((fp = fopen(path, "w")) == NULL)
        abort();
    fputs(text, fp);
    fclose(fp);
}

static void
fuzz_setup(void)
{
    static char dir[] = "/tmp/fuzz-milterd-XXXXXX";
    char sub[600], conf[600], text[1024];
    struct err e;

    mime_init();
    log_open("fuzz_milterd", LOG_MAIL, LOG_SINK_NONE);
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(sub, sizeof(sub), "%s/chain.d", dir);
    mkdir(sub, 0700);
    fuzz_file(dir, "rules",
              "/^([^@]+)@corp\\.example$/ ${1}@example.com\n"
              "/^bob@example\\.net$/ robert@example.net\n");
    snprintf(text, sizeof(text),
             "stage = rewrite\nsender_rules = %s/rules\n"
             "recipient_rules = %s/rules\nheader_rules = %s/rules\n",
             dir, dir, dir);
    fuzz_file(sub, "10-rw.conf", text);
    fuzz_file(sub, "20-dup.conf",
              "stage = testedit\nmatch_sender = dup@example.org\n"
              "header_change = X-A:2:two\nheader_delete = X-A:1\n"
              "on_error = continue\n");
    fuzz_file(sub, "21-dup.conf",
              "stage = testedit\nmatch_sender = dup@example.org\n"
              "header_insert = 2:X-A:new\nheader_delete = x-a:3\n"
              "on_error = continue\n");
    fuzz_file(sub, "22-ins.conf",
              "stage = testedit\nmatch_sender = ins@example.org\n"
              "header_insert = 1:X-I:i\nheader_add = X-N:n\n"
              "header_change = X-N:1:changed\non_error = continue\n");
    fuzz_file(sub, "23-ins.conf",
              "stage = testedit\nmatch_sender = ins@example.org\n"
              "header_delete = X-I:1\nheader_insert = 0:X-I:top\n"
              "on_error = continue\n");
    fuzz_file(sub, "24-big.conf",
              "stage = testedit\nmatch_sender = big@example.org\n"
              "body_size = 70000\nheader_delete = Received:1\n"
              "on_error = continue\n");
    fuzz_file(sub, "25-rej.conf",
              "stage = testedit\nmatch_sender = rej@example.org\n"
              "verdict = reject\nreply = 550 5.7.1 no %s\n");
    fuzz_file(sub, "26-hold.conf",
              "stage = testedit\nmatch_sender = hold@example.org\n"
              "verdict = quarantine\nheader_add = X-Held:yes\n");
    fuzz_file(sub, "27-drop.conf",
              "stage = testedit\nmatch_sender = drop@example.org\n"
              "verdict = discard\n");
    snprintf(text, sizeof(text),
             "chain_directory = chain.d\nmilter_listen = unix:%s/s\n"
             "message_size_limit = 200k\nheader_limit = 64\n",
             dir);
    fuzz_file(dir, "relaychain.conf", text);
    snprintf(conf, sizeof(conf), "%s/relaychain.conf", dir);
    /* The built-in types and testedit (tests/milter/testregistry.c). */
    registry_set(&flt_registry);
    if ((fuzz_cf = conf_load(conf, parts_all, &e)) == NULL) {
        fprintf(stderr, "fuzz_milterd: %s\n", e.text);
        abort();
    }
}

static int
fuzz_byte(struct fuzz_in *in)
{
    int c;

    if (in->n == 0)
        return -1;
    c = in->p[0];
    in->p++;
    in->n--;
    return c;
}

/* fuzz_str - a length octet and that many octets, cut at a NUL. */
static void
fuzz_str(struct fuzz_in *in, char *out)
{
    int len = fuzz_byte(in);
    size_t n;

    if (len < 0)
        len = 0;
    n = (size_t)len < in->n ? (size_t)len : in->n;
    memcpy(out, in->p, n);
    out[n] = '\0';
    in->p += n;
    in->n -= n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct milterd_session *s;
    char a[FUZZ_STR + 1], b[FUZZ_STR + 1], c[FUZZ_STR + 1];
    struct err e;
    int op;

    if (fuzz_cf == NULL)
        fuzz_setup();
    mtamodel_init(&fuzz_mm, "", "<>", NULL);
    fuzz_mm.strict = 1;
    s = milterd_session_new(
        fuzz_cf, NULL, &mtamodel_ops, &fuzz_mm,
        SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT |
            SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE |
            SMFIF_ADDRCPT_PAR,
        size > 0 && (data[0] & 0x80) ? 0 : SMFIP_HDR_LEADSPC, &e);
    if (s == NULL)
        abort();
    while ((op = fuzz_byte(&in)) >= 0) {
        switch (op % 11) {
        case 0: {
            int k = fuzz_byte(&in);

            fuzz_str(&in, b);
            milterd_macro(
                s,
                fuzz_macros[(k < 0 ? 0 : k) %
                            (sizeof(fuzz_macros) / sizeof(fuzz_macros[0]))],
                b);
            break;
        }
        case 1: {
            struct sockaddr_in6 sin6;
            struct sockaddr_in sin;
            int fam = fuzz_byte(&in);

            fuzz_str(&in, a);
            memset(&sin, 0, sizeof(sin));
            memset(&sin6, 0, sizeof(sin6));
            sin.sin_family = AF_INET;
            sin6.sin6_family = AF_INET6;
            if (in.n >= 16) {
                memcpy(&sin.sin_addr, in.p, 4);
                memcpy(&sin6.sin6_addr, in.p, 16);
            }
            milterd_connect(s, a[0] ? a : NULL,
                            fam < 0 || fam % 3 == 0 ? NULL
                            : fam % 3 == 1          ? (struct sockaddr *)&sin
                                           : (struct sockaddr *)&sin6);
            break;
        }
        case 2:
            fuzz_str(&in, a);
            milterd_helo(s, a);
            break;
        case 3:
        case 4: {
            int k = fuzz_byte(&in);
            char *argv[3] = {a, NULL, NULL};

            if (k >= 0 && (size_t)(k & 0x3f) <
                              sizeof(fuzz_senders) / sizeof(fuzz_senders[0]))
                snprintf(a, sizeof(a), "%s", fuzz_senders[k & 0x3f]);
            else
                fuzz_str(&in, a);
            if (k >= 0 && (k & 0x40)) {
                fuzz_str(&in, b);
                argv[1] = b;
            }
            if (op % 11 == 3) {
                mtamodel_fini(&fuzz_mm);
                mtamodel_init(&fuzz_mm, "", a, NULL);
                fuzz_mm.strict = 1;
                milterd_mail(s, argv);
            } else {
                milterd_rcpt(s, argv);
            }
            break;
        }
        case 5: {
            int k = fuzz_byte(&in);

            if (k >= 0 && (size_t)(k & 0x7f) <
                              sizeof(fuzz_names) / sizeof(fuzz_names[0]))
                snprintf(a, sizeof(a), "%s", fuzz_names[k & 0x7f]);
            else
                fuzz_str(&in, a);
            fuzz_str(&in, c);
            milterd_header(s, a, c);
            mtamodel_field(&fuzz_mm, a, c);
            break;
        }
        case 6:
            milterd_eoh(s);
            break;
        case 7: {
            int len = fuzz_byte(&in);
            size_t n = len < 0 ? 0 : (size_t)len * 8;

            if (n > in.n)
                n = in.n;
            milterd_body(s, in.p, n);
            in.p += n;
            in.n -= n;
            break;
        }
        case 8:
            (void)milterd_eom(s);
            mtamodel_fini(&fuzz_mm);
            mtamodel_init(&fuzz_mm, "", "<>", NULL);
            fuzz_mm.strict = 1;
            break;
        case 9:
            milterd_abort(s);
            break;
        case 10: {
            int k = fuzz_byte(&in);

            fuzz_mm.fail_at = k < 0 ? 0 : (unsigned)k % 8;
            break;
        }
        }
    }
    (void)milterd_eom(s);
    milterd_session_free(s);
    mtamodel_fini(&fuzz_mm);
    return 0;
}
