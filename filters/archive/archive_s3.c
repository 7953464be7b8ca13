/*
 * archive_s3 - the archive stage's S3 store (store = s3://bucket/prefix)
 *
 * Each sealed record is one object, path style:
 * s3_endpoint/BUCKET/PREFIX/WRITER/SEQ. libcurl does the HTTP and signs
 * every request with its own AWS Signature Version 4 (CURLOPT_AWS_SIGV4
 * "aws:amz:REGION:s3"; nothing here computes a signature). Besides what
 * curl signs, each request carries x-amz-content-sha256, the SHA-256 of
 * its body, which S3 requires; query strings are written in the sorted,
 * encoded form the signature is computed over.
 *
 *   put     PUT with Content-MD5, so the server refuses a body that
 *           changed on the way; with s3_object_lock, in COMPLIANCE mode
 *           until now + retention. 0 only on 200.
 *   get     GET; 404 is ERR_INPUT, as the store contract asks.
 *   list    ListObjectsV2 (list-type=2) with the writer's prefix, pages of
 *           s3_list_page keys, continuation tokens; the XML is read with
 *           libxml2 (no network, no entities).
 *   remove  DELETE; refused with s3_object_lock (the server keeps the
 *           object until its date, and so does the store).
 *
 * Every failure is ERR_TEMP (no connection, a timeout, 5xx, 429, 408) or
 * ERR_IO (another status) with the HTTP status and S3's error code and
 * message in the text; never the credentials.
 *
 * Handles: each request takes an easy handle from a small locked pool of
 * idle ones and gives it back after a complete exchange, so connections
 * are kept alive between records; a handle is used by one thread at a
 * time, and the pool makes the store safe to share between threads.
 * Timeouts: s3_timeout bounds each request as a whole, and the connect
 * within it.
 *
 * The credentials file (s3_credentials_file) is read at open: two keys in
 * the configuration syntax,
 *
 *     access_key_id = AKIAIOSFODNN7EXAMPLE
 *     secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
 *
 * and refused when its mode lets other users read or write it (as the
 * DKIM stage's private keys).
 *
 * Ownership: the store owns its copies of every string and the pool;
 * close frees them. Nothing here prints; errors go back in struct err.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/evp.h>

#include "filters/archive/archive_remote.h"
#include "filters/archive/archive_store.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"

#define S3_POOL 8                      /* idle handles kept */
#define S3_REPLY_MAX (8 * 1024 * 1024) /* octets of an XML reply */
#define S3_NAME_MAX 512                /* octets of a record name */
#define S3_PREFIX_MAX 512              /* octets of the key prefix */
#define S3_CRED_MAX 4096               /* octets of the credentials */
#define S3_CONNECT_MS 10000L           /* at most, within s3_timeout */
#define S3_ERRTEXT 160                 /* octets of S3's message kept */
#define S3_EMPTY_PAGES 16 /* "truncated" pages in a row without keys */

const struct cfg_option arc_s3_options[] = {
    ARC_S3_OPTION_ENTRIES CFG_OPTION_END,
};

struct s3_store {
    char *endpoint; /* "http://127.0.0.1:9000", no trailing "/" */
    char *bucket;
    char *prefix; /* "" or "a/b/" (with the "/") */
    char *region;
    char *sigv4; /* "aws:amz:REGION:s3" */
    char *key_id, *secret;
    int object_lock;
    char retention[32]; /* "7y", "90d": as configured, for texts */
    long long ret_n;    /* retention count of ret_unit */
    char ret_unit;      /* 'd', 'w' or 'y' */
    long timeout_ms;
    long page;
    pthread_mutex_t lock;
    CURL *idle[S3_POOL];
    size_t nidle;
};

/* One response: status, body (bounded), for error texts and XML. */
struct s3_resp {
    long status;
    struct buf *body; /* where the body goes */
    struct err berr;  /* why the body could not be kept */
    int over;
};

static pthread_once_t s3_once = PTHREAD_ONCE_INIT;
static CURLcode s3_curl_rc = CURLE_FAILED_INIT;

static void
s3_global_init(void)
{
    s3_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    xmlInitParser();
}

/* ---------------------------------------------------------- small helpers */

static void
s3_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int
s3_digest(const EVP_MD *md, const void *p, size_t n, unsigned char *out,
          struct err *e)
{
    unsigned int olen = 0;

    if (EVP_Digest(p, n, out, &olen, md, NULL) != 1)
        return err_set(e, ERR_LIB, "s3: EVP_Digest failed");
    return 0;
}

