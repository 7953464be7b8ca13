/*
 * mtamodel - a model of Postfix's side of the milter edits, for tests
 *
 * See mtamodel.h. Fixed arrays bound everything; a request past them is
 * refused like a request the MTA cannot carry out.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mtamodel.h"

static char *
mm_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

static int
mm_request(struct mtamodel *mm, const char *what, const char *a, const char *b,
           long n)
{
    struct err e;

    mm->requests++;
    (void)buf_printf(&mm->log, &e, "%s %ld %s|%s\n", what, n, a ? a : "-",
                     b ? b : "-");
    return mm->fail_at != 0 && mm->requests == mm->fail_at ? -1 : 0;
}

static int
mm_append(struct mtamodel_field *v, size_t *n, size_t pos, const char *name,
          const char *value)
{
    if (*n >= MTAMODEL_FIELDS)
        return -1;
    memmove(&v[pos + 1], &v[pos], (*n - pos) * sizeof(*v));
    v[pos].name = mm_dup(name);
    v[pos].value = mm_dup(value);
    (*n)++;
    return 0;
}

static int
mm_addheader(void *ctx, const char *name, const char *value)
{
    struct mtamodel *mm = ctx;

    if (mm_request(mm, "add", name, value, 0) < 0)
        return -1;
    return mm_append(mm->app, &mm->napp, mm->napp, name, value);
}

static int
mm_insheader(void *ctx, int index, const char *name, const char *value)
{
    struct mtamodel *mm = ctx;
    size_t pos = (size_t)index;

    if (mm_request(mm, "ins", name, value, index) < 0 || index < 0)
        return -1;
    if (pos >= mm->nmain && mm->strict)
        abort();
    if (pos >= mm->nmain)
        return mm_append(mm->app, &mm->napp, mm->napp, name, value);
    return mm_append(mm->main, &mm->nmain, pos, name, value);
}

static int
mm_chgheader(void *ctx, const char *name, int index, const char *value)
{
    struct mtamodel *mm = ctx;
    size_t i;
    long seen = 0;

    if (mm_request(mm, value ? "chg" : "del", name, value, index) < 0 ||
        index < 1)
        return -1;
    for (i = 1; i < mm->nmain; i++)
        if (strcasecmp(mm->main[i].name, name) == 0 && ++seen == index)
            break;
    if (i == mm->nmain) {
        if (mm->strict)
            abort();
        if (value != NULL)
            return mm_append(mm->app, &mm->napp, mm->napp, name, value);
        return 0;
    }
    if (value == NULL) {
        free(mm->main[i].name);
        free(mm->main[i].value);
        memmove(&mm->main[i], &mm->main[i + 1],
                (mm->nmain - i - 1) * sizeof(mm->main[0]));
        mm->nmain--;
        return 0;
    }
    free(mm->main[i].value);
    mm->main[i].value = mm_dup(value);
    return 0;
}

static int
mm_replacebody(void *ctx, const unsigned char *p, size_t len)
{
    struct mtamodel *mm = ctx;
    struct err e;

    if (mm_request(mm, "body", NULL, NULL, (long)len) < 0)
        return -1;
    if (!mm->body_replaced)
        buf_reset(&mm->body);
    mm->body_replaced = 1;
    mm->chunks++;
    if (len > mm->max_chunk)
        mm->max_chunk = len;
    return buf_append(&mm->body, p, len, &e);
}

static int
mm_chgfrom(void *ctx, const char *addr, const char *params)
{
    struct mtamodel *mm = ctx;

    if (mm_request(mm, "from", addr, params, 0) < 0)
        return -1;
    free(mm->sender);
    mm->sender = mm_dup(addr);
    return 0;
}

static int
mm_addrcpt(void *ctx, const char *addr, const char *params)
{
    struct mtamodel *mm = ctx;

    if (mm_request(mm, "rcpt+", addr, params, 0) < 0 ||
        mm->nrcpts >= MTAMODEL_RCPTS)
        return -1;
    mm->rcpts[mm->nrcpts++] = mm_dup(addr);
    return 0;
}

static int
mm_delrcpt(void *ctx, const char *addr)
{
    struct mtamodel *mm = ctx;
    size_t i, kept = 0;

    if (mm_request(mm, "rcpt-", addr, NULL, 0) < 0)
        return -1;
    for (i = 0; i < mm->nrcpts; i++) {
        if (strcmp(mm->rcpts[i], addr) == 0)
            free(mm->rcpts[i]);
        else
            mm->rcpts[kept++] = mm->rcpts[i];
    }
    mm->nrcpts = kept;
    return 0;
}

static int
mm_quarantine(void *ctx, const char *reason)
{
    struct mtamodel *mm = ctx;

    if (mm_request(mm, "hold", reason, NULL, 0) < 0)
        return -1;
    snprintf(mm->quarantine, sizeof(mm->quarantine), "%s", reason);
    return 0;
}

static int
mm_setreply(void *ctx, const char *rcode, const char *xcode, const char *text)
{
    struct mtamodel *mm = ctx;

    snprintf(mm->reply, sizeof(mm->reply), "%s %s %s", rcode,
             xcode ? xcode : "-", text ? text : "-");
    return 0;
}

static int
mm_progress(void *ctx)
{
    struct mtamodel *mm = ctx;

    mm->progress++;
    return 0;
}

const struct milterd_ops mtamodel_ops = {
    mm_addheader, mm_insheader, mm_chgheader,  mm_replacebody, mm_chgfrom,
    mm_addrcpt,   mm_delrcpt,   mm_quarantine, mm_setreply,    mm_progress,
};

void
mtamodel_init(struct mtamodel *mm, const char *header, const char *sender,
              const char *const *rcpts)
{
    const char *p = header, *colon, *end;

    memset(mm, 0, sizeof(*mm));
    buf_init(&mm->body, 0);
    buf_init(&mm->log, 0);
    (void)mm_append(mm->main, &mm->nmain, 0, "Received",
                    " by mta.test.example (Postfix)");
    while (p != NULL && *p != '\0') {
        char name[256], *value;
        size_t n;

        colon = strchr(p, ':');
        end = p;
        /* a field ends at a line end not followed by white space */
        while ((end = strchr(end, '\n')) != NULL &&
               (end[1] == ' ' || end[1] == '\t'))
            end++;
        if (colon == NULL || end == NULL || colon > end ||
            (size_t)(colon - p) >= sizeof(name))
            break;
        memcpy(name, p, (size_t)(colon - p));
        name[colon - p] = '\0';
        n = (size_t)(end - colon - 1);
        if ((value = malloc(n + 1)) == NULL)
            break;
        memcpy(value, colon + 1, n);
        value[n] = '\0';
        (void)mm_append(mm->main, &mm->nmain, mm->nmain, name, value);
        free(value);
        p = end + 1;
    }
    mm->sender = mm_dup(sender);
    for (; rcpts != NULL && *rcpts != NULL && mm->nrcpts < MTAMODEL_RCPTS;
         rcpts++)
        mm->rcpts[mm->nrcpts++] = mm_dup(*rcpts);
}

