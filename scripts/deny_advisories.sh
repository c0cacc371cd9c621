#!/usr/bin/env bash
# cargo deny's advisories check. cargo deny fetches the RustSec database from GitHub; where
# that is out of reach, ADVISORY_DB names a checkout of github.com/rustsec/advisory-db (a
# mirror's copy) and the check runs offline against it, saying how old it is.
# usage: scripts/deny_advisories.sh CARGO_DENY
set -euo pipefail
cd "$(dirname "$0")/.."
deny=$1
if [ -z "${ADVISORY_DB:-}" ]; then
  exec "$deny" check advisories
fi
[ -d "$ADVISORY_DB/crates" ] || { echo "error: ADVISORY_DB=$ADVISORY_DB is not a checkout of rustsec/advisory-db (no crates/)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/dbs"
# cargo deny 0.20 keeps the default database under this name in its db-path.
ln -s "$(cd "$ADVISORY_DB" && pwd)" "$dir/dbs/advisory-db-3157b0e258782691"
{ printf '[advisories]\ndb-path = "%s/dbs"\n\n' "$dir"; cat deny.toml; } > "$dir/deny.toml"
echo "RustSec advisories as of $(git -C "$ADVISORY_DB" log -1 --format=%cI 2>/dev/null || echo 'an unknown date') (ADVISORY_DB=$ADVISORY_DB)"
"$deny" --config "$dir/deny.toml" --offline check advisories
