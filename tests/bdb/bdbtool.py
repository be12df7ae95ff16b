#!/usr/bin/python3
"""Drives a real Berkeley DB 5.3 environment for cairn's tests (Debian python3-bsddb3).

  bdbtool.py create HOME COUNT     new environment, records 0..COUNT, checkpoint, close
  bdbtool.py add HOME START COUNT  records START..START+COUNT in an existing environment
  bdbtool.py writer HOME START     commits records from START on, one per transaction,
                                   printing each committed number, until killed
  bdbtool.py check HOME COUNT      every record 0..COUNT present with its value
  bdbtool.py archiver HOME COUNT   commits records 0..COUNT without a checkpoint, prints
                                   "ready", waits for a line on stdin, then loops:
                                   300 commits, checkpoint, remove logs no longer needed
  bdbtool.py rewrite HOME COUNT STEP  writes every STEP-th record of 0..COUNT again, with
                                   the same value: its pages change in place (their LSNs)
  bdbtool.py subdb HOME            adds a database kept in a subdirectory (tables/extra.db)
Small log files (64 KiB) make a hot backup see new logs appear while it copies.
"""
import os
import sys
from bsddb3 import db

FLAGS = db.DB_CREATE | db.DB_INIT_MPOOL | db.DB_INIT_TXN | db.DB_INIT_LOCK | db.DB_INIT_LOG
NAMES = ["accounts.db", "events.db"]


def value(i):
    return (b"record %d; " % i) * (1 + i % 40)


def open_env(home):
    os.makedirs(home, exist_ok=True)
    env = db.DBEnv()
    env.set_lg_max(64 * 1024)
    env.set_cachesize(0, 8 << 20)
    env.open(home, FLAGS)
    dbs = []
    for name in NAMES:
        d = db.DB(env)
        d.open(name, None, db.DB_BTREE, db.DB_CREATE | db.DB_AUTO_COMMIT)
        dbs.append(d)
    return env, dbs


def put(env, dbs, start, count, per_txn=200):
    for first in range(start, start + count, per_txn):
        txn = env.txn_begin()
        for i in range(first, min(first + per_txn, start + count)):
            dbs[i % len(dbs)].put(b"%08d" % i, value(i), txn=txn)
        txn.commit()


def close(env, dbs):
    env.txn_checkpoint(0, 0, db.DB_FORCE)
    for d in dbs:
        d.close()
    env.close()


def main():
    command, home = sys.argv[1], sys.argv[2]
    if command in ("create", "add"):
        env, dbs = open_env(home)
        start, count = (0, int(sys.argv[3])) if command == "create" else (int(sys.argv[3]), int(sys.argv[4]))
        put(env, dbs, start, count)
        close(env, dbs)
    elif command == "rewrite":
        env, dbs = open_env(home)
        count, step = int(sys.argv[3]), int(sys.argv[4])
        txn = env.txn_begin()
        for i in range(0, count, step):
            dbs[i % len(dbs)].put(b"%08d" % i, value(i), txn=txn)
        txn.commit()
        close(env, dbs)
    elif command == "writer":
        env, dbs = open_env(home)
        i = int(sys.argv[3])
        while True:
            txn = env.txn_begin()
            dbs[i % len(dbs)].put(b"%08d" % i, value(i), txn=txn)
            txn.commit()
            print(i, flush=True)
            i += 1
    elif command == "archiver":
        env, dbs = open_env(home)
        count = int(sys.argv[3])
        put(env, dbs, 0, count, per_txn=1)
        print("ready", flush=True)
        sys.stdin.readline()
        i = count
        while True:
            put(env, dbs, i, 300, per_txn=1)
            i += 300
            env.txn_checkpoint(0, 0, db.DB_FORCE)
            env.log_archive(db.DB_ARCH_REMOVE)
    elif command == "subdb":
        os.makedirs(os.path.join(home, "tables"), exist_ok=True)
        env, dbs = open_env(home)
        d = db.DB(env)
        d.open("tables/extra.db", None, db.DB_BTREE, db.DB_CREATE | db.DB_AUTO_COMMIT)
        txn = env.txn_begin()
        for i in range(100):
            d.put(b"%08d" % i, value(i), txn=txn)
        txn.commit()
        d.close()
        close(env, dbs)
    elif command == "check":
        env, dbs = open_env(home)
        count = int(sys.argv[3])
        for i in range(count):
            got = dbs[i % len(dbs)].get(b"%08d" % i)
            if got != value(i):
                sys.exit(f"record {i}: {'missing' if got is None else 'wrong value'}")
        for d in dbs:
            d.close()
        env.close()
        print(f"{count} records intact")
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
