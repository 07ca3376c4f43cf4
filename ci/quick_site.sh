#!/usr/bin/env bash
# Builds the package into a site dir ($1, default /tmp/kvinfer-quick) for the archs / head dims / dtypes in
# KVINFER_CUDA_ARCHS / KVINFER_HEAD_DIMS / KVINFER_DTYPES (default 90a / 128 / bf16), for experiments on the
# device machine: PYTHONPATH=$1 python3 ci/<experiment>.py (run from outside the repo).
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=${1:-/tmp/kvinfer-quick}
export KVINFER_CUDA_ARCHS=${KVINFER_CUDA_ARCHS:-90a} KVINFER_HEAD_DIMS=${KVINFER_HEAD_DIMS:-128} KVINFER_DTYPES=${KVINFER_DTYPES:-bf16}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kvinfer-deps .whl/*.whl 2>/dev/null
start=$(date +%s)
PYTHONPATH=/tmp/kvinfer-deps python3 -m pip install -q --no-build-isolation --no-deps --target "$SITE" --upgrade . \
  > /tmp/quick_site_build.log 2>&1 || { tail -30 /tmp/quick_site_build.log; exit 1; }
echo "built $SITE in $(( $(date +%s) - start )) s"
