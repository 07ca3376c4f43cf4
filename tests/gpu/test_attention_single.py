"""single_prefill_with_kv_cache / single_decode_with_kv_cache against the float64 reference.

Cases are a curated rotation (not the full cartesian product) over lengths, GQA group sizes, layouts,
dtypes and head dims; configurations this build did not compile are skipped. Long KV ranges
(e.g. decode over 4096 tokens, prefill over 577) are split across CTAs and merged on the device.
"""
import itertools

import numpy as np
import pytest

import kvinfer
from kvinfer import reference
from _attn_util import (DTYPES, check, compiled, poisoned, raises, randn, random_mask, require, rng_for,
                        strided_copy, sync, to_device)

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")
torch = pytest.importorskip("torch")

LENS = [1, 7, 17, 127, 577]
GROUPS = [1, 3, 4, 5, 7, 8]
HEAD_DIMS = [64, 128, 256]
DTYPE_NAMES = ["fp16", "bf16"]
LAYOUTS = ["NHD", "HND"]


def make_qkv(rng, lq, lk, hq, hkv, d, dtype, layout):
    """Device q [lq, hq, d], k/v NHD [lk, hkv, d], and k/v in `layout` for the call."""
    q = randn(rng, (lq, hq, d), dtype)
    k = randn(rng, (lk, hkv, d), dtype)
    v = randn(rng, (lk, hkv, d), dtype)
    if layout == "HND":
        return q, k, v, k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()
    return q, k, v, k, v


def run_prefill(q, k_arg, v_arg, dtype, layout, use_out, **kw):
    """single_prefill with return_lse; with use_out, into NaN-poisoned out/lse (checked to be returned)."""
    if use_out:
        out = poisoned(q.shape, dtype)
        lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device=q.device)
        o, s = kvinfer.single_prefill_with_kv_cache(q, k_arg, v_arg, kv_layout=layout, return_lse=True, out=out,
                                                    lse=lse, **kw)
        assert o is out and s is lse
    else:
        o, s = kvinfer.single_prefill_with_kv_cache(q, k_arg, v_arg, kv_layout=layout, return_lse=True, **kw)
        assert o.dtype == q.dtype and s.dtype == torch.float32
    sync()
    return o, s


# ---- prefill: every (qo_len, kv_len) of LENS, causal and not ---------------------------------------

