#!/usr/bin/env bash
# Portcullis vs nginx, same machine, same upstream, same load, in alternation.
#
#   deploy/bench/run.sh                       # defaults: THREADS=1 ROUNDS=3 DURATION=10s
#   THREADS=2 ROUNDS=5 DURATION=20s deploy/bench/run.sh
#   PINGORA_BASELINE=1 deploy/bench/run.sh    # also a bare pingora proxy: pingora's own cost
#   DECISION_LOG=http deploy/bench/run.sh     # also Portcullis with decision logging to an HTTP
#                                             # collector, measured in the same rounds
#
# See deploy/bench/README.md for what it measures and how to read the result. The last line of
# output is machine-readable:
#   RESULT throughput_ratio=X p99_ratio=Y portcullis_rps=A nginx_rps=B
# after a DETAIL line with the CPU time per request of each proxy (robust to other load).
# (with DECISION_LOG=http it adds decision_log_rps=C decision_log_cost=D, the throughput lost to
# logging relative to Portcullis without it; target <= TARGET_LOG_COST)
set -euo pipefail

# ---------------------------------------------------------------- settings (env overridable)
THREADS="${THREADS:-1}"                  # nginx worker_processes and Portcullis server.threads
ROUNDS="${ROUNDS:-3}"                    # measured rounds; each runs nginx then Portcullis
DURATION="${DURATION:-10s}"              # wrk -d per measured run
WARMUP="${WARMUP:-3s}"                   # wrk -d of the warm-up run of each proxy
CONNECTIONS="${CONNECTIONS:-32}"         # wrk -c
WRK_THREADS="${WRK_THREADS:-1}"          # wrk -t
UPSTREAM_WORKERS="${UPSTREAM_WORKERS:-1}" # worker_processes of the upstream nginx
PORTCULLIS_BIN="${PORTCULLIS_BIN:-}"     # use this binary instead of building one
PINGORA_BASELINE="${PINGORA_BASELINE:-0}" # 1: also measure a bare pingora proxy (pingora-baseline/)
KEEP_TMP="${KEEP_TMP:-0}"                # 1: keep the temp dir (configs, logs, wrk output)
STRICT="${STRICT:-0}"                    # 1: exit 3 when the targets below are missed
WAIT_IDLE="${WAIT_IDLE:-0}"              # wait up to this many seconds for other CPU load to go
AUTH="${AUTH:-0}"                        # 1: Portcullis route needs a signed-in session (SSO)
TARGET_THROUGHPUT="${TARGET_THROUGHPUT:-1.0}"  # portcullis/nginx requests/s, at least
TARGET_P99="${TARGET_P99:-1.1}"                # portcullis/nginx p99 latency, at most
DECISION_LOG="${DECISION_LOG:-}"               # http: also measure with decision logging on
TARGET_LOG_COST="${TARGET_LOG_COST:-0.05}"     # 1 - logging-on/logging-off requests/s, at most

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

case "$THREADS" in '' | *[!0-9]* | 0) die "THREADS must be a positive integer, got '$THREADS'" ;; esac
case "$ROUNDS" in '' | *[!0-9]* | 0) die "ROUNDS must be a positive integer, got '$ROUNDS'" ;; esac

# ---------------------------------------------------------------- tools
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 ||
        { as_root apt-get update >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2; }
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
for t in curl python3 awk; do command -v "$t" >/dev/null 2>&1 || die "$t is required"; done

# The Debian nginx package starts a system-wide nginx on install; it is not ours and it is left
# alone, but it does compete for CPU if it is busy.

