#!/usr/bin/env bash
# Device experiment loop: for each "name=VARIANT" build the package (sm_90 FA2 instances, bf16, chosen
# head dims) with patch.py's variant applied, then run "cmd" with it. Usage: run.sh OUT 'name=variant:dims:cmd' ...
set -uo pipefail
cd "$(dirname "$0")/../.."
R=$PWD; export R
OUT_DIR=$1; shift
mkdir -p $OUT_DIR
export KVINFER_CUDA_ARCHS=90 KVINFER_DTYPES=bf16 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
files="cuda/sm80/attention_kernel.cuh cuda/sm80/split_merge.cuh cpp/src/planner.cpp"
mkdir -p /tmp/exp_orig; for f in $files; do cp $f /tmp/exp_orig/$(basename $f); done
restore() { for f in $files; do cp /tmp/exp_orig/$(basename $f) $f; done; }
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}
  variant=${rest%%:*}; rest=${rest#*:}
  dims=${rest%%:*}; cmd=${rest#*:}
  restore
  python3 ci/exp_fa2/patch.py $variant || { restore; exit 1; }
  site=/tmp/s_$name; start=$(date +%s)
  KVINFER_HEAD_DIMS="$dims" python3 -m pip install -q --no-build-isolation --no-deps --target $site . > $OUT_DIR/build_$name.log 2>&1 \
    || { tail -30 $OUT_DIR/build_$name.log; restore; exit 1; }
  echo "== $name ($variant, D $dims, build $(( $(date +%s) - start )) s): $cmd"
  (cd /tmp && OUT=$OUT_DIR PYTHONPATH=$site timeout 300 bash -c "$cmd" 2>&1 | tee $OUT_DIR/run_$name.log)
done
restore
