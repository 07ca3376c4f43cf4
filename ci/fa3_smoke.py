"""Quick GPU check of the Hopper (fa3) attention path against the float64 reference and the fa2 path.
Usage: python ci/fa3_smoke.py  (needs an sm90 device)."""
import numpy as np
import torch

import kvinfer
from kvinfer import reference as ref

torch.manual_seed(0)
dev = "cuda"
fails = 0


def report(name, o, ro, s, rs, tol=3e-2):
    global fails
    a = o.float().cpu().numpy().astype(np.float64)
    e = float(np.max(np.abs(a - ro))) if a.size else 0.0
    sa = s.cpu().numpy().astype(np.float64)
    fin = np.isfinite(rs)
    bad = int((np.isfinite(sa) != fin).sum()) + int(np.isnan(a).sum())
    le = float(np.max(np.abs(sa[fin] - rs[fin]))) if fin.any() else 0.0
    ok = e < tol and le < 1e-2 and bad == 0
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: out err {e:.2e} lse err {le:.2e} mismatches {bad}")


for dt in (torch.bfloat16, torch.float16):
    for d in (64, 128, 256):
        for (lq, lk, hq, hkv, causal, extra) in [(1, 577, 8, 8, False, {}), (17, 127, 6, 2, True, {}),
                                                 (127, 577, 5, 1, True, {}), (577, 1000, 4, 4, False, {}),
                                                 (300, 300, 4, 2, True, dict(window_left=40)),
                                                 (200, 333, 2, 2, False, dict(logits_soft_cap=30.0, sm_scale=1.0)),
                                                 (1000, 1000, 8, 8, True, {})]:
            if dt == torch.float16 and d != 128 and lq not in (17, 1000):
                continue
            q = torch.randn(lq, hq, d, dtype=dt, device=dev)
            k = torch.randn(lk, hkv, d, dtype=dt, device=dev)
            v = torch.randn(lk, hkv, d, dtype=dt, device=dev)
            o, s = kvinfer.single_prefill_with_kv_cache(q, k, v, causal=causal, return_lse=True, backend="fa3", **extra)
            torch.cuda.synchronize()
            ro, rs = ref.attention(q, k, v, causal=causal, **extra)
            report(f"single {dt} d{d} lq{lq} lk{lk} g{hq // hkv} causal={causal} {extra}", o, ro, s, rs)

# batch ragged + paged, causal, fa3
for dt, d in ((torch.float16, 128), (torch.bfloat16, 64), (torch.bfloat16, 256)):
    hq, hkv = 8, 2
    qlens, klens = [1, 7, 17, 127, 0, 300], [5, 7, 300, 1000, 9, 300]
    qo = np.concatenate([[0], np.cumsum(qlens)]).astype(np.int32)
    ko = np.concatenate([[0], np.cumsum(klens)]).astype(np.int32)
    q = torch.randn(qo[-1], hq, d, dtype=dt, device=dev)
    k = torch.randn(ko[-1], hkv, d, dtype=dt, device=dev)
    v = torch.randn(ko[-1], hkv, d, dtype=dt, device=dev)
    ws = torch.empty(64 << 20, dtype=torch.uint8, device=dev)
    for causal in (False, True):
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, backend="fa3")
        w.plan(qo, ko, hq, hkv, d, causal=causal, q_data_type=dt)
        assert w.plan_info.backend == "fa3"
        o, s = w.run(q, k, v, return_lse=True)
        torch.cuda.synchronize()
        for b in range(len(qlens)):
            ro, rs = ref.attention(q[qo[b]:qo[b + 1]], k[ko[b]:ko[b + 1]], v[ko[b]:ko[b + 1]], causal=causal)
            report(f"ragged {dt} d{d} causal={causal} req{b} (q{qlens[b]} kv{klens[b]})", o[qo[b]:qo[b + 1]], ro,
                   s[qo[b]:qo[b + 1]], rs)
    for page in (1, 16):
        pages = [(l + page - 1) // page for l in klens]
        total = sum(pages)
        perm = torch.randperm(total + 3).int()
        cache = torch.randn(total + 3, 2, page, hkv, d, dtype=dt, device=dev)
        indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
        last = np.array([(l - (p - 1) * page) if p else 0 for l, p in zip(klens, pages)], np.int32)
        indices = perm[:total].to(dev)
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws, backend="fa3")
        w.plan(qo, indptr, indices, last, hq, hkv, d, page, causal=True, q_data_type=dt)
        o, s = w.run(q, cache, return_lse=True)
        torch.cuda.synchronize()
        for b in range(len(qlens)):
            ids = indices[indptr[b]:indptr[b + 1]].long()
            kk = cache[ids, 0].reshape(-1, hkv, d)[:klens[b]]
            vv = cache[ids, 1].reshape(-1, hkv, d)[:klens[b]]
            ro, rs = ref.attention(q[qo[b]:qo[b + 1]], kk, vv, causal=True)
            report(f"paged p{page} {dt} d{d} req{b}", o[qo[b]:qo[b + 1]], ro, s[qo[b]:qo[b + 1]], rs)
print("FAILS:", fails)
