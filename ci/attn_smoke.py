"""Quick GPU smoke check of the attention paths against the float64 reference, with rough timings.
Usage: python ci/attn_smoke.py  (needs a CUDA device)."""
import time

import numpy as np
import torch

import kvinfer
from kvinfer import reference as ref

torch.manual_seed(0)
dev = "cuda"


def err(a, b):
    a = a.float().cpu().numpy().astype(np.float64)
    return float(np.nanmax(np.abs(a - b))) if a.size else 0.0


def lse_err(a, b):
    a = a.cpu().numpy().astype(np.float64)
    fin = np.isfinite(b)
    bad = int((np.isfinite(a) != fin).sum())
    return (float(np.max(np.abs(a[fin] - b[fin]))) if fin.any() else 0.0), bad


for dt in (torch.float16, torch.bfloat16):
    for d in (64, 128, 256):
        for (lq, lk, hq, hkv, causal) in [(1, 577, 8, 8, False), (1, 4096, 7, 1, False), (17, 127, 6, 2, True),
                                          (127, 577, 4, 4, True), (577, 577, 5, 1, False)]:
            q = torch.randn(lq, hq, d, dtype=dt, device=dev)
            k = torch.randn(lk, hkv, d, dtype=dt, device=dev)
            v = torch.randn(lk, hkv, d, dtype=dt, device=dev)
            o, s = kvinfer.single_prefill_with_kv_cache(q, k, v, causal=causal, return_lse=True)
            ro, rs = ref.attention(q, k, v, causal=causal)
            le, lb = lse_err(s, rs)
            print(f"single {dt} d{d} lq{lq} lk{lk} g{hq // hkv} causal={causal}: out err {err(o, ro):.2e} lse err {le:.2e} lse mismatches {lb}")

# batch decode, paged
for dt in (torch.bfloat16,):
    for page in (1, 5, 16):
        lens = [0, 1, 7, 17, 127, 577, 3000]
        hq, hkv, d = 8, 2, 128
        pages = [(l + page - 1) // page for l in lens]
        total = sum(pages)
        perm = torch.randperm(total + 3).int()
        cache = torch.randn(total + 3, 2, page, hkv, d, dtype=dt, device=dev)
        indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
        last = np.array([(l - (p - 1) * page) if p else 0 for l, p in zip(lens, pages)], np.int32)
        indices = perm[:total].to(dev)
        ws = torch.empty(64 << 20, dtype=torch.uint8, device=dev)
        w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
        w.plan(indptr, indices, last, hq, hkv, d, page, q_data_type=dt)
        q = torch.randn(len(lens), hq, d, dtype=dt, device=dev)
        o, s = w.run(q, cache, return_lse=True)
        worst = 0.0
        for b, l in enumerate(lens):
            ids = indices[indptr[b]:indptr[b + 1]].long()
            kk = cache[ids, 0].reshape(-1, hkv, d)[:l]
            vv = cache[ids, 1].reshape(-1, hkv, d)[:l]
            ro, rs = ref.attention(q[b:b + 1], kk, vv)
            worst = max(worst, err(o[b:b + 1], ro))
            le, lb = lse_err(s[b:b + 1], rs)
            assert lb == 0, (b, s[b], rs)
        print(f"batch decode page {page}: worst out err {worst:.2e}, partials {w.plan_info.num_partials}")

# batch prefill ragged + paged, causal
dt, hq, hkv, d = torch.float16, 8, 2, 128
qlens, klens = [1, 7, 17, 127], [5, 7, 300, 1000]
qo = np.concatenate([[0], np.cumsum(qlens)]).astype(np.int32)
ko = np.concatenate([[0], np.cumsum(klens)]).astype(np.int32)
q = torch.randn(qo[-1], hq, d, dtype=dt, device=dev)
k = torch.randn(ko[-1], hkv, d, dtype=dt, device=dev)
v = torch.randn(ko[-1], hkv, d, dtype=dt, device=dev)
ws = torch.empty(64 << 20, dtype=torch.uint8, device=dev)
w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws)
w.plan(qo, ko, hq, hkv, d, causal=True, q_data_type=dt)
o, s = w.run(q, k, v, return_lse=True)
worst = 0.0
for b in range(len(qlens)):
    ro, rs = ref.attention(q[qo[b]:qo[b + 1]], k[ko[b]:ko[b + 1]], v[ko[b]:ko[b + 1]], causal=True)
    worst = max(worst, err(o[qo[b]:qo[b + 1]], ro))
