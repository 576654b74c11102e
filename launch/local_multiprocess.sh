#!/usr/bin/env bash
# Runs N JAX processes on this machine (CPU, gloo collectives), each with D fake devices, all
# running the same command: the multi-host code path of a TPU pod, on one box.
#
#   launch/local_multiprocess.sh N [--devices_per_process=D] [--port=P] -- python launch/pretrain.py --config=... --workdir=...
#
# Logs of process i go to <workdir-or-.>/process_<i>.log; process 0 is also streamed here.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 N [--devices_per_process=D] [--port=P] -- COMMAND..." >&2
  exit 2
fi
num=$1; shift
devices=1
port=$(( 20000 + RANDOM % 20000 ))
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --devices_per_process=*) devices="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "${1:-}" = "--" ] && shift
logdir="${MMPOINT_LOGDIR:-.}"
mkdir -p "$logdir"

export JAX_PLATFORMS=cpu
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup INT TERM
for ((i = 0; i < num; i++)); do
  "$@" --coordinator="localhost:${port}" --num_processes="$num" --process_id="$i" \
    >"$logdir/process_${i}.log" 2>&1 &
  pids+=($!)
done
tail -n +1 -f "$logdir/process_0.log" --pid="${pids[0]}" &
tailpid=$!
status=0
for p in "${pids[@]}"; do
  wait "$p" || status=$?
done
kill "$tailpid" 2>/dev/null || true
exit "$status"
