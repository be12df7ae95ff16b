#!/usr/bin/env bash
# How tests/vectors/repo-v5 was made, on 2026-12-02 with cairn 0.1.0 (index files,
# version 1). Kept as a record: do NOT re-run it to "fix" a failing vectors test. The
# repository is the contract; a failing test means the code no longer reads it.
#
# Two backups of a small tree, each of which writes one index file for the packs it
# added (a data pack and a file-list pack); the second after `notes.txt` changed.
set -euo pipefail
cairn=${CAIRN:-target/release/cairn}
work=$(mktemp -d)
src=$work/tree
mkdir -p "$src/data"
printf 'notes, version 1\n' > "$src/notes.txt"
head -c 300000 /dev/zero | tr '\0' 'z' > "$src/data/z.txt"
for n in $(seq 1 2000); do printf 'line %d of the log\n' "$n"; done > "$src/data/log.txt"
find "$src" -exec touch -h -d @1700000000 {} +
rm -rf tests/vectors/repo-v5
"$cairn" -r tests/vectors/repo-v5 init
"$cairn" -r tests/vectors/repo-v5 backup --set vectors --tag v5 --host vector-host "$src"
printf 'notes, version 2\n' > "$src/notes.txt"
touch -d @1700000100 "$src/notes.txt"
"$cairn" -r tests/vectors/repo-v5 backup --set vectors --tag v5 --host vector-host "$src"
# The index is a cache and the lock a runtime file: neither belongs to the vectors.
rm -rf tests/vectors/repo-v5/index.redb tests/vectors/repo-v5/lock tests/vectors/repo-v5/append-lock tests/vectors/repo-v5/tmp
rm -rf "$work"
