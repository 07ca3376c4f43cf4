"""The Hopper (fa3) path against the FA2-class path and the float64 reference on identical inputs,
backend selection, and 64-bit offsets (caches over 2^31 elements). Skipped where fa3 cannot run
(not an sm90 GPU, or a build without its sm_90a kernels). The rest of the GPU suite runs with the
default backend ("auto": fa3 for prefill on sm90) and again with KVINFER_BACKEND=fa2 (ci/gpu.sh)."""
import numpy as np
import pytest

import kvinfer
from _attn_util import (DEVICE, PagedKV, RaggedKV, batch_reference, check, indptr_of, poisoned, raises, randn,
                        require, rng_for, sync, workspace)

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")
torch = pytest.importorskip("torch")

BACKENDS = ("fa2", "fa3")


def fa3_or_skip(d=128, dtype="bf16"):
    require(d, dtype)
    from kvinfer.attention import _sm90_available
    if not _sm90_available(d, {"bf16": "bfloat16", "fp16": "float16"}[dtype], 0):
        pytest.skip("fa3 needs an sm90 GPU and a build with the sm_90a kernels")


def run_both(fn, dtype):
    """fn(backend) -> (out, lse) for both backends; the two outputs agree closely."""
    res = {b: fn(b) for b in BACKENDS}
    sync()
    diff = (res["fa2"][0].float() - res["fa3"][0].float()).abs().max().item()
    assert diff < (2e-2 if dtype == "bf16" else 4e-3), f"fa2 and fa3 outputs differ by {diff}"
    return res


@pytest.mark.parametrize("d,dtype,group,layout,causal,feat", [
    (128, "bf16", 1, "NHD", True, {}),
    (64, "fp16", 4, "HND", False, dict(logits_soft_cap=30.0, sm_scale=1.0)),
    (256, "bf16", 3, "NHD", True, dict(window_left=70)),
    (128, "fp16", 8, "HND", True, {}),
    (64, "bf16", 5, "NHD", False, {}),
])
def test_single_prefill_both_backends(d, dtype, group, layout, causal, feat):
    fa3_or_skip(d, dtype)
    rng = rng_for("backends_single", d, dtype, group, layout, causal, repr(feat))
    hkv, lq, lk = 2, 577, 1000
    q = randn(rng, (lq, hkv * group, d), dtype)
    k, v = (randn(rng, (lk, hkv, d), dtype) for _ in range(2))
    ref_o, ref_lse = kvinfer.reference.attention(q, k, v, causal=causal, **feat)
    if layout == "HND":
        k, v = k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()

    def fn(backend):
        out, lse = poisoned(q.shape, dtype), torch.full(q.shape[:2], float("nan"), device=DEVICE)
        return kvinfer.single_prefill_with_kv_cache(q, k, v, causal=causal, kv_layout=layout, return_lse=True,
                                                    out=out, lse=lse, backend=backend, **feat)
    for b, (o, s) in run_both(fn, dtype).items():
        check(o, s, ref_o, ref_lse, dtype, b)


@pytest.mark.parametrize("storage,ps,kind", [("ragged", 0, None), ("paged", 16, "layer_view"),
                                             ("paged", 1, "combined"), ("paged", 32, "tuple"),
                                             ("paged", 5, "layer_view")])
@pytest.mark.parametrize("causal", [False, True])
def test_batch_prefill_both_backends(storage, ps, kind, causal):
    d, dtype, group, hkv = 128, "bf16", 4, 2
    fa3_or_skip(d, dtype)
    rng = rng_for("backends_batch", storage, ps, kind, causal)
    qlens, klens = [1, 7, 130, 0, 300, 17], [5, 600, 300, 9, 300, 17]
    qo = indptr_of(qlens)
    q = randn(rng, (int(qo[-1]), hkv * group, d), dtype)
    if storage == "ragged":
        kvs = RaggedKV(klens, hkv, d, dtype, "NHD", rng)
        args = (kvs.k, kvs.v)
    else:
        kvs = PagedKV(klens, ps, hkv, d, dtype, "NHD", rng, kind=kind)
        args = (kvs.cache,)
    ref_o, ref_lse = batch_reference(q, qo, kvs.kv, causal=causal)

    def fn(backend):
        if storage == "ragged":
            w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace(), backend=backend)
            w.plan(qo, kvs.indptr, hkv * group, hkv, d, causal=causal, q_data_type="bfloat16")
        else:
            w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), backend=backend)
            w.plan(qo, kvs.indptr, kvs.indices_on_device(), kvs.last_page_len, hkv * group, hkv, d, ps,
                   causal=causal, q_data_type="bfloat16")
        assert w.plan_info.backend == backend
        return w.run(q, *args, return_lse=True)
    for b, (o, s) in run_both(fn, dtype).items():
        check(o, s, ref_o, ref_lse, dtype, b)


