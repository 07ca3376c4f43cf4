#!/usr/bin/env bash
# Builds ci/merge_exp.cu once per KVINFER_PAIR_MIN_BLOCKS value in MERGE_EXP_MINB (in parallel) and runs
# each: the pair merge's bandwidth against its register cap. Usage: ci/merge_exp.sh
cd "$(dirname "$0")/.."
VARIANTS=${MERGE_EXP_MINB:-1 5}
for v in $VARIANTS; do
  nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a -O3 -Xptxas=-v -I cuda -I cpp/src -I cpp/include \
    -I third_party/dlpack/include -DKVINFER_PAIR_MIN_BLOCKS=$v ci/merge_exp.cu -o /tmp/merge_exp_$v 2>&1 \
    | grep -A2 "pair_kernel.*Li8" | grep -E "registers" | sed "s/^/min blocks $v: /" &
done
wait
for v in $VARIANTS; do echo "== min blocks $v"; /tmp/merge_exp_$v; done
