#!/usr/bin/env bash
# make bench: Genetika's whole pipeline against the original Python design (bench/baseline)
# and against kcat, on the same generated spreadsheets, each with a fresh local broker.
# Installs what it needs first: the release build, a project-local venv with the baseline's
# packages (.deps/bench-venv), Debian's kcat (run on the librdkafka 2.8.0 that make deps
# builds, since kcat's own 2.0.2 cannot talk to modern brokers).
# Environment: ROWS (100000 per spreadsheet), LARGE_ROWS (1000000: the cost-per-row-against-N run), REPEAT (3 runs of each flat-out size, medians reported), PACED_ROWS (20000), RATE (1000 events/s per
# topic), SKIP_BASELINE=1, BROKER (tansu), BENCH_ONLY=postgres (only the PostgreSQL section and the
# SQLite runs it compares with) or BENCH_ONLY=failover (only the failover section). Writes docs/benchmarks.md unless NO_DOCS=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.deps/bench-venv"
BASELINE_PACKAGES=("pandas==3.1.1" "openpyxl==3.1.5" "sqlalchemy==2.1.9" "confluent-kafka==2.16.1")
log() { printf '[bench] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

scripts/install-deps.sh
if ! command -v kcat >/dev/null; then
  log "installing Debian's kcat"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends kcat >/dev/null
fi
LD_LIBRARY_PATH="$ROOT/.deps/librdkafka/shared" kcat -V | grep -q "librdkafka 2\.[1-9]" \
  || { log "kcat does not run on librdkafka >= 2.1 from .deps/librdkafka/shared"; exit 1; }
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pandas, openpyxl, sqlalchemy, confluent_kafka" 2>/dev/null; then
  log "installing the baseline's packages into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "${BASELINE_PACKAGES[@]}"
fi
swift build -c release --product genetika >/dev/null
swift build -c release --product genetika-dataset >/dev/null
GENETIKA="$(swift build -c release --show-bin-path)/genetika"
"$GENETIKA" version

args=(--genetika "$GENETIKA" --venv "$VENV" --rows "${ROWS:-100000}" --large-rows "${LARGE_ROWS:-1000000}" --paced-rows "${PACED_ROWS:-20000}" --rate "${RATE:-1000}" --repeat "${REPEAT:-3}")
[ "${SKIP_BASELINE:-0}" = "1" ] && args+=(--skip-baseline)
docs=()
[ "${NO_DOCS:-0}" = "1" ] || docs=(--write-docs)
# Failover: 3 members on 12 partitions, one SIGKILLed after 3 x 100,000 and 3 x 1,000,000 rows.
failover=("$VENV/bin/python" bench/failover.py --genetika "$GENETIKA" --rows "${ROWS:-100000}" "${LARGE_ROWS:-1000000}" "${docs[@]}")
case "${BENCH_ONLY:-all}" in
  all) python3 bench/bench.py "${args[@]}" "${docs[@]}"; exec "${failover[@]}" ;;
  postgres) exec python3 bench/bench.py "${args[@]}" "${docs[@]}" --only postgres ;;
  failover) exec "${failover[@]}" ;;
  *) log "BENCH_ONLY=${BENCH_ONLY}: expected postgres or failover"; exit 2 ;;
esac
