"""Batch wrappers (paged decode, paged/ragged prefill, cascade) against the float64 reference.

Requests' pages are scattered at random among spare pages holding NaN (see _attn_util.PagedKV), so a
read of a page, slot, layer or padding token that no request owns shows up as NaN. Cases are a
curated rotation over page sizes, GQA group sizes, layouts, dtypes and head dims; configurations this
build did not compile are skipped.
"""
import numpy as np
import pytest

import kvinfer
from _attn_util import (DTYPES, Q_DATA_TYPE, PagedKV, RaggedKV, batch_reference, check, compiled, indptr_of,
                        poisoned, raises, randn, random_mask, require, rng_for, sync, workspace)

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")
torch = pytest.importorskip("torch")

FEATURES = {
    "none": {},
    "softcap": dict(logits_soft_cap=30.0, sm_scale=1.0),  # logits ~ N(0, D): well inside tanh's bend
    "window": dict(window_left=16),
    "sm_scale": dict(sm_scale=0.3),
}


def q_data_type(dtype, i):
    """Alternate between the string and the torch dtype forms."""
    return Q_DATA_TYPE[dtype] if i % 2 else DTYPES[dtype]


def host_index(a, i):
    """A host int32 index array as numpy or as a CPU tensor (alternating)."""
    return torch.from_numpy(a) if i % 2 else a


def run_into(w, q, cache_args, dtype, use_out):
    """w.run(q, *cache_args, return_lse=True), into NaN-poisoned out/lse when use_out."""
    if use_out:
        out = poisoned(q.shape, dtype)
        lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device=q.device)
        o, s = w.run(q, *cache_args, out=out, lse=lse, return_lse=True)
        assert o is out and s is lse
    else:
        o, s = w.run(q, *cache_args, return_lse=True)
        assert o.dtype == q.dtype and o.shape == q.shape and s.dtype == torch.float32
    sync()
    return o, s


# ---- paged decode -----------------------------------------------------------------------------------

DECODE_CASES = [
    # page_size, group, num_kv_heads, layout, dtype, head_dim, cache kind, feature
    (1, 1, 2, "NHD", "fp16", 64, "combined", "none"),
    (5, 3, 1, "HND", "bf16", 128, "tuple", "softcap"),
    (16, 4, 2, "NHD", "bf16", 256, "layer_view", "window"),
    (16, 5, 1, "HND", "fp16", 64, "combined", "sm_scale"),
    (5, 7, 1, "NHD", "fp16", 256, "layer_view", "none"),
    (1, 8, 1, "HND", "bf16", 128, "tuple", "window"),
    (16, 8, 2, "HND", "fp16", 128, "layer_view", "none"),
    (5, 1, 4, "NHD", "bf16", 64, "combined", "softcap"),
    (1, 4, 2, "HND", "fp16", 256, "layer_view", "sm_scale"),
    (16, 3, 2, "NHD", "fp16", 128, "tuple", "none"),
    (5, 5, 2, "HND", "bf16", 256, "combined", "none"),
    (16, 7, 1, "NHD", "bf16", 64, "layer_view", "softcap"),
    (1, 3, 1, "NHD", "bf16", 256, "combined", "none"),
    (5, 8, 1, "HND", "fp16", 64, "tuple", "window"),
]


@pytest.mark.parametrize("tile", ["auto", "lean"])
@pytest.mark.parametrize("i,page_size,group,hkv,layout,dtype,d,kind,feature",
                         [pytest.param(i, *c, id="ps{}-g{}-kv{}-{}-{}-d{}-{}-{}".format(*c))
                          for i, c in enumerate(DECODE_CASES)])
