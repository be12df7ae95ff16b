#!/usr/bin/python3
"""Stored size of a Berkeley DB environment's data files cut in fixed pieces, and of an
incremental after they changed, with and without deltas.

  python3 benches/delta-size.py ENV CHANGED_ENV 16,32,64,128

For each piece size (KiB): the data files (*.db) of ENV compressed piece by piece
(zstd-3 frames, as cairn stores them); the pieces of CHANGED_ENV that differ, compressed
alone and as deltas (compressed with the parent's piece at the same offset as a
raw-content dictionary, the smaller of the two, as cairn decides). Needs the `zstandard`
module (pip install zstandard). Figures in format-spec/chunking.md came from this.
"""
import os
import sys

import zstandard as zs

old_dir, new_dir = sys.argv[1], sys.argv[2]
sizes = [int(x) * 1024 for x in sys.argv[3].split(",")]
plain = zs.ZstdCompressor(level=3)
for size in sizes:
    full = inc_plain = inc_delta = changed = changed_bytes = 0
    for name in sorted(n for n in os.listdir(old_dir) if n.endswith(".db")):
        old = open(os.path.join(old_dir, name), "rb").read()
        new = open(os.path.join(new_dir, name), "rb").read()
        for off in range(0, len(old), size):
            full += len(plain.compress(old[off:off + size]))
        for off in range(0, len(new), size):
            piece, before = new[off:off + size], old[off:off + size]
            if piece == before:
                continue
            changed += 1
            changed_bytes += len(piece)
            alone = len(plain.compress(piece))
            inc_plain += alone
            if before:
                d = zs.ZstdCompressionDict(before, dict_type=zs.DICT_TYPE_RAWCONTENT)
                delta = zs.ZstdCompressor(level=3, dict_data=d, write_dict_id=False)
                alone = min(alone, len(delta.compress(piece)))
            inc_delta += alone
    print(f"{size // 1024:4d} KiB: data files {full / 1e6:.1f} MB; {changed} pieces changed "
          f"({changed_bytes / 1e6:.0f} MB raw): incremental {inc_plain / 1e6:.1f} MB whole, "
          f"{inc_delta / 1e6:.1f} MB as deltas", flush=True)
