"""Decode split policy probe: run() time of the batch decode wrapper for several split granularities
(the planner's min_chunk_tokens, which also sets its per-job cost), on bench_decode's shapes. Shows
whether the planner's choice (256, the default) leaves time on the table. Run on the GPU machine."""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import kvinfer  # noqa: E402
import kvinfer.wrappers as kw  # noqa: E402
from _common import calibrate_sleep, time_us  # noqa: E402

PS, HQ, HKV, D = 16, 32, 8, 128
SHAPES = [(1, 32768), (16, 2048), (16, 8192), (64, 2048), (64, 8192), (128, 2048), (128, 8192), (256, 2048),
          (256, 8192)]
CHUNKS = (256, 512, 1024, 2048, 4096, 1 << 30)


def main():
    calibrate_sleep()
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    print("| batch | KV | " + " | ".join(f"min_chunk {c if c < 1 << 30 else 'no split'}" for c in CHUNKS) + " |")
    print("|---:|---:|" + "---|" * len(CHUNKS))
    for batch, kv in SHAPES:
        ppr = kv // PS
        nsets = max(1, min(8, math.ceil(200e6 / (batch * kv * HKV * D * 4))))
        cache = torch.randn(nsets * batch * ppr, 2, PS, HKV, D, dtype=torch.bfloat16, device="cuda")
        perm = torch.randperm(nsets * batch * ppr, device="cuda").to(torch.int32)
        indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
        last = np.full(batch, PS, np.int32)
        cells = []
        for c in CHUNKS:
            kw._MIN_CHUNK_TOKENS = c
            sets = []
            for s in range(nsets):
                w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
                w.plan(indptr, perm[s * batch * ppr:(s + 1) * batch * ppr], last, HQ, HKV, D, PS,
                       q_data_type=torch.bfloat16)
                sets.append((w, torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")))
            us = time_us(lambda w, q: w.run(q, cache), 10, sets)
            p = sets[0][0].plan_info
            cells.append(f"{us:.1f} µs ({p.num_work}/{p.chunk_tokens})")
        print(f"| {batch} | {kv} | " + " | ".join(cells) + " |", flush=True)
        del cache


if __name__ == "__main__":
    main()
