#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start.sh started (only those: it reads its own PID files).
# Safe to run when nothing is running. BITBUDGET_SLURM_PURGE=1 also deletes the state directory.
set -uo pipefail
STATE=${BITBUDGET_SLURM_STATE:-/var/tmp/bitbudget-slurm}
[ -d "$STATE/run" ] || { echo "stop.sh: nothing started ($STATE/run missing)"; exit 0; }

stop() {  # stop <name>: SIGTERM the process from $STATE/run/<name>.pid, then SIGKILL after 15 s
    local pidfile=$STATE/run/$1.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && { echo "stop.sh: $1 ($pid) did not stop, killing"; kill -KILL "$pid" 2>/dev/null; }
        echo "stopped $1 ($pid)"
    fi
    rm -f "$pidfile"
}

# slurmd first: its job steps (slurmstepd) are ended by slurmd/slurmctld; jobs left behind are cancelled
if command -v scancel >/dev/null && [ -f "$STATE/run/slurmctld.launcher.pid" ]; then
    timeout 10 scancel --full --user=root 2>/dev/null || true
    sleep 1
fi
stop slurmd.launcher
stop slurmctld.launcher
stop slurmdbd
stop mariadbd
stop munged
rm -f "$STATE"/run/slurmctld.pid "$STATE"/run/slurmd.pid "$STATE"/run/mariadbd.real.pid
[ "${BITBUDGET_SLURM_PURGE:-0}" = 1 ] && rm -rf "$STATE" && echo "removed $STATE"
exit 0
