"""One prefill and one decode launch, for Nsight Compute (ci/profile: ncu -k regex:attention_kernel)."""
import numpy as np
import torch

import kvinfer

dev = "cuda"
h, d, L = 32, 128, 4096
q = torch.randn(L, h, d, dtype=torch.bfloat16, device=dev)
k = torch.randn(L, h, d, dtype=torch.bfloat16, device=dev)
v = torch.randn(L, h, d, dtype=torch.bfloat16, device=dev)
kvinfer.single_prefill_with_kv_cache(q, k, v)
batch, KV, page, hq, hkv = 64, 8192, 16, 32, 8
npg = batch * KV // page
cache = torch.randn(npg, 2, page, hkv, d, dtype=torch.bfloat16, device=dev)
w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device=dev))
w.plan((np.arange(batch + 1) * (KV // page)).astype(np.int32), torch.randperm(npg, device=dev).int(),
       np.full(batch, page, np.int32), hq, hkv, d, page, q_data_type=torch.bfloat16)
w.run(torch.randn(batch, hq, d, dtype=torch.bfloat16, device=dev), cache)
torch.cuda.synchronize()