def test_decode(i, page_size, group, hkv, layout, dtype, d, kind, feature, tile):
    """tile "lean" forces the lean decode tile (FA2 path; unsplit); "auto" takes the wide one here and
    splits 577."""
    require(d, dtype)
    opts = FEATURES[feature]
    rng = rng_for("batch_decode", page_size, group, hkv, layout, dtype, d, kind, feature)
    ps = page_size
    # Empty requests (no pages), a length that fills its last page, odd lengths; 577 gets split.
    kv_lens = [0, 1, 7, 3 * ps, 17, 127, 0, 577, 2 * ps + 1, 33]
    kv = PagedKV(kv_lens, ps, hkv, d, dtype, layout, rng, kind=kind)
    hq = group * hkv
    q = randn(rng, (len(kv_lens), hq, d), dtype)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), layout)
    w._decode_tile = tile
    indices = kv.indices_on_device() if i % 2 else kv.indices
    w.plan(host_index(kv.indptr, i // 2), indices, host_index(kv.last_page_len, i // 2), hq, hkv, d, ps,
           q_data_type=q_data_type(dtype, i), validate=i % 4 < 2, **opts)
    assert w.plan_info.lean_decode == (tile == "lean")
    assert tile != "auto" or w.plan_info.num_partials > 0, "577 tokens: split by the wide tile's plan"
    ref_o, ref_s = batch_reference(q, indptr_of([1] * len(kv_lens)), kv.kv, **opts)
    if i % 3 == 2:  # without LSE
        o = w.run(q, kv.cache)
        sync()
        assert isinstance(o, torch.Tensor)
        check(o, None, ref_o, ref_s, dtype)
    else:
        o, s = run_into(w, q, (kv.cache,), dtype, use_out=i % 3 == 1)
        check(o, s, ref_o, ref_s, dtype)
    # The plan can be run again (same inputs, same result).
    o2 = w.run(q, kv.cache)
    sync()
    assert torch.equal(o2, o)


@pytest.mark.parametrize("tile", ["auto", "lean"])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("page_size,layout", [(8, "NHD"), (32, "HND"), (128, "NHD")])
def test_decode_page_sizes(page_size, layout, d, tile):
    """Page sizes that tile the decode KV tile (8, 32) or span several tiles (128: a tile then starts
    inside a page), which the curated cases (1, 5, 16) leave out, on both decode tiles and all head dims."""
    dtype = "bf16"
    require(d, dtype)
    rng = rng_for("decode_pages", page_size, layout, d, tile)
    kv_lens = [1, 64, 130, 577, 0, 256, 1000, 33]
    kv = PagedKV(kv_lens, page_size, 2, d, dtype, layout, rng, kind="layer_view")
    hq = 4 * 2
    q = randn(rng, (len(kv_lens), hq, d), dtype)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), layout)
    w._decode_tile = tile
    w.plan(kv.indptr, kv.indices, kv.last_page_len, hq, 2, d, page_size, q_data_type=DTYPES[dtype])
    o, s = run_into(w, q, (kv.cache,), dtype, use_out=True)
    ref_o, ref_s = batch_reference(q, indptr_of([1] * len(kv_lens)), kv.kv)
    check(o, s, ref_o, ref_s, dtype)


def test_decode_skewed_batch_splits():
    """One 32768-token request among 63 short ones: the long one is split across CTAs and merged."""
    d, dtype = compiled(128, "fp16")
    rng = rng_for("skewed", d, dtype)
    lens = [int(n) for n in rng.integers(1, 300, 64)]
    lens[37] = 32768
    ps, hq, hkv = 16, 4, 1
    kv = PagedKV(lens, ps, hkv, d, dtype, "NHD", rng, spare=3)
    q = randn(rng, (len(lens), hq, d), dtype)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, kv.indices_on_device(), kv.last_page_len, hq, hkv, d, ps, q_data_type=DTYPES[dtype])
    assert w.plan_info.num_partials > 0, "the long request was not split"
    o, s = run_into(w, q, (kv.cache,), dtype, use_out=True)
    ref_o, ref_s = batch_reference(q, indptr_of([1] * len(lens)), kv.kv)
    check(o, s, ref_o, ref_s, dtype)


@pytest.mark.parametrize("d", [64, 128, 256])
def test_decode_lean_tile_splits(d):
    """The lean decode tile with split KV merged in the kernel: what a forced "lean" plan runs, and what
    the launcher runs for wide-tile plans where the wide tile does not fit (head dim 256 on sm86/89)."""
    dtype = "bf16"
    require(d, dtype)
    rng = rng_for("lean_split", d, dtype)
    lens = [int(n) for n in rng.integers(1, 300, 24)]
    lens[5], lens[17] = 20000, 6001
    ps, hq, hkv = 16, 8, 2
    kv = PagedKV(lens, ps, hkv, d, dtype, "HND", rng, spare=3)
    q = randn(rng, (len(lens), hq, d), dtype)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "HND")
    w._decode_tile = "lean"
    w.plan(kv.indptr, kv.indices_on_device(), kv.last_page_len, hq, hkv, d, ps, q_data_type=DTYPES[dtype])
    assert w.plan_info.lean_decode and w.plan_info.num_partials > 0, "the long requests were not split"
    o, s = run_into(w, q, (kv.cache,), dtype, use_out=True)
    ref_o, ref_s = batch_reference(q, indptr_of([1] * len(lens)), kv.kv)
    check(o, s, ref_o, ref_s, dtype)


