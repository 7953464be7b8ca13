/*
 * events_pg - the PostgreSQL side of the events store
 *
 * See events_pg.h. One PGconn per object, used by one thread at a time
 * (the caller's lock). The connection asks for keepalives and a short
 * connect timeout, so a server that vanished shows as an error within
 * seconds rather than a writer blocked for ever; a read-only session
 * (the RCPT lookups) also has a statement timeout.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "queue/events_db.h"
#include "queue/events_pg.h"
#include "queue/events_sql.h"

#define EVENTS_PG_PIPE 256      /* statements in flight before a sync */
#define EVENTS_PG_PASSWORD 1024 /* longest password read from its file */

struct events_pg {
    PGconn *conn;
    int in_tx;   /* between begin and commit: pipelined */
    int pending; /* statements sent since the last sync */
    int failed;  /* a pipelined statement failed */
    int expires; /* the suppression table has its expires column */
    char error[ERR_TEXT_MAX];
};

int
events_pg_is(const char *store)
{
    return strncmp(store, "postgresql://", 13) == 0 ||
           strncmp(store, "postgres://", 11) == 0;
}

int
events_pg_check(const char *store, struct err *e)
{
    PQconninfoOption *opts, *o;
    char *msg = NULL;
    int rc = 0;

    if ((opts = PQconninfoParse(store, &msg)) == NULL) {
        err_set(e, ERR_CONFIG, "not a PostgreSQL URI: %s",
                msg ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    for (o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL) {
            rc = err_set(e, ERR_CONFIG,
                         "a password in the URI would show in logs and in "
                         "'relaychain config': put it in "
                         "events_store_password_file or ~/.pgpass");
            break;
        }
    PQconninfoFree(opts);
    return rc;
}

/* events_pg_msg - libpq's message on one line, without its newline */
static int
events_pg_err(struct events_pg *pg, struct err *e, const char *what,
              const PGresult *res)
{
    const char *m = res ? PQresultErrorMessage(res) : "";
    char text[ERR_TEXT_MAX];
    size_t i;

    if (m == NULL || m[0] == '\0')
        m = pg->conn ? PQerrorMessage(pg->conn) : "out of memory";
    snprintf(text, sizeof(text), "%s", m && m[0] ? m : "connection lost");
    for (i = 0; text[i] != '\0'; i++)
        if (text[i] == '\n' || text[i] == '\r')
            text[i] = text[i + 1] == '\0' ? '\0' : ' ';
    return err_set(e, ERR_LIB, "%s: %s", what, text);
}

static int
events_pg_exec(struct events_pg *pg, const char *sql, struct err *e,
               const char *what)
{
    PGresult *res = PQexec(pg->conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = events_pg_err(pg, e, what, res);
    PQclear(res);
    return rc;
}

static int
events_pg_prepare(struct events_pg *pg, const char *name, const char *sql,
                  int nparams, struct err *e)
{
    PGresult *res = PQprepare(pg->conn, name, sql, nparams, NULL);
    int rc = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = events_pg_err(pg, e, "prepare", res);
    PQclear(res);
    return rc;
}

/* events_pg_password - the first line of path into out; 0 or -1 */
static int
events_pg_password(const char *path, char *out, size_t n, struct err *e)
{
    FILE *fp = fopen(path, "re");
    size_t len;

    if (fp == NULL)
        return err_sys(e, ERR_CONFIG, "events_store_password_file %s", path);
    if (fgets(out, (int)n, fp) == NULL)
        out[0] = '\0';
    fclose(fp);
    len = strcspn(out, "\r\n");
    out[len] = '\0';
    if (len == 0)
        return err_set(e, ERR_CONFIG, "events_store_password_file %s: empty",
                       path);
    return 0;
}

/* events_pg_tables - 0 when the schema is there, 1 when not (e set),
 * 2 when the suppression table lacks the expires column (a store made
 * before entries could expire; e set), -1 with e. The commands never
 * create or change it (they may run as another role than the
 * daemon's); the daemon creates it only when it is missing, so a role
 * without the right to create tables runs on tables an administrator
 * made. *may_update: the role may UPDATE the suppression table, which
 * replacing an expired entry needs (1 when there is no table yet). */
static int
events_pg_tables(struct events_pg *pg, int *may_update, struct err *e)
{
    PGresult *res =
        PQexec(pg->conn,
               "SELECT to_regclass('events') IS NOT NULL AND "
               "to_regclass('suppression') IS NOT NULL, EXISTS (SELECT 1 FROM "
               "pg_attribute WHERE attrelid = to_regclass('suppression') AND "
               "attname = 'expires' AND NOT attisdropped), "
               "COALESCE(has_table_privilege(to_regclass('suppression'), "
               "'UPDATE'), true)");
    int rc = 0;

    *may_update = 1;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
        PQntuples(res) != 1 || PQnfields(res) != 3) {
        rc = events_pg_err(pg, e, "schema", res);
    } else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        err_set(e, ERR_IO,
                "%s: no events tables in this database (relaychaind "
                "creates them when it starts with events_store set)",
                PQdb(pg->conn));
        rc = 1;
    } else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
        err_set(e, ERR_IO, "%s: %s", PQdb(pg->conn), EVENTS_SQL_UNMIGRATED);
        rc = 2;
    }
    if (rc >= 0)
        *may_update = strcmp(PQgetvalue(res, 0, 2), "f") != 0;
    PQclear(res);
    return rc;
}

