/*
 * auth - SMTP AUTH users and TLS contexts for the SMTP server
 *
 * See auth.h. auth_table_load() reads the whole password file (at most
 * AUTH_FILE_MAX octets) into one block that the table owns; each entry
 * points into it. The file is refused when others may read or write it,
 * and every line is checked in three passes so cheap mistakes are
 * reported first: syntax, then duplicate users, then each hash is run
 * through crypt_r() once so a hash libcrypt cannot use, or one that is
 * only a salt, stops the load instead of locking the user out later.
 * That last pass costs one hash computation per user at load time.
 *
 * auth_verify() computes exactly one hash per call, for unknown users
 * too (against the first user's hash, or a generated setting when the
 * table is empty), and compares with CRYPTO_memcmp(). struct crypt_data
 * is 32 KiB, so it comes from calloc(), never from a thread's stack.
 *
 * auth_passwd_set() holds an exclusive flock() on the file's directory
 * while it rewrites the file through a temporary in that directory
 * (fsync, rename, fsync of the directory), so two concurrent runs do not
 * lose each other's change and a crash leaves the old or the new file.
 * A new file gets mode 0640; an existing one keeps its owner, group and
 * permission bits less any for others (so a world-readable file that the
 * loader refuses is fixed by the next passwd).
 *
 * auth_rate is an open-addressing table of fixed size under one mutex:
 * each key (an IPv4 address, or the /64 of an IPv6 one) may sit in one of
 * AUTH_RATE_PROBE slots after its hash, salted per table from
 * getrandom() so a client cannot choose addresses that collide. A count
 * decays linearly at the limit a minute, so a count at the limit means
 * "limit failures within the last minute"; an entry decayed to zero is a
 * free slot; an attempt is allowed while it keeps the count at most
 * the limit. When all the slots a key may take are busy, the one with
 * the lowest count goes: a flood of new addresses can evict a client's
 * entry only by failing from as many networks.
 *
 * Nothing here logs; failures are reported through struct err.
 */
#include "config.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/auth.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/fdio.h"

#define AUTH_FILE_MAX (1024 * 1024)
#define AUTH_LINE_MAX 1024
/* authzid NUL authcid NUL passwd, each at its limit. */
#define AUTH_SASL_MAX (2 * AUTH_USER_MAX + AUTH_PASS_MAX + 2)
#define AUTH_STR_(x) #x
#define AUTH_STR(x) AUTH_STR_(x)

/* auth_crypt() results besides 0 */
#define AUTH_CRYPT_UNUSABLE (-1)
#define AUTH_CRYPT_NOMEM (-2)

struct auth_user {
    const char *name; /* points into auth_table.text */
    const char *hash; /* ditto */
    unsigned line;
};

struct auth_table {
    char *text;              /* the file, split into NUL-terminated fields */
    struct auth_user *users; /* sorted by name for bsearch() */
    size_t nusers;
    /* Hashed for unknown users so they cost what a known one costs. */
    char dummy[CRYPT_OUTPUT_SIZE];
};

static int
auth_is_blank(int c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* auth_user_why - NULL when name can be a user in the file, else why not.
 * ':' ends the name in a line, and '#' would start a comment. */
const char *
auth_user_why(const char *name, size_t len)
{
    size_t i;

    if (len == 0)
        return "empty user name";
    if (len > AUTH_USER_MAX)
        return "user name longer than " AUTH_STR(AUTH_USER_MAX) " octets";
    if (name[0] == '#')
        return "user name starts with '#'";
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c <= ' ' || c == 0x7f)
            return "user name has white space or control characters";
        if (c == ':')
            return "user name has a ':'";
    }
    return NULL;
}

/* auth_crypt - hash pass with setting into out (size n); 0, or
 * AUTH_CRYPT_UNUSABLE when crypt(3) cannot use the setting, or
 * AUTH_CRYPT_NOMEM. */
static int
auth_crypt(const char *pass, const char *setting, char *out, size_t n)
{
    int rc = AUTH_CRYPT_UNUSABLE;
    struct crypt_data *cd;
    const char *r;

    if ((cd = calloc(1, sizeof(*cd))) == NULL)
        return AUTH_CRYPT_NOMEM;
    r = crypt_r(pass, setting, cd);
    if (r != NULL && r[0] != '*' && strlen(r) < n) {
        memcpy(out, r, strlen(r) + 1);
        rc = 0;
    }
    OPENSSL_cleanse(cd, sizeof(*cd));
    free(cd);
    return rc;
}

