#!/usr/bin/env bash
# What a snapshot costs in file lists and manifest, on a copy of a real tree: a full
# backup, a no-change one, one after 1% of the files changed together (whole
# directories, as a day of work or a log directory changes them), and one after 1% changed
# scattered (every hundredth file). Files are changed by a new mtime only, so that what
# a snapshot adds is its manifest and file list, not file data. Usage:
#   benches/file-list-growth.sh TREE [CAIRN_BINARY...]
# Each binary (default: this checkout's release build) gets its own copy of TREE in
# $WORK_DIR (default /tmp) and its own repository; the table shows, per step, what the
# repository grew by: the manifest file, the packs (new file list chunks) and the index.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 TREE [CAIRN_BINARY...]" >&2; exit 2; }
tree=$(realpath "$1")
shift
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  cargo build --release -q
  set -- "$PWD/target/release/cairn"
fi
work=$(mktemp -d -p "${WORK_DIR:-/tmp}")
trap 'rm -rf "$work"' EXIT

sizes() { # REPO: bytes of snapshots/, packs/, index.redb
  local r=$1
  printf '%s %s %s\n' "$(du -sb "$r/snapshots" | cut -f1)" "$(du -sb "$r/packs" | cut -f1)" \
    "$(stat -c %s "$r/index.redb" 2>/dev/null || echo 0)"
}

# change_files DIR MODE: a new mtime for 1% of the regular files, chosen by MODE.
change_files() {
  python3 - "$1" "$2" <<'PY'
import os, sys
root, mode = sys.argv[1], sys.argv[2]
files = []
for d, dirs, names in os.walk(root):
    dirs.sort()
    files.extend(os.path.join(d, n) for n in sorted(names) if os.path.isfile(os.path.join(d, n)))
want = max(1, len(files) // 100)
if mode == "scattered":
    chosen = files[::100][:want]
else:
    # Whole directories, from the middle of the walk on, until 1% of the files.
    chosen = files[len(files) // 2 : len(files) // 2 + want]
for path in chosen:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
print(len(chosen), "of", len(files), "files changed", file=sys.stderr)
PY
}

printf '%-10s %-12s %10s %12s %12s %12s %10s\n' binary step files manifest+ lists+ index+ seconds
for cairn in "$@"; do
  label=$(basename "$(dirname "$(dirname "$(dirname "$cairn")")")")
  data=$work/data repo=$work/repo
  rm -rf "$data" "$repo"
  cp -a "$tree" "$data"
  "$cairn" -r "$repo" init >/dev/null
  before="0 0 0"
  for step in full no-change clustered scattered; do
    case $step in
      clustered | scattered) change_files "$data" "$step" ;;
    esac
    # Files must be older than the 2 s quiet period to be taken from the parent unread.
    sleep 2
    start=$(date +%s.%N)
    "$cairn" -r "$repo" backup --set growth "$data" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    end=$(date +%s.%N)
    after=$(sizes "$repo")
    read -r s0 p0 i0 <<<"$before"
    read -r s1 p1 i1 <<<"$after"
    files=$("$cairn" -r "$repo" --json snapshots | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["files"])')
    printf '%-10s %-12s %10s %12s %12s %12s %10.2f\n' "$label" "$step" "$files" $((s1 - s0)) $((p1 - p0)) $((i1 - i0)) \
      "$(echo "$end - $start" | bc)"
    before=$after
  done
done