# ---------------------------------------------------------------- build
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
case "$target_dir" in /*) ;; *) target_dir="$REPO/$target_dir" ;; esac
if [ -z "$PORTCULLIS_BIN" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (or set PORTCULLIS_BIN)"
    log "cargo build --release -p portcullis (a no-op when up to date)"
    (cd "$REPO" && cargo build --release -p portcullis >&2)
    PORTCULLIS_BIN="$target_dir/release/portcullis"
fi
[ -x "$PORTCULLIS_BIN" ] || die "no executable at $PORTCULLIS_BIN"

# ---------------------------------------------------------------- temp dir and cleanup
DIR="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")"
PIDS=()     # "pid:signal" of every long-running process we started

cleanup() {
    local entry pid sig
    trap - EXIT INT TERM
    for entry in "${PIDS[@]+"${PIDS[@]}"}"; do
        pid="${entry%%:*}"; sig="${entry##*:}"
        kill -s "$sig" "$pid" 2>/dev/null || true
    done
    for entry in "${PIDS[@]+"${PIDS[@]}"}"; do
        pid="${entry%%:*}"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP_TMP" = 1 ]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- free ports
# Bind all of them at once so they are distinct, then release them for the servers.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}
read -r UPSTREAM_PORT NGINX_PORT PORTCULLIS_PORT ADMIN_PORT LOG_PORT LOG_ADMIN_PORT COLLECTOR_PORT PINGORA_PORT OP_PORT <<<"$(free_ports 9)"

# ---------------------------------------------------------------- bare pingora baseline (optional)
PINGORA_BIN=""
if [ "$PINGORA_BASELINE" = 1 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (needed for PINGORA_BASELINE=1)"
    # Built from a copy with the workspace's Cargo.lock: the same pingora as the gateway.
    cp -r "$HERE/pingora-baseline" "$DIR/pingora-baseline"
    cp "$REPO/Cargo.lock" "$DIR/pingora-baseline/Cargo.lock"
    log "cargo build --release pingora-baseline (the first time takes minutes)"
    cargo build --release --manifest-path "$DIR/pingora-baseline/Cargo.toml" \
        --target-dir "$target_dir/bench-pingora-baseline" >&2
    PINGORA_BIN="$target_dir/bench-pingora-baseline/release/pingora-baseline"
fi
case "$DECISION_LOG" in '' | http) ;; *) die "DECISION_LOG must be empty or http, got '$DECISION_LOG'" ;; esac

# ---------------------------------------------------------------- configs
if [ "$(id -u)" -eq 0 ]; then
    # Root: nginx workers switch to an unprivileged user (Debian has no group "nobody").
    USER_LINE="user nobody $(getent group nogroup >/dev/null && echo nogroup || echo nobody);"
    chmod 0755 "$DIR"
else
    USER_LINE="# not root: workers run as $(id -un)"
fi
mkdir -p "$DIR/upstream-tmp" "$DIR/proxy-tmp"

render() {  # render TEMPLATE OUTPUT
    sed -e "s|@DIR@|$DIR|g" \
        -e "s|@USER_LINE@|$USER_LINE|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@ADMIN_PORT@|$ADMIN_PORT|g" \
        -e "s|@THREADS@|$THREADS|g" \
        -e "s|@WORKERS@|$WORKERS|g" \
        -e "s|@PORT@|$PORT|g" \
        -e "s|@OP_PORT@|$OP_PORT|g" \
        "$1" >"$2"
}
WORKERS="$UPSTREAM_WORKERS" PORT="$UPSTREAM_PORT" render "$HERE/nginx-upstream.conf.tmpl" "$DIR/upstream.conf"
WORKERS="$THREADS" PORT="$NGINX_PORT" render "$HERE/nginx-proxy.conf.tmpl" "$DIR/proxy.conf"
if [ "$AUTH" = 1 ]; then
    WORKERS="" PORT="$PORTCULLIS_PORT" render "$HERE/portcullis-auth.yaml.tmpl" "$DIR/portcullis.yaml"
else
    WORKERS="" PORT="$PORTCULLIS_PORT" render "$HERE/portcullis.yaml.tmpl" "$DIR/portcullis.yaml"
fi
if [ -n "$DECISION_LOG" ]; then
    # Same config plus a decision log to an HTTP collector (NDJSON, gzip), spool in the temp dir.
    WORKERS="" PORT="$LOG_PORT" ADMIN_PORT="$LOG_ADMIN_PORT" render "$HERE/portcullis.yaml.tmpl" "$DIR/portcullis-log.yaml"
    sed -i -e "s|portcullis-upgrade.sock|portcullis-log-upgrade.sock|; s|portcullis.pid|portcullis-log.pid|" "$DIR/portcullis-log.yaml"
    cat >>"$DIR/portcullis-log.yaml" <<EOF
decision_log:
  sinks:
    - { type: http, url: "http://127.0.0.1:$COLLECTOR_PORT/v1/decisions" }
  spool: { dir: "$DIR/spool", max_bytes: 1GiB, when_full: block }
EOF
    "$PORTCULLIS_BIN" check --config "$DIR/portcullis-log.yaml" >&2 || die "portcullis (decision log) config rejected"
fi

"$NGINX" -t -q -p "$DIR" -e "$DIR/nginx-test.log" -c "$DIR/upstream.conf" 2>"$DIR/nginx-t.err" ||
    { cat "$DIR/nginx-t.err" >&2; die "upstream nginx config rejected"; }
"$NGINX" -t -q -p "$DIR" -e "$DIR/nginx-test.log" -c "$DIR/proxy.conf" 2>"$DIR/nginx-t.err" ||
    { cat "$DIR/nginx-t.err" >&2; die "proxy nginx config rejected"; }
"$PORTCULLIS_BIN" check --config "$DIR/portcullis.yaml" >&2 || die "portcullis config rejected"

# ---------------------------------------------------------------- start servers
wait_ok() {  # wait_ok NAME PID URL LOGFILE
    local body
    for _ in $(seq 1 300); do
        if ! kill -0 "$2" 2>/dev/null; then
            tail -n 30 "$4" >&2 || true
            die "$1 exited during start-up (log: $4)"
        fi
        body="$(curl -s --max-time 1 "$3" 2>/dev/null || true)"
        [ "$body" = "ok" ] && return 0
        sleep 0.1
    done
    tail -n 30 "$4" >&2 || true
    die "$1 did not answer 200 \"ok\" on $3 within 30s"
}

"$NGINX" -p "$DIR" -e "$DIR/upstream-error.log" -c "$DIR/upstream.conf" >"$DIR/upstream.out" 2>&1 &
PIDS+=("$!:TERM")
wait_ok "upstream nginx" "$!" "http://127.0.0.1:$UPSTREAM_PORT/" "$DIR/upstream-error.log"

"$NGINX" -p "$DIR" -e "$DIR/proxy-error.log" -c "$DIR/proxy.conf" >"$DIR/proxy.out" 2>&1 &
PIDS+=("$!:TERM")
NGINX_PROXY_PID=$!
wait_ok "nginx proxy" "$!" "http://127.0.0.1:$NGINX_PORT/" "$DIR/proxy-error.log"

WRK_HEADER=()
if [ "$AUTH" = 1 ]; then
    # A real OpenID Provider (tests/oidc, `npm ci` there first) and one sign-in with curl.
    [ -d "$REPO/tests/oidc/node_modules/oidc-provider" ] || (cd "$REPO/tests/oidc" && npm ci --no-audit --no-fund --loglevel=error >&2)
    PORT="$OP_PORT" AT_TTL=86400 CLIENTS="[{\"client_id\":\"bench\",\"client_secret\":\"bench-secret\",\"redirect_uris\":[\"http://127.0.0.1:$PORTCULLIS_PORT/.portcullis/callback/bench\"],\"grant_types\":[\"authorization_code\",\"refresh_token\"]}]" \
        node "$REPO/tests/oidc/provider.mjs" >"$DIR/op.log" 2>&1 &
    PIDS+=("$!:TERM")
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$OP_PORT/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done
fi

"$PORTCULLIS_BIN" run --config "$DIR/portcullis.yaml" >"$DIR/portcullis.log" 2>&1 &
PIDS+=("$!:INT")   # SIGINT: fast shutdown
PORTCULLIS_PID=$!
if [ "$AUTH" = 1 ]; then
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORTCULLIS_PORT/" && break; sleep 0.1; done
    jar="$DIR/cookies.txt"
    page="$(curl -s -L -c "$jar" -b "$jar" -H 'Accept: text/html' "http://127.0.0.1:$PORTCULLIS_PORT/")"
    action="$(printf '%s' "$page" | sed -n 's/.*<form[^>]*action="\([^"]*\)".*/\1/p' | head -n1)"
    [ -n "$action" ] || die "no login form from the provider (log: $DIR/op.log)"
    case "$action" in http*) ;; *) action="http://127.0.0.1:$OP_PORT$action" ;; esac
    body="$(curl -s -L -c "$jar" -b "$jar" -H 'Accept: text/html' --data "prompt=login&login=alice&password=x" "$action")"
    [ "$body" = "ok" ] || die "sign-in did not reach the upstream: $body"
    cookie="$(awk '$6 == "portcullis" { print $7 }' "$jar")"
    [ -n "$cookie" ] || die "no session cookie after sign-in"
    WRK_HEADER=(-H "Cookie: portcullis=$cookie")
    log "signed in once; wrk sends the session cookie (authenticated route)"
