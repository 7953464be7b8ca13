/*
 * cli - what the commands of relaychain share
 *
 * The commands that have a file of their own in core/cli/ (cmd_*.c) are
 * entered through their *_main(argc, argv), with argv[0] the command's
 * name; each returns the exit status and prints its own output and
 * errors. core/cli/relaychain.c dispatches to them.
 *
 * cli_main_cfg() is how a command that works on files the daemon keeps
 * (the queue, the quarantine) reads relaychain.conf: the main file
 * against its option table, every key and value checked as start-up
 * checks them, but no chain loaded and no stage initialized, so a
 * broken chain.d file or a missing virus database never keeps an admin
 * from the spool.
 */
#ifndef RC_CLI_H
#define RC_CLI_H

#include "util/cfg.h"
#include "util/err.h"

/* dkimcli_main - "relaychain dkim keygen|testkey" (cmd_dkim.c). */
int dkimcli_main(int argc, char **argv);

/* queue_main - "relaychain queue list|flush|delete|hold|release|requeue|
 * show" (cmd_queue.c). */
int queue_main(int argc, char **argv);

/* quarantine_main - "relaychain quarantine list|show|release|delete"
 * (cmd_quarantine.c). */
int quarantine_main(int argc, char **argv);

/* passwd_main - "relaychain passwd FILE USER" (cmd_passwd.c): reads the
 * new password twice from the terminal without echo (one line from
 * standard input when that is not a terminal) and calls
 * auth_passwd_change(). */
int passwd_main(int argc, char **argv);

/* user_main - "relaychain user list|release" (cmd_user.c): the users
 * and clients the antispam stage holds (hold_user). */
int user_main(int argc, char **argv);
/* archive_main - "relaychain archive verify|status" (cmd_archive.c). */
int archive_main(int argc, char **argv);
/* ---- encrypt: keys_main - "relaychain keys lookup|list" (cmd_keys.c). */
int keys_main(int argc, char **argv);
/* ---- end encrypt */

/* ---- events: events_main - "relaychain events | report | suppress"
 * (cmd_events.c), by argv[0]. */
int events_main(int argc, char **argv);

/* cli_main_cfg - the main file path, validated; NULL with e set to
 * "path:line: reason". The caller frees it with cfg_free(). */
struct cfg *cli_main_cfg(const char *path, struct err *e);

#endif
