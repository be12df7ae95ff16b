#!/usr/bin/env bash
# How tests/vectors/repo-v1 was made, once, on 2026-11-21 with cairn 0.1.0.
# Kept as a record: do NOT re-run it to "fix" a failing vectors test. The repository is
# the contract; a failing test means the code no longer reads format version 1.
set -euo pipefail
cairn=${CAIRN:-target/release/cairn}
work=$(mktemp -d)
src=$work/tree
mkdir -p "$src/dir" "$src/empty"
printf 'hello, cairn\n' > "$src/hello.txt"
head -c 100000 /dev/zero > "$src/dir/zeros.bin"
python3 -c '
import sys
x = 42
out = bytearray()
for _ in range(600 * 1024):
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    out.append((x >> 32) & 0xFF)
sys.stdout.buffer.write(out)' > "$src/dir/noise.bin"
printf 'non-utf8 name\n' > "$src/caf$(printf '\351').txt"
ln -s hello.txt "$src/link"
ln "$src/caf$(printf '\351').txt" "$src/dir/hard.txt"
chmod 0640 "$src/hello.txt"; chmod 0755 "$src/dir"
touch -h -d @1700000000 "$src"/* "$src"/dir/* "$src/link"
touch -d @1700000000 "$src/dir" "$src/empty"
rm -rf tests/vectors/repo-v1
"$cairn" -r tests/vectors/repo-v1 init
"$cairn" -r tests/vectors/repo-v1 backup --set vectors --tag v1 --host vector-host "$src"
printf 'hello again, cairn\n' > "$src/hello.txt"
touch -d @1700000100 "$src/hello.txt"
"$cairn" -r tests/vectors/repo-v1 backup --set vectors --tag v1 --host vector-host "$src"
# The index is a cache and the lock a runtime file: neither belongs to the vectors.
rm -rf tests/vectors/repo-v1/index.redb tests/vectors/repo-v1/lock tests/vectors/repo-v1/tmp
rm -rf "$work"