/* auth_hash_new - a fresh hash of pass: yescrypt, or SHA-512-crypt where
 * this libcrypt has no yescrypt. */
static int
auth_hash_new(const char *pass, char *out, size_t n, struct err *e)
{
    static const char *const prefixes[] = {"$y$", "$6$"};
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    size_t i;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (crypt_gensalt_rn(prefixes[i], 0, NULL, 0, setting,
                             (int)sizeof(setting)) == NULL)
            continue;
        switch (auth_crypt(pass, setting, out, n)) {
        case 0:
            return 0;
        case AUTH_CRYPT_NOMEM:
            return err_nomem(e);
        }
    }
    return err_set(e, ERR_LIB,
                   "libcrypt can make neither a yescrypt nor a "
                   "SHA-512-crypt hash");
}

/* auth_hash_check - NULL when crypt(3) can verify passwords against
 * hash, else why not. A usable hash hashes a dummy password to a string
 * of its own length with its own setting (all up to the last '$', or the
 * two salt characters of traditional DES). */
static const char *
auth_hash_check(const char *hash, int *nomem)
{
    char out[CRYPT_OUTPUT_SIZE];
    const char *dollar = strrchr(hash, '$');
    size_t keep = dollar ? (size_t)(dollar - hash) + 1 : 2;
    int rc = auth_crypt("relaychain-probe", hash, out, sizeof(out));

    *nomem = rc == AUTH_CRYPT_NOMEM;
    if (rc != 0)
        return "crypt(3) cannot use this hash (unknown or disabled "
               "method, or a malformed salt)";
    if (strlen(out) != strlen(hash) || strlen(hash) < keep ||
        memcmp(out, hash, keep) != 0)
        return "the hash is incomplete or damaged (a salt without the "
               "hashed password?)";
    return NULL;
}

static int
auth_user_cmp(const void *a, const void *b)
{
    const struct auth_user *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0)
        return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* auth_read_fd - the whole of fd into b, at most AUTH_FILE_MAX octets. */
static int
auth_read_fd(int fd, const char *path, struct buf *b, struct err *e)
{
    char chunk[8192];
    ssize_t n;

    buf_init(b, AUTH_FILE_MAX);
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return err_sys(e, ERR_IO, "%s: read error", path);
        if (n == 0)
            return 0;
        if (buf_append(b, chunk, (size_t)n, e) < 0) {
            if (e != NULL && e->code == ERR_LIMIT)
                err_set(e, ERR_LIMIT, "%s: larger than %d octets", path,
                        AUTH_FILE_MAX);
            return -1;
        }
    }
}

/* auth_parse - split t->text (len octets) into t->users; syntax only. */
static int
auth_parse(struct auth_table *t, const char *path, size_t len, struct err *e)
{
    char *p = t->text, *end = t->text + len;
    size_t cap = 0;
    unsigned line = 0;

    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end, *s = p, *colon, *h;
        const char *why;

        line++;
        p = nl ? nl + 1 : end;
        if ((size_t)(eol - s) > AUTH_LINE_MAX)
            return err_set(e, ERR_CONFIG, "%s:%u: line longer than %d octets",
                           path, line, AUTH_LINE_MAX);
        if (memchr(s, '\0', (size_t)(eol - s)) != NULL)
            return err_set(e, ERR_CONFIG, "%s:%u: NUL octet in the line", path,
                           line);
        while (s < eol && auth_is_blank(*s))
            s++;
        while (eol > s && auth_is_blank(eol[-1]))
            eol--;
        *eol = '\0';
        if (s == eol || *s == '#')
            continue;
        if ((colon = strchr(s, ':')) == NULL)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: no ':' between user and hash", path, line);
        if ((why = auth_user_why(s, (size_t)(colon - s))) != NULL)
            return err_set(e, ERR_CONFIG, "%s:%u: %s", path, line, why);
        *colon = '\0';
        h = colon + 1;
        if (*h == '\0')
            return err_set(e, ERR_CONFIG, "%s:%u: empty hash for user '%s'",
                           path, line, s);
        if (strchr(h, ':') != NULL)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: more than one ':' (the format is "
                           "user:hash)",
                           path, line);
        if (t->nusers == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            struct auth_user *nu = realloc(t->users, ncap * sizeof(*nu));

            if (nu == NULL)
                return err_nomem(e);
            t->users = nu;
            cap = ncap;
        }
        t->users[t->nusers].name = s;
        t->users[t->nusers].hash = h;
        t->users[t->nusers].line = line;
        t->nusers++;
    }
    return 0;
}

