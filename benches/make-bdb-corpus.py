#!/usr/bin/python3
"""Builds a Berkeley DB 5.3 transactional environment for benchmarks, and a changed
copy of it with about 3% of the records updated or added.

    /usr/bin/python3 benches/make-bdb-corpus.py DIR [MEGABYTES]

makes DIR/env (about MEGABYTES of database files, default 1000) and DIR/env-changed.
Needs Debian's python3-bsddb3 (Berkeley DB 5.3). Deterministic: a fixed seed.
"""
import os, random, shutil, subprocess, sys
from bsddb3 import db

ENV_FLAGS = db.DB_CREATE | db.DB_INIT_MPOOL | db.DB_INIT_TXN | db.DB_INIT_LOCK | db.DB_INIT_LOG


def open_env(path):
    env = db.DBEnv()
    env.set_cachesize(0, 256 << 20)
    env.set_flags(db.DB_TXN_WRITE_NOSYNC, 1)
    # Batches of random updates touch many pages: room for their locks.
    env.set_lk_max_locks(200000)
    env.set_lk_max_objects(200000)
    env.open(path, ENV_FLAGS)
    return env


def value(rng, i):
    # Text-like records, about 2:1 compressible, 200 to 1000 bytes.
    words = [b"order", b"customer", b"shipped", b"pending", b"warehouse", b"invoice", b"%d" % i]
    out = bytearray()
    target = rng.randint(200, 1000)
    while len(out) < target:
        out += rng.choice(words) + b" " + (b"%08x" % rng.getrandbits(32)) + b";"
    return bytes(out[:target])


def fill(env, names, records, rng, keys):
    dbs = {}
    for name in names:
        d = db.DB(env)
        d.open(name, None, db.DB_BTREE, db.DB_CREATE | db.DB_AUTO_COMMIT)
        dbs[name] = d
    batch = 5000
    for start in range(0, len(keys), batch):
        txn = env.txn_begin()
        for k in keys[start:start + batch]:
            name = names[k % len(names)]
            dbs[name].put(b"key%010d" % k, value(rng, k), txn=txn)
        txn.commit()
    for d in dbs.values():
        d.close()


def checkpoint_and_trim(env, path):
    env.txn_checkpoint(0, 0, db.DB_FORCE)
    for log in env.log_archive(db.DB_ARCH_ABS):
        os.remove(log)


def main():
    root, megabytes = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    env_dir, changed_dir = os.path.join(root, "env"), os.path.join(root, "env-changed")
    names = ["orders.db", "customers.db", "items.db", "events.db"]
    records = megabytes * 1024 * 1024 // 900  # about 900 bytes a record on disk
    rng = random.Random(42)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(env_dir)
    env = open_env(env_dir)
    fill(env, names, records, rng, list(range(records)))
    checkpoint_and_trim(env, env_dir)
    env.close()

    shutil.copytree(env_dir, changed_dir)
    env = open_env(changed_dir)
    changed = rng.sample(range(records), records * 25 // 1000)  # 2.5% updated
    added = list(range(records, records + records // 200))       # 0.5% added
    fill(env, names, records, rng, changed + added)
    env.txn_checkpoint(0, 0, db.DB_FORCE)
    env.close()
    # Region files (__db.*) are the closed environment's shared memory, not data;
    # nothing has the environment open any more.
    for d in (env_dir, changed_dir):
        for f in os.listdir(d):
            if f.startswith("__db."):
                os.remove(os.path.join(d, f))
    for d in (env_dir, changed_dir):
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{d}: {size / 1e6:.0f} MB in {len(os.listdir(d))} files")


if __name__ == "__main__":
    main()
