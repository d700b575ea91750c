#!/usr/bin/env bash
# Stop what tests/slurm/start-slurm.sh started: cancel jobs, then each daemon by its pid file.
set -u
scancel --user=root 2>/dev/null || true
stop_pidfile() {
  local pf=$1 pid
  [ -s "$pf" ] || return 0
  pid=$(cat "$pf")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  rm -f "$pf" # a stale slurmctld pid file breaks the package's prerm script
}
stop_pidfile /run/slurmd.pid
stop_pidfile /run/slurmctld.pid
stop_pidfile /run/slurmdbd.pid
[ -x /etc/init.d/mariadb ] && /etc/init.d/mariadb stop >/dev/null 2>&1 || true
stop_pidfile /run/munge/munged.pid
exit 0
