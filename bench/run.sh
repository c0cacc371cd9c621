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

measure() { # name, command...: prints seconds and peak RSS (KiB); output goes to /dev/null
  # so that no tool pays for writing what it prints (zcat prints 1.2 GB).
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "bench/corpus/$name.rss" "$@" > /dev/null 2> "bench/corpus/$name.err" \
    || { echo "$name failed:" >&2; cat "bench/corpus/$name.err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$name $(echo "$end - $start" | bc) $(tail -1 "bench/corpus/$name.rss")"
}

rm -f bench/corpus/bench.db*
KW=$(measure keywatch ./target/release/keywatch replay --db bench/corpus/bench.db --as-of 2026-12-01T00:00:00Z --format json "$CORPUS")
ZC=$(measure zcat sh -c "zcat $CORPUS/*.json.gz")
DQ=$(measure duckdb "$VENV/bin/python" bench/duckdb_query.py "$CORPUS")

python3 - "$RECORDS" "$FILES" "$BYTES" "$KW" "$ZC" "$DQ" <<'PY'
import sys
records, files, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = [s.split() for s in sys.argv[4:]]
base = {r[0]: float(r[1]) for r in rows}
print(f"corpus: {records:,} records in {files} files, {size/2**20:.0f} MiB gzip")
print(f"{'tool':<10} {'seconds':>8} {'records/s':>12} {'peak RSS':>10}  ratio to keywatch")
for name, secs, rss in rows:
    secs = float(secs)
    print(f"{name:<10} {secs:8.2f} {records/secs:12,.0f} {int(rss)/1024:8.0f} MiB  {secs/base['keywatch']:.2f}x")
print(f"keywatch vs zcat: {base['zcat']/base['keywatch']:.2f} (>= 1 means keywatch is no slower than zcat alone)")
print(f"keywatch vs DuckDB: {base['duckdb']/base['keywatch']:.2f}x faster")
PY
