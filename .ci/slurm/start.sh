#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine, for CI and for trying
# `snakemake --profile slurm` without a cluster:
#
#   sudo .ci/slurm/start.sh      # installs slurm-wlm + munge if missing, starts the daemons
#   sinfo; srun hostname         # the cluster answers
#   sudo .ci/slurm/stop.sh       # stops them again (by their PID files)
#
# munged, slurmctld and slurmd run as plain daemons (no systemd): one node named after
# this host with its real CPUs and memory, one partition `debug` (default), two *fake*
# GPUs (character devices that are /dev/null underneath) so that the workflow's
# `--gpus=1` requests are scheduled and get CUDA_VISIBLE_DEVICES, no cgroups, no
# accounting database (so `sacct` does not work: use `--slurm-status-command squeue`).
#
# Idempotent: when the cluster from an earlier run still answers, it is left as it is
# (run stop.sh first to apply a changed configuration); half-started leftovers are
# stopped and started afresh.
# Needs root (apt-get, /etc/slurm, /etc/munge). Environment knobs:
#   SLURM_CI_DIR   state, spool, PID and log folder (default /tmp/kdspectra-slurm)
#   SLURM_CI_GPUS  number of fake GPUs on the node (default 2; 0 = none)
#   SLURM_CI_WAIT  seconds to wait for the node to become idle (default 60)
#   KDSPECTRA_SLURM_MEM_MB  node memory advertised to slurm, in MB (default 16384, or the
#                  machine's own when it has less): the CI node is as small as the 16 GB
#                  node the demo's derived requests must fit
# The smoke tests read srun's stdout only (`srun --quiet`, stderr to a log) and accept
# exactly one line: scheduler chatter such as "job queued and waiting for resources" can
# never pass for a value. They run once the node is idle with an empty queue.
# `source .ci/slurm/start.sh` defines the helpers below without starting anything (tests).
# Logs: $SLURM_CI_DIR/log/{munged,slurmctld,slurmd,apt}.log — printed on failure.
set -euo pipefail

STATE=${SLURM_CI_DIR:-/tmp/kdspectra-slurm}
GPUS=${SLURM_CI_GPUS:-2}
WAIT=${SLURM_CI_WAIT:-60}
MARK="# managed by kdspectra .ci/slurm/start.sh"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
LOG=$STATE/log
RUN=$STATE/run
HERE=$(cd "$(dirname "$0")" && pwd)
START=$(date +%s)

say() { echo "[slurm-ci] $*"; }
die() {
    echo "[slurm-ci] ERROR: $*" >&2
    for f in "$LOG"/munged.log "$LOG"/slurmctld.log "$LOG"/slurmd.log; do
        [ -s "$f" ] && { echo "---- last lines of $f" >&2; tail -n 25 "$f" >&2; }
    done
    exit 1
}

alive() { # alive PIDFILE -> true when the PID in it is a running process
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n 1; }

one_line() { # one_line TEXT -> TEXT's only line; status 1 when it has none or several
    local text=${1%$'\n'}
    text=${text%$'\r'}
    [[ -n "$text" && "$text" != *$'\n'* ]] || return 1
    printf '%s\n' "$text"
}

advertised_mem() { # advertised_mem REAL_MB -> MB for slurm.conf: min(REAL_MB, KDSPECTRA_SLURM_MEM_MB)
    local real=$1 cap=${KDSPECTRA_SLURM_MEM_MB:-16384}
    [[ "$cap" =~ ^[0-9]+$ && "$cap" -gt 0 ]] ||
        die "KDSPECTRA_SLURM_MEM_MB: expected a positive whole number of MB, found '$cap'"
    echo $((real < cap ? real : cap))
}

wait_idle() { # wait_idle SECONDS: until the node is idle and no job is queued or running
    local deadline=$(($(date +%s) + $1)) state="" queue=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        state=$(node_state)
        queue=$(squeue -h -o '%i %T' 2>/dev/null || echo "squeue failed")
        [[ "$state" == idle* && -z "$queue" ]] && return 0
        case "$state" in
        down* | drain* | drained*)
            # ReturnToService=2 normally does this; a registration race can still leave it down.
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
            ;;
        esac
        sleep 0.5
    done
    die "node $HOST is '$state' with queue '${queue//$'\n'/; }', not idle and empty, after $1 s ($(sinfo -h -N -o '%N %T %E' 2>&1))"
}

srun_value() { # srun_value SRUN_ARGS... -> the one line srun's command printed on stdout
    local out status err=$LOG/srun.err
    out=$(timeout 120 srun --quiet "$@" 2>"$err") && status=0 || status=$?
    [ "$status" = 0 ] || die "srun $* failed (exit $status): stdout '$out', stderr '$(cat "$err")'"
    one_line "$out" || die "srun $*: expected one line on stdout, found '$out' (stderr '$(cat "$err")')"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    return 0 # sourced: helpers only
fi

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, /etc/slurm, /etc/munge, daemons); try: sudo $0"

# ---------------------------------------------------------------- already running?
if alive "$RUN/munged.pid" && alive "$RUN/slurmctld.pid" && alive "$RUN/slurmd.pid" &&
    [[ "$(node_state)" =~ ^(idle|mixed|allocated) ]]; then
    say "already running (node $(sinfo -h -N -o '%N %T' | head -n 1)); nothing to do"
    exit 0
