#!/usr/bin/env bash
# A/B of the FA2-class kernel against main's HEAD: builds the package twice (sm_90 FA2 instances, bf16,
# head dims AB_DIMS) into separate sites and build dirs, A with HEAD's copy of AB_FILES, B with the
# working tree's, then runs ci/fa2_prefill_exp.py (kvinfer fa2 vs torch flash, same process) with
# each, alternating AB_ROUNDS times (AB_CMD: another command instead, e.g. a benchmark; AB_ARCHS: 90a
# to build the Hopper kernels too).
# Usage: ci/ab_fa2.sh OUT_DIR SHAPE...
set -uo pipefail
cd "$(dirname "$0")/.."
R=$PWD
OUT_DIR=$(mkdir -p "$1" && cd "$1" && pwd); shift
FILES=${AB_FILES:-cuda/sm80/attention_kernel.cuh}
export KVINFER_CUDA_ARCHS=${AB_ARCHS:-90} KVINFER_HEAD_DIMS=${AB_DIMS:-64;256} KVINFER_DTYPES=bf16
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
rm -rf /tmp/ab_build_* /tmp/ab_site_*  # a warm machine keeps them: CMake caches the head dims
keep() { echo /tmp/ab_new/${1//\//__}; }  # the working tree's copy of a file (paths kept apart: two files may share a name)
mkdir -p /tmp/ab_new; for f in $FILES; do cp $f $(keep $f); done
build() {  # $1: name
  local start=$(date +%s)
  python3 -m pip install -q --no-build-isolation --no-deps --config-settings=build-dir=/tmp/ab_build_$1 \
    --target /tmp/ab_site_$1 . > "$OUT_DIR/build_$1.log" 2>&1 || { tail -30 "$OUT_DIR/build_$1.log"; return 1; }
  echo "built $1 in $(( $(date +%s) - start )) s"
}
# A: HEAD's files, or those under AB_BASE_DIR (a `git archive` of the base; the device copy's .git may
# be older than the working tree's commits).
for f in $FILES; do if [ -n "${AB_BASE_DIR:-}" ]; then cp "$AB_BASE_DIR/$f" $f; else git show HEAD:$f > $f; fi; done
build A; rc=$?
[ $rc = 0 ] || exit 1
# AB_VARIANTS: B variants, one "name:sed-expression" per line, each the working tree's files
# with a sed expression applied, or "name:@path": that file instead (one file in AB_FILES); default:
# one variant B, the tree as it is.
names=A
mapfile -t variants <<< "${AB_VARIANTS:-B:}"
for v in "${variants[@]}"; do
  name=${v%%:*}; expr=${v#*:}
  for f in $FILES; do
    cp $(keep $f) $f
    case "$expr" in @*) cp "${expr#@}" $f ;; ?*) sed -i "$expr" $f ;; esac
  done
  build $name && names="$names $name"
done
for f in $FILES; do cp $(keep $f) $f; done
for r in $(seq ${AB_ROUNDS:-2}); do
  for v in $names; do
    echo "== $v round $r"
    if [ -n "${AB_CMD:-}" ]; then  # another measurement, run in the repo root with the variant's site
      PYTHONPATH=/tmp/ab_site_$v bash -c "$AB_CMD" 2>&1 | tee -a "$OUT_DIR/ab_$v.log"
    else
      (cd /tmp && PYTHONPATH=/tmp/ab_site_$v python3 $R/ci/fa2_prefill_exp.py "$@" 2>&1 | tee -a "$OUT_DIR/ab_$v.log")
    fi
  done
done
