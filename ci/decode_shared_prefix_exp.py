"""Experiment: batch decode where every request's KV starts with the same shared-prefix pages (prefix caching
without a cascade), page 16, 32/8 heads, D 128, bf16, NHD: whether an L2 policy on the K / V stream changes
what the requests' shared pages cost. Prints µs per call for each (batch, prefix tokens, own tokens).

    PYTHONPATH=<site> python3 ci/decode_shared_prefix_exp.py   (run from outside the repo)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import _common  # noqa: E402

import kvinfer  # noqa: E402

PS, HQ, HKV, D = 16, 32, 8, 128


def main():
    _common.calibrate_sleep()
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for batch, prefix, own in [(64, 4096, 256), (128, 2048, 512), (16, 8192, 1024), (256, 1024, 128)]:
        pp, po = prefix // PS, own // PS
        pages = pp + batch * po
        cache = torch.randn(pages, 2, PS, HKV, D, dtype=torch.bfloat16, device="cuda")
        own_ids = torch.randperm(batch * po, device="cuda").to(torch.int32) + pp
        shared = torch.randperm(pp, device="cuda").to(torch.int32)
        idx = torch.cat([torch.cat([shared, own_ids[b * po:(b + 1) * po]]) for b in range(batch)])
        indptr = (np.arange(batch + 1) * (pp + po)).astype(np.int32)
        last = np.full(batch, PS, dtype=np.int32)
        q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
        w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
        w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
        us = _common.time_us(lambda: w.run(q, cache), 30)
        unique = pages * PS * HKV * D * 2 * 2
        print(f"batch {batch}, prefix {prefix} + own {own}: {us:.1f} us, {unique / us / 1e6:.2f} TB/s of unique KV "
              f"({w.plan_info.num_work} work items)", flush=True)
        del cache


if __name__ == "__main__":
    main()
