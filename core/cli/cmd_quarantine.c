/*
 * quarantine_cli - "relaychain quarantine": held messages for an admin
 *
 *     relaychain quarantine [-c FILE] list
 *     relaychain quarantine [-c FILE] show ID
 *     relaychain quarantine [-c FILE] release ID
 *     relaychain quarantine [-c FILE] delete ID
 *
 * The commands work on the files of quarantine_directory through the
 * store (core/queue/quarantine.h) and print what they did; release and
 * delete also log it to the mail log, as postsuper does.
 *
 * list, show and delete read relaychain.conf alone (cli_main_cfg): they
 * need its directory and log settings, not the chain, so a stage that
 * does not load (a broken chain.d file, a virus database being updated)
 * never keeps an admin from the held mail. release loads the chain too:
 * it rebuilds the message with its recorded envelope, runs the stages
 * after the one that held it (chain_run_opts with resume_after), and
 * removes the file only after the result is safe, in the queue's spool
 * or accepted by the next hop. A failed release leaves the message where
 * it was; a later stage that rejects or tempfails it does too, and one
 * that holds it again rewrites the file with its own name in Stage:.
 * A file written before Stage: existed holds the message after its stage
 * had edited it; it is released as it is, as before, with a warning.
 *
 * The commands run as root in a directory the daemon's user can write:
 * the directory is opened with cfg_open_dir() (root's links only) and
 * the store works relative to it; IDs from the command line are letters
 * and digits.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/log.h"
#include "util/qid.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "net/smtpc.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/queue_conf.h"
#include "cli/cli.h"
#include "cli/parts.h"

static int
quarantine_cmd_list(int dfd, const char *dir)
{
    struct dirent *de;
    DIR *d;
    int n = 0, fd;

    printf("%-14s %-20s %-30s %s\n", "ID", "Arrival", "Sender", "Reason");
    /* The directory is made at the first quarantined message. */
    if (dfd < 0) {
        printf("-- 0 messages in quarantine\n");
        return 0;
    }
    if ((fd = dup(dfd)) < 0 || (d = fdopendir(fd)) == NULL) {
        fprintf(stderr, "relaychain: %s: %s\n", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        char from[300], arrival[32], reason[300], when[32];
        struct quarantine_file q;
        struct err e;
        time_t t;

        if (!qid_is_valid(de->d_name, QUARANTINE_ID_MAX))
            continue;
        if (quarantine_read(dfd, dir, de->d_name, &q, &e) < 0) {
            fprintf(stderr, "relaychain: %s\n", e.text);
            quarantine_file_fini(&q);
            continue;
        }
        quarantine_field(&q, "Envelope-From", 0, from, sizeof(from));
        quarantine_field(&q, "Arrival", 0, arrival, sizeof(arrival));
        quarantine_field(&q, "Reason", 0, reason, sizeof(reason));
        t = (time_t)strtoll(arrival, NULL, 10);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
        printf("%-14s %-20s <%s> %s\n", de->d_name, when, from, reason);
        quarantine_file_fini(&q);
        n++;
    }
    closedir(d);
    printf("-- %d message%s in quarantine\n", n, n == 1 ? "" : "s");
    return 0;
}

/* quarantine_release_stops - what the chain's verdict on the released
 * message m does to it short of delivery: a reject or tempfail leaves
 * it held, a discard or an empty recipient list removes it, a hold
 * rewrites it. Returns 1 with *rc the exit status when the release ends
 * here, 0 when the message goes on to be delivered. */
static int
quarantine_release_stops(int dfd, const char *dir, const char *id,
                         struct msg *m, const struct chain_result *res,
                         const char *stream, int *rc)
{
    struct buf out;
    struct err e;

    *rc = 1;
    switch (res->verdict.kind) {
    case VERDICT_CONTINUE:
        break;
    case VERDICT_REJECT:
    case VERDICT_TEMPFAIL:
        fprintf(stderr, "relaychain: %s: not released: stage %s %ss it: %s\n",
                id, res->by ? res->by->name : "chain",
                verdict_kind_name(res->verdict.kind), res->verdict.reply);
        log_info(id, "quarantine: not released: %s: %s: %s",
                 verdict_kind_name(res->verdict.kind),
                 res->by ? res->by->name : "chain", res->verdict.reply);
        return 1;
    case VERDICT_DISCARD:
        if (unlinkat(dfd, id, 0) < 0) {
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
            return 1;
        }
        printf("%s: discarded by %s\n", id, res->by ? res->by->name : "chain");
        log_info(id, "quarantine: released, then discarded by %s%s%s",
                 res->by ? res->by->name : "chain",
                 res->verdict.note[0] ? ": " : "", res->verdict.note);
        *rc = 0;
        return 1;
    case VERDICT_QUARANTINE:
        err_clear(&e);
        buf_init(&out, 0);
        /* The same name: rename() replaces the old file in one step. */
        if (msg_write(m, &out, &e) < 0 ||
            quarantine_store_at(
                dfd, dir, m, out.data, out.len, res->verdict.note,
                res->by ? res->by->name : NULL, stream, &e) < 0) {
            fprintf(stderr, "relaychain: %s: %s\n", id, e.text);
            buf_fini(&out);
            return 1;
        }
        buf_fini(&out);
        printf("%s: held again by %s: %s\n", id,
               res->by ? res->by->name : "chain", res->verdict.note);
        log_info(id, "quarantine: released, then held again by %s: %s",
                 res->by ? res->by->name : "chain", res->verdict.note);
        *rc = 0;
        return 1;
    }
    if (msg_env(m)->nrcpts == 0) {
        if (unlinkat(dfd, id, 0) < 0) {
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
            return 1;
        }
        printf("%s: the chain removed every recipient\n", id);
        log_info(id, "quarantine: released, then discarded: the chain "
                     "removed every recipient");
        *rc = 0;
        return 1;
    }
    return 0;
}

