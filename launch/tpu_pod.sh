#!/usr/bin/env bash
# Pretrain (or run any launch/ entry point) on a Cloud TPU VM pod slice.
#
# Creates the slice when it does not exist (or reuses it), copies this checkout to every worker,
# installs the package with the TPU build of JAX, starts the same command on all workers
# (`gcloud compute tpus tpu-vm ssh --worker=all`) and streams the log of worker 0.
#
#   launch/tpu_pod.sh --name=mmpoint-v4-32 --zone=us-central2-b --accelerator=v4-32 \
#       --config=configs/pretrain_shapenet.py --workdir=gs://my-bucket/mmpoint/run1 \
#       [--entry=launch/pretrain.py] [--version=tpu-ubuntu2204-base] [--spot] [-- extra flags]
#
# Extra flags after `--` go to the entry point, e.g. `-- --config.data.records=gs://b/shards`.
# Records and the workdir should live in a GCS bucket the TPU VMs can read and write.
# Preemption: spot/preemptible slices send SIGTERM; the run saves and exits 0, and re-running
# this script resumes from the latest checkpoint in the workdir.
set -euo pipefail

name="" zone="" accel="" config="" workdir="" entry="launch/pretrain.py"
version="tpu-ubuntu2204-base" spot="" project_flag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --accelerator=*) accel="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --entry=*) entry="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project_flag="--project=${1#*=}" ;;
    --spot) spot="--spot" ;;
    --) shift; break ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done
for v in name zone accel config workdir; do
  if [ -z "${!v}" ]; then echo "missing --${v/accel/accelerator}" >&2; exit 2; fi
done
extra=("$@")
command -v gcloud >/dev/null || { echo "gcloud CLI not found (https://cloud.google.com/sdk)" >&2; exit 1; }

tpu() { gcloud compute tpus tpu-vm "$@" --zone="$zone" $project_flag; }

if tpu describe "$name" >/dev/null 2>&1; then
  echo "reusing TPU VM $name"
else
  echo "creating TPU VM $name ($accel, $version)"
  tpu create "$name" --accelerator-type="$accel" --version="$version" $spot
fi

repo_dir="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$(mktemp -d)/mmpoint_jax.tar.gz"
git -C "$repo_dir" archive --format=tar.gz -o "$bundle" HEAD
tpu scp "$bundle" "$name":~/mmpoint_jax.tar.gz --worker=all

# Same install on every worker: the pinned stack, then JAX's TPU build of the same version.
jax_version="$(grep -E '^jax==' "$repo_dir/requirements.txt" | cut -d= -f3)"
tpu ssh "$name" --worker=all --command="set -e
  rm -rf ~/mmpoint_jax && mkdir -p ~/mmpoint_jax && tar -xzf ~/mmpoint_jax.tar.gz -C ~/mmpoint_jax
  cd ~/mmpoint_jax && python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip
  grep -v -E '^(torch|jax|jaxlib)==' requirements.txt > /tmp/req.txt
  .venv/bin/pip install -q -r /tmp/req.txt && .venv/bin/pip install -q 'jax[tpu]==${jax_version}'
  .venv/bin/pip install -q --no-deps -e .
  sudo apt-get install -y -q libusb-1.0-0 libjemalloc2 >/dev/null 2>&1 || true"

quoted_extra=""
for a in "${extra[@]}"; do quoted_extra+=" $(printf '%q' "$a")"; done
run_cmd="cd ~/mmpoint_jax && nohup .venv/bin/python $entry --distributed --config=$config --workdir=$workdir$quoted_extra > ~/run.log 2>&1 &"
echo "starting on all workers: $run_cmd"
tpu ssh "$name" --worker=all --command="$run_cmd"
echo "streaming worker 0 (Ctrl-C stops streaming, not the run)"
tpu ssh "$name" --worker=0 --command="tail -n +1 -F ~/run.log"
