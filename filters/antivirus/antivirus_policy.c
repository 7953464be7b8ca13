/*
 * antivirus_policy - what the antivirus stage makes of a scan
 *
 * Printable names for replies and logs, what libclamav's heuristic names
 * mean (flt_antivirus_classify), the other readings of an ambiguous MIME
 * message, banned file names and types, the verdict for each outcome,
 * and the notice to notify_admin through the chain's notice service.
 * See antivirus.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <clamav.h>
#include <dirent.h>
#include <gmime/gmime.h>

#include "filters/antivirus/antivirus_int.h"
#include "util/fdio.h"
#include "util/addr.h"
#include "filters/filters.h"
#include "util/log.h"
#include "msg/mime.h"
#include "util/regmap.h"

/* ------------------------------------------------------------ helpers */

/* flt_av_printable - s (n octets) for a reply or a log line: printable
 * ASCII kept, anything else '?', '"' and '\\' as '\'', cut at max octets
 * with "...". Returns out (size size). */
const char *
flt_av_printable(const char *s, size_t n, size_t max, char *out, size_t size)
{
    size_t o = 0, i;

    for (i = 0; i < n && o + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];

        if (o >= max) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\')
            out[o++] = '\'';
        else
            out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

long long
flt_av_now_ms(void)
{
    return fdio_now_ms();
}

/* flt_av_buf_has - 1 when the NUL-separated list in b holds s. */
int
flt_av_buf_has(const struct buf *b, const char *s)
{
    size_t off, len;

    for (off = 0; off < b->len; off += len + 1) {
        len = strlen(b->data + off);
        if (strcmp(b->data + off, s) == 0)
            return 1;
    }
    return 0;
}

/* ----------------------------------------------------- heuristic names */

/*
 * flt_antivirus_classify - what a detection name means. Names of
 * libclamav's "could not scan" heuristics are unchecked, with the reason
 * in terms of our options when the limit is ours (libclamav) or of
 * clamd.conf's (clamd); anything else is a virus.
 */
int
flt_antivirus_classify(const char *name, int clamd, char *why, size_t n)
{
    static const struct {
        const char *heur, *ours, *clamds;
    } limits[] = {
        {"MaxScanSize", "max_scan_size", "MaxScanSize"},
        {"MaxFileSize", "max_file_size", "MaxFileSize"},
        {"MaxRecursion", "max_recursion", "MaxRecursion"},
        {"MaxFiles", "max_files", "MaxFiles"},
        {"MaxScanTime", "max_scan_time", "MaxScanTime"},
    };
    static const char lim[] = "Heuristics.Limits.Exceeded.";
    static const char enc[] = "Heuristics.Encrypted.";
    char p[FLT_AV_WHAT_MAX];
    size_t i;

    flt_av_printable(name, strlen(name), FLT_AV_WHAT_MAX - 8, p, sizeof(p));
    if (strncmp(name, lim, sizeof(lim) - 1) == 0) {
        const char *what = name + sizeof(lim) - 1;

        for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
            if (strncmp(what, limits[i].heur, strlen(limits[i].heur)) == 0) {
                snprintf(why, n, "%s%s exceeded", clamd ? "clamd " : "",
                         clamd ? limits[i].clamds : limits[i].ours);
                /* The only limit that depends on the clock, not on the
                 * bytes. */
                return strcmp(limits[i].heur, "MaxScanTime") == 0
                           ? FLT_ANTIVIRUS_TIMEOUT
                           : FLT_ANTIVIRUS_UNCHECKED;
            }
        snprintf(why, n, "limit exceeded: %s", p);
        return FLT_ANTIVIRUS_UNCHECKED;
    }
    if (strncmp(name, enc, sizeof(enc) - 1) == 0) {
        snprintf(why, n, "encrypted content: %s", p);
        return FLT_ANTIVIRUS_UNCHECKED;
    }
    snprintf(why, n, "%s", p);
    return FLT_ANTIVIRUS_INFECTED;
}

/* ---------------------------------------------------- ambiguous MIME */

/*
 * flt_antivirus_boundaries - the distinct boundary parameter values in s
 * (n octets), at most max of them, each NUL-terminated in out[i] (values
 * longer than FLT_AV_BOUNDARY_MAX octets, or holding a quote, backslash
 * or control octet, are skipped). Returns how many. Exported for the
 * fuzzer.
 */
size_t
flt_antivirus_boundaries(const char *s, size_t n,
                         char (*out)[FLT_ANTIVIRUS_BOUNDARY_SIZE], size_t max)
{
    static const char key[] = "boundary";
    size_t i = 0, count = 0, j, start, len;
    int quoted, ok;

    while (count < max && i + sizeof(key) - 1 < n) {
        if (strncasecmp(s + i, key, sizeof(key) - 1) != 0) {
            i++;
            continue;
        }
        i += sizeof(key) - 1;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= n || s[i] != '=')
            continue;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        quoted = i < n && s[i] == '"';
        if (quoted)
            i++;
        start = i;
        ok = 1;
        while (i < n) {
            unsigned char c = (unsigned char)s[i];

            if (quoted ? c == '"'
                       : (c == ';' || c == ' ' || c == '\t' || c == '"'))
                break;
            if (c < 0x20 || c == 0x7f || c == '\\')
                ok = 0;
            if (c == '\r' || c == '\n')
                break;
            i++;
        }
        len = i - start;
        if (!ok || len == 0 || len >= FLT_ANTIVIRUS_BOUNDARY_SIZE)
            continue;
        for (j = 0; j < count; j++)
            if (strlen(out[j]) == len && memcmp(out[j], s + start, len) == 0)
                break;
        if (j < count)
            continue;
        memcpy(out[count], s + start, len);
        out[count][len] = '\0';
        count++;
    }
    return count;
}

