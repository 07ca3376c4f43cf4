"""Per-CTA timeline of one FA2-class ragged prefill launch built with patch.py's `trace` variant.
Usage: python trace.py D:seqlen:c|n ..."""
import os
import sys

import numpy as np
import torch

import kvinfer

TOKENS, HIDDEN = 16384, 4096
for spec in sys.argv[1:]:
    d, n, c = spec.split(":")
    d, n, causal = int(d), int(n), c == "c"
    batch, heads = TOKENS // n, HIDDEN // d
    q, k, v = (torch.randn(TOKENS, heads, d, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    indptr = (np.arange(batch + 1) * n).astype(np.int32)
    w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"),
                                                     backend="fa2")
    w.plan(indptr, indptr, heads, heads, d, causal=causal, q_data_type=torch.bfloat16)
    out = torch.empty_like(q)
    lse = torch.zeros(TOKENS, heads, dtype=torch.float32, device="cuda")
    for _ in range(3):
        w.run(q, k, v, out=out, lse=lse)
    lse.zero_()
    torch.cuda._sleep(10_000_000)  # GPU busy while the launch queues: the launch starts at once
    w.run(q, k, v, out=out, lse=lse)
    torch.cuda.synchronize()
    t = lse.view(torch.int32).cpu().numpy().view(np.uint32).reshape(-1, 16).astype(np.uint64)
    used = t[:, 1] != 0
    t = t[used]
    sm = t[:, 0].astype(np.int64)
    g0 = (t[:, 1] | (t[:, 2] << 32)).astype(np.float64)
    g4 = (t[:, 3] | (t[:, 4] << 32)).astype(np.float64)
    cyc = [np.zeros(len(t))] + [t[:, 4 + e].astype(np.float64) for e in range(1, 7)]
    item = t[:, 15].astype(np.int64)
    ghz = np.median(cyc[6] / np.maximum(g4 - g0, 1))  # cycles per ns
    us = lambda x: x / ghz / 1e3  # noqa: E731
    t0 = g0.min()
    span = (g4.max() - t0) / 1e3
    print(f"== {spec}: batch {batch} heads {heads}: {used.sum()} CTAs, kernel span {span:.1f} us, clock {ghz:.2f} GHz")
    names = ["job fields loaded", "Q copies issued", "K/V prologue issued", "first tile landed", "KV loop", "epilogue"]
    for e, name in enumerate(names):
        dd = us(cyc[e + 1] - cyc[e])
        print(f"  {name:42s} median {np.median(dd):8.2f} us  p10 {np.percentile(dd, 10):8.2f}  p90 {np.percentile(dd, 90):8.2f}"
              f"  sum/SM {dd.sum() / (sm.max() + 1):9.1f} us")
    dur = (g4 - g0) / 1e3
    print(f"  CTA duration median {np.median(dur):.2f} us; sum over CTAs / SMs {dur.sum() / (sm.max() + 1):.1f} us")
    # Per SM: concurrency over time and gaps (no CTA resident).
    starts = (g0 - t0) / 1e3
    ends = (g4 - t0) / 1e3
    conc, idle1, lastend = [], [], []
    for s in range(sm.max() + 1):
        m = sm == s
        ev = sorted([(x, 1) for x in starts[m]] + [(x, -1) for x in ends[m]])
        cur, prev, acc = 0, 0.0, np.zeros(4)
        for x, dlt in ev:
            acc[min(cur, 3)] += x - prev
            cur += dlt
            prev = x
        conc.append(acc)
        lastend.append(ends[m].max() if m.any() else 0)
    conc = np.array(conc)
    tot = conc.sum(axis=1, keepdims=True)
    print("  share of SM time (from kernel start to the SM's last end) with 0/1/2/3+ CTAs resident:",
          np.round((conc / tot).mean(axis=0), 3))
    le = np.array(lastend)
    print(f"  SM last-end: min {le.min():.1f} median {np.median(le):.1f} max {le.max():.1f} us")
    first = starts.argsort()[:8]
    print("  first starts (us):", np.round(np.sort(starts)[:4], 2), "launch of CTAs spread to", round(float(np.percentile(starts, 5)), 2))
    os.makedirs(os.environ.get("OUT", "/tmp"), exist_ok=True)
    np.save(os.path.join(os.environ.get("OUT", "/tmp"), f"trace_{d}_{n}_{c}.npy"), t)