/* auth_check - sort the users, refuse duplicates, then check every hash
 * and report the failure on the earliest line. */
static int
auth_check(struct auth_table *t, const char *path, struct err *e)
{
    const struct auth_user *dup = NULL, *first = NULL, *bad = NULL;
    const char *why = NULL;
    size_t i, start = 0;

    /* The first user in the file gives the cost of a typical entry. */
    if (t->nusers > 0 && snprintf(t->dummy, sizeof(t->dummy), "%s",
                                  t->users[0].hash) >= (int)sizeof(t->dummy))
        return err_set(e, ERR_CONFIG, "%s:%u: hash longer than %d octets",
                       path, t->users[0].line, CRYPT_OUTPUT_SIZE - 1);
    if (t->nusers > 1)
        qsort(t->users, t->nusers, sizeof(*t->users), auth_user_cmp);
    for (i = 1; i < t->nusers; i++) {
        if (strcmp(t->users[i - 1].name, t->users[i].name) != 0)
            start = i;
        else if (i == start + 1 &&
                 (dup == NULL || t->users[i].line < dup->line)) {
            dup = &t->users[i];
            first = &t->users[start];
        }
    }
    if (dup != NULL)
        return err_set(e, ERR_CONFIG,
                       "%s:%u: duplicate user '%s' (first on line %u)", path,
                       dup->line, dup->name, first->line);
    for (i = 0; i < t->nusers; i++) {
        const char *w;
        int nomem;

        if ((w = auth_hash_check(t->users[i].hash, &nomem)) == NULL)
            continue;
        if (nomem)
            return err_nomem(e);
        if (bad == NULL || t->users[i].line < bad->line) {
            bad = &t->users[i];
            why = w;
        }
    }
    if (bad != NULL)
        return err_set(e, ERR_CONFIG, "%s:%u: user '%s': %s", path, bad->line,
                       bad->name, why);
    return 0;
}

struct auth_table *
auth_table_load(const char *path, struct err *e)
{
    struct auth_table *t = NULL;
    struct stat st;
    struct buf b;
    size_t len;
    int fd;

    buf_init(&b, AUTH_FILE_MAX);
    /* O_NONBLOCK: a FIFO in its place is refused below, not waited on. */
    if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0) {
        err_sys(e, ERR_CONFIG, "%s: cannot open", path);
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        err_sys(e, ERR_IO, "%s: cannot stat", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(e, ERR_CONFIG, "%s: not a regular file", path);
        goto fail;
    }
    if (cfg_secret_check(path, &st, S_IROTH | S_IWOTH, "password hashes", e) <
        0)
        goto fail;
    if (auth_read_fd(fd, path, &b, e) < 0)
        goto fail;
    close(fd);
    fd = -1;
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    if ((t->text = buf_steal(&b, &len)) == NULL) {
        err_nomem(e);
        goto fail;
    }
    if (auth_parse(t, path, len, e) < 0 || auth_check(t, path, e) < 0)
        goto fail;
    /* Nobody to copy the cost from: what a new user's hash costs. */
    if (t->nusers == 0 &&
        auth_hash_new("relaychain-dummy", t->dummy, sizeof(t->dummy), e) < 0)
        goto fail;
    return t;

fail:
    if (fd >= 0)
        close(fd);
    buf_fini(&b);
    auth_table_free(t);
    return NULL;
}

void
auth_table_free(struct auth_table *t)
{
    if (t == NULL)
        return;
    free(t->users);
    free(t->text);
    free(t);
}

static int
auth_name_cmp(const void *key, const void *elem)
{
    const struct auth_user *u = elem;

    return strcmp(key, u->name);
}