fi
# Leftovers of a half-started or crashed cluster go first.
"$HERE/stop.sh" >/dev/null 2>&1 || true

mkdir -p "$LOG" "$RUN" "$STATE/ctld" "$STATE/slurmd" "$STATE/dev"

# ---------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
    ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (apt-get; log: $LOG/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    # No init system here: make sure package scripts do not try to start services.
    tmp_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        tmp_policy=/usr/sbin/policy-rc.d
    fi
    apt_install() { apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$LOG/apt.log" 2>&1; }
    if ! apt_install; then
        say "apt-get install failed; running apt-get update and trying again"
        apt-get update -q >>"$LOG/apt.log" 2>&1 || true
        apt_install || { tail -n 30 "$LOG/apt.log" >&2; [ -n "$tmp_policy" ] && rm -f "$tmp_policy"; die "could not install slurm-wlm and munge (see $LOG/apt.log)"; }
    fi
    [ -n "$tmp_policy" ] && rm -f "$tmp_policy"
fi
say "slurm $(slurmctld -V | awk '{print $2}'), munge $(munged --version 2>&1 | awk '{print $1}' | sed 's/munge-//')"

# ---------------------------------------------------------------- munge
# The default socket (/run/munge/munge.socket.2) is where slurm's auth/munge looks.
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
if id munge >/dev/null 2>&1; then
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    touch "$LOG/munged.log" "$RUN/munged.pid" && chown munge:munge "$LOG/munged.log" "$RUN/munged.pid"
    runuser -u munge -- munged --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" ||
        die "munged did not start"
else
    munged --force --pid-file="$RUN/munged.pid" --log-file="$LOG/munged.log" ||
        die "munged did not start"
fi
for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munge does not answer (munge -n | unmunge)"
say "munged running (pid $(cat "$RUN/munged.pid"))"

# ---------------------------------------------------------------- slurm.conf
HOST=$(hostname -s)
# `slurmd -C` reports this machine as slurm sees it: CPUs, sockets/cores/threads, memory.
HW=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
CPUS=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
REAL_MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
[ -n "$CPUS" ] && [ -n "$REAL_MEM" ] || die "could not read CPUs/RealMemory from 'slurmd -C': $HW"
MEM=$(advertised_mem "$REAL_MEM")
HW=$(sed "s/RealMemory=[0-9]*/RealMemory=$MEM/" <<<"$HW")
# Memory per CPU for jobs that ask for none: a share of the node, so one job cannot take it all.
DEFMEM=$((MEM / CPUS))
[ "$DEFMEM" -gt 2048 ] && DEFMEM=2048
NODE_GRES=""
[ "$GPUS" -gt 0 ] && NODE_GRES="Gres=gpu:$GPUS"

mkdir -p /etc/slurm
for f in "$CONF" "$GRES"; do
    if [ -e "$f" ] && ! grep -qF "$MARK" "$f"; then
        die "$f exists and was not written by this script; move it away to use the CI cluster"
    fi
done

cat >"$CONF" <<EOF
$MARK
# Single-node CI cluster on $HOST; state under $STATE. Stop with .ci/slurm/stop.sh.
ClusterName=kdspectra-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups here (containers, CI runners): processes are tracked through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$DEFMEM
# Finished jobs stay visible to squeue for an hour: the Snakemake plugin's squeue
# status command needs MinJobAge >= 3 x slurm-init-seconds-before-status-checks.
MinJobAge=3600
# scancel / preemption: SIGTERM, then SIGKILL after KillWait seconds.
KillWait=30
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 $HW $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

{
    echo "$MARK"
    echo "AutoDetect=off"
    if [ "$GPUS" -gt 0 ]; then
        # Fake GPUs: character devices 1,3 (/dev/null). slurm schedules and binds them
        # (CUDA_VISIBLE_DEVICES) like real ones; no process can compute on them.
        for i in $(seq 0 $((GPUS - 1))); do
            [ -c "$STATE/dev/gpu$i" ] || mknod "$STATE/dev/gpu$i" c 1 3
        done
        echo "NodeName=$HOST Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]"
    fi
} >"$GRES"

# ---------------------------------------------------------------- daemons
say "starting slurmctld (clean state) and slurmd on $HOST: $CPUS CPUs, ${MEM} MB (of ${REAL_MEM}), $GPUS fake GPU(s)"
slurmctld -c || die "slurmctld did not start"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q UP || die "slurmctld does not answer (scontrol ping)"
slurmd || die "slurmd did not start"

wait_idle "$WAIT"

# ---------------------------------------------------------------- smoke test
out=$(srun_value -N1 -n1 hostname)
[ "$out" = "$HOST" ] || die "srun hostname printed '$out', expected '$HOST'"
if [ "$GPUS" -gt 0 ]; then
    wait_idle "$WAIT"
    out=$(srun_value -n1 --gpus=1 printenv CUDA_VISIBLE_DEVICES)
    [ "$out" = 0 ] || die "srun --gpus=1: CUDA_VISIBLE_DEVICES='$out', expected 0"
fi
say "cluster up in $(($(date +%s) - START)) s: $(sinfo -h -o '%P %a %D %T %C(cpus A/I/O/T) %G')"
say "logs: $LOG; stop with $HERE/stop.sh"
