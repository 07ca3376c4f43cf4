"""Property tests of kvinfer.reference, which the GPU tests trust as ground truth."""
import math
import warnings

import numpy as np
import pytest

from kvinfer import reference


def naive_attention(q, k, v, causal=False, sm_scale=None, soft_cap=None,
                    window_left=-1, mask=None):
    """Independent per-row loop; also returns each row's softmax weights."""
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    group = hq // hkv
    scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    o = np.zeros((lq, hq, v.shape[2]))
    lse = np.full((lq, hq), -np.inf)
    weights = np.zeros((lq, hq, lk))
    for i in range(lq):
        pos = i + lk - lq
        keys = [j for j in range(lk)
                if (not causal or j <= pos)
                and (window_left < 0 or j >= pos - window_left)
                and (mask is None or mask[i, j])]
        if not keys:
            continue
        for h in range(hq):
            kh = h // group
            logits = []
            for j in keys:
                x = float(np.dot(q[i, h], k[j, kh])) * scale
                if soft_cap:
                    x = soft_cap * math.tanh(x / soft_cap)
                logits.append(x)
            top = max(logits)
            e = [math.exp(x - top) for x in logits]
            total = sum(e)
            for j, ej in zip(keys, e):
                weights[i, h, j] = ej / total
                o[i, h] += ej / total * v[j, kh]
            lse[i, h] = (top + math.log(total)) / math.log(2.0)
    return o, lse, weights


def qkv(rng, lq, lk, hq, hkv, d):
    # Scaled up so softmax is far from uniform.
    q = rng.standard_normal((lq, hq, d)) * 2
    k = rng.standard_normal((lk, hkv, d)) * 2
    v = rng.standard_normal((lk, hkv, d))
    return q, k, v


def full_mask(lq, lk, causal):
    pos = np.arange(lq)[:, None] + lk - lq
    return np.arange(lk)[None, :] <= pos if causal else np.ones((lq, lk), bool)


def assert_lse_equal(a, b, atol=1e-9):
    np.testing.assert_array_equal(np.isneginf(a), np.isneginf(b))
    fin = ~np.isneginf(b)
    np.testing.assert_allclose(a[fin], b[fin], rtol=0, atol=atol)


@pytest.fixture(autouse=True)
def no_warnings():
    """Any numpy RuntimeWarning (e.g. log(0), inf - inf) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("lq,lk,hq,hkv,causal", [
    (1, 1, 1, 1, False), (1, 17, 2, 1, True), (7, 7, 3, 3, True),
    (7, 17, 6, 2, True), (17, 7, 4, 4, True), (5, 16, 4, 1, False),
])
def test_matches_naive(lq, lk, hq, hkv, causal):
    rng = np.random.default_rng(1)
    q, k, v = qkv(rng, lq, lk, hq, hkv, 8)
    o, lse = reference.attention(q, k, v, causal=causal)
    o_n, lse_n, _ = naive_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(o, o_n, rtol=0, atol=1e-12)
    assert_lse_equal(lse, lse_n)


@pytest.mark.parametrize("causal", [False, True])
def test_weights_sum_to_one(causal):
    """With one-hot values (v[j] = e_j) the output row is the weight vector."""
    rng = np.random.default_rng(2)
    lq, lk, hq, hkv = 5, 16, 4, 2
    q, k, _ = qkv(rng, lq, lk, hq, hkv, lk)
    v = np.broadcast_to(np.eye(lk)[:, None, :], (lk, hkv, lk))
    o, _ = reference.attention(q, k, v, causal=causal)
    _, _, w = naive_attention(q, k, v, causal=causal)
    np.testing.assert_allclose(o.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(o, w, rtol=0, atol=1e-12)


def test_window_left_and_soft_cap():
    rng = np.random.default_rng(3)
    q, k, v = qkv(rng, 9, 20, 4, 2, 8)
    for causal in (False, True):
        for window in (0, 3, 25):
            for cap in (None, 1.5):
                got = reference.attention(q, k, v, causal=causal, window_left=window,
                                          logits_soft_cap=cap, sm_scale=0.3)
                o_n, lse_n, _ = naive_attention(q, k, v, causal, 0.3, cap, window)
                np.testing.assert_allclose(got[0], o_n, rtol=0, atol=1e-12)
                assert_lse_equal(got[1], lse_n)


def test_soft_cap_bounds_logits():
    """A capped logit can't exceed the cap: lse <= (cap + ln Lk) / ln 2."""
    rng = np.random.default_rng(4)
    q, k, v = qkv(rng, 3, 10, 2, 2, 16)
    _, lse = reference.attention(q * 100, k, v, logits_soft_cap=2.0)
    assert np.all(lse <= (2.0 + math.log(10)) / math.log(2.0) + 1e-12)


