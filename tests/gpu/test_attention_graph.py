"""CUDA-graph mode of the batch wrappers: capture run() once, then re-plan and replay.

The wrappers promise (wrappers.py) that with use_cuda_graph=True one captured run() stays valid after
every later plan() with the same q shape, whatever the lengths, and whether or not the new plan
splits long requests. Each test captures under one plan and replays under a sequence of others
(split, unsplit, fewer requests than the capacity, query tiles of the other size), checking every
replay against the float64 reference. Outputs are NaN-poisoned before each replay.
"""
import pytest

import kvinfer
from _attn_util import (DEVICE, DTYPES, NAN, PagedKV, batch_reference, capture_graph, check, compiled, indptr_of,
                        raises, randn, require, rng_for, sync, workspace)

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")
torch = pytest.importorskip("torch")

# ---- decode ------------------------------------------------------------------------------------------

BATCH = 8
DECODE_PS = 16
DECODE_PLANS = {
    "short": [7, 1, 33, 16, 0, 100, 64, 250],        # full batch, no request longer than a chunk: no split
    "split": [5000, 3, 17, 0, 9000, 48, 1, 129],     # two long requests: split and merged
    "partial": [200, 0, 5, 16, 77],                  # fewer requests than the capacity, no split
    "split_partial": [31, 6000, 2],                  # fewer requests, one split
}
DECODE_CASES = [
    # captured plan, layout, dtype, head_dim, cache kind
    ("short", "NHD", "fp16", 128, "combined"),
    ("short", "HND", "bf16", 64, "layer_view"),
    ("split", "NHD", "bf16", 256, "tuple"),
    ("split", "HND", "fp16", 128, "combined"),
    ("partial", "NHD", "fp16", 64, "combined"),
]


def _order(first, plans):
    """The captured plan, every other plan, then the captured one again."""
    return [first] + [p for p in plans if p != first] + [first]


@pytest.mark.parametrize("first,layout,dtype,d,kind", [pytest.param(*c, id="{}-{}-{}-d{}-{}".format(*c))
                                                       for c in DECODE_CASES])
def test_decode_graph_replay_after_replan(first, layout, dtype, d, kind):
    require(d, dtype)
    rng = rng_for("graph_decode", first, layout, dtype, d, kind)
    hq, hkv, ps = 8, 2, DECODE_PS
    cap_pages = max(sum((n + ps - 1) // ps for n in lens) for lens in DECODE_PLANS.values()) + 5
    kv = PagedKV(DECODE_PLANS[first], ps, hkv, d, dtype, layout, rng, kind=kind, num_pages=cap_pages)
    dev = kv.k_dev.device
    indptr_buf = torch.empty(BATCH + 1, dtype=torch.int32, device=dev)
    indices_buf = torch.empty(cap_pages, dtype=torch.int32, device=dev)
    last_buf = torch.empty(BATCH, dtype=torch.int32, device=dev)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), layout, use_cuda_graph=True,
                                                   paged_kv_indptr_buffer=indptr_buf,
                                                   paged_kv_indices_buffer=indices_buf,
                                                   paged_kv_last_page_len_buffer=last_buf)
    q = torch.empty((BATCH, hq, d), dtype=DTYPES[dtype], device=dev)
    out = torch.empty((BATCH, hq, d), dtype=DTYPES[dtype], device=dev)
    lse = torch.empty((BATCH, hq), dtype=torch.float32, device=dev)

    def plan(step, name):
        lens = DECODE_PLANS[name]
        kv.set_table(rng, lens)
        q.copy_(randn(rng, (BATCH, hq, d), dtype))
        indices = kv.indices if step % 2 == 0 else kv.indices_on_device()
        w.plan(kv.indptr, indices, kv.last_page_len, hq, hkv, d, ps, q_data_type=DTYPES[dtype])
        return lens

    plan(0, first)
    graph = capture_graph(lambda: w.run(q, kv.cache, out=out, lse=lse, return_lse=True))
    for step, name in enumerate(_order(first, DECODE_PLANS)):
        lens = plan(step, name) if step else DECODE_PLANS[first]
        if name.startswith("split"):
            assert w.plan_info.num_partials > 0, f"plan {name!r} was meant to split"
        else:
            assert w.plan_info.num_partials == 0, f"plan {name!r} was meant not to split"
        out.fill_(NAN)
        lse.fill_(NAN)
        graph.replay()
        sync()
        n = len(lens)
        ref_o, ref_s = batch_reference(q[:n], indptr_of([1] * n), kv.kv)
        check(out[:n], lse[:n], ref_o, ref_s, dtype, f"captured under {first!r}, replayed under {name!r} (step {step})")


# ---- paged prefill -------------------------------------------------------------------------------------

CAP_BATCH = 6
MAX_TOKENS = 160
PREFILL_PS = 5
# (qo_lens, kv_lens), kv >= qo (causal). With 4 query heads per KV head:
PREFILL_PLANS = {
    "small": ([1, 2, 1, 3, 1, 2], [5, 40, 17, 3, 100, 64]),  # <= 16 packed rows per request: 16-row tiles
    "large": ([127, 7, 17], [127, 200, 40]),                 # 64-row tiles, fewer tokens than the capacity
    "full": ([127, 33], [127, 200]),                         # exactly max_num_qo_tokens tokens, no split
    "split": ([17, 1, 40], [4000, 9, 700]),                  # long KV: split and merged
}
PREFILL_CASES = [
    # captured plan, layout, dtype, head_dim
    ("small", "NHD", "fp16", 128),
    ("large", "HND", "bf16", 128),
    ("full", "NHD", "bf16", 64),
    ("split", "HND", "fp16", 256),
]


