#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: the CuPy and torch-CUDA tests, then the benchmark.
#
#   bash scripts/gpu_check.sh [OUTDIR]
#
# Needs numpy, cupy, pytest (and torch for the torch rows) and array-api-compat; where pip cannot
# reach an index, put the wheels of what is missing in .whl/ (git-ignored) and they are installed
# into a private folder first. MNIST is read from .gpu/mnist/ (git-ignored) or $XPNET_MNIST_DIR;
# without it the benchmark uses synthetic data of MNIST's shape.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/xpnet-gpu-check}}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/xpnet-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/xpnet-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .gpu/mnist ] && export XPNET_MNIST_DIR="$PWD/.gpu/mnist"

{
    nvidia-smi -L
    python3 -c "import sys, numpy, cupy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || true
} 2>&1 | tee "$out/versions.txt"

# every backend-parametrized test, restricted to the GPU backends; real MNIST when present
XPNET_TEST_BACKENDS=cupy,torch-cuda python3 -m pytest -q -p no:cacheprovider -o filterwarnings=error \
    tests/test_slides.py tests/test_layers.py tests/test_network.py tests/test_fused.py \
    tests/test_optimizers.py tests/test_train.py tests/test_backend.py 2>&1 | tee "$out/pytest.txt"
python3 scripts/bench.py --no-slides --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"