print(f"ragged prefill causal: worst err {worst:.2e}, partials {w.plan_info.num_partials}")


def bench(fn, iters=20):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(iters):
            fn()
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1) / iters)
    return sorted(ts)[len(ts) // 2]


from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F
# decode timing
for batch, L in [(1, 32768), (16, 8192), (64, 8192), (256, 2048), (128, 32768)]:
    hq, hkv, d, page = 32, 8, 128, 16
    npg = batch * L // page
    cache = torch.randn(npg, 2, page, hkv, d, dtype=torch.bfloat16, device=dev)
    indices = torch.randperm(npg, device=dev).int()
    indptr = (np.arange(batch + 1) * (L // page)).astype(np.int32)
    last = np.full(batch, page, np.int32)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
    w.plan(indptr, indices, last, hq, hkv, d, page, q_data_type=torch.bfloat16)
    q = torch.randn(batch, hq, d, dtype=torch.bfloat16, device=dev)
    t = bench(lambda: w.run(q, cache))
    kvb = batch * L * hkv * d * 2 * 2
    del cache
    kd = torch.randn(batch, hkv, L, d, dtype=torch.bfloat16, device=dev)
    vd = torch.randn(batch, hkv, L, d, dtype=torch.bfloat16, device=dev)
    qd = q.unsqueeze(2)
    try:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            tc = bench(lambda: F.scaled_dot_product_attention(qd, kd, vd, enable_gqa=True))
    except Exception as e:
        tc = float("nan")
    print(f"decode b{batch} L{L}: kvinfer {t*1e3:.1f} us {kvb/t/1e9:.2f} TB/s (work {w.plan_info.num_work}, parts {w.plan_info.num_partials}) | cudnn {tc*1e3:.1f} us {kvb/tc/1e9:.2f} TB/s")
    del kd, vd
    torch.cuda.empty_cache()

for d in (64, 128, 256):
    for L in (2048, 8192):
        for causal in (False, True):
            h = 4096 // d
            batch = 16384 // L
            q = torch.randn(batch * L, h, d, dtype=torch.bfloat16, device=dev)
            k = torch.randn(batch * L, h, d, dtype=torch.bfloat16, device=dev)
            v = torch.randn(batch * L, h, d, dtype=torch.bfloat16, device=dev)
            ind = (np.arange(batch + 1) * L).astype(np.int32)
            ws = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
            w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws)
            w.plan(ind, ind, h, h, d, causal=causal, q_data_type=torch.bfloat16)
            t = bench(lambda: w.run(q, k, v), 5)
            fl = 4 * batch * L * L * h * d / (2 if causal else 1)
            qb = q.view(batch, L, h, d).transpose(1, 2).contiguous()
            kb = k.view(batch, L, h, d).transpose(1, 2).contiguous()
            vb = v.view(batch, L, h, d).transpose(1, 2).contiguous()
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                tf = bench(lambda: F.scaled_dot_product_attention(qb, kb, vb, is_causal=causal), 5)
            print(f"prefill d{d} L{L} causal={causal}: kvinfer {fl/t/1e9:.0f} TFLOP/s | flash {fl/tf/1e9:.0f} TFLOP/s")
            del q, k, v, qb, kb, vb
            torch.cuda.empty_cache()
