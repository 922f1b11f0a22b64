#!/usr/bin/env bash
# Zero-downtime binary upgrade of a running Portcullis (pingora socket handover).
#
# The procedure (pingora's graceful upgrade):
#   1. validate the config with the NEW binary (`portcullis check`);
#   2. start the new binary with `portcullis run --config F --upgrade`; it does not bind its
#      listeners, it waits (about 5 s) on `server.upgrade_sock` for the old process to send them;
#   3. send SIGQUIT to the old process: it sends its listening sockets over that socket, keeps
#      serving for 5 s, then stops accepting and drains in-flight requests for up to
#      `server.grace_period` (+ `server.shutdown_timeout`) before it exits.
# The kernel keeps the listening sockets open throughout, so no connection is refused.
#
# Usage:
#   Under systemd (portcullis.service from this directory), as root:
#     upgrade.sh [--install NEW_BINARY] [--unit portcullis.service] [--wait-old]
#       installs NEW_BINARY over the unit's binary (atomic rename), then asks the unit to upgrade:
#       it drops a request file and runs `systemctl reload`, whose second ExecReload line runs
#       this script in --systemd-reload mode INSIDE the unit (same cgroup, user and sandbox), so
#       systemd keeps supervising the new process and MainPID follows it through PIDFile=.
#   Without systemd:
#     upgrade.sh --pid OLD_PID [--config F] [--binary B] [--daemon] [--log FILE] [--wait-old]
#       (no --pid: the PID is read from server.pid_file, which pingora writes in --daemon mode)
#   Internal (the unit's ExecReload):
#     upgrade.sh --systemd-reload --pid $MAINPID --config F --binary B
#       does nothing unless the request file exists, so a plain `systemctl reload` stays a
#       config reload (the SIGHUP on the first ExecReload line).
set -euo pipefail

CONFIG=/etc/portcullis/config.yaml
BINARY=""
INSTALL=""
UNIT=portcullis.service
OLD_PID=""
MODE=""            # systemd | manual | systemd-reload
DAEMON=0
LOG=""
WAIT_OLD=0
REQUEST=/run/portcullis/upgrade.request
UPGRADE_SOCK="${UPGRADE_SOCK:-}"
PID_FILE="${PID_FILE:-}"
HANDOVER_TIMEOUT=15   # seconds to wait for the new process to take the sockets

log() { printf 'upgrade: %s\n' "$*" >&2; }
die() { printf 'upgrade: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG="$2"; shift 2 ;;
        --binary) BINARY="$2"; shift 2 ;;
        --install) INSTALL="$2"; shift 2 ;;
        --unit) UNIT="$2"; shift 2 ;;
        --pid) OLD_PID="$2"; shift 2 ;;
        --daemon) DAEMON=1; shift ;;
        --log) LOG="$2"; shift 2 ;;
        --wait-old) WAIT_OLD=1; shift ;;
        --request) REQUEST="$2"; shift 2 ;;
        --upgrade-sock) UPGRADE_SOCK="$2"; shift 2 ;;
        --pid-file) PID_FILE="$2"; shift 2 ;;
        --systemd-reload) MODE=systemd-reload; shift ;;
        --no-systemd) MODE=manual; shift ;;
        -h | --help) usage 0 ;;
        *) log "unknown argument: $1"; usage 2 ;;
    esac
done

