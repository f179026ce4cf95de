#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine (as root), for the tests in tests/slurm/: installs Debian's
# slurm-wlm and munge when missing, writes a munge key and /etc/slurm/slurm.conf for $(hostname), starts
# munged, slurmctld and slurmd, and waits until `srun -N1 hostname` answers. Idempotent: a cluster that
# already answers is left as it is. Prints one line.
set -euo pipefail
host=$(hostname)
t0=$(date +%s)
if timeout 20 srun -N1 -t 1 hostname >/dev/null 2>&1; then
  echo "slurm: already up on $host"; exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: one key, owner munge, mode 400; the daemon runs as munge
mkdir -p /etc/munge /var/run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
chmod 755 /var/run/munge
if ! munge -n >/dev/null 2>&1 ; then
  runuser -u munge -- /usr/sbin/munged --force
fi

cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
# written by .ci/slurm_up.sh: one node, one partition, requeue allowed, jobs up to a day; addresses are
# loopback so a fresh machine whose hostname does not resolve still works
ClusterName=vittui
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobRequeue=1
ReturnToService=2
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/var/run/slurmctld.pid
SlurmdPidFile=/var/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
MinJobAge=600
KillWait=30
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=1-00:00:00 State=UP OverSubscribe=FORCE:4
CONF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 60); do
  if timeout 20 srun -N1 -t 1 hostname >/dev/null 2>&1; then
    echo "slurm: one-node cluster up on $host in $(( $(date +%s) - t0 )) s"; exit 0
  fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 2
done
echo "slurm: srun -N1 hostname did not answer within 2 minutes (logs in /var/log/slurm/)" >&2
exit 1
