"""One batch-decode run (paged, page 16, 32/8 heads, D 128, bf16) for profiling the decode kernel and
the split-KV merge under Nsight Compute: ncu -k regex:attention_kernel python3 ci/decode_ncu.py 16 2048"""
import sys

import torch

from decode_timeline import decode_setup  # ci/, the script's own directory

batch, kv_len = int(sys.argv[1]), int(sys.argv[2])
w, q, cache = decode_setup(batch, kv_len, torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
for _ in range(3):
    w.run(q, cache)
torch.cuda.synchronize()
