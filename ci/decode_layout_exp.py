"""Experiment: batch decode over an NHD against an HND paged cache (page 16, 32/8 heads, D 128, bf16,
shuffled page ids), with cuDNN SDPA on dense K/V in the same process: what the cache layout costs.

    PYTHONPATH=<site> python3 ci/decode_layout_exp.py [BxL ...]   (run from outside the repo)
    (DECODE_EXP_PDL=0: runs without programmatic dependent launch; "both": each layout timed both ways)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import _common  # noqa: E402
from _decode_case import D, HKV, HQ, PS, REPS, decode_case, paged_cache, shapes_from_argv  # noqa: E402

import kvinfer  # noqa: E402


def main():
    _common.calibrate_sleep()
    shapes = shapes_from_argv(sys.argv[1:], [(16, 2048), (1, 32768), (16, 8192), (128, 2048)])
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for batch, kv_len in shapes:
        indptr, idx, last, q, cudnn = decode_case(batch, kv_len)
        line = f"batch {batch} x {kv_len}: cuDNN {cudnn:.1f} us"
        for layout in ("NHD", "HND"):
            cache = paged_cache(batch, kv_len, layout)
            w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws, kv_layout=layout)
            w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
            for pdl in {"0": (False,), "both": (True, False)}.get(os.environ.get("DECODE_EXP_PDL", "1"), (True,)):
                w._pdl = pdl
                us = _common.time_us(lambda: w.run(q, cache), REPS)
                line += f", {layout}{'' if pdl else ' no-PDL'} {us:.1f} us ({cudnn / us:.3f})"
            del cache
        print(line, flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
