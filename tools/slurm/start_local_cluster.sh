#!/usr/bin/env bash
# A one-node Slurm cluster on this Debian machine, from Debian's packages, for the tests of
# `run_exp.py --backend slurm` (tests/test_slurm_cluster.py). Run as root; about 2 minutes
# the first time (package install), a few seconds after that; does nothing if a cluster
# already answers.
#
#   sudo tools/slurm/start_local_cluster.sh          # install if needed, configure, start
#   tools/slurm/start_local_cluster.sh --stop        # stop the daemons it started
#
# The cluster is deliberately bare, like a small real one without its database:
#   * munge + slurmctld + slurmd on this host, one partition "debug" holding this node;
#   * no accounting (AccountingStorageType=accounting_storage/none): `sacct` fails, so the
#     launcher must follow its jobs with squeue/scontrol;
#   * no cgroup plugin (proctrack/linuxproc, task/none) and NO cgroup.conf: with Slurm 22.05
#     a cgroup.conf saying CgroupPlugin=disabled makes slurmd exit at start;
#   * no GPU (a CPU cluster), MaxTime=60 min on the partition and MaxArraySize=4, so that
#     the launcher's checks before submitting (time limit, array splitting) are exercised;
#   * KillWait=5: a cancelled job gets SIGKILL 5 s after SIGTERM (the default is 30).
# An existing /etc/slurm/slurm.conf that this script did not write is never replaced.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by tools/slurm/start_local_cluster.sh"
LOG=/var/log/slurm

say() { echo "start_local_cluster: $*"; }
die() { echo "start_local_cluster: error: $*" >&2; exit 1; }

stop() {
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if [[ -s $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
            say "stopped $(basename "$pidfile" .pid)"
        fi
    done
}

if [[ ${1:-} == --stop ]]; then
    stop
    exit 0
fi

cluster_up() {
    command -v sinfo >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q "is UP" \
        && [[ $(timeout 10 sinfo -h -o %T 2>/dev/null | head -1) =~ ^(idle|mixed|allocated|completing) ]]
}

if cluster_up; then
    say "a cluster already answers: $(sinfo -h -o '%P %D node(s) %T' | head -1)"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root (apt-get and the daemons); run it with sudo"
[[ -r /etc/debian_version ]] || die "written for Debian (apt-get, Debian's slurm-wlm and munge packages)"

# -- packages ------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends slurm-wlm munge >/tmp/start_local_cluster.apt.log 2>&1; then
        apt-get update >>/tmp/start_local_cluster.apt.log 2>&1 || true
        apt-get install -y --no-install-recommends slurm-wlm munge >>/tmp/start_local_cluster.apt.log 2>&1 \
            || die "apt-get install slurm-wlm munge failed (log: /tmp/start_local_cluster.apt.log)"
    fi
fi
say "$(slurmctld -V)"

# -- munge ---------------------------------------------------------------------------------
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n </dev/null | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
    say "munged started"
fi

# -- configuration -------------------------------------------------------------------------
host=$(hostname -s)
if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script: not replacing it"
fi
node=$(slurmd -C | head -1)   # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
[[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOG"
cat >"$CONF" <<EOF
$MARKER: a one-node test cluster
ClusterName=localtest
SlurmctldHost=$host
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=300
MaxArraySize=4
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=60 State=UP
EOF
[[ -e /etc/slurm/cgroup.conf ]] && say "warning: /etc/slurm/cgroup.conf exists; if slurmd exits at start, move it away"
say "wrote $CONF (node: ${node%% Boards*})"

# -- daemons -------------------------------------------------------------------------------
stop
sleep 0.5
slurmctld || die "slurmctld did not start (log: $LOG/slurmctld.log)"
slurmd || die "slurmd did not start (log: $LOG/slurmd.log)"
for _ in $(seq 60); do
    if cluster_up; then
        scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
        say "up: $(sinfo -h -o '%P %D node(s) %T, %c CPU(s), time limit %l' | head -1)"
        exit 0
    fi
    sleep 1
done
tail -5 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
die "the cluster did not come up within 60 s"