struct events_pg *
events_pg_open(const char *store, const char *password_file, int mode,
               struct err *e)
{
    /* the URI comes after the defaults, so what it says wins; the
     * password after it, so the file wins over nothing (the URI may
     * not hold one) */
    const char *keys[12], *vals[12];
    char password[EVENTS_PG_PASSWORD];
    struct events_pg *pg;
    int k = 0, rc, may_update;

    if (events_pg_check(store, e) < 0)
        return NULL;
    password[0] = '\0';
    if (password_file != NULL &&
        events_pg_password(password_file, password, sizeof(password), e) < 0)
        return NULL;
    if ((pg = calloc(1, sizeof(*pg))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    keys[k] = "connect_timeout", vals[k++] = "5";
    keys[k] = "keepalives_idle", vals[k++] = "10";
    keys[k] = "keepalives_interval", vals[k++] = "5";
    keys[k] = "keepalives_count", vals[k++] = "3";
    keys[k] = "tcp_user_timeout", vals[k++] = "20000";
    keys[k] = "application_name", vals[k++] = "relaychain";
    keys[k] = "options";
    vals[k++] = mode == EVENTS_DB_READONLY
                    ? "-c default_transaction_read_only=on "
                      "-c statement_timeout=2000"
                    : "-c statement_timeout=30000";
    keys[k] = "dbname", vals[k++] = store;
    if (password[0] != '\0')
        keys[k] = "password", vals[k++] = password;
    keys[k] = NULL, vals[k] = NULL;
    pg->conn = PQconnectdbParams(keys, vals, 1);
    explicit_bzero(password, sizeof(password));
    if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
        events_pg_err(pg, e, "connect", NULL);
        goto fail;
    }
    if ((rc = events_pg_tables(pg, &may_update, e)) < 0 ||
        (rc == 1 && mode != EVENTS_DB_CREATE) ||
        (rc == 2 && mode == EVENTS_DB_EXISTING))
        goto fail;
    /* tables missing, or the expires column: both in the schema's
     * locked transaction (CREATE and ADD COLUMN, IF NOT EXISTS) */
    if (rc != 0 && mode == EVENTS_DB_CREATE) {
        err_clear(e);
        if (events_pg_exec(
                pg, rc == 2 ? EVENTS_SQL_MIGRATE_PG : EVENTS_SQL_SCHEMA_PG, e,
                "schema") < 0) {
            if (rc == 2)
                err_prefix(e, "adding the suppression table's expires "
                              "column (as the tables' owner: ALTER TABLE "
                              "suppression ADD COLUMN expires BIGINT NOT "
                              "NULL DEFAULT 0)");
            goto fail;
        }
        rc = 0;
    }
    /* read-only on a store not migrated yet (the commands before the
     * daemon restarted): the reports work, lookups say why they fail */
    pg->expires = rc == 0;
    if (pg->expires &&
        events_pg_prepare(pg, "sup_find", EVENTS_SQL_SUP_FIND, 3, e) < 0)
        goto fail;
    /* the writer only: a batch with a bounce in it would fail for ever
     * (the commands are told by the server, for what they try) */
    if (mode == EVENTS_DB_CREATE && !may_update) {
        err_set(e, ERR_CONFIG,
                "this role may not UPDATE the suppression table, which "
                "replacing an expired entry needs (GRANT UPDATE ON "
                "suppression TO it)");
        goto fail;
    }
    if (mode != EVENTS_DB_READONLY &&
        (events_pg_prepare(pg, "ins", EVENTS_SQL_INSERT, 16, e) < 0 ||
         events_pg_prepare(pg, "sup_add", EVENTS_SQL_SUP_ADD, 6, e) < 0))
        goto fail;
    return pg;
fail:
    events_pg_close(pg);
    return NULL;
}

void
events_pg_close(struct events_pg *pg)
{
    if (pg == NULL)
        return;
    if (pg->conn != NULL)
        PQfinish(pg->conn);
    free(pg);
}

int
events_pg_ok(const struct events_pg *pg)
{
    return pg != NULL && pg->conn != NULL &&
           PQstatus(pg->conn) == CONNECTION_OK;
}

/* ---------------------------------------------------------- pipeline */

/* events_pg_sync - end the pipeline's segment and read every result up
 * to the sync; the first error is kept in pg->error. 0, or -1 with e
 * (a statement failed or the connection broke). */
static int
events_pg_sync(struct events_pg *pg, struct err *e)
{
    PGresult *res;
    int nulls = 0;

    if (PQpipelineSync(pg->conn) != 1) {
        pg->failed = 1;
        return events_pg_err(pg, e, "pipeline", NULL);
    }
    for (;;) {
        if ((res = PQgetResult(pg->conn)) == NULL) {
            /* one NULL ends each statement's results; more in a row
             * without a sync means the connection is gone */
            if (++nulls > 2 || PQstatus(pg->conn) != CONNECTION_OK) {
                if (!pg->failed)
                    snprintf(pg->error, sizeof(pg->error), "%s",
                             "connection lost");
                pg->failed = 1;
                break;
            }
            continue;
        }
        nulls = 0;
        switch (PQresultStatus(res)) {
        case PGRES_PIPELINE_SYNC:
            PQclear(res);
            pg->pending = 0;
            goto done;
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_PIPELINE_ABORTED:
            break;
        default:
            if (!pg->failed) {
                struct err e2;

                err_clear(&e2);
                events_pg_err(pg, &e2, "insert", res);
                snprintf(pg->error, sizeof(pg->error), "%s", e2.text);
            }
            pg->failed = 1;
            break;
        }
        PQclear(res);
    }
done:
    if (pg->failed)
        return err_set(e, ERR_LIB, "%s", pg->error);
    return 0;
}

int
events_pg_begin(struct events_pg *pg, struct err *e)
{
    pg->failed = 0;
    pg->pending = 0;
    pg->error[0] = '\0';
    if (PQenterPipelineMode(pg->conn) != 1)
        return events_pg_err(pg, e, "begin", NULL);
    pg->in_tx = 1;
    if (PQsendQueryParams(pg->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) !=
        1) {
        events_pg_err(pg, e, "begin", NULL);
        events_pg_rollback(pg);
        return -1;
    }
    pg->pending++;
    return 0;
}

static int
events_pg_send(struct events_pg *pg, const char *stmt, int n,
               const char *const *vals, struct err *e)
{
    PGresult *res;
    int rc = 0;

    if (!pg->in_tx) {
        res = PQexecPrepared(pg->conn, stmt, n, vals, NULL, NULL, 0);
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = events_pg_err(pg, e, stmt, res);
        PQclear(res);
        return rc;
    }
    if (pg->failed)
        return err_set(e, ERR_LIB, "%s", pg->error);
    if (PQsendQueryPrepared(pg->conn, stmt, n, vals, NULL, NULL, 0) != 1)
        return events_pg_err(pg, e, stmt, NULL);
    /* the server's replies are read before they could fill the
     * socket's buffers, which in blocking mode would stall both sides */
    if (++pg->pending >= EVENTS_PG_PIPE)
        return events_pg_sync(pg, e);
    return 0;
}

int
events_pg_insert(struct events_pg *pg, const char *const *vals, struct err *e)
{
    return events_pg_send(pg, "ins", 16, vals, e);
}

int
events_pg_suppress_add(struct events_pg *pg, const char *const *vals,
                       struct err *e)
{
    PGresult *res;
    int rc;

