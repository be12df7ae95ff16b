#!/usr/bin/env bash
# A million small files (issue 18): 1,000 directories of 1,000 files of about 25 bytes,
# each file's content distinct. Times an initial backup, a no-change backup and a
# restore, with peak memory and the repository's size (and its parts) after each
# snapshot, for cairn beside restic (and borg with BORG=1), alternating the tools each
# round, and prints medians with ratios. Usage:
#   benches/million-files.sh [ROUNDS] [DIRS] [FILES_PER_DIR]
# Everything (corpus, repositories, restores) lives in RESTORE_DIR (default /dev/shm),
# so the figures are CPU and syscalls, not the disk. The corpus is made once
# (deterministic) and kept as $RESTORE_DIR/cairn-million-DIRSxFILES for later runs.
# CAIRN_BASELINE=/path/to/cairn adds that binary as tool `base`, to compare two builds
# side by side in one run.
set -euo pipefail
rounds=${1:-1}
dirs=${2:-1000}
per_dir=${3:-1000}
cd "$(dirname "$0")/.."
cargo build --release -q
cairn=$PWD/target/release/cairn
root=${RESTORE_DIR:-/dev/shm}
corpus=$root/cairn-million-${dirs}x${per_dir}
tools=(cairn restic)
[ -n "${CAIRN_BASELINE:-}" ] && tools+=(base)
[ -n "${BORG:-}" ] && tools+=(borg)
for tool in "${tools[@]}"; do
  case $tool in
    restic|borg) command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; } ;;
  esac
done
export RESTIC_PASSWORD=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
work=$(mktemp -d -p "$root" cairn-million-work-XXXX)
results=$work/results.tsv
# Caches of every tool in the work directory: each round starts without one.
export XDG_CACHE_HOME=$work/cache BORG_BASE_DIR=$work/borg-base
trap 'rm -rf "$work"' EXIT

if [ ! -d "$corpus" ]; then
  echo "making $corpus ($dirs x $per_dir files)" >&2
  python3 - "$corpus.tmp" "$dirs" "$per_dir" <<'PY'
import os, sys
root, dirs, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    path = os.path.join(root, "d%04d" % d)
    os.makedirs(path)
    for f in range(per_dir):
        # About 25 bytes, distinct for every file, the same on every run.
        with open(os.path.join(path, "f%04d" % f), "w") as out:
            out.write("file %04d/%04d of cairn\n" % (d, f))
PY
  mv "$corpus.tmp" "$corpus"
fi
files=$(find "$corpus" -type f | wc -l)
bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

# measure STEP CMD...: appends "tool step seconds peak_kib" to the results.
measure() {
  local step=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
    echo "$tool $step failed:" >&2; cat "$work/stderr" >&2; exit 1; }
  read -r seconds kib < "$work/time"
  printf '%s\t%s\t%s\t%s\n' "$tool" "$step" "$seconds" "$kib" >> "$results"
}

# size STEP: the repository's bytes, and of its parts, after a snapshot.
size() {
  local parts
  case $tool in
    cairn|base) parts="index.redb packs snapshots" ;;
    restic) parts="data index snapshots" ;;
    borg) parts="data" ;;
  esac
  # Apparent bytes (as `du -sb`), and blocks allocated: redb leaves holes in its file.
  printf '%s\tsize:%s\t%s\t%s\n' "$tool" "$1" "$(du -sb "$repo" | cut -f1)" 0 >> "$results"
  printf '%s\tallocated:%s\t%s\t%s\n' "$tool" "$1" "$(du -s -B1 "$repo" | cut -f1)" 0 >> "$results"
  for part in $parts; do
    printf '%s\tsize:%s:%s\t%s\t%s\n' "$tool" "$1" "$part" "$(du -sb "$repo/$part" | cut -f1)" 0 >> "$results"
  done
}

backup() {
  case $tool in
    cairn) measure "$1" "$cairn" -r "$repo" backup "$corpus" ;;
    base) measure "$1" "$CAIRN_BASELINE" -r "$repo" backup "$corpus" ;;
    restic) measure "$1" restic -q -r "$repo" backup "$corpus" ;;
    borg) measure "$1" borg create --compression zstd,3 "$repo::$1" "$corpus" ;;
  esac
  size "$1"
}

