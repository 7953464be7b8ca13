/*
 * fuzz_msg - the message the fuzz targets of stages and msg services start
 * from: the input parsed as a message from alice@example.com to
 * bob@example.net within limits. Included by one file of each program.
 */
#ifndef RC_FUZZ_MSG_H
#define RC_FUZZ_MSG_H

#include "msg/msg.h"

/* fuzz_msg - the message, or NULL when the input is not one (or on
 * memory exhaustion); the caller frees it with msg_free(). */
static struct msg *
fuzz_msg(const struct msg_limits *limits, const char *data, size_t size)
{
    struct msg *m;
    struct err e;

    if ((m = msg_new(limits, MSG_FE_CLI, &e)) == NULL)
        return NULL;
    if (msg_env_sender(m, "alice@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, "bob@example.net", NULL, &e) < 0 ||
        msg_parse(m, data, size, &e) < 0) {
        msg_free(m);
        return NULL;
    }
    return m;
}

#endif
