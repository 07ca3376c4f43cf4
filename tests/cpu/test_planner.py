"""Decode planner: coverage, merge indices, workspace bounds, balance, validation, and a float64
CPU executor of the plan against the reference attention."""
import numpy as np
import pytest

from kvinfer import reference
from kvinfer.plan import plan_decode


def page_table(lens, page_size):
    lens = np.asarray(lens, np.int64)
    pages = (lens + page_size - 1) // page_size
    indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
    last = np.where(pages > 0, lens - (pages - 1) * page_size, 0).astype(np.int32)
    return indptr, last


def plan_for(lens, page_size=16, hq=32, hkv=8, d=128, target=264, unit=256):
    indptr, last = page_table(lens, page_size)
    return plan_decode(indptr, last, hq, hkv, d, page_size, target_ctas=target, min_chunk_tokens=unit)


BATCHES = {
    "skewed": [32768] + [100] * 63,
    "one_long": [32768],
    "uniform": [2048] * 256,
    "odd": [1, 7, 17, 127, 577, 0, 3000],
    "empty": [0, 0],
    "random": list(np.random.default_rng(1).integers(0, 20000, 50)),
}


@pytest.mark.parametrize("name", BATCHES)
def test_every_kv_position_is_covered_exactly_once(name):
    lens = BATCHES[name]
    p = plan_for(lens)
    seen = {b: [] for b in range(len(lens))}
    for b, s, e in zip(p["work_request"], p["work_kv_begin"], p["work_kv_end"]):
        assert 0 <= s <= e <= lens[b] and e - s <= p["chunk_tokens"]
        seen[int(b)].append((int(s), int(e)))
    for b, n in enumerate(lens):
        ranges = sorted(seen[b])
        assert ranges, f"request {b} has no work"
        if n == 0:
            assert ranges == [(0, 0)]  # one empty chunk writes 0 / -inf
            continue
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b_[0] and a[0] < a[1] for a, b_ in zip(ranges, ranges[1:]))


@pytest.mark.parametrize("name", BATCHES)
def test_merge_indices(name):
    lens = BATCHES[name]
    p = plan_for(lens)
    mi = p["merge_indptr"]
    assert len(mi) == len(lens) + 1 and mi[0] == 0 and mi[-1] == p["num_partials"]
    slots = p["work_partial"][p["work_partial"] >= 0]
    assert sorted(slots.tolist()) == list(range(p["num_partials"]))
    for b in range(len(lens)):
        mine = p["work_partial"][p["work_request"] == b]
        if len(mine) == 1:
            assert mine[0] == -1 and mi[b + 1] == mi[b]
        else:
            assert sorted(mine.tolist()) == list(range(mi[b], mi[b + 1]))


@pytest.mark.parametrize("name", BATCHES)
def test_workspace_bound_holds(name):
    hq, d = 32, 128
    p = plan_for(BATCHES[name], hq=hq, d=d)
    n = len(p["work_request"])
    # Work items are 6 int32 each; per request qo_indptr, kv_begin, kv_len (int32) and a mask offset (int64).
    assert p["int_workspace_bytes"] >= 24 * n + 20 * len(BATCHES[name]) + 4
    # Partial outputs in the output dtype (2 bytes here) and fp32 LSEs.
    assert p["float_workspace_bytes"] >= p["num_partials"] * hq * (2 * d + 4)


def lpt_makespan(chunks, slots):
    """Makespan of longest-first list scheduling of chunk costs on `slots` CTAs."""
    load = np.zeros(slots)
    for c in sorted(chunks, reverse=True):
        load[np.argmin(load)] += c
    return load.max()


@pytest.mark.parametrize("name", ["skewed", "one_long", "random"])
def test_skewed_batches_are_balanced(name):
    lens, hkv, target = BATCHES[name], 8, 264
    p = plan_for(lens, hkv=hkv, target=target)
    costs = [max(e - s, 1) for s, e in zip(p["work_kv_begin"], p["work_kv_end"])] * hkv
    ideal = hkv * sum(max(n, 1) for n in lens) / target
    bound = max(ideal, max(costs))
    assert lpt_makespan(costs, target) <= 1.3 * bound
    assert max(costs) <= max(256, 2 * ideal)  # no chunk dominates the batch
    if name == "skewed":
        assert p["num_partials"] > 8  # the 32k request was split; the short ones were not
        assert (p["work_request"] == 0).sum() == p["num_partials"]


