/*
 * test_antivirus - the antivirus stage with libclamav and the project's
 *     test signatures (tests/data/antivirus/db)
 *
 * Every case loads the stage from configuration text, as the chain does,
 * builds a message around test content (EICAR, put together from two
 * halves at run time; the body and logical patterns of the test set) and
 * checks the verdict, the SMTP reply, the log note and, with add_header,
 * the header edits. Further tables cover the configuration errors, the
 * clamd answer parser, libclamav's heuristic names and the boundary
 * finder; the last cases swap databases under the watcher while eight
 * threads scan, and check that no scan fails and that the new
 * signatures take over.
 */
#include "config.h"

#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <clamav.h>
#include <gmime/gmime.h>

#include "unit.h"

#include "filters/filters.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

static const char eicar_a[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
static const char eicar_b[] = "-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/* A zip whose one member is encrypted (password "secret"). */
static const char enc_zip_b64[] =
    "UEsDBAoACQAAAAAAIVyLrAB4LAAAACAAAAAJAAAAbm90ZXMudHh0TXDrzM2kmIgo"
    "aEqKDZG3bDEn8awqT+5/NT2vbBznfrTxKGnBeRZhxak5QaFQSwcIi6wAeCwAAAAg"
    "AAAAUEsBAh4DCgAJAAAAAAAhXIusAHgsAAAAIAAAAAkAAAAAAAAAAQAAAKSBAAAA"
    "AG5vdGVzLnR4dFBLBQYAAAAAAQABADcAAABjAAAAAAA=";

/* The same with an encrypted member called invoice.pdf.exe. */
static const char encx_zip_b64[] =
    "UEsDBAoACQAAAAAAIVzGNuLTGgAAAA4AAAAPAAAAaW52b2ljZS5wZGYuZXhlbMQm"
    "YGCGo3fTZn5S52gDGeRF36B1YfCSK8FQSwcIxjbi0xoAAAAOAAAAUEsBAh4DCgAJ"
    "AAAAAAAhXMY24tMaAAAADgAAAA8AAAAAAAAAAQAAAKSBAAAAAGludm9pY2UucGRm"
    "LmV4ZVBLBQYAAAAAAQABAD0AAABXAAAAAAA=";

static const struct msg_limits test_limits = {
    10 * 1024 * 1024, 1000, 998, 20, 1000,
};

static char tmp_dir[256], db_dir[512], rules_path[512];
static char eicar[128], eicar_b64[256];

static const char rules[] =
    "# banned attachment names\n"
    "/^readme\\.exe$/                        OK\n"
    "/\\.[a-z0-9]{2,4}\\.(exe|scr|com|pif|bat|cmd|js|vbs)$/ double extension\n"
    "/\\.(exe|scr|pif|bat|cmd|vbs)$/         executable\n";

static int
setup(void **state)
{
    gchar *b64;

    (void)state;
    log_open("test_antivirus", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    snprintf(eicar, sizeof(eicar), "%s%s", eicar_a, eicar_b);
    b64 = g_base64_encode((const guchar *)eicar, strlen(eicar));
    snprintf(eicar_b64, sizeof(eicar_b64), "%s", b64);
    g_free(b64);
    unit_data("antivirus/db", db_dir, sizeof(db_dir));
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL ||
        unit_write(tmp_dir, "banned.pcre", rules, rules_path,
                   sizeof(rules_path)) == NULL)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(rules_path);
    rmdir(tmp_dir);
    return 0;
}

/* stage_load - an antivirus stage from configuration text, as the chain
 * builds it. "@DB@" and "@RULES@" stand for the test database and the
 * banned-name rules. */
static int
stage_load(struct stage *st, const char *conf, struct err *e)
{
    const struct cfg_option *tables[2] = {flt_antivirus_type.options, NULL};
    char name[512], text[4096];
    const char *p;
    size_t n = 0;

    for (p = conf; *p != '\0' && n + 600 < sizeof(text);) {
        if (strncmp(p, "@DB@", 4) == 0) {
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s", db_dir);
            p += 4;
        } else if (strncmp(p, "@RULES@", 7) == 0) {
            n +=
                (size_t)snprintf(text + n, sizeof(text) - n, "%s", rules_path);
            p += 7;
        } else {
            text[n++] = *p++;
        }
    }
    text[n] = '\0';
    memset(st, 0, sizeof(*st));
    snprintf(name, sizeof(name), "%s/05-antivirus.conf", tmp_dir);
    st->type = &flt_antivirus_type;
    st->name = "antivirus";
    st->flags = flt_antivirus_type.flags;
    if ((st->cfg = cfg_parse_text(name, text, strlen(text), e)) == NULL)
        return -1;
    if (cfg_validate(st->cfg, tables, e) < 0 ||
        flt_antivirus_type.init(st, st->cfg, e) < 0) {
        cfg_free(st->cfg);
        st->cfg = NULL;
        return -1;
    }
    return 0;
}

static void
stage_unload(struct stage *st)
{
    flt_antivirus_type.free(st);
    cfg_free(st->cfg);
}

/* expand - the message template with "@EICAR@", "@EICAR64@" and
 * "@ENCZIP@" replaced. */
static void
expand(const char *tpl, struct buf *out)
{
    struct err e;
    const char *p;

    for (p = tpl; *p != '\0';) {
        if (strncmp(p, "@EICAR@", 7) == 0) {
            buf_puts(out, eicar, &e);
            p += 7;
        } else if (strncmp(p, "@EICAR64@", 9) == 0) {
            buf_puts(out, eicar_b64, &e);
            p += 9;
        } else if (strncmp(p, "@ENCXZIP@", 9) == 0) {
            buf_puts(out, encx_zip_b64, &e);
            p += 9;
        } else if (strncmp(p, "@ENCZIP@", 8) == 0) {
            buf_puts(out, enc_zip_b64, &e);
            p += 8;
        } else {
            buf_putc(out, *p++, &e);
        }
    }
}

static struct msg *
msg_build(const char *tpl)
{
    struct buf text;
    struct msg *m;
    struct err e;

    buf_init(&text, 0);
    expand(tpl, &text);
    m = msg_new(&test_limits, MSG_FE_SMTP, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "QID1", "192.0.2.1", NULL, "client", 0, NULL, &e), 0);
    assert_int_equal(msg_env_sender(m, "alice@example.com", NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, "bob@example.org", NULL, &e), 0);
    if (msg_parse(m, text.data, text.len, &e) < 0)
        fail_msg("msg_parse: %s", e.text);
    buf_fini(&text);
    return m;
}

