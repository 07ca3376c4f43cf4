#!/usr/bin/env bash
# Paged against contiguous KV in the kernel harness (ci/sm90_exp.cu, EXP_PAGE): builds the switches of
# KVINFER_EXPS once, then runs each on EXP_RUNS with contiguous KV, paged TMA and paged cp.async.
cd "$(dirname "$0")/.."
KVINFER_EXPS=${KVINFER_EXPS:-BASE} EXP_BUILD_ONLY=1 bash ci/sm90_exp.sh || exit 1
IFS=';' read -ra RUNS <<< "${EXP_RUNS:-8192 0 32 128;8192 1 32 128}"
for v in ${KVINFER_EXPS:-BASE}; do
  echo "== $v"
  for a in "${RUNS[@]}"; do
    "${EXP_BIN:-/tmp}/exp_$v" $a
    EXP_PAGE=${EXP_PAGE_SIZE:-16} "${EXP_BIN:-/tmp}/exp_$v" $a
    [ -n "${EXP_PAGED_CPASYNC:-}" ] && EXP_PAGE=${EXP_PAGE_SIZE:-16} EXP_NO_TMA=1 "${EXP_BIN:-/tmp}/exp_$v" $a
  done
done
