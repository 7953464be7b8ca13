/*
 * antispam_rspamd - placeholder for the antispam stage's rspamd engine
 *
 * The rspamd client (HTTP /checkv2 through libcurl, the reply read with
 * json-c) is written beside this branch and replaces this file when the
 * two meet. Until then engine = rspamd loads no configuration: create()
 * fails with a clear reason, so a chain naming it refuses to start
 * rather than pass mail unscanned.
 */
#include "config.h"

#include <stddef.h>

#include "filters/antispam/antispam_int.h"

static void *
flt_as_rspamd_create(const char *server, int timeout_ms, struct err *e)
{
    (void)server;
    (void)timeout_ms;
    err_set(e, ERR_CONFIG, "antispam: engine rspamd is not built yet");
    return NULL;
}

static int
flt_as_rspamd_check(void *eng, const struct flt_as_query *q,
                    struct flt_as_answer *a, struct err *e)
{
    (void)eng;
    (void)q;
    (void)a;
    return err_set(e, ERR_INTERNAL,
                   "antispam: engine rspamd is not built "
                   "yet");
}

static void
flt_as_rspamd_destroy(void *eng)
{
    (void)eng;
}

const struct flt_as_engine_ops flt_as_rspamd_ops = {
    .name = "rspamd",
    .create = flt_as_rspamd_create,
    .check = flt_as_rspamd_check,
    .destroy = flt_as_rspamd_destroy,
};
