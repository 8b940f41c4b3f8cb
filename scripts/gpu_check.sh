#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: the CuPy and torch-CUDA tests, then the benchmark.
#
#   bash scripts/gpu_check.sh OUTDIR [PARTS...]
#
# PARTS (default, in this order): cold tests train bench cnn profile; `accuracy` (the book's CNNs
# trained on the GPU) runs only when named. Each part has its own time limit, so one slow part
# cannot starve the others.
#
# Needs numpy, cupy, pytest (and torch for the torch rows) and array-api-compat; where pip cannot
# reach an index, put the wheels of what is missing in .whl/ (git-ignored): they are installed
# into a private folder first. MNIST is read from .gpu/mnist/ (git-ignored) or $XPNET_MNIST_DIR;
# without it the benchmark uses synthetic data of MNIST's shape. Every result lands in OUTDIR.
# Preparing both on a machine with pip (the GPU machine's Python was 3.12):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl array-api-compat
#   mkdir -p .gpu/mnist && cp /path/to/mnist/*-ubyte.gz .gpu/mnist/
# The H200 run of this script took 231 s for: cold, tests (CuPy only, 100 s limit), bench, cnn and a
# 60 s DeepConvNet run; the torch-CUDA tests need about as long again as the CuPy ones. A device
# call may last 600 s: the default parts with XPNET_TEST_LIMIT=250 should fit one call (profile:
# about 60 s, not yet run on a GPU); run `tar czf $OUT/all.tgz -C OUTDIR .` after it, since only
# 8 files come back from a call.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/xpnet-gpu-check}}
shift || true
parts=${*:-cold tests train bench cnn profile}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/xpnet-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/xpnet-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
[ -d .gpu/mnist ] && export XPNET_MNIST_DIR="$PWD/.gpu/mnist"
has() { [[ " $parts " == *" $1 "* ]]; }
stamp() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/timeline.txt"; }

stamp start "$parts"
{
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    nproc
    python3 -c "import sys, numpy, cupy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" || true
    python3 -c "import array_api_compat; print('array_api_compat', array_api_compat.__version__)"
} 2>&1 | tee "$out/versions.txt"

if has cold; then
    stamp cold
    # a first use with an empty kernel cache (compilation), then with the cache this made
    cache=$(mktemp -d)
    for run in cold warm; do
        echo "-- $run" | tee -a "$out/cold.txt"
        CUPY_CACHE_DIR=$cache timeout 120 python3 scripts/cold_start.py --device cuda 2>&1 | tee -a "$out/cold.txt"
    done
fi
if has tests; then
    stamp tests
    # every backend-parametrized test, restricted to the GPU backends, and the GPU-only tests;
    # the whole log is kept, the summary printed
    files=$(ls tests/test_{layers,network,fused,optimizers,train,backend,core,slides,conv,batchnorm_dropout,convnet,visualize,bench}.py 2>/dev/null)
    # SIGINT at the limit: pytest then still prints the summary of what ran
    XPNET_TEST_BACKENDS=${XPNET_GPU_BACKENDS:-cupy,torch-cuda} timeout -s INT "${XPNET_TEST_LIMIT:-400}" python3 -m pytest -q -p no:cacheprovider \
        -o filterwarnings=error -m "not slow" -rfEs --tb=short $files > "$out/pytest.txt" 2>&1
    grep -E "^(FAILED|ERROR)|passed|failed" "$out/pytest.txt" | tail -n 60
fi
if has train; then
    stamp train
    # the command the project exists for, on the GPU and on this machine's CPU
    for device in ${XPNET_TRAIN_DEVICES:-cuda cpu}; do
        timeout 120 python3 scripts/train.py --device "$device" --no-progress --no-plot \
            --dataset mnist --data-dir "${XPNET_MNIST_DIR:-.gpu/mnist}" --out "/tmp/xpnet-run-$device" 2>&1 | tail -n 4 | tee -a "$out/train.txt"
    done
fi
if has bench; then
    stamp bench
    runners=${XPNET_BENCH_RUNNERS:-xpnet-cupy xpnet-torch-cuda torch-cuda xpnet-numpy torch-cpu}
    timeout "${XPNET_BENCH_LIMIT:-420}" python3 scripts/bench.py --configs slides large --runners $runners --repeat 1 \
        --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
fi
if has cnn; then
    stamp cnn
    runners=${XPNET_BENCH_RUNNERS:-xpnet-cupy xpnet-torch-cuda torch-cuda xpnet-numpy torch-cpu}
    timeout "${XPNET_CNN_LIMIT:-240}" python3 scripts/bench.py --configs simple-cnn --runners $runners \
        --repeat 1 --json "$out/bench-cnn.json" \
        2>&1 | tee "$out/bench-cnn.txt"
fi
if has profile; then
    stamp profile
    # where each step's time goes: host (launch) and device time of every part, CuPy and torch
    for backend in ${XPNET_PROFILE_BACKENDS:-cupy torch}; do
        timeout "${XPNET_PROFILE_LIMIT:-90}" python3 scripts/profile_step.py --device cuda \
            --backend "$backend" --json "$out/profile-$backend.json" 2>&1 | tee -a "$out/profile.txt"
    done
fi
if has accuracy; then
    stamp accuracy
    # the book's CNNs on MNIST, on the GPU; at the time limit SIGTERM makes train.py write its
    # checkpoint and metrics, so a cut run still brings back its curve
    for spec in ${XPNET_ACCURACY:-simple-cnn:20:150 deep-cnn:20:300}; do
        IFS=: read -r model epochs limit <<<"$spec"
        timeout -s TERM "$limit" python3 scripts/train.py --model "$model" --device cuda \
            --epochs "$epochs" --no-progress --dataset mnist \
            --data-dir "${XPNET_MNIST_DIR:-.gpu/mnist}" --out "$out/run-$model" 2>&1 \
            | grep -v "^iter " | tail -n 8 | tee -a "$out/accuracy.txt"
    done
fi
stamp done