int
auth_verify(const struct auth_table *t, const char *user, const char *pass)
{
    const struct auth_user *u = NULL;
    char out[CRYPT_OUTPUT_SIZE];
    const char *hash;
    size_t n;
    int same;

    if (t == NULL || user == NULL || pass == NULL)
        return 0;
    if (t->nusers > 0)
        u = bsearch(user, t->users, t->nusers, sizeof(*t->users),
                    auth_name_cmp);
    hash = u != NULL ? u->hash : t->dummy;
    n = strlen(hash);
    same = auth_crypt(pass, hash, out, sizeof(out)) == 0 && strlen(out) == n &&
           CRYPTO_memcmp(out, hash, n) == 0;
    OPENSSL_cleanse(out, sizeof(out));
    return u != NULL && same;
}

/* --------------------------------------------------------------- rate */

#define AUTH_RATE_PROBE 8

struct auth_rate_slot {
    unsigned char key[16];
    double count; /* failures, decayed to last_ms */
    long long last_ms;
};

struct auth_rate {
    pthread_mutex_t lock;
    struct auth_rate_slot *slots;
    size_t nslots;
    unsigned long long salt;
};

struct auth_rate *
auth_rate_new(size_t slots, struct err *e)
{
    struct auth_rate *r;

    if (slots < AUTH_RATE_PROBE)
        slots = AUTH_RATE_PROBE;
    if ((r = calloc(1, sizeof(*r))) == NULL ||
        (r->slots = calloc(slots, sizeof(*r->slots))) == NULL) {
        free(r);
        err_nomem(e);
        return NULL;
    }
    r->nslots = slots;
    if (getrandom(&r->salt, sizeof(r->salt), GRND_NONBLOCK) !=
        (ssize_t)sizeof(r->salt))
        r->salt = (unsigned long long)time(NULL) ^
                  ((unsigned long long)getpid() << 32) ^ (uintptr_t)r;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void
auth_rate_free(struct auth_rate *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->slots);
    free(r);
}

/* auth_rate_key - addr as 16 octets: IPv4 (also IPv4-mapped IPv6) as
 * ::ffff:a.b.c.d, IPv6 cut to its /64; anything else ("local") is all
 * zeros, one shared entry. */
static void
auth_rate_key(const char *addr, unsigned char key[16])
{
    struct in_addr a4;

    memset(key, 0, 16);
    if (inet_pton(AF_INET, addr, &a4) == 1) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a4, 4);
    } else if (inet_pton(AF_INET6, addr, key) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
                                                 0, 0, 0, 0, 0xff, 0xff};

        if (memcmp(key, mapped, sizeof(mapped)) != 0)
            memset(key + 8, 0, 8);
    }
}

void
auth_rate_name(const char *addr, char *out, size_t n)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
                                             0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zero[16];
    unsigned char key[16];
    char text[INET6_ADDRSTRLEN];

    auth_rate_key(addr, key);
    if (memcmp(key, zero, sizeof(zero)) == 0)
        snprintf(out, n, "local");
    else if (memcmp(key, mapped, sizeof(mapped)) == 0 &&
             inet_ntop(AF_INET, key + 12, text, sizeof(text)) != NULL)
        snprintf(out, n, "%s", text);
    else if (inet_ntop(AF_INET6, key, text, sizeof(text)) != NULL)
        snprintf(out, n, "%s/64", text);
    else
        snprintf(out, n, "local");
}

/* auth_rate_decayed - the count of a slot at now_ms. */
static double
auth_rate_decayed(const struct auth_rate_slot *s, unsigned limit,
                  long long now_ms)
{
    double c = s->count;

    if (now_ms > s->last_ms)
        c -= (double)(now_ms - s->last_ms) * limit / 60000.0;
    return c > 0 ? c : 0;
}

/* auth_rate_find - the slot of key, or with make the slot to take for it
 * (emptied); NULL when absent and not make. Called locked. */