def test_custom_mask_empty_row():
    rng = np.random.default_rng(5)
    q, k, v = qkv(rng, 4, 6, 2, 1, 8)
    mask = rng.random((4, 6)) < 0.5
    mask[2] = False
    o, lse = reference.attention(q, k, v, custom_mask=mask)
    o_n, lse_n, _ = naive_attention(q, k, v, mask=mask)
    assert np.all(o[2] == 0) and np.all(np.isneginf(lse[2]))
    assert not np.isnan(o).any()
    np.testing.assert_allclose(o, o_n, rtol=0, atol=1e-12)
    assert_lse_equal(lse, lse_n)


def test_causal_rows_before_kv_are_empty():
    """Lq > Lk: the first Lq - Lk queries precede every key."""
    rng = np.random.default_rng(6)
    q, k, v = qkv(rng, 7, 4, 2, 2, 8)
    o, lse = reference.attention(q, k, v, causal=True)
    assert np.all(o[:3] == 0) and np.all(np.isneginf(lse[:3]))
    assert np.all(np.isfinite(lse[3:]))


@pytest.mark.parametrize("lq", [1, 7, 17])
@pytest.mark.parametrize("lk", [1, 7, 17])
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_split_kv_then_merge(lq, lk, group, causal):
    rng = np.random.default_rng(7)
    q, k, v = qkv(rng, lq, lk, 2 * group, 2, 8)
    full_o, full_lse = reference.attention(q, k, v, causal=causal)
    # Chunks use a column slice of the full mask: their own bottom-right
    # alignment would shift the causal diagonal. lk // 2 may be 0 (empty chunk).
    mask = full_mask(lq, lk, causal)
    mid = lk // 2
    a = reference.attention(q, k[:mid], v[:mid], custom_mask=mask[:, :mid])
    b = reference.attention(q, k[mid:], v[mid:], custom_mask=mask[:, mid:])
    o, lse = reference.merge_state(*a, *b)
    np.testing.assert_allclose(o, full_o, rtol=0, atol=1e-12)
    assert_lse_equal(lse, full_lse)