else
    wait_ok "portcullis" "$!" "http://127.0.0.1:$PORTCULLIS_PORT/" "$DIR/portcullis.log"
fi

if [ -n "$PINGORA_BIN" ]; then
    "$PINGORA_BIN" "127.0.0.1:$PINGORA_PORT" "127.0.0.1:$UPSTREAM_PORT" "$THREADS" >"$DIR/pingora.log" 2>&1 &
    PIDS+=("$!:INT")
    PINGORA_PID=$!
    wait_ok "pingora-baseline" "$!" "http://127.0.0.1:$PINGORA_PORT/" "$DIR/pingora.log"
fi
# The processes that do the proxying: their CPU time is charged to the requests.
NGINX_WORKERS="$(pgrep -P "$NGINX_PROXY_PID" | tr '\n' ' ')"
[ -n "$NGINX_WORKERS" ] || die "cannot find the nginx proxy's worker processes"

if [ -n "$DECISION_LOG" ]; then
    # The collector: accepts every batch (counts records, answers 200). It shares the CPUs with
    # everything else, as a collector on the same host would.
    python3 - "$COLLECTOR_PORT" "$DIR/collector.count" >"$DIR/collector.log" 2>&1 <<'EOF' &
import gzip, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count, lock, out = 0, threading.Lock(), sys.argv[2]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        n = gzip.decompress(body).count(b"\n")
        with lock:
            count += n
            open(out, "w").write(str(count))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
    PIDS+=("$!:TERM")
    "$PORTCULLIS_BIN" run --config "$DIR/portcullis-log.yaml" >"$DIR/portcullis-log.log" 2>&1 &
    PIDS+=("$!:INT")
    LOG_PID=$!
    wait_ok "portcullis (decision log)" "$!" "http://127.0.0.1:$LOG_PORT/" "$DIR/portcullis-log.log"
