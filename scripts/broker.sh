#!/usr/bin/env bash
# Start or stop a local Kafka broker for Genetika and create its topics.
#   scripts/broker.sh start | stop | status
# Uses Docker Compose's Apache Kafka (compose.yaml) when a Docker engine answers, and the
# Tansu broker from .deps/tansu (scripts/install-deps.sh) otherwise.
# Environment: BROKER_PORT (9092), PARTITIONS (3), TOPICS ("topic1 topic2 topic3 ack dead-letter incomplete"),
#              BROKER_DIR (.broker: pid file and log), BROKER_TIMEOUT (60 s),
#              BROKER=tansu to use Tansu even where a Docker engine answers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${BROKER_PORT:-9092}"
PARTITIONS="${PARTITIONS:-3}"
TOPICS="${TOPICS:-topic1 topic2 topic3 ack dead-letter incomplete}"
DIR="${BROKER_DIR:-$ROOT/.broker}"
TIMEOUT="${BROKER_TIMEOUT:-60}"
TANSU="$ROOT/.deps/tansu/bin/tansu"

log() { printf '[broker] %s\n' "$*" >&2; }

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose -f "$ROOT/compose.yaml" "$@"
  else docker-compose -f "$ROOT/compose.yaml" "$@"; fi
}
docker_engine() {
  [ "${BROKER:-}" != "tansu" ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

wait_ready() {
  local args=()
  for t in $TOPICS; do args+=(--topic "$t:$PARTITIONS"); done
  python3 "$ROOT/scripts/kafka-wait.py" "127.0.0.1:$PORT" --timeout "$TIMEOUT" "$@" "${args[@]}"
}

start_tansu() {
  [ -x "$TANSU" ] || { log "Tansu is not installed: run 'make deps' first"; exit 1; }
  mkdir -p "$DIR"
  if [ -f "$DIR/tansu.pid" ] && kill -0 "$(cat "$DIR/tansu.pid")" 2>/dev/null; then
    log "Tansu already running (pid $(cat "$DIR/tansu.pid")) on 127.0.0.1:$PORT"
  else
    if python3 "$ROOT/scripts/kafka-wait.py" "127.0.0.1:$PORT" --timeout 0 2>/dev/null; then
      # A Kafka broker we did not start (yours, or one left running): use it as it is.
      # genetika creates its missing topics at start-up (topics.create).
      log "a Kafka broker already answers on 127.0.0.1:$PORT (not started here): using it; set BROKER_PORT for a separate one"
      exit 0
    fi
    log "starting Tansu on 127.0.0.1:$PORT (log: $DIR/tansu.log)"
    nohup "$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" --storage-engine memory://tansu/ \
      >"$DIR/tansu.log" 2>&1 < /dev/null &
    echo $! > "$DIR/tansu.pid"
    python3 "$ROOT/scripts/kafka-wait.py" "127.0.0.1:$PORT" --timeout "$TIMEOUT" \
      || { tail -n 20 "$DIR/tansu.log" >&2; exit 1; }
  fi
  local existing; existing=$("$TANSU" topic list --broker "tcp://127.0.0.1:$PORT" 2>/dev/null || true)
  for t in $TOPICS; do
    if ! grep -qw -- "$t" <<<"$existing"; then
      "$TANSU" topic create --broker "tcp://127.0.0.1:$PORT" --partitions "$PARTITIONS" "$t" >/dev/null
    fi
  done
  wait_ready
  log "ready: 127.0.0.1:$PORT, topics: $TOPICS ($PARTITIONS partitions each)"
}

stop_tansu() {
  if [ -f "$DIR/tansu.pid" ]; then
    local pid; pid=$(cat "$DIR/tansu.pid")
    if kill -0 "$pid" 2>/dev/null; then
      # Tansu ignores SIGTERM/SIGINT; its storage is in memory, so SIGKILL loses nothing.
      kill -9 "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "stopped Tansu (pid $pid)"
    fi
    rm -f "$DIR/tansu.pid"
  else
    log "no Tansu started from here"
  fi
}

case "${1:-}" in
  start)
    if docker_engine; then
      log "Docker engine found: starting Apache Kafka from compose.yaml"
      # Kafka alone is waited for (--wait on a one-shot service fails once it exits 0,
      # docker/compose#10596; Compose v1 has no --wait: kafka-wait.py waits instead), then
      # the topics are created by the one-shot kafka-init, run to completion.
      if docker compose version >/dev/null 2>&1; then
        PARTITIONS="$PARTITIONS" compose up -d --wait kafka
      else
        PARTITIONS="$PARTITIONS" compose up -d kafka
      fi
      python3 "$ROOT/scripts/kafka-wait.py" "127.0.0.1:$PORT" --timeout "$TIMEOUT"
      PARTITIONS="$PARTITIONS" compose run --rm kafka-init
      wait_ready
      log "ready: 127.0.0.1:$PORT"
    else
      start_tansu
    fi ;;
  stop)
    if docker_engine && [ ! -f "$DIR/tansu.pid" ]; then compose down; else stop_tansu; fi ;;
  status)
    if python3 "$ROOT/scripts/kafka-wait.py" "127.0.0.1:$PORT" --timeout 0; then log "broker answers on 127.0.0.1:$PORT"
    else exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
