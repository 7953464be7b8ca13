/*
 * events_report - the delivery report as JSON, one text for the CLI and
 * the HTTP listener
 *
 * "relaychain report --json" prints it and relaychaind's /api/report
 * serves it: one query (events_db_report) and one way of writing it, so
 * the two never disagree. Each row is an object with the key, the
 * counts per recipient and three rates in percent (two decimals):
 * delivered and bounced of the final outcomes, deferred of deferrals and
 * final outcomes.
 */
#ifndef RC_EVENTS_REPORT_H
#define RC_EVENTS_REPORT_H

#include "queue/events_db.h"
#include "util/buf.h"
#include "util/err.h"

/* events_report_json - the report of db (by, since, until as
 * events_db_report) appended to out: "[{...},\n {...}]\n", "[]\n" for
 * none. Returns the number of rows, or -1 with e (out may then hold a
 * part). */
int events_report_json(struct events_db *db, const char *by, long long since,
                       long long until, struct buf *out, struct err *e);
/* events_report_json_in - the same over stream's events alone */
int events_report_json_in(struct events_db *db, const char *by,
                          const char *stream, long long since, long long until,
                          struct buf *out, struct err *e);

#endif
