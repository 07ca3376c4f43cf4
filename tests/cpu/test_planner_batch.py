"""Batch (prefill) planner: tile and KV coverage, merge indices, a float64 CPU executor of the plan
against the reference attention, balance, workspace bounds and validation.

Kernel semantics modelled here (cuda/sm80/attention_kernel.cuh): packed row r of a request is query
token r // group and query head kv_head * group + r % group; tile t covers packed rows
[t * tile_rows, (t + 1) * tile_rows) (rows past the request's end are skipped); every work item runs
for every KV head (the grid's y), so coverage per KV head is the coverage of the work list; a work
item with partial >= 0 writes query token qi's row to partial row partial + qi * splits, and
merge_indptr holds one range of partial rows per query token (empty for unsplit tokens).
"""
import heapq
import math

import numpy as np

import pytest

from _util import raises
from kvinfer import reference
from kvinfer import _C
from kvinfer.plan import plan_batch


def page_table(lens, page_size):
    """kv_indptr, kv_last_page_len of requests with `lens` KV tokens (page_size 0: ragged, no last page)."""
    lens = np.asarray(lens, np.int64)
    if page_size == 0:
        return np.concatenate([[0], np.cumsum(lens)]).astype(np.int32), None
    pages = (lens + page_size - 1) // page_size
    indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
    last = np.where(pages > 0, lens - (pages - 1) * page_size, 0).astype(np.int32)
    return indptr, last


def qo_indptr_of(qo_lens):
    return np.concatenate([[0], np.cumsum(np.asarray(qo_lens, np.int64))]).astype(np.int32)


def make_plan(qo_lens, kv_lens, page_size=16, hq=8, hkv=2, d=128, **kw):
    kv_indptr, last = page_table(kv_lens, page_size)
    p = plan_batch(qo_indptr_of(qo_lens), kv_indptr, last, hq, hkv, d, page_size, **kw)
    return p, p.arrays()


