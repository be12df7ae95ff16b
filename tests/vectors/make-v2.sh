#!/usr/bin/env bash
# How tests/vectors/repo-v2 was made, on 2026-11-21 with cairn 0.1.0 (manifest
# format 2; made again the same day, before version 2 was released, when its component
# trailer gained the copy time and the dump command). Kept as a record: do NOT re-run it
# to "fix" a failing vectors test. The
# repository is the contract; a failing test means the code no longer reads version 2.
#
# A small broker work directory (qpid): the broker's files, and a JSON virtualhost node
# store placed at default/config. First a full backup with hooks around the copy, then a
# differential after the broker log changed.
set -euo pipefail
cairn=${CAIRN:-target/release/cairn}
work=$(mktemp -d)
src=$work/qpid
mkdir -p "$src/default/config" "$src/log"
printf '{"name":"broker","modelVersion":"9.0","virtualhostnodes":[{"name":"default","type":"JSON"}]}\n' > "$src/config.json"
printf '{"name":"default","type":"BDB","modelVersion":"9.0"}\n' > "$src/default/config/default.json"
: > "$src/default/config/default.lck"
printf 'broker started\n' > "$src/log/qpid.log"
touch -d @1700000000 "$src"/config.json "$src"/log/qpid.log "$src"/default/config/* "$src"/log "$src"/default/config "$src"/default
rm -rf tests/vectors/repo-v2
"$cairn" -r tests/vectors/repo-v2 init
"$cairn" -r tests/vectors/repo-v2 backup --set vectors --tag v2 --host vector-host \
  --pre-exec 'echo quiesce' --post-exec 'echo resume' "$src"
printf 'broker started\nbroker stopped\n' > "$src/log/qpid.log"
touch -d @1700000100 "$src/log/qpid.log" "$src/log"
"$cairn" -r tests/vectors/repo-v2 backup --set vectors --tag v2 --host vector-host --differential "$src"
# The index is a cache and the lock a runtime file: neither belongs to the vectors.
rm -rf tests/vectors/repo-v2/index.redb tests/vectors/repo-v2/lock tests/vectors/repo-v2/tmp
rm -rf "$work"
