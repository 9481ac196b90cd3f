#!/bin/bash
# Runs an inventory unit test (test_inventory, test_inventory_presence, test_rotation) against
# a throw-away PostgreSQL cluster instead of a SQLite file (issue 15): the same assertions on
# both backends. Usage: inventory_pg.sh TEST_BINARY TMPDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/skip.sh"
. "$here/pg_lib.sh"
bin=$1
tmp=$2
rm -rf "$tmp"
mkdir -p "$tmp"
fk_pg_start "$tmp/pg"
FK_TEST_PG_HOST="$FK_PG_DIR/sock" FK_TMP="$tmp" "$bin"