def tiles_of(qo_len, group, tile_rows):
    return -(-qo_len * group // tile_rows)


BATCHES = {
    # kv >= qo everywhere; one request with kv == qo, one decode-like request.
    "mixed": ([1, 7, 17, 127, 577], [1, 300, 17, 2000, 1200]),
    # qo > 0 with kv 0 (an empty KV range still writes 0 / -inf), qo 0 with a long KV (no work).
    "empties": ([3, 0, 9, 1, 40], [0, 500, 4000, 0, 40]),
}
GROUPS = [1, 3, 4, 5, 7, 8]
TARGETS = [(8, 16), (100000, 16), (264, 256)]  # (target_ctas, min_chunk_tokens)


def check_coverage(p, a, qo_lens, kv_lens, group):
    """Every (request, packed row, kv position) is covered by exactly one work item (for every KV
    head alike: work items are shared by the grid's y axis)."""
    R = p.tile_rows
    req, tile = a["work_request"], a["work_qo_tile"]
    kb, ke = a["work_kv_begin"], a["work_kv_end"]
    part, spl = a["work_partial"], a["work_splits"]
    np.testing.assert_array_equal(a["qo_indptr"], qo_indptr_of(qo_lens))
    np.testing.assert_array_equal(a["kv_len"], kv_lens)
    assert p.batch == len(qo_lens) and p.total_qo == sum(qo_lens)
    assert p.num_work == len(req)
    if p.backend == "fa2":  # one CTA per work item along x (fa3: a persistent grid, checked separately)
        assert p.grid_x == max(1, p.num_work)
    assert ((0 <= req) & (req < len(qo_lens))).all()
    ranges = {}  # (request, tile) -> kv ranges
    for b, t, s, e in zip(req.tolist(), tile.tolist(), kb.tolist(), ke.tolist()):
        assert 0 <= s <= e <= kv_lens[b], (b, t, s, e)
        assert e - s <= p.chunk_tokens
        ranges.setdefault((b, t), []).append((s, e))
    for b, (q, n) in enumerate(zip(qo_lens, kv_lens)):
        tiles = sorted(t for (bb, t) in ranges if bb == b)
        T = tiles_of(q, group, R)
        # Tiles 0..T-1 cover packed rows [0, T * R) once each, and [0, q * group) lies in there with
        # no tile wholly past the end.
        assert tiles == list(range(T)), f"request {b}: tiles {tiles}, expected {T}"
        assert (T - 1) * R < q * group <= T * R or (q == 0 and T == 0)
        for t in tiles:
            rs = sorted(ranges[(b, t)])
            if n == 0:
                assert rs == [(0, 0)], f"request {b} tile {t}: {rs}"  # one empty range: writes 0 / -inf
                continue
            assert rs[0][0] == 0 and rs[-1][1] == n, f"request {b} tile {t}: {rs}"
            assert all(x[0] < x[1] for x in rs), f"request {b} tile {t}: empty chunk in {rs}"
            assert all(x[1] == y[0] for x, y in zip(rs, rs[1:])), f"request {b} tile {t}: {rs}"
            # Every chunk but the last is chunk_tokens long (FA3 tail items: query tile 0 in shorter
            # pieces, all alike but the last).
            tail = p.tail_items > 0 and t == 0
            L = rs[0][1] - rs[0][0]
            assert all(e - s == (L if tail else p.chunk_tokens) for s, e in rs[:-1]), f"request {b} tile {t}: {rs}"
    # splits / partial consistency: splits = chunks of the request (of the tile with FA3 tail items);
    # partial -1 iff unsplit.
    for key in set(zip(req.tolist(), tile.tolist())) if p.tail_items else set(req.tolist()):
        m = (req == key[0]) & (tile == key[1]) if p.tail_items else req == key
        chunks = len(set(kb[m].tolist()))
        assert (spl[m] == chunks).all()
        assert ((part[m] < 0) == (chunks == 1)).all()
    check_item_metadata(p, a)


def check_item_metadata(p, a):
    """The request metadata each work item carries, its chunk index, and the in-kernel merge slots."""
    req, part, spl, chunk = a["work_request"], a["work_partial"], a["work_splits"], a["work_chunk"]
    qo = a["qo_indptr"]
    np.testing.assert_array_equal(a["work_qo_begin"], qo[req])
    np.testing.assert_array_equal(a["work_qo_len"], qo[req + 1] - qo[req])
    np.testing.assert_array_equal(a["work_kv_len"], a["kv_len"][req])
    main = len(req) - p.tail_items  # FA3 tail items: KV pieces of their own length (the first piece's)
    np.testing.assert_array_equal(a["work_kv_begin"][:main], chunk[:main].astype(np.int64) * p.chunk_tokens)
    if p.tail_items:
        piece = (a["work_kv_end"] - a["work_kv_begin"])[main:][chunk[main:] == 0]
        assert len(set(piece.tolist())) == 1
        np.testing.assert_array_equal(a["work_kv_begin"][main:], chunk[main:].astype(np.int64) * piece[0])
    assert ((0 <= chunk) & (chunk < spl)).all()
    # partial = the request's first partial row + chunk: one base per request.
    split = part >= 0
    for b in set(req[split].tolist()):
        assert len(set((part - chunk)[split & (req == b)].tolist())) == 1
    merge = a["work_merge"]
    if not p.merge_in_kernel:
        assert (merge == -1).all() and p.merge_groups == 0
        return
    assert p.tile_rows == 16 and p.backend == "fa2"
    assert ((merge >= 0) == split).all()
    # One slot per split (request, query tile), shared by its chunks, slots 0 .. merge_groups - 1.
    groups = {}
    for b, t, g in zip(req[split].tolist(), a["work_qo_tile"][split].tolist(), merge[split].tolist()):
        assert groups.setdefault((b, t), g) == g
    assert sorted(groups.values()) == list(range(p.merge_groups))
    for (b, t), g in groups.items():
        assert ((req == b) & (a["work_qo_tile"] == t)).sum() == spl[req == b][0]


@pytest.mark.parametrize("target,unit", TARGETS)
@pytest.mark.parametrize("tile_rows", [0, 16, 64])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("page_size", [0, 1, 5, 16])
@pytest.mark.parametrize("name", BATCHES)
def test_every_row_and_kv_position_is_covered_once(name, page_size, group, tile_rows, target, unit):
    qo_lens, kv_lens = BATCHES[name]
    hkv = 2
    p, a = make_plan(qo_lens, kv_lens, page_size, hq=hkv * group, hkv=hkv, d=128, tile_rows=tile_rows,
                     target_ctas=target, min_chunk_tokens=unit)
    rows = max(q * group for q in qo_lens)
    assert p.tile_rows == (16 if tile_rows == 16 or (tile_rows == 0 and rows <= 16) else 128)
    check_coverage(p, a, qo_lens, kv_lens, group)
    if target == 100000:
        assert p.num_partials > 0  # many CTA slots, 16-token unit: the long requests are split


@pytest.mark.parametrize("page_size", [0, 16])
def test_no_split_when_disallowed(page_size):
    qo_lens, kv_lens = BATCHES["mixed"]
    p, a = make_plan(qo_lens, kv_lens, page_size, hq=8, hkv=2, target_ctas=100000, min_chunk_tokens=16,
                     allow_split=False)
    assert p.num_partials == 0 and (a["work_partial"] == -1).all() and (a["work_splits"] == 1).all()
    assert (a["merge_indptr"] == 0).all()
    check_coverage(p, a, qo_lens, kv_lens, 4)


def check_merge(p, a, qo_lens, group):
    R = p.tile_rows
    mi = a["merge_indptr"]
    qo_indptr = qo_indptr_of(qo_lens)
    assert len(mi) == p.total_qo + 1 and mi[0] == 0 and mi[-1] == p.num_partials
    assert (np.diff(mi) >= 0).all()
    # (partial row, head offset in the group) written by the work items: each exactly once.
    written = np.zeros((p.num_partials, group), np.int64)
    by_token = {}  # (request, token) -> partial rows
    pair_rows = {}  # (request, chunk, token) -> partial row
    for b, t, s, part, S in zip(*(a[k].tolist() for k in ("work_request", "work_qo_tile", "work_kv_begin",
                                                          "work_partial", "work_splits"))):
        if part < 0:
            continue
        q = qo_lens[b]
        r = np.arange(t * R, min((t + 1) * R, q * group))
        prow = part + (r // group) * S
        assert ((0 <= prow) & (prow < p.num_partials)).all()
        np.add.at(written, (prow, r % group), 1)
        for qi in np.unique(r // group).tolist():
            by_token.setdefault((b, qi), set()).add(part + qi * S)
            pair_rows[(b, s, qi)] = part + qi * S
    assert (written == 1).all(), f"partial rows written {np.unique(written)} times"
    assert sorted(pair_rows.values()) == list(range(p.num_partials))  # one row per (chunk, token)
    for b, q in enumerate(qo_lens):
        split = [(b, qi) in by_token for qi in range(q)]
        assert all(split) or not any(split) or p.tail_items  # tail items: tile 0's tokens only
        for qi in range(q):
            g = qo_indptr[b] + qi
            want = set(range(mi[g], mi[g + 1]))
            assert by_token.get((b, qi), set()) == want, f"request {b} token {qi}"


@pytest.mark.parametrize("target,unit", TARGETS)
@pytest.mark.parametrize("tile_rows", [0, 16])
@pytest.mark.parametrize("group", [1, 3, 5, 8])
@pytest.mark.parametrize("page_size", [0, 5])
@pytest.mark.parametrize("name", BATCHES)
def test_merge_indices(name, page_size, group, tile_rows, target, unit):
    qo_lens, kv_lens = BATCHES[name]
    p, a = make_plan(qo_lens, kv_lens, page_size, hq=2 * group, hkv=2, d=64, tile_rows=tile_rows,
                     target_ctas=target, min_chunk_tokens=unit)
    if target == 100000:
        assert p.num_partials > 0
    check_merge(p, a, qo_lens, group)


def execute(p, a, q, gather_k, gather_v, qo_lens, kv_lens, hkv, causal):
    """Float64 model of the kernel + merge: returns (o [total_qo, Hq, D], lse [total_qo, Hq])."""
    total, hq, d = q.shape
    group = hq // hkv
    R = p.tile_rows
    qo_indptr = a["qo_indptr"]
    out = np.full((total, hq, d), np.nan)
    lse = np.full((total, hq), np.nan)
    part_v = np.full((p.num_partials, hq, d), np.nan)
    part_s = np.full((p.num_partials, hq), np.nan)
    scale = 1.0 / math.sqrt(d)
    for b, t, s, e, part, S in zip(*(a[k].tolist() for k in ("work_request", "work_qo_tile", "work_kv_begin",
                                                             "work_kv_end", "work_partial", "work_splits"))):
        ql, kl = qo_lens[b], kv_lens[b]
        r = np.arange(t * R, min((t + 1) * R, ql * group))
        qi = r // group
        pos = np.arange(s, e)
        allowed = np.ones((len(r), len(pos)), bool)
        if causal:  # bottom-right aligned over the request's full KV length
            allowed &= pos[None, :] <= (qi + kl - ql)[:, None]
        for h in range(hkv):
            heads = h * group + r % group
            qv = q[qo_indptr[b] + qi, heads]                     # [rows, D]
            kk, vv = gather_k(b)[s:e, h], gather_v(b)[s:e, h]    # [chunk, D]
            logits = np.where(allowed, qv @ kk.T * scale, -np.inf)
            m = logits.max(axis=1, initial=-np.inf)
            mu = np.where(np.isneginf(m), 0.0, m)
            w = np.exp(logits - mu[:, None])
            den = w.sum(axis=1)
            o = (w @ vv) / np.where(den > 0, den, 1.0)[:, None]
            with np.errstate(divide="ignore"):
                l2 = (mu + np.log(den)) / math.log(2.0)
            if part < 0:
                dst_o, dst_s, rows = out, lse, qo_indptr[b] + qi
            else:
                dst_o, dst_s, rows = part_v, part_s, part + qi * S
            assert np.isnan(dst_s[rows, heads]).all(), "row written twice"
            dst_o[rows, heads], dst_s[rows, heads] = o, l2
    mi = a["merge_indptr"]
    for g in range(total):
        lo, hi = mi[g], mi[g + 1]
        if hi > lo:
            assert np.isnan(lse[g]).all(), "split token also written directly"
            o, l2 = reference.merge_states(part_v[lo:hi][None], part_s[lo:hi][None])
            out[g], lse[g] = o[0], l2[0]
    assert not np.isnan(lse).any(), "rows never written"
    return out, lse


@pytest.mark.parametrize("tile_rows", [0, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_cpu_executor_matches_reference(causal, tile_rows):
    rng = np.random.default_rng(11)
    page_size, hkv, group, d = 5, 2, 3, 64
    hq = hkv * group
    qo_lens = [1, 17, 9, 0, 4]
    kv_lens = [300, 300, 9, 50, 0]  # request 2: kv == qo; request 3: no queries; request 4: no KV
    kv_indptr, last = page_table(kv_lens, page_size)
    num_pages = int(kv_indptr[-1])
    perm = rng.permutation(num_pages).astype(np.int32)  # kv_indices: a random page order
    p = plan_batch(qo_indptr_of(qo_lens), kv_indptr, last, hq, hkv, d, page_size, causal=causal,
                   tile_rows=tile_rows, target_ctas=64, min_chunk_tokens=16, kv_indices=perm)
    a = p.arrays()
    assert p.num_partials > 0
    assert p.tile_rows == (16 if tile_rows == 16 else 128)  # 17 * 3 = 51 packed rows: the prefill tile (D=64)
    k_cache = rng.standard_normal((num_pages, page_size, hkv, d))
    v_cache = rng.standard_normal((num_pages, page_size, hkv, d))
    q = rng.standard_normal((sum(qo_lens), hq, d))

    def gather(cache):
        return lambda b: cache[perm[kv_indptr[b]:kv_indptr[b + 1]]].reshape(-1, hkv, d)[: kv_lens[b]]

    out, lse = execute(p, a, q, gather(k_cache), gather(v_cache), qo_lens, kv_lens, hkv, causal)
    qo_indptr = a["qo_indptr"]
    for b in range(len(qo_lens)):
        sl = slice(qo_indptr[b], qo_indptr[b + 1])
        o_ref, l_ref = reference.attention(q[sl], gather(k_cache)(b), gather(v_cache)(b), causal=causal)
        np.testing.assert_allclose(out[sl], o_ref, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(np.isneginf(lse[sl]), np.isneginf(l_ref))
        fin = np.isfinite(l_ref)
        np.testing.assert_allclose(lse[sl][fin], l_ref[fin], rtol=0, atol=1e-9)


def lpt_makespan(chunks, slots):
    """Makespan of longest-first list scheduling of chunk costs on `slots` CTAs."""
    load = np.zeros(slots)
    for c in sorted(chunks, reverse=True):
        load[np.argmin(load)] += c
    return load.max()


def test_skewed_prefill_batch_is_balanced():
    rng = np.random.default_rng(3)
    qo_lens = [64] + rng.integers(1, 17, 63).tolist()
    kv_lens = [32768] + rng.integers(100, 2001, 63).tolist()
    hq, hkv, target, unit = 32, 8, 264, 256
    p, a = make_plan(qo_lens, kv_lens, 16, hq=hq, hkv=hkv, d=128, target_ctas=target, min_chunk_tokens=unit)
    check_coverage(p, a, qo_lens, kv_lens, hq // hkv)
    # Query tiles are uniform (tile_rows rows each), so a work item costs its KV range.
    costs = [max(e - s, 1) for s, e in zip(a["work_kv_begin"].tolist(), a["work_kv_end"].tolist())] * hkv
    ideal = sum(costs) / target
    bound = max(ideal, max(costs))
    assert lpt_makespan(costs, target) <= 1.3 * bound
    assert max(costs) <= 1.3 * max(ideal, unit)  # no work item dominates the batch
    # Only the long request is split.
    split = set(a["work_request"][a["work_partial"] >= 0].tolist())
    assert split == {0} and p.num_partials == a["work_splits"][a["work_request"] == 0][0] * 64
    # Longest KV first (stable among equal lengths).
    kvw = a["kv_len"][a["work_request"]]
    assert (np.diff(kvw) <= 0).all()
    order = list(dict.fromkeys(a["work_request"].tolist()))
    assert order == sorted(range(len(kv_lens)), key=lambda b: -kv_lens[b])


@pytest.mark.parametrize("out_elem_bytes", [2, 4])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("name", BATCHES)
def test_workspace_bounds(name, d, out_elem_bytes):
    qo_lens, kv_lens = BATCHES[name]
    hq, hkv = 12, 4
    kw = dict(hq=hq, hkv=hkv, d=d, target_ctas=100000, min_chunk_tokens=16, out_elem_bytes=out_elem_bytes)
    p, a = make_plan(qo_lens, kv_lens, 16, **kw)
    assert p.num_partials > 0
    # Header, work items (12 int32), per request qo_indptr / kv_begin / kv_len (int32) and a mask
    # offset (int64), merge_indptr per query token.
    assert p.int_workspace_bytes >= 256 + 48 * p.num_work + 20 * p.batch + 4 * (p.total_qo + 1)
    assert p.float_workspace_bytes >= p.num_partials * hq * (d * out_elem_bytes + 4)
    assert p.partial_capacity == 0  # no buffer given: report only
    # A buffer of exactly the reported size (or more) holds the partials.
    for extra in (0, 1, 4096):
        p2, a2 = make_plan(qo_lens, kv_lens, 16, float_workspace_bytes=p.float_workspace_bytes + extra, **kw)
        assert p2.num_partials == p.num_partials and p2.partial_capacity >= p.num_partials
        np.testing.assert_array_equal(a2["work_partial"], a["work_partial"])
    # Too small a buffer for a splitting plan: rejected, naming the buffer.
    for size in (1, p.num_partials * hq * (d * out_elem_bytes + 4) - 1, p.float_workspace_bytes - 1):
        with raises(ValueError, "float_workspace_buffer"):
            make_plan(qo_lens, kv_lens, 16, float_workspace_bytes=size, **kw)
    # A plan that does not split fits any buffer.
    p3, _ = make_plan(qo_lens, kv_lens, 16, float_workspace_bytes=1, allow_split=False, **kw)
    assert p3.num_partials == 0 and p3.float_workspace_bytes == 0


def test_validation():
    qo = qo_indptr_of([3, 5])
    kv_indptr, last = page_table([10, 20], 16)  # 1 + 2 pages
    args = (8, 2, 128, 16)
    plan_batch(qo, kv_indptr, last, *args)  # valid
    with raises(ValueError, "qo_indptr", "non-decreasing"):
        plan_batch(np.array([0, 5, 3], np.int32), kv_indptr, last, *args)
    with raises(ValueError, "qo_indptr", "must start at 0"):
        plan_batch(qo + 1, kv_indptr, last, *args)
    with raises(ValueError, "qo_indptr"):
        plan_batch(qo[:2], kv_indptr, last, *args)
    with raises(ValueError, "qo_indptr"):
        plan_batch(np.append(qo, 9).astype(np.int32), kv_indptr, last, *args)
    with raises(ValueError, "head_dim", "96"):
        plan_batch(qo, kv_indptr, last, 8, 2, 96, 16)
    with raises(ValueError, "tile_rows", "32"):
        plan_batch(qo, kv_indptr, last, *args, tile_rows=32)
    with raises(ValueError, "kv_indices", ">= 0"):
        plan_batch(qo, kv_indptr, last, *args, kv_indices=np.array([0, -1, 2], np.int32))
    with raises(ValueError, "kv_indices"):
        plan_batch(qo, kv_indptr, last, *args, kv_indices=np.array([0, 1], np.int32))
    plan_batch(qo, kv_indptr, last, *args, kv_indices=np.array([0, 1, 2, -1], np.int32))  # past the end: unused
    with raises(ValueError, "kv_last_page_len"):
        plan_batch(qo, kv_indptr, None, *args)
    with raises(ValueError, "num_kv_heads"):
        plan_batch(qo, kv_indptr, last, 8, 3, 128, 16)
    with raises(TypeError, "qo_indptr", "int32"):
        plan_batch(qo.astype(np.int64), kv_indptr, last, *args)
    with raises(TypeError, "kv_indptr", "int32"):
        plan_batch(qo, kv_indptr.astype(np.int64), last, *args)
    with raises(TypeError, "kv_last_page_len", "int32"):
        plan_batch(qo, kv_indptr, last.astype(np.int64), *args)
    with raises(TypeError, "kv_indices", "int32"):
        plan_batch(qo, kv_indptr, last, *args, kv_indices=np.arange(3, dtype=np.int64))


def test_device_index_arrays_are_rejected():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: device index arrays cannot be made here")
    qo = torch.tensor([0, 3], dtype=torch.int32, device="cuda")
    kv = torch.tensor([0, 1], dtype=torch.int32, device="cuda")
    last = torch.tensor([5], dtype=torch.int32, device="cuda")
    with raises(ValueError, "host arrays"):
        plan_batch(qo, kv, last, 8, 2, 128, 16)


# ---- FA3 (Hopper) plans -----------------------------------------------------------------------------

@pytest.mark.parametrize("page_size", [0, 16])
def test_fa3_plan_tiles_grid_and_coverage(page_size):
    qo_lens, kv_lens, group = [1, 300, 17, 1000], [5, 4000, 17, 1000], 4
    p, a = make_plan(qo_lens, kv_lens, page_size=page_size, hq=8, hkv=2, backend="fa3", target_ctas=132)
    assert p.backend == "fa3" and p.tile_rows == 128
    # Persistent grid: at most target_ctas CTAs over (work item, kv head) pairs.
    assert p.grid_x == min(132, p.num_work * 2)
    check_coverage(p, a, qo_lens, kv_lens, group)


def test_fa3_paged_plan_reserves_page_offsets():
    lens = [100, 2000, 37]
    ragged = make_plan([1, 1, 1], lens, page_size=0, backend="fa3")[0]
    small = make_plan([1, 1, 1], lens, page_size=16, backend="fa3")[0]
    big = make_plan([1, 1, 1], [n * 4 for n in lens], page_size=16, backend="fa3")[0]
    fa2 = make_plan([1, 1, 1], lens, page_size=16)[0]
    # 16 bytes (K and V offsets) per page of the batch, written by the device each run.
    pages = sum((n + 15) // 16 for n in lens)
    assert small.int_workspace_bytes - ragged.int_workspace_bytes >= pages * 16
    assert big.int_workspace_bytes > small.int_workspace_bytes
    assert ragged.int_workspace_bytes <= fa2.int_workspace_bytes + 256 * 4


def test_backend_name_is_checked():
    with raises(ValueError, "backend"):
        make_plan([1], [10], backend="fa9")


def job_order(n_items, heads, hs):
    """(work item, kv head) of each job of the attention kernels' job list, in order: kv heads in
    sections of hs heads, heads fastest within a section (section_job in cuda/common/attn_job.cuh)."""
    hs = hs if 0 < hs < heads else heads
    jobs = []
    for w in range(n_items * heads):
        per = hs * n_items
        sec = w // per
        h = min(hs, heads - sec * hs)
        rem = w - sec * per
        jobs.append((rem // h, sec * hs + rem % h))
    return jobs


def item_tiles(a, qo_lens, kv_lens, causal, rows=128, kn=128, group=1):
    """KV tiles of kn tokens each work item reads (query tiles of `rows` packed rows)."""
    tiles = []
    for r, t, kb, ke in zip(a["work_request"], a["work_qo_tile"], a["work_kv_begin"], a["work_kv_end"]):
        qo, kv = qo_lens[r], kv_lens[r]
        hi = min(ke, kv)
        if causal:
            hi = min(hi, (min(qo * group, (t + 1) * rows) - 1) // group + kv - qo + 1)
        tiles.append(max(0, -(-(hi - kb) // kn)))
    return tiles


def makespan(tiles, heads, hs, grid, claimed=True, job_cost=2):
    """Largest per-CTA cost (KV tiles + a fixed cost per job). CTA c starts with job c; then each job
    goes to the least-loaded CTA (claimed: the Hopper plans' claim counter, or the hardware handing the
    FA2-class kernel's one-job CTAs to the resident slot that frees up first), or CTA c takes jobs
    c + grid, c + 2 grid, ... (static: Hopper single requests)."""
    load = [0] * grid
    heap = [(0, c) for c in range(grid)]
    for w, (item, _) in enumerate(job_order(len(tiles), heads, hs)):
        cost = tiles[item] + job_cost
        if claimed:
            ld, c = heapq.heappop(heap)
            load[c] = ld + cost
            heapq.heappush(heap, (ld + cost, c))
        else:
            load[w % grid] += cost
    return max(load)


def fa3_makespan(p, a, heads, qo_lens, kv_lens, causal, hs, claimed=True, kn=128, job_cost=2):
    return makespan(item_tiles(a, qo_lens, kv_lens, causal, 128, kn), heads, hs, p.grid_x, claimed, job_cost)


@pytest.mark.parametrize("hs", [0, 1, 2, 3, 5, 8, 9])
def test_job_order_covers_every_job_once(hs):
    jobs = job_order(7, 8, hs)
    assert sorted(jobs) == [(i, h) for i in range(7) for h in range(8)]


def test_fa3_head_section():
    # Equal jobs: one head per section (the CTAs running at once share the K/V of few heads in L2).
    p, _ = make_plan([4096] * 4, [4096] * 4, page_size=0, hq=32, hkv=32, backend="fa3", target_ctas=132)
    assert p.head_section == 1
    # Causal, 132 query tiles per head on 132 CTAs: one head per section would hand CTA 0 the longest
    # tile of every head; the planner's choice stays as balanced as the all-heads order.
    n, heads = 132 * 128, 8
    p, a = make_plan([n], [n], page_size=0, hq=heads, hkv=heads, causal=True, backend="fa3", target_ctas=132)
    assert p.grid_x == 132
    static = {hs: fa3_makespan(p, a, heads, [n], [n], True, hs, claimed=False) for hs in (1, heads)}
    assert static[1] > 1.3 * static[heads]
    # Plans run with the claim counter: more balanced than the static order, and the planner's choice
    # stays within 2% of the all-heads order.
    span = {hs: fa3_makespan(p, a, heads, [n], [n], True, hs) for hs in (1, heads, p.head_section)}
    assert span[heads] < static[heads]
    assert span[p.head_section] <= 1.02 * span[heads]


def test_fa2_prefill_job_order():
    """FA2-class prefill plans: items heaviest first over the batch, and the fewest heads per section
    whose simulated grid (one job per CTA, handed to the resident CTA that frees up first) stays within
    1% of the all-heads order; the request-major order of before ends on a long job."""
    n, b, heads, slots = 2048, 8, 16, 264
    p, a = make_plan([n] * b, [n] * b, page_size=0, hq=heads, hkv=heads, d=64, causal=True, target_ctas=slots)
    assert p.tile_rows == 128 and p.kv_rows == 128
    tiles = item_tiles(a, [n] * b, [n] * b, True)
    assert tiles == sorted(tiles, reverse=True) and tiles[0] == n // 128 and tiles[-1] == 1
    # Equal items keep request order (their K/V shared in L2).
    assert list(a["work_request"][:b]) == list(range(b)) and set(a["work_qo_tile"][:b]) == {n // 128 - 1}
    assert 1 <= p.head_section <= heads and heads % p.head_section == 0  # a power of two dividing it, or all
    span = {hs: makespan(tiles, heads, hs, slots) for hs in (1, heads, p.head_section)}
    assert span[p.head_section] <= 1.01 * span[heads]
    assert p.head_section == 1 or makespan(tiles, heads, p.head_section // 2, slots) > 1.01 * span[heads]
    old = sorted(range(len(tiles)), key=lambda i: (a["work_request"][i], -a["work_qo_tile"][i]))
    assert makespan([tiles[i] for i in old], heads, 1, slots) > 1.01 * span[p.head_section]
    # Groups: query tiles of packed rows (4 query heads per kv head).
    p, a = make_plan([300, 1000], [300, 1000], page_size=0, hq=16, hkv=4, d=128, causal=True, target_ctas=slots)
    tiles = item_tiles(a, [300, 1000], [300, 1000], True, 128, 64, group=4)
    assert tiles == sorted(tiles, reverse=True)
    # 12 heads: sections of 1, 2 or 4 heads (powers of two that divide 12), or all 12.
    p, a = make_plan([n] * b, [n] * b, page_size=0, hq=12, hkv=12, d=64, causal=True, target_ctas=slots)
    assert p.head_section in (1, 2, 4, 12)
    # Equal jobs (non-causal, equal lengths): one head per section, request-major as before.
    p, a = make_plan([n] * b, [n] * b, page_size=0, hq=heads, hkv=heads, d=64, target_ctas=slots)
    assert p.head_section == 1
    assert list(a["work_request"]) == [r for r in range(b) for _ in range(n // 128)]
    # Decode plans and CUDA-graph plans keep the kernel's default order.
    assert make_plan([1] * 8, [n] * 8, hq=32, hkv=8, target_ctas=slots)[0].head_section == 0
    kv_indptr, last = page_table([n] * b, 0)
    g = _C.plan_attention(qo_indptr_of([n] * b), kv_indptr, last, None, heads, heads, 64, 0, True, 0, slots, 256,
                          True, 2, b, n * b, 0, 0, 0, "fa2", 0, 0, 0, "auto")
    assert g.head_section == 0


def test_fa3_kv_tile_choice():
    """Head dim 64 on FA3: the wide 192-token KV tile for long KV (its cost model: 1.36 base steps per wide
    step, 0.9 for a partial last tile, 2 per job), the 128-token tile for short KV, causal 2048, pages that
    do not tile 192 and CUDA-graph plans. Head dim 256 likewise with 80 / 64 tokens (1.20 per wide step);
    head dim 128 has one tile. Chunks are whole tiles."""
    def kv_rows(qo, kv, d=64, causal=False, page_size=0, **kw):
        return make_plan(qo, kv, page_size=page_size, hq=8, hkv=8, d=d, causal=causal, backend="fa3", **kw)[0].kv_rows
    assert kv_rows([4096] * 4, [4096] * 4) == 192
    assert kv_rows([16384], [16384], causal=True) == 192
    assert kv_rows([3072] * 5, [3072] * 5, page_size=16) == 192  # pages of 16 tile 192 (TMA boxes)
    assert kv_rows([1024] * 16, [1024] * 16) == 128
    assert kv_rows([2048] * 8, [2048] * 8, causal=True) == 128
    assert kv_rows([1] * 4, [100] * 4) == 128
    assert kv_rows([4096] * 4, [4096] * 4, page_size=128) == 128  # 128-token pages do not tile 192
    assert kv_rows([4096] * 4, [4096] * 4, d=128) == 128 and kv_rows([16384], [16384], d=128) == 128
    assert kv_rows([4096] * 4, [4096] * 4, d=256) == 64  # model 0.99: within its 2% margin
    assert kv_rows([8192] * 2, [8192] * 2, d=256) == 80 and kv_rows([16384], [16384], d=256, causal=True) == 80
    assert kv_rows([2048] * 8, [2048] * 8, d=256) == 64
    assert kv_rows([16384], [16384], d=256, page_size=16) == 80  # pages of 16 tile 80
    assert kv_rows([16384], [16384], d=256, page_size=32) == 64  # 32-token pages do not tile 80
    assert make_plan([1], [10], d=64)[0].kv_rows == 64  # FA2 plans: the FA2-class KV tile
    # Graph mode (capacities): a captured run() launches one instance, so the default tile.
    kv_indptr, _ = page_table([4096] * 4, 0)
    g = _C.plan_attention(qo_indptr_of([4096] * 4), kv_indptr, None, None, 8, 8, 64, 0, False, 0, 132, 256, True, 2,
                          8, 4 * 4096, 0, 0, 1 << 30, "fa3", 0, 0, 0, "auto")
    assert g.kv_rows == 128
    # The split length is a multiple of the tile: one long request on many CTAs splits in 192-token units.
    p, a = make_plan([256], [65536], page_size=0, hq=8, hkv=8, d=64, backend="fa3", target_ctas=132)
    assert p.kv_rows == 192 and p.chunk_tokens % 192 == 0 and p.num_partials > 0
    check_coverage(p, a, [256], [65536], 1)


def test_chunks_are_whole_kv_tiles():
    """The auto split length is a multiple of the kernel's KV tile (64 tokens on FA2, 128 in its prefill
    tile at D 64; 128 at D <= 128 on FA3): 16 x 2048 on 396 slots cuts each request in three 704/704/640 chunks, not 768/768/512."""
    p, a = make_plan([1] * 16, [2048] * 16, 16, hq=32, hkv=8, d=128, target_ctas=396, min_chunk_tokens=256)
    assert p.chunk_tokens == 704 and p.chunk_tokens % 64 == 0
    for backend, tile in (("fa2", 64), ("fa3", 128)):
        for lens in ([1] * 16, [3000] * 5 + [17]):
            p, _ = make_plan([1] * len(lens), [2048] * len(lens) if len(lens) == 16 else lens, 16, backend=backend,
                             target_ctas=1000, min_chunk_tokens=16)
            assert p.chunk_tokens % tile == 0 or p.chunk_tokens == max(lens + [2048]), (backend, p.chunk_tokens)
    # The FA2-class prefill tile takes 128-token KV tiles at head dim 64 (64 at 128 / 256, and in the
    # decode tiles): a split prefill cuts its KV in those units. Its query tile is 128 packed rows, 64 at
    # head dim 256 (two CTAs per SM there).
    for d, rows, tile in ((64, 128, 128), (128, 128, 64), (256, 64, 64)):
        p, a = make_plan([512], [65536], page_size=0, hq=8, hkv=8, d=d, backend="fa2", target_ctas=132,
                         min_chunk_tokens=16)
        assert p.tile_rows == rows and p.kv_rows == tile and p.num_partials > 0, (d, p.tile_rows, p.kv_rows)
        assert p.chunk_tokens % tile == 0, (d, p.chunk_tokens)
        check_coverage(p, a, [512], [65536], 1)
    assert make_plan([1] * 4, [4096] * 4, d=64, backend="fa2")[0].kv_rows == 64


@pytest.mark.parametrize("tile_rows", [16, 64])
def test_fixed_split_size_is_batch_invariant(tile_rows):
    """fixed_split_size: a request's KV chunks do not depend on the rest of the batch."""
    lens = [5000, 300, 1234, 17, 4096]
    kw = dict(hq=8, hkv=2, d=128, tile_rows=tile_rows, fixed_split_size=1000)
    p1, a1 = make_plan([1] * len(lens), lens, 16, **kw)
    p2, a2 = make_plan([1] * 2, [lens[0], 9000], 16, target_ctas=8, **kw)
    assert p1.chunk_tokens == p2.chunk_tokens == 1000
    ranges = lambda a, b: sorted(zip(a["work_kv_begin"][a["work_request"] == b].tolist(),
                                     a["work_kv_end"][a["work_request"] == b].tolist()))
    assert ranges(a1, 0) == ranges(a2, 0) == [(c, min(c + 1000, 5000)) for c in range(0, 5000, 1000)]
    assert ranges(a1, 1) == [(0, 300)]  # shorter than the split size: not split
    check_coverage(p1, a1, [1] * len(lens), lens, 4)
    for bad in (0, -5, 2.5):
        with raises(ValueError, "fixed_split_size"):
            make_plan([1] * len(lens), lens, 16, hq=8, hkv=2, d=128, fixed_split_size=bad)


def test_lean_decode_tile_where_no_split_is_needed():
    """With a lean decode tile's target, the planner takes it (unsplit) where its cost model says it beats
    the wide tile's best plan (batches that fill the GPU), else the wide decode tile; never with a
    fixed split size or a prefill tile."""
    kw = dict(hq=32, hkv=8, d=128, tile_rows=16, target_ctas=396, lean_target_ctas=528)
    p, a = make_plan([1] * 64, [2048] * 64, 16, **kw)
    assert p.lean_decode and p.num_partials == 0 and p.chunk_tokens == 2048 and p.tile_rows == 16
    check_coverage(p, a, [1] * 64, [2048] * 64, 4)
    p, a = make_plan([1] * 16, [8192] * 16, 16, **kw)
    assert not p.lean_decode and p.num_partials > 0
    check_coverage(p, a, [1] * 16, [8192] * 16, 4)
    assert not make_plan([1] * 64, [2048] * 64, 16, fixed_split_size=4096, **kw)[0].lean_decode
    assert not make_plan([1] * 64, [2048] * 64, 16, **dict(kw, lean_target_ctas=0))[0].lean_decode
    assert not make_plan([40] * 64, [2048] * 64, 16, **dict(kw, tile_rows=64))[0].lean_decode
    # The override: "wide" never, "lean" always, split as the lean grid needs (16 x 8192 over 528 CTAs:
    # chunks of whole 64-token tiles); unsplit where the batch fills that grid.
    assert not make_plan([1] * 64, [2048] * 64, 16, decode_tile="wide", **kw)[0].lean_decode
    p, a = make_plan([1] * 16, [8192] * 16, 16, decode_tile="lean", **kw)
    assert p.lean_decode and p.num_partials > 0 and p.chunk_tokens < 8192 and p.chunk_tokens % 64 == 0
    check_coverage(p, a, [1] * 16, [8192] * 16, 4)
    check_merge(p, a, [1] * 16, 4)
    p, a = make_plan([1] * 256, [2048] * 256, 16, decode_tile="lean", **kw)
    assert p.lean_decode and p.num_partials == 0 and p.chunk_tokens == 2048
    with raises(ValueError, "decode_tile"):
        make_plan([1] * 4, [100] * 4, 16, decode_tile="narrow", **kw)


def test_fa3_tail_split():
    """FA3, non-causal, equal jobs whose last round is ragged (the FlashAttention grid at D 128: 4 x 4096
    tokens, 32 heads = 4096 jobs on 132 CTAs): query tile 0 of the last request(s) is split into KV
    pieces at the end of the work list (the tail section), its rows merged from partial rows. Every row
    and KV position is still covered once and the merge indices hold. No tail where the rounds are full,
    for causal plans (their short jobs already end the list), in graph mode, or when the float workspace
    cannot hold the partial rows."""
    kw = dict(page_size=0, hq=32, hkv=32, d=128, backend="fa3", target_ctas=132)
    p, a = make_plan([4096] * 4, [4096] * 4, **kw)
    assert p.tail_items > 0 and p.num_partials > 0
    n = p.tail_items
    assert (a["work_qo_tile"][-n:] == 0).all() and (a["work_splits"][-n:] > 1).all()
    assert (a["work_partial"][-n:] >= 0).all() and (a["work_partial"][:-n] < 0).all()
    check_coverage(p, a, [4096] * 4, [4096] * 4, 1)
    check_merge(p, a, [4096] * 4, 1)
    assert p.num_partials == 128 * int(a["work_splits"][-1]) * len(set(a["work_request"][-n:].tolist()))
    # Full rounds (4096 jobs on 128 CTAs), causal, graph capacity, a float workspace too small.
    assert make_plan([4096] * 4, [4096] * 4, **dict(kw, target_ctas=128))[0].tail_items == 0
    assert make_plan([4096] * 4, [4096] * 4, causal=True, **kw)[0].tail_items == 0
    assert make_plan([4096] * 4, [4096] * 4, float_workspace_bytes=1 << 20, **kw)[0].tail_items == 0
    # GQA groups that divide the 128-row tile split too (the tile's rows are whole tokens).
    p, a = make_plan([2048] * 8, [2048] * 8, **dict(kw, hq=32, hkv=8))
    if p.tail_items:
        check_coverage(p, a, [2048] * 8, [2048] * 8, 4)
        check_merge(p, a, [2048] * 8, 4)