static struct auth_rate_slot *
auth_rate_find(struct auth_rate *r, const unsigned char key[16],
               unsigned limit, long long now_ms, int make)
{
    unsigned long long h = 1469598103934665603ULL ^ r->salt;
    struct auth_rate_slot *victim = NULL;
    double lowest = 0;
    size_t i;

    for (i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ULL;
    for (i = 0; i < AUTH_RATE_PROBE; i++) {
        struct auth_rate_slot *s = &r->slots[(h + i) % r->nslots];
        double c = auth_rate_decayed(s, limit, now_ms);

        if (c > 0 && memcmp(s->key, key, 16) == 0)
            return s;
        if (victim == NULL || c < lowest) {
            victim = s;
            lowest = c;
        }
    }
    if (!make)
        return NULL;
    memcpy(victim->key, key, 16);
    victim->count = 0;
    victim->last_ms = now_ms;
    return victim;
}

/* auth_rate_lock - lock r and find the slot of addr (text form) as
 * auth_rate_find() does; the caller unlocks r->lock. */
static struct auth_rate_slot *
auth_rate_lock(struct auth_rate *r, const char *addr, unsigned limit,
               long long now_ms, int make)
{
    unsigned char key[16];

    auth_rate_key(addr, key);
    pthread_mutex_lock(&r->lock);
    return auth_rate_find(r, key, limit, now_ms, make);
}

int
auth_rate_over(struct auth_rate *r, const char *addr, unsigned limit,
               long long now_ms)
{
    struct auth_rate_slot *s;
    int over = 0;

    if (r == NULL || limit == 0)
        return 0;
    if ((s = auth_rate_lock(r, addr, limit, now_ms, 0)) != NULL)
        over = auth_rate_decayed(s, limit, now_ms) + 1 > (double)limit;
    pthread_mutex_unlock(&r->lock);
    return over;
}

int
auth_rate_take(struct auth_rate *r, const char *addr, unsigned limit,
               long long now_ms)
{
    struct auth_rate_slot *s;
    double c;
    int over;

    if (r == NULL || limit == 0)
        return 0;
    s = auth_rate_lock(r, addr, limit, now_ms, 1);
    c = auth_rate_decayed(s, limit, now_ms);
    if (!(over = c + 1 > (double)limit))
        c += 1;
    s->count = c;
    s->last_ms = now_ms;
    pthread_mutex_unlock(&r->lock);
    return over;
}

void
auth_rate_refund(struct auth_rate *r, const char *addr, unsigned limit,
                 long long now_ms)
{
    struct auth_rate_slot *s;

    if (r == NULL || limit == 0)
        return;
    if ((s = auth_rate_lock(r, addr, limit, now_ms, 0)) != NULL) {
        s->count = auth_rate_decayed(s, limit, now_ms) - 1;
        if (s->count < 0)
            s->count = 0;
        s->last_ms = now_ms;
    }
    pthread_mutex_unlock(&r->lock);
}

/* ------------------------------------------------------------- passwd */

/* auth_dirname - the directory of path into out ("." for a bare name). */
static int
auth_dirname(const char *path, char *out, size_t n, struct err *e)
{
    const char *slash = strrchr(path, '/');
    size_t len;

    if (slash == NULL) {
        path = ".";
        len = 1;
    } else {
        len = slash == path ? 1 : (size_t)(slash - path);
    }
    if (len >= n)
        return err_set(e, ERR_INPUT, "%s: path too long", path);
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

/* auth_line_user_is - true when the line (len octets) is user's entry. */
static int
auth_line_user_is(const char *s, size_t len, const char *user, size_t ulen)
{
    while (len > 0 && auth_is_blank(*s))
        s++, len--;
    return len > ulen && memcmp(s, user, ulen) == 0 && s[ulen] == ':';
}

/* auth_passwd_text - old (may be empty) with user's line set to hash:
 * the first entry of user replaced, later ones dropped, or a line added.
 * *replaced tells which. */
static int
auth_passwd_text(const struct buf *old, const char *user, const char *hash,
                 struct buf *out, int *replaced, struct err *e)
{
    const char *p = old->data, *end = old->data + old->len;
    size_t ulen = strlen(user);

    *replaced = 0;
    buf_init(out, AUTH_FILE_MAX);
    while (p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);

        if (!auth_line_user_is(p, len, user, ulen)) {
            if (buf_append(out, p, len, e) < 0 || buf_putc(out, '\n', e) < 0)
                goto fail;
        } else if (!*replaced) {
            if (buf_printf(out, e, "%s:%s\n", user, hash) < 0)
                goto fail;
            *replaced = 1;
        }
        p = nl ? nl + 1 : end;
    }
    if (!*replaced && buf_printf(out, e, "%s:%s\n", user, hash) < 0)
        goto fail;
    return 0;

fail:
    if (e != NULL && e->code == ERR_LIMIT)
        err_set(e, ERR_LIMIT, "the new file would be larger than %d octets",
                AUTH_FILE_MAX);
    return -1;
}

/* auth_passwd_update - auth_passwd_set(), telling whether user was
 * already there. The caller holds the directory lock (dfd). */
static int
auth_passwd_update(int dfd, const char *path, const char *user,
                   const char *hash, int *replaced, struct err *e)
{
    char tmp[PATH_MAX];
    struct buf old, text;
    mode_t mode = 0640;
    struct stat st;
    int fd = -1, exists = 0, rc = -1;

    buf_init(&old, AUTH_FILE_MAX);
    buf_init(&text, AUTH_FILE_MAX);
    if (lstat(path, &st) == 0) {
        exists = 1;
        if (S_ISLNK(st.st_mode)) {
            err_set(e, ERR_INPUT,
                    "%s: is a symbolic link; name the file it points to",
                    path);
            goto out;
        }
        if (!S_ISREG(st.st_mode)) {
            err_set(e, ERR_INPUT, "%s: not a regular file", path);
            goto out;
        }
        /* Keep what the administrator chose, less any access by others. */
        mode = st.st_mode & 0770;
        if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
            err_sys(e, ERR_IO, "%s: cannot open", path);
            goto out;
        }
        if (auth_read_fd(fd, path, &old, e) < 0)
            goto out;
        close(fd);
        fd = -1;
    } else if (errno != ENOENT) {
        err_sys(e, ERR_IO, "%s: cannot stat", path);
        goto out;
    }
    if (auth_passwd_text(&old, user, hash, &text, replaced, e) < 0)
        goto out;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp)) {
        err_set(e, ERR_INPUT, "%s: path too long", path);
        goto out;
    }
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        err_sys(e, ERR_IO, "%s: cannot create a temporary file", tmp);
        goto out;
    }
    if (fchmod(fd, mode) < 0) {
        err_sys(e, ERR_IO, "%s: chmod", tmp);
        goto fail_tmp;
    }
    if (exists && (st.st_uid != geteuid() || st.st_gid != getegid()) &&
        fchown(fd, st.st_uid, st.st_gid) < 0) {
        err_sys(e, ERR_IO,
                "%s: cannot give the new file the owner and group of the "
                "old one (%u:%u)",
                path, (unsigned)st.st_uid, (unsigned)st.st_gid);
        goto fail_tmp;
    }
    if (fdio_write_all(fd, text.data ? text.data : "", text.len) < 0 ||
        fsync(fd) < 0) {
        err_sys(e, ERR_IO, "%s: write", tmp);
        goto fail_tmp;
    }
    if (close(fd) < 0) {
        fd = -1;
        err_sys(e, ERR_IO, "%s: close", tmp);
        goto fail_tmp;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        err_sys(e, ERR_IO, "%s: cannot rename %s to it", path, tmp);
        goto fail_tmp;
    }
    if (fsync(dfd) < 0) {
        err_sys(e, ERR_IO, "%s: fsync of its directory", path);
        goto out;
    }
    rc = 0;
    goto out;

