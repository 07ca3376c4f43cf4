"""Where a batch-decode run's time goes: per-kernel device durations (torch profiler, CUPTI) of
kvinfer's decode run and torch cuDNN SDPA on the same shapes, and the span of one call from its first
kernel's start to its last kernel's end (launch gaps included).

    python3 ci/decode_timeline.py [BxL ...]     (default: 1x32768 16x2048 16x8192 64x2048)
"""
import collections
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import kvinfer

PS, HQ, HKV, D = 16, 32, 8, 128
REPS = 20


def kernels_of(fn):
    """[(name, start_us, dur_us)] of the device kernels run by REPS calls of fn, grouped per call."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    calls = []
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(REPS):
            fn()
            torch.cuda.synchronize()  # one call per group: spans are not mixed
    evs = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                 key=lambda e: e.time_range.start)
    # Calls are separated by a synchronize: a gap > 20 us starts a new call.
    for e in evs:
        if not calls or e.time_range.start - calls[-1][-1][1] - calls[-1][-1][2] > 20:
            calls.append([])
        calls[-1].append((e.name, e.time_range.start, e.time_range.elapsed_us()))
    return calls[-REPS:]


def report(label, calls):
    per = collections.defaultdict(list)
    spans = []
    for c in calls:
        spans.append(c[-1][1] + c[-1][2] - c[0][1])
        for name, _, dur in c:
            per[name[:70]].append(dur)
    print(f"  {label}: span median {np.median(spans):.1f} us over {len(calls)} calls")
    for name, durs in per.items():
        print(f"    {np.median(durs):8.1f} us  x{len(durs) // len(calls)}  {name}")


def decode_setup(batch, kv_len, ws):
    """A planned decode wrapper (page 16, 32/8 heads, D 128, bf16, shuffled page ids) with its q and cache."""
    ppr = (kv_len + PS - 1) // PS
    cache = torch.randn(batch * ppr, 2, PS, HKV, D, dtype=torch.bfloat16, device="cuda")
    idx = torch.randperm(batch * ppr, device="cuda").to(torch.int32)
    indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
    last = np.full(batch, kv_len - (ppr - 1) * PS, dtype=np.int32)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
    w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)
    q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    p = w.plan_info
    print(f"batch {batch} x {kv_len}: {p.num_work} work items, {p.num_partials} partials, chunk {p.chunk_tokens}, "
          f"KV {batch * kv_len * HKV * D * 4 / 1e6:.0f} MB")
    return w, q, cache


def main():
    shapes = [tuple(map(int, s.split("x"))) for s in sys.argv[1:]] or [(1, 32768), (16, 2048), (16, 8192), (64, 2048)]
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for batch, kv_len in shapes:
        w, q, cache = decode_setup(batch, kv_len, ws)
        report("kvinfer", kernels_of(lambda: w.run(q, cache)))
        del cache
        k = torch.randn(batch, HKV, kv_len, D, dtype=torch.bfloat16, device="cuda")
        v = torch.randn_like(k)
        qd = torch.randn(batch, HQ, 1, D, dtype=torch.bfloat16, device="cuda")
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            report("cuDNN", kernels_of(lambda: F.scaled_dot_product_attention(qd, k, v, enable_gqa=True)))
        del k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
