#!/usr/bin/env bash
# Times cairn and restic (Debian's, its s3: backend) side by side against the same
# 3-node Garage cluster on loopback (replication factor 3), on the same corpora in one
# run, rotating the order each round: initial, incremental (with a CHANGED_DIR),
# no-change and restore; peak memory; and the S3 requests each step made (Garage's
# api_s3_request_counter, summed over the nodes). Usage:
#   benches/s3-compare.sh [ROUNDS] CORPUS_DIR[=CHANGED_DIR]...
# Needs garage (on PATH or where .ci/run installs it), restic, rsync and curl.
# RESTORE_DIR (default /dev/shm) receives the restores and the corpus copy.
set -euo pipefail
rounds=${1:-3}
shift
[ $# -gt 0 ] || { echo "usage: $0 [ROUNDS] CORPUS_DIR[=CHANGED_DIR]..." >&2; exit 2; }
cd "$(dirname "$0")/.."
cargo build --release -q
cairn=$PWD/target/release/cairn
garage=$(command -v garage || echo "$HOME/.cache/cairn-tools/garage-2.5.0/bin/garage")
for tool in "$garage" restic rsync curl; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
work=$(mktemp -d)
restore_root=${RESTORE_DIR:-/dev/shm}
results=$work/results.tsv
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work" "$restore_root"/cairn-s3-bench-*' EXIT

# The cluster: three nodes, fixed loopback ports from BASE_PORT (default 41000).
base=${BASE_PORT:-41000}
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in 1 2 3; do
  d=$work/garage$i
  mkdir -p "$d"
  cat > "$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$((base + i))"
rpc_public_addr = "127.0.0.1:$((base + i))"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$((base + 10 + i))"
[admin]
api_bind_addr = "127.0.0.1:$((base + 20 + i))"
EOF
  RUST_LOG=warn "$garage" -c "$d/garage.toml" server > "$d/log" 2>&1 &
  pids+=($!)
done
g() { "$garage" -c "$work/garage1/garage.toml" "$@"; }
until g status >/dev/null 2>&1; do sleep 0.2; done
for i in 2 3; do g node connect "$("$garage" -c "$work/garage$i/garage.toml" node id -q)" >/dev/null; done
until [ "$(g status | grep -cE '^[0-9a-f]{16}')" -ge 3 ]; do sleep 0.2; done
for id in $(g status | grep -oE '^[0-9a-f]{16}'); do g layout assign -z dc1 -c 10G "$id" >/dev/null; done
g layout apply --version 1 >/dev/null
key=$(g key create bench)
g bucket create bench >/dev/null
g bucket allow --read --write --owner bench --key bench >/dev/null
AWS_ACCESS_KEY_ID=$(echo "$key" | grep 'Key ID' | awk '{print $NF}')
AWS_SECRET_ACCESS_KEY=$(echo "$key" | grep 'Secret key' | awk '{print $NF}')
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=garage RESTIC_PASSWORD=bench
endpoint=http://127.0.0.1:$((base + 11))
export CAIRN_CACHE_DIR=$work/cairn-cache RESTIC_CACHE_DIR=$work/restic-cache

requests() {
  local total=0 n
  for i in 1 2 3; do
    n=$(curl -s "http://127.0.0.1:$((base + 20 + i))/metrics" |
      awk '/^api_s3_request_counter/ {s += $NF} END {print s + 0}')
    total=$((total + n))
  done
  echo "$total"
}

# measure STEP CMD...: appends "corpus tool step seconds peak_kib requests".
measure() {
  local step=$1 before after; shift
  before=$(requests)
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
    echo "$tool $step failed:" >&2; cat "$work/stderr" >&2; exit 1; }
  after=$(requests)
  read -r seconds kib < "$work/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$tool" "$step" "$seconds" "$kib" $((after - before)) >> "$results"
}

backup() {
  sleep 2 # as in compare.sh: database files quiet for 2 s before the parent backup
  sync
  case $tool in
    cairn) measure "$1" "$cairn" -r "$repo" backup "$data" ;;
    restic) measure "$1" restic -q -r "$repo" backup "$data" ;;
  esac
}

run_tool() {
  local out prefix=$tool-$name-$round
  out=$(mktemp -d -p "$restore_root" cairn-s3-bench-XXXX)
  repo=s3:$endpoint/bench/$prefix
  rm -rf "$data" "$CAIRN_CACHE_DIR" "$RESTIC_CACHE_DIR"
  cp -a "$corpus" "$data"
  case $tool in
    cairn) "$cairn" -r "$repo" init >/dev/null ;;
    restic) restic -q -r "$repo" init >/dev/null ;;
  esac
  backup initial
  if [ -n "$changed" ]; then
    rsync -a --delete "$changed/" "$data/"
    backup incremental
  fi
  backup no-change
  case $tool in
    cairn) measure restore "$cairn" -r "$repo" restore latest --target "$out" ;;
    restic) measure restore restic -q -r "$repo" restore latest --target "$out" ;;
  esac
  rm -rf "$out" "$data"
}

tools=(cairn restic)
data=$restore_root/cairn-s3-bench-data
for spec in "$@"; do
  corpus=$(realpath "${spec%%=*}")
  changed=
  [ "$spec" != "${spec#*=}" ] && changed=$(realpath "${spec#*=}")
  name=$(basename "$corpus")
  for ((round = 0; round < rounds; round++)); do
    for ((i = 0; i < ${#tools[@]}; i++)); do
      tool=${tools[(i + round) % ${#tools[@]}]}
      echo "corpus $name round $((round + 1))/$rounds: $tool" >&2
      run_tool
    done
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" - bytes "$(du -sb "$corpus" | cut -f1)" 0 0 >> "$results"
done

python3 - "$results" <<'PY'
import statistics, sys, collections
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
values = collections.defaultdict(list)
for corpus, tool, step, a, b, c in rows:
    values[(corpus, tool, step)].append((float(a), int(b), int(c)))
for corpus in dict.fromkeys(r[0] for r in rows):
    size = values[(corpus, "-", "bytes")][0][0]
    print(f"\n{corpus}: {size / 1e9:.2f} GB on Garage (3 nodes, loopback); medians of "
          f"{len(values[(corpus, 'cairn', 'initial')])} rounds")
    print(f"{'step':<12}{'tool':<8}{'seconds':>9}{'MB/s':>9}{'peak MiB':>10}{'requests':>10}  cairn's advantage")
    for step in ("initial", "incremental", "no-change", "restore"):
        if not values[(corpus, "cairn", step)]:
            continue
        med = {}
        for tool in ("cairn", "restic"):
            runs = values[(corpus, tool, step)]
            secs = max(statistics.median(r[0] for r in runs), 0.005)
            mib = statistics.median(r[1] for r in runs) / 1024
            reqs = statistics.median(r[2] for r in runs)
            med[tool] = (secs, mib)
            note = "" if tool == "cairn" else f"time x{secs / med['cairn'][0]:.2f}, memory x{mib / med['cairn'][1]:.2f}"
            print(f"{step:<12}{tool:<8}{secs:>9.2f}{size / secs / 1e6:>9.0f}{mib:>10.0f}{reqs:>10.0f}  {note}")
PY
