#!/usr/bin/env bash
# Starts a single-machine Slurm cluster for cpn's tests: munged, slurmctld and
# N slurmd daemons (fake nodes n1..nN on localhost), each with fake GPUs as
# GRES backed by dummy device files, so Slurm sets CUDA_VISIBLE_DEVICES the
# way it does on a real GPU node. Partitions: `gpu` (all nodes, the default)
# and `small` (node n1 only). Installs slurm-wlm and munge if missing. Run as
# root. scripts/stop-slurm.sh stops it.
#   CPN_SLURM_NODES=2  CPN_SLURM_GPUS=4 (per node)  CPN_SLURM_DIR=/var/tmp/cpn-slurm
set -euo pipefail
NODES=${CPN_SLURM_NODES:-2}
GPUS=${CPN_SLURM_GPUS:-4}
D=${CPN_SLURM_DIR:-/var/tmp/cpn-slurm}
CONF=/etc/slurm
HERE=$(cd "$(dirname "$0")" && pwd)
say() { echo "[start-slurm] $*" >&2; }

if [ "$(id -u)" != 0 ]; then say "must run as root"; exit 1; fi
missing=0
for b in slurmctld slurmd sbatch munged; do command -v $b >/dev/null || missing=1; done
if [ $missing = 1 ]; then
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

CPN_SLURM_DIR=$D bash "$HERE/stop-slurm.sh" --keep-munge || true
mkdir -p "$D"/{state,log,run,dev} "$CONF"
rm -rf "${D:?}"/state/* "${D:?}"/spool-* "${D:?}"/log/*

# munge: the credential service every Slurm daemon and client uses.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null | unmunge >/dev/null || { say "munged is not answering"; exit 1; }

# Fake GPUs: GRES needs File= to be a device; clones of /dev/null will do.
for ((g = 0; g < GPUS; g++)); do
  rm -f "$D/dev/fakegpu$g"
  mknod -m 0666 "$D/dev/fakegpu$g" c 1 3 2>/dev/null || ln -s /dev/null "$D/dev/fakegpu$g"
done
if ((NODES > 1)); then nodelist="n[1-$NODES]"; ports="Port=[17001-$((17000 + NODES))]"; else nodelist=n1; ports=Port=17001; fi

cat >"$CONF/slurm.conf" <<CONF_EOF
# written by cpn scripts/start-slurm.sh
ClusterName=cpn-test
SlurmctldHost=localhost
SlurmctldPort=6817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool-%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
DefMemPerCPU=100
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.log
MinJobAge=600
KillWait=2
InactiveLimit=0
GresTypes=gpu
NodeName=$nodelist NodeHostname=localhost NodeAddr=127.0.0.1 $ports CPUs=4 RealMemory=4000 Gres=gpu:$GPUS State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=small Nodes=n1 MaxTime=INFINITE State=UP
CONF_EOF
echo "NodeName=$nodelist Name=gpu File=$D/dev/fakegpu[0-$((GPUS - 1))]" >"$CONF/gres.conf"

slurmctld -i
for _ in $(seq 50); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
scontrol ping >/dev/null 2>&1 || { say "slurmctld did not start"; tail -n 20 "$D/log/slurmctld.log" >&2; exit 1; }
for ((i = 1; i <= NODES; i++)); do
  mkdir -p "$D/spool-n$i"
  slurmd -N "n$i"
done
states=""
for _ in $(seq 120); do
  states=$(sinfo -h -N -o '%T' 2>/dev/null | sort -u | tr '\n' ' ') || states=""
  [ "$states" = "idle " ] && break
  sleep 0.5
done
if [ "$states" != "idle " ]; then
  say "nodes not idle after 60 s: $states"
  sinfo -N -l || true
  tail -n 20 "$D"/log/*.log >&2 || true
  exit 1
fi
say "up: $(sinfo -h -o '%P %D nodes %G %T' | tr '\n' ';')"
