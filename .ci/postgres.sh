#!/usr/bin/env bash
# A PostgreSQL server for the tests that share one Optuna study between two sweep processes
# (tests/sweep/test_sweep_postgres.py), as CI starts it: `.ci/postgres.sh start DIR` runs initdb and pg_ctl as
# the postgres user (root may not run them) into DIR, listening on 127.0.0.1 only on a free port, and writes
# the server's URL to DIR/url; `.ci/postgres.sh stop DIR` stops it and removes DIR. Prints one line each.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then echo "usage: $0 start|stop DIR" >&2; exit 2; fi
as_pg=(runuser -u postgres --)
case "$cmd" in
  start)
    t0=$(date +%s)
    for tool in initdb pg_ctl psql runuser; do
      command -v "$tool" >/dev/null || { echo "postgres: $tool is not on PATH (install postgresql)" >&2; exit 1; }
    done
    mkdir -p "$dir" && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as_pg[@]}" initdb -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
      || { echo "postgres: initdb failed:" >&2; cat "$dir/initdb.log" >&2; exit 1; }
    "${as_pg[@]}" pg_ctl -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start \
      >/dev/null || { echo "postgres: the server did not start:" >&2; cat "$dir/log" >&2; exit 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres" >"$dir/url"
    echo "postgres: server up on 127.0.0.1:$port in $(( $(date +%s) - t0 )) s ($dir)"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      "${as_pg[@]}" pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    echo "postgres: server stopped"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