fi

# ---------------------------------------------------------------- measure
# to_ms VALUE_WITH_UNIT  (wrk prints us, ms, s, m or h)
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) { print "nan"; exit 1 }
        printf "%.3f", n * f }'
}

# cpu_ticks PID...: user + system CPU time of these processes (all their threads), in ticks
cpu_ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$s"; }
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

# run_wrk NAME PORT DURATION OUTFILE PID... -> sets RPS P99 BAD and CPU_US, the CPU time the
# proxy processes PID... spent per request, in microseconds
run_wrk() {
    local c0 c1 hdr=()
    [ "$1" = portcullis ] && hdr=("${WRK_HEADER[@]+"${WRK_HEADER[@]}"}")
    c0="$(cpu_ticks "${@:5}")"
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$3" --latency "${hdr[@]+"${hdr[@]}"}" "http://127.0.0.1:$2/" >"$4" 2>&1 ||
        { cat "$4" >&2; die "wrk against $1 failed"; }
    c1="$(cpu_ticks "${@:5}")"
    CPU_US="$(awk -v c=$((c1 - c0)) -v t="$CLK_TCK" -v n="$(awk '/requests in/ { print $1 }' "$4")" \
        'BEGIN { printf "%.1f", (n > 0) ? 1e6 * c / t / n : 0 }')"
    RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$4")"
    P99="$(awk '$1 == "99%" { print $2 }' "$4")"
    if [ -z "$RPS" ] || [ -z "$P99" ]; then cat "$4" >&2; die "cannot parse wrk output for $1"; fi
    P99="$(to_ms "$P99")"
    local non2xx sockerr
    non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$4")"
    sockerr="$(awk '/Socket errors:/ { s = 0; for (i = 3; i <= NF; i += 2) s += $(i + 1) + 0; print s }' "$4")"
    BAD=$(( ${non2xx:-0} + ${sockerr:-0} ))
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

cores="$(nproc 2>/dev/null || echo '?')"
log "machine: ${cores} cores, $(uname -sr); nginx $("$NGINX" -v 2>&1 | sed 's|.*/||'); $(wrk --version 2>&1 | head -n1 | awk '{ print $1, $2 }')"
log "portcullis: $PORTCULLIS_BIN ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- gateway policy 2>/dev/null || echo '+dirty'))"
log "THREADS=$THREADS ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP wrk -t$WRK_THREADS -c$CONNECTIONS; ports: upstream $UPSTREAM_PORT, nginx $NGINX_PORT, portcullis $PORTCULLIS_PORT"

# Other work on the machine skews both proxies (less so thanks to the alternation): say so.
cpu_busy() {  # percent of all CPUs busy over 1 s, from /proc/stat
    local a b
    a="$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)"
    sleep 1
    b="$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)"
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%d", (t > 0) ? 100 * (y[1] - x[1]) / t : 0 }'
}
busy="$(cpu_busy 2>/dev/null || echo 0)"
waited=0
while [ "$busy" -gt 10 ] && [ "$waited" -lt "$WAIT_IDLE" ]; do
    [ "$waited" -eq 0 ] && log "machine ${busy}% busy; waiting up to ${WAIT_IDLE}s for it to go idle (WAIT_IDLE)"
    sleep 4; waited=$((waited + 5))
    busy="$(cpu_busy 2>/dev/null || echo 0)"
done
log "machine busy before the run: ${busy}% of all CPUs (load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'))"
if [ "$busy" -gt 10 ]; then
    log "WARNING: something else is using the CPUs; absolute figures will be low and ratios noisy"
fi

log "warm-up: nginx $WARMUP"
run_wrk nginx "$NGINX_PORT" "$WARMUP" "$DIR/warmup-nginx.txt" $NGINX_WORKERS
log "warm-up: portcullis $WARMUP"
run_wrk portcullis "$PORTCULLIS_PORT" "$WARMUP" "$DIR/warmup-portcullis.txt" "$PORTCULLIS_PID"
if [ -n "$PINGORA_BIN" ]; then
    log "warm-up: pingora-baseline $WARMUP"
    run_wrk pingora "$PINGORA_PORT" "$WARMUP" "$DIR/warmup-pingora.txt" "$PINGORA_PID"
fi
if [ -n "$DECISION_LOG" ]; then
    log "warm-up: portcullis with decision log $WARMUP"
    run_wrk portcullis-log "$LOG_PORT" "$WARMUP" "$DIR/warmup-portcullis-log.txt" "$LOG_PID"
fi

N_RPS=(); N_P99=(); N_CPU=(); P_RPS=(); P_P99=(); P_CPU=(); B_RPS=(); B_P99=(); B_CPU=()
L_RPS=(); L_P99=(); total_bad=0
row() { printf '%-6s %-11s %12s %10s %11s %7s\n' "$@"; }
echo
row round proxy "requests/s" "p99 (ms)" "CPU us/req" errors
row ----- ---------- ---------- -------- ---------- ------
for r in $(seq 1 "$ROUNDS"); do
    run_wrk nginx "$NGINX_PORT" "$DURATION" "$DIR/round$r-nginx.txt" $NGINX_WORKERS
    N_RPS+=("$RPS"); N_P99+=("$P99"); N_CPU+=("$CPU_US"); total_bad=$((total_bad + BAD))
    row "$r" nginx "$RPS" "$P99" "$CPU_US" "$BAD"
    if [ -n "$PINGORA_BIN" ]; then
        run_wrk pingora "$PINGORA_PORT" "$DURATION" "$DIR/round$r-pingora.txt" "$PINGORA_PID"
        B_RPS+=("$RPS"); B_P99+=("$P99"); B_CPU+=("$CPU_US"); total_bad=$((total_bad + BAD))
        row "$r" pingora "$RPS" "$P99" "$CPU_US" "$BAD"
    fi
    run_wrk portcullis "$PORTCULLIS_PORT" "$DURATION" "$DIR/round$r-portcullis.txt" "$PORTCULLIS_PID"
    P_RPS+=("$RPS"); P_P99+=("$P99"); P_CPU+=("$CPU_US"); total_bad=$((total_bad + BAD))
    row "$r" portcullis "$RPS" "$P99" "$CPU_US" "$BAD"
    if [ -n "$DECISION_LOG" ]; then
        run_wrk portcullis-log "$LOG_PORT" "$DURATION" "$DIR/round$r-portcullis-log.txt" "$LOG_PID"
        L_RPS+=("$RPS"); L_P99+=("$P99"); total_bad=$((total_bad + BAD))
        row "$r" "+declog" "$RPS" "$P99" "$CPU_US" "$BAD"
    fi
done

n_rps="$(median "${N_RPS[@]}")"; n_p99="$(median "${N_P99[@]}")"; n_cpu="$(median "${N_CPU[@]}")"
p_rps="$(median "${P_RPS[@]}")"; p_p99="$(median "${P_P99[@]}")"; p_cpu="$(median "${P_CPU[@]}")"
tput_ratio="$(awk -v a="$p_rps" -v b="$n_rps" 'BEGIN { printf "%.3f", a / b }')"
p99_ratio="$(awk -v a="$p_p99" -v b="$n_p99" 'BEGIN { printf "%.3f", a / b }')"

row median nginx "$n_rps" "$n_p99" "$n_cpu" ""
if [ -n "$PINGORA_BIN" ]; then
    b_rps="$(median "${B_RPS[@]}")"; b_p99="$(median "${B_P99[@]}")"; b_cpu="$(median "${B_CPU[@]}")"
    row median pingora "$b_rps" "$b_p99" "$b_cpu" ""
fi
row median portcullis "$p_rps" "$p_p99" "$p_cpu" ""
echo
tput_ok="$(awk -v r="$tput_ratio" -v t="$TARGET_THROUGHPUT" 'BEGIN { print (r >= t) ? "met" : "MISSED" }')"
p99_ok="$(awk -v r="$p99_ratio" -v t="$TARGET_P99" 'BEGIN { print (r <= t) ? "met" : "MISSED" }')"
printf 'throughput portcullis/nginx: %s  (target >= %s: %s)\n' "$tput_ratio" "$TARGET_THROUGHPUT" "$tput_ok"
printf 'p99        portcullis/nginx: %s  (target <= %s: %s)\n' "$p99_ratio" "$TARGET_P99" "$p99_ok"
if [ "$total_bad" -ne 0 ]; then
    printf 'WARNING: %s non-2xx responses or socket errors during the measured runs; see %s\n' "$total_bad" "$DIR"
    KEEP_TMP=1
fi
printf 'CPU per request portcullis/nginx: %s  (proxy processes only; robust to other load)\n' \
    "$(awk -v a="$p_cpu" -v b="$n_cpu" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }')"
detail="DETAIL cpu_us_per_req_portcullis=$p_cpu cpu_us_per_req_nginx=$n_cpu p99_ms_portcullis=$p_p99 p99_ms_nginx=$n_p99"
if [ -n "$PINGORA_BIN" ]; then
    printf 'bare pingora: %s requests/s, %s CPU us/req; portcullis/pingora throughput %s\n' "$b_rps" "$b_cpu" \
        "$(awk -v a="$p_rps" -v b="$b_rps" 'BEGIN { printf "%.3f", a / b }')"
    detail="$detail pingora_rps=$b_rps cpu_us_per_req_pingora=$b_cpu p99_ms_pingora=$b_p99"
fi
log_result=""
log_ok=met
if [ -n "$DECISION_LOG" ]; then
    l_rps="$(median "${L_RPS[@]}")"; l_p99="$(median "${L_P99[@]}")"
    row median "+declog" "$l_rps" "$l_p99" "" ""
    log_cost="$(awk -v a="$l_rps" -v b="$p_rps" 'BEGIN { printf "%.3f", 1 - a / b }')"
    log_ok="$(awk -v r="$log_cost" -v t="$TARGET_LOG_COST" 'BEGIN { print (r <= t) ? "met" : "MISSED" }')"
    sleep 2   # the last batch waits for the flush interval
    metrics="$(curl -s "http://127.0.0.1:$LOG_ADMIN_PORT/metrics")"
    sent="$(awk '/^portcullis_decision_log_sent_total/ { print $2 }' <<<"$metrics")"
    dropped="$(awk '/^portcullis_decision_log_dropped_total/ { print $2 }' <<<"$metrics")"
    printf 'decision log cost (1 - with/without logging): %s  (target <= %s: %s); records sent %s, dropped %s, collector counted %s\n' \
        "$log_cost" "$TARGET_LOG_COST" "$log_ok" "${sent:-?}" "${dropped:-?}" "$(cat "$DIR/collector.count" 2>/dev/null || echo 0)"
    log_result=" decision_log_rps=$l_rps decision_log_cost=$log_cost"
fi
echo "$detail"
echo "RESULT throughput_ratio=$tput_ratio p99_ratio=$p99_ratio portcullis_rps=$p_rps nginx_rps=$n_rps$log_result"

if [ "$STRICT" = 1 ] && { [ "$tput_ok" != met ] || [ "$p99_ok" != met ] || [ "$log_ok" != met ] || [ "$total_bad" -ne 0 ]; }; then
    exit 3
fi