    if (pg->in_tx)
        return events_pg_send(pg, "sup_add", 6, vals, e) < 0 ? -1 : 0;
    res = PQexecPrepared(pg->conn, "sup_add", 6, vals, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = events_pg_err(pg, e, "sup_add", res);
    else
        rc = strtoll(PQcmdTuples(res), NULL, 10) > 0 ? 1 : 0;
    PQclear(res);
    return rc;
}

int
events_pg_commit(struct events_pg *pg, struct err *e)
{
    if (!pg->in_tx)
        return 0;
    if (!pg->failed && PQsendQueryParams(pg->conn, "COMMIT", 0, NULL, NULL,
                                         NULL, NULL, 0) != 1) {
        events_pg_err(pg, e, "commit", NULL);
        events_pg_rollback(pg);
        return -1;
    }
    if (events_pg_sync(pg, e) < 0) {
        events_pg_rollback(pg);
        return -1;
    }
    (void)PQexitPipelineMode(pg->conn);
    pg->in_tx = 0;
    /* a COMMIT of an aborted transaction answers ROLLBACK, not an error */
    if (PQtransactionStatus(pg->conn) != PQTRANS_IDLE) {
        events_pg_rollback(pg);
        return err_set(e, ERR_LIB, "commit: the transaction did not end");
    }
    return 0;
}

void
events_pg_rollback(struct events_pg *pg)
{
    struct err e;

    if (pg == NULL || pg->conn == NULL)
        return;
    err_clear(&e);
    if (pg->in_tx) {
        if (pg->pending > 0 && PQstatus(pg->conn) == CONNECTION_OK)
            (void)events_pg_sync(pg, &e);
        (void)PQexitPipelineMode(pg->conn);
        pg->in_tx = 0;
    }
    if (PQstatus(pg->conn) == CONNECTION_OK &&
        PQtransactionStatus(pg->conn) != PQTRANS_IDLE)
        (void)events_pg_exec(pg, "ROLLBACK", &e, "rollback");
}

/* ------------------------------------------------------------ queries */

long long
events_pg_query(struct events_pg *pg, const char *sql, int nparams,
                const char *const *params, events_pg_row_cb cb, void *ctx,
                struct err *e)
{
    const char *vals[32];
    PGresult *res;
    long long changed = 0;
    int r, c, ncols;

