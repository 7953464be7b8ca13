/*
 * smtpc_reply - what the next-hop client's transports share: replies
 *
 * The bottom of the client (smtpc_transport.h): replies of our own
 * (smtpc_reply_set, smtpc_fail), the parser of the replies a host sends
 * (smtpc_reply_parse, smtpc.h), the check of host name characters and
 * next_hop errors, and the conversion of a message's line ends for the
 * wire (CRLF, dot-stuffed) or for a file (LF). It calls nothing else of
 * the client, so every transport and nexthop.c may call it.
 *
 * Nothing here allocates or logs.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "net/smtpc.h"
#include "net/smtpc_transport.h"

#define SMTPC_REPLY_LINES 100 /* lines of one reply */

void
smtpc_reply_set(struct smtpc_reply *r, int code, const char *fmt, ...)
{
    va_list ap;

    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
}

int
smtpc_fail(struct smtpc_reply *r, struct err *e, const char *fmt, ...)
{
    va_list ap;

    r->code = 451;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
    return err_set(e, ERR_TEMP, "%s", r->text);
}

/* ------------------------------------------------------------ replies */

static int
smtpc_code_digit_ok(size_t i, char ch)
{
    static const char lo[3] = {'2', '0', '0'}, hi[3] = {'5', '5', '9'};

    return ch >= lo[i] && ch <= hi[i];
}

/* smtpc_reply_text - the text of one line, control characters (other
 * than TAB) as '?' so a reply passed on can not carry line ends. */
static void
smtpc_reply_text(struct smtpc_reply *r, const char *s, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n && o + 1 < sizeof(r->text); i++) {
        unsigned char ch = (unsigned char)s[i];

        r->text[o++] =
            (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
    }
    r->text[o] = '\0';
}

int
smtpc_reply_parse(const char *text, size_t len, struct smtpc_reply *r,
                  size_t *used)
{
    size_t off = 0, lines = 0;
    int code = -1;

    *used = 0;
    while (off < len) {
        const char *p = text + off, *lf;
        size_t n, tl, i;
        int c;

        lf = memchr(p, '\n', len - off);
        n = lf != NULL ? (size_t)(lf - p) + 1 : len - off;
        if (off + n > SMTPC_REPLY_MAX || ++lines > SMTPC_REPLY_LINES)
            return -1;
        tl = n;
        if (lf != NULL) {
            tl--;
            if (tl > 0 && p[tl - 1] == '\r')
                tl--;
        }
        for (i = 0; i < 3 && i < tl; i++)
            if (!smtpc_code_digit_ok(i, p[i]))
                return -1;
        if (lf == NULL) {
            /* An incomplete line: wrong as far as it goes, or more is
             * needed. "250\r" may still become "250\r\n". */
            if (tl > 3 && p[3] != ' ' && p[3] != '-' &&
                !(tl == 4 && p[3] == '\r'))
                return -1;
            if (tl >= 3 && code >= 0 &&
                (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0') != code)
                return -1;
            return 0;
        }
        if (tl < 3)
            return -1;
        c = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if (code >= 0 && c != code)
            return -1;
        code = c;
        off += n;
        if (tl == 3 || p[3] == ' ') {
            r->code = c;
            if (tl > 4)
                smtpc_reply_text(r, p + 4, tl - 4);
            else
                r->text[0] = '\0';
            *used = off;
            return 1;
        }
        if (p[3] != '-')
            return -1;
    }
    return 0;
}

int
smtpc_hop_err(struct err *e, const char *hop, const char *why)
{
    return err_set(e, ERR_CONFIG,
                   "next_hop: '%.200s': %s; expected smtp:[host]:port, "
                   "lmtp:[host]:port or maildir:/path",
                   hop, why);
}

int
smtpc_host_char_ok(char ch, int bracketed)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' ||
           (bracketed && ch == ':');
}

/* ------------------------------------------------------------ conversion */

size_t
smtpc_convert(const char *in, size_t len, size_t *pos, int *bol, int smtp,
              char *out)
{
    size_t i = *pos, o = 0, wend, seg;
    const char *lf, *cr;

    wend = len - i > SMTPC_WINDOW ? i + SMTPC_WINDOW : len;
    while (i < wend) {
        if (*bol) {
            if (smtp && in[i] == '.')
                out[o++] = '.';
            *bol = 0;
        }
        lf = memchr(in + i, '\n', wend - i);
        seg = lf != NULL ? (size_t)(lf - in) : wend;
        if ((cr = memchr(in + i, '\r', seg - i)) != NULL)
            seg = (size_t)(cr - in);
        memcpy(out + o, in + i, seg - i);
        o += seg - i;
        i = seg;
        if (i == wend)
            break;
        if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
            i++;
        i++;
        if (smtp)
            out[o++] = '\r';
        out[o++] = '\n';
        *bol = 1;
    }
    *pos = i;
    return o;
}