/* s3_encode - append s to b, URI-encoded as SigV4 wants (RFC 3986
 * unreserved octets as they are, every other octet %XX upper case); "/"
 * is kept when keep_slash. */
static int
s3_encode(struct buf *b, const char *s, int keep_slash, struct err *e)
{
    static const char hx[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
            (keep_slash && c == '/')) {
            if (buf_putc(b, c, e) < 0)
                return -1;
        } else {
            char t[3] = {'%', hx[c >> 4], hx[c & 15]};

            if (buf_append(b, t, 3, e) < 0)
                return -1;
        }
    }
    return 0;
}

/* s3_printable - dst (size octets) gets src with anything outside
 * printable ASCII as '?', cut to fit: peer text for our messages. */
static void
s3_printable(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    for (; src && *src && n + 1 < size; src++) {
        unsigned char c = (unsigned char)*src;

        dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[n] = '\0';
}

/* s3_name_ok - a record name the store will write: "WRITER/SEQ",
 * printable, no empty component, no "." or "..". */
static int
s3_name_ok(const char *name, struct err *e)
{
    size_t n = strlen(name), i;
    const char *seg;

    if (n == 0 || n > S3_NAME_MAX)
        return err_set(e, ERR_INPUT, "s3: bad record name length %zu", n);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c < 0x21 || c > 0x7e)
            return err_set(e, ERR_INPUT, "s3: record name with octet 0x%02x",
                           c);
    }
    for (seg = name;; seg++) {
        size_t l = strcspn(seg, "/");

        if (l == 0 || (l == 1 && seg[0] == '.') ||
            (l == 2 && seg[0] == '.' && seg[1] == '.'))
            return err_set(e, ERR_INPUT, "s3: bad record name");
        seg += l;
        if (*seg == '\0')
            break;
    }
    return 0;
}

/* ------------------------------------------------------ open and close */

static void
s3_close(void *v)
{
    struct s3_store *s = v;
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->nidle; i++)
        curl_easy_cleanup(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    free(s->endpoint);
    free(s->bucket);
    free(s->prefix);
    free(s->region);
    free(s->sigv4);
    if (s->secret != NULL) {
        OPENSSL_cleanse(s->secret, strlen(s->secret));
        free(s->secret);
    }
    free(s->key_id);
    free(s);
}

/* s3_spec - "//bucket/prefix": bucket as S3 names them (3 to 63 of
 * a-z 0-9 . -, a letter or digit at each end), prefix of A-Z a-z 0-9 . _
 * - and "/" without empty, "." or ".." components. */
static int
s3_spec(struct s3_store *s, const char *spec, struct err *e)
{
    const char *b, *slash, *p;
    size_t bl, pl, i;
    struct buf pre;

    if (strncmp(spec, "//", 2) != 0)
        return err_set(e, ERR_CONFIG,
                       "s3: store must be s3://bucket[/prefix], not s3:%s",
                       spec);
    b = spec + 2;
    slash = strchr(b, '/');
    bl = slash ? (size_t)(slash - b) : strlen(b);
    if (bl < 3 || bl > 63 || !isalnum((unsigned char)b[0]) ||
        !isalnum((unsigned char)b[bl - 1]))
        return err_set(e, ERR_CONFIG,
                       "s3: bucket name must be 3 to 63 characters, a "
                       "letter or digit at each end");
    for (i = 0; i < bl; i++) {
        unsigned char c = (unsigned char)b[i];

        if (!(islower(c) || isdigit(c) || c == '.' || c == '-'))
            return err_set(e, ERR_CONFIG,
                           "s3: bucket name may hold a-z, 0-9, '.' and '-' "
                           "only");
    }
    if ((s->bucket = strndup(b, bl)) == NULL)
        return err_nomem(e);
    p = slash ? slash + 1 : "";
    pl = strlen(p);
    while (pl > 0 && p[pl - 1] == '/')
        pl--;
    if (pl > S3_PREFIX_MAX)
        return err_set(e, ERR_CONFIG, "s3: prefix longer than %d octets",
                       S3_PREFIX_MAX);
    for (i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)p[i];

        if (!(isalnum(c) || c == '.' || c == '_' || c == '-' || c == '/'))
            return err_set(e, ERR_CONFIG,
                           "s3: prefix may hold A-Z, a-z, 0-9, '.', '_', "
                           "'-' and '/' only");
    }
    for (i = 0; i < pl;) {
        size_t l = 0;

        while (i + l < pl && p[i + l] != '/')
            l++;
        if (l == 0 || (l == 1 && p[i] == '.') ||
            (l == 2 && p[i] == '.' && p[i + 1] == '.'))
            return err_set(e, ERR_CONFIG,
                           "s3: prefix with an empty, '.' or '..' part");
        i += l + 1;
    }
    buf_init(&pre, 0);
    if (buf_append(&pre, p, pl, e) < 0 ||
        (pl > 0 && buf_putc(&pre, '/', e) < 0)) {
        buf_fini(&pre);
        return -1;
    }
    s->prefix = buf_steal(&pre, NULL);
    return s->prefix ? 0 : err_nomem(e);
}

