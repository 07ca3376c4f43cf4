#!/usr/bin/env bash
# Runs ci/decode_bulk_exp.cu (streaming probe of decode loaders, no attention math) over the decode
# benchmark's shapes: the FA2 decode kernel's cp.async loader with its split (3 CTAs / SM), dense 16 KB
# copies (what cuDNN reads), HND page copies, and whole-page all-heads copies of the NHD cache (1 CTA / SM:
# one 32 KB bulk copy, four 16 KB TMA boxes, or 2 KB rows; allheads_ldsm: the 32 KB copy read back by
# ldmatrix as decode fragments, bank conflicts included).
# Usage: ci/decode_loader_probe.sh OUT_DIR   (sm_90a device; PROBE_SHAPES="args\nargs..." replaces the list)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a -O3 ci/decode_bulk_exp.cu -o /tmp/decode_bulk_exp || exit 1
# batch kv_len splits stages mode ctas_per_sm
while read -r args; do
  [ -z "$args" ] && continue
  /tmp/decode_bulk_exp $args 200 2>&1 | tee -a "$OUT_DIR/probe.log"
done < <(if [ -n "${PROBE_SHAPES:-}" ]; then printf '%s\n' "$PROBE_SHAPES"; else cat <<'SHAPES'
16 2048 3 2 cpasync 3
16 2048 3 2 dense 3
16 2048 1 4 dense 1
16 2048 3 2 page 3
16 2048 8 3 allheads 1
16 2048 8 3 allheads_tma 1
16 2048 8 3 allheads_rows 1
16 2048 8 3 allheads_ldsm 1
16 2048 8 2 allheads_ldsm 1
16 2048 8 2 allheads_tma 1
16 2048 8 2 allheads_rows 1
16 8192 3 2 cpasync 3
16 8192 8 3 allheads 1
16 8192 8 3 allheads_tma 1
16 8192 8 3 allheads_rows 1
16 8192 8 3 allheads_ldsm 1
64 2048 1 2 cpasync 3
64 2048 2 3 allheads_tma 1
64 2048 2 3 allheads_rows 1
64 2048 2 3 allheads_ldsm 1
1 32768 47 2 cpasync 3
1 32768 128 3 allheads_tma 1
1 32768 128 3 allheads_rows 1
1 32768 128 3 allheads_ldsm 1
SHAPES
fi)
