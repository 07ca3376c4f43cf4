#!/usr/bin/env bash
# FA2-class prefill tile experiment: build the package (sm_90 FA2 instances only, bf16, D 128/256)
# with the prefill tile patched to each of PREFILL_VARIANTS, each into its own site dir, and run
# ci/fa2_prefill_exp.py (kvinfer fa2 vs torch flash) with each.
# A variant is name:kv128:st128:kv256:warps256:rows256:st256 (KV tile and stages at D 128; KV tile,
# warps along the rows, tile rows and stages at D 256).
# Usage: ci/prefill_exp.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
R=$PWD
OUT_DIR=$(mkdir -p "${1:-ci-out}" && cd "${1:-ci-out}" && pwd)
SHAPES=${PREFILL_SHAPES:-128:4096:n 128:4096:c 128:16384:n 256:4096:n 256:4096:c 256:16384:n}
export KVINFER_CUDA_ARCHS=90 KVINFER_HEAD_DIMS="128;256" KVINFER_DTYPES=bf16
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
kernel=cuda/sm80/attention_kernel.cuh
launch=cpp/src/launch.h
cp $kernel /tmp/pexp_kernel.orig; cp $launch /tmp/pexp_launch.orig
restore() { cp /tmp/pexp_kernel.orig $kernel; cp /tmp/pexp_launch.orig $launch; }
for v in ${PREFILL_VARIANTS:-base:64:2:64:8:128:2}; do
  IFS=: read -r name kv128 st128 kv256 w256 rows256 st256 <<< "$v"
  restore
  sed -i -e "s/static constexpr int kWarpsQ = kDecode ? 1 : (D == 256 ? 8 : 4);/static constexpr int kWarpsQ = kDecode ? 1 : (D == 256 ? $w256 : 4);/" \
         -e "s/kKV = kLean ? 32 : 64;/kKV = kLean ? 32 : kDecode ? 64 : (D == 64 ? 64 : D == 128 ? $kv128 : $kv256);/" \
         -e "s/kStages = kDecode ? (D == 64 ? 4 : 2) : 2;/kStages = kDecode ? (D == 64 ? 4 : 2) : (D == 128 ? $st128 : D == 256 ? $st256 : 2);/" $kernel
  sed -i "s/return t == AttnTile::kPrefill ? 128 : 16;/return t == AttnTile::kPrefill ? (head_dim == 256 ? $rows256 : 128) : 16;/; s/AttnTile t, int \/\*head_dim\*\/)/AttnTile t, int head_dim)/" $launch
  grep -q "D == 128 ? $kv128 : $kv256" $kernel && grep -q "D == 256 ? $w256 : 4" $kernel && grep -q "D == 128 ? $st128" $kernel \
    && grep -q "head_dim == 256 ? $rows256 : 128" $launch || { echo "patch failed"; restore; exit 1; }
  site=/tmp/pexp_$name
  start=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps --target $site . > "$OUT_DIR/build_$name.log" 2>&1 \
    || { tail -30 "$OUT_DIR/build_$name.log"; restore; exit 1; }
  echo "== $name: D128 kv $kv128 stages $st128; D256 kv $kv256 warps $w256 rows $rows256 stages $st256 (build $(( $(date +%s) - start )) s)"
  (cd /tmp && PYTHONPATH=$site python3 $R/ci/fa2_prefill_exp.py $SHAPES 2>&1 | tee -a "$OUT_DIR/prefill_exp.log")
  if [ "${PREFILL_NCU:-}" = "$name" ]; then  # counters of one kvinfer and one flash launch; the SASS
    for k in attention_kernel flash_fwd; do
      (cd /tmp && PYTHONPATH=$site timeout 200 ncu --clock-control none -k regex:$k -c 1 --section SpeedOfLight \
        --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
        python3 $R/ci/fa2_prefill_exp.py 128:4096:n > "$OUT_DIR/ncu_${name}_$k.txt" 2>&1; echo "ncu $k rc $?")
    done
    find $site/kvinfer -name "*.so*" -exec cuobjdump -sass {} \; 2>/dev/null | gzip > "$OUT_DIR/sass_$name.txt.gz"
  fi
done
restore
