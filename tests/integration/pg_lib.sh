# pg_lib.sh - a private PostgreSQL server for the events tests (sourced
# after smtpd_lib.sh, not run)
#
#   pg_start NAME PORT      initdb a cluster in $T/NAME (owned by the
#                           postgres system user: the server refuses
#                           root), listening on 127.0.0.1:PORT and on a
#                           socket in $T/NAME/sock only; a role "relay"
#                           whose password is in $T/NAME/password and a
#                           database "events" it owns. Waits (bounded)
#                           for it; returns 1 when it does not start.
#                           fsync is off unless PG_FSYNC=on.
#   pg_stop NAME            stop it (fast: sessions are cut, as when a
#                           server goes away), waited for
#   pg_restart NAME         start it again on the same port
#   pg_sql NAME SQL         run SQL as the superuser over the socket,
#                           tuples only, unaligned; prints the result
#                           (at most PG_SQL_TIMEOUT seconds, default 60)
#
# Every cluster started here is stopped when the test exits (before
# $T is removed by smtpd_lib.sh's cleanup).
PGBIN=/usr/lib/postgresql/15/bin
for prog in "$PGBIN/initdb" "$PGBIN/pg_ctl" psql runuser; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        echo "$0: $prog is missing (scripts/setup installs postgresql)" >&2
        exit 1
    fi
done
PG_USER=postgres
id "$PG_USER" >/dev/null 2>&1 || PG_USER=nobody
PG_CLUSTERS=""

pg_cleanup() {
    local n
    for n in $PG_CLUSTERS; do
        pg_stop "$n" >/dev/null 2>&1
    done
}
trap 'pg_cleanup; smtpd_cleanup' EXIT

pg_run() {
    (cd "$T" && runuser -u "$PG_USER" -- "$@")
}

pg_ctl_start() {
    pg_run "$PGBIN/pg_ctl" -D "$T/$1/data" -l "$T/$1/server.log" -w -t 30 \
        -o "-p $(cat "$T/$1/port") -k $T/$1/sock -c listen_addresses=127.0.0.1" \
        start >>"$T/$1/pg_ctl.log" 2>&1
}

pg_start() {
    local d
    d=$T/$1
    mkdir -p "$d/sock"
    echo "$2" >"$d/port"
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$d/password"
    chown -R "$PG_USER" "$d"
    chmod 700 "$d"
    chmod 600 "$d/password"
    pg_run "$PGBIN/initdb" -D "$d/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --no-sync -E UTF8 >"$d/initdb.log" 2>&1 || {
        fail "initdb: $(tail -n 3 "$d/initdb.log")"
        return 1
    }
    # a test server: no fsync (the tests do not crash the machine);
    # PG_FSYNC=on for a benchmark that must pay what production pays
    printf '%s\n' "fsync = ${PG_FSYNC:-off}" "max_connections = 50" \
        "log_min_messages = warning" >>"$d/data/postgresql.conf"
    PG_CLUSTERS="$PG_CLUSTERS $1"
    pg_ctl_start "$1" || {
        fail "PostgreSQL $1 does not start: $(tail -n 5 "$d/server.log")"
        return 1
    }
    pg_sql "$1" "CREATE ROLE relay LOGIN PASSWORD '$(cat "$d/password")'" >/dev/null &&
        pg_sql "$1" "CREATE DATABASE events OWNER relay" >/dev/null || {
        fail "PostgreSQL $1: cannot create the role and database"
        return 1
    }
}

pg_stop() {
    pg_run "$PGBIN/pg_ctl" -D "$T/$1/data" -m fast -w -t 30 stop \
        >>"$T/$1/pg_ctl.log" 2>&1
}

pg_restart() {
    pg_ctl_start "$1"
}

pg_sql() {
    timeout "${PG_SQL_TIMEOUT:-60}" psql -X -q -t -A -h "$T/$1/sock" -p "$(cat "$T/$1/port")" \
        -U postgres -d "${PG_DB:-postgres}" -v ON_ERROR_STOP=1 -c "$2"
}