run_tool() {
  repo=$work/repo-$tool
  local out=$work/restored-$tool
  rm -rf "$repo" "$out" "$work/cache" "$work/borg-base"
  mkdir -p "$out"
  case $tool in
    cairn) "$cairn" -r "$repo" init >/dev/null ;;
    base) "$CAIRN_BASELINE" -r "$repo" init >/dev/null ;;
    restic) restic -q -r "$repo" init >/dev/null ;;
    borg) borg init -e none "$repo" ;;
  esac
  backup initial
  backup no-change
  case $tool in
    cairn) measure restore "$cairn" -r "$repo" restore latest --target "$out" ;;
    base) measure restore "$CAIRN_BASELINE" -r "$repo" restore latest --target "$out" ;;
    restic) measure restore restic -q -r "$repo" restore latest --target "$out" ;;
    borg) measure restore bash -c 'cd "$1" && borg extract "$2::no-change"' _ "$out" "$repo" ;;
  esac
  # One sample of the restored tree is compared: a full diff of a million files takes
  # longer than the backups.
  local sample=$(ls "$corpus" | head -1)
  local restored
  restored=$(find "$out" -type d -name "$sample" | head -1)
  diff -r "$corpus/$sample" "$restored" >/dev/null || { echo "$tool: restored tree differs" >&2; exit 1; }
  rm -rf "$repo" "$out"
}

for ((round = 0; round < rounds; round++)); do
  for ((i = 0; i < ${#tools[@]}; i++)); do
    tool=${tools[(i + round) % ${#tools[@]}]}
    echo "round $((round + 1))/$rounds: $tool" >&2
    run_tool
  done
done

python3 - "$results" "$files" "$bytes" "${tools[@]}" <<'PY'
import statistics, sys, collections
path, files, size, tools = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
values = collections.defaultdict(list)
for line in open(path):
    tool, step, a, b = line.rstrip("\n").split("\t")
    values[(tool, step)].append((float(a), int(b)))
med = lambda tool, step, i: statistics.median(v[i] for v in values[(tool, step)])
print(f"\n{files} files, {size} bytes; medians of {len(values[(tools[0], 'initial')])} rounds")
print(f"{'step':<11}{'tool':<8}{'seconds':>9}{'peak MiB':>10}{'repo MB':>9}  vs cairn")
for step in ("initial", "no-change", "restore"):
    for tool in tools:
        secs = max(med(tool, step, 0), 0.005)  # /usr/bin/time counts hundredths
        mib = med(tool, step, 1) / 1024
        repo = f"{med(tool, 'size:' + step, 0) / 1e6:.1f}" if values[(tool, "size:" + step)] else ""
        note = ""
        if tool != "cairn":
            note = f"time x{secs / max(med('cairn', step, 0), 0.005):.2f}, memory x{mib / (med('cairn', step, 1) / 1024):.2f}"
            if repo:
                note += f", size x{med(tool, 'size:' + step, 0) / med('cairn', 'size:' + step, 0):.2f}"
        print(f"{step:<11}{tool:<8}{secs:>9.2f}{mib:>10.0f}{repo:>9}  {note}")
print("\nrepository after each snapshot (MB): apparent size, blocks allocated, and parts (apparent)")
for tool in tools:
    for step in ("initial", "no-change"):
        parts = {k[1].rsplit(":", 1)[1]: statistics.median(v[0] for v in vals)
                 for k, vals in values.items() if k[0] == tool and k[1].startswith(f"size:{step}:")}
        total, allocated = med(tool, f"size:{step}", 0) / 1e6, med(tool, f"allocated:{step}", 0) / 1e6
        print(f"  {tool:<7}{step:<11}{total:>7.1f} {allocated:>7.1f}  "
              + ", ".join(f"{p} {b / 1e6:.1f}" for p, b in parts.items()))
PY
