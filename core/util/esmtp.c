/*
 * esmtp - ESMTP parameters of MAIL and RCPT, and RFC 3461 xtext
 *
 * See esmtp.h. Words are split at spaces only, as the SMTP server
 * stores them; runs of spaces and leading or trailing ones are skipped.
 * The two xtext readers differ on purpose: what a client gives in MAIL
 * and RCPT (AUTH, ENVID, ORCPT) is held to RFC 3461, while XFORWARD is
 * read as Postfix's own server reads what Postfix's client writes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/esmtp.h"

const char *
esmtp_param(const char *params, const char *key, size_t *len)
{
    size_t k = strlen(key);
    const char *p = params;

    while (p != NULL && *p != '\0') {
        size_t n;

        p += strspn(p, " ");
        n = strcspn(p, " ");
        if (n > k && p[k] == '=' && strncasecmp(p, key, k) == 0) {
            *len = n - k - 1;
            return p + k + 1;
        }
        if (n == k && strncasecmp(p, key, k) == 0) {
            *len = 0;
            return p + k;
        }
        p += n;
    }
    return NULL;
}

int
esmtp_xtext_decode(const char *in, size_t len, char *out, size_t n)
{
    size_t i, j = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)in[i];

        if (c == '+') {
            int k, v = 0;

            if (i + 2 >= len)
                return -1;
            for (k = 1; k <= 2; k++) {
                int h = (unsigned char)in[i + (size_t)k];

                v <<= 4;
                if (h >= '0' && h <= '9')
                    v |= h - '0';
                else if (h >= 'A' && h <= 'F')
                    v |= h - 'A' + 10;
                else
                    return -1;
            }
            c = v;
            i += 2;
            if (c < 0x20 || c == 0x7f)
                return -1;
        } else if (c < 33 || c > 126 || c == '=') {
            return -1;
        }
        if (j + 1 >= n)
            return -1;
        out[j++] = (char)c;
    }
    if (n == 0)
        return -1;
    out[j] = '\0';
    return 0;
}

int
esmtp_xtext_encode(struct buf *out, const char *value, struct err *e)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s;
    char enc[3];

    for (s = (const unsigned char *)value; *s != '\0'; s++) {
        if (*s < 33 || *s > 126 || *s == '+' || *s == '=') {
            enc[0] = '+';
            enc[1] = hex[*s >> 4];
            enc[2] = hex[*s & 0xf];
            if (buf_append(out, enc, 3, e) < 0)
                return -1;
        } else if (buf_putc(out, *s, e) < 0) {
            return -1;
        }
    }
    return 0;
}

int
esmtp_xforward_decode(const char *in, size_t len, char *out, size_t n,
                      int space)
{
    size_t i, j = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)in[i];

        if (c == '+' && i + 2 < len) {
            char hex[3] = {in[i + 1], in[i + 2], '\0'};
            char *end;

            c = (int)strtol(hex, &end, 16);
            if (*end != '\0')
                return -1;
            i += 2;
        }
        if ((c < 0x21 && !(c == ' ' && space)) || c == 0x7f || j + 1 >= n)
            return -1;
        out[j++] = (char)c;
    }
    out[j] = '\0';
    return 0;
}

int
esmtp_notify_check(const char *v, size_t len)
{
    const char *end = v + len;
    int never = 0, other = 0;

    if (len == 0)
        return -1;
    while (v < end) {
        size_t k = 0;

        while (v + k < end && v[k] != ',')
            k++;
        if (k == 5 && strncasecmp(v, "NEVER", 5) == 0)
            never++;
        else if ((k == 7 && strncasecmp(v, "SUCCESS", 7) == 0) ||
                 (k == 7 && strncasecmp(v, "FAILURE", 7) == 0) ||
                 (k == 5 && strncasecmp(v, "DELAY", 5) == 0))
            other++;
        else
            return -1;
        v += k + (v + k < end);
    }
    if (never && (never > 1 || other))
        return -1;
    return 0;
}

int
esmtp_notify_wants(const char *params, const char *kind)
{
    size_t len, k = strlen(kind);
    const char *v = esmtp_param(params, "NOTIFY", &len);

    if (v == NULL)
        return strcmp(kind, "SUCCESS") != 0;
    while (len > 0) {
        size_t n = 0;

        while (n < len && v[n] != ',')
            n++;
        if (n == k && strncasecmp(v, kind, k) == 0)
            return 1;
        v += n;
        len -= n;
        if (len > 0) {
            v++;
            len--;
        }
    }
    return 0;
}

int
esmtp_orcpt_split(const char *v, size_t len, size_t *type_len, char *out,
                  size_t n)
{
    const char *semi = memchr(v, ';', len);

    if (semi == NULL || semi == v ||
        esmtp_xtext_decode(semi + 1, len - (size_t)(semi + 1 - v), out, n) < 0)
        return -1;
    *type_len = (size_t)(semi - v);
    return 0;
}

void
esmtp_params_pick(const char *params, const char *const *keys, char *out,
                  size_t n)
{
    size_t used = 0, len, i;
    const char *v;

    out[0] = '\0';
    for (i = 0; keys[i] != NULL; i++) {
        int k;

        if ((v = esmtp_param(params, keys[i], &len)) == NULL)
            continue;
        k = len > 0 || *v == '='
                ? snprintf(out + used, n - used, "%s%s=%.*s", used ? " " : "",
                           keys[i], (int)len, v)
                : snprintf(out + used, n - used, "%s%s", used ? " " : "",
                           keys[i]);
        if (k < 0 || (size_t)k >= n - used) {
            out[used] = '\0';
            return;
        }
        used += (size_t)k;
    }
}

char *
esmtp_params_without(const char *params, const char *const *keys, int *dropped)
{
    size_t len = strlen(params), used = 0;
    const char *p = params;
    char *out;

    *dropped = 0;
    if ((out = malloc(len + 1)) == NULL)
        return NULL;
    while (*p != '\0') {
        size_t n, i, k;
        int drop = 0;

        p += strspn(p, " ");
        if ((n = strcspn(p, " ")) == 0)
            break;
        for (i = 0; keys[i] != NULL && !drop; i++) {
            k = strlen(keys[i]);
            drop = n >= k && strncasecmp(p, keys[i], k) == 0 &&
                   (n == k || p[k] == '=');
        }
        if (drop) {
            *dropped = 1;
        } else {
            if (used > 0)
                out[used++] = ' ';
            memcpy(out + used, p, n);
            used += n;
        }
        p += n;
    }
    out[used] = '\0';
    return out;
}
