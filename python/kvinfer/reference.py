"""Float64 numpy reference implementations of kvinfer's operations.

Slow and simple on purpose: tests compare the CUDA kernels against these.
Inputs may be numpy, torch, cupy or jax arrays (any device, any float dtype);
results are always float64 numpy arrays. LSE values are base 2.
"""
import math

import numpy as np

_LN2 = math.log(2.0)


def _to_f64(x):
    """Copy any supported array to a float64 numpy array on the host."""
    module = type(x).__module__
    if module.startswith("torch"):
        # .float() first: numpy has no bfloat16.
        x = x.detach().float().cpu().numpy()
    elif module.startswith("cupy"):
        import cupy

        x = cupy.asnumpy(x)
    elif module.startswith("jax"):
        import jax

        x = np.asarray(jax.device_get(x).astype("float32"))
    return np.asarray(x, dtype=np.float64)


def _to_bool(x):
    return _to_f64(x) != 0


def _allowed(lq, lk, causal, window_left, custom_mask):
    """Bool [Lq, Lk]: which keys each query row may attend to."""
    # Queries are the last Lq tokens of the sequence (bottom-right aligned).
    pos = np.arange(lq)[:, None] + (lk - lq)
    key = np.arange(lk)[None, :]
    allowed = np.ones((lq, lk), dtype=bool)
    if causal:
        allowed &= key <= pos
    if window_left >= 0:
        allowed &= key >= pos - window_left
    if custom_mask is not None:
        allowed &= _to_bool(custom_mask)
    return allowed


def attention(q, k, v, *, causal=False, sm_scale=None, logits_soft_cap=None,
              window_left=-1, custom_mask=None):
    """Attention over NHD tensors: q [Lq, Hq, D], k/v [Lk, Hkv, D].

    Returns (o [Lq, Hq, D], lse [Lq, Hq]) with lse in base 2. Rows with no
    allowed key give o = 0 and lse = -inf.
    """
    q, k, v = _to_f64(q), _to_f64(k), _to_f64(v)
    lq, hq, d = q.shape
    lk, hkv, _ = k.shape
    if hq % hkv:
        raise ValueError(f"query heads {hq} not a multiple of kv heads {hkv}")
    group = hq // hkv
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(d)
    # Query head h reads kv head h // group.
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)

    logits = np.einsum("qhd,khd->hqk", q, k) * sm_scale
    if logits_soft_cap is not None and logits_soft_cap > 0:
        logits = logits_soft_cap * np.tanh(logits / logits_soft_cap)
    allowed = _allowed(lq, lk, causal, window_left, custom_mask)
    logits = np.where(allowed, logits, -np.inf)

    m = logits.max(axis=-1, keepdims=True, initial=-np.inf)
    m = np.where(np.isneginf(m), 0.0, m)  # empty rows: avoid -inf - -inf
    p = np.exp(logits - m)
    denom = p.sum(axis=-1, keepdims=True)
    o = np.einsum("hqk,khd->qhd", p, v) / np.where(denom > 0, denom, 1.0).transpose(1, 0, 2)
    with np.errstate(divide="ignore"):
        lse = (m + np.log(denom))[..., 0] / _LN2
    return o, lse.T.copy()


def merge_states(v, s):
    """Merge num_states partial attention states per (seq, head).

    v [seq, num_states, H, D], s [seq, num_states, H] (base-2 LSE).
    States with s = -inf contribute nothing, whatever their v holds.
    """
    v, s = _to_f64(v), _to_f64(s)
    m = s.max(axis=1, initial=-np.inf)
    m = np.where(np.isneginf(m), 0.0, m)
    w = np.exp2(s - m[:, None])
    total = w.sum(axis=1)
    # 0 * NaN is NaN, so dead states' values must be dropped, not just weighted by 0.
    v = np.where((w > 0)[..., None], v, 0.0)
    out = np.einsum("snh,snhd->shd", w, v) / np.where(total > 0, total, 1.0)[..., None]
    with np.errstate(divide="ignore"):
        lse = m + np.log2(total)
    return out, lse


def merge_state(v_a, s_a, v_b, s_b):
    """Merge two states: v [seq, H, D], s [seq, H]. Returns (v, s)."""
    v = np.stack([_to_f64(v_a), _to_f64(v_b)], axis=1)
    s = np.stack([_to_f64(s_a), _to_f64(s_b)], axis=1)
    return merge_states(v, s)


def merge_state_in_place(v, s, v_other, s_other, mask=None):
    """Out-of-place model of the in-place merge: returns new (v, s).

    Rows where the bool mask [seq] is False keep their (v, s).
    """
    v_new, s_new = merge_state(v, s, v_other, s_other)
    if mask is not None:
        keep = ~_to_bool(mask)
        v_new[keep] = _to_f64(v)[keep]
        s_new[keep] = _to_f64(s)[keep]
    return v_new, s_new
