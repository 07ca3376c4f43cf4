#!/usr/bin/env bash
# Nsight Compute of one FA2-class prefill launch and one torch flash launch (D 128, seqlen 4096,
# non-causal, bf16): the section summaries with stall-reason details, and per-SASS-instruction
# stall samples (source page, CSV). Builds sm_90 FA2 instances only (D 128 bf16) unless
# KVINFER_SKIP_BUILD=1. Usage: ci/ncu_prefill.sh OUT_DIR [shape, default 128:4096:n]
set -uo pipefail
cd "$(dirname "$0")/.."
R=$PWD
OUT_DIR=$(mkdir -p "${1:-ci-out}" && cd "${1:-ci-out}" && pwd)
SHAPE=${2:-128:4096:n}
site=/tmp/ncu_site
if [ "${KVINFER_SKIP_BUILD:-0}" != 1 ]; then
  KVINFER_CUDA_ARCHS=90 KVINFER_HEAD_DIMS=${KVINFER_HEAD_DIMS:-128} KVINFER_DTYPES=bf16 \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-build-isolation --no-deps --target $site . \
    > "$OUT_DIR/build.log" 2>&1 || { tail -30 "$OUT_DIR/build.log"; exit 1; }
fi
cd /tmp
PYTHONPATH=$site python3 $R/ci/fa2_prefill_exp.py $SHAPE
for k in ${NCU_KERNELS:-attention_kernel flash_fwd}; do
  PYTHONPATH=$site timeout 240 ncu --clock-control none -k regex:$k -c 1 --import-source no \
    --section SpeedOfLight --section WarpStateStats --section SourceCounters --section ComputeWorkloadAnalysis \
    --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis \
    -o /tmp/ncu_$k -f python3 $R/ci/fa2_prefill_exp.py $SHAPE > "$OUT_DIR/ncu_${k}_run.log" 2>&1
  echo "ncu $k rc $?"
  ncu -i /tmp/ncu_$k.ncu-rep --print-details all > "$OUT_DIR/ncu_$k.txt" 2>&1
  ncu -i /tmp/ncu_$k.ncu-rep --page source --print-source sass --csv 2>&1 | gzip > "$OUT_DIR/src_$k.csv.gz"
done
