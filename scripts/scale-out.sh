#!/usr/bin/env bash
# make scale-out: two genetika processes run the DB and acker stages in the same consumer
# groups against one broker and one PostgreSQL, over 3 x ROWS rows (20,000). Both must get
# partitions; then one is killed (SIGKILL) mid-stream and the other must take over:
# exact row counts, no duplicate row, exactly one ack per id.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROWS="${ROWS:-20000}"
WORK="$(mktemp -d /tmp/genetika-scale.XXXXXX)"
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export BROKER=tansu BROKER_PORT="$(free_port)" BROKER_DIR="$WORK/broker"
export PG_DIR="$WORK/pg" PG_PORT="$(free_port)"
log() { printf '[scale-out] %s\n' "$*"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  scripts/broker.sh stop >/dev/null 2>&1 || true
  scripts/postgres.sh stop >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" = "1" ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

swift build --product genetika >/dev/null
swift build --product genetika-dataset >/dev/null
GENETIKA="$(swift build --show-bin-path)/genetika"
scripts/broker.sh start
scripts/postgres.sh start
PG_URL="$(scripts/postgres.sh url)"
"$(dirname "$GENETIKA")/genetika-dataset" --rows "$ROWS" --out "$WORK/data" >/dev/null

make_config() {  # out, state directory
  python3 - "$ROOT/config.json" "$1" "$WORK/data" "$2" "$BROKER_PORT" "$PG_URL" <<'PY'
import json, sys
src, out, data, state, port, url = sys.argv[1:]
config = json.load(open(src))
config["kafka"]["bootstrapServers"] = f"127.0.0.1:{port}"
for source in config["sources"]:
    source["file"] = f"{data}/{source['file'].split('/')[-1]}"
config["database"]["url"] = url
config["stateDirectory"] = state
config["observability"]["port"] = 0
json.dump(config, open(out, "w"), indent=2)
PY
}
make_config "$WORK/a.json" "$WORK/state-a"
make_config "$WORK/b.json" "$WORK/state-b"
psql_count() { psql "$PG_URL" -Atc "select (select count(*) from data1)+(select count(*) from data2)+(select count(*) from data3)" 2>/dev/null || echo 0; }

log "starting processes A and B (db + acker) in the same groups"
"$GENETIKA" run --config "$WORK/a.json" --stages db,acker 2> "$WORK/a.log" & pids+=($!); A=$!
"$GENETIKA" run --config "$WORK/b.json" --stages db,acker 2> "$WORK/b.log" & pids+=($!); B=$!
# Both members must hold partitions of both groups before the stream starts. The group has
# settled once each stage's latest assignments in A and B together cover the 9 source
# partitions, each member with some (no fixed sleep).
latest_parts() {  # log, stage: the partitions of that stage's latest "assigned" line
  grep "$2 assigned" "$1" | tail -n1 | grep -o "topic[0-9]\[[0-9]*\]" || true
}
split_ok() {  # stage
  local a b; a=$(latest_parts "$WORK/a.log" "$1"); b=$(latest_parts "$WORK/b.log" "$1")
  [ -n "$a" ] && [ -n "$b" ] && [ "$(printf '%s\n%s\n' "$a" "$b" | sort -u | wc -l)" -eq 9 ] \
    && [ "$(printf '%s\n%s\n' "$a" "$b" | wc -l)" -eq 9 ]
}
deadline=$((SECONDS + 120))
until split_ok db && split_ok acker; do
  [ $SECONDS -lt $deadline ] || { tail -n 20 "$WORK/a.log" "$WORK/b.log"; log "the db and acker groups were not split between A and B"; exit 1; }
  sleep 0.2
done
for stage in db acker; do
  log "$stage: A $(latest_parts "$WORK/a.log" $stage | tr '\n' ' ')| B $(latest_parts "$WORK/b.log" $stage | tr '\n' ' ')"
done

log "producing 3 x $ROWS rows"
"$GENETIKA" run --config "$WORK/a.json" --stages producer --exit-when-done 2> "$WORK/producer.log" & producer=$!; pids+=($producer)
target=$(python3 -c "import random; print(int(3 * $ROWS * random.uniform(0.2, 0.6)))")
deadline=$((SECONDS + 300))
while [ "$(psql_count)" -lt "$target" ]; do
  [ $SECONDS -lt $deadline ] || { log "no progress to $target rows"; exit 1; }
  sleep 0.1
done
kill -9 "$A"
log "killed A (SIGKILL) at $(psql_count) of $((3 * ROWS)) rows written"

deadline=$((SECONDS + 600))
until [ "$(psql_count)" -eq $((3 * ROWS)) ]; do
  kill -0 "$B" 2>/dev/null || { tail -n 30 "$WORK/b.log"; log "B died"; exit 1; }
  [ $SECONDS -lt $deadline ] || { tail -n 30 "$WORK/b.log"; log "B did not finish the rows: $(psql_count)"; exit 1; }
  sleep 0.5
done
wait "$producer" || { tail -n 20 "$WORK/producer.log"; log "the producer failed"; exit 1; }
log "all rows written; B took over: $(grep "db assigned" "$WORK/b.log" | tail -n1 | sed 's/.*db assigned //')"
# B owns every partition now: the shared acker state (PostgreSQL) knows each ack.
until [ "$(psql "$PG_URL" -Atc "select count(*) from genetika_acker_ids where acked" 2>/dev/null || echo 0)" -ge "$ROWS" ]; do
  [ $SECONDS -lt $deadline ] || { tail -n 30 "$WORK/b.log"; log "acks incomplete"; exit 1; }
  sleep 1
done
kill -TERM "$B"; wait "$B" || { log "B did not stop cleanly"; exit 1; }
# The report is taken after B stopped, so that a late duplicate ack would be in it.
"$GENETIKA" report --config "$WORK/b.json" --out "$WORK/report" > "$WORK/report.txt"
sed 's/^/[scale-out]   /' "$WORK/report.txt"
python3 scripts/e2e_check.py acks --summary "$WORK/report/summary.json" --rows "$ROWS" || { log "FAIL: the acks above"; exit 1; }
for table in data1 data2 data3; do
  read -r count low high <<<"$(psql "$PG_URL" -Atc "select count(*), min(id), max(id) from $table" | tr '|' ' ')"
  [ "$count" -eq "$ROWS" ] && [ "$low" -eq 1 ] && [ "$high" -eq "$ROWS" ] || { log "FAIL: $table has $count rows, ids $low..$high"; exit 1; }
  log "  $table: $count rows, ids 1..$ROWS"
done
log "passed: both processes held partitions of both groups; after A was killed, B finished with exact counts and one ack per id"
