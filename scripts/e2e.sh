#!/usr/bin/env bash
# make e2e: the whole pipeline against a fresh local broker, checked end to end.
#  1. Seed run: Fixtures/sim_file1..3.xlsx; exactly 50 rows in each of data1..3 whose values
#     equal the spreadsheets', exactly 50 acks with distinct ids, none before the latest of
#     its three topic events.
#  2. Crash run: a generated 3 x ROWS dataset (20,000). The producer runs once, to
#     completion, in its own process; then the DB and acker stages (`--stages db,acker`) are
#     killed with SIGKILL at random moments mid-stream — the first while rows are written,
#     the others while acks go out; each kill is checked to have landed before the end — and
#     restarted each time, so only their stored offsets and state can bring them to the end. Then every value of every table is compared with the
#     generated spreadsheets as openpyxl reads them, and each id must have exactly one ack.
#  3. Inbox run: the pipeline started on three empty inbox folders (no files configured);
#     the seed files and a corrupt file are moved in; the tables must equal the seed's, every
#     id acked once, the corrupt file in inbox1/failed/ with its reason, `genetika files`
#     listing 3 files done and 1 failed, and SIGTERM must stop it with status 0.
# Environment: ROWS (20000), KILLS (3), E2E_SEED (random), KEEP=1 keeps the work directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROWS="${ROWS:-20000}"
KILLS="${KILLS:-3}"
SEED="${E2E_SEED:-$RANDOM}"
WORK="$(mktemp -d /tmp/genetika-e2e.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export BROKER=tansu BROKER_PORT="$PORT" BROKER_DIR="$WORK/broker"
log() { printf '[e2e] %s\n' "$*"; }