@pytest.mark.parametrize("lens", [[4000, 1, 2500, 700, 4097], [2048] * 16])
def test_decode_pdl_chain(lens):
    """Programmatic dependent launch (enable_pdl, the default): each run's q is the previous run's
    output, so a kernel that read q before the previous kernel finished would see a stale or partial q.
    The chain matches the same chain without PDL bit for bit, and its first step the reference."""
    d, dtype = compiled(128, "bf16")
    rng = rng_for("pdl_chain", len(lens))
    ps, hq, hkv = 16, 8, 2
    kv = PagedKV(lens, ps, hkv, d, dtype, "NHD", rng, spare=3)
    q0 = randn(rng, (len(lens), hq, d), dtype)
    outs = {}
    for pdl in (True, False):
        w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD", enable_pdl=pdl)
        w.plan(kv.indptr, kv.indices_on_device(), kv.last_page_len, hq, hkv, d, ps, q_data_type=DTYPES[dtype])
        chain = [q0]
        for _ in range(8):
            chain.append(w.run(chain[-1], kv.cache))
        sync()
        outs[pdl] = chain
    for a, b in zip(outs[True], outs[False]):
        assert torch.equal(a, b)
    ref_o, ref_s = batch_reference(q0, indptr_of([1] * len(lens)), kv.kv)
    o1, s1 = run_into(w, q0, (kv.cache,), dtype, use_out=True)
    check(o1, s1, ref_o, ref_s, dtype)
    assert torch.equal(o1, outs[True][1])


@pytest.mark.parametrize("group,hkv,d,dtype", [(1, 4, 64, "fp16"), (4, 2, 128, "bf16"), (16, 1, 256, "fp16"),
                                                (5, 2, 128, "fp16")])
def test_decode_in_kernel_merge(group, hkv, d, dtype):
    """Split requests merged by the last CTA of each split group (FA2 decode tile): repeated runs agree
    exactly (the arrival counters return to zero), a corrupt page id in one chunk makes only that
    request NaN, and the next run after the ids are repaired is right again. Group sizes 1 / 4 / 16 /
    5 give 1, 4, 16 and 5 rows per group (threads per (row, chunk) pair 8, 2, 1, 1)."""
    require(d, dtype)
    rng = rng_for("in_kernel_merge", group, hkv, d, dtype)
    lens = [4000, 1, 2500, 700, 4097]
    ps, hq = 16, group * hkv
    kv = PagedKV(lens, ps, hkv, d, dtype, "NHD", rng, spare=3)
    q = randn(rng, (len(lens), hq, d), dtype)
    indices = torch.from_numpy(kv.indices.copy()).to(q.device)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, indices, kv.last_page_len, hq, hkv, d, ps, q_data_type=DTYPES[dtype])
    info = w.plan_info
    if info.backend == "fa2":
        assert info.merge_in_kernel and info.merge_groups > 0, "no split group to merge"
    ref_o, ref_s = batch_reference(q, indptr_of([1] * len(lens)), kv.kv)
    first = None
    for _ in range(3):
        o, s = run_into(w, q, (kv.cache,), dtype, use_out=True)
        check(o, s, ref_o, ref_s, dtype)
        if first is None:
            first = (o.clone(), s.clone())
        assert torch.equal(o, first[0]) and torch.equal(s, first[1])
    bad_page = int(kv.indptr[2]) + 100  # a page in the middle of request 2 (2500 tokens: split)
    good = indices[bad_page].item()
    indices[bad_page] = kv.num_pages + 5
    o, s = w.run(q, kv.cache, return_lse=True)
    sync()
    assert torch.isnan(o[2]).all() and torch.isnan(s[2]).all()
    for b in (0, 1, 3, 4):
        assert torch.isfinite(o[b].float()).all() and torch.isfinite(s[b]).all()
    indices[bad_page] = good
    o, s = run_into(w, q, (kv.cache,), dtype, use_out=True)
    check(o, s, ref_o, ref_s, dtype)


