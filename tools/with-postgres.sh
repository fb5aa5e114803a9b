#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL on loopback:  tools/with-postgres.sh COMMAND [ARGS...]
#
# Starts a fresh cluster (initdb in a temporary directory, a free port, trust auth for user tlog),
# exports TLOG_TEST_PG_URL=postgresql://tlog@127.0.0.1:PORT/postgres, runs the command, then stops
# the server and deletes the directory. Installs PostgreSQL with apt-get when the machine has none
# and it can (root); without PostgreSQL the command still runs and the PostgreSQL tests are skipped.
# Used by .ci/run; the README's one-command PostgreSQL test run:
#   tools/with-postgres.sh python3 -m pytest -q tests
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
  fi
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "PostgreSQL not available: the PostgreSQL tests will be reported as skipped" >&2
  exec "$@"
fi

PGTMP=$(mktemp -d /tmp/tlog-pg.XXXXXX)
PGPORT=${TLOG_CI_PG_PORT:-$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
RUNAS=()
if [ "$(id -u)" = "0" ]; then
  id postgres >/dev/null 2>&1 || useradd -r -m postgres
  chown -R postgres "$PGTMP"
  RUNAS=(runuser -u postgres --)
fi
cleanup() {
  ${RUNAS[@]+"${RUNAS[@]}"} "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGTMP"
}
trap cleanup EXIT
${RUNAS[@]+"${RUNAS[@]}"} "$PGBIN/initdb" -D "$PGTMP/data" -A trust -U tlog >/dev/null
${RUNAS[@]+"${RUNAS[@]}"} "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGTMP -c fsync=on -c max_connections=200" start >/dev/null
export TLOG_TEST_PG_URL="postgresql://tlog@127.0.0.1:$PGPORT/postgres"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT (TLOG_TEST_PG_URL)" >&2
"$@"
