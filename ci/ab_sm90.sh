#!/usr/bin/env bash
# A/B of the Hopper kernel: the working tree against exp_old/ (a `git archive` of the base commit,
# untracked), both built by ci/sm90_exp.sh, run alternately on EXP_RUNS (its format), AB_ROUNDS times.
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/kvinfer-site .whl/*.whl 2>/dev/null
mkdir -p build/exp_new build/exp_old
EXP_BIN=$PWD/build/exp_new KVINFER_EXPS=${KVINFER_EXPS:-BASE} EXP_BUILD_ONLY=1 bash ci/sm90_exp.sh &
(cd exp_old && EXP_BIN=$PWD/../build/exp_old KVINFER_EXPS=${KVINFER_EXPS:-BASE} EXP_BUILD_ONLY=1 bash ci/sm90_exp.sh) &
wait
IFS=';' read -ra RUNS <<< "${EXP_RUNS:-1024 0 256 256}"
for r in $(seq ${AB_ROUNDS:-2}); do
  for v in old new; do
    echo "== $v round $r"
    for a in "${RUNS[@]}"; do for e in ${KVINFER_EXPS:-BASE}; do build/exp_$v/exp_$e $a; done; done
  done
done
