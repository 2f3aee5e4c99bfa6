#!/usr/bin/env bash
# Stops what scripts/start-slurm.sh started, by PID file only.
#   --keep-munge: leave munged running.
set -uo pipefail
D=${CPN_SLURM_DIR:-/var/tmp/cpn-slurm}
files=("$D"/run/slurmd-*.pid "$D"/run/slurmctld.pid)
[ "${1:-}" = --keep-munge ] || files+=(/run/munge/munged.pid)
pids=()
for f in "${files[@]}"; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  rm -f "$f"
  kill -TERM "$pid" 2>/dev/null && pids+=("$pid")  # all at once: each slurmd takes ~2 s
done
for _ in $(seq 150); do
  alive=()
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
  [ ${#alive[@]} = 0 ] && exit 0
  sleep 0.1
done
kill -KILL "${alive[@]}" 2>/dev/null
exit 0