cleanup() {
  scripts/broker.sh stop >/dev/null 2>&1 || true
  if [ -n "${pid:-}" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = "1" ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

swift build --product genetika >/dev/null
swift build --product genetika-dataset >/dev/null
GENETIKA="$(swift build --show-bin-path)/genetika"
"$GENETIKA" version

# A configuration like config.json, pointed at this run's broker, files and state.
make_config() {  # out, data directory, state directory
  python3 - "$ROOT/config.json" "$1" "$2" "$3" "$PORT" <<'PY'
import json, sys
src, out, data, state, port = sys.argv[1:]
config = json.load(open(src))
config["kafka"]["bootstrapServers"] = f"127.0.0.1:{port}"
for source in config["sources"]:
    source["file"] = f"{data}/{source['file'].split('/')[-1]}"
config["database"]["url"] = f"sqlite://{state}/genetika.db"
config["stateDirectory"] = state
config["observability"]["port"] = 0  # no fixed port
json.dump(config, open(out, "w"), indent=2)
PY
}

# ---- 1. seed run ------------------------------------------------------------------------
log "seed run: fresh Tansu on 127.0.0.1:$PORT"
scripts/broker.sh start
make_config "$WORK/seed.json" "$ROOT/Fixtures" "$WORK/seed-state"
timeout 300 "$GENETIKA" run --config "$WORK/seed.json" --exit-when-done 2> "$WORK/seed-run.log" \
  || { tail -n 40 "$WORK/seed-run.log"; exit 1; }
grep -E "totals" "$WORK/seed-run.log" | sed 's/^/[e2e]   /'
"$GENETIKA" report --config "$WORK/seed.json" --out "$WORK/seed-report" | sed 's/^/[e2e]   /'
python3 scripts/e2e_check.py seed --config "$WORK/seed.json" --database "$WORK/seed-state/genetika.db" \
  --summary "$WORK/seed-report/summary.json" --fixtures "$ROOT/Fixtures" --rows 50

# ---- 1b. a configuration written by genetika init ----------------------------------------
# From the shared spreadsheets (written by openpyxl and XlsxWriter, not by Genetika): init's
# configuration passes check-config and validate, and a run with it stores exactly the values
# openpyxl reads (their NAME.expected.json), as the hand-written config.json does.
SHARED="$ROOT/../shared/xlsx"
if [ -f "$SHARED/sim_file1.xlsx" ]; then
  log "init run: genetika init on $SHARED/sim_file1..3.xlsx"
  scripts/broker.sh stop >/dev/null
  scripts/broker.sh start
  "$GENETIKA" init "$SHARED/sim_file1.xlsx" "$SHARED/sim_file2.xlsx" "$SHARED/sim_file3.xlsx" --out "$WORK/init.json" \
    --bootstrap-servers "127.0.0.1:$PORT" --database "sqlite://$WORK/init-state/genetika.db" | sed 's/^/[e2e]   /'
  python3 - "$WORK/init.json" "$WORK/init-state" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["stateDirectory"] = sys.argv[2]
config["observability"] = {"port": 0}  # no fixed port
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
  "$GENETIKA" check-config --config "$WORK/init.json" >/dev/null
  "$GENETIKA" validate --config "$WORK/init.json" | sed 's/^/[e2e]   /'
  timeout 300 "$GENETIKA" run --config "$WORK/init.json" --exit-when-done 2> "$WORK/init-run.log" \
    || { tail -n 40 "$WORK/init-run.log"; exit 1; }
  "$GENETIKA" report --config "$WORK/init.json" --out "$WORK/init-report" >/dev/null
  python3 scripts/e2e_check.py seed --config "$WORK/init.json" --database "$WORK/init-state/genetika.db" \
    --summary "$WORK/init-report/summary.json" --fixtures "$SHARED" --rows 50
elif [ "${CI:-}" = "true" ]; then
  log "FAIL: $SHARED is missing (CI lays ../shared beside the clone)"; exit 1
else
  log "init run skipped: no $SHARED (../shared beside the repository)"
fi

# ---- 2. crash run -----------------------------------------------------------------------
log "crash run: $ROWS rows per file, $KILLS kills with SIGKILL (seed $SEED)"
scripts/broker.sh stop >/dev/null
scripts/broker.sh start
"$(dirname "$GENETIKA")/genetika-dataset" --rows "$ROWS" --out "$WORK/crash-data" --seed "$SEED" >/dev/null
make_config "$WORK/crash.json" "$WORK/crash-data" "$WORK/crash-state"
# Smaller batches: more commits, so kills land between them rather than after the last one.
python3 - "$WORK/crash.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["stages"]["db"]["batchSize"] = 1000
config["stages"]["acker"]["batchSize"] = 1000
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
# The producer once, to completion: what the stages below reach, they reach from the topics.
timeout 300 "$GENETIKA" run --config "$WORK/crash.json" --stages producer --exit-when-done 2>> "$WORK/crash-run.log" \
  || { tail -n 40 "$WORK/crash-run.log"; exit 1; }
written() {
  sqlite3 "$WORK/crash-state/genetika.db" "select (select count(*) from data1)+(select count(*) from data2)+(select count(*) from data3)" 2>/dev/null || echo 0
}
acked() { sqlite3 "$WORK/crash-state/acker.db" "select count(*) from acker_acked" 2>/dev/null || echo 0; }
for kill in $(seq 1 "$KILLS"); do
  # Kill 1 lands at a random point of the DB stage's writing; the later ones at random points
  # of the acker's acking (k-th slice of the ids), so both stages' recovery is exercised
  # whatever the machine's speed.
  if [ "$kill" -eq 1 ]; then
    what=written; total=$((3 * ROWS))
    target=$(python3 -c "import random; random.seed($SEED * 10 + 1); print(int($total * random.uniform(0.05, 0.5)))")
  else
    what=acked; total=$ROWS
    # (below 75%: the acker records 1,000 ids per batch, so a kill aimed later could find them all done)
    target=$(python3 -c "import random; random.seed($SEED * 10 + $kill); k=$kill - 1; n=max($KILLS - 1, 1); print(int($total * random.uniform((k - 1) / n * 0.7 + 0.05, k / n * 0.7)))")
  fi
  "$GENETIKA" run --config "$WORK/crash.json" --stages db,acker 2>> "$WORK/crash-run.log" &
  pid=$!
  deadline=$((SECONDS + 300))
  while [ "$($what)" -lt "$target" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$WORK/crash-run.log"; log "genetika exited before the kill"; exit 1; }
    [ $SECONDS -lt $deadline ] || { log "no progress to $target $what within 300 s"; exit 1; }
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  at_written=$(written); at_acked=$(acked)
  log "  kill $kill (SIGKILL, aimed at $target $what) at $at_written of $((3 * ROWS)) rows written, $at_acked of $ROWS ids acked"
  if [ "$what" = written ]; then
    [ "$at_written" -lt $((3 * ROWS)) ] || { log "FAIL: kill $kill landed after every row was written"; exit 1; }
  fi
  [ "$at_acked" -lt "$ROWS" ] || { log "FAIL: kill $kill landed after every id was acked"; exit 1; }
done
timeout 900 "$GENETIKA" run --config "$WORK/crash.json" --stages db,acker --exit-when-done 2>> "$WORK/crash-run.log" \
  || { tail -n 40 "$WORK/crash-run.log"; exit 1; }
grep -E "totals" "$WORK/crash-run.log" | tail -n 1 | sed 's/^/[e2e]   /'
log "  acks found already sent after a crash (read back, not re-sent): $(grep -c "were sent but not recorded" "$WORK/crash-run.log" || true) partition read-backs"
"$GENETIKA" report --config "$WORK/crash.json" --out "$WORK/crash-report" | sed 's/^/[e2e]   /'
# openpyxl reads the generated spreadsheets for the expected values (an independent reader).
VENV="$ROOT/.deps/e2e-venv"
[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import openpyxl' 2>/dev/null \
  || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet openpyxl; }
PYTHONWARNINGS=ignore "$VENV/bin/python" scripts/e2e_check.py crash --config "$WORK/crash.json" --database "$WORK/crash-state/genetika.db" \
  --summary "$WORK/crash-report/summary.json" --rows "$ROWS" --spreadsheets "$WORK/crash-data"

# ---- 3. inbox run -----------------------------------------------------------------------
log "inbox run: the pipeline on empty inboxes; the seed files and a corrupt one are dropped in"
scripts/broker.sh stop >/dev/null
scripts/broker.sh start
make_config "$WORK/inbox.json" "$ROOT/Fixtures" "$WORK/inbox-state"
python3 - "$WORK/inbox.json" "$WORK/inbox" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
for number, source in enumerate(config["sources"], 1):
    source["file"] = None
    source["inbox"] = f"{sys.argv[2]}{number}"
json.dump(config, open(sys.argv[1], "w"), indent=2)
PY
"$GENETIKA" run --config "$WORK/inbox.json" 2> "$WORK/inbox-run.log" &
pid=$!
deadline=$((SECONDS + 120))
until [ -d "$WORK/inbox3/done" ]; do
  kill -0 "$pid" 2>/dev/null || { tail -n 40 "$WORK/inbox-run.log"; log "genetika exited"; exit 1; }
  [ $SECONDS -lt $deadline ] || { log "FAIL: the inbox folders were not created"; exit 1; }
  sleep 0.2
done
mkdir -p "$WORK/staging"
printf 'not a spreadsheet\n' > "$WORK/staging/corrupt.xlsx"
mv "$WORK/staging/corrupt.xlsx" "$WORK/inbox1/"
for number in 1 2 3; do
  cp "$ROOT/Fixtures/sim_file$number.xlsx" "$WORK/staging/"
  mv "$WORK/staging/sim_file$number.xlsx" "$WORK/inbox$number/"
done
acked_inbox() { sqlite3 "$WORK/inbox-state/acker.db" "select count(*) from acker_acked" 2>/dev/null || echo 0; }
deadline=$((SECONDS + 180))
until [ "$(acked_inbox)" -ge 50 ] && [ -f "$WORK/inbox3/done/sim_file3.xlsx" ]; do
  kill -0 "$pid" 2>/dev/null || { tail -n 40 "$WORK/inbox-run.log"; log "genetika exited"; exit 1; }
  [ $SECONDS -lt $deadline ] || { tail -n 40 "$WORK/inbox-run.log"; log "FAIL: 50 ids not acked within 180 s"; exit 1; }
  sleep 0.2
done
kill -TERM "$pid"
wait "$pid" || { tail -n 40 "$WORK/inbox-run.log"; log "FAIL: genetika did not stop cleanly on SIGTERM"; exit 1; }
pid=""
"$GENETIKA" files --config "$WORK/inbox.json" | sed 's/^/[e2e]   /'
"$GENETIKA" files --config "$WORK/inbox.json" --json > "$WORK/inbox-files.json"
"$GENETIKA" report --config "$WORK/inbox.json" --out "$WORK/inbox-report" | sed 's/^/[e2e]   /'
python3 scripts/e2e_check.py seed --config "$WORK/inbox.json" --database "$WORK/inbox-state/genetika.db" \
  --summary "$WORK/inbox-report/summary.json" --fixtures "$ROOT/Fixtures" --rows 50
python3 - "$WORK" <<'PY'
import json, os, sys
work = sys.argv[1]
records = json.load(open(f"{work}/inbox-files.json"))
failures = []
statuses = sorted((os.path.basename(r["path"]), r["status"], r["rows_sent"]) for r in records)
if statuses != [("corrupt.xlsx", "failed", 0), ("sim_file1.xlsx", "done", 50), ("sim_file2.xlsx", "done", 50), ("sim_file3.xlsx", "done", 50)]:
    failures.append(f"genetika files: {statuses}")
if not os.path.exists(f"{work}/inbox1/failed/corrupt.xlsx"):
    failures.append("corrupt.xlsx is not in inbox1/failed/")
reason = open(f"{work}/inbox1/failed/corrupt.xlsx.error.txt").read() if os.path.exists(f"{work}/inbox1/failed/corrupt.xlsx.error.txt") else ""
if "corrupt.xlsx" not in reason:
    failures.append(f"corrupt.xlsx.error.txt does not name the file: {reason!r}")
for number in (1, 2, 3):
    if not os.path.exists(f"{work}/inbox{number}/done/sim_file{number}.xlsx"):
        failures.append(f"sim_file{number}.xlsx is not in inbox{number}/done/")
    if any(name.endswith(".xlsx") for name in os.listdir(f"{work}/inbox{number}")):
        failures.append(f"inbox{number} still holds files: {os.listdir(f'{work}/inbox{number}')}")
for failure in failures:
    print(f"[e2e] FAIL: {failure}")
if failures:
    sys.exit(1)
print("[e2e]   inbox: 3 files done, corrupt.xlsx in failed/ with its reason; tables and acks exact")
PY
log "passed"