def test_full_batches_are_not_split():
    p = plan_for([2048] * 256)
    assert p["num_partials"] == 0 and len(p["work_request"]) == 256


def test_longest_requests_first():
    p = plan_for([10, 5000, 300, 0])
    order = list(dict.fromkeys(p["work_request"].tolist()))
    assert order == [1, 2, 0, 3]


@pytest.mark.parametrize("lens,page_size,hq,hkv", [
    ([1, 7, 17, 127, 577], 5, 6, 2),
    ([3000, 0, 40], 16, 5, 5),
    ([2000, 1], 1, 8, 1),
])
def test_cpu_executor_matches_reference(lens, page_size, hq, hkv):
    """Run the plan's work items in float64 (gather pages, attend, merge partials) == full attention."""
    rng = np.random.default_rng(7)
    d = 64
    indptr, last = page_table(lens, page_size)
    p = plan_decode(indptr, last, hq, hkv, d, page_size, target_ctas=16, min_chunk_tokens=64)
    num_pages = int(indptr[-1])
    perm = rng.permutation(num_pages).astype(np.int32)  # kv_indices: a random page order
    k_cache = rng.standard_normal((num_pages, page_size, hkv, d))
    v_cache = rng.standard_normal((num_pages, page_size, hkv, d))
    q = rng.standard_normal((len(lens), hq, d))

    def gather(cache, b):
        pages = perm[indptr[b]:indptr[b + 1]]
        return cache[pages].reshape(-1, hkv, d)[: lens[b]]

    out = np.full((len(lens), hq, d), np.nan)
    lse = np.full((len(lens), hq), np.nan)
    part_v = np.full((p["num_partials"], hq, d), np.nan)
    part_s = np.full((p["num_partials"], hq), np.nan)
    for b, s, e, slot in zip(p["work_request"], p["work_kv_begin"], p["work_kv_end"], p["work_partial"]):
        o, l = reference.attention(q[b][None], gather(k_cache, b)[s:e], gather(v_cache, b)[s:e])
        if slot < 0:
            out[b], lse[b] = o[0], l[0]
        else:
            part_v[slot], part_s[slot] = o[0], l[0]
    for b in range(len(lens)):
        lo, hi = p["merge_indptr"][b], p["merge_indptr"][b + 1]
        if hi > lo:
            o, l = reference.merge_states(part_v[lo:hi][None], part_s[lo:hi][None])
            out[b], lse[b] = o[0], l[0]
    for b in range(len(lens)):
        o_ref, l_ref = reference.attention(q[b][None], gather(k_cache, b), gather(v_cache, b))
        np.testing.assert_allclose(out[b], o_ref[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(np.isneginf(lse[b]), np.isneginf(l_ref[0]))
        fin = np.isfinite(l_ref[0])
        np.testing.assert_allclose(lse[b][fin], l_ref[0][fin], rtol=1e-10)


def test_validation():
    indptr, last = page_table([10, 20], 16)
    with pytest.raises(ValueError, match="non-decreasing"):
        plan_decode(np.array([0, 2, 1], np.int32), last, 8, 8, 128, 16)
    with pytest.raises(ValueError, match="kv_last_page_len.*1..16"):
        plan_decode(indptr, np.array([17, 4], np.int32), 8, 8, 128, 16)
    with pytest.raises(ValueError, match="kv_last_page_len.*1..16"):
        plan_decode(indptr, np.array([0, 4], np.int32), 8, 8, 128, 16)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        plan_decode(indptr, last, 12, 8, 128, 16)
    with pytest.raises(TypeError, match="kv_indptr.*int32"):
        plan_decode(indptr.astype(np.int64), last, 8, 8, 128, 16)
    with pytest.raises(ValueError, match="kv_last_page_len.*batch_size"):
        plan_decode(indptr, last[:1], 8, 8, 128, 16)
    with pytest.raises(ValueError, match="must start at 0"):
        plan_decode(indptr + 1, last, 8, 8, 128, 16)


def test_torch_cpu_index_arrays():
    torch = pytest.importorskip("torch")
    indptr, last = page_table([100, 5000], 16)
    p = plan_decode(torch.from_numpy(indptr), torch.from_numpy(last), 8, 8, 128, 16, target_ctas=16)
    assert p["work_kv_end"].max() == 5000
