"""One batch-decode run (paged, page 16, 32/8 heads, D 128, bf16) for profiling the decode kernel and
the split-KV merge under Nsight Compute: ncu -k regex:attention_kernel python3 ci/decode_ncu.py 16 2048"""
import sys

import numpy as np
import torch

import kvinfer

batch, kv_len = int(sys.argv[1]), int(sys.argv[2])
PS, HQ, HKV, D = 16, 32, 8, 128
ppr = (kv_len + PS - 1) // PS
cache = torch.randn(batch * ppr, 2, PS, HKV, D, dtype=torch.bfloat16, device="cuda")
idx = torch.randperm(batch * ppr, device="cuda").to(torch.int32)
indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
last = np.full(batch, kv_len - (ppr - 1) * PS, dtype=np.int32)
w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
for _ in range(3):
    w.run(q, cache)
torch.cuda.synchronize()
p = w.plan_info
print(f"batch {batch} x {kv_len}: {p.num_work} work items, {p.num_partials} partials, chunk {p.chunk_tokens}")
