#!/usr/bin/env bash
# The GPU check for a lent device machine (JAX with CUDA there, no TensorFlow): one prepared script
# in stages, each writing its results under $OUT as it finishes, so a failed stage still returns the
# ones before it. Stages: the device, the backend-neutral tests on the GPU, training throughput of the
# fast and resnet defaults (images/s and MFU against the GPU's measured conv peak in the dtype used,
# the device-resident loop against host batches, XLA compile seconds, the GPU's busy share sampled
# by nvidia-smi), then `hypercnn run` (search + final training +
# report) on the CIFAR-10 training zip with a test split carved from it. Under 5 minutes in all.
#
# Here, first: bash bench/gpu_wheels.sh (wheels into .whl/, the zip into .data/, both git-excluded).
# Then the device tool: run(command="bash bench/gpu_check.sh", carry=[".whl", ".data"], timeout_s=420).
# GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh tries every stage on this CPU with tiny sizes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -d .whl ] && [ "${GPU_CHECK_SMOKE:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed" | tee "$OUT/stages.txt"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  IMAGES=512 BUDGET=3m TRAIN=1000 SPACES=fast
else
  IMAGES=51200 BUDGET=2m TRAIN=45000 SPACES=fast,resnet
fi

stage() {  # stage NAME COMMAND...: its output in $OUT/NAME.log, one line in $OUT/stages.txt
  local name=$1 started
  shift
  started=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? seconds=$(( $(date +%s) - started ))" | tee -a "$OUT/stages.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv > "$OUT/gpu.csv" 2>&1
$PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" \
  >> "$OUT/gpu.csv" 2>&1

stage tests $PY -m pytest -q -p no:cacheprovider -m backend_neutral \
  tests/spaces/test_augment_ops.py tests/spaces/test_batch_stats.py tests/spaces/test_device_loop.py \
  tests/spaces/test_spaces.py tests/search/test_jax_backend.py

nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 250 \
  > "$OUT/busy.csv" 2>/dev/null &
sampler=$!
stage throughput $PY bench/throughput.py --spaces "$SPACES" --images "$IMAGES" --timed-epochs 2 \
  --search-budget 0 --output "$OUT/bench_gpu_throughput.csv"
kill "$sampler" 2>/dev/null

stage search $PY -m search run --data .data/cifar10-train-jpeg.zip --out /tmp/gpu-run --space fast \
  --train-size "$TRAIN" --val-size 2500 --test-size 2500 --time-budget "$BUDGET" --progress epoch
cp /tmp/gpu-run/report/metrics.json "$OUT/search_metrics.json" 2>/dev/null
cp /tmp/gpu-run/trials.csv "$OUT/search_trials.csv" 2>/dev/null
echo "done: $(cat "$OUT/stages.txt" | tr '\n' ';')"
