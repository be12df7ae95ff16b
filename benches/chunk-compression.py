#!/usr/bin/env python3
"""How well 16 KiB, 1 MiB and 2 MiB chunks of a Berkeley DB environment's data files compress
with zstd level 3, and 16 KiB chunks with a trained dictionary (issue 6's size figures).
    pip install zstandard; benches/chunk-compression.py ENV
"""
import os, random, sys, zstandard as zstd
env = sys.argv[1]
data = b"".join(open(os.path.join(env, n), "rb").read() for n in sorted(os.listdir(env)) if n.endswith(".db"))
data = data[:300 << 20]  # 300 MB sample
def chunks(size):
    return [data[i:i + size] for i in range(0, len(data), size)]
c3 = zstd.ZstdCompressor(level=3)
for size in (16 << 10, 1 << 20, 2 << 20):
    total = sum(len(c3.compress(c)) for c in chunks(size))
    print(f"{size >> 10:>5} KiB chunks, zstd-3: {total / 1e6:.1f} MB of {len(data) / 1e6:.0f} MB ({len(data) / total:.2f}x)")
rng = random.Random(1)
small = chunks(16 << 10)
samples = rng.sample(small, 2000)
for dict_size in (64 << 10, 256 << 10):
    d = zstd.train_dictionary(dict_size, samples)
    cd = zstd.ZstdCompressor(level=3, dict_data=d)
    total = sum(len(cd.compress(c)) for c in small)
    print(f"   16 KiB chunks, zstd-3 + {dict_size >> 10} KiB dictionary: {total / 1e6:.1f} MB ({len(data) / total:.2f}x)")
