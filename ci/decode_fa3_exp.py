"""Experiment: batch decode (qo_len 1) through the Hopper prefill path (BatchPrefillWithPagedKVCacheWrapper,
backend="fa3") against the decode wrapper (FA2-class decode tile) and cuDNN SDPA, same process. Page 16,
32/8 heads, D 128, bf16. Splits: auto, off, and DEC_FA3_SPLITS (comma-separated fixed split sizes).

    PYTHONPATH=<site> python3 ci/decode_fa3_exp.py [BxL ...]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import _common  # noqa: E402
from _decode_case import D, HKV, HQ, PS, REPS, decode_case, paged_cache, shapes_from_argv  # noqa: E402

import kvinfer  # noqa: E402


def main():
    _common.calibrate_sleep()
    shapes = shapes_from_argv(sys.argv[1:], [(16, 2048), (1, 32768), (16, 8192), (64, 2048)])
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for batch, kv_len in shapes:
        indptr, idx, last, q, cudnn = decode_case(batch, kv_len)
        cache = paged_cache(batch, kv_len)
        qo = np.arange(batch + 1, dtype=np.int32)
        dec = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
        dec.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
        ref = dec.run(q, cache)
        t_dec = _common.time_us(lambda: dec.run(q, cache), REPS)
        print(f"batch {batch} x {kv_len}: cuDNN {cudnn:.1f} us, decode wrapper {t_dec:.1f} us ({cudnn / t_dec:.3f})")
        splits = [None, "off"] + [int(x) for x in os.environ.get("DEC_FA3_SPLITS", "").split(",") if x]
        for sz in splits:
            w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws, backend="fa3")
            kw = dict(disable_split_kv=True) if sz == "off" else dict(fixed_split_size=sz)
            try:
                w.plan(qo, indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16, **kw)
            except Exception as e:  # noqa: BLE001
                print(f"  fa3 split {sz}: plan failed: {e}")
                continue
            out = w.run(q, cache)
            err = (out.float() - ref.float()).abs().max().item()
            us = _common.time_us(lambda: w.run(q, cache), REPS)
            info = w.plan_info
            print(f"  fa3 split {str(sz):>6}: {us:8.1f} us ratio {cudnn / us:.3f} err {err:.2e} "
                  f"work {info.num_work} chunk {info.chunk_tokens}")
        # The same work over a ragged (contiguous) KV: full-tile TMA boxes instead of one per page.
        kr = torch.randn(batch * kv_len, HKV, D, dtype=torch.bfloat16, device="cuda")
        vr = torch.randn_like(kr)
        kvi = (np.arange(batch + 1) * kv_len).astype(np.int32)
        for be in ("fa3", "fa2"):
            w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, backend=be)
            w.plan(qo, kvi, HQ, HKV, D, q_data_type=torch.bfloat16)
            w.run(q, kr, vr)
            us = _common.time_us(lambda: w.run(q, kr, vr), REPS)
            print(f"  ragged {be}: {us:8.1f} us ratio {cudnn / us:.3f} work {w.plan_info.num_work}")
        del cache, kr, vr
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
