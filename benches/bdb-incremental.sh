#!/usr/bin/env bash
# Incremental cost on a Berkeley DB 5.3 environment of about 200 MB (issue 3's figures):
# 1. about 5 MB of new records appended (new log files, a few data pages);
# 2. 1% of the records updated at random: stored bytes against the bytes of the 4 KiB
#    pages that really changed.
# Prints stored bytes and wall time of each incremental beside the full backup.
# Needs Debian's python3-bsddb3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
cairn=$PWD/target/release/cairn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 benches/make-bdb-corpus.py "$work/corpus" 200 >/dev/null
home=$work/corpus/env
"$cairn" -r "$work/repo" init >/dev/null

backup() { # prints "<seconds> <stored bytes> <bytes read>"
  local start end json
  start=$(date +%s.%N)
  json=$("$cairn" -r "$work/repo" --json backup "$home" 2>/dev/null)
  end=$(date +%s.%N)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f %d %d" % (float(sys.argv[3])-float(sys.argv[2]), d["stored_bytes"], d["bytes_read"]))' "$json" "$start" "$end"
}

read -r t_full s_full r_full < <(backup)
/usr/bin/python3 - "$home" <<'PY'
import sys
from bsddb3 import db
env = db.DBEnv(); env.set_lk_max_locks(200000); env.set_lk_max_objects(200000)
env.open(sys.argv[1], db.DB_CREATE | db.DB_INIT_MPOOL | db.DB_INIT_TXN | db.DB_INIT_LOCK | db.DB_INIT_LOG)
d = db.DB(env); d.open("events.db", None, db.DB_BTREE, db.DB_AUTO_COMMIT)
txn = env.txn_begin()
for i in range(5000):  # about 5 MB of records and log
    d.put(b"zz-appended-%08d" % i, b"appended record %d; " % i * 50, txn=txn)
txn.commit(); env.txn_checkpoint(0, 0, db.DB_FORCE); d.close(); env.close()
PY
read -r t_log s_log r_log < <(backup)
rm -rf "$home.before"; cp -a "$home" "$home.before"
/usr/bin/python3 - "$home" <<'PY'
import random, sys
from bsddb3 import db
env = db.DBEnv(); env.set_lk_max_locks(200000); env.set_lk_max_objects(200000)
env.open(sys.argv[1], db.DB_CREATE | db.DB_INIT_MPOOL | db.DB_INIT_TXN | db.DB_INIT_LOCK | db.DB_INIT_LOG)
rng = random.Random(7)
for name in ["orders.db", "customers.db", "items.db", "events.db"]:
    d = db.DB(env); d.open(name, None, db.DB_BTREE, db.DB_AUTO_COMMIT)
    keys = [k for k, _ in d.items()]
    txn = env.txn_begin()
    for k in rng.sample(keys, len(keys) // 100):  # 1% of the records
        v = d.get(k, txn=txn)
        d.put(k, v[:-8] + b"%08x" % rng.getrandbits(32), txn=txn)
    txn.commit(); d.close()
env.txn_checkpoint(0, 0, db.DB_FORCE); env.close()
PY
read -r t_upd s_upd r_upd < <(backup)
changed=$(/usr/bin/python3 - "$home.before" "$home" <<'PY'
import os, sys
a, b = sys.argv[1], sys.argv[2]
changed = 0
for f in os.listdir(b):
    if not f.endswith(".db"): continue
    x = open(os.path.join(a, f), "rb").read() if os.path.exists(os.path.join(a, f)) else b""
    y = open(os.path.join(b, f), "rb").read()
    changed += sum(1 for i in range(0, len(y), 4096) if x[i:i+4096] != y[i:i+4096])
print(changed * 4096)
PY
)
size=$(find "$home" -maxdepth 1 -type f ! -name "__db.*" -printf "%s\n" | awk "{ s += \$1 } END { print s }")
printf 'environment: %s bytes of data files and logs\n' "$size"
printf '%-34s %8s %14s %14s\n' backup seconds 'stored bytes' 'bytes read'
printf '%-34s %8s %14s %14s\n' full "$t_full" "$s_full" "$r_full"
printf '%-34s %8s %14s %14s\n' 'incremental, ~5 MB appended' "$t_log" "$s_log" "$r_log"
printf '%-34s %8s %14s %14s\n' 'incremental, 1% records updated' "$t_upd" "$s_upd" "$r_upd"
printf 'pages changed by the 1%% update: %s bytes (raw); stored/changed = %s\n' "$changed" \
  "$(python3 -c "print(round($s_upd / $changed, 2))")"