    res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (res == NULL || (PQresultStatus(res) != PGRES_TUPLES_OK &&
                        PQresultStatus(res) != PGRES_COMMAND_OK)) {
        events_pg_err(pg, e, "query", res);
        PQclear(res);
        return -1;
    }
    ncols = PQnfields(res);
    if (ncols > 32)
        ncols = 32;
    for (r = 0; cb != NULL && r < PQntuples(res); r++) {
        for (c = 0; c < ncols; c++)
            vals[c] = PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c);
        if (cb(ctx, ncols, vals) < 0)
            break;
    }
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        changed = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return changed;
}

int
events_pg_suppress_find(struct events_pg *pg, const char *rcpt,
                        const char *stream, long long now, char *reason,
                        size_t n, long long *time_s, long long *expires_s,
                        struct err *e)
{
    char ns[32];
    const char *vals[3] = {rcpt, stream ? stream : "", ns};
    PGresult *res;
    int rc;

    if (!pg->expires)
        return err_set(e, ERR_CONFIG, EVENTS_SQL_UNMIGRATED);
    snprintf(ns, sizeof(ns), "%lld", now);
    res = PQexecPrepared(pg->conn, "sup_find", 3, vals, NULL, NULL, 0);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = events_pg_err(pg, e, "suppression lookup", res);
    } else if (PQntuples(res) == 0) {
        rc = 0;
    } else {
        snprintf(reason, n, "%s", PQgetvalue(res, 0, 0));
        *time_s = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        *expires_s = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        rc = 1;
    }
    PQclear(res);
    return rc;
}
