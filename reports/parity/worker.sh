#!/usr/bin/env bash
# One parity worker per core: pops the first line of QUEUE (under a lock) and runs it, until the queue is empty.
#   bash reports/parity/worker.sh QUEUE LOGDIR &     (twice, for two cores)
set -u
queue=$1; logs=$2; mkdir -p "$logs"
while true; do
  job=$(flock "$queue.lock" bash -c 'line=$(head -n1 "$0"); [ -n "$line" ] && sed -i 1d "$0"; echo "$line"' "$queue")
  [ -z "$job" ] && break
  name="$(date +%s%N)-$$"      # one log per job (job lines share long prefixes)
  echo "$(date -Is) start $job" >> "$logs/worker.log"
  bash -c "$job" > "$logs/$name.log" 2>&1
  rc=$?       # before any command substitution resets $?
  echo "$(date -Is) end rc=$rc $job" >> "$logs/worker.log"
done
