#!/usr/bin/env bash
# Start a real single-node Slurm cluster (controller + compute node on this host) from Debian's
# packages, as root and without systemd, with a stand-in GPU (GRES gpu:1 backed by a character
# device) and, by default, slurmdbd + MariaDB so that `sacct` works.
#   WITH_DBD=1 (default)  accounting via slurmdbd/MariaDB; WITH_DBD=0: none (use squeue status)
#   SLURM_CPUS=N          CPUs to advertise (default 4; may exceed the real count)
#   SLURM_GPUS=N          stand-in GPUs to advertise (default 2)
# Stop it with tests/slurm/stop-slurm.sh. Safe to run twice: running daemons are kept.
set -euo pipefail
WITH_DBD=${WITH_DBD:-1}
NODE=$(hostname -s)
CPUS=${SLURM_CPUS:-4}
GPUS=${SLURM_GPUS:-2}
MEM_MB=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
log() { echo "[start-slurm $(date +%T)] $*"; }
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

export DEBIAN_FRONTEND=noninteractive
pkgs="munge slurmctld slurmd slurm-client"
[ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  log "apt-get install $pkgs"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi
munge -n </dev/null | unmunge >/dev/null

install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
devices=()
for i in $(seq 0 $((GPUS - 1))); do
  # Same device numbers as /dev/null, so no tool mistakes it for an NVIDIA GPU.
  [ -e /dev/fakegpu$i ] || mknod -m 666 /dev/fakegpu$i c 1 3
  devices+=("/dev/fakegpu$i")
done

if [ "$WITH_DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment"
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
${ACCT}
JobCompType=jobcomp/none
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
printf 'NodeName=%s Name=gpu File=%s\n' "$NODE" "/dev/fakegpu[0-$((GPUS - 1))]" > /etc/slurm/gres.conf

if [ "$WITH_DBD" = 1 ] && ! running /run/slurmdbd.pid; then
  log "starting mariadb"
  /etc/init.d/mariadb start >/dev/null
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbpass
StorageLoc=slurm_acct_db
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
  log "starting slurmdbd"
  /usr/sbin/slurmdbd
  for _ in $(seq 1 60); do (echo >/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.5; done
  sacctmgr -i add cluster ci >/dev/null 2>&1 || true
fi

if ! running /run/slurmctld.pid; then
  # -c: with no controller running, any saved job is stale (a machine copied from a disk whose
  # cluster was mid-run restored those jobs and came up "mixed"), so start from a clean state.
  log "starting slurmctld"
  /usr/sbin/slurmctld -c
fi
for _ in $(seq 1 60); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  /usr/sbin/slurmd
fi
state=unknown
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
sinfo -N -o '%N %T %c %m %G'
if [ "$state" != idle ]; then
  echo "node not idle: $state" >&2
  squeue >&2 || true
  tail -n 20 /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log >&2
  exit 1
fi
log "slurm is up (${CPUS} CPUs, gpu:${GPUS}, accounting: $([ "$WITH_DBD" = 1 ] && echo slurmdbd || echo none))"
