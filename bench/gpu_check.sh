#!/usr/bin/env bash
# The one short check for a session lent a GPU (about 6-8 minutes on an H100; nothing here needs a network):
#   1. bench/bench_gpu.py: the paper networks' throughput on preprocessed tensors in bf16 and fp32 (from host
#      memory through extract_features, and device-resident), end-to-end predict with CPU preprocessing on a
#      tiny bundle built in a temporary folder, one epoch of paper-preset training on synthetic images
#      extrapolated to 59 637 galaxies; writes bench/results/<date>-<machine>-gpu.json;
#   2. the gpu-marked tests (bf16 against fp32 within the stated tolerance, 'auto' batch size).
# Usage, from anywhere:  bash bench/gpu_check.sh [extra bench_gpu.py options, e.g. --bundle PATH]
# PYTHON overrides the interpreter (default: the project's .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
# deterministic training (the paper preset's cnn.deterministic) needs this for cuBLAS on a GPU
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0))"
timeout 420 "$PYTHON" bench/bench_gpu.py --n-infer 8192 --train-n 2048 "$@"
timeout 90 "$PYTHON" -m pytest -q -p no:cacheprovider tests/cnn/test_extract_inference.py -m gpu -rs