WIDE_KV_ROWS = {64: 192, 256: 80}  # the wide Hopper KV tile per head dim (sm90_kv_rows in cpp/src/launch.h)


@pytest.mark.parametrize("d,dtype", [(64, "bf16"), (64, "fp16"), (256, "bf16")])
@pytest.mark.parametrize("storage,ps", [("ragged", 0), ("paged", 16), ("paged", 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_wide_kv_tile(d, dtype, storage, ps, causal):
    """Head dims 64 / 256, long KV: the planner takes the wide KV tile (kv_rows 192 / 80; at 256 its O
    leaves from registers); odd lengths end in partial tiles, one request is split (long KV, one query
    token) and one is empty. Pages of 64 do not tile 80: the planner keeps the default tile there. (Fewer
    query rows at 256: the host reference's time.)"""
    group, hkv = 4, 2
    fa3_or_skip(d, dtype)
    rng = rng_for("wide_kv", d, storage, ps, causal, dtype)
    qlens, klens = [300, 1, 129, 0] if d == 64 else [76, 1, 33, 0], [5000, 9001, 3001, 4000]
    qo = indptr_of(qlens)
    q = randn(rng, (int(qo[-1]), hkv * group, d), dtype)
    kvs = RaggedKV(klens, hkv, d, dtype, "NHD", rng) if storage == "ragged" else PagedKV(klens, ps, hkv, d, dtype, "NHD", rng)
    ref_o, ref_lse = batch_reference(q, qo, kvs.kv, causal=causal)
    qdt = {"bf16": "bfloat16", "fp16": "float16"}[dtype]
    if storage == "ragged":
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace(), backend="fa3")
        w.plan(qo, kvs.indptr, hkv * group, hkv, d, causal=causal, q_data_type=qdt)
        args = (kvs.k, kvs.v)
    else:
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), backend="fa3")
        w.plan(qo, kvs.indptr, kvs.indices_on_device(), kvs.last_page_len, hkv * group, hkv, d, ps, causal=causal,
               q_data_type=qdt)
        args = (kvs.cache,)
    wide = WIDE_KV_ROWS[d]
    expect = wide if ps == 0 or ps % 8 == 0 and (wide % ps == 0 or ps % wide == 0) else {64: 128, 256: 64}[d]
    assert w.plan_info.kv_rows == expect
    out, lse = poisoned(q.shape, dtype), torch.full(q.shape[:2], float("nan"), device=DEVICE)
    w.run(q, *args, out=out, lse=lse, return_lse=True)
    check(out, lse, ref_o, ref_lse, dtype, f"{storage} kv_rows={expect}")


