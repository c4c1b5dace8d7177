#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the test suite, on loopback only.
#
#   source tests/scripts/postgres.sh   # exports TELEHEALTH_TEST_POSTGRES_URL
#   ...                                # and stops the server on exit (trap)
#
# The cluster lives in a temporary directory and is deleted afterwards.
# PostgreSQL refuses to run as root, so as root it runs as the `postgres`
# system user that Debian's package creates.

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pg_bin" ]; then
    echo "PostgreSQL is not installed (run tests/scripts/deps.sh)" >&2
    return 1 2>/dev/null || exit 1
fi

TELEHEALTH_PG_DIR=$(mktemp -d /tmp/telehealth-pg.XXXXXX)
chmod 755 "$TELEHEALTH_PG_DIR"
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$TELEHEALTH_PG_DIR"
    as_pg=(runuser -u postgres --)
fi
# A free port: ask the kernel for one.
TELEHEALTH_PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

"${as_pg[@]}" "$pg_bin/initdb" -D "$TELEHEALTH_PG_DIR/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$TELEHEALTH_PG_DIR/data" -l "$TELEHEALTH_PG_DIR/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $TELEHEALTH_PG_PORT -k $TELEHEALTH_PG_DIR -c fsync=off -c max_connections=300" start >/dev/null

telehealth_pg_stop() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$TELEHEALTH_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TELEHEALTH_PG_DIR"
}
trap telehealth_pg_stop EXIT

export TELEHEALTH_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$TELEHEALTH_PG_PORT/postgres"
echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') for tests at 127.0.0.1:$TELEHEALTH_PG_PORT"
