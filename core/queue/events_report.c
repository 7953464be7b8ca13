/*
 * events_report - the delivery report as JSON (see events_report.h)
 *
 * The rows come from events_db_report() one by one and are written into
 * the caller's buffer, whose limit bounds the text; nothing else is
 * allocated.
 */
#include "config.h"

#include "queue/events_report.h"

struct events_report_ctx {
    struct buf *out;
    struct err *e;
    int n;
};

static double
events_report_rate(unsigned long long a, unsigned long long b)
{
    return b > 0 ? 100.0 * (double)a / (double)b : 0.0;
}

/* events_report_str - s as a JSON string. */
static int
events_report_str(struct buf *out, const char *s, struct err *e)
{
    if (buf_putc(out, '"', e) < 0)
        return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int rc;

        if (c == '"' || c == '\\')
            rc = buf_printf(out, e, "\\%c", c);
        else if (c < 0x20)
            rc = buf_printf(out, e, "\\u%04x", c);
        else
            rc = buf_putc(out, c, e);
        if (rc < 0)
            return -1;
    }
    return buf_putc(out, '"', e);
}

static int
events_report_row_json(void *arg, const struct events_report_row *r)
{
    struct events_report_ctx *c = arg;
    unsigned long long bounced = r->bounced_hard + r->bounced_soft;
    unsigned long long final = r->delivered + bounced + r->expired;

    c->n++;
    if (buf_puts(c->out, c->n > 1 ? ",\n " : "[", c->e) < 0 ||
        buf_puts(c->out, "{\"key\": ", c->e) < 0 ||
        events_report_str(c->out, r->key, c->e) < 0 ||
        buf_printf(c->out, c->e,
                   ", \"received\": %llu, \"delivered\": %llu, \"deferred\": "
                   "%llu, \"bounced_hard\": %llu, \"bounced_soft\": %llu, "
                   "\"expired\": %llu, \"suppressed\": %llu, "
                   "\"delivered_rate\": %.2f, \"bounce_rate\": %.2f, "
                   "\"defer_rate\": %.2f, \"complained\": %llu, "
                   "\"opened_human\": %llu, \"opened_machine\": %llu, "
                   "\"clicked_human\": %llu, \"clicked_machine\": %llu, "
                   "\"unsubscribed\": %llu}",
                   r->received, r->delivered, r->deferred, r->bounced_hard,
                   r->bounced_soft, r->expired, r->suppressed,
                   events_report_rate(r->delivered, final),
                   events_report_rate(bounced, final),
                   events_report_rate(r->deferred, r->deferred + final),
                   r->complained, r->opened_human, r->opened_machine,
                   r->clicked_human, r->clicked_machine, r->unsubscribed) < 0)
        return -1;
    return 0;
}

int
events_report_json(struct events_db *db, const char *by, long long since,
                   long long until, struct buf *out, struct err *e)
{
    return events_report_json_in(db, by, NULL, since, until, out, e);
}

int
events_report_json_in(struct events_db *db, const char *by, const char *stream,
                      long long since, long long until, struct buf *out,
                      struct err *e)
{
    struct events_report_ctx c = {out, e, 0};

    if (events_db_report_in(db, by, stream, since, until,
                            events_report_row_json, &c, e) < 0)
        return -1;
    if (buf_puts(out, c.n > 0 ? "]\n" : "[]\n", e) < 0)
        return -1;
    return c.n;
}