@pytest.mark.parametrize("where", ["numpy", "device"])
def test_decode_validate_rejects_out_of_range_page(where):
    d, dtype = compiled()
    rng = rng_for("validate_oor", where)
    kv = PagedKV([5, 9, 3], 4, 1, d, dtype, "NHD", rng)
    bad = kv.indices.copy()
    bad[2] = kv.num_pages  # one past the last page of the cache
    q = randn(rng, (3, 2, d), dtype)
    indices = torch.from_numpy(bad).to(q.device) if where == "device" else bad
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    with raises(ValueError, "kv_indices", str(kv.num_pages)):
        w.plan(kv.indptr, indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype], validate=True)
        w.run(q, kv.cache)


def test_decode_validate_rejects_negative_page():
    d, dtype = compiled()
    rng = rng_for("validate_neg")
    kv = PagedKV([5, 9], 4, 1, d, dtype, "NHD", rng)
    bad = kv.indices.copy()
    bad[1] = -1
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    with raises(ValueError, "kv_indices", "-1"):
        w.plan(kv.indptr, bad, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype], validate=True)
        w.run(randn(rng, (2, 2, d), dtype), kv.cache)


def test_decode_corrupt_device_page_ids_give_nan_rows():
    """Without validate=True, device page ids are not checked on the host: a corrupt id must never be
    read out of range; the requests that use it come out NaN, the others are right."""
    d, dtype = compiled()
    rng = rng_for("corrupt_device_ids")
    kv = PagedKV([5, 9, 3], 4, 1, d, dtype, "NHD", rng)
    q = randn(rng, (3, 2, d), dtype)
    indices = torch.from_numpy(kv.indices.copy()).to(q.device)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])
    bad_page = int(kv.indptr[1])  # first page of request 1
    for bad in (kv.num_pages + 1000, -7):
        indices[bad_page] = bad  # corrupted after plan(): only the kernel can notice
        o, s = w.run(q, kv.cache, return_lse=True)
        torch.cuda.synchronize()
        assert torch.isnan(o[1]).all() and torch.isnan(s[1]).all()
        for b in (0, 2):
            assert torch.isfinite(o[b].float()).all() and torch.isfinite(s[b]).all()


# ---- paged / ragged prefill -------------------------------------------------------------------------

# (qo_len, kv_len): kv >= qo for causal; the non-causal set also has qo > kv, kv 0 and qo 0.
REQS_CAUSAL = [(1, 1), (7, 7), (17, 40), (127, 127), (7, 300), (1, 577), (17, 19)]
REQS_FULL = [(1, 9), (7, 0), (17, 5), (0, 12), (127, 300), (7, 7), (1, 577)]

PREFILL_FEATURES = {
    "plain": dict(),
    "causal": dict(causal=True),
    "mask": dict(mask=True),
    "mask_causal": dict(mask=True, causal=True),
    "packed_mask": dict(mask="packed", causal=True),
    "window": dict(window_left=16),
    "window_causal": dict(window_left=16, causal=True),
    "softcap": dict(logits_soft_cap=30.0, sm_scale=1.0, causal=True),
    "sm_scale": dict(sm_scale=0.3),
    "all": dict(mask=True, causal=True, window_left=16, logits_soft_cap=30.0, sm_scale=0.2),
}
PAGE_SIZES = [1, 5, 16]
KINDS = ["combined", "tuple", "layer_view"]
LAYOUTS = ["NHD", "HND"]
HEAD_DIMS = [64, 128, 256]
GROUPS = [1, 3, 4, 5, 7, 8]


