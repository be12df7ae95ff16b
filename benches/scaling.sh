#!/usr/bin/env bash
# Scaling (issue 6): time and peak memory of an initial backup, a no-change backup and
# `check` as the tree grows from 10,000 to 1,000,000 files, and with it the repository
# from 10^4 to 10^6 chunks (one small file, one chunk). Trees are made in RESTORE_DIR
# (default /dev/shm) so that the disk does not decide the figures.
#   benches/scaling.sh [COUNTS...]        default: 10000 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
cairn=$PWD/target/release/cairn
root=${RESTORE_DIR:-/dev/shm}
work=$(mktemp -d -p "$root" cairn-scaling-XXXX)
trap 'rm -rf "$work"' EXIT
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(10000 100000 1000000)

measure() { # label, command...: prints "label seconds peak_MiB"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>&1
  read -r seconds kib < "$work/time"
  printf '%-10s %8.2f s %8.1f MiB\n' "$label" "$seconds" "$(echo "$kib / 1024" | bc -l)"
}

for n in "${counts[@]}"; do
  rm -rf "$work/tree" "$work/repo"
  python3 - "$work/tree" "$n" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
for i in range(n):
    d = os.path.join(root, "%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d" % i), "wb") as f:
        f.write(rng.randbytes(512 + rng.randrange(1536)))
PY
  "$cairn" -r "$work/repo" init >/dev/null
  echo "== $n files, $(du -sb "$work/tree" | cut -f1) bytes"
  measure initial "$cairn" -r "$work/repo" backup "$work/tree"
  measure no-change "$cairn" -r "$work/repo" backup "$work/tree"
  measure check "$cairn" -r "$work/repo" check
  chunks=$("$cairn" -r "$work/repo" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique_chunks"])')
  echo "repository: $chunks chunks, $(du -sb "$work/repo" | cut -f1) bytes"
done