#define HDR "From: alice@example.com\nTo: bob@example.org\nSubject: t\n"
#define MIXED                                                                 \
    HDR "MIME-Version: 1.0\nContent-Type: multipart/mixed; "                  \
        "boundary=\"b1\"\n\n"                                                 \
        "--b1\nContent-Type: text/plain\n\nsee attached\n"

static const char msg_clean[] = HDR "\nNothing to see here.\n";
static const char msg_plain[] = HDR "\nhello\n@EICAR@\nbye\n";
static const char msg_b64[] =
    MIXED "--b1\nContent-Type: application/octet-stream\n"
          "Content-Disposition: attachment; filename=\"eicar.txt\"\n"
          "Content-Transfer-Encoding: base64\n\n@EICAR64@\n--b1--\n";
static const char msg_nested[] =
    MIXED "--b1\nContent-Type: message/rfc822\n\n"
          "From: carol@example.net\nSubject: inner\nMIME-Version: 1.0\n"
          "Content-Type: multipart/mixed; boundary=\"in\"\n\n"
          "--in\nContent-Type: text/plain\n\ninner\n"
          "--in\nContent-Type: application/octet-stream\n"
          "Content-Transfer-Encoding: base64\n\n@EICAR64@\n--in--\n--b1--\n";
static const char msg_dup_boundary[] =
    HDR "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"x\"\n\n"
        "--x\nContent-Type: multipart/mixed; boundary=\"x\"\n\n"
        "--x\nContent-Type: text/plain\n\nhidden\n"
        "--x\nContent-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: base64\n\n@EICAR64@\n--x--\n--x--\n";
/* Two boundary parameters: libclamav and GMime both read "aaa". */
static const char msg_dup_param[] =
    HDR "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"aaa\"; boundary=\"bbb\"\n\n"
        "--aaa\nContent-Type: text/plain\n\nvisible\n--aaa--\n"
        "--bbb\nContent-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: base64\n\n@EICAR64@\n--bbb--\n";
/* Two Content-Type fields: libclamav reads the first, GMime the last. */
static const char msg_two_types[] =
    HDR "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"aaa\"\n"
        "Content-Type: multipart/mixed; boundary=\"bbb\"\n\n"
        "--aaa\nContent-Type: text/plain\n\nvisible\n--aaa--\n"
        "--bbb\nContent-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: base64\n\n@EICAR64@\n--bbb--\n";
static const char msg_body_sig[] =
    HDR "\nmarker: RELAYCHAIN-TEST-BODY-SIGNATURE-7F3A\n";
