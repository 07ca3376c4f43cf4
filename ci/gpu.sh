#!/usr/bin/env bash
# The GPU run: build on the GPU machine, run the whole test suite (CPU + GPU) and the benchmarks.
# Usage: ci/gpu.sh [OUT_DIR]   (default ci-out/). Writes build.log, info.txt (nvidia-smi + kvinfer info),
# pytest.log, bench.md (all benchmark tables) and bench_*.json. Wheels in .whl/ (e.g. nvidia-cutlass, for a machine without network) are used first.
# Env: KVINFER_CUDA_ARCHS / KVINFER_HEAD_DIMS / KVINFER_DTYPES narrow the build (README "Build options");
#      KVINFER_SKIP_BUILD=1 reuses the installed package; KVINFER_BENCH=0 skips benchmarks;
#      KVINFER_TESTS (default "tests") and KVINFER_BENCHES (default "benchmarks/bench_*.py") narrow the run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(mkdir -p "${1:-ci-out}" && cd "${1:-ci-out}" && pwd)
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kvinfer-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/kvinfer-site${PYTHONPATH:+:$PYTHONPATH}
fi
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv > "$OUT_DIR/info.txt" 2>&1

if [ "${KVINFER_SKIP_BUILD:-0}" != 1 ]; then
  start=$(date +%s)
  # Its own build directory: experiment builds (pip --target, patched sources) use the default one, and
  # the device's copy of the tree keeps the local file times, so a restored source can look older than
  # an object built from its patched version.
  if ! python3 -m pip install --no-build-isolation -v --config-settings=build-dir=build/gpu . \
      > "$OUT_DIR/build.log" 2>&1; then
    tail -60 "$OUT_DIR/build.log"; echo "BUILD FAILED"; exit 1
  fi
  echo "build: $(( $(date +%s) - start )) s"
fi
(cd /tmp && python3 -m kvinfer info) | tee -a "$OUT_DIR/info.txt"

python3 -m pytest ${KVINFER_TESTS:-tests} -q -rs -p no:cacheprovider > "$OUT_DIR/pytest.log" 2>&1
rc=$?
# The attention tests again with "auto" resolving to the FA2-class kernels (on sm90 it takes the
# Hopper kernels for prefill), so both backends pass the same suite. Appended to pytest.log.
if [ "${KVINFER_FA2_PASS:-1}" != 0 ]; then
  fa2_tests=$(ls tests/gpu/test_attention_single.py tests/gpu/test_attention_batch.py tests/gpu/test_attention_graph.py 2>/dev/null)
  { echo; echo "== KVINFER_BACKEND=fa2 pass"; KVINFER_BACKEND=fa2 python3 -m pytest $fa2_tests -q -rs -p no:cacheprovider; } \
    >> "$OUT_DIR/pytest.log" 2>&1 || rc=1
fi
grep -E "^(FAILED|ERROR)" "$OUT_DIR/pytest.log" | head -40
grep -E "^[0-9]+ (passed|failed)|== KVINFER" "$OUT_DIR/pytest.log"

if [ "${KVINFER_BENCH:-1}" != 0 ]; then
  for b in ${KVINFER_BENCHES:-benchmarks/bench_*.py}; do
    n=$(basename "$b" .py)
    # One markdown file for all benchmarks (the device returns at most 8 files), one JSON each.
    { echo "## $n"; python3 "$b" --json "$OUT_DIR/$n.json" 2>&1 || { echo "$n FAILED"; touch "$OUT_DIR/.bench_failed"; }; } \
      | tee -a "$OUT_DIR/bench.md"
  done
fi
[ -e "$OUT_DIR/.bench_failed" ] && { rc=1; rm -f "$OUT_DIR/.bench_failed"; }
echo "GPU: $(sed -n 2p "$OUT_DIR/info.txt")"
exit $rc