/* quarantine_release_deliver - hand the released message (its envelope
 * env, its bytes out) to the queue's spool with delivery = queue, or to
 * the next hop; 0 with what became of it in note (size n), or -1 with
 * the error printed and logged. */
static int
quarantine_release_deliver(const struct conf *cf,
                           const struct quarantine_file *q, const char *id,
                           const struct msg_env *env, const struct buf *out,
                           char *note, size_t n)
{
    struct smtpc_reply r;
    struct err e;

    err_clear(&e);
    if (queue_delivery(cf->cfg) == QUEUE_DELIVERY_QUEUE) {
        struct queue_msg qm;
        char arrival[32], stream[256];
        int spooled;

        memset(&qm, 0, sizeof(qm));
        quarantine_field(q, "Arrival", 0, arrival, sizeof(arrival));
        qm.qid = id;
        qm.arrival_us = strtoll(arrival, NULL, 10) * 1000000LL;
        qm.client_addr = env->client_addr ? env->client_addr : "";
        qm.client_name = env->client_name ? env->client_name : "";
        qm.helo = env->helo ? env->helo : "";
        qm.auth_user = env->auth_user;
        quarantine_field(q, "Stream", 0, stream, sizeof(stream));
        qm.stream = stream; /* stream_header's, when there was one */
        qm.sender = env->sender;
        qm.sender_params = env->sender_params ? env->sender_params : "";
        qm.rcpts = env->rcpts;
        qm.nrcpts = env->nrcpts;
        qm.orig = env->rcpts;
        qm.norig = env->nrcpts;
        qm.data = out->data ? out->data : "";
        qm.len = out->len;
        if ((spooled = quarantine_spool(cf, &qm, &e)) < 0)
            goto fail;
        if (spooled == 1)
            fprintf(stderr, "relaychain: %s/trigger: not a FIFO: refused\n",
                    cfg_str(cf->cfg, "queue_directory"));
        snprintf(note, n, "queued as %s", id);
        return 0;
    }
    if (quarantine_next_hop(cf, id, env, out->data ? out->data : "", out->len,
                            &r, &e) < 0)
        goto fail;
    snprintf(note, n, "%d %s", r.code, r.text);
    return 0;
fail:
    fprintf(stderr, "relaychain: %s: not released: %s\n", id, e.text);
    log_warning(id, "quarantine: not released: %s", e.text);
    return -1;
}

/* quarantine_cmd_release - resume the chain for message id and deliver
 * the result; 0 when it left the quarantine (delivered, queued,
 * discarded by a stage, or held again under a later stage). */
