/*
 * cmd_keys - "relaychain keys lookup ADDRESS" and "relaychain keys list"
 *
 * Loads the configuration and its chain as relaychaind does (the encrypt
 * stages build their key engines: the GnuPG home and the S/MIME
 * certificates) and, for every encrypt stage, prints what it holds:
 * lookup shows the policy given to an address (and the policy_map line),
 * every key and certificate found for it, usable or refused with the
 * reason (expired, revoked, no encryption subkey, untrusted, wrong key
 * usage, another CA, address only in the display name), and the one that
 * would be used; list shows every key and certificate with the same
 * verdict. The work is the stage's (flt_encrypt_keys_lookup and
 * flt_encrypt_keys_list, filters/filters.h); this file only prints.
 *
 * Exit status: 0 done, 1 when the chain has no encrypt stage, a keyring
 * cannot be read or the command line is wrong.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "util/addr.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "filters/filters.h"
#include "cli/cli.h"
#include "cli/parts.h"

#define KEYS_OUT_MAX (4u * 1024 * 1024) /* octets of one stage's answer */

static void
keys_usage(FILE *fp)
{
    fprintf(fp,
            "usage: relaychain keys [-c FILE] lookup ADDRESS\n"
            "       relaychain keys [-c FILE] list\n"
            "\n"
            "What the encrypt stages of the chain would do: lookup shows\n"
            "the policy of ADDRESS and every key or certificate found for\n"
            "it, usable or refused and why; list shows every key and\n"
            "certificate the stages hold.\n");
}

int
keys_main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *cmd, *addr = NULL;
    const struct stage *const *st;
    struct conf *cf;
    struct buf out;
    struct err e;
    char why[128];
    size_t n, i, found = 0;
    int c, rc = 0;

    if (argc > 1 &&
        (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        keys_usage(stdout);
        return 0;
    }
    while ((c = getopt(argc, argv, "c:")) != -1) {
        if (c != 'c') {
            keys_usage(stderr);
            return 1;
        }
        path = optarg;
    }
    if (optind >= argc) {
        keys_usage(stderr);
        return 1;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "lookup") == 0 && optind + 2 == argc)
        addr = argv[optind + 1];
    else if (strcmp(cmd, "list") != 0 || optind + 1 != argc) {
        keys_usage(stderr);
        return 1;
    }
    if (addr != NULL && !addr_is_valid(addr, 0, why, sizeof(why))) {
        fprintf(stderr, "relaychain keys: '%.100s' is not an address: %s\n",
                addr, why);
        return 1;
    }
    log_open("relaychain", LOG_MAIL, LOG_SINK_NONE);
    err_clear(&e);
    if ((cf = conf_load_flags(path, parts_all, 0, &e)) == NULL) {
        fprintf(stderr, "relaychain keys: %s\n", e.text);
        return 1;
    }
    n = chain_stages(cf->chain, &st);
    for (i = 0; i < n; i++) {
        if (st[i]->type != &flt_encrypt_type)
            continue;
        found++;
        printf("%s (%s):\n", st[i]->name, st[i]->file);
        buf_init(&out, KEYS_OUT_MAX);
        err_clear(&e);
        if ((addr != NULL ? flt_encrypt_keys_lookup(st[i], addr, &out, &e)
                          : flt_encrypt_keys_list(st[i], &out, &e)) < 0) {
            fprintf(stderr, "relaychain keys: %s: %s\n", st[i]->name, e.text);
            rc = 1;
        }
        fwrite(out.data != NULL ? out.data : "", 1, out.len, stdout);
        buf_fini(&out);
    }
    if (found == 0) {
        fprintf(stderr,
                "relaychain keys: %s: the chain has no encrypt stage\n", path);
        rc = 1;
    }
    conf_free(cf);
    return rc;
}