def _prefill_cases():
    cases = []
    for i, name in enumerate(PREFILL_FEATURES):
        for j, storage in enumerate(["paged", "ragged"]):
            n = 2 * i + j
            dtype = ("fp16", "bf16")[(i + j) % 2]
            layout = LAYOUTS[(n // 2 + n) % 2]
            d = HEAD_DIMS[n % 3]
            group = GROUPS[n % 6 if j == 0 else (n + 3) % 6]
            hkv = 1 + n % 2
            ps = PAGE_SIZES[i % 3]
            kind = KINDS[(i // 3 + i) % 3]
            cases.append(pytest.param(n, name, storage, group, hkv, layout, dtype, d, ps, kind,
                                      id=f"{name}-{storage}-g{group}-kv{hkv}-{layout}-{dtype}-d{d}"
                                         + (f"-ps{ps}-{kind}" if storage == "paged" else "")))
    return cases


@pytest.mark.parametrize("n,name,storage,group,hkv,layout,dtype,d,ps,kind", _prefill_cases())
def test_prefill(n, name, storage, group, hkv, layout, dtype, d, ps, kind):
    require(d, dtype)
    opts = dict(PREFILL_FEATURES[name])
    mask_kind = opts.pop("mask", None)
    causal = opts.get("causal", False)
    rng = rng_for("batch_prefill", name, storage, group, hkv, layout, dtype, d, ps, kind)
    reqs = REQS_CAUSAL if causal else REQS_FULL
    qo_lens, kv_lens = [r[0] for r in reqs], [r[1] for r in reqs]
    qo_indptr = indptr_of(qo_lens)
    hq = group * hkv
    q = randn(rng, (int(qo_indptr[-1]), hq, d), dtype)
    masks, kw = None, dict(opts)
    if mask_kind:
        masks = [random_mask(rng, a, b) for a, b in zip(qo_lens, kv_lens)]
        flat = np.concatenate([m.reshape(-1) for m in masks])
        if mask_kind == "packed":
            kw["packed_custom_mask"] = kvinfer.pack_custom_mask(torch.from_numpy(flat).to(q.device))
        else:  # the flat bool mask, on the host or the device
            kw["custom_mask"] = flat if n % 2 else torch.from_numpy(flat).to(q.device)
    ws = workspace()
    if storage == "paged":
        kv = PagedKV(kv_lens, ps, hkv, d, dtype, layout, rng, kind=kind)
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws, layout)
        w.plan(host_index(qo_indptr, n), kv.indptr, kv.indices if n % 3 else kv.indices_on_device(),
               host_index(kv.last_page_len, n), hq, hkv, d, ps, q_data_type=q_data_type(dtype, n), **kw)
        args = (kv.cache,)
    else:
        kv = RaggedKV(kv_lens, hkv, d, dtype, layout, rng)
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, layout)
        w.plan(host_index(qo_indptr, n), host_index(kv.indptr, n + 1), hq, hkv, d, q_data_type=q_data_type(dtype, n),
               **kw)
        args = (kv.k, kv.v)
    o, s = run_into(w, q, args, dtype, use_out=n % 4 < 2)
    ref_o, ref_s = batch_reference(q, qo_indptr, kv.kv, masks, **opts)
    check(o, s, ref_o, ref_s, dtype, name)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("storage", ["paged", "ragged"])
def test_prefill_long_kv_splits(storage, causal):
    """Few queries over a long KV: the plan splits the KV across CTAs and merges the partials."""
    d, dtype = compiled(128, "bf16")
    rng = rng_for("prefill_split", storage, causal)
    qo_lens, kv_lens = [17], [8192]
    qo_indptr = indptr_of(qo_lens)
    hq, hkv = 4, 1
    q = randn(rng, (17, hq, d), dtype)
    if storage == "paged":
        kv = PagedKV(kv_lens, 16, hkv, d, dtype, "HND", rng)
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), "HND")
        w.plan(qo_indptr, kv.indptr, kv.indices, kv.last_page_len, hq, hkv, d, 16, causal=causal,
               q_data_type=DTYPES[dtype])
        args = (kv.cache,)
    else:
        kv = RaggedKV(kv_lens, hkv, d, dtype, "NHD", rng)
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(workspace(), "NHD")
        w.plan(qo_indptr, kv.indptr, hq, hkv, d, causal=causal, q_data_type=DTYPES[dtype])
        args = (kv.k, kv.v)
    assert w.plan_info.num_partials > 0, "the long request was not split"
    o, s = run_into(w, q, args, dtype, use_out=True)
    ref_o, ref_s = batch_reference(q, qo_indptr, kv.kv, causal=causal)
    check(o, s, ref_o, ref_s, dtype)


# ---- cascade ----------------------------------------------------------------------------------------

