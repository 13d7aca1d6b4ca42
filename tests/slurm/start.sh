#!/usr/bin/env bash
# Start a one-node SLURM cluster (slurmctld, slurmd, slurmdbd + MariaDB, munge) as plain
# background daemons for the executor tests. Run as root. Idempotent: a running cluster is reused.
#
#   tests/slurm/start.sh        # installs missing Debian packages, starts, waits until `sinfo` and `sacct` answer
#   tests/slurm/stop.sh         # stops exactly what this script started (PID files in $STATE)
#
# Environment: BITBUDGET_SLURM_STATE (default /var/tmp/bitbudget-slurm), BITBUDGET_SLURM_DB_PORT (3366),
#              BITBUDGET_SLURM_START_TIMEOUT (120 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${BITBUDGET_SLURM_STATE:-/var/tmp/bitbudget-slurm}
DB_PORT=${BITBUDGET_SLURM_DB_PORT:-3366}
CTLD_PORT=6817 SLURMD_PORT=6818 DBD_PORT=6819
GPU_TYPE=testgpu
TIMEOUT=${BITBUDGET_SLURM_START_TIMEOUT:-120}
MARKER="# bitbudget test cluster"
T0=$(date +%s.%N)

log() { printf '[slurm-start %5.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
die() { echo "start.sh: $*" >&2; for f in "$STATE"/log/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for <what> <command...>
    local what=$1; shift
    local end=$(( $(date +%s) + TIMEOUT ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || die "timed out waiting for $what"
        sleep 0.5
    done
}

[ "$(id -u)" -eq 0 ] || { echo "start.sh must run as root" >&2; exit 1; }

# --- packages --------------------------------------------------------------------------------
need=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client slurmdbd:slurmdbd \
            mariadbd:mariadb-server bc:bc; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # policy-rc.d keeps the packages' init scripts from starting daemons we do not track
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
log "packages present"

mkdir -p "$STATE"/{run,log,ctld,slurmd,dev,mysql}
chmod 755 "$STATE"

# --- configuration (/etc/slurm is where sinfo/sbatch/sacct look by default) ----------------------
if [ -f /etc/slurm/slurm.conf ] && ! head -n 1 /etc/slurm/slurm.conf | grep -q "^$MARKER"; then
    die "/etc/slurm/slurm.conf exists and was not written by this script; refusing to overwrite it"
fi
HOST=$(hostname -s)
MEM_TOTAL=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
NODE_LINE=$(slurmd -C | head -n 1 | sed -E "s/RealMemory=[0-9]+/RealMemory=$(( MEM_TOTAL * 80 / 100 ))/; s/^NodeName=[^ ]+/NodeName=$HOST NodeAddr=127.0.0.1/")
DB_PASS_FILE=$STATE/db.pass
[ -s "$DB_PASS_FILE" ] || { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DB_PASS_FILE"; chmod 600 "$DB_PASS_FILE"; }
DB_PASS=$(cat "$DB_PASS_FILE")
render() {
    sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@GPU_TYPE@|$GPU_TYPE|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@NODE_LINE@|$NODE_LINE|g" "$1"
}
mkdir -p /etc/slurm
render "$HERE/slurm.conf" > /etc/slurm/slurm.conf
render "$HERE/gres.conf" > /etc/slurm/gres.conf
render "$HERE/slurmdbd.conf" > /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
# fake GPUs: character devices (same major/minor as /dev/null)
for i in 0 1; do [ -c "$STATE/dev/nvidia$i" ] || mknod "$STATE/dev/nvidia$i" c 1 3; done
log "configuration written ($NODE_LINE, 2 x gpu:$GPU_TYPE)"

# --- munge -----------------------------------------------------------------------------------
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munge already running (not ours)"
else
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
    chown -R munge:munge /etc/munge; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 755 /run/munge
    setsid runuser -u munge -- munged -F --log-file="$STATE/log/munged.log" </dev/null >/dev/null 2>&1 &
    echo $! > "$STATE/run/munged.pid"
    wait_for munge sh -c 'munge -n | unmunge'
    log "munged started"
fi

# --- MariaDB (own instance, own datadir, loopback TCP port) -------------------------------------
SOCK=$STATE/run/mysqld.sock
if alive "$STATE/run/mariadbd.pid"; then
    log "mariadb already running"
else
    if [ ! -d "$STATE/mysql/mysql" ]; then
        mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket \
            > "$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
    fi
    setsid mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$SOCK" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=64M \
        --log-error="$STATE/log/mariadb.log" --pid-file="$STATE/run/mariadbd.real.pid" </dev/null >/dev/null 2>&1 &
    echo $! > "$STATE/run/mariadbd.pid"
    wait_for mariadb mariadb --no-defaults -S "$SOCK" -u root -e 'SELECT 1'
    log "mariadb started"
fi
mariadb --no-defaults -S "$SOCK" -u root <<SQL || die "could not create the slurm database user"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- slurmdbd, accounts ----------------------------------------------------------------------
if alive "$STATE/run/slurmdbd.pid"; then
    log "slurmdbd already running"
else
    setsid slurmdbd -D </dev/null >>"$STATE/log/slurmdbd.out" 2>&1 &
    echo $! > "$STATE/run/slurmdbd.pid"
    wait_for slurmdbd sacctmgr -n list cluster
    log "slurmdbd started"
fi
sacctmgr -n list cluster format=cluster | grep -qw bitbudget || sacctmgr -i add cluster bitbudget >/dev/null
sacctmgr -n list account format=account | grep -qw bitbudget || \
    sacctmgr -i add account bitbudget cluster=bitbudget description=tests organization=bitbudget >/dev/null
sacctmgr -n list assoc user=root account=bitbudget format=user | grep -qw root || \
    sacctmgr -i add user root account=bitbudget cluster=bitbudget >/dev/null
log "accounting ready (cluster bitbudget, account bitbudget for root)"

# --- slurmctld, slurmd -----------------------------------------------------------------------
# daemons are restarted (not `scontrol reconfigure`d) so a changed GPU set-up is always picked up
for d in slurmd slurmctld; do
    if alive "$STATE/run/$d.launcher.pid"; then kill "$(cat "$STATE/run/$d.launcher.pid")" 2>/dev/null || true; sleep 1; fi
done
setsid slurmctld -D -i </dev/null >>"$STATE/log/slurmctld.out" 2>&1 &
echo $! > "$STATE/run/slurmctld.launcher.pid"
wait_for slurmctld scontrol ping
setsid slurmd -D </dev/null >>"$STATE/log/slurmd.out" 2>&1 &
echo $! > "$STATE/run/slurmd.launcher.pid"
node_idle() { sinfo -h -n "$HOST" -o '%T' | grep -Eq '^(idle|mixed|allocated)'; }
wait_for "node $HOST to become idle" node_idle
log "slurmctld + slurmd up"

wait_for sacct sacct -n -X -S now
T1=$(date +%s.%N)
printf '%.1f\n' "$(echo "$T1 - $T0" | bc)" > "$STATE/start-seconds"
sinfo
log "cluster ready in $(cat "$STATE/start-seconds") s"