@pytest.mark.parametrize("first,layout,dtype,d", [pytest.param(*c, id="{}-{}-{}-d{}".format(*c))
                                                  for c in PREFILL_CASES])
def test_prefill_graph_replay_after_replan(first, layout, dtype, d):
    require(d, dtype)
    rng = rng_for("graph_prefill", first, layout, dtype, d)
    hq, hkv, ps = 8, 2, PREFILL_PS
    cap_pages = max(sum((n + ps - 1) // ps for n in kvl) for _, kvl in PREFILL_PLANS.values()) + 5
    kv = PagedKV(PREFILL_PLANS[first][1], ps, hkv, d, dtype, layout, rng, num_pages=cap_pages)
    dev = kv.k_dev.device
    w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(
        workspace(), layout, use_cuda_graph=True,
        qo_indptr_buf=torch.empty(CAP_BATCH + 1, dtype=torch.int32, device=dev),
        paged_kv_indptr_buf=torch.empty(CAP_BATCH + 1, dtype=torch.int32, device=dev),
        paged_kv_indices_buf=torch.empty(cap_pages, dtype=torch.int32, device=dev),
        paged_kv_last_page_len_buf=torch.empty(CAP_BATCH, dtype=torch.int32, device=dev),
        max_num_qo_tokens=MAX_TOKENS)
    q = torch.empty((MAX_TOKENS, hq, d), dtype=DTYPES[dtype], device=dev)
    out = torch.empty_like(q)
    lse = torch.empty((MAX_TOKENS, hq), dtype=torch.float32, device=dev)

    def plan(step, name):
        qo_lens, kv_lens = PREFILL_PLANS[name]
        assert sum(qo_lens) <= MAX_TOKENS and len(qo_lens) <= CAP_BATCH
        kv.set_table(rng, kv_lens)
        q.copy_(randn(rng, q.shape, dtype))
        indices = kv.indices if step % 2 == 0 else kv.indices_on_device()
        w.plan(indptr_of(qo_lens), kv.indptr, indices, kv.last_page_len, hq, hkv, d, ps, causal=True,
               q_data_type=DTYPES[dtype])
        return indptr_of(qo_lens)

    qo_indptr = plan(0, first)
    graph = capture_graph(lambda: w.run(q, kv.cache, out=out, lse=lse, return_lse=True))
    for step, name in enumerate(_order(first, PREFILL_PLANS)):
        if step:
            qo_indptr = plan(step, name)
        if name == "split":
            assert w.plan_info.num_partials > 0, "plan 'split' was meant to split"
        else:
            assert w.plan_info.num_partials == 0, f"plan {name!r} was meant not to split"
        out.fill_(NAN)
        lse.fill_(NAN)
        graph.replay()
        sync()
        n = int(qo_indptr[-1])  # rows past the plan's tokens are not checked
        ref_o, ref_s = batch_reference(q, qo_indptr, kv.kv, causal=True)
        check(out[:n], lse[:n], ref_o, ref_s, dtype, f"captured under {first!r}, replayed under {name!r} (step {step})")


# ---- graph-mode construction and capacity checks ---------------------------------------------------------

def test_graph_mode_needs_buffers():
    i32 = dict(dtype=torch.int32, device=DEVICE)
    with raises(ValueError, "paged_kv_indptr_buffer"):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD", use_cuda_graph=True)
    with raises(ValueError, "paged_kv_indices_buffer"):
        kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD", use_cuda_graph=True,
                                                   paged_kv_indptr_buffer=torch.empty(5, **i32))
    with raises(ValueError, "max_num_qo_tokens"):
        kvinfer.BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD", use_cuda_graph=True,
                                                    qo_indptr_buf=torch.empty(5, **i32),
                                                    paged_kv_indices_buf=torch.empty(16, **i32))


def test_graph_plan_beyond_capacity_is_rejected():
    d, dtype = compiled()
    rng = rng_for("graph_capacity")
    kv = PagedKV([5, 9, 3], 4, 1, d, dtype, "NHD", rng)
    dev = kv.k_dev.device
    i32 = dict(dtype=torch.int32, device=dev)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD", use_cuda_graph=True,
                                                   paged_kv_indptr_buffer=torch.empty(3, **i32),
                                                   paged_kv_indices_buffer=torch.empty(64, **i32),
                                                   paged_kv_last_page_len_buffer=torch.empty(2, **i32))
    with raises(ValueError, "capacity"):  # 3 requests, room for 2
        w.plan(kv.indptr, kv.indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])
    w2 = kvinfer.BatchDecodeWithPagedKVCacheWrapper(workspace(), "NHD", use_cuda_graph=True,
                                                    paged_kv_indptr_buffer=torch.empty(4, **i32),
                                                    paged_kv_indices_buffer=torch.empty(2, **i32),
                                                    paged_kv_last_page_len_buffer=torch.empty(3, **i32))
    with raises(ValueError, "paged_kv_indices_buffer"):  # 6 pages, room for 2
        w2.plan(kv.indptr, kv.indices, kv.last_page_len, 2, 1, d, 4, q_data_type=DTYPES[dtype])
