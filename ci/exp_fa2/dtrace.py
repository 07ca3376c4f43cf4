"""Per-CTA timeline of one batch-decode launch built with patch.py's `dtrace` variant (page 16, 32 / 8
heads, D 128, bf16, shuffled pages, as bench_decode), next to cuDNN's time for the same shape.
Usage: python dtrace.py BATCHxKV ...  (run from outside the repo: the patched kvinfer on PYTHONPATH)"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import kvinfer

PS, HQ, HKV, D = 16, 32, 8, 128


def pct(x, q):
    return float(np.percentile(x, q))


for spec in sys.argv[1:] or ["16x2048"]:
    batch, kv_len = map(int, spec.split("x"))
    ppr = (kv_len + PS - 1) // PS
    cache = torch.randn(batch * ppr, 2, PS, HKV, D, dtype=torch.bfloat16, device="cuda")
    idx = torch.randperm(batch * ppr, device="cuda").to(torch.int32)
    indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
    last = np.full(batch, kv_len - (ppr - 1) * PS, dtype=np.int32)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
    q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    out = torch.empty(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    for _ in range(5):
        w.run(q, cache, out=out)
    # cuDNN on dense K/V of the same shape, for reference (events around 20 back-to-back calls).
    kd = torch.randn(batch, HKV, kv_len, D, dtype=torch.bfloat16, device="cuda")
    vd = torch.randn_like(kd)
    qd = q.view(batch, HQ, 1, D)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        for _ in range(3):
            F.scaled_dot_product_attention(qd, kd, vd, enable_gqa=True)
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(20):
            F.scaled_dot_product_attention(qd, kd, vd, enable_gqa=True)
        e1.record()
        torch.cuda.synchronize()
        cudnn_us = e0.elapsed_time(e1) * 1e3 / 20
    e0.record()
    for _ in range(20):
        w.run(q, cache, out=out)
    e1.record()
    torch.cuda.synchronize()
    k_us = e0.elapsed_time(e1) * 1e3 / 20
    out.zero_()
    torch.cuda._sleep(10_000_000)  # the GPU busy while the launch queues: it starts at once
    w.run(q, cache, out=out)
    torch.cuda.synchronize()
    words = out.view(torch.int32).cpu().numpy().view(np.uint32)
    n = words.size // 16
    t = words[: n * 16].reshape(n, 16).astype(np.uint64)
    t = t[t[:, 12] == 1]
    g0 = (t[:, 2] | (t[:, 3] << 32)).astype(np.float64)
    g5 = (t[:, 4] | (t[:, 5] << 32)).astype(np.float64)
    cyc = t[:, 6:11].astype(np.float64)  # wait, first tile, loop end, epilogue end, end
    ghz = np.median(cyc[:, 4] / np.maximum(g5 - g0, 1))
    ev = [(g0 - g0.min()) / 1e3] + [(g0 - g0.min()) / 1e3 + cyc[:, e] / ghz / 1e3 for e in range(5)]
    names = ["entry", "pdl wait done", "first tile landed", "KV loop done", "partials written", "end"]
    merged = t[:, 1] == 1
    print(f"== {spec}: {len(t)} CTAs on {len(set(t[:, 0].tolist()))} SMs, {merged.sum()} merging; "
          f"span {ev[5].max():.1f} us (events: {k_us:.1f} us per call back to back, cuDNN {cudnn_us:.1f} us); "
          f"clock {ghz:.2f} GHz")
    for name, x in zip(names, ev):
        print(f"  {name:18s} min {x.min():6.2f}  p10 {pct(x, 10):6.2f}  median {np.median(x):6.2f}  "
              f"p90 {pct(x, 90):6.2f}  max {x.max():6.2f} us")
    d = [ev[2] - ev[0], ev[3] - ev[2], ev[4] - ev[3], ev[5] - ev[4]]
    for name, x in zip(["entry -> first tile", "KV loop", "epilogue", "merge (merging CTAs)"], d):
        x = x[merged] if name.startswith("merge") else x
        if len(x):
            print(f"  {name:22s} median {np.median(x):6.2f}  p90 {pct(x, 90):6.2f}  max {x.max():6.2f} us")
    extra = t[:, 13:16].astype(np.float64) / ghz / 1e3  # poison barrier, states in smem, arrival (us from entry)
    loop_end = cyc[:, 2] / ghz / 1e3
    parts = [extra[:, 0] - loop_end, extra[:, 1] - extra[:, 0], cyc[:, 3] / ghz / 1e3 - extra[:, 1],
             extra[:, 2] - cyc[:, 3] / ghz / 1e3]
    for name, x in zip(["loop end -> poison barrier", "-> KV warps' states in smem", "-> partials written",
                        "-> split arrival done"], parts):
        print(f"  {name:28s} median {np.median(x):6.2f}  p90 {pct(x, 90):6.2f}  max {x.max():6.2f} us")
    # Busy CTAs over time (how the wave drains).
    edges = np.linspace(0, ev[5].max(), 11)
    busy = [int(((ev[0] <= a) & (ev[5] > a)).sum()) for a in edges]
    print("  CTAs running at 0..span in tenths:", busy)
    os.makedirs(os.environ.get("OUT", "/tmp"), exist_ok=True)
    np.save(os.path.join(os.environ.get("OUT", "/tmp"), f"dtrace_{spec}.npy"), t)