/* ------------------------------------------------------------ policy */

static int
flt_av_is_allow(const char *result)
{
    return strcasecmp(result, "OK") == 0 || strcasecmp(result, "DUNNO") == 0;
}

/* flt_av_name_check - one attachment or member name against the rules;
 * 1 with ban filled when banned, 0 when not, -1 on a lookup error. */
static int
flt_av_name_check(const struct flt_av *fa, const char *name, const char *where,
                  struct flt_av_ban *ban, struct err *e)
{
    char norm[FLT_AV_NAME_MAX + 1], p[FLT_AV_PRINT_MAX + 8];
    char why[FLT_AV_PRINT_MAX + 8];
    struct buf res;
    unsigned line = 0;
    size_t len;
    int rc;

    if (fa->banned_names == NULL || name == NULL)
        return 0;
    len = strnlen(name, FLT_AV_NAME_MAX);
    memcpy(norm, name, len);
    norm[len] = '\0';
    /* Windows ignores trailing dots and spaces: "x.exe." runs as x.exe. */
    while (len > 0 && (norm[len - 1] == '.' || norm[len - 1] == ' ' ||
                       norm[len - 1] == '\t'))
        norm[--len] = '\0';
    if (len == 0)
        return 0;
    buf_init(&res, FLT_AV_WHAT_MAX);
    rc = regmap_lookup(fa->banned_names, norm, &res, &line, e);
    if (rc < 0) {
        buf_fini(&res);
        err_prefix(e, "banned_filename_rules");
        return -1;
    }
    if (rc == 0 || flt_av_is_allow(buf_str(&res))) {
        buf_fini(&res);
        return 0;
    }
    flt_av_printable(buf_str(&res), res.len, FLT_AV_PRINT_MAX, why,
                     sizeof(why));
    buf_fini(&res);
    ban->banned = 1;
    snprintf(ban->what, sizeof(ban->what), "%s \"%s\": %s", where,
             flt_av_printable(norm, len, FLT_AV_PRINT_MAX, p, sizeof(p)), why);
    snprintf(ban->rule, sizeof(ban->rule), "%s:%u",
             regmap_path(fa->banned_names), line);
    return 1;
}

/* flt_av_type_check - a MIME type ("type/subtype", lower case) or a
 * libclamav type ("CL_TYPE_...") against banned_types. */
static int
flt_av_type_check(const struct flt_av *fa, const char *type,
                  struct flt_av_ban *ban)
{
    const char *slash;
    size_t i, k;

    for (i = 0; i < fa->nbanned_types; i++) {
        const char *b = fa->banned_types[i];

        k = strlen(b);
        if (k >= 2 && strcmp(b + k - 2, "/*") == 0) {
            slash = strchr(type, '/');
            if (slash == NULL || (size_t)(slash - type) != k - 2 ||
                strncasecmp(type, b, k - 2) != 0)
                continue;
        } else if (strcasecmp(type, b) != 0) {
            continue;
        }
        ban->banned = 1;
        snprintf(ban->what, sizeof(ban->what), "type %.*s", FLT_AV_PRINT_MAX,
                 b);
        snprintf(ban->rule, sizeof(ban->rule), "banned_types");
        return 1;
    }
    return 0;
}

/* flt_av_walk - the leaves of the shared parse: declared types and
 * names. Returns 1 when banned, 0 when not, -1 on error. */
static int
flt_av_walk(const struct flt_av *fa, GMimeObject *obj, unsigned depth,
            struct flt_av_ban *ban, struct err *e)
{
    GMimeContentType *ct;
    char type[256];
    const char *a, *b;
    int i, n, rc;

    if (obj == NULL || depth > FLT_AV_DEPTH_MAX)
        return 0;
    if (fa->nbanned_types > 0 &&
        (ct = g_mime_object_get_content_type(obj)) != NULL) {
        a = g_mime_content_type_get_media_type(ct);
        b = g_mime_content_type_get_media_subtype(ct);
        snprintf(type, sizeof(type), "%s/%s", a ? a : "", b ? b : "");
        if (flt_av_type_check(fa, type, ban))
            return 1;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        for (i = 0; i < n; i++)
            if ((rc = flt_av_walk(
                     fa, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i),
                     depth + 1, ban, e)) != 0)
                return rc;
        return 0;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner =
            g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