CASCADE_CASES = [
    # causal, layout, dtype, head_dim, page_size
    (False, "NHD", "fp16", 128, 16),
    (True, "HND", "bf16", 64, 5),
    (True, "NHD", "fp16", 256, 16),
    (False, "HND", "bf16", 128, 1),
    (True, "NHD", "bf16", 128, 16),
]


@pytest.mark.parametrize("causal,layout,dtype,d,ps", [pytest.param(*c, id="{}-{}-{}-d{}-ps{}".format(
    "causal" if c[0] else "full", *c[1:])) for c in CASCADE_CASES])
def test_cascade_two_levels(causal, layout, dtype, d, ps):
    """Level 0: every query over 3 shared prefix pages; level 1: each request over its own pages."""
    require(d, dtype)
    rng = rng_for("cascade", causal, layout, dtype, d, ps)
    qo_lens = [1, 7, 17, 3]
    own_lens = [4, 7, 30, 11]  # >= qo_lens: causal is bottom-right over prefix + own
    hq, hkv = 8, 2
    kv = PagedKV([3 * ps] + own_lens, ps, hkv, d, dtype, layout, rng)  # "request" 0 is the prefix
    total_q = sum(qo_lens)
    q = randn(rng, (total_q, hq, d), dtype)
    first = int(kv.indptr[1])
    w = kvinfer.MultiLevelCascadeAttentionWrapper(2, workspace(), layout)
    w.plan([np.array([0, total_q], np.int32), indptr_of(qo_lens)],
           [np.array([0, 3], np.int32), (kv.indptr[1:] - first).astype(np.int32)],
           [kv.indices[:first], kv.indices[first:]],
           [np.array([ps], np.int32), kv.last_page_len[1:]],
           hq, hkv, d, ps, causal=causal, q_data_type=DTYPES[dtype])
    o, s = w.run(q, kv.cache, return_lse=True)
    sync()

    def concat(b):
        pk, pv = kv.kv(0)
        ok, ov = kv.kv(b + 1)
        return np.concatenate([pk, ok]), np.concatenate([pv, ov])

    ref_o, ref_s = batch_reference(q, indptr_of(qo_lens), concat, causal=causal)
    check(o, s, ref_o, ref_s, dtype)
    o2 = w.run(q, kv.cache)
    sync()
    check(o2, None, ref_o, ref_s, dtype, "return_lse=False")


# ---- validation -------------------------------------------------------------------------------------

def _decode_setup(lens=(5, 9, 3), ps=4, hq=2, hkv=1, d=None, dtype=None):
    d0, dt0 = compiled()
    d, dtype = d or d0, dtype or dt0
    rng = rng_for("validation", lens, ps, hq, hkv, d, dtype)
    kv = PagedKV(list(lens), ps, hkv, d, dtype, "NHD", rng)
    q = randn(rng, (len(lens), hq, d), dtype)
    return kv, q, d, dtype


@pytest.mark.parametrize("which", ["decode", "paged", "ragged"])
def test_run_before_plan(which):
    kv, q, d, dtype = _decode_setup()
    ws = workspace()
    with raises(RuntimeError, "plan"):
        if which == "decode":
            kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD").run(q, kv.cache)
        elif which == "paged":
            kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD").run(q, kv.cache)
        else:
            kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD").run(q, kv.k_dev[:, 0], kv.v_dev[:, 0])


def test_float32_q_at_run():
    kv, q, d, dtype = _decode_setup()
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, kv.indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])
    with raises(TypeError, "q", "float32"):
        w.run(q.float(), kv.cache)


def test_float32_q_data_type_at_plan():
    kv, q, d, dtype = _decode_setup()
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    with raises(TypeError, "q_data_type"):
        w.plan(kv.indptr, kv.indices, kv.last_page_len, 2, 1, d, 4, q_data_type=torch.float32)


def test_head_dim_96():
    kv, q, d, dtype = _decode_setup(d=96)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    with raises(ValueError, "head_dim", "96"):  # at plan or at run
        w.plan(kv.indptr, kv.indices, kv.last_page_len, 2, 1, 96, 4, q_data_type=DTYPES[dtype])
        w.run(q, kv.cache)


