#!/usr/bin/env bash
# Builds ci/sm90_exp.cu once per KVINFER_EXP_* switch (in parallel) into $EXP_BIN/exp_<SWITCH> (/tmp) and runs
# each on the argument sets of EXP_RUNS (';'-separated "L causal heads head_dim"): which part of the
# Hopper kernel limits it. BASE is the kernel as shipped; TRACE adds CTA 0's event timeline.
# Needs the nvidia-cutlass headers (ci/gpu.sh installs the carried wheel).
cd "$(dirname "$0")/.."
INC=$(python3 -c "import importlib.util as u,os;s=u.find_spec('cutlass_library');print(os.path.join(list(s.submodule_search_locations)[0],'source','include'))" 2>/dev/null || echo /tmp/kvinfer-site/cutlass_library/source/include)
[ -d "$INC" ] || INC=/tmp/kvinfer-site/cutlass_library/source/include
EXPS=${KVINFER_EXPS:-BASE NO_FENCE NO_LOADS NO_SOFTMAX NO_PINGPONG}
BIN=${EXP_BIN:-/tmp}  # build/ keeps them between device calls while the machine stays warm
mkdir -p "$BIN"
for v in $EXPS; do
  nvcc -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -O3 -I cuda -I cpp/src -I cpp/include \
    -I third_party/dlpack/include -isystem "$INC" -DKVINFER_EXP_$v ci/sm90_exp.cu -o "$BIN/exp_$v" &
done
wait
[ -n "${EXP_BUILD_ONLY:-}" ] && exit 0  # build the switches only (ci/paged_exp.sh runs them)
IFS=';' read -ra RUNS <<< "${EXP_RUNS:-4096 0;4096 1}"
for v in $EXPS; do
  echo "== $v"
  for a in "${RUNS[@]}"; do "$BIN/exp_$v" $a; done
done