# ------------------------------------------------------------------ helpers
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# yaml_server_key KEY: the value of `server.KEY` in $CONFIG when written as a plain scalar in
# block style (`  upgrade_sock: /run/portcullis/upgrade.sock`), quotes and comments removed.
yaml_server_key() {
    awk -v key="$1" '
        /^[^[:space:]#]/ { in_server = ($0 ~ /^server:[[:space:]]*(#.*)?$/) ; next }
        in_server && $0 ~ "^[[:space:]]+" key ":" {
            v = $0; sub("^[[:space:]]+" key ":[[:space:]]*", "", v)
            sub(/[[:space:]]+#.*$/, "", v); sub(/[[:space:]]+$/, "", v)
            gsub(/^["\047]|["\047]$/, "", v); print v; exit
        }' "$CONFIG"
}

resolve_paths() {
    [ -r "$CONFIG" ] || die "cannot read config $CONFIG"
    # Absolute config path: a --daemon process chdirs to / and re-reads the file on reload.
    CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"
    [ -n "$UPGRADE_SOCK" ] || UPGRADE_SOCK="$(yaml_server_key upgrade_sock)"
    [ -n "$UPGRADE_SOCK" ] || UPGRADE_SOCK=/tmp/portcullis_upgrade.sock
    [ -n "$PID_FILE" ] || PID_FILE="$(yaml_server_key pid_file)"
    [ -n "$PID_FILE" ] || PID_FILE=/tmp/portcullis.pid
    case "$UPGRADE_SOCK$PID_FILE" in *'${'*) die "server.upgrade_sock/pid_file use \${ENV}; pass --upgrade-sock/--pid-file" ;; esac
}

# handover OLD_PID: the procedure itself. Prints the new PID on stdout.
handover() {
    local old="$1" new rc
    alive "$old" || die "old process $old is not running"
    log "checking $CONFIG with $BINARY"
    "$BINARY" check --config "$CONFIG" >&2 || die "the new binary rejects $CONFIG; nothing changed"

    # A stale socket would make us believe the new process is waiting; pingora unlinks and
    # re-creates it anyway.
    rm -f "$UPGRADE_SOCK"
    local sockdir; sockdir="$(dirname "$UPGRADE_SOCK")"
    [ -w "$sockdir" ] || die "$sockdir (directory of server.upgrade_sock) is not writable by $(id -un)"

    log "starting $BINARY run --config $CONFIG --upgrade$([ "$DAEMON" = 1 ] && echo ' --daemon')"
    if [ "$DAEMON" = 1 ]; then
        # The foreground process receives the sockets, forks the daemon, writes PID_FILE, exits 0.
        # Its output goes to our stderr (the journal under systemd), never to our stdout.
        "$BINARY" run --config "$CONFIG" --upgrade --daemon </dev/null >&2 &
    else
        [ -n "$LOG" ] || LOG="$(dirname "$CONFIG")/portcullis.log"
        # setsid: the new process must outlive this script and its terminal.
        setsid "$BINARY" run --config "$CONFIG" --upgrade </dev/null >>"$LOG" 2>&1 &
    fi
    new=$!

    # pingora waits about 5 s for the old process; send SIGQUIT as soon as it listens.
    for _ in $(seq 1 80); do
        [ -S "$UPGRADE_SOCK" ] && break
        if ! alive "$new"; then
            wait "$new" 2>/dev/null; rc=$?
            die "the new process exited (status $rc) before waiting on $UPGRADE_SOCK; the old process $old keeps serving"
        fi
        sleep 0.05
    done
    if [ ! -S "$UPGRADE_SOCK" ]; then
        kill -INT "$new" 2>/dev/null || true
        die "the new process never listened on $UPGRADE_SOCK; stopped it; the old process $old keeps serving"
    fi

    log "new process $new waits on $UPGRADE_SOCK; sending SIGQUIT to old process $old"
    kill -QUIT "$old"

    # From here on the old process is going away whatever happens.
    if [ "$DAEMON" = 1 ]; then
        rc=0; wait "$new" || rc=$?
        [ "$rc" -eq 0 ] || die "the new process failed to take over (status $rc); the old process $old is shutting down: restart the service NOW"
        for _ in $(seq 1 $((HANDOVER_TIMEOUT * 20))); do
            new="$(cat "$PID_FILE" 2>/dev/null || true)"
            [ -n "$new" ] && [ "$new" != "$old" ] && alive "$new" && break
            new=""; sleep 0.05
        done
        [ -n "$new" ] || die "no live daemon PID in $PID_FILE after the handover; the old process $old is shutting down: restart the service NOW"
    else
        # The new process removes the socket once it holds the listeners.
        for _ in $(seq 1 $((HANDOVER_TIMEOUT * 20))); do
            [ -S "$UPGRADE_SOCK" ] || break
            alive "$new" || break
            sleep 0.05
        done
        alive "$new" || die "the new process $new died during the handover; the old process $old is shutting down: restart NOW (log: $LOG)"
        [ ! -S "$UPGRADE_SOCK" ] || die "the new process $new did not take the sockets within ${HANDOVER_TIMEOUT}s"
    fi
    log "handover done: new process $new serves; old process $old drains (5 s, then up to server.grace_period) and exits"
    echo "$new"
}

wait_old() {
    local old="$1"
    log "waiting for old process $old to exit"
    while alive "$old"; do sleep 0.5; done
    log "old process $old exited"
}

# ------------------------------------------------------------------ modes
if [ -z "$MODE" ]; then
    if [ -z "$OLD_PID" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] &&
        systemctl is-active --quiet "$UNIT" 2>/dev/null; then
        MODE=systemd
    else
        MODE=manual
    fi
fi

case "$MODE" in
systemd-reload)
    # Runs inside the unit as its user, from the second ExecReload line.
    [ -e "$REQUEST" ] || exit 0
    rm -f "$REQUEST"
    [ -n "$OLD_PID" ] || OLD_PID="${MAINPID:-}"
    [ -n "$OLD_PID" ] || die "no --pid and no \$MAINPID"
    [ -n "$BINARY" ] || die "--binary is required with --systemd-reload"
    DAEMON=1
    resolve_paths
    handover "$OLD_PID" >/dev/null
    ;;