fail_tmp:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    buf_fini(&old);
    buf_fini(&text);
    return rc;
}

/* auth_passwd_change - auth_passwd_set() that also says whether the user
 * was there before (*replaced). */
int
auth_passwd_change(const char *path, const char *user, const char *pass,
                   int *replaced, struct err *e)
{
    char dir[PATH_MAX], hash[CRYPT_OUTPUT_SIZE];
    const char *why;
    int dfd, rc;

    if (path == NULL || user == NULL || pass == NULL)
        return err_set(e, ERR_INTERNAL, "auth_passwd_set: NULL argument");
    if ((why = auth_user_why(user, strlen(user))) != NULL)
        return err_set(e, ERR_INPUT, "'%s': %s", user, why);
    if (*pass == '\0')
        return err_set(e, ERR_INPUT, "empty password");
    if (strlen(pass) > AUTH_PASS_MAX)
        return err_set(e, ERR_INPUT, "password longer than %d octets",
                       AUTH_PASS_MAX);
    if (auth_dirname(path, dir, sizeof(dir), e) < 0)
        return -1;
    if (auth_hash_new(pass, hash, sizeof(hash), e) < 0)
        return -1;
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "%s: cannot open the directory", dir);
    if (flock(dfd, LOCK_EX) < 0) {
        err_sys(e, ERR_IO, "%s: cannot lock the directory", dir);
        close(dfd);
        return -1;
    }
    rc = auth_passwd_update(dfd, path, user, hash, replaced, e);
    close(dfd); /* releases the lock */
    OPENSSL_cleanse(hash, sizeof(hash));
    return rc;
}