        return inner ? flt_av_walk(fa, g_mime_message_get_mime_part(inner),
                                   depth + 1, ban, e)
                     : 0;
    }
    /* Both names: readers differ in which one they show or save. */
    a = g_mime_object_get_content_disposition_parameter(obj, "filename");
    b = g_mime_object_get_content_type_parameter(obj, "name");
    if ((rc = flt_av_name_check(fa, a, "name", ban, e)) != 0)
        return rc;
    if (b != NULL && (a == NULL || strcmp(a, b) != 0))
        return flt_av_name_check(fa, b, "name", ban, e);
    return 0;
}

/* flt_av_policy - banned names and types: the shared parse, then what
 * libclamav saw inside archives. */
int
flt_av_policy(const struct flt_av *fa, struct msg *m,
              const struct flt_av_scan *sc, struct flt_av_ban *ban,
              struct err *e)
{
    const struct mime *mm;
    size_t off, len;
    int rc;

    if (fa->banned_names == NULL && fa->nbanned_types == 0)
        return 0;
    if ((mm = msg_mime(m, e)) == NULL)
        return -1;
    rc = flt_av_walk(fa, g_mime_message_get_mime_part(mime_message(mm)), 0,
                     ban, e);
    if (rc != 0)
        return rc;
    for (off = 0; off < sc->names.len; off += len + 1) {
        len = strlen(sc->names.data + off);
        if ((rc = flt_av_name_check(fa, sc->names.data + off, "archive member",
                                    ban, e)) != 0)
            return rc;
    }
    for (off = 0; off < sc->types.len; off += len + 1) {
        len = strlen(sc->types.data + off);
        if (strncmp(sc->types.data + off, "CL_TYPE_", 8) == 0 &&
            flt_av_type_check(fa, sc->types.data + off, ban))
            return 1;
    }
    return 0;
}

/* -------------------------------------------------------------- notice */

void
flt_av_notify(const struct stage *st, const struct flt_av *fa,
              const struct msg *m, const char *verdict, const char *what)
{
    const struct msg_env *env = msg_env(m);
    char p[FLT_AV_REPLY_MAX], date[64];
    struct stage_reply r;
    const char *subj;
    struct buf b;
    struct err e;
    time_t now = time(NULL);
    struct tm tm;
    size_t i;

    err_clear(&e);
    buf_init(&b, FLT_AV_NOTICE_MAX);
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    buf_printf(&b, &e,
               "From: relaychain antivirus <MAILER-DAEMON@%s>\r\n"
               "To: <%s>\r\n"
               "Subject: %s: %s\r\n"
               "Date: %s\r\n"
               "Message-ID: <%s.%lld.antivirus@%s>\r\n"
               "Auto-Submitted: auto-generated\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n"
               "\r\n"
               "The %s stage stopped a message; it is not attached.\r\n"
               "\r\n"
               "Queue ID:   %s\r\n"
               "Verdict:    %s\r\n"
               "Found:      %s\r\n",
               fa->hostname, fa->notify_admin, verdict, what, date, msg_qid(m),
               (long long)now, fa->hostname, st->name, msg_qid(m), verdict,
               what);
    buf_printf(&b, &e, "Sender:     <%s> (envelope; it may be forged)\r\n",
               flt_av_printable(env->sender ? env->sender : "",
                                env->sender ? strlen(env->sender) : 0,
                                ADDR_MAX, p, sizeof(p)));
    for (i = 0; i < env->nrcpts && i < FLT_AV_NOTICE_RCPTS; i++)
        buf_printf(
            &b, &e, "%s<%s>\r\n", i == 0 ? "Recipients: " : "            ",
            flt_av_printable(env->rcpts[i].addr, strlen(env->rcpts[i].addr),
                             ADDR_MAX, p, sizeof(p)));
    if (env->nrcpts > FLT_AV_NOTICE_RCPTS)
        buf_printf(&b, &e, "            and %zu more\r\n",
                   env->nrcpts - FLT_AV_NOTICE_RCPTS);
    buf_printf(&b, &e, "Client:     %s [%s]%s%s\r\n",
               env->client_name ? env->client_name : "unknown",
               env->client_addr ? env->client_addr : "unknown",
               env->auth_user ? ", authenticated as " : "",
               env->auth_user ? env->auth_user : "");
    if ((subj = msg_header_get(m, "Subject", 1)) != NULL)
        buf_printf(&b, &e, "Subject:    %s\r\n",
                   flt_av_printable(subj, strlen(subj), 200, p, sizeof(p)));
    if (e.code != ERR_NONE) {
        log_warning(msg_qid(m), "%s: notice to %s not sent: %s", st->name,
                    fa->notify_admin, e.text);
        buf_fini(&b);
        return;
    }
    if (st->env->notify(fa->notify, fa->notify_admin, &b, &r) == 0)
        log_info(msg_qid(m), "%s: notice sent to %s (%d %s)", st->name,
                 fa->notify_admin, r.code, r.text);
    else
        log_warning(msg_qid(m), "%s: notice to %s not sent: %d %s", st->name,
                    fa->notify_admin, r.code, r.text);
    buf_fini(&b);
}
