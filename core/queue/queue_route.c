/*
 * queue_route - the queue's reloadable settings and its routes
 *
 * queue_settings_new() reads what a reload may change from the
 * configuration into one struct queue_settings: the backoffs and
 * lifetimes, the worker count, and the routes: next_hop as routes[0],
 * then one per other next hop that transport_map names, each with its
 * smtpc pool (a next hop named twice shares one). The settings own
 * their routes, pools and transport_map entries; the last
 * queue_settings_release() frees them, and with the pools their idle
 * connections. queue_route_for() picks a recipient's route. Errors
 * name the key, or the transport_map file and line; nothing here logs.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/addr.h"
#include "queue/queue_int.h"
#include "net/smtpc.h"

#define QUEUE_LINE_MAX 1024 /* a transport_map line */

/* queue_route_for - the route of rcpt: transport_map by domain, then
 * its parent domains (".example.com" entries), then "*", then
 * next_hop. */
size_t
queue_route_for(const struct queue_settings *set, const char *rcpt)
{
    const char *dom = addr_domain(rcpt), *p;
    size_t i;

    if (dom != NULL) {
        for (i = 0; i < set->ntransports; i++)
            if (set->transports[i].domain[0] != '.' &&
                strcasecmp(set->transports[i].domain, dom) == 0)
                return set->transports[i].route;
        for (p = strchr(dom, '.'); p != NULL; p = strchr(p + 1, '.'))
            for (i = 0; i < set->ntransports; i++)
                if (set->transports[i].domain[0] == '.' &&
                    strcasecmp(set->transports[i].domain, p) == 0)
                    return set->transports[i].route;
    }
    for (i = 0; i < set->ntransports; i++)
        if (strcmp(set->transports[i].domain, "*") == 0)
            return set->transports[i].route;
    return 0;
}

static int
queue_add_route(struct queue_settings *set, const struct cfg *c,
                const char *hop, size_t *out, struct err *e)
{
    struct smtpc_settings s;
    struct queue_route *grown;
    size_t i;

    for (i = 0; i < set->nroutes; i++)
        if (strcmp(set->routes[i].nexthop, hop) == 0) {
            *out = i;
            return 0;
        }
    grown = realloc(set->routes, (set->nroutes + 1) * sizeof(*grown));
    if (grown == NULL)
        return err_nomem(e);
    set->routes = grown;
    memset(&set->routes[set->nroutes], 0, sizeof(*grown));
    if (smtpc_settings_from_cfg(c, hop, &s, e) < 0)
        return -1;
    s.max_idle = set->concurrency;
    if ((set->routes[set->nroutes].nexthop = strdup(hop)) == NULL)
        return err_nomem(e);
    if ((set->routes[set->nroutes].pool = smtpc_pool_new(&s, e)) == NULL) {
        free(set->routes[set->nroutes].nexthop);
        return -1;
    }
    *out = set->nroutes++;
    return 0;
}

/* queue_transport_load - "domain nexthop" lines, Postfix transport(5)
 * style: "example.com", ".example.com" (its subdomains) or "*". */
static int
queue_transport_load(struct queue_settings *set, const struct cfg *c,
                     const char *path, struct err *e)
{
    char line[QUEUE_LINE_MAX + 2];
    unsigned lineno = 0;
    FILE *fp;

    if ((fp = fopen(path, "re")) == NULL)
        return cfg_err(e, c, "transport_map", "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *key, *hop, *rest, *p;
        struct queue_transport *grown;
        size_t len = strlen(line), r;

        lineno++;
        if (len > QUEUE_LINE_MAX) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s:%u: line too long", path,
                           lineno);
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        p = line + strspn(line, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        key = p;
        p += strcspn(p, " \t");
        if (*p != '\0')
            *p++ = '\0';
        p += strspn(p, " \t");
        hop = p;
        p += strcspn(p, " \t");
        rest = p + strspn(p, " \t");
        *p = '\0';
        if (*hop == '\0' || (*rest != '\0' && *rest != '#')) {
            fclose(fp);
            return err_set(e, ERR_CONFIG,
                           "%s:%u: expected \"domain "
                           "next-hop\"",
                           path, lineno);
        }
        if (strcmp(key, "*") != 0 && strspn(key, ".") > 1) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s:%u: bad domain '%.100s'", path,
                           lineno, key);
        }
        if (queue_add_route(set, c, hop, &r, e) < 0) {
            fclose(fp);
            /* e->text is the reason: err_set() would write over it while
             * reading it. */
            err_prefix(e, "%s:%u", path, lineno);
            e->code = ERR_CONFIG;
            return -1;
        }
        grown =
            realloc(set->transports, (set->ntransports + 1) * sizeof(*grown));
        if (grown == NULL) {
            fclose(fp);
            return err_nomem(e);
        }
        set->transports = grown;
        if ((grown[set->ntransports].domain = strdup(key)) == NULL) {
            fclose(fp);
            return err_nomem(e);
        }
        grown[set->ntransports++].route = r;
    }
    fclose(fp);
    return 0;
}

/* queue_settings_new - the reloadable settings of c, routes and pools
 * built; NULL with e set when c is not usable. */
struct queue_settings *
queue_settings_new(const struct cfg *c, struct err *e)
{
    struct queue_settings *set;
    const char *s;
    size_t r;

    if ((set = calloc(1, sizeof(*set))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    atomic_init(&set->refs, 1);
    set->min_backoff_ms = cfg_num(c, "minimal_backoff_time");
    set->max_backoff_ms = cfg_num(c, "maximal_backoff_time");
    set->lifetime_ms = cfg_num(c, "maximal_queue_lifetime");
    set->warn_ms = cfg_num(c, "delay_warning_time");
    set->run_delay_ms = cfg_num(c, "queue_run_delay");
    set->minfree = (unsigned long long)cfg_num(c, "queue_minfree");
    set->concurrency = (unsigned)cfg_num(c, "delivery_concurrency");
    set->dest_limit = (unsigned)cfg_num(c, "destination_concurrency_limit");
    set->dest_delay_ms = cfg_num(c, "destination_rate_delay");
    set->throttle_ms = cfg_num(c, "destination_throttle_time");
    if (set->max_backoff_ms < set->min_backoff_ms) {
        cfg_err(e, c, "maximal_backoff_time",
                "shorter than minimal_backoff_time");
        goto fail;
    }
    if ((s = cfg_str(c, "next_hop")) == NULL) {
        cfg_err(e, c, "next_hop", "delivery = queue needs a next_hop");
        goto fail;
    }
    if (queue_add_route(set, c, s, &r, e) < 0) {
        if (e->code == ERR_CONFIG)
            cfg_err(e, c, "next_hop", "%s", e->text);
        goto fail;
    }
    if ((s = cfg_str(c, "transport_map")) != NULL &&
        queue_transport_load(set, c, s, e) < 0)
        goto fail;
    return set;
fail:
    queue_settings_release(set);
    return NULL;
}

void
queue_settings_release(struct queue_settings *set)
{
    size_t i;

    if (set == NULL || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    /* the last user: the pools close their idle connections */
    for (i = 0; i < set->nroutes; i++) {
        smtpc_pool_free(set->routes[i].pool);
        free(set->routes[i].nexthop);
    }
    free(set->routes);
    for (i = 0; i < set->ntransports; i++)
        free(set->transports[i].domain);
    free(set->transports);
    free(set);
}
