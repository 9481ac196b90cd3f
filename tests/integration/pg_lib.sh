# A throw-away PostgreSQL cluster for one test (issue 15). Source it, then
#   fk_pg_start DIR      # initdb + pg_ctl start in DIR (a temp dir under the build dir)
#   fk_pg_createdb NAME  # prints nothing; the database's URI is then "$(fk_pg_uri NAME)"
# The cluster listens on a unix socket in DIR only (listen_addresses=''), trusts local
# connections as its superuser "fleetkey", and is stopped (pg_ctl stop -m immediate) by the
# EXIT trap fk_pg_start installs, also when the test fails or is interrupted (INT, TERM: once
# the command in the foreground returns); a script with a cleanup of its own calls fk_pg_stop
# from its EXIT trap. Run as root, the server runs as nobody (PostgreSQL refuses root) and DIR
# is handed to that user. Nothing needs a system service.
#
# Without the PostgreSQL server binaries the test skips (fk_skip from skip.sh, a failure under
# CI): install them with scripts/install-deps (scripts/packages.d/pg.txt).

FK_PG_BIN=${FK_PG_BIN:-/usr/lib/postgresql/15/bin}
FK_PG_DIR=""

# Runs a PostgreSQL program as the cluster's owner.
fk_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
    else
        "$@"
    fi
}

fk_pg_stop() {
    if [ -n "$FK_PG_DIR" ] && [ -f "$FK_PG_DIR/data/postmaster.pid" ]; then
        fk_pg_as_owner "$FK_PG_BIN/pg_ctl" -D "$FK_PG_DIR/data" -m immediate -w -t 30 stop \
            >/dev/null 2>&1 || true
    fi
}

fk_pg_start() {
    if [ ! -x "$FK_PG_BIN/initdb" ] || [ ! -x "$FK_PG_BIN/pg_ctl" ]; then
        fk_skip "PostgreSQL server binaries not found in $FK_PG_BIN (apt install postgresql)"
    fi
    command -v psql >/dev/null || fk_skip "psql not found (apt install postgresql-client)"
    FK_PG_DIR=$1
    rm -rf "$FK_PG_DIR"
    mkdir -p "$FK_PG_DIR/sock"
    chmod 0700 "$FK_PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown -R nobody:nogroup "$FK_PG_DIR"
    fi
    trap 'fk_pg_stop' EXIT
    trap 'exit 1' INT TERM # through the EXIT trap: an interrupted test stops its server too
    # --no-sync only for initdb's own files; the running server keeps fsync on.
    fk_pg_as_owner "$FK_PG_BIN/initdb" -D "$FK_PG_DIR/data" -U fleetkey -A trust -E UTF8 \
        --locale=C --no-sync >"$FK_PG_DIR/initdb.log" 2>&1 ||
        { cat "$FK_PG_DIR/initdb.log" >&2; echo "FAIL: initdb" >&2; exit 1; }
    fk_pg_as_owner "$FK_PG_BIN/pg_ctl" -D "$FK_PG_DIR/data" -l "$FK_PG_DIR/server.log" -w \
        -t 60 -o "-c listen_addresses='' -c unix_socket_directories='$FK_PG_DIR/sock' \
-c max_connections=200 ${FK_PG_OPTS:-}" start >/dev/null ||
        { cat "$FK_PG_DIR/server.log" >&2; echo "FAIL: pg_ctl start" >&2; exit 1; }
}

# fk_pg_restart: stops the server (fast: clients are cut off) and starts it again with the
# same options, as an operator's restart or a failover would.
fk_pg_restart() {
    fk_pg_as_owner "$FK_PG_BIN/pg_ctl" -D "$FK_PG_DIR/data" -l "$FK_PG_DIR/server.log" -m fast \
        -w -t 60 restart >/dev/null || { echo "FAIL: pg_ctl restart" >&2; exit 1; }
}

# The libpq URI of database NAME on the cluster (socket directory in the query).
fk_pg_uri() {
    echo "postgresql://fleetkey@/$1?host=$FK_PG_DIR/sock"
}

fk_pg_psql() {
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 \
        -h "$FK_PG_DIR/sock" -U fleetkey "$@"
}

fk_pg_createdb() {
    fk_pg_psql -d postgres -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\"" ||
        { echo "FAIL: create database $1" >&2; exit 1; }
}