static const char msg_logical[] =
    HDR "\nfirst: relaychain-ldb-part-one\nsecond: relaychain-ldb-part-two\n";
static const char msg_half[] = HDR "\nfirst: relaychain-ldb-part-one\n";
static const char msg_enc_zip[] =
    MIXED "--b1\nContent-Type: application/zip; name=\"notes.zip\"\n"
          "Content-Transfer-Encoding: base64\n\n@ENCZIP@\n--b1--\n";
static const char msg_encx_zip[] =
    MIXED "--b1\nContent-Type: application/zip; name=\"invoice.zip\"\n"
          "Content-Transfer-Encoding: base64\n\n@ENCXZIP@\n--b1--\n";
static const char msg_exe_2231[] =
    MIXED "--b1\nContent-Type: application/octet-stream\n"
          "Content-Disposition: attachment;\n"
          " filename*0*=utf-8''Rechnung%20M%C3%A4rz.p;\n"
          " filename*1*=df.exe\n\nMZ\n--b1--\n";
static const char msg_exe_2047[] =
    MIXED "--b1\nContent-Type: application/octet-stream;\n"
          " name=\"=?UTF-8?B?aW52b2ljZS5wZGYuc2Ny?=\"\n\nMZ\n--b1--\n";
static const char msg_exe_trailing_dot[] =
    MIXED "--b1\nContent-Type: application/octet-stream\n"
          "Content-Disposition: attachment; filename=\"setup.exe. \"\n\n"
          "MZ\n--b1--\n";
static const char msg_exe_name_only[] =
    MIXED "--b1\nContent-Type: application/octet-stream; name=\"run.bat\"\n"
          "Content-Disposition: attachment; filename=\"run.txt\"\n\n"
          "echo\n--b1--\n";
static const char msg_exe_allowed[] =
    MIXED "--b1\nContent-Type: application/octet-stream\n"
          "Content-Disposition: attachment; filename=\"README.exe\"\n\n"
          "MZ\n--b1--\n";
static const char msg_pdf[] =
    MIXED "--b1\nContent-Type: application/pdf\n"
          "Content-Disposition: attachment; filename=\"report.pdf\"\n\n"
          "%PDF-1.4\n--b1--\n";
static const char msg_msdownload[] =
    MIXED "--b1\nContent-Type: application/x-msdownload\n"
          "Content-Disposition: attachment; filename=\"tool\"\n\nMZ\n--b1--\n";
static const char msg_forged_status[] =
    "From: alice@example.com\nX-Virus-Status: Clean\n"
    "X-Virus-Scanned: by a friend\nX-Virus-Status: Clean too\n"
    "Subject: t\n\nhello\n@EICAR@\n";

struct run_case {
    const char *name;
    const char *conf;
    const char *msg;
    enum verdict_kind kind;
    const char *reply;  /* prefix, or NULL for none */
    const char *note;   /* substring */
    const char *status; /* X-Virus-Status value after the run, or NULL */
};

#define DB "database_directory = @DB@\ndatabase_check_interval = 0\n"
#define RULES DB "banned_filename_rules = @RULES@\n"

