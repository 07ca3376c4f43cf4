"""Decode split-length sweep: kvinfer batch decode (page 16, 32/8 heads, D 128, bf16) timed at the
planner's split length and at fixed_split_size values, against cuDNN SDPA on the same shapes, in one
process. Calibrates the planner's cost model (cpp/src/planner.cpp).

    PYTHONPATH=<site> python3 ci/split_exp.py [BxL ...]   (run from outside the repo: the installed kvinfer)
SPLIT_EXP_TILE=wide|lean forces the decode tile (forced lean plans split too).
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
    shapes = shapes_from_argv(sys.argv[1:], [
        (1, 32768), (16, 2048), (16, 8192), (64, 2048), (128, 2048), (256, 2048), (64, 8192)])
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for batch, kv_len in shapes:
        indptr, idx, last, q, cudnn = decode_case(batch, kv_len)
        cache = paged_cache(batch, kv_len)
        # auto, unsplit (the lean decode tile), then whole-tile split lengths (the wide tile).
        sizes = [None, "off"] + sorted({min(kv_len, (-(-kv_len // s) + 63) // 64 * 64) for s in range(2, 9)},
                                       reverse=True)
        if os.environ.get("SPLIT_EXP_SIZES"):  # explicit split lengths (any token count), after auto
            sizes = [None] + [int(x) for x in os.environ["SPLIT_EXP_SIZES"].split(",")]
        print(f"batch {batch} x {kv_len}: cuDNN {cudnn:.1f} us")
        for size in sizes:
            w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
            w._decode_tile = os.environ.get("SPLIT_EXP_TILE", "auto")  # "wide" / "lean": force the decode tile
            kw = dict(disable_split_kv=True) if size == "off" else dict(fixed_split_size=size)
            w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16, **kw)
            us = _common.time_us(lambda: w.run(q, cache), REPS)
            p = w.plan_info
            jobs = p.num_work * HKV
            print(f"  split {'auto' if size is None else size:>6} chunk {p.chunk_tokens:>6} jobs {jobs:>6} "
                  f"{'lean' if p.lean_decode else 'wide'} "
                  f"{us:8.1f} us  ratio {cudnn / us:.3f}")
        del cache
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