@pytest.mark.parametrize("which", ["decode", "paged", "ragged"])
def test_heads_not_a_multiple(which):
    kv, q, d, dtype = _decode_setup()
    ws = workspace()
    with raises(ValueError, "num_qo_heads", "num_kv_heads"):
        if which == "decode":
            kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD").plan(kv.indptr, kv.indices, kv.last_page_len, 6, 4,
                                                                       d, 4, q_data_type=DTYPES[dtype])
        elif which == "paged":
            kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD").plan(
                indptr_of([1, 1, 1]), kv.indptr, kv.indices, kv.last_page_len, 6, 4, d, 4, q_data_type=DTYPES[dtype])
        else:
            kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD").plan(
                indptr_of([1, 1, 1]), indptr_of([5, 9, 3]), 6, 4, d, q_data_type=DTYPES[dtype])


def test_q_rows_differ_from_plan():
    kv, q, d, dtype = _decode_setup()
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, kv.indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])
    with raises(ValueError, "q", "3"):
        w.run(q[:2], kv.cache)
    wp = kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD")
    wp.plan(indptr_of([2, 1, 4]), kv.indptr, kv.indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])
    with raises(ValueError, "q", "7"):
        wp.run(randn(rng_for("rows"), (6, 2, d), dtype), kv.cache)


def test_kv_heads_differ_from_plan():
    kv, q, d, dtype = _decode_setup(hq=4, hkv=2)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, kv.indices, kv.last_page_len, 4, 1, d, 4, q_data_type=DTYPES[dtype])
    with raises(ValueError, "plan"):
        w.run(q, kv.cache)


def test_page_size_differs_from_plan():
    kv, q, d, dtype = _decode_setup()
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD")
    w.plan(kv.indptr, kv.indices, np.minimum(kv.last_page_len, 2), 2, 1, d, 2, q_data_type=DTYPES[dtype])
    with raises(ValueError, "page_size"):
        w.run(q, kv.cache)


@pytest.mark.parametrize("which", ["kv_indptr", "qo_indptr", "kv_indptr_start"])
def test_non_monotone_indptr(which):
    kv, q, d, dtype = _decode_setup()
    ws = workspace()
    bad = np.array([0, 2, 1, 3], np.int32)
    if which == "kv_indptr":
        with raises(ValueError, "kv_indptr", "non-decreasing"):
            kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD").plan(bad, kv.indices, kv.last_page_len, 2, 1, d, 4,
                                                                       q_data_type=DTYPES[dtype])
    elif which == "qo_indptr":
        with raises(ValueError, "qo_indptr", "non-decreasing"):
            kvinfer.BatchPrefillWithPagedKVCacheWrapper(ws, "NHD").plan(bad, kv.indptr, kv.indices, kv.last_page_len,
                                                                        2, 1, d, 4, q_data_type=DTYPES[dtype])
    else:
        with raises(ValueError, "kv_indptr", "start at 0"):
            kvinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD").plan(
                indptr_of([1, 1, 1]), np.array([1, 6, 10, 13], np.int32), 2, 1, d, q_data_type=DTYPES[dtype])


@pytest.mark.parametrize("last", [0, 5])
def test_last_page_len_out_of_range(last):
    kv, q, d, dtype = _decode_setup()  # page_size 4; every request has pages
    bad = kv.last_page_len.copy()
    bad[1] = last
    with raises(ValueError, "kv_last_page_len", str(last)):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD").plan(kv.indptr, kv.indices, bad, 2, 1, d, 4,
                                                                            q_data_type=DTYPES[dtype])


def test_int64_indices_are_rejected():
    kv, q, d, dtype = _decode_setup()
    with raises(TypeError, "kv_indices", "int32"):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD").plan(
            kv.indptr, kv.indices.astype(np.int64), kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])


def test_cascade_argument_checks():
    with raises(ValueError, "num_levels"):
        kvinfer.MultiLevelCascadeAttentionWrapper(0, workspace(), "NHD")
    w = kvinfer.MultiLevelCascadeAttentionWrapper(2, workspace(), "NHD")
    one = [np.array([0, 1], np.int32)]
    with raises(ValueError, "qo_indptr_arr"):
        w.plan(one, one * 2, one * 2, one * 2, 2, 1, compiled()[0], 4)


def test_bad_layout_is_rejected():
    with raises(ValueError, "kv_layout"):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NDH")