int
auth_passwd_set(const char *path, const char *user, const char *pass,
                struct err *e)
{
    int replaced;

    return auth_passwd_change(path, user, pass, &replaced, e);
}

/* -------------------------------------------------------------- SASL */

static int
auth_b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long
auth_b64_decode(const char *in, size_t len, unsigned char *out, size_t n)
{
    size_t i, pad = 0, total = 0;

    if (in == NULL || (out == NULL && n > 0) || len % 4 != 0 ||
        len / 4 > (size_t)LONG_MAX / 3)
        return -1;
    if (len > 0 && in[len - 1] == '=')
        pad = len > 1 && in[len - 2] == '=' ? 2 : 1;
    for (i = 0; i < len - pad; i++)
        if (auth_b64_value((unsigned char)in[i]) < 0)
            return -1;
    /* Unused bits of the last character before the padding must be 0, so
     * each octet string has exactly one encoding. */
    if (pad == 2 && (auth_b64_value((unsigned char)in[len - 3]) & 0x0f))
        return -1;
    if (pad == 1 && (auth_b64_value((unsigned char)in[len - 2]) & 0x03))
        return -1;
    if (len / 4 * 3 - pad > n)
        return -1;
    /* By hand: EVP_DecodeBlock() would accept "QQ=A" and white space. */
    for (i = 0; i < len; i += 4) {
        unsigned long v = 0;
        size_t k, keep = i + 4 == len ? 3 - pad : 3;

        for (k = 0; k < 4; k++) {
            int d = auth_b64_value((unsigned char)in[i + k]);

            v = v << 6 | (unsigned long)(d < 0 ? 0 : d);
        }
        for (k = 0; k < keep; k++)
            out[total++] = (unsigned char)(v >> (16 - 8 * k));
    }
    return (long)total;
}

long
auth_b64_encode(const unsigned char *in, size_t len, char *out, size_t n)
{
    size_t need;

    if (in == NULL || out == NULL || len > (size_t)INT_MAX / 4 * 3 - 3)
        return -1;
    need = (len + 2) / 3 * 4;
    if (need + 1 > n)
        return -1;
    return (long)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int
auth_sasl_plain_decode(const char *b64, char *user, char *pass, size_t n)
{
    unsigned char raw[AUTH_SASL_MAX];
    const unsigned char *authzid, *authcid, *passwd, *nul1, *nul2, *end;
    size_t zlen, clen, plen, i;
    long len;
    int rc = -1;

    if (b64 == NULL || user == NULL || pass == NULL || n == 0)
        return -1;
    len = auth_b64_decode(b64, strlen(b64), raw, sizeof(raw));
    if (len < 0)
        goto out;
    end = raw + len;
    authzid = raw;
    if ((nul1 = memchr(raw, '\0', (size_t)len)) == NULL)
        goto out;
    authcid = nul1 + 1;
    if ((nul2 = memchr(authcid, '\0', (size_t)(end - authcid))) == NULL)
        goto out;
    passwd = nul2 + 1;
    zlen = (size_t)(nul1 - authzid);
    clen = (size_t)(nul2 - authcid);
    plen = (size_t)(end - passwd);
    /* RFC 4616: authcid and passwd are 1*SAFE, SAFE being any UTF-8 but
     * NUL; a third NUL is malformed. */
    if (clen == 0 || plen == 0 || memchr(passwd, '\0', plen) != NULL)
        goto out;
    /* Acting for another identity is not supported. */
    if (zlen != 0 && (zlen != clen || memcmp(authzid, authcid, clen) != 0))
        goto out;
    /* The user name goes into logs and headers. */
    for (i = 0; i < clen; i++)
        if (authcid[i] < ' ' || authcid[i] == 0x7f)
            goto out;
    if (clen >= n || plen >= n || clen > AUTH_USER_MAX || plen > AUTH_PASS_MAX)
        goto out;
    memcpy(user, authcid, clen);
    user[clen] = '\0';
    memcpy(pass, passwd, plen);
    pass[plen] = '\0';
    rc = 0;
out:
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

/* --------------------------------------------------------------- TLS */

/* auth_ssl_err - "file: what: OpenSSL's first queued error"; -1. */
static int
auth_ssl_err(struct err *e, const char *file, const char *what)
{
    unsigned long code = ERR_get_error();
    char text[256];

    if (code == 0)
        snprintf(text, sizeof(text), "no reason given by OpenSSL");
    else
        ERR_error_string_n(code, text, sizeof(text));
    ERR_clear_error();
    if (file != NULL)
        return err_set(e, ERR_LIB, "%s: %s: %s", file, what, text);
    return err_set(e, ERR_LIB, "%s: %s", what, text);
}

/* auth_no_passphrase - a daemon has nobody to ask: note that a key
 * wanted a passphrase and give none, instead of OpenSSL's prompt. */
static int
auth_no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)asked = 1;
    return 0;
}

