"""Experiment: batch decode over an NHD against an HND paged cache (page 16, 32/8 heads, D 128, bf16,
shuffled page ids), with cuDNN SDPA on dense K/V in the same process: what the cache layout costs.

    PYTHONPATH=<site> python3 ci/decode_layout_exp.py [BxL ...]   (run from outside the repo)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import _common  # noqa: E402

import kvinfer  # noqa: E402

PS, HQ, HKV, D = 16, 32, 8, 128
REPS = 30


def main():
    _common.calibrate_sleep()
    shapes = [tuple(map(int, s.split("x"))) for s in sys.argv[1:]] or [(16, 2048), (1, 32768), (16, 8192), (128, 2048)]
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for batch, kv_len in shapes:
        ppr = (kv_len + PS - 1) // PS
        idx = torch.randperm(batch * ppr, device="cuda").to(torch.int32)
        indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
        last = np.full(batch, kv_len - (ppr - 1) * PS, dtype=np.int32)
        q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
        k = torch.randn(batch, HKV, kv_len, D, dtype=torch.bfloat16, device="cuda")
        v = torch.randn_like(k)
        qd = q.view(batch, HQ, 1, D)
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            cudnn = _common.time_us(lambda: F.scaled_dot_product_attention(qd, k, v, enable_gqa=True), REPS)
        del k, v
        line = f"batch {batch} x {kv_len}: cuDNN {cudnn:.1f} us"
        outs = {}
        for layout in ("NHD", "HND"):
            shape = (batch * ppr, 2, PS, HKV, D) if layout == "NHD" else (batch * ppr, 2, HKV, PS, D)
            cache = torch.randn(shape, dtype=torch.bfloat16, device="cuda")
            w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws, kv_layout=layout)
            w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
            outs[layout] = w.run(q, cache)
            us = _common.time_us(lambda: w.run(q, cache), REPS)
            line += f", {layout} {us:.1f} us ({cudnn / us:.3f})"
            del cache
        print(line, flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