systemd)
    [ "$(id -u)" -eq 0 ] || die "run as root (it installs the binary and runs systemctl reload)"
    exec_start="$(systemctl show -p ExecStart --value "$UNIT")"
    [ -n "$BINARY" ] || BINARY="$(printf '%s\n' "$exec_start" | sed -n 's/.*path=\([^ ;]*\).*/\1/p')"
    [ -n "$BINARY" ] || die "cannot find the unit's binary; pass --binary"
    unit_type="$(systemctl show -p Type --value "$UNIT")"
    [ "$unit_type" = forking ] || die "$UNIT has Type=$unit_type; the in-unit upgrade needs Type=forking with PIDFile= (see deploy/systemd/portcullis.service)"
    unit_pidfile="$(systemctl show -p PIDFile --value "$UNIT")"
    resolve_paths
    [ "$unit_pidfile" = "$PID_FILE" ] ||
        die "$UNIT has PIDFile=$unit_pidfile but $CONFIG has server.pid_file=$PID_FILE; they must be equal"
    if [ -n "$INSTALL" ]; then
        [ -x "$INSTALL" ] || die "$INSTALL is not executable"
        log "new binary: $("$INSTALL" --version 2>&1 || true)"
        "$INSTALL" check --config "$CONFIG" >&2 || die "$INSTALL rejects $CONFIG; nothing installed"
        # Atomic replace: the running process keeps its (now unlinked) inode.
        install -m 0755 "$INSTALL" "$BINARY.new.$$"
        mv -f "$BINARY.new.$$" "$BINARY"
        log "installed $INSTALL as $BINARY"
    fi
    old="$(systemctl show -p MainPID --value "$UNIT")"
    alive "$old" || die "$UNIT has no running main process"
    log "$UNIT main PID $old; requesting the upgrade and running systemctl reload"
    touch "$REQUEST"
    if ! systemctl reload "$UNIT"; then
        rm -f "$REQUEST"
        die "systemctl reload failed; see: journalctl -u $UNIT -n 50"
    fi
    new="$(systemctl show -p MainPID --value "$UNIT")"
    if [ -e "$REQUEST" ]; then
        rm -f "$REQUEST"
        die "the unit did not run the upgrade (is the second ExecReload line of portcullis.service installed?)"
    fi
    [ "$new" != "$old" ] && alive "$new" || die "MainPID is still $new after the reload; see: journalctl -u $UNIT -n 50"
    log "upgraded: $UNIT main PID $old -> $new ($(readlink "/proc/$new/exe" 2>/dev/null || echo "$BINARY"))"
    if [ "$WAIT_OLD" = 1 ]; then wait_old "$old"; fi
    ;;

manual)
    [ -n "$BINARY" ] || BINARY="$(command -v portcullis || true)"
    [ -n "$BINARY" ] || die "no portcullis in PATH; pass --binary"
    resolve_paths
    if [ -z "$OLD_PID" ]; then
        OLD_PID="$(cat "$PID_FILE" 2>/dev/null || true)"
        [ -n "$OLD_PID" ] || die "no --pid and no PID in $PID_FILE"
        DAEMON=1   # a PID file exists only in --daemon mode: keep the new one a daemon too
    fi
    new="$(handover "$OLD_PID")"
    if [ "$WAIT_OLD" = 1 ]; then wait_old "$OLD_PID"; fi
    echo "$new"
    ;;
esac