/* s3_endpoint_ok - http:// or https://, a host and maybe a port, nothing
 * after but one "/". */
static int
s3_endpoint(struct s3_store *s, const struct cfg *c, struct err *e)
{
    const char *v = cfg_str(c, "s3_endpoint"), *h;
    size_t n, i;

    if (v == NULL)
        return cfg_err(e, c, "s3_endpoint",
                       "an s3:// store needs s3_endpoint "
                       "(https://s3.REGION.amazonaws.com, or your server's)");
    if (strncmp(v, "https://", 8) == 0)
        h = v + 8;
    else if (strncmp(v, "http://", 7) == 0)
        h = v + 7;
    else
        return cfg_err(e, c, "s3_endpoint", "must start with https://");
    n = strlen(h);
    if (n > 0 && h[n - 1] == '/')
        n--;
    if (n == 0)
        return cfg_err(e, c, "s3_endpoint", "has no host");
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];

        if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == ':' ||
              ch == '[' || ch == ']'))
            return cfg_err(e, c, "s3_endpoint",
                           "may hold a scheme, a host and a port only");
    }
    s->endpoint = strndup(v, (size_t)(h - v) + n);
    return s->endpoint ? 0 : err_nomem(e);
}

/* s3_retention - the stage's retention ("7y", "90d", "12w") for Object
 * Lock: read raw, since the stage owns the key. */
static int
s3_retention(struct s3_store *s, const struct cfg *c, struct err *e)
{
    const char *v = cfg_raw(c, "retention");
    char *end;
    long long n;

    if (v == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: s3_object_lock = yes needs retention (7y, 90d)",
                       cfg_path(c));
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || n <= 0 || n > 36500 || end[1] != '\0' ||
        (end[0] != 'd' && end[0] != 'w' && end[0] != 'y') ||
        !isdigit((unsigned char)v[0]))
        return err_set(e, ERR_CONFIG,
                       "%s:%u: retention: \"%s\" is not a number of days, "
                       "weeks or years (90d, 12w, 7y) as Object Lock needs",
                       cfg_path(c), cfg_raw_line(c, "retention"), v);
    s->ret_n = n;
    s->ret_unit = end[0];
    s3_printable(s->retention, sizeof(s->retention), v);
    return 0;
}

