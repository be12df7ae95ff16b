#!/usr/bin/env bash
# How tests/vectors/repo-v3 was made, on 2026-11-22 with cairn 0.1.0 (pack format 2).
# Kept as a record: do NOT re-run it to "fix" a failing vectors test. The repository is
# the contract; a failing test means the code no longer reads pack version 2.
#
# A small Berkeley DB-like environment (`--type bdb`): one data file of 100 KiB of
# xorshift noise and one log. After a full backup, 8 bytes of the data file's first
# 64 KiB piece are overwritten in place and a second log appears: the incremental stores
# that piece as a delta (codec 2) against the first snapshot's piece at the same offset.
set -euo pipefail
cairn=${CAIRN:-target/release/cairn}
work=$(mktemp -d)
src=$work/env
mkdir -p "$src"
python3 -c '
import sys
x = 7
out = bytearray()
for _ in range(100 * 1024):
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    out.append((x >> 32) & 0xFF)
sys.stdout.buffer.write(out)' > "$src/data.db"
printf 'log one\n' > "$src/log.0000000001"
touch -d @1700000000 "$src"/* "$src"
rm -rf tests/vectors/repo-v3
"$cairn" -r tests/vectors/repo-v3 init
"$cairn" -r tests/vectors/repo-v3 backup --set vectors --tag v3 --host vector-host --type bdb "$src"
printf 'changed!' | dd of="$src/data.db" bs=1 seek=40000 conv=notrunc status=none
printf 'log two\n' > "$src/log.0000000002"
touch -d @1700000100 "$src"/* "$src"
"$cairn" -r tests/vectors/repo-v3 backup --set vectors --tag v3 --host vector-host --type bdb "$src"
# The index is a cache and the lock a runtime file: neither belongs to the vectors.
rm -rf tests/vectors/repo-v3/index.redb tests/vectors/repo-v3/lock tests/vectors/repo-v3/tmp
rm -rf "$work"
