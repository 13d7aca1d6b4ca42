#!/usr/bin/env bash
# Stop the daemons that tests/slurm/start.sh started (only those: it reads its own PID files).
# Safe to run when nothing is running. BITBUDGET_SLURM_PURGE=1 also deletes the state directory.
# It also removes the configuration start.sh wrote to /etc/slurm: left there, it points every
# SLURM client at the stopped controller, and each `scontrol` (the SLURM executor plugin runs
# one whenever snakemake starts) waits ~9 s on it before failing.
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

# the configuration: only files that start.sh rendered (their first line is the template's)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF_DIR=/etc/slurm  # where start.sh writes it
for name in slurm.conf gres.conf slurmdbd.conf; do
    conf=$CONF_DIR/$name
    if [ -f "$conf" ] && [ "$(head -n 1 "$conf")" = "$(head -n 1 "$HERE/$name")" ]; then
        rm -f "$conf" && echo "removed $conf"
    fi
done
# start.sh made the directory when no package had (keep it when a package owns it or it holds more)
if [ -d "$CONF_DIR" ] && ! dpkg -S "$CONF_DIR" >/dev/null 2>&1; then rmdir "$CONF_DIR" 2>/dev/null || true; fi
[ "${BITBUDGET_SLURM_PURGE:-0}" = 1 ] && rm -rf "$STATE" && echo "removed $STATE"
exit 0
