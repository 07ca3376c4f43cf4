#!/usr/bin/env bash
# Builds ci/sm90_exp.cu once per KVINFER_EXP_* switch (in parallel) and runs each: which part of the
# Hopper kernel limits it. Needs the nvidia-cutlass headers (ci/gpu.sh installs the carried wheel).
cd "$(dirname "$0")/.."
INC=$(python3 -c "import importlib.util as u,os;s=u.find_spec('cutlass_library');print(os.path.join(list(s.submodule_search_locations)[0],'source','include'))" 2>/dev/null || echo /tmp/kvinfer-site/cutlass_library/source/include)
[ -d "$INC" ] || INC=/tmp/kvinfer-site/cutlass_library/source/include
for v in BASE ${KVINFER_EXPS:-NO_FENCE NO_LOADS NO_SOFTMAX NO_PINGPONG}; do
  nvcc -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -O3 -I cuda -I cpp/src -I cpp/include \
    -I third_party/dlpack/include -isystem "$INC" -DKVINFER_EXP_$v ci/sm90_exp.cu -o /tmp/exp_$v &
done
wait
for v in BASE ${KVINFER_EXPS:-NO_FENCE NO_LOADS NO_SOFTMAX NO_PINGPONG}; do
  echo "== $v"; /tmp/exp_$v 4096 0; /tmp/exp_$v 4096 1
done
