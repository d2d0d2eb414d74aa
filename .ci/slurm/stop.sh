#!/usr/bin/env bash
# Stop the single-node CI cluster started by .ci/slurm/start.sh: cancel its jobs, then
# stop slurmd, slurmctld and munged by their PID files (TERM, then KILL after 15 s), and
# remove the /etc/slurm files start.sh wrote. Safe to run when nothing is running.
# Leaves $SLURM_CI_DIR/log in place for reading.
set -uo pipefail

STATE=${SLURM_CI_DIR:-/tmp/kdspectra-slurm}
RUN=$STATE/run
MARK="# managed by kdspectra .ci/slurm/start.sh"

say() { echo "[slurm-ci] $*"; }

# Jobs first, so that no slurmstepd (which outlives slurmd) is left behind.
if [ -s "$RUN/slurmctld.pid" ] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null &&
    command -v squeue >/dev/null; then
    jobs=$(timeout 10 squeue -h -t PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
        say "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 30); do
            [ -z "$(timeout 5 squeue -h -t PENDING,RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
fi

stop() { # stop NAME: the daemon whose PID is in $RUN/NAME.pid
    local name=$1 pidfile="$RUN/$1.pid" pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

stop slurmd
stop slurmctld
stop munged

for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    [ -f "$f" ] && grep -qF "$MARK" "$f" && rm -f "$f"
done
exit 0