/* auth_key_read - the private key file into b, refused when it is not
 * a regular file or other users may read or write it; 0, or -1 with e.
 * The caller wipes b (OPENSSL_cleanse) before buf_fini(). */
static int
auth_key_read(const char *path, struct buf *b, struct err *e)
{
    struct stat st;
    int fd, rc = -1;

    buf_init(b, AUTH_FILE_MAX);
    if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_CONFIG, "%s: cannot open the private key", path);
    if (fstat(fd, &st) < 0)
        err_sys(e, ERR_CONFIG, "%s: cannot stat", path);
    else if (!S_ISREG(st.st_mode))
        err_set(e, ERR_CONFIG, "%s: the private key is not a regular file",
                path);
    else if (cfg_secret_check(path, &st, S_IROTH | S_IWOTH,
                              "a TLS private key", e) == 0)
        rc = auth_read_fd(fd, path, b, e);
    close(fd);
    return rc;
}

static SSL_CTX *
auth_ctx_new(const SSL_METHOD *method, struct err *e)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    if ((ctx = SSL_CTX_new(method)) == NULL) {
        auth_ssl_err(e, NULL, "cannot make a TLS context");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        auth_ssl_err(e, NULL, "cannot require TLS 1.2");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    return ctx;
}

SSL_CTX *
auth_tls_server_ctx(const char *cert_file, const char *key_file, struct err *e)
{
    struct buf keytext;
    EVP_PKEY *pkey;
    SSL_CTX *ctx;
    BIO *bio;
    int asked = 0, ok;

    if (cert_file == NULL || key_file == NULL) {
        err_set(e, ERR_CONFIG, "TLS needs both a certificate and a key");
        return NULL;
    }
    if ((ctx = auth_ctx_new(TLS_server_method(), e)) == NULL)
        return NULL;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        auth_ssl_err(e, cert_file, "cannot load the certificate chain");
        goto fail;
    }
    /* The key is parsed from what was read through the descriptor whose
     * mode was checked, not opened again by name. */
    if (auth_key_read(key_file, &keytext, e) < 0) {
        if (keytext.data != NULL)
            OPENSSL_cleanse(keytext.data, keytext.len);
        buf_fini(&keytext);
        goto fail;
    }
    bio = BIO_new_mem_buf(keytext.data != NULL ? keytext.data : "",
                          (int)keytext.len);
    pkey = bio != NULL
               ? PEM_read_bio_PrivateKey(bio, NULL, auth_no_passphrase, &asked)
               : NULL;
    BIO_free(bio);
    if (keytext.data != NULL)
        OPENSSL_cleanse(keytext.data, keytext.len);
    buf_fini(&keytext);
    ok = pkey != NULL && SSL_CTX_use_PrivateKey(ctx, pkey) == 1;
    EVP_PKEY_free(pkey);
    /* OpenSSL compares the key with the certificate as it loads it. */
    if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long code = ERR_peek_error();
        char what[512];

        if (ERR_GET_LIB(code) == ERR_LIB_X509 &&
            ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof(what),
                     "the private key does not match the certificate in %s",
                     cert_file);
        else if (asked)
            snprintf(what, sizeof(what),
                     "cannot load the private key (it is encrypted and "
                     "there is nobody to give the passphrase: store it "
                     "decrypted, mode 0600)");
        else
            snprintf(what, sizeof(what), "cannot load the private key");
        auth_ssl_err(e, key_file, what);
        goto fail;
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *
auth_tls_client_ctx(struct err *e)
{
    SSL_CTX *ctx;

    if ((ctx = auth_ctx_new(TLS_client_method(), e)) == NULL)
        return NULL;
    /* Opportunistic TLS: encryption against passive listeners only. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}
