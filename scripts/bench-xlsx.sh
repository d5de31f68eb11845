#!/usr/bin/env bash
# make bench-xlsx: Genetika's xlsx reader side by side with python-calamine and openpyxl
# (read-only) on the same generated sheet, in the same run. Reports rows/s and peak RSS and
# writes them to docs/benchmarks.md. ROWS (1000000) sets the sheet size.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROWS="${ROWS:-1000000}"
VENV="$ROOT/.deps/bench-venv"
DATA="$ROOT/.bench/xlsx-$ROWS"
FILE="$DATA/sim_file1.xlsx"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import python_calamine, openpyxl" 2>/dev/null; then
  echo "[bench-xlsx] installing python-calamine and openpyxl into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "python-calamine==0.9.1" "openpyxl==3.1.5"
fi
swift build -c release --product genetika >/dev/null
swift build -c release --product genetika-dataset >/dev/null
GENETIKA="$(swift build -c release --show-bin-path)/genetika"
if [ ! -f "$FILE" ]; then
  echo "[bench-xlsx] generating $ROWS rows x 8 columns"
  "$(dirname "$GENETIKA")/genetika-dataset" --rows "$ROWS" --files 1 --out "$DATA" >/dev/null
fi

measure() {  # name, command...: prints "name rows seconds rows/s peakKB"
  local name=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -v "$@" > "$log.out" 2> "$log"
  local line; line=$(grep rows_per_second "$log.out")
  local rss; rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  local rows seconds rate
  rows=$(sed -E 's/.*rows=([0-9]+).*/\1/' <<<"$line")
  seconds=$(sed -E 's/.*seconds=([0-9.]+).*/\1/' <<<"$line")
  rate=$(sed -E 's/.*rows_per_second=([0-9]+).*/\1/' <<<"$line")
  rm -f "$log" "$log.out"
  echo "$name $rows $seconds $rate $rss"
}

echo "[bench-xlsx] reading $FILE ($(du -h "$FILE" | cut -f1))"
results=()
results+=("$(measure genetika "$GENETIKA" inspect --count "$FILE")")
results+=("$(measure python-calamine "$VENV/bin/python" bench/xlsx/read_calamine.py "$FILE")")
results+=("$(measure openpyxl-read-only "$VENV/bin/python" bench/xlsx/read_openpyxl.py "$FILE")")

genetika_rate=$(awk '{print $4}' <<<"${results[0]}")
table="| reader | rows | seconds | rows/s | peak RSS (MB) | Genetika's speed-up |
|---|---:|---:|---:|---:|---:|"
for r in "${results[@]}"; do
  read -r name rows seconds rate rss <<<"$r"
  ratio=$(awk -v g="$genetika_rate" -v o="$rate" 'BEGIN { printf "%.2f×", g / o }')
  table+=$'\n'"| $name | $rows | $seconds | $rate | $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') | $ratio |"
done
echo "$table"

machine="$(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
section="<!-- bench-xlsx:start -->
### xlsx reader (\`make bench-xlsx\`)

One sheet of $ROWS rows × 8 columns (the seed's \`intake\` columns: integers, shared
strings, floats with some \`NA\`, dates) written by \`genetika-dataset\`, read to the end by
each reader in the same run. Measured $(date -u +%Y-%m-%d) on $machine.
Reproduce: \`make bench-xlsx\` (\`ROWS=N make bench-xlsx\` for another size).

$table

Peak RSS is the whole process (\`/usr/bin/time -v\`), the Python interpreter included for
the Python readers. Targets: faster than python-calamine; under 64 MB beyond the
shared-strings table (this sheet's table holds a handful of strings).
<!-- bench-xlsx:end -->"
python3 - "$ROOT/docs/benchmarks.md" "$section" <<'PY'
import pathlib, re, sys
path, section = pathlib.Path(sys.argv[1]), sys.argv[2]
text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures are written by the benchmark scripts; each section says how to reproduce it.\n"
pattern = re.compile(r"<!-- bench-xlsx:start -->.*?<!-- bench-xlsx:end -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
path.write_text(text)
PY
echo "[bench-xlsx] written to docs/benchmarks.md"
