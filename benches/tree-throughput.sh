#!/usr/bin/env bash
# Times cairn on a tree of real system files: initial backup, no-change backup, restore,
# plus repository size and peak memory. Usage:
#   benches/tree-throughput.sh [CORPUS_DIR] [BYTES]
# CORPUS_DIR is built once from /usr (regular files in sorted order, up to BYTES, default
# 1.5 GB) and reused. RESTORE_DIR (default: a temporary directory beside the repository)
# is where the restore writes; use a tmpfs such as /dev/shm to time cairn rather than
# the disk's writeback. The page cache is warm after the first pass: figures are for
# CPU-bound work, as on a machine that backs up what it just wrote.
set -euo pipefail
corpus=${1:-/tmp/cairn-corpus}
limit=${2:-1500000000}
cd "$(dirname "$0")/.."
cargo build --release -q
cairn=$PWD/target/release/cairn

if [ ! -d "$corpus" ]; then
  echo "building corpus $corpus (up to $limit bytes from /usr)" >&2
  mkdir -p "$corpus"
  find /usr -xdev -type f -readable -printf '%s %p\n' 2>/dev/null | sort -k2 |
    awk -v limit="$limit" '{ total += $1; if (total > limit) exit; sub(/^[0-9]+ /, ""); print }' |
    tar -cf - --files-from=- 2>/dev/null | tar -xf - -C "$corpus"
fi
bytes=$(du -sb "$corpus" | cut -f1)
files=$(find "$corpus" | wc -l)
work=$(mktemp -d)
restored=$(mktemp -d -p "${RESTORE_DIR:-$work}")
trap 'rm -rf "$work" "$restored"' EXIT

# Runs a command, prints "<seconds> <peak RSS KiB>".
measure() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
  cat "$work/time"
}
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }


find "$corpus" -type f -exec cat {} + >/dev/null 2>&1 || true
"$cairn" -r "$work/repo" init >/dev/null
read -r t1 m1 < <(measure "$cairn" -r "$work/repo" backup "$corpus")
read -r t2 m2 < <(measure "$cairn" -r "$work/repo" backup "$corpus")
read -r t3 m3 < <(measure "$cairn" -r "$work/repo" restore latest --target "$restored")
repo=$(du -sb "$work/repo" | cut -f1)
diff -r --no-dereference "$corpus" "$restored" >/dev/null && same=identical || same=DIFFERENT

printf 'tree: %s files, %s bytes (%s)\n' "$files" "$bytes" "$corpus"
printf '%-18s %8s %8s %10s\n' step seconds MB/s 'peak RSS'
printf '%-18s %8s %8s %8s MiB\n' 'initial backup' "$t1" "$(mbps "$t1")" $((m1 / 1024))
printf '%-18s %8s %8s %8s MiB\n' 'no-change backup' "$t2" "$(mbps "$t2")" $((m2 / 1024))
printf '%-18s %8s %8s %8s MiB\n' 'restore' "$t3" "$(mbps "$t3")" $((m3 / 1024))
printf 'repository: %s bytes = %.1f%% of the tree; restored tree %s\n' "$repo" \
  "$(awk -v r="$repo" -v b="$bytes" 'BEGIN { print 100 * r / b }')" "$same"
