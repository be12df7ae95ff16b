#!/usr/bin/env bash
# How tests/vectors/repo-v4 was made, on 2026-12-01 with cairn 0.1.0 (manifest format 3).
# Kept as a record: do NOT re-run it to "fix" a failing vectors test. The repository is
# the contract; a failing test means the code no longer reads manifest version 3.
#
# A tree of 10 directories of 40 small files, enough records for a file list of several
# chunks. After a full backup one file is rewritten (new content and mtime): the
# incremental's file list shares every chunk but those around the changed records,
# which it stores as deltas against the first list's chunks.
set -euo pipefail
cairn=${CAIRN:-target/release/cairn}
work=$(mktemp -d)
src=$work/tree
for d in $(seq -w 0 9); do
    mkdir -p "$src/d$d"
    for f in $(seq -w 0 39); do
        printf 'file %s of directory %s\n' "$f" "$d" > "$src/d$d/f$f.txt"
    done
done
find "$src" -exec touch -h -d @1700000000 {} +
rm -rf tests/vectors/repo-v4
"$cairn" -r tests/vectors/repo-v4 init
"$cairn" -r tests/vectors/repo-v4 backup --set vectors --tag v4 --host vector-host "$src"
printf 'file 20 of directory 5, changed\n' > "$src/d5/f20.txt"
touch -d @1700000100 "$src/d5/f20.txt" "$src/d5"
"$cairn" -r tests/vectors/repo-v4 backup --set vectors --tag v4 --host vector-host "$src"
# The index is a cache and the lock a runtime file: neither belongs to the vectors.
rm -rf tests/vectors/repo-v4/index.redb tests/vectors/repo-v4/lock tests/vectors/repo-v4/append-lock tests/vectors/repo-v4/tmp
rm -rf "$work"
