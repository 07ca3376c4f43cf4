"""One Hopper-path prefill launch for Nsight Compute. Default: single request, 4096 tokens, 32 heads,
D128, bf16. --batch B --page-size P: the batch wrapper over B requests of 4096 tokens, ragged KV
(P = 0) or a paged cache with page size P and shuffled page ids (as benchmarks/bench_prefill.py).
ncu -k regex:attention_sm90 --launch-skip 1 --launch-count 1 python ci/profile_fa3.py [--batch 8 --page-size 16]"""
import argparse

import numpy as np
import torch

import kvinfer

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=0, help="0: single_prefill_with_kv_cache")
ap.add_argument("--page-size", type=int, default=0, help="0: ragged KV")
ap.add_argument("--causal", action="store_true")
a = ap.parse_args()
h, d, L = 32, 128, 4096
if a.batch == 0:
    q, k, v = (torch.randn(L, h, d, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    for _ in range(2):
        kvinfer.single_prefill_with_kv_cache(q, k, v, causal=a.causal, backend="fa3")
else:
    b, ps = a.batch, a.page_size
    q, k, v = (torch.randn(b * L, h, d, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    qo = (np.arange(b + 1) * L).astype(np.int32)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    if ps == 0:
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws)
        w.plan(qo, qo, h, h, d, causal=a.causal, q_data_type=torch.bfloat16)
        args = (q, k, v)
    else:
        ppr = L // ps
        perm = torch.randperm(b * ppr, device="cuda")
        cache = torch.empty(b * ppr, 2, ps, h, d, dtype=torch.bfloat16, device="cuda")
        cache[perm, 0] = k.view(b * ppr, ps, h, d)
        cache[perm, 1] = v.view(b * ppr, ps, h, d)
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws)
        w.plan(qo, (np.arange(b + 1) * ppr).astype(np.int32), perm.to(torch.int32), np.full(b, ps, np.int32),
               h, h, d, ps, causal=a.causal, q_data_type=torch.bfloat16)
        args = (q, cache)
    for _ in range(2):
        w.run(*args)
torch.cuda.synchronize()