@pytest.mark.parametrize("causal", [False, True])
def test_merge_states_five_chunks(causal):
    rng = np.random.default_rng(8)
    lq, lk = 6, 23
    q, k, v = qkv(rng, lq, lk, 6, 2, 8)
    full_o, full_lse = reference.attention(q, k, v, causal=causal)
    mask = full_mask(lq, lk, causal)
    bounds = [0, *sorted(rng.choice(np.arange(1, lk), 4, replace=False)), lk]
    parts = [reference.attention(q, k[lo:hi], v[lo:hi], custom_mask=mask[:, lo:hi])
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    o, lse = reference.merge_states(np.stack([p[0] for p in parts], axis=1),
                                    np.stack([p[1] for p in parts], axis=1))
    np.testing.assert_allclose(o, full_o, rtol=0, atol=1e-12)
    assert_lse_equal(lse, full_lse)


def test_merge_state_formula():
    rng = np.random.default_rng(9)
    v_a, v_b = rng.standard_normal((2, 5, 3, 4))
    s_a, s_b = rng.standard_normal((2, 5, 3)) * 4
    o, lse = reference.merge_state(v_a, s_a, v_b, s_b)
    wa, wb = 2.0 ** s_a, 2.0 ** s_b
    np.testing.assert_allclose(lse, np.log2(wa + wb), rtol=1e-13)
    want = (wa[..., None] * v_a + wb[..., None] * v_b) / (wa + wb)[..., None]
    np.testing.assert_allclose(o, want, rtol=1e-12)


def test_merge_state_large_lse_is_stable():
    """2**2000 overflows float64; the max-subtracted form must not."""
    rng = np.random.default_rng(10)
    v_a, v_b = rng.standard_normal((2, 4, 2, 3))
    o, lse = reference.merge_state(v_a, np.full((4, 2), 2000.0), v_b, np.full((4, 2), 2001.0))
    np.testing.assert_allclose(lse, 2001.0 + np.log2(1.5), rtol=1e-15)
    np.testing.assert_allclose(o, (v_a + 2 * v_b) / 3, rtol=1e-12)


def test_merge_state_neg_inf():
    rng = np.random.default_rng(11)
    v_a, v_b = rng.standard_normal((2, 6, 2, 4))
    s_a, s_b = rng.standard_normal((2, 6, 2)) * 4
    s_a[:2] = -np.inf
    v_a[:2] = np.nan
    s_b[1:3] = -np.inf
    v_b[1:3] = np.nan
    o, lse = reference.merge_state(v_a, s_a, v_b, s_b)
    assert not np.isnan(o).any()
    # Row 0: only b alive; row 2: only a alive; row 1: neither.
    np.testing.assert_array_equal(o[0], v_b[0])
    np.testing.assert_array_equal(lse[0], s_b[0])
    np.testing.assert_array_equal(o[2], v_a[2])
    np.testing.assert_array_equal(lse[2], s_a[2])
    assert np.all(o[1] == 0) and np.all(np.isneginf(lse[1]))
    assert np.all(np.isfinite(lse[[0, 2, 3, 4, 5]]))


def test_merge_states_neg_inf_and_empty():
    rng = np.random.default_rng(12)
    v = rng.standard_normal((4, 3, 2, 5))
    s = rng.standard_normal((4, 3, 2)) * 4
    s[0, 1] = -np.inf
    v[0, 1] = np.nan
    s[1] = -np.inf
    v[1] = np.nan
    o, lse = reference.merge_states(v, s)
    keep = [0, 2]
    o0, lse0 = reference.merge_states(v[:1, keep], s[:1, keep])
    np.testing.assert_allclose(o[0], o0[0], rtol=1e-14)
    np.testing.assert_allclose(lse[0], lse0[0], rtol=1e-14)
    assert np.all(o[1] == 0) and np.all(np.isneginf(lse[1]))
    assert not np.isnan(o).any()

    o, lse = reference.merge_states(np.zeros((3, 0, 2, 5)), np.zeros((3, 0, 2)))
    assert o.shape == (3, 2, 5) and np.all(o == 0) and np.all(np.isneginf(lse))


def test_merge_states_single_state_is_identity():
    rng = np.random.default_rng(13)
    v = rng.standard_normal((5, 1, 3, 4))
    s = rng.standard_normal((5, 1, 3)) * 4
    o, lse = reference.merge_states(v, s)
    np.testing.assert_allclose(o, v[:, 0], rtol=1e-15)
    np.testing.assert_allclose(lse, s[:, 0], rtol=1e-15)


@pytest.mark.parametrize("with_mask", [False, True])
def test_merge_state_in_place(with_mask):
    rng = np.random.default_rng(14)
    v, v_o = rng.standard_normal((2, 8, 3, 4))
    s, s_o = rng.standard_normal((2, 8, 3)) * 4
    mask = rng.random(8) < 0.5 if with_mask else None
    v_copy, s_copy = v.copy(), s.copy()
    got_v, got_s = reference.merge_state_in_place(v, s, v_o, s_o, mask)
    np.testing.assert_array_equal(v, v_copy)  # inputs untouched
    np.testing.assert_array_equal(s, s_copy)
    want_v, want_s = reference.merge_state(v, s, v_o, s_o)
    rows = np.ones(8, bool) if mask is None else mask
    np.testing.assert_array_equal(got_v[rows], want_v[rows])
    np.testing.assert_array_equal(got_s[rows], want_s[rows])
    np.testing.assert_array_equal(got_v[~rows], v[~rows])
    np.testing.assert_array_equal(got_s[~rows], s[~rows])


def test_to_f64_accepts_low_precision_numpy():
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    y = reference._to_f64(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, x.astype(np.float64))
