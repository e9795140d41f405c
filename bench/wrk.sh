#!/usr/bin/env bash
# The outside benchmark of issue 15: wrk against the release binary, the way the old
# service's figures were taken (wrk, 32 connections, the same 2-core machine).
#
#   bench/wrk.sh                                    # SQLite, in a temporary folder
#   bench/wrk.sh postgres://postgres@127.0.0.1:5432/postgres
#                                                   # PostgreSQL: a fresh database
#                                                   # gatehouse_wrk is made beside it
#
# Needs wrk (Debian: apt-get install wrk), curl, and psql for PostgreSQL. Settings:
# WRK_SECONDS (20 per workload), WRK_CONNECTIONS (32), WRK_THREADS (2), WRK_PORT (5077),
# RUST_LOG (info: a JSON line per request; warn turns it off), WRK_KEEP (set: keep the
# temporary folder with the server's log). The server runs as in production
# (APP_ENV=production, mail only logged), with no other load than wrk's. For each
# workload it prints wrk's rate and latency percentiles, the server's CPU per request
# (from /proc; on PostgreSQL also that of every postgres process) and the old service's
# figure beside it.
set -euo pipefail

seconds=${WRK_SECONDS:-20}
connections=${WRK_CONNECTIONS:-32}
threads=${WRK_THREADS:-2}
port=${WRK_PORT:-5077}
base="http://127.0.0.1:$port"
password='Wrk-bench-password-1'

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench/wrk.sh needs $tool" >&2; exit 1; }
done

cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/gatehouse

work=$(mktemp -d)
server=
cleanup() {
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if [[ -n ${pg_admin:-} ]]; then
        psql -q "$pg_admin" -c 'DROP DATABASE IF EXISTS gatehouse_wrk' || true
    fi
    if [[ -n ${WRK_KEEP:-} ]]; then
        echo "kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

case "${1:-}" in
    postgres://* | postgresql://*)
        pg_admin=$1
        psql -q "$pg_admin" -c 'DROP DATABASE IF EXISTS gatehouse_wrk' -c 'CREATE DATABASE gatehouse_wrk'
        database_url="${pg_admin%/*}/gatehouse_wrk"
        ;;
    '') database_url="sqlite://$work/gatehouse.db" ;;
    *) echo "usage: bench/wrk.sh [postgres://…]" >&2; exit 2 ;;
esac

export APP_ENV=production DATABASE_URL="$database_url" DATA_DIR="$work" \
    BIND_ADDR="127.0.0.1:$port" PUBLIC_URL="$base" MAIL_BACKEND=log \
    SECRET_KEY='gatehouse-wrk-secret-key-0123456789abcdef' RUST_LOG="${RUST_LOG:-info}" \
    LOG_FORMAT=json TRUSTED_PROXIES=127.0.0.1/32

# One account per connection for the login workload, and each login from an address of
# its own (X-Forwarded-For from a trusted proxy), so that neither an account's nor an
# address's throttle counts the other connections' logins in flight; the first account
# is the one every other workload is signed in as.
"$bin" migrate >/dev/null
for i in $(seq 1 "$connections"); do
    "$bin" create-admin --username "wrk$i" --email "wrk$i@example.com" --password "$password" >/dev/null
done

"$bin" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fs "$base/healthz" >/dev/null && break
    sleep 0.1
done
curl -fs "$base/healthz" >/dev/null || { echo "the server did not start:" >&2; tail "$work/server.log" >&2; exit 1; }

login=$(curl -fs -D "$work/headers" -H 'Content-Type: application/json' \
    -d "{\"username_or_email\":\"wrk1\",\"password\":\"$password\"}" "$base/login")
session=$(sed -n 's/^[Ss]et-[Cc]ookie: session=\([^;]*\);.*/\1/p' "$work/headers")
csrf=$(sed -n 's/.*"csrf_token":"\([^"]*\)".*/\1/p' <<<"$login")
[[ -n $session && -n $csrf ]] || { echo "signing in failed: $login" >&2; exit 1; }

cat >"$work/board.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"name": "Benchmark board"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "session=$session"
wrk.headers["X-CSRFToken"] = "$csrf"
EOF
cat >"$work/login.lua" <<EOF
local n = 0
request = function()
    n = n % $connections + 1
    local headers = {["Content-Type"] = "application/json",
        ["X-Forwarded-For"] = "10.0." .. math.random(0, 255) .. "." .. math.random(1, 254)}
    return wrk.format("POST", "/login", headers,
        '{"username_or_email": "wrk' .. n .. '", "password": "$password"}')
end
EOF

# CPU time (user and system, in clock ticks) of the given processes together.
ticks() {
    local p total=0
    for p in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
# Every PostgreSQL process on the machine: the server's statements run there.
postgres() { pgrep -x postgres || true; }
hz=$(getconf CLK_TCK)

# label, ticks before, ticks after, requests
per_request() {
    awk -v label="$1" -v b="$2" -v a="$3" -v hz="$hz" -v n="$4" \
        'BEGIN { printf "   %s CPU per request: %.1f µs\n", label, (a - b) / hz / n * 1e6 }'
}

# name, old service's rate (or -), wrk arguments
run() {
    local name=$1 old=$2
    shift 2
    local before after pg_before pg_after out rate requests
    before=$(ticks "$server")
    pg_before=$(ticks $(postgres))
    out=$(wrk -t "$threads" -c "$connections" -d "${seconds}s" --latency "$@" 2>&1)
    after=$(ticks "$server")
    pg_after=$(ticks $(postgres))
    rate=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    echo "== $name"
    grep -E 'Latency|50%|90%|99%|requests in|Non-2xx|Socket errors|Requests/sec' <<<"$out" | sed 's/^/   /'
    per_request server "$before" "$after" "$requests"
    if [[ -n ${pg_admin:-} ]]; then
        per_request PostgreSQL "$pg_before" "$pg_after" "$requests"
    fi
    if [[ $old != - ]]; then
        awk -v r="$rate" -v o="$old" 'BEGIN { printf "   beside the old service: %.0f/s against %d/s = %.1fx\n", r, o, r / o }'
    fi
}

cookie="Cookie: session=$session"
echo "wrk: $threads threads, $connections connections, ${seconds} s per workload; $(nproc) CPUs; database ${database_url%%:*}"
run "GET /healthz" - "$base/healthz"
run "GET /current_user_details" 1116 -H "$cookie" "$base/current_user_details"
run "GET /check_auth_status" 1116 -H "$cookie" "$base/check_auth_status"
run "GET /logs?page=1" 730 -H "$cookie" "$base/logs?page=1"
run "POST /boards" 368 -s "$work/board.lua" "$base/boards"
run "POST /login" 19 -s "$work/login.lua" "$base/login"