void
mtamodel_fini(struct mtamodel *mm)
{
    size_t i;

    for (i = 0; i < mm->nmain; i++) {
        free(mm->main[i].name);
        free(mm->main[i].value);
    }
    for (i = 0; i < mm->napp; i++) {
        free(mm->app[i].name);
        free(mm->app[i].value);
    }
    for (i = 0; i < mm->nrcpts; i++)
        free(mm->rcpts[i]);
    free(mm->sender);
    buf_fini(&mm->body);
    buf_fini(&mm->log);
}

void
mtamodel_field(struct mtamodel *mm, const char *name, const char *value)
{
    (void)mm_append(mm->main, &mm->nmain, mm->nmain, name, value);
}

void
mtamodel_header(const struct mtamodel *mm, struct buf *out)
{
    struct err e;
    size_t i;

    buf_reset(out);
    (void)buf_puts(out, "", &e);
    for (i = 0; i < mm->nmain; i++)
        if (i > 0 || strcmp(mm->main[0].name, "Received") != 0 ||
            strcmp(mm->main[0].value, " by mta.test.example (Postfix)") != 0)
            (void)buf_printf(out, &e, "%s:%s\n", mm->main[i].name,
                             mm->main[i].value);
    for (i = 0; i < mm->napp; i++)
        (void)buf_printf(out, &e, "%s:%s\n", mm->app[i].name,
                         mm->app[i].value);
}
