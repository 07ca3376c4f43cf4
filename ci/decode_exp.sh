#!/usr/bin/env bash
# Decode-tile experiment: build the package with the D 128 decode tile's shape patched to each of
# DECODE_VARIANTS (default "64:4:2 64:4:3"; each KV tile rows:KV warps:stages), each into its own
# site dir, and run bench_decode on DECODE_SHAPES with each. Only D 128 bf16 instances are built.
# Usage: ci/decode_exp.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(mkdir -p "${1:-ci-out}" && cd "${1:-ci-out}" && pwd)
SHAPES=${DECODE_SHAPES:-1x32768,16x2048,16x8192,64x2048,128x2048,256x8192}
export KVINFER_CUDA_ARCHS=${KVINFER_CUDA_ARCHS:-90a} KVINFER_HEAD_DIMS=128 KVINFER_DTYPES=bf16
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kvinfer-deps .whl/*.whl || exit 1
kernel=cuda/sm80/attention_kernel.cuh
launch=cpp/src/launch.h
cp $kernel /tmp/decode_exp_kernel.orig; cp $launch /tmp/decode_exp_launch.orig
restore() { cp /tmp/decode_exp_kernel.orig $kernel; cp /tmp/decode_exp_launch.orig $launch; }
for v in ${DECODE_VARIANTS:-64:4:2 64:4:3}; do
  IFS=: read -r kv warps stages <<< "$v"
  restore
  # The wide decode tile at D 128 only (its KV tile in attn_tile_kv, which the planner's split unit follows).
  sed -i -e "s/kWarpsKV = kLean ? 2 : kDecode ? 4 : 1;/kWarpsKV = kLean ? 2 : kDecode ? (D == 128 ? $warps : 4) : 1;/" \
         -e "s/kStages = kDecode ? (D == 64 ? 4 : 2) : kSplitKV ? 1 : 2;/kStages = kDecode ? (D == 64 ? 4 : D == 128 \&\& !kLean ? $stages : 2) : kSplitKV ? 1 : 2;/" $kernel
  sed -i "s/  return t == AttnTile::kDecodeLean ? 32 :/  return t == AttnTile::kDecode \&\& head_dim == 128 ? $kv : t == AttnTile::kDecodeLean ? 32 :/" $launch
  grep -q "D == 128 ? $warps : 4" $kernel && grep -q "!kLean ? $stages : 2" $kernel && grep -q "head_dim == 128 ? $kv :" $launch \
    || { echo "patch failed"; restore; exit 1; }
  site=/tmp/decode_exp_$kv-$warps-$stages
  start=$(date +%s)
  PYTHONPATH=/tmp/kvinfer-deps python3 -m pip install -q --no-build-isolation --no-deps --target $site . \
    > "$OUT_DIR/build_$kv-$warps-$stages.log" 2>&1 || { tail -30 "$OUT_DIR/build_$kv-$warps-$stages.log"; restore; exit 1; }
  echo "== KV tile $kv, $warps KV warps, $stages stages (build $(( $(date +%s) - start )) s)"
  PYTHONPATH=$site python3 benchmarks/bench_decode.py --shapes "$SHAPES" --json "$OUT_DIR/decode_$kv-$warps-$stages.json" 2>&1 \
    | grep -E "^\| [0-9]|Error|error" | cut -d'|' -f2,3,5,11,12,16
done
restore
