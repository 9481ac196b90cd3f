/* Where an inventory unit test keeps its store: a SQLite file under FK_TMP (the default), or,
 * when FK_TEST_PG_HOST names the socket directory of a throw-away PostgreSQL cluster
 * (tests/integration/pg_lib.sh, started by the *_pg CTest cases), a fresh database on it, so
 * the same tests run against both backends. Header-only: each test is one translation unit. */
#ifndef FK_TEST_INV_LOCATION_H
#define FK_TEST_INV_LOCATION_H

#include "fleetkey/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef FK_HAVE_PG
#include <libpq-fe.h>

/* Runs sql on uri; returns 0 on success, else prints libpq's message and returns -1. */
static int fk_test_pg_exec(const char *uri, const char *sql) {
    PGconn *c = PQconnectdb(uri);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok) {
            fprintf(stderr, "pg: %s", PQresultErrorMessage(r));
        }
        PQclear(r);
    } else {
        fprintf(stderr, "pg: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}
#endif

/* 1 when the tests run against PostgreSQL. */
static int fk_test_inv_is_pg(void) {
    const char *h = getenv("FK_TEST_PG_HOST");
    return h != NULL && h[0] != '\0';
}

/* Writes the location of a new, empty store called name into out. Returns 0, or -1 when it
 * could not be made (the caller asserts). */
static int fk_test_inv_fresh(const char *name, const char *fallback_dir, char *out, size_t size) {
    if (fk_test_inv_is_pg()) {
#ifdef FK_HAVE_PG
        const char *host = getenv("FK_TEST_PG_HOST");
        char admin[1200];
        char sql[256];
        snprintf(admin, sizeof admin, "postgresql://fleetkey@/postgres?host=%s", host);
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"fk_%s\" WITH (FORCE)", name);
        if (fk_test_pg_exec(admin, sql) != 0) {
            return -1;
        }
        snprintf(sql, sizeof sql, "CREATE DATABASE \"fk_%s\"", name);
        if (fk_test_pg_exec(admin, sql) != 0) {
            return -1;
        }
        return snprintf(out, size, "postgresql://fleetkey@/fk_%s?host=%s", name, host) < (int)size
                   ? 0
                   : -1;
#else
        fprintf(stderr, "FK_TEST_PG_HOST set but this build has no libpq\n");
        return -1;
#endif
    }
    const char *base = getenv("FK_TMP");
    char dir[3000];
    snprintf(dir, sizeof dir, "%s", base != NULL ? base : fallback_dir);
    if (fk_mkdirs(dir, 0700, NULL) != FK_OK ||
        snprintf(out, size, "%s/%s.db", dir, name) >= (int)size) {
        return -1;
    }
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", out, suffix[i]);
        unlink(p);
    }
    return 0;
}

#endif
