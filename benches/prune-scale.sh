#!/usr/bin/env bash
# Prune at scale (issue 5's figure): a repository of N small files' worth of chunks
# (one chunk each; default 120,000), three backups with a third of the files changed
# each time, then forget all but the last and prune. Prints the chunk count, and the
# wall time and peak memory of stats and prune.
#   benches/prune-scale.sh [FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-120000}
cargo build --release -q
cairn=$PWD/target/release/cairn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/tree" "$files" 0 <<'PY'
import os, random, sys
root, n, round_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(round_)
for i in range(n):
    d = os.path.join(root, "%03d" % (i % 500))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d" % i), "wb") as f:
        f.write(rng.randbytes(1024 + rng.randrange(2048)))
PY
change() { # a third of the files get new bytes
  python3 - "$work/tree" "$files" "$1" <<'PY'
import os, random, sys
root, n, round_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(round_)
for i in range(round_ % 3, n, 3):
    with open(os.path.join(root, "%03d" % (i % 500), "f%07d" % i), "wb") as f:
        f.write(rng.randbytes(1024 + rng.randrange(2048)))
PY
}
measure() { # label, command...: prints wall seconds and peak RSS
  local label=$1; shift
  /usr/bin/time -f "$label: %e s (user %U s, system %S s), peak %M KiB" "$@" >/dev/null
}
"$cairn" -r "$work/repo" init >/dev/null
for round in 1 2 3; do
  "$cairn" -r "$work/repo" backup "$work/tree" >/dev/null 2>&1
  [ "$round" = 3 ] || change "$round"
done
chunks=$("$cairn" -r "$work/repo" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique_chunks"])')
echo "repository: $chunks chunks referenced, $(du -sb "$work/repo/packs" | cut -f1) bytes of packs"
measure "stats" "$cairn" -r "$work/repo" stats
"$cairn" -r "$work/repo" forget --keep-last 1 >/dev/null
measure "prune" "$cairn" -r "$work/repo" prune --max-unused 0
echo "after prune: $(du -sb "$work/repo/packs" | cut -f1) bytes of packs"
"$cairn" -r "$work/repo" check >/dev/null && echo "check: no problems"
