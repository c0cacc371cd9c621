#!/usr/bin/env bash
# make bench: keywatch replay beside zcat and DuckDB on the same generated corpus, same run.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
CORPUS=bench/corpus/$RECORDS
VENV=bench/.venv
if [ ! -d "$CORPUS" ]; then python3 bench/gen.py "$CORPUS" "$RECORDS"; fi
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV" && "$VENV/bin/pip" install -q duckdb; fi
FILES=$(ls "$CORPUS" | wc -l)
BYTES=$(du -sb "$CORPUS" | cut -f1)

measure() { # name, command...: prints seconds, peak RSS (KiB), user and system CPU seconds;
  # output goes to /dev/null
  # so that no tool pays for writing what it prints (zcat prints 1.2 GB).
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%M %U %S' -o "bench/corpus/$name.rss" "$@" > /dev/null 2> "bench/corpus/$name.err" \
    || { echo "$name failed:" >&2; cat "bench/corpus/$name.err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$name $(echo "$end - $start" | bc) $(tail -1 "bench/corpus/$name.rss")"
}

# Every tool reads the corpus from the page cache: the first measured must not pay for the disk.
cat "$CORPUS"/* > /dev/null
# ROUNDS rounds, the tools taking turns within each, so that a slow minute of a shared
# machine falls on all of them; each tool's figures are those of its median round (by time).
export ROUNDS=${ROUNDS:-3}
median() { sort -k2,2n | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
KW_RUNS="" KWM_RUNS="" ZC_RUNS="" DQ_RUNS=""
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  rm -f bench/corpus/bench.db*
  KW_RUNS+="$(measure keywatch ./target/release/keywatch replay --db bench/corpus/bench.db --as-of 2026-12-01T00:00:00Z --format json "$CORPUS")"$'\n'
  KWM_RUNS+="$(measure keywatch-in-memory ./target/release/keywatch replay --in-memory --as-of 2026-12-01T00:00:00Z --format json "$CORPUS")"$'\n'
  ZC_RUNS+="$(measure zcat sh -c "zcat $CORPUS/*.json.gz")"$'\n'
  DQ_RUNS+="$(measure duckdb "$VENV/bin/python" bench/duckdb_query.py "$CORPUS")"$'\n'
done
for runs in "$KW_RUNS" "$KWM_RUNS" "$ZC_RUNS" "$DQ_RUNS"; do printf '%s' "$runs" | awk '{print "  " $1 " " $2 " s"}' >&2; done
KW=$(printf '%s' "$KW_RUNS" | median)
KWM=$(printf '%s' "$KWM_RUNS" | median)
ZC=$(printf '%s' "$ZC_RUNS" | median)
DQ=$(printf '%s' "$DQ_RUNS" | median)

# Memory as the input grows: the same replay on SCALE times the corpus (generated alike).
SCALE=${SCALE:-10}
BIG=bench/corpus/$((RECORDS * SCALE))
if [ ! -d "$BIG" ]; then python3 bench/gen.py "$BIG" $((RECORDS * SCALE)); fi
rm -f bench/corpus/big.db*
KWB=$(measure "keywatch-${SCALE}x" ./target/release/keywatch replay --db bench/corpus/big.db --as-of 2026-12-01T00:00:00Z --format json "$BIG")
STORE=$(du -cb bench/corpus/bench.db* | tail -1 | cut -f1)

python3 - "$RECORDS" "$FILES" "$BYTES" "$SCALE" "$STORE" "$KWB" "$KWM" "$KW" "$ZC" "$DQ" <<'PY'
import sys
records, files, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
scale, store = int(sys.argv[4]), int(sys.argv[5])
big = sys.argv[6].split()
in_memory = sys.argv[7].split()
rows = [s.split() for s in sys.argv[8:]]
base = {r[0]: float(r[1]) for r in rows}
print(f"corpus: {records:,} records in {files} files, {size/2**20:.0f} MiB gzip")
print(f"each tool: its median of {__import__('os').environ.get('ROUNDS', '3')} rounds, taken in turns")
print(f"{'tool':<18} {'seconds':>8} {'records/s':>12} {'peak RSS':>10} {'cores busy':>10}  ratio to keywatch")
for name, secs, rss, user, system in rows + [in_memory]:
    secs = float(secs)
    cores = (float(user) + float(system)) / secs
    print(f"{name:<18} {secs:8.2f} {records/secs:12,.0f} {int(rss)/1024:8.0f} MiB {cores:10.2f}  {secs/base['keywatch']:.2f}x")
print(f"keywatch vs zcat: {base['zcat']/base['keywatch']:.2f} (>= 1 means keywatch is no slower than zcat alone)")
print(f"keywatch vs DuckDB: {base['duckdb']/base['keywatch']:.2f}x faster")
rss1 = int(rows[0][2]) / 1024
rssn = int(big[2]) / 1024
print(f"peak RSS of replay: {rss1:.0f} MiB for {records:,} records, {rssn:.0f} MiB for {records*scale:,} "
      f"({scale}x the input): {rssn/rss1:.2f}x the memory (1.00 is flat; aim <= 200 MiB at both sizes)")
print(f"peak RSS of replay --in-memory: {int(in_memory[2])/1024:.0f} MiB (aim <= 200 MiB)")
kw = rows[0]
print(f"CPU use of replay: {(float(kw[3]) + float(kw[4])) / float(kw[1]):.2f} of {__import__('os').cpu_count()} cores (aim: all busy)")
print(f"store on disk: {store/2**20:.0f} MiB for {size/2**20:.0f} MiB of gzip input ({store/size:.2f}x; aim <= 0.50x)")
PY

# Produce-to-page latency with the real broker (tansu) and moto, beside the broker alone.
bash bench/latency.sh