@pytest.mark.parametrize("storage,ps", [("ragged", 0), ("paged", 16)])
def test_fa3_tail_split(storage, ps):
    """A batch whose equal jobs leave a ragged last round (2 x SMs + 1 query tiles x 2 kv heads = 4 x SMs
    + 2 jobs): the planner splits the KV of the last request's query tile into a tail of short jobs
    (plan_info.tail_items), written as partial rows and merged; every row matches the reference."""
    d, dtype, group, hkv = 128, "bf16", 4, 2
    fa3_or_skip(d, dtype)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rng = rng_for("fa3_tail", storage, ps)
    # 32 tokens x group 4 = one 128-row query tile: 2 x SMs tiles in requests of 4, and one more.
    qlens = [128] * (sms // 2) + [32] * (2 * sms - 4 * (sms // 2)) + [20]
    klens = [1024] * len(qlens)
    qo = indptr_of(qlens)
    q = randn(rng, (int(qo[-1]), hkv * group, d), dtype)
    kvs = RaggedKV(klens, hkv, d, dtype, "NHD", rng) if storage == "ragged" else PagedKV(klens, ps, hkv, d, dtype, "NHD", rng)
    # The float64 reference (host) of the tail request, the one before it and the first: the tail's rows
    # are merged from pieces, the others written directly.
    picked = [0, len(qlens) - 2, len(qlens) - 1]
    rows = np.concatenate([np.arange(qo[b], qo[b + 1]) for b in picked])
    ref_o, ref_lse = batch_reference(q[torch.as_tensor(rows, device=q.device)], indptr_of([qlens[b] for b in picked]),
                                     lambda i: kvs.kv(picked[i]))
    if storage == "ragged":
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace(), backend="fa3")
        w.plan(qo, kvs.indptr, hkv * group, hkv, d, q_data_type="bfloat16")
        args = (kvs.k, kvs.v)
    else:
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), backend="fa3")
        w.plan(qo, kvs.indptr, kvs.indices_on_device(), kvs.last_page_len, hkv * group, hkv, d, ps, q_data_type="bfloat16")
        args = (kvs.cache,)
    assert w.plan_info.tail_items > 0 and w.plan_info.num_partials > 0
    out, lse = poisoned(q.shape, dtype), torch.full(q.shape[:2], float("nan"), device=DEVICE)
    w.run(q, *args, out=out, lse=lse, return_lse=True)
    sel = torch.as_tensor(rows, device=out.device)
    check(out[sel], lse[sel], ref_o, ref_lse, dtype, f"{storage} tail split")
    assert not torch.isnan(out).any() and not torch.isnan(lse).any(), "a row was not written"
    out2 = w.run(q, *args)  # again: the claim counters were reset
    sync()
    assert torch.equal(out2, out)


@pytest.mark.parametrize("d", [64, 256])
@pytest.mark.parametrize("causal", [False, True])
def test_wide_kv_tile_single_prefill(d, causal):
    dtype, group, hkv, lq, lk = "bf16", 4, 2, {64: 600, 256: 150}[d], {64: 4500, 256: 9000}[d]
    fa3_or_skip(d, dtype)
    assert kvinfer._C.plan_single(lq, lk, hkv * group, hkv, d, 132, 256, "fa3", causal)[6] == WIDE_KV_ROWS[d]
    rng = rng_for("wide_kv_single", d, causal)
    q = randn(rng, (lq, hkv * group, d), dtype)
    k, v = (randn(rng, (lk, hkv, d), dtype) for _ in range(2))
    ref_o, ref_lse = kvinfer.reference.attention(q, k, v, causal=causal)
    out, lse = poisoned(q.shape, dtype), torch.full(q.shape[:2], float("nan"), device=DEVICE)
    kvinfer.single_prefill_with_kv_cache(q, k, v, causal=causal, return_lse=True, out=out, lse=lse, backend="fa3")
    check(out, lse, ref_o, ref_lse, dtype, f"single kv_rows={WIDE_KV_ROWS[d]}")


@pytest.mark.parametrize("storage", ["ragged", "paged"])
def test_offsets_beyond_2_31_elements(storage):
    """A request whose K/V lie past element 2^31 of the cache (int32 offsets would wrap)."""
    d, dtype, hkv = 128, "bf16", 1
    fa3_or_skip(d, dtype)
    rng = rng_for("backends_64bit", storage)
    n, ps = 700, 16
    q = randn(rng, (300, 4, d), dtype)
    k_used, v_used = (randn(rng, (n, hkv, d), dtype) for _ in range(2))
    ref_o, ref_lse = kvinfer.reference.attention(q, k_used, v_used, causal=True)
    qo = indptr_of([300])
    k = v = cache = None
    if storage == "ragged":
        tokens = (1 << 31) // (hkv * d) + 4096
        k = torch.empty((tokens, hkv, d), dtype=torch.bfloat16, device=DEVICE)
        v = torch.empty_like(k)
        k[-n:], v[-n:] = k_used, v_used
        # The request starts at token tokens - n: a ragged indptr with an empty first request.
        kvp = np.array([0, tokens - n, tokens], np.int32)
        qo = np.array([0, 0, 300], np.int32)
    else:
        pages = (1 << 31) // (ps * hkv * d) + 64
        cache = torch.empty((pages, 2, ps, hkv, d), dtype=torch.bfloat16, device=DEVICE)
        npg = (n + ps - 1) // ps
        ids = torch.arange(pages - npg, pages, device=DEVICE, dtype=torch.int32)
        flat_k = torch.zeros((npg * ps, hkv, d), dtype=torch.bfloat16, device=DEVICE)
        flat_v = torch.zeros_like(flat_k)
        flat_k[:n], flat_v[:n] = k_used, v_used
        cache[ids.long(), 0] = flat_k.view(npg, ps, hkv, d)
        cache[ids.long(), 1] = flat_v.view(npg, ps, hkv, d)
    try:
        for backend in BACKENDS:
            if storage == "ragged":
                w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace(), backend=backend)
                w.plan(qo, kvp, 4, hkv, d, causal=True, q_data_type="bfloat16")
                o, s = w.run(q, k, v, return_lse=True)
            else:
                w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), backend=backend)
                w.plan(indptr_of([300]), np.array([0, npg], np.int32), ids, np.array([n - (npg - 1) * ps], np.int32),
                       4, hkv, d, ps, causal=True, q_data_type="bfloat16")
                o, s = w.run(q, cache, return_lse=True)
            sync()
            check(o, s, ref_o, ref_lse, dtype, backend)
    finally:
        k = v = cache = None
        torch.cuda.empty_cache()


