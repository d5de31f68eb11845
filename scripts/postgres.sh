#!/usr/bin/env bash
# A throwaway PostgreSQL cluster: initdb in PG_DIR, the server on 127.0.0.1:PG_PORT (trust
# authentication, user genetika), run as the postgres user when invoked as root.
#   scripts/postgres.sh start | stop | url
set -euo pipefail
PG_DIR="${PG_DIR:?set PG_DIR}"
PG_PORT="${PG_PORT:?set PG_PORT}"
BIN="${GENETIKA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
[ -x "$BIN/postgres" ] || { echo "[postgres] no PostgreSQL server found; run 'make deps'" >&2; exit 1; }
as_owner() { if [ "$(id -u)" -eq 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }

case "${1:-}" in
  start)
    mkdir -p "$PG_DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
    as_owner "$BIN/initdb" -D "$PG_DIR/data" -U genetika --auth=trust -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
      || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    as_owner "$BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null \
      || { tail -n 20 "$PG_DIR/server.log" >&2; exit 1; }
    echo "[postgres] ready: postgres://genetika@127.0.0.1:$PG_PORT/postgres" >&2 ;;
  stop)
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then as_owner "$BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null || true; fi ;;
  url) echo "postgres://genetika@127.0.0.1:$PG_PORT/postgres" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
