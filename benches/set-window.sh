#!/usr/bin/env bash
# The quiesce window of a backup set (issue 4's figure): three components — a data
# directory of real files, a Berkeley DB environment and a PostgreSQL dump — copied side
# by side in one snapshot, against the same three backed up one after another.
#   benches/set-window.sh [DATA_DIR] [BDB_MB] [PG_ROWS]
# DATA_DIR defaults to a 300 MB copy of /usr/share; a throw-away PostgreSQL cluster is
# started on loopback (as user postgres when run as root) and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
cairn=$PWD/target/release/cairn
work=$(mktemp -d)
chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=(); [ "$(id -u)" = 0 ] && as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

data=${1:-}
if [ -z "$data" ]; then
  data=$work/data; mkdir -p "$data"
  python3 - "$data" <<'PY'
import os, shutil, sys
total = 0
for root, dirs, files in os.walk("/usr/share"):
    dirs.sort()
    for name in sorted(files):
        src = os.path.join(root, name)
        if os.path.islink(src) or not os.path.isfile(src):
            continue
        dst = os.path.join(sys.argv[1], os.path.relpath(src, "/usr/share"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            shutil.copy2(src, dst)
        except OSError:
            continue
        total += os.path.getsize(dst)
        if total > 300 << 20:
            sys.exit(0)
PY
fi
/usr/bin/python3 benches/make-bdb-corpus.py "$work/bdb" "${2:-200}" >/dev/null
mkdir -p "$work/pg"; [ ${#as_pg[@]} -gt 0 ] && chown postgres:postgres "$work/pg"
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg/data" --auth=trust -U postgres >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -o "-p $port -c listen_addresses=127.0.0.1 -k $work/pg" -l "$work/pg/log" -w start >/dev/null
psql=("$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -X -q)
"${psql[@]}" -c "CREATE DATABASE app" >/dev/null
"${psql[@]}" -d app -c "CREATE TABLE items AS SELECT i AS id, md5(i::text) || repeat('x', 100) AS name FROM generate_series(1, ${3:-1000000}) i" >/dev/null
dump="$pgbin/pg_dump -h 127.0.0.1 -p $port -U postgres -Fc app"
echo "data: $(du -sb "$data" | cut -f1) bytes; bdb: $(du -sb "$work/bdb/env" | cut -f1) bytes; table: ${3:-1000000} rows"

seconds() { python3 -c "import time; print(time.time())"; }
sum=0
for label in data bdb db; do
  "$cairn" -r "$work/alone-$label" init >/dev/null
  start=$(seconds)
  case $label in
    data) "$cairn" -r "$work/alone-$label" backup "$data" >/dev/null 2>&1 ;;
    bdb) "$cairn" -r "$work/alone-$label" backup "$work/bdb/env" >/dev/null 2>&1 ;;
    db) "$cairn" -r "$work/alone-$label" backup --set db --dump "db=$dump" >/dev/null 2>&1 ;;
  esac
  end=$(seconds)
  t=$(python3 -c "print(f'{$end - $start:.2f}')"); sum=$(python3 -c "print(f'{$sum + $t:.2f}')")
  echo "one after another: $label $t s"
done
"$cairn" -r "$work/set" init >/dev/null
json=$("$cairn" -r "$work/set" --json backup --set app "$data" "$work/bdb/env" --dump "db=$dump" --pre-exec true --post-exec true 2>/dev/null)
python3 - "$json" "$sum" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); t = lambda x: x["secs"] + x["nanos"] / 1e9
window = t(r["hooks"]["window_end"]) - t(r["hooks"]["window_start"])
for c in r["components"]:
    ct = c["copy_time"]
    print(f"side by side: {c['name']} ({c['store_type']}) {t(ct['finished']) - t(ct['started']):.2f} s")
print(f"quiesce window {window:.2f} s, against {float(sys.argv[2]):.2f} s one after another ({float(sys.argv[2]) / window:.2f}x)")
PY