static const struct run_case run_cases[] = {
    {"clean", DB, msg_clean, VERDICT_CONTINUE, NULL,
     "result=clean, engine=libclamav", NULL},
    {"plain", DB, msg_plain, VERDICT_REJECT,
     "554 5.7.1 virus=RelayChain.Test.EICAR.UNOFFICIAL",
     "virus=RelayChain.Test.EICAR.UNOFFICIAL, engine=libclamav", NULL},
    {"base64", DB, msg_b64, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.EICAR", NULL},
    {"nested rfc822", DB, msg_nested, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.EICAR", NULL},
    {"duplicate boundary", DB, msg_dup_boundary, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.EICAR", NULL},
    {"boundary given twice", DB, msg_dup_param, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.EICAR", NULL},
    {"two content types", DB, msg_two_types, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.EICAR", NULL},
    {"body pattern", DB, msg_body_sig, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.Body.UNOFFICIAL", NULL},
    {"logical signature", DB, msg_logical, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=RelayChain.Test.Logical.UNOFFICIAL", NULL},
    {"half a logical signature", DB, msg_half, VERDICT_CONTINUE, NULL,
     "result=clean", NULL},
    {"discard", DB "on_infected = discard\n", msg_plain, VERDICT_DISCARD, NULL,
     "virus=RelayChain.Test.EICAR", NULL},
    {"quarantine with header",
     DB "on_infected = quarantine\nadd_header = yes\n", msg_b64,
     VERDICT_QUARANTINE, NULL, "virus=RelayChain.Test.EICAR",
     "Infected (RelayChain.Test.EICAR.UNOFFICIAL)"},
    {"clean with header", DB "add_header = yes\n", msg_clean, VERDICT_CONTINUE,
     NULL, "result=clean", "Clean"},
    /* An encrypted archive fails the same way on every try: a tempfail
     * would have the sender retry it for days. */
    {"encrypted archive: reject by default", DB, msg_enc_zip, VERDICT_REJECT,
     "554 5.7.0 message could not be scanned (encrypted content: "
     "Heuristics.Encrypted.Zip)",
     "unchecked (encrypted content: Heuristics.Encrypted.Zip)", NULL},
    {"encrypted archive: continue",
     DB "on_unscannable = continue\nadd_header = yes\n", msg_enc_zip,
     VERDICT_CONTINUE, NULL, "passed (on_unscannable = continue)",
     "Unchecked (encrypted content: Heuristics.Encrypted.Zip)"},
    {"encrypted archive: quarantine", DB "on_unscannable = quarantine\n",
     msg_enc_zip, VERDICT_QUARANTINE, NULL, "unchecked (encrypted", NULL},
    {"encrypted archive: tempfail when asked",
     DB "on_unscannable = tempfail\n", msg_enc_zip, VERDICT_TEMPFAIL,
     "451 4.7.1 message could not be scanned", "unchecked", NULL},
    {"on_scan_timeout does not apply to a limit",
     DB "on_scan_timeout = continue\n", msg_enc_zip, VERDICT_REJECT,
     "554 5.7.0", "unchecked", NULL},
    {"old on_unchecked still sets both", DB "on_unchecked = tempfail\n",
     msg_enc_zip, VERDICT_TEMPFAIL, "451 4.7.1", "unchecked", NULL},
    {"old on_unchecked = continue", DB "on_unchecked = continue\n",
     msg_enc_zip, VERDICT_CONTINUE, NULL, "passed (on_unscannable", NULL},
    {"harmless encrypted member name", RULES, msg_enc_zip, VERDICT_REJECT,
     "554 5.7.0", "unchecked", NULL},
    {"banned encrypted member name", RULES, msg_encx_zip, VERDICT_REJECT,
     "554 5.7.1 banned=archive member \"invoice.pdf.exe\": double extension",
     "banned.pcre:3", NULL},
    {"rfc 2231 double extension", RULES, msg_exe_2231, VERDICT_REJECT,
     "554 5.7.1 banned=name \"Rechnung M??rz.pdf.exe\": double extension",
     "banned.pcre:3", NULL},
    {"rfc 2047 double extension", RULES, msg_exe_2047, VERDICT_REJECT,
     "554 5.7.1 banned=name \"invoice.pdf.scr\": double extension",
     "banned=", NULL},
    {"trailing dot and space", RULES, msg_exe_trailing_dot, VERDICT_REJECT,
     "554 5.7.1 banned=name \"setup.exe\": executable", "banned.pcre:4", NULL},
    {"the other name", RULES, msg_exe_name_only, VERDICT_REJECT,
     "554 5.7.1 banned=name \"run.bat\": executable", "banned=", NULL},
    {"OK rule allows", RULES, msg_exe_allowed, VERDICT_CONTINUE, NULL,
     "result=clean", NULL},
    {"allowed type", DB "banned_types = application/x-msdownload\n", msg_pdf,
     VERDICT_CONTINUE, NULL, "result=clean", NULL},
    {"banned type", DB "banned_types = application/x-msdownload\n",
     msg_msdownload, VERDICT_REJECT,
     "554 5.7.1 banned=type application/x-msdownload", "banned_types", NULL},
    {"banned type wildcard",
     DB "banned_types = audio/*, application/x-msdownload\n", msg_pdf,
     VERDICT_CONTINUE, NULL, "result=clean", NULL},
    {"banned type quarantine",
     DB "banned_types = application/*\non_banned = quarantine\n"
        "add_header = yes\n",
     msg_pdf, VERDICT_QUARANTINE, NULL, "banned=type application/*",
     "Banned (type application/*)"},
    {"virus wins over a banned name", RULES, msg_b64, VERDICT_REJECT,
     "554 5.7.1 virus=", "virus=", NULL},
};

static void
test_run(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(run_cases) / sizeof(run_cases[0]); i++) {
        const struct run_case *c = &run_cases[i];
        char conf[2048];
        struct verdict v;
        struct stage st;
        struct msg *m;
        struct err e;
        int rc;

        snprintf(conf, sizeof(conf), "%s", c->conf);
        err_clear(&e);
        if (stage_load(&st, conf, &e) < 0)
            unit_fail(c->name, "load: %s", e.text);
        m = msg_build(c->msg);
        memset(&v, 0, sizeof(v));
        rc = flt_antivirus_type.run(&st, m, &v, &e);
        if (rc < 0)
            unit_fail(c->name, "run failed: %s", e.text);
        if (v.kind != c->kind)
            unit_fail(c->name, "got verdict %s (%s), want %s",
                      verdict_kind_name(v.kind), v.note,
                      verdict_kind_name(c->kind));
        if (c->reply != NULL &&
            strncmp(v.reply, c->reply, strlen(c->reply)) != 0)
            unit_fail(c->name, "got reply \"%s\", want it to start \"%s\"",
                      v.reply, c->reply);
        if (c->reply == NULL && v.reply[0] != '\0' &&
            (v.kind == VERDICT_CONTINUE || v.kind == VERDICT_DISCARD ||
             v.kind == VERDICT_QUARANTINE))
            unit_fail(c->name, "got reply \"%s\", want none", v.reply);
        unit_has(c->name, v.note, c->note);
        if (c->status != NULL) {
            unit_str_eq(c->name, msg_header_get(m, "X-Virus-Status", 1) + 1,
                        c->status);
            unit_int_eq(c->name, msg_header_name_count(m, "X-Virus-Scanned"),
                        1);
            unit_int_eq(c->name, st.flags, STAGE_EDITS_HEADERS);
        } else {
            unit_int_eq(c->name, msg_header_name_count(m, "X-Virus-Status"),
                        0);
        }
        msg_free(m);
        stage_unload(&st);
    }
}

/* A sender's own X-Virus-* fields go; ours are the only ones left. */
static void
test_forged_headers(void **state)
{
    const struct msg_edit *ed;
    char want[128];
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct err e;
    size_t n;

    (void)state;
    if (stage_load(&st,
                   DB "on_infected = quarantine\n"
                      "add_header = yes\n",
                   &e) < 0)
        fail_msg("load: %s", e.text);
    m = msg_build(msg_forged_status);
    assert_int_equal(flt_antivirus_type.run(&st, m, &v, &e), 0);
    assert_int_equal(v.kind, VERDICT_QUARANTINE);
    unit_int_eq("forged", msg_header_name_count(m, "X-Virus-Status"), 1);
    unit_int_eq("forged", msg_header_name_count(m, "X-Virus-Scanned"), 1);
    snprintf(want, sizeof(want), "relaychain antivirus (libclamav %s)",
             cl_retver());
    unit_str_eq("forged", msg_header_get(m, "X-Virus-Scanned", 1) + 1, want);
    n = msg_journal(m, &ed);
    /* Three deletions (last index first, as a milter replays them), two
     * additions. */
    unit_int_eq("forged journal", n, 5);
    unit_int_eq("forged journal 0", ed[0].kind, MSG_EDIT_HEADER_DELETE);
    unit_int_eq("forged journal 0 index", ed[0].index, 1);
    unit_int_eq("forged journal 1 index", ed[1].index, 2);
    unit_int_eq("forged journal 4", ed[4].kind, MSG_EDIT_HEADER_ADD);
    msg_free(m);
    stage_unload(&st);
}

/* add_header = no: the stage declares no edits at all. */
static void
test_flags(void **state)
{
    struct stage st;
    struct err e;

    (void)state;
    if (stage_load(&st, DB, &e) < 0)
        fail_msg("load: %s", e.text);
    unit_int_eq("flags without add_header", st.flags, 0);
    stage_unload(&st);
}

struct init_case {
    const char *name;
    const char *conf;
    const char *want; /* substring of the error */
};

static const struct init_case init_cases[] = {
    {"clamd key with libclamav", "clamd_socket = unix:/run/clamd.ctl\n" DB,
     "clamd_socket: applies to engine = clamd only"},
    {"libclamav key with clamd",
     "engine = clamd\nclamd_socket = unix:/run/clamd.ctl\nmax_files = 5\n",
     "max_files: applies to engine = libclamav only"},
    {"clamd without socket", "engine = clamd\n",
     "engine = clamd needs clamd_socket"},
    {"clamd relative socket",
     "engine = clamd\nclamd_socket = unix:clamd.ctl\n",
     "want an absolute socket path"},
    {"clamd bad scheme", "engine = clamd\nclamd_socket = 127.0.0.1:3310\n",
     "want unix:/path or tcp:host:port"},
    {"clamd bad port", "engine = clamd\nclamd_socket = tcp:127.0.0.1:x\n",
     "bad port"},
    {"bad banned type", DB "banned_types = exe\n",
     "'exe': want type/subtype, type/* or CL_TYPE_NAME"},
    {"partial wildcard", DB "banned_types = application/x-ms*\n",
     "'application/x-ms*': want type/subtype, type/* or CL_TYPE_NAME"},
    {"clamav type with clamd",
     "engine = clamd\nclamd_socket = tcp:127.0.0.1:3310\n"
     "banned_types = CL_TYPE_MSEXE\n",
     "libclamav file types need engine = libclamav"},
    {"bad admin", DB "notify_admin = not an address\n",
     "notify_admin: 'not an address' is not an address"},
    {"missing database directory",
     "database_directory = /nonexistent/clamav\n",
     "database_directory: /nonexistent/clamav: No such file or directory"},
    {"missing rules", DB "banned_filename_rules = /nonexistent/banned.pcre\n",
     "banned_filename_rules"},
    {"bad limit", DB "max_recursion = 0\n", "max_recursion"},
    {"old and new unchecked keys together",
     DB "on_unchecked = tempfail\non_unscannable = reject\n",
     ":3: on_unchecked: replaced by on_unscannable and on_scan_timeout"},
    {"discard is no choice for unscannable mail",
     DB "on_unscannable = discard\n", "on_unscannable"},
};

static void
test_init_errors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(init_cases) / sizeof(init_cases[0]); i++) {
        const struct init_case *c = &init_cases[i];
        char conf[2048];
        struct stage st;
        struct err e;

        snprintf(conf, sizeof(conf), "%s", c->conf);
        err_clear(&e);
        if (stage_load(&st, conf, &e) == 0) {
            stage_unload(&st);
            unit_fail(c->name, "loaded, want the error \"%s\"", c->want);
        }
        unit_has(c->name, e.text, c->want);
    }
}

/* An empty database directory: a start-up error by default, a tempfail
 * of every message with missing_database = tempfail. */
static void
test_empty_database(void **state)
{
    char dir[512], conf[1024];
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct err e;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/empty-db", tmp_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(conf, sizeof(conf),
             "database_directory = %s\n"
             "database_check_interval = 0\n",
             dir);
    err_clear(&e);
    assert_int_equal(stage_load(&st, conf, &e), -1);
    unit_has("empty, fail", e.text, dir);
    unit_has("empty, fail", e.text, "05-antivirus.conf:1: database_directory");
    snprintf(conf, sizeof(conf),
             "database_directory = %s\n"
             "database_check_interval = 0\nmissing_database = tempfail\n",
             dir);
    if (stage_load(&st, conf, &e) < 0)
        fail_msg("load: %s", e.text);
    m = msg_build(msg_clean);
    err_clear(&e);
    unit_int_eq("empty, tempfail: run", flt_antivirus_type.run(&st, m, &v, &e),
                -1);
    unit_has("empty, tempfail", e.text, "no signature database loaded");
    unit_int_eq("empty, tempfail: temporary", err_is_temporary(&e), 1);
    msg_free(m);
    stage_unload(&st);
    rmdir(dir);
}

struct reply_case {
    const char *reply;
    int rc;
    enum flt_antivirus_status status;
    const char *what;
};

static const struct reply_case reply_cases[] = {
    {"stream: OK", 0, FLT_ANTIVIRUS_CLEAN, ""},
    {"stream: OK\n", 0, FLT_ANTIVIRUS_CLEAN, ""},
    {"stream: Eicar-Signature FOUND", 0, FLT_ANTIVIRUS_INFECTED,
     "Eicar-Signature"},
    {"stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND", 0,
     FLT_ANTIVIRUS_UNCHECKED, "clamd MaxScanSize exceeded"},
    {"stream: Heuristics.Encrypted.Zip FOUND", 0, FLT_ANTIVIRUS_UNCHECKED,
     "encrypted content: Heuristics.Encrypted.Zip"},
    {"stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND", 0,
     FLT_ANTIVIRUS_TIMEOUT, "clamd MaxScanTime exceeded"},
    {"INSTREAM size limit exceeded. ERROR", 0, FLT_ANTIVIRUS_UNCHECKED,
     "clamd StreamMaxLength exceeded"},
    {"stream: Can't allocate memory ERROR", -1, FLT_ANTIVIRUS_CLEAN,
     "clamd: stream: Can't allocate memory ERROR"},
    {"UNKNOWN COMMAND", -1, FLT_ANTIVIRUS_CLEAN, "unexpected answer"},
    {"stream:  FOUND", -1, FLT_ANTIVIRUS_CLEAN, "unexpected answer"},
    {"", -1, FLT_ANTIVIRUS_CLEAN, "without an answer"},
    {"stream: Evil\r\nInjected FOUND", 0, FLT_ANTIVIRUS_INFECTED,
     "Evil??Injected"},
};

static void
test_clamd_reply(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
        const struct reply_case *c = &reply_cases[i];
        enum flt_antivirus_status st = FLT_ANTIVIRUS_CLEAN;
        char what[FLT_ANTIVIRUS_WHAT_MAX] = "";
        struct err e;
        int rc;

        err_clear(&e);
        rc = flt_antivirus_clamd_reply(c->reply, strlen(c->reply), &st, what,
                                       sizeof(what), &e);
        unit_int_eq(c->reply, rc, c->rc);
        if (rc == 0) {
            unit_int_eq(c->reply, st, c->status);
            unit_str_eq(c->reply, what, c->what);
        } else {
            unit_has(c->reply, e.text, c->what);
        }
    }
}

struct classify_case {
    const char *name;
    int clamd;
    int want;
    const char *why;
};

static const struct classify_case classify_cases[] = {
    {"Win.Test.EICAR_HDB-1", 0, FLT_ANTIVIRUS_INFECTED,
     "Win.Test.EICAR_HDB-1"},
    {"Heuristics.Limits.Exceeded.MaxFileSize", 0, FLT_ANTIVIRUS_UNCHECKED,
     "max_file_size exceeded"},
    {"Heuristics.Limits.Exceeded.MaxRecursion", 0, FLT_ANTIVIRUS_UNCHECKED,
     "max_recursion exceeded"},
    {"Heuristics.Limits.Exceeded.MaxFiles", 1, FLT_ANTIVIRUS_UNCHECKED,
     "clamd MaxFiles exceeded"},
    {"Heuristics.Limits.Exceeded.MaxScanTime", 0, FLT_ANTIVIRUS_TIMEOUT,
     "max_scan_time exceeded"},
    {"Heuristics.Limits.Exceeded.Other", 0, FLT_ANTIVIRUS_UNCHECKED,
     "limit exceeded: Heuristics.Limits.Exceeded.Other"},
    {"Heuristics.Encrypted.PDF", 0, FLT_ANTIVIRUS_UNCHECKED,
     "encrypted content: Heuristics.Encrypted.PDF"},
    {"Heuristics.Phishing.Email.SpoofedDomain", 0, FLT_ANTIVIRUS_INFECTED,
     "Heuristics.Phishing.Email.SpoofedDomain"},
};

static void
test_classify(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(classify_cases) / sizeof(classify_cases[0]); i++) {
        const struct classify_case *c = &classify_cases[i];
        char why[FLT_ANTIVIRUS_WHAT_MAX];

        unit_int_eq(
            c->name,
            flt_antivirus_classify(c->name, c->clamd, why, sizeof(why)),
            c->want);
        unit_str_eq(c->name, why, c->why);
    }
}

struct bound_case {
    const char *name;
    const char *text;
    const char *want; /* values joined with '|' */
};

static const struct bound_case bound_cases[] = {
    {"quoted", "multipart/mixed; boundary=\"a b\"", "a b"},
    {"token", "multipart/mixed; BOUNDARY=xyz; charset=x", "xyz"},
    {"twice, distinct", "boundary=\"aaa\"; boundary=\"bbb\"; boundary=aaa",
     "aaa|bbb"},
    {"spaces around =", "boundary = \"s\"", "s"},
    {"no value", "boundary=; boundary=\"\"", ""},
    {"control octet", "boundary=\"a\001b\"; boundary=ok", "ok"},
    {"not a parameter", "the boundary of it all", ""},
    {"unterminated", "boundary=\"abc", "abc"},
};

static void
test_boundaries(void **state)
{
    size_t i, j, n;

    (void)state;
    for (i = 0; i < sizeof(bound_cases) / sizeof(bound_cases[0]); i++) {
        const struct bound_case *c = &bound_cases[i];
        char out[4][FLT_ANTIVIRUS_BOUNDARY_SIZE], joined[1024];
        size_t k = 0;

        n = flt_antivirus_boundaries(c->text, strlen(c->text), out, 4);
        joined[0] = '\0';
        for (j = 0; j < n; j++)
            k += (size_t)snprintf(joined + k, sizeof(joined) - k, "%s%s",
                                  j ? "|" : "", out[j]);
        unit_str_eq(c->name, joined, c->want);
    }
}

/* ------------------------------------------------ reload under load */

struct loader {
    const struct stage *st;
    const char *tpl;
    volatile int *stop;
    int failures;
    int scans;
    char last_note[VERDICT_NOTE_MAX];
    char error[ERR_TEXT_MAX];
};

static void *
loader_thread(void *p)
{
    struct loader *l = p;

    while (!*l->stop) {
        struct verdict v;
        struct msg *m;
        struct err e;

        m = msg_build(l->tpl);
        err_clear(&e);
        if (flt_antivirus_type.run(l->st, m, &v, &e) < 0) {
            l->failures++;
            snprintf(l->error, sizeof(l->error), "%s", e.text);
        } else {
            snprintf(l->last_note, sizeof(l->last_note), "%s", v.note);
        }
        l->scans++;
        msg_free(m);
    }
    return NULL;
}

static void
copy_file(const char *from, const char *to)
{
    char b[8192];
    size_t n;
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");

    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(b, 1, sizeof(b), in)) > 0)
        assert_int_equal(fwrite(b, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* The watcher: body-pattern mail is clean with an EICAR-only database,
 * detected once the full test set is copied in, still detected after a
 * broken file arrives (the reload fails, the engine stays) — all while
 * eight threads scan without a single failure. */
static void
test_watcher_reload(void **state)
{
    char dir[512], conf[1024], path[1024], from[1024], eicar_only[1024];
    volatile int stop = 0;
    struct loader ld[8];
    pthread_t tid[8];
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct err e;
    int i, k, seen = 0, total = 0;
    FILE *fp;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/watch-db", tmp_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    /* EICAR only: the first line of the test .ndb. */
    snprintf(eicar_only, sizeof(eicar_only), "%s/eicar.ndb", dir);
    snprintf(from, sizeof(from), "%s/relaychain-test.ndb", db_dir);
    fp = fopen(eicar_only, "w");
    assert_non_null(fp);
    {
        char line[1024];
        FILE *in = fopen(from, "r");

        assert_non_null(in);
        assert_non_null(fgets(line, sizeof(line), in));
        fputs(line, fp);
        fclose(in);
    }
    fclose(fp);
    snprintf(conf, sizeof(conf),
             "database_directory = %s\n"
             "database_check_interval = 50ms\n",
             dir);
    if (stage_load(&st, conf, &e) < 0)
        fail_msg("load: %s", e.text);
    m = msg_build(msg_body_sig);
    assert_int_equal(flt_antivirus_type.run(&st, m, &v, &e), 0);
    unit_int_eq("before reload", v.kind, VERDICT_CONTINUE);
    msg_free(m);

    for (i = 0; i < 8; i++) {
        memset(&ld[i], 0, sizeof(ld[i]));
        ld[i].st = &st;
        ld[i].tpl = i % 2 ? msg_b64 : msg_body_sig;
        ld[i].stop = &stop;
        assert_int_equal(pthread_create(&tid[i], NULL, loader_thread, &ld[i]),
                         0);
    }
    sleep_ms(200);
    /* New databases, several times: each change is a new engine. */
    for (k = 0; k < 5; k++) {
        snprintf(path, sizeof(path), "%s/body-%d.ndb", dir, k);
        copy_file(from, path);
        sleep_ms(150);
    }
    /* A broken database: the reload fails and the engine stays. */
    snprintf(path, sizeof(path), "%s/broken.ndb", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("this is not a signature\n", fp);
    fclose(fp);
    sleep_ms(300);
    stop = 1;
    for (i = 0; i < 8; i++) {
        pthread_join(tid[i], NULL);
        total += ld[i].scans;
        if (ld[i].failures)
            unit_fail("reload under load", "%d failed scan(s): %s",
                      ld[i].failures, ld[i].error);
    }
    assert_true(total > 8);
    m = msg_build(msg_body_sig);
    assert_int_equal(flt_antivirus_type.run(&st, m, &v, &e), 0);
    unit_int_eq("after reload, broken file kept out", v.kind, VERDICT_REJECT);
    unit_has("after reload", v.note, "RelayChain.Test.Body");
    msg_free(m);
    for (i = 0; i < 8; i += 2)
        seen += strstr(ld[i].last_note, "RelayChain.Test.Body") != NULL;
    unit_int_eq("threads saw the new engine", seen, 4);
    stage_unload(&st);

    unlink(path);
    unlink(eicar_only);
    for (k = 0; k < 5; k++) {
        snprintf(path, sizeof(path), "%s/body-%d.ndb", dir, k);
        unlink(path);
    }
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_forged_headers),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_empty_database),
        cmocka_unit_test(test_clamd_reply),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_watcher_reload),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