def test_auto_picks_fa3_for_prefill_and_fa2_for_decode():
    fa3_or_skip()
    w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    w.plan(indptr_of([300]), indptr_of([300]), 8, 8, 128, q_data_type="bfloat16")
    assert w.plan_info.backend == "fa3"
    w.plan(indptr_of([300]), indptr_of([300]), 8, 8, 128, q_data_type="bfloat16",
           custom_mask=np.ones((300, 300), bool))
    assert w.plan_info.backend == "fa2"  # custom masks run on fa2
    dec = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace())
    dec.plan(indptr_of([2]), np.array([0, 1], np.int32), np.array([5], np.int32), 8, 8, 128, 16,
             q_data_type="bfloat16")
    assert dec.plan_info.backend == "fa2"


def test_backend_argument_errors():
    with raises(ValueError, "backend", "fa3"):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), backend="fa3")
    with raises(ValueError, "backend", "auto"):
        kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace(), backend="fa4")
    q = torch.zeros((32, 8, 128), dtype=torch.bfloat16, device=DEVICE)
    with raises(ValueError, "backend"):
        kvinfer.single_prefill_with_kv_cache(q, q, q, custom_mask=torch.ones((32, 32), dtype=torch.bool,
                                                                             device=DEVICE), backend="fa3")


@pytest.mark.parametrize("backend", BACKENDS)
def test_prefill_corrupt_device_page_ids_give_nan_rows(backend):
    """Page ids corrupted on the device after plan(): never read out of range (fa3: an out-of-bounds
    TMA box on full tiles, a skipped row on cp.async boundary tiles); the requests that use them come
    out NaN (rows and LSE), the others stay right."""
    d, dtype, hkv, group, ps = 128, "bf16", 1, 2, 16
    fa3_or_skip(d, dtype)
    rng = rng_for("backends_corrupt", backend)
    qlens, klens = [20, 20, 20], [300, 300, 300]
    kv = PagedKV(klens, ps, hkv, d, dtype, "NHD", rng)
    qo = indptr_of(qlens)
    q = randn(rng, (int(qo[-1]), hkv * group, d), dtype)
    ref_o, ref_lse = batch_reference(q, qo, kv.kv)
    indices = torch.from_numpy(kv.indices.copy()).to(DEVICE)
    w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), backend=backend)
    w.plan(qo, kv.indptr, indices, kv.last_page_len, hkv * group, hkv, d, ps, q_data_type="bfloat16")
    # Request 0: a page of its first (full) KV tile; request 1: its last page (the boundary tile).
    indices[int(kv.indptr[0]) + 2] = kv.num_pages + 1000
    indices[int(kv.indptr[2]) - 1] = -7
    o, s = w.run(q, kv.cache, return_lse=True)
    sync()
    for b in (0, 1):
        rows = slice(int(qo[b]), int(qo[b + 1]))
        assert torch.isnan(o[rows].float()).all() and torch.isnan(s[rows]).all(), f"request {b}"
    rows = slice(int(qo[2]), int(qo[3]))
    check(o[rows], s[rows], ref_o[rows], ref_lse[rows], dtype, backend)