static int
quarantine_cmd_release(const struct conf *cf, int dfd, const char *dir,
                       const char *id)
{
    char stage[128], reason[300], note[600], stream[256];
    struct chain_result res;
    struct chain_opts opts;
    struct msg *m = NULL;
    struct buf out;
    struct quarantine_file q;
    struct err e;
    int rc = 1, resumed;

    err_clear(&e);
    memset(&res, 0, sizeof(res));
    buf_init(&out, 0);
    if (quarantine_read(dfd, dir, id, &q, &e) < 0 ||
        (m = quarantine_file_msg(&cf->limits, &q, id, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        goto out;
    }
    quarantine_field(&q, "Reason", 0, reason, sizeof(reason));
    resumed = quarantine_field(&q, "Stage", 0, stage, sizeof(stage)) != NULL &&
              stage[0] != '\0';
    memset(&opts, 0, sizeof(opts));
    opts.resume_after = resumed ? stage : NULL;
    opts.undo_hold = 1;
    if (!resumed) {
        fprintf(stderr,
                "relaychain: warning: %s was held without the name of its "
                "stage: released as it was held, the rest of the chain is "
                "not run\n",
                id);
        log_warning(id, "quarantine: held without the name of its stage: "
                        "released as it was held");
    } else {
        log_info(id,
                 "quarantine: release: resuming the chain after %s "
                 "(held: %s)",
                 stage, reason);
        if (chain_run_opts(cf->chain, m, &opts, &res, &e) < 0) {
            fprintf(stderr, "relaychain: %s: not released: %s\n", id, e.text);
            log_warning(id, "quarantine: not released: %s", e.text);
            goto out;
        }
    }
    quarantine_field(&q, "Stream", 0, stream, sizeof(stream));
    if (quarantine_release_stops(dfd, dir, id, m, &res, stream, &rc))
        goto out;
    if (msg_write(m, &out, &e) < 0) {
        fprintf(stderr, "relaychain: %s: %s\n", id, e.text);
        goto out;
    }
    if (quarantine_release_deliver(cf, &q, id, msg_env(m), &out, note,
                                   sizeof(note)) < 0)
        goto out;
    if (unlinkat(dfd, id, 0) < 0)
        fprintf(stderr, "relaychain: released, but %s/%s: %s\n", dir, id,
                strerror(errno));
    printf("%s: released (%s)\n", id, note);
    log_info(id, "released from quarantine%s%s (%s)",
             resumed ? ", chain resumed after " : "", resumed ? stage : "",
             note);
    rc = 0;
out:
    chain_result_fini(&res);
    msg_free(m);
    buf_fini(&out);
    quarantine_file_fini(&q);
    return rc;
}

int
quarantine_main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *cmd, *dir, *id;
    struct conf *cf = NULL;
    struct cfg *main_cfg = NULL;
    const struct cfg *mc;
    struct err e;
    int c, rc = 1, dfd = -1;

    optind = 1;
    while ((c = getopt(argc, argv, "c:h")) != -1) {
        if (c == 'c') {
            path = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: relaychain quarantine [-c FILE] list\n"
                    "       relaychain quarantine [-c FILE] show|release|"
                    "delete ID\n");
            return c == 'h' ? 0 : 1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: relaychain quarantine [-c FILE] "
                        "list|show|release|delete [ID]\n");
        return 1;
    }
    cmd = argv[optind];
    log_open("relaychain", LOG_MAIL, LOG_SINK_NONE);
    err_clear(&e);
    /* Only a release runs messages through the chain (the stages after
     * the one that held it); the other commands read the main file
     * alone, and no stage is loaded for them. */
    if (strcmp(cmd, "release") == 0)
        mc = (cf = conf_load(path, parts_all, &e)) != NULL ? cf->cfg : NULL;
    else
        mc = main_cfg = cli_main_cfg(path, &e);
    if (mc == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    dir = cfg_str(mc, "quarantine_directory");
    if (strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0 &&
        conf_log_open(mc, &e) < 0) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        goto out;
    }
    /* The directory is made at the first quarantined message: missing,
     * it is an empty quarantine. */
    if ((dfd = cfg_open_dir(dir, &e)) < 0 && e.sys_errno != ENOENT) {
        fprintf(stderr, "relaychain: quarantine_directory %s\n", e.text);
        goto out;
    }
    if (strcmp(cmd, "list") == 0 && optind + 1 == argc) {
        rc = quarantine_cmd_list(dfd, dir);
        goto out;
    }
    if (optind + 2 != argc ||
        !qid_is_valid(argv[optind + 1], QUARANTINE_ID_MAX)) {
        fprintf(stderr, "relaychain: quarantine %s needs one message ID\n",
                cmd);
        goto out;
    }
    id = argv[optind + 1];
    if (dfd < 0) {
        fprintf(stderr, "relaychain: quarantine_directory %s\n", e.text);
        goto out;
    }
    if (strcmp(cmd, "show") == 0) {
        struct quarantine_file q;

        if (quarantine_read(dfd, dir, id, &q, &e) < 0) {
            fprintf(stderr, "relaychain: %s\n", e.text);
        } else {
            fwrite(q.raw.data, 1, q.raw.len, stdout);
            rc = 0;
        }
        quarantine_file_fini(&q);
    } else if (strcmp(cmd, "delete") == 0) {
        if (quarantine_delete(dfd, dir, id, &e) < 0) {
            fprintf(stderr, "relaychain: %s\n", e.text);
        } else {
            printf("%s: removed from quarantine\n", id);
            log_info(id, "removed from quarantine");
            rc = 0;
        }
    } else if (strcmp(cmd, "release") == 0) {
        rc = quarantine_cmd_release(cf, dfd, dir, id);
    } else {
        fprintf(stderr, "relaychain: unknown quarantine command '%s'\n", cmd);
    }
out:
    if (dfd >= 0)
        close(dfd);
    conf_free(cf);
    cfg_free(main_cfg);
    return rc;
}
