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
GENETIKA="$(swift build --show-bin-path)/genetika"
scripts/broker.sh start
scripts/postgres.sh start
PG_URL="$(scripts/postgres.sh url)"
"$GENETIKA" generate --rows "$ROWS" --out "$WORK/data" >/dev/null

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
# Both members must hold partitions before the stream starts.
deadline=$((SECONDS + 120))
until grep -q "db assigned" "$WORK/a.log" && grep -q "db assigned" "$WORK/b.log"; do
  [ $SECONDS -lt $deadline ] || { tail -n 20 "$WORK/a.log" "$WORK/b.log"; log "both processes did not get partitions"; exit 1; }
  sleep 0.2
done
sleep 3  # let the group settle on its two-member assignment
log "A: $(grep "db assigned" "$WORK/a.log" | tail -n1 | sed 's/.*db assigned //')"
log "B: $(grep "db assigned" "$WORK/b.log" | tail -n1 | sed 's/.*db assigned //')"
a_parts=$(grep "db assigned" "$WORK/a.log" | tail -n1 | grep -o "topic[0-9]\[[0-9]*\]" | wc -l)
b_parts=$(grep "db assigned" "$WORK/b.log" | tail -n1 | grep -o "topic[0-9]\[[0-9]*\]" | wc -l)
[ "$a_parts" -gt 0 ] && [ "$b_parts" -gt 0 ] && [ $((a_parts + b_parts)) -eq 9 ] \
  || { log "expected the 9 source partitions split between A and B, found $a_parts + $b_parts"; exit 1; }

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
until "$GENETIKA" report --config "$WORK/b.json" --out "$WORK/report" > "$WORK/report.txt" 2>/dev/null && \
      python3 -c "import json,sys; s=json.load(open('$WORK/report/summary.json')); sys.exit(0 if s['acked_ids'] >= $ROWS else 1)"; do
  [ $SECONDS -lt $deadline ] || { cat "$WORK/report.txt"; log "acks incomplete"; exit 1; }
  sleep 2
done
kill -TERM "$B"; wait "$B" || { log "B did not stop cleanly"; exit 1; }
sed 's/^/[scale-out]   /' "$WORK/report.txt"
python3 - "$WORK/report/summary.json" "$ROWS" <<'PY'
import json, sys
summary, rows = json.load(open(sys.argv[1])), int(sys.argv[2])
problems = []
if summary["acks"] != rows: problems.append(f"{summary['acks']} acks for {rows} ids")
if summary["duplicate_acks"]: problems.append(f"duplicate acks: {summary['duplicate_acks'][:10]}")
if summary["missing_ack"]: problems.append(f"missing acks: {summary['missing_ack'][:10]}")
if problems:
    print("[scale-out] FAIL: " + "; ".join(problems), file=sys.stderr); sys.exit(1)
PY
for table in data1 data2 data3; do
  read -r count distinct <<<"$(psql "$PG_URL" -Atc "select count(*), count(distinct id) from $table" | tr '|' ' ')"
  [ "$count" -eq "$ROWS" ] && [ "$distinct" -eq "$ROWS" ] || { log "FAIL: $table has $count rows ($distinct distinct ids)"; exit 1; }
  log "  $table: $count rows, no duplicates"
done
log "passed: both processes held partitions; after A was killed, B finished with exact counts and one ack per id"
