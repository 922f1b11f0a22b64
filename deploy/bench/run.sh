#!/usr/bin/env bash
# Portcullis vs nginx, same machine, same upstream, same load, in alternation.
#
#   deploy/bench/run.sh                       # defaults: THREADS=1 ROUNDS=3 DURATION=10s
#   THREADS=2 ROUNDS=5 DURATION=20s deploy/bench/run.sh
#
# See deploy/bench/README.md for what it measures and how to read the result. The last line of
# output is machine-readable:
#   RESULT throughput_ratio=X p99_ratio=Y portcullis_rps=A nginx_rps=B
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
KEEP_TMP="${KEEP_TMP:-0}"                # 1: keep the temp dir (configs, logs, wrk output)
STRICT="${STRICT:-0}"                    # 1: exit 3 when the targets below are missed
WAIT_IDLE="${WAIT_IDLE:-0}"              # wait up to this many seconds for other CPU load to go
AUTH="${AUTH:-0}"                        # 1: Portcullis route needs a signed-in session (SSO)
TARGET_THROUGHPUT="${TARGET_THROUGHPUT:-1.0}"  # portcullis/nginx requests/s, at least
TARGET_P99="${TARGET_P99:-1.1}"                # portcullis/nginx p99 latency, at most

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
if [ -z "$PORTCULLIS_BIN" ]; then
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found (or set PORTCULLIS_BIN)"
    log "cargo build --release -p portcullis (a no-op when up to date)"
    (cd "$REPO" && cargo build --release -p portcullis >&2)
    target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
    case "$target_dir" in /*) ;; *) target_dir="$REPO/$target_dir" ;; esac
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
read -r UPSTREAM_PORT NGINX_PORT PORTCULLIS_PORT ADMIN_PORT OP_PORT <<<"$(free_ports 5)"

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
wait_ok "nginx proxy" "$!" "http://127.0.0.1:$NGINX_PORT/" "$DIR/proxy-error.log"

WRK_HEADER=()
if [ "$AUTH" = 1 ]; then
    # A real OpenID Provider (tests/oidc, `npm ci` there first) and one sign-in with curl.
    [ -d "$REPO/tests/oidc/node_modules/oidc-provider" ] || (cd "$REPO/tests/oidc" && npm ci --no-audit --no-fund --loglevel=error >&2)
    PORT="$OP_PORT" AT_TTL=86400 CLIENTS="[{\"client_id\":\"bench\",\"client_secret\":\"bench-secret\",\"redirect_uris\":[\"http://127.0.0.1:$PORTCULLIS_PORT/.portcullis/callback\"],\"grant_types\":[\"authorization_code\",\"refresh_token\"]}]" \
        node "$REPO/tests/oidc/provider.mjs" >"$DIR/op.log" 2>&1 &
    PIDS+=("$!:TERM")
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$OP_PORT/.well-known/openid-configuration" >/dev/null && break; sleep 0.1; done
fi

"$PORTCULLIS_BIN" run --config "$DIR/portcullis.yaml" >"$DIR/portcullis.log" 2>&1 &
PIDS+=("$!:INT")   # SIGINT: fast shutdown
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

# ---------------------------------------------------------------- measure
# to_ms VALUE_WITH_UNIT  (wrk prints us, ms, s, m or h)
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) { print "nan"; exit 1 }
        printf "%.3f", n * f }'
}

# run_wrk NAME PORT DURATION OUTFILE -> sets RPS P99 BAD
run_wrk() {
    local hdr=()
    [ "$1" = portcullis ] && hdr=("${WRK_HEADER[@]+"${WRK_HEADER[@]}"}")
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$3" --latency "${hdr[@]+"${hdr[@]}"}" "http://127.0.0.1:$2/" >"$4" 2>&1 ||
        { cat "$4" >&2; die "wrk against $1 failed"; }
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
run_wrk nginx "$NGINX_PORT" "$WARMUP" "$DIR/warmup-nginx.txt"
log "warm-up: portcullis $WARMUP"
run_wrk portcullis "$PORTCULLIS_PORT" "$WARMUP" "$DIR/warmup-portcullis.txt"

N_RPS=(); N_P99=(); P_RPS=(); P_P99=(); total_bad=0
printf '\n%-6s %-11s %12s %10s %8s\n' round proxy "requests/s" "p99 (ms)" errors
printf '%-6s %-11s %12s %10s %8s\n' ----- ---------- ---------- -------- ------
for r in $(seq 1 "$ROUNDS"); do
    run_wrk nginx "$NGINX_PORT" "$DURATION" "$DIR/round$r-nginx.txt"
    N_RPS+=("$RPS"); N_P99+=("$P99"); total_bad=$((total_bad + BAD))
    printf '%-6s %-11s %12s %10s %8s\n' "$r" nginx "$RPS" "$P99" "$BAD"
    run_wrk portcullis "$PORTCULLIS_PORT" "$DURATION" "$DIR/round$r-portcullis.txt"
    P_RPS+=("$RPS"); P_P99+=("$P99"); total_bad=$((total_bad + BAD))
    printf '%-6s %-11s %12s %10s %8s\n' "$r" portcullis "$RPS" "$P99" "$BAD"
done

n_rps="$(median "${N_RPS[@]}")"; n_p99="$(median "${N_P99[@]}")"
p_rps="$(median "${P_RPS[@]}")"; p_p99="$(median "${P_P99[@]}")"
tput_ratio="$(awk -v a="$p_rps" -v b="$n_rps" 'BEGIN { printf "%.3f", a / b }')"
p99_ratio="$(awk -v a="$p_p99" -v b="$n_p99" 'BEGIN { printf "%.3f", a / b }')"

printf '%-6s %-11s %12s %10s\n' median nginx "$n_rps" "$n_p99"
printf '%-6s %-11s %12s %10s\n' median portcullis "$p_rps" "$p_p99"
echo
tput_ok="$(awk -v r="$tput_ratio" -v t="$TARGET_THROUGHPUT" 'BEGIN { print (r >= t) ? "met" : "MISSED" }')"
p99_ok="$(awk -v r="$p99_ratio" -v t="$TARGET_P99" 'BEGIN { print (r <= t) ? "met" : "MISSED" }')"
printf 'throughput portcullis/nginx: %s  (target >= %s: %s)\n' "$tput_ratio" "$TARGET_THROUGHPUT" "$tput_ok"
printf 'p99        portcullis/nginx: %s  (target <= %s: %s)\n' "$p99_ratio" "$TARGET_P99" "$p99_ok"
if [ "$total_bad" -ne 0 ]; then
    printf 'WARNING: %s non-2xx responses or socket errors during the measured runs; see %s\n' "$total_bad" "$DIR"
    KEEP_TMP=1
fi
echo "RESULT throughput_ratio=$tput_ratio p99_ratio=$p99_ratio portcullis_rps=$p_rps nginx_rps=$n_rps"

if [ "$STRICT" = 1 ] && { [ "$tput_ok" != met ] || [ "$p99_ok" != met ] || [ "$total_bad" -ne 0 ]; }; then
    exit 3
fi
