#!/usr/bin/env python3
"""How many 4 KiB pages of a Berkeley DB environment's data files differ between two
copies, and how many 16 KiB blocks those pages fall in: the floor of what an incremental
must store at page-sized chunks, and what 16 KiB chunks come close to.
    benches/page-diff.py ENV ENV_CHANGED
"""
import os, sys
a, b = sys.argv[1], sys.argv[2]
pages = changed = blocks16 = touched16 = 0
for name in sorted(os.listdir(a)):
    if not name.endswith(".db"):
        continue
    fa, fb = open(os.path.join(a, name), "rb"), open(os.path.join(b, name), "rb")
    block_dirty = False
    i = 0
    while True:
        pa, pb = fa.read(4096), fb.read(4096)
        if not pa and not pb:
            break
        pages += 1
        if pa != pb:
            changed += 1
            block_dirty = True
        i += 1
        if i % 4 == 0:
            blocks16 += 1
            touched16 += block_dirty
            block_dirty = False
print(f"4 KiB pages: {pages}, changed {changed} ({changed / pages:.1%}, {changed * 4096 / 1e6:.1f} MB); "
      f"16 KiB blocks: {blocks16}, touched {touched16} ({touched16 / blocks16:.1%}, {touched16 * 16384 / 1e6:.1f} MB)")
