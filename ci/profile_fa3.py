"""One Hopper-path prefill launch (single request, 4096 tokens, 32 heads, D128, bf16) for Nsight Compute:
ncu -k regex:attention_sm90 --launch-skip 1 --launch-count 1 python ci/profile_fa3.py"""
import torch

import kvinfer

h, d, L = 32, 128, 4096
q, k, v = (torch.randn(L, h, d, dtype=torch.bfloat16, device="cuda") for _ in range(3))
for _ in range(2):
    kvinfer.single_prefill_with_kv_cache(q, k, v, backend="fa3")
torch.cuda.synchronize()
