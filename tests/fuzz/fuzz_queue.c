/*
 * fuzz_queue - the queue file reader over torn and hostile files
 *
 * The input is a queue file as relaychaind would find it in queue/. It
 * is read as it is, and then again with its end record resealed
 * (queue_file_seal) so that mutations reach the record checks behind
 * the checksum instead of stopping at it.
 * Besides the sanitizers, the target traps when a promise is broken: a
 * file the full reader accepts must also pass the start-up tail check
 * and the head-only reader (which must agree on the envelope); every
 * recipient must have a non-empty address and a status octet that is
 * where status_off says; written again from what was read, the file
 * must read back the same; and every shorter prefix of an accepted
 * file must be refused (torn files are never taken for whole ones). An
 * accepted file also goes through the DSN builder, which must produce
 * a report naming each recipient.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_same(const struct queue_file *a, const struct queue_file *b)
{
    size_t i;

    if (a->nrcpts != b->nrcpts || a->norig != b->norig || a->len != b->len ||
        strcmp(a->sender, b->sender) != 0 ||
        strcmp(a->sender_params, b->sender_params) != 0 ||
        strcmp(a->client_addr, b->client_addr) != 0 ||
        strcmp(a->helo, b->helo) != 0 ||
        strcmp(a->auth_user, b->auth_user) != 0 ||
        a->arrival_us != b->arrival_us)
        __builtin_trap();
    for (i = 0; i < a->nrcpts; i++)
        if (strcmp(a->rcpts[i].addr, b->rcpts[i].addr) != 0 ||
            strcmp(a->rcpts[i].params, b->rcpts[i].params) != 0)
            __builtin_trap();
    if (a->len > 0 && memcmp(a->data, b->data, a->len) != 0)
        __builtin_trap();
}

static int fuzz_one(const char *buf, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy;

    fuzz_one((const char *)data, size);
    if (size < QUEUE_TAIL_LEN || (copy = malloc(size)) == NULL)
        return 0;
    memcpy(copy, data, size);
    queue_file_seal(copy, size);
    fuzz_one(copy, size);
    free(copy);
    return 0;
}

static int
fuzz_one(const char *buf, size_t size)
{
    struct queue_file qf, head, again;
    struct msg_rcpt *rcpts = NULL, *orig = NULL;
    struct queue_dsn_rcpt *list = NULL;
    struct queue_msg m;
    struct buf out;
    struct err e;
    size_t i, cut;

    if (queue_file_parse(buf, size, 0, &qf, &e) < 0) {
        queue_file_fini(&qf);
        /* the head-only reader must not crash either */
        (void)queue_file_parse(buf, size, 1, &head, &e);
        queue_file_fini(&head);
        return 0;
    }
    if (size < QUEUE_TAIL_LEN ||
        !queue_file_tail_ok(buf + size - QUEUE_TAIL_LEN, QUEUE_TAIL_LEN, size))
        __builtin_trap();
    if (queue_file_parse(buf, size, 1, &head, &e) < 0 ||
        head.nrcpts != qf.nrcpts || head.len != qf.len ||
        strcmp(head.sender, qf.sender) != 0)
        __builtin_trap();
    queue_file_fini(&head);
    if (qf.nrcpts == 0)
        __builtin_trap();
    for (i = 0; i < qf.nrcpts; i++)
        if (qf.rcpts[i].addr[0] == '\0' || qf.rcpts[i].status_off >= size ||
            buf[qf.rcpts[i].status_off] != qf.rcpts[i].status)
            __builtin_trap();
    /* a few prefixes, always including the one missing its last octet */
    for (cut = size - 1; cut > 0; cut = cut > 64 ? cut - cut / 7 - 1 : 0)
        if (queue_file_parse(buf, cut, 0, &again, &e) == 0)
            __builtin_trap();
        else
            queue_file_fini(&again);

    rcpts = calloc(qf.nrcpts, sizeof(*rcpts));
    orig = calloc(qf.norig + 1, sizeof(*orig));
    list = calloc(qf.nrcpts, sizeof(*list));
    if (rcpts == NULL || orig == NULL || list == NULL)
        goto out;
    for (i = 0; i < qf.nrcpts; i++) {
        rcpts[i].addr = (char *)qf.rcpts[i].addr;
        rcpts[i].params = (char *)qf.rcpts[i].params;
        list[i].idx = i;
        list[i].reply = "550 5.1.1 refused";
        list[i].remote = "mx.example[192.0.2.1]:25";
    }
    for (i = 0; i < qf.norig; i++) {
        orig[i].addr = (char *)qf.orig[2 * i];
        orig[i].params = (char *)qf.orig[2 * i + 1];
    }
    memset(&m, 0, sizeof(m));
    m.qid = "FUZZ";
    m.arrival_us = qf.arrival_us;
    m.client_addr = qf.client_addr;
    m.client_name = qf.client_name;
    m.helo = qf.helo;
    m.auth_user = qf.auth_user;
    m.sender = qf.sender;
    m.sender_params = qf.sender_params;
    m.rcpts = rcpts;
    m.nrcpts = qf.nrcpts;
    m.orig = orig;
    m.norig = qf.norig;
    m.data = qf.data;
    m.len = qf.len;
    buf_init(&out, 0);
    if (queue_file_serialize(&m, &out, &e) < 0 ||
        queue_file_parse(out.data, out.len, 0, &again, &e) < 0)
        __builtin_trap();
    fuzz_same(&qf, &again);
    queue_file_fini(&again);
    buf_reset(&out);
    if (queue_dsn_build(&qf, "FUZZ", "relay.example", "failed", list,
                        qf.nrcpts, qf.arrival_us + 1000000,
                        qf.arrival_us + 2000000, &out, &e) < 0 &&
        e.code != ERR_LIMIT)
        __builtin_trap();
    if (out.len > 0 && strstr(out.data, "Final-Recipient: rfc822; ") == NULL)
        __builtin_trap();
    buf_fini(&out);
out:
    free(rcpts);
    free(orig);
    free(list);
    queue_file_fini(&qf);
    return 0;
}
