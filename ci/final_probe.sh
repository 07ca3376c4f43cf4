#!/usr/bin/env bash
# After ci/gpu.sh (package installed): plan() pieces, and, where Nsight Compute is installed, the
# decode kernel's memory and stall sections at two shapes. Usage: ci/final_probe.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(mkdir -p "${1:-ci-out}" && cd "${1:-ci-out}" && pwd)
export PYTHONPATH=/tmp/kvinfer-site${PYTHONPATH:+:$PYTHONPATH}
(cd /tmp && python3 "$OLDPWD/ci/profile_plan.py") 2>&1 | tee "$OUT_DIR/profile_plan.md"
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  for shape in "16 2048" "128 2048"; do
    echo "== ncu decode $shape"
    (cd /tmp && timeout 120 "$NCU" -k regex:attention_kernel -c 1 --section SpeedOfLight --section Occupancy \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats \
      python3 "$OLDPWD/ci/decode_ncu.py" $shape) 2>&1 | grep -vE "^==PROF==|^\s*$" | tail -80
  done > "$OUT_DIR/ncu_decode.txt"
  grep -E "Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Stall|Warp Cycles Per Issued|L2 Hit|Registers|Block Limit" "$OUT_DIR/ncu_decode.txt" | head -60
else
  echo "no ncu on this machine"
fi