def _length_cases():
    cases = []
    for i, ((lq, lk), causal) in enumerate(itertools.product(itertools.product(LENS, LENS), [False, True])):
        dtype = DTYPE_NAMES[(i // 2 + i) % 2]
        layout = LAYOUTS[(i // 4 + i) % 2]
        d = HEAD_DIMS[(i // 2) % 3]
        group = GROUPS[(i // 3 + i) % 6]
        # Keep the float64 reference cheap on the biggest shapes: one KV head there.
        hkv = 1 if lq * lk >= 127 * 577 else 2
        mode = "causal" if causal else "full"
        cases.append(pytest.param(lq, lk, causal, group, hkv, d, dtype, layout,
                                  id=f"q{lq}-k{lk}-{mode}-g{group}-kv{hkv}-d{d}-{dtype}-{layout}"))
    return cases


@pytest.mark.parametrize("lq,lk,causal,group,hkv,d,dtype,layout", _length_cases())
def test_prefill_lengths(lq, lk, causal, group, hkv, d, dtype, layout):
    require(d, dtype)
    rng = rng_for("prefill_lengths", lq, lk, causal, group, hkv, d, dtype, layout)
    q, k, v, ka, va = make_qkv(rng, lq, lk, group * hkv, hkv, d, dtype, layout)
    use_out = (LENS.index(lq) + LENS.index(lk) + causal) % 2 == 0
    o, s = run_prefill(q, ka, va, dtype, layout, use_out=use_out, causal=causal)
    ref_o, ref_s = reference.attention(q, k, v, causal=causal)
    check(o, s, ref_o, ref_s, dtype)


# ---- prefill: mask, soft cap, window, sm_scale, strided arrays --------------------------------------

FEATURES = {
    "mask": dict(mask=True),
    "mask_causal": dict(mask=True, causal=True),
    "packed_mask": dict(mask="packed"),
    "softcap": dict(logits_soft_cap=30.0, sm_scale=1.0),  # logits ~ N(0, D): well inside tanh's bend
    "window": dict(window_left=16),
    "window_causal": dict(window_left=16, causal=True),
    "sm_scale": dict(sm_scale=0.3),
    "strided": dict(strided=True, causal=True),
    "all": dict(mask=True, causal=True, window_left=16, logits_soft_cap=30.0, sm_scale=0.2),
}
FEATURE_LENS = [(7, 127), (17, 17), (127, 577), (577, 127), (1, 577), (17, 7)]


def _feature_cases():
    cases = []
    for i, (name, (lq, lk)) in enumerate(itertools.product(FEATURES, FEATURE_LENS)):
        if i % 2:  # half of the cartesian product, rotating through the lengths
            continue
        j = i // 2
        dtype = DTYPE_NAMES[j % 2]
        layout = LAYOUTS[(j // 2) % 2]
        d = HEAD_DIMS[j % 3]
        group = GROUPS[(j + 1) % 6]
        hkv = 1 if lq * lk >= 127 * 577 else 2
        cases.append(pytest.param(name, lq, lk, group, hkv, d, dtype, layout,
                                  id=f"{name}-q{lq}-k{lk}-g{group}-kv{hkv}-d{d}-{dtype}-{layout}"))
    return cases


@pytest.mark.parametrize("name,lq,lk,group,hkv,d,dtype,layout", _feature_cases())
def test_prefill_features(name, lq, lk, group, hkv, d, dtype, layout):
    require(d, dtype)
    opts = dict(FEATURES[name])
    rng = rng_for("prefill_features", name, lq, lk, group, hkv, d, dtype, layout)
    q, k, v, ka, va = make_qkv(rng, lq, lk, group * hkv, hkv, d, dtype, layout)
    mask_kind = opts.pop("mask", None)
    strided = opts.pop("strided", False)
    kw = dict(opts)
    ref_mask = None
    if mask_kind:
        ref_mask = random_mask(rng, lq, lk)
        dev_mask = torch.from_numpy(ref_mask).to(q.device)
        if mask_kind == "packed":
            kw["packed_custom_mask"] = kvinfer.pack_custom_mask(dev_mask)
        else:
            kw["custom_mask"] = dev_mask
    if strided:  # q, v and out padded along head_dim, k along its head axis: views of wider NaN buffers
        q = strided_copy(q)
        ka, va = strided_copy(ka, dim=1 if layout == "NHD" else 0), strided_copy(va)
        out = strided_copy(poisoned(q.shape, dtype))
        o, s = kvinfer.single_prefill_with_kv_cache(q, ka, va, kv_layout=layout, return_lse=True, out=out, **kw)
        assert o is out
        sync()
    else:
        o, s = run_prefill(q, ka, va, dtype, layout, use_out=len(name) % 2 == 0, **kw)
    ref_o, ref_s = reference.attention(q, k, v, custom_mask=ref_mask, **opts)
    check(o, s, ref_o, ref_s, dtype, name)


def test_prefill_without_lse_returns_out_only():
    d, dtype = compiled()
    rng = rng_for("no_lse", d, dtype)
    q, k, v, _, _ = make_qkv(rng, 17, 127, 4, 2, d, dtype, "NHD")
    o = kvinfer.single_prefill_with_kv_cache(q, k, v, causal=True)
    sync()
    assert isinstance(o, torch.Tensor) and o.shape == q.shape
    ref_o, ref_s = reference.attention(q, k, v, causal=True)
    check(o, None, ref_o, ref_s, dtype)


# ---- prefill and decode: logits whose running max keeps jumping ----------------------------------
# Both kernels move a row's running max lazily (only when a tile's max passes it by a margin) and skip a
# tile's max altogether while its row sums stay small (cuda/common/online_softmax.cuh). Random data hardly
# tests either: its first tile's max is within a few units of the final one. Here the keys' norms grow
# along the sequence (each tile's logits pass the last tile's max by far) or shrink (the first tile holds
# the max, later P are tiny), with a large outlier in the middle, so the exact path, the rescale of O and
# the bound on P (fp16 P) all run many times.

def jump_keys(rng, lk, hkv, d, dtype, shape):
    """Keys [lk, hkv, d] whose norms grow along the sequence ("growing"; reversed for "early_peak"), with
    an outlier in the middle: with q ~ N(0, 1) and scale 1 / sqrt(d), each 128-token tile's largest
    logit passes the last tile's by ~10 log2 units; the logits' spread reaches ~17 nats (fp16 keys up to ~100)."""
    growth = 1.0 + np.arange(lk) / 32.0
    if shape == "early_peak":
        growth = growth[::-1].copy()
    kh = rng.standard_normal((lk, hkv, d)) * growth[:, None, None] * 0.5
    kh[lk // 2] *= 4.0
    return to_device(kh, dtype)


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", ["growing", "early_peak"])
def test_prefill_logit_jumps(d, dtype, causal, shape):
    require(d, dtype)
    rng = rng_for("prefill_logit_jumps", d, dtype, causal, shape)
    lq, lk, hkv, group = 67, 1111, 1, 4
    q = randn(rng, (lq, group * hkv, d), dtype)
    k = jump_keys(rng, lk, hkv, d, dtype, shape)
    v = randn(rng, (lk, hkv, d), dtype)
    o, s = run_prefill(q, k, v, dtype, "NHD", use_out=True, causal=causal)
    ref_o, ref_s = reference.attention(q, k, v, causal=causal)
    check(o, s, ref_o, ref_s, dtype, shape)


@pytest.mark.parametrize("d", HEAD_DIMS)
@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("shape", ["growing", "early_peak"])
def test_decode_logit_jumps(d, dtype, shape):
    require(d, dtype)
    rng = rng_for("decode_logit_jumps", d, dtype, shape)
    lk, hkv, group = 4099, 2, 4  # long enough to split across CTAs (and merge)
    q = randn(rng, (1, group * hkv, d), dtype)
    k = jump_keys(rng, lk, hkv, d, dtype, shape)
    v = randn(rng, (lk, hkv, d), dtype)
    o, s = kvinfer.single_decode_with_kv_cache(q[0], k, v, return_lse=True)
    sync()
    ref_o, ref_s = reference.attention(q, k, v)
    check(o, s, ref_o[0], ref_s[0], dtype, shape)


# ---- decode ------------------------------------------------------------------------------------------

DECODE_LENS = [1, 7, 17, 127, 577, 4096]
DECODE_FEATURES = [dict(), dict(logits_soft_cap=30.0, sm_scale=1.0), dict(window_left=16), dict(sm_scale=0.3)]


def _decode_cases():
    cases = []
    for i, lk in enumerate(DECODE_LENS * 3):
        feat = i % len(DECODE_FEATURES)
        dtype = DTYPE_NAMES[(i // 6 + i) % 2]
        layout = LAYOUTS[(i // 2) % 2]
        d = HEAD_DIMS[i % 3]
        group = GROUPS[(i + i // 6) % 6]
        hkv = 2 if i % 4 < 2 else 1
        cases.append(pytest.param(i, lk, feat, group, hkv, d, dtype, layout,
                                  id=f"k{lk}-f{feat}-g{group}-kv{hkv}-d{d}-{dtype}-{layout}"))
    return cases


@pytest.mark.parametrize("i,lk,feat,group,hkv,d,dtype,layout", _decode_cases())
def test_decode(i, lk, feat, group, hkv, d, dtype, layout):
    require(d, dtype)
    opts = DECODE_FEATURES[feat]
    rng = rng_for("decode", lk, feat, group, hkv, d, dtype, layout)
    q, k, v, ka, va = make_qkv(rng, 1, lk, group * hkv, hkv, d, dtype, layout)
    q2 = q[0]
    if (i + i // 4) % 2:  # into poisoned outputs
        out = poisoned(q2.shape, dtype)
        lse = torch.full(q2.shape[:1], float("nan"), dtype=torch.float32, device=q.device)
        o, s = kvinfer.single_decode_with_kv_cache(q2, ka, va, kv_layout=layout, return_lse=True, out=out, lse=lse,
                                                   **opts)
        # The results are views of the caller's buffers (not necessarily the same objects): check those.
        assert o.data_ptr() == out.data_ptr() and s.data_ptr() == lse.data_ptr()
        o, s = out, lse
    else:
        o, s = kvinfer.single_decode_with_kv_cache(q2, ka, va, kv_layout=layout, return_lse=True, **opts)
    sync()
    assert o.shape == q2.shape and s.shape == q2.shape[:1]
    ref_o, ref_s = reference.attention(q, k, v, **opts)
    check(o, s, ref_o[0], ref_s[0], dtype)


def test_decode_without_lse():
    d, dtype = compiled()
    rng = rng_for("decode_no_lse", d, dtype)
    q, k, v, _, _ = make_qkv(rng, 1, 4096, 8, 1, d, dtype, "NHD")
    o = kvinfer.single_decode_with_kv_cache(q[0], k, v)
    sync()
    assert isinstance(o, torch.Tensor) and o.shape == q[0].shape
    ref_o, ref_s = reference.attention(q, k, v)
    check(o, None, ref_o[0], ref_s[0], dtype)


# ---- empty KV ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["prefill", "prefill_causal", "prefill_mask", "decode"])
def test_empty_kv(kind, layout):
    d, dtype = compiled()
    hq, hkv, lq = 6, 2, 1 if kind == "decode" else 7
    rng = rng_for("empty", kind, layout)
    q = randn(rng, (lq, hq, d), dtype)
    kv_shape = (0, hkv, d) if layout == "NHD" else (hkv, 0, d)
    k = torch.empty(kv_shape, dtype=DTYPES[dtype], device=q.device)
    v = torch.empty(kv_shape, dtype=DTYPES[dtype], device=q.device)
    out = poisoned((lq, hq, d), dtype)
    lse = torch.full((lq, hq), float("nan"), dtype=torch.float32, device=q.device)
    if kind == "decode":
        o, s = kvinfer.single_decode_with_kv_cache(q[0], k, v, kv_layout=layout, return_lse=True, out=out[0],
                                                   lse=lse[0])
    else:
        kw = dict(causal=kind == "prefill_causal")
        if kind == "prefill_mask":
            kw["custom_mask"] = torch.zeros((lq, 0), dtype=torch.bool, device=q.device)
        o, s = kvinfer.single_prefill_with_kv_cache(q, k, v, kv_layout=layout, return_lse=True, out=out, lse=lse,
                                                    **kw)
    sync()
    assert torch.equal(out, torch.zeros_like(out)), "empty KV: out must be zeros"
    assert torch.isneginf(lse).all(), "empty KV: lse must be -inf"
    assert o.shape == q.shape[1:] if kind == "decode" else o.shape == q.shape


# ---- validation ----------------------------------------------------------------------------------------

def _small(dtype="fp16", d=None, lq=4, lk=9, hq=4, hkv=2):
    d = d or compiled()[0]
    rng = rng_for("validation", dtype, d, lq, lk, hq, hkv)
    return (randn(rng, (lq, hq, d), dtype), randn(rng, (lk, hkv, d), dtype), randn(rng, (lk, hkv, d), dtype))


def test_float32_q_is_rejected():
    q, k, v = (x.float() for x in _small(compiled()[1]))
    with raises(TypeError, "q", "float32"):
        kvinfer.single_prefill_with_kv_cache(q, k, v)
    with raises(TypeError, "q", "float32"):
        kvinfer.single_decode_with_kv_cache(q[0], k, v)


def test_mixed_dtypes_are_rejected():
    dtype = compiled()[1]
    q, k, v = _small(dtype)
    other = torch.bfloat16 if dtype == "fp16" else torch.float16
    with raises(TypeError, "k"):
        kvinfer.single_prefill_with_kv_cache(q, k.to(other), v)


def test_head_dim_96_is_rejected():
    q, k, v = _small(compiled()[1], d=96)
    with raises(ValueError, "head_dim", "96"):
        kvinfer.single_prefill_with_kv_cache(q, k, v)


def test_heads_not_a_multiple_are_rejected():
    q, k, v = _small(compiled()[1], hq=6, hkv=4)
    with raises(ValueError, "num_qo_heads", "num_kv_heads"):
        kvinfer.single_prefill_with_kv_cache(q, k, v)


def test_mask_shape_is_checked():
    q, k, v = _small(compiled()[1])
    with raises(ValueError, "custom_mask"):
        kvinfer.single_prefill_with_kv_cache(q, k, v, custom_mask=torch.ones((4, 8), dtype=torch.bool,
                                                                               device=q.device))


def test_bad_layout_is_rejected():
    q, k, v = _small(compiled()[1])
    with raises(ValueError, "kv_layout"):
        kvinfer.single_prefill_with_kv_cache(q, k, v, kv_layout="NDH")


def test_out_shape_is_checked():
    dtype = compiled()[1]
    q, k, v = _small(dtype)
    with raises(ValueError, "out"):
        kvinfer.single_prefill_with_kv_cache(q, k, v, out=poisoned((q.shape[0] + 1,) + tuple(q.shape[1:]), dtype))


def test_host_arrays_are_rejected():
    q, k, v = (x.cpu() for x in _small(compiled()[1]))
    with raises(ValueError, "CUDA"):
        kvinfer.single_prefill_with_kv_cache(q, k, v)