/* s3_credentials - read and check the credentials file. */
static int
s3_credentials(struct s3_store *s, const struct cfg *c, struct err *e)
{
    static const struct cfg_option opts[] = {
        {"access_key_id", CFG_STRING, NULL, "the key id", NULL, 0, 0,
         CFG_REQUIRED},
        {"secret_access_key", CFG_STRING, NULL, "the secret", NULL, 0, 0,
         CFG_REQUIRED},
        CFG_OPTION_END,
    };
    const struct cfg_option *const tables[] = {opts, NULL};
    const char *path = cfg_str(c, "s3_credentials_file");
    char text[S3_CRED_MAX + 1];
    struct cfg *cc = NULL;
    struct stat st;
    ssize_t r;
    size_t len = 0;
    int fd, rc = -1;
    const char *id, *sec;

    if (path == NULL)
        return cfg_err(e, c, "s3_credentials_file",
                       "an s3:// store needs s3_credentials_file");
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        err_sys(e, ERR_CONFIG, "%s", path);
        return cfg_err_prefixed(e, c, "s3_credentials_file");
    }
    if (fstat(fd, &st) < 0) {
        err_sys(e, ERR_CONFIG, "%s", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(e, ERR_CONFIG, "%s: not a regular file", path);
        goto out;
    }
    if (cfg_secret_check(path, &st, S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH,
                         "the S3 secret key", e) < 0)
        goto out;
    while (len < sizeof(text) - 1) {
        r = read(fd, text + len, sizeof(text) - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_sys(e, ERR_CONFIG, "%s", path);
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    if (len >= sizeof(text) - 1) {
        err_set(e, ERR_CONFIG, "%s: longer than %d octets", path, S3_CRED_MAX);
        goto out;
    }
    if ((cc = cfg_parse_text(path, text, len, e)) == NULL ||
        cfg_validate(cc, tables, e) < 0)
        goto out;
    id = cfg_str(cc, "access_key_id");
    sec = cfg_str(cc, "secret_access_key");
    if (id[0] == '\0' || sec[0] == '\0' || strpbrk(id, ": \t") != NULL ||
        strpbrk(sec, " \t") != NULL) {
        err_set(e, ERR_CONFIG,
                "%s: access_key_id and secret_access_key must be single "
                "words (no ':' in the id)",
                path);
        goto out;
    }
    s->key_id = strdup(id);
    s->secret = strdup(sec);
    if (s->key_id == NULL || s->secret == NULL) {
        err_nomem(e);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(text, sizeof(text));
    cfg_free(cc);
    close(fd);
    return rc;
}

static void *
s3_open(const char *spec, const struct cfg *c, int check_only, struct err *e)
{
    struct s3_store *s;
    const char *region;
    size_t i;
    struct buf b;

    pthread_once(&s3_once, s3_global_init);
    if (s3_curl_rc != CURLE_OK) {
        err_set(e, ERR_LIB, "s3: curl_global_init: %s",
                curl_easy_strerror(s3_curl_rc));
        return NULL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        err_set(e, ERR_INTERNAL, "s3: pthread_mutex_init failed");
        return NULL;
    }
    if (s3_spec(s, spec, e) < 0 || s3_endpoint(s, c, e) < 0)
        goto fail;
    region = cfg_str(c, "s3_region");
    for (i = 0; region[i]; i++)
        if (!(isalnum((unsigned char)region[i]) || region[i] == '-'))
            break;
    if (region[0] == '\0' || region[i] != '\0' || i > 64) {
        cfg_err(e, c, "s3_region", "must be a region name (eu-west-1)");
        goto fail;
    }
    s->region = strdup(region);
    buf_init(&b, 0);
    if (buf_printf(&b, e, "aws:amz:%s:s3", region) < 0) {
        buf_fini(&b);
        goto fail;
    }
    s->sigv4 = buf_steal(&b, NULL);
    if (s->region == NULL || s->sigv4 == NULL) {
        err_nomem(e);
        goto fail;
    }
    s->object_lock = cfg_bool(c, "s3_object_lock");
    if (s->object_lock && s3_retention(s, c, e) < 0)
        goto fail;
    s->timeout_ms = (long)cfg_num(c, "s3_timeout");
    s->page = (long)cfg_num(c, "s3_list_page");
    if (s3_credentials(s, c, e) < 0)
        goto fail;
    (void)check_only; /* open never contacts the server */
    return s;
fail:
    s3_close(s);
    return NULL;
}

int
arc_s3_keeps_all(const void *v)
{
    const struct s3_store *s = v;

    return s != NULL && s->object_lock;
}

/* ------------------------------------------------------------ requests */

static CURL *
s3_take(struct s3_store *s)
{
    CURL *h = NULL;

    pthread_mutex_lock(&s->lock);
    if (s->nidle > 0)
        h = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->lock);
    if (h == NULL)
        return curl_easy_init();
    curl_easy_reset(h); /* keeps its connection */
    return h;
}

/* s3_give - back to the pool after a complete exchange; closed after a
 * failed one (its connection may be in any state) or when full. */
static void
s3_give(struct s3_store *s, CURL *h, int ok)
{
    if (ok) {
        pthread_mutex_lock(&s->lock);
        if (s->nidle < S3_POOL) {
            s->idle[s->nidle++] = h;
            h = NULL;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (h != NULL)
        curl_easy_cleanup(h);
}

static size_t
s3_write(char *p, size_t size, size_t n, void *arg)
{
    struct s3_resp *r = arg;
    size_t len = size * n;

    if (r->body == NULL)
        return len;
    if (buf_append(r->body, p, len, &r->berr) < 0) {
        r->over = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return len;
}

/* s3_xml_child_text - the text of the first child element called name
 * (local name, any namespace), or NULL; free with xmlFree. */
static xmlChar *
s3_xml_child_text(xmlNode *parent, const char *name)
{
    xmlNode *n;

    for (n = parent ? parent->children : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE &&
            strcmp((const char *)n->name, name) == 0)
            return xmlNodeGetContent(n);
    return NULL;
}

static xmlDoc *
s3_xml_read(const char *p, size_t len)
{
    if (p == NULL || len == 0 || len > S3_REPLY_MAX)
        return NULL;
    return xmlReadMemory(p, (int)len, "s3.xml", NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR |
                             XML_PARSE_NOWARNING);
}

/* s3_fail - e from an answer other than the one wanted: status and S3's
 * <Error><Code> and <Message>, when the body has them. */
static int
s3_fail(const char *what, const char *name, long status,
        const struct buf *body, struct err *e)
{
    char code[64] = "", msg[S3_ERRTEXT] = "";
    enum err_code ec;
    xmlDoc *d = s3_xml_read(body->data, body->len);

    if (d != NULL) {
        xmlNode *root = xmlDocGetRootElement(d);

        if (root != NULL && strcmp((const char *)root->name, "Error") == 0) {
            xmlChar *t = s3_xml_child_text(root, "Code");

            s3_printable(code, sizeof(code), (const char *)t);
            xmlFree(t);
            t = s3_xml_child_text(root, "Message");
            s3_printable(msg, sizeof(msg), (const char *)t);
            xmlFree(t);
        }
        xmlFreeDoc(d);
    }
    if (status == 404 && strcmp(what, "get") == 0)
        ec = ERR_INPUT;
    else if (status >= 500 || status == 429 || status == 408)
        ec = ERR_TEMP;
    else
        ec = ERR_IO;
    return err_set(e, ec, "s3 %s %s: HTTP %ld%s%s%s%s%s", what, name, status,
                   code[0] ? " " : "", code, msg[0] ? " (" : "", msg,
                   msg[0] ? ")" : "");
}

/* s3_request - one request: method on url (the object or bucket URL,
 * encoded), body (may be NULL) with extra headers hdrs; the response body
 * goes to out (bounded by its limit). Returns the HTTP status, or -1 with
 * e (ERR_TEMP) when no complete answer came. */
static long
s3_request(struct s3_store *s, const char *method, const char *url,
           const void *body, size_t blen, struct curl_slist *hdrs,
           struct buf *out, const char *what, const char *name, struct err *e)
{
    struct s3_resp r;
    unsigned char sha[32];
    char shahex[65], line[128];
    struct curl_slist *all = NULL, *it;
    CURLcode cc = CURLE_OK;
    CURL *h;
    long status = 0;

    if (s3_digest(EVP_sha256(), body ? body : "", body ? blen : 0, sha, e) < 0)
        return -1;
    s3_hex(sha, 32, shahex);
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", shahex);
    /* No "Expect:" to turn 100-continue off: curl 7.88 signs an emptied
     * header it does not send, and the signature would not hold. */
    if ((all = curl_slist_append(all, line)) == NULL) {
        curl_slist_free_all(all);
        err_nomem(e);
        return -1;
    }
    for (it = hdrs; it; it = it->next)
        if (curl_slist_append(all, it->data) == NULL) {
            curl_slist_free_all(all);
            err_nomem(e);
            return -1;
        }
    if ((h = s3_take(s)) == NULL) {
        curl_slist_free_all(all);
        err_set(e, ERR_TEMP, "s3 %s %s: curl_easy_init failed", what, name);
        return -1;
    }
    memset(&r, 0, sizeof(r));
    r.body = out;
#define S3_OPT(o, v)                                                          \
    do {                                                                      \
        if (cc == CURLE_OK)                                                   \
            cc = curl_easy_setopt(h, o, v);                                   \
    } while (0)
    S3_OPT(CURLOPT_URL, url);
    S3_OPT(CURLOPT_NOSIGNAL, 1L);
    S3_OPT(CURLOPT_PROTOCOLS_STR, "http,https");
    S3_OPT(CURLOPT_TIMEOUT_MS, s->timeout_ms);
    S3_OPT(CURLOPT_CONNECTTIMEOUT_MS,
           s->timeout_ms < S3_CONNECT_MS ? s->timeout_ms : S3_CONNECT_MS);
    S3_OPT(CURLOPT_AWS_SIGV4, s->sigv4);
    S3_OPT(CURLOPT_USERNAME, s->key_id);
    S3_OPT(CURLOPT_PASSWORD, s->secret);
    S3_OPT(CURLOPT_HTTPHEADER, all);
    S3_OPT(CURLOPT_WRITEFUNCTION, s3_write);
    S3_OPT(CURLOPT_WRITEDATA, &r);
    if (strcmp(method, "GET") == 0) {
        S3_OPT(CURLOPT_HTTPGET, 1L);
    } else {
        S3_OPT(CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            /* curl signs the body given as POSTFIELDS; the method stays
             * the one asked. */
            S3_OPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
            S3_OPT(CURLOPT_POSTFIELDS, body);
        } else {
            S3_OPT(CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
        }
    }
#undef S3_OPT
    if (cc == CURLE_OK)
        cc = curl_easy_perform(h);
    if (cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    s3_give(s, h, cc == CURLE_OK);
    curl_slist_free_all(all);
    if (r.over) {
        err_set(e, r.berr.code == ERR_NOMEM ? ERR_NOMEM : ERR_IO,
                "s3 %s %s: answer too large: %s", what, name, r.berr.text);
        return -1;
    }
    if (cc != CURLE_OK) {
        err_set(e, ERR_TEMP, "s3 %s %s at %s: %s", what, name, s->endpoint,
                curl_easy_strerror(cc));
        return -1;
    }
    return status;
}

/* s3_object_url - endpoint/bucket/prefix+name, the name encoded. */
static int
s3_object_url(const struct s3_store *s, const char *name, struct buf *u,
              struct err *e)
{
    if (buf_printf(u, e, "%s/%s/", s->endpoint, s->bucket) < 0 ||
        s3_encode(u, s->prefix, 1, e) < 0 || s3_encode(u, name, 1, e) < 0)
        return -1;
    return 0;
}

/* s3_lock_until - now + retention as S3 writes dates, UTC. */
static int
s3_lock_until(const struct s3_store *s, char *out, size_t n, struct err *e)
{
    time_t now = time(NULL), t;
    struct tm tm;

    if (gmtime_r(&now, &tm) == NULL)
        return err_set(e, ERR_INTERNAL, "s3: gmtime failed");
    if (s->ret_unit == 'y')
        tm.tm_year += (int)s->ret_n;
    else
        tm.tm_mday += (int)(s->ret_n * (s->ret_unit == 'w' ? 7 : 1));
    if ((t = timegm(&tm)) == (time_t)-1 || gmtime_r(&t, &tm) == NULL)
        return err_set(e, ERR_INTERNAL, "s3: retention %s out of range",
                       s->retention);
    if (strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return err_set(e, ERR_INTERNAL, "s3: strftime failed");
    return 0;
}

static int
s3_put(void *v, const struct arc_item *it, struct err *e)
{
    struct s3_store *s = v;
    unsigned char md5[16];
    char md5b64[32], line[128], until[40];
    struct curl_slist *h = NULL;
    struct buf url, body;
    long status;
    int rc = -1;

    if (s3_name_ok(it->name, e) < 0)
        return -1;
    buf_init(&url, 0);
    buf_init(&body, S3_REPLY_MAX);
    if (s3_object_url(s, it->name, &url, e) < 0 ||
        s3_digest(EVP_md5(), it->sealed, it->sealed_len, md5, e) < 0)
        goto out;
    EVP_EncodeBlock((unsigned char *)md5b64, md5, 16);
    snprintf(line, sizeof(line), "Content-MD5: %s", md5b64);
    if ((h = curl_slist_append(h, line)) == NULL ||
        curl_slist_append(h, "Content-Type: application/octet-stream") ==
            NULL) {
        err_nomem(e);
        goto out;
    }
    if (s->object_lock) {
        if (s3_lock_until(s, until, sizeof(until), e) < 0)
            goto out;
        snprintf(line, sizeof(line), "x-amz-object-lock-retain-until-date: %s",
                 until);
        if (curl_slist_append(h, "x-amz-object-lock-mode: COMPLIANCE") ==
                NULL ||
            curl_slist_append(h, line) == NULL) {
            err_nomem(e);
            goto out;
        }
    }
    status = s3_request(s, "PUT", buf_str(&url),
                        it->sealed_len ? (const void *)it->sealed : "",
                        it->sealed_len, h, &body, "put", it->name, e);
    if (status < 0)
        goto out;
    if (status != 200) {
        s3_fail("put", it->name, status, &body, e);
        goto out;
    }
    rc = 0;
out:
    curl_slist_free_all(h);
    buf_fini(&url);
    buf_fini(&body);
    return rc;
}

static int
s3_get(void *v, const char *name, struct buf *out, struct err *e)
{
    struct s3_store *s = v;
    struct buf url, err_body;
    size_t was = out->len;
    long status;
    int rc = -1;

    if (s3_name_ok(name, e) < 0)
        return -1;
    buf_init(&url, 0);
    buf_init(&err_body, S3_REPLY_MAX);
    if (s3_object_url(s, name, &url, e) < 0)
        goto out;
    status = s3_request(s, "GET", buf_str(&url), NULL, 0, NULL, out, "get",
                        name, e);
    if (status < 0)
        goto undo;
    if (status != 200) {
        /* The body was an error document: move it for the text. */
        if (buf_append(&err_body, out->data + was, out->len - was, e) < 0)
            goto undo;
        s3_fail("get", name, status, &err_body, e);
        goto undo;
    }
    rc = 0;
    goto out;
undo:
    out->len = was;
    if (out->data != NULL)
        out->data[was] = '\0';
out:
    buf_fini(&url);
    buf_fini(&err_body);
    return rc;
}

static int
s3_remove(void *v, const char *name, struct err *e)
{
    struct s3_store *s = v;
    struct buf url, body;
    long status;
    int rc = -1;

    if (s->object_lock)
        return err_set(e, ERR_CONFIG,
                       "s3 remove %s: the store keeps every record "
                       "(s3_object_lock = yes)",
                       name);
    if (s3_name_ok(name, e) < 0)
        return -1;
    buf_init(&url, 0);
    buf_init(&body, S3_REPLY_MAX);
    if (s3_object_url(s, name, &url, e) < 0)
        goto out;
    status = s3_request(s, "DELETE", buf_str(&url), NULL, 0, NULL, &body,
                        "remove", name, e);
    if (status < 0)
        goto out;
    if (status != 204 && status != 200) {
        s3_fail("remove", name, status, &body, e);
        goto out;
    }
    rc = 0;
out:
    buf_fini(&url);
    buf_fini(&body);
    return rc;
}

/* The state of one list walk across its pages. */
struct s3_walk {
    const char *kprefix; /* keys must start with it */
    size_t strip;        /* octets of the store prefix taken off names */
    const char *from;    /* names before it are skipped; may be NULL */
    struct buf last;     /* the last key seen: keys must ascend */
    struct buf token;    /* the next continuation token, "" at the end */
    size_t keys;         /* keys on the last page */
    int (*fn)(void *arg, const char *name);
    void *arg;
};

int
arc_s3_list_parse(const char *body, size_t len, const char *kprefix,
                  size_t strip, const char *from, struct buf *last,
                  struct buf *token, size_t *keys,
                  int (*fn)(void *arg, const char *name), void *arg,
                  struct err *e)
{
    size_t kl = strlen(kprefix);
    xmlDoc *d;
    xmlNode *root, *n;
    xmlChar *t;
    int rc = -1, truncated;

    *keys = 0;
    if (strip > kl)
        return err_set(e, ERR_INTERNAL, "s3 list: prefix longer than keys");
    d = s3_xml_read(body, len);
    root = d ? xmlDocGetRootElement(d) : NULL;
    if (root == NULL ||
        strcmp((const char *)root->name, "ListBucketResult") != 0) {
        err_set(e, ERR_IO, "s3 list %s: the answer is not a ListBucketResult",
                kprefix);
        goto out;
    }
    buf_reset(token);
    t = s3_xml_child_text(root, "IsTruncated");
    truncated = t != NULL && strcmp((const char *)t, "true") == 0;
    xmlFree(t);
    if (truncated) {
        t = s3_xml_child_text(root, "NextContinuationToken");
        if (t == NULL || t[0] == '\0') {
            xmlFree(t);
            err_set(e, ERR_IO,
                    "s3 list %s: truncated answer without a continuation "
                    "token",
                    kprefix);
            goto out;
        }
        rc = buf_puts(token, (const char *)t, e);
        xmlFree(t);
        if (rc < 0)
            goto out;
        rc = -1;
    }
    for (n = root->children; n; n = n->next) {
        const char *key;
        int r;

        if (n->type != XML_ELEMENT_NODE ||
            strcmp((const char *)n->name, "Contents") != 0)
            continue;
        t = s3_xml_child_text(n, "Key");
        key = (const char *)t;
        /* The server's keys are input: inside the prefix asked for, with
         * a name after it, in ascending order, as S3 promises. */
        if (key == NULL || strncmp(key, kprefix, kl) != 0 ||
            key[strip] == '\0' ||
            (last->len > 0 && strcmp(key, buf_str(last)) <= 0)) {
            xmlFree(t);
            err_set(e, ERR_IO,
                    "s3 list %s: a key outside the prefix or out of order",
                    kprefix);
            goto out;
        }
        (*keys)++;
        buf_reset(last);
        if (buf_puts(last, key, e) < 0) {
            xmlFree(t);
            goto out;
        }
        if (from != NULL && strcmp(key + strip, from) < 0) {
            xmlFree(t);
            continue;
        }
        r = fn(arg, key + strip);
        xmlFree(t);
        if (r != 0) {
            rc = r;
            goto out;
        }
    }
    rc = 0;
out:
    if (d != NULL)
        xmlFreeDoc(d);
    return rc;
}

/* s3_list_page - one ListObjectsV2 request and its answer, through
 * arc_s3_list_parse; w->token gets the next continuation token. */
static int
s3_list_page(struct s3_store *s, const char *after, struct s3_walk *w,
             struct err *e)
{
    struct buf url, body;
    long status;
    int rc = -1;

    buf_init(&url, 0);
    buf_init(&body, S3_REPLY_MAX);
    /* The parameters in sorted order, as the signature has them. */
    if (buf_printf(&url, e, "%s/%s?", s->endpoint, s->bucket) < 0)
        goto out;
    if (w->token.len > 0 && (buf_puts(&url, "continuation-token=", e) < 0 ||
                             s3_encode(&url, buf_str(&w->token), 0, e) < 0 ||
                             buf_putc(&url, '&', e) < 0))
        goto out;
    if (buf_printf(&url, e, "list-type=2&max-keys=%ld&prefix=", s->page) < 0 ||
        s3_encode(&url, w->kprefix, 0, e) < 0)
        goto out;
    if (after != NULL && w->token.len == 0 &&
        (buf_puts(&url, "&start-after=", e) < 0 ||
         s3_encode(&url, after, 0, e) < 0))
        goto out;
    status = s3_request(s, "GET", buf_str(&url), NULL, 0, NULL, &body, "list",
                        w->kprefix, e);
    if (status < 0)
        goto out;
    if (status != 200) {
        s3_fail("list", w->kprefix, status, &body, e);
        goto out;
    }
    rc = arc_s3_list_parse(body.data, body.len, w->kprefix, w->strip, w->from,
                           &w->last, &w->token, &w->keys, w->fn, w->arg, e);
out:
    buf_fini(&url);
    buf_fini(&body);
    return rc;
}

static int
s3_list(void *v, const char *writer, const char *from,
        int (*fn)(void *arg, const char *name), void *arg, struct err *e)
{
    struct s3_store *s = v;
    struct buf kp, after;
    struct s3_walk w;
    int rc = -1, empty = 0;

    if (writer != NULL && (writer[0] == '\0' || strchr(writer, '/') != NULL))
        return err_set(e, ERR_INPUT, "s3 list: bad writer name");
    buf_init(&kp, 0);
    buf_init(&after, 0);
    memset(&w, 0, sizeof(w));
    buf_init(&w.last, S3_REPLY_MAX);
    buf_init(&w.token, S3_REPLY_MAX);
    if (buf_puts(&kp, s->prefix, e) < 0 ||
        (writer != NULL && buf_printf(&kp, e, "%s/", writer) < 0))
        goto out;
    w.kprefix = buf_str(&kp);
    w.strip = strlen(s->prefix);
    w.from = from;
    w.fn = fn;
    w.arg = arg;
    /* start-after is exclusive: start after from without its last octet,
     * and skip the few keys before from on the first page. */
    if (from != NULL && from[0] != '\0' &&
        (buf_puts(&after, s->prefix, e) < 0 ||
         buf_append(&after, from, strlen(from) - 1, e) < 0))
        goto out;
    do {
        rc = s3_list_page(s, after.len ? buf_str(&after) : NULL, &w, e);
        if (rc != 0)
            goto out;
        /* A server that keeps answering "more" with nothing in it would
         * keep the walk going for ever. */
        empty = w.keys == 0 ? empty + 1 : 0;
        if (empty > S3_EMPTY_PAGES) {
            rc = err_set(e, ERR_IO,
                         "s3 list %s: %d pages in a row without keys",
                         w.kprefix, empty);
            goto out;
        }
    } while (w.token.len > 0);
    rc = 0;
out:
    buf_fini(&kp);
    buf_fini(&after);
    buf_fini(&w.last);
    buf_fini(&w.token);
    return rc;
}

const struct arc_store_ops arc_store_s3 = {
    .scheme = "s3",
    .open = s3_open,
    .put = s3_put,
    .get = s3_get,
    .list = s3_list,
    .remove = s3_remove,
    .close = s3_close,
};
