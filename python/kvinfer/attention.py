"""Single-request attention: decode (one query token) and prefill (many), FA2-class or Hopper kernels.

q is [qo_len, H_qo, D] ([H_qo, D] for decode); k/v are [kv_len, H_kv, D] (NHD) or [H_kv, kv_len, D]
(HND), any strides that are multiples of 8 elements with unit stride along D. H_qo is any multiple
of H_kv (GQA/MQA). LSE is base 2, fp32. Long KV ranges are split across CTAs and merged on the device.
"""
import functools
import math
import os

from . import _C
from ._arrays import Call
from .mask import pack_custom_mask

_MIN_CHUNK_TOKENS = 256


def _fallback_ctas_per_sm(lean):
    """Resident CTAs per SM assumed when the occupancy calculator cannot answer (no GPU, no instance)."""
    return 4 if lean else 2


@functools.lru_cache(maxsize=None)
def _ctas_per_sm(head_dim, dtype, decode_tile, device_index, lean=False):
    return (_C.attention_ctas_per_sm(head_dim, dtype, decode_tile, device_index, lean)
            or _fallback_ctas_per_sm(lean))


@functools.lru_cache(maxsize=None)
def _sm_count(device_index):
    return _C.device_sm_count(device_index)


def _target_ctas(device_index=0, head_dim=128, dtype="bfloat16", decode_tile=False, lean=False):
    """CTAs to aim a grid at: SMs x resident CTAs per SM of the kernel that will run (from the CUDA
    occupancy calculator; 2 x 132 (lean decode tile: 4 x 132) when no GPU is visible or the instance is
    not compiled)."""
    per_sm = _fallback_ctas_per_sm(lean)
    if not _C.device_count():
        return per_sm * 132
    dtype = {"half": "float16"}.get(str(dtype).split(".")[-1], str(dtype).split(".")[-1])
    if dtype not in ("float16", "bfloat16") or head_dim not in (64, 128, 256):
        return per_sm * _sm_count(device_index)
    return _ctas_per_sm(int(head_dim), dtype, bool(decode_tile), device_index, lean) * _sm_count(device_index)


@functools.lru_cache(maxsize=None)
def _sm90_available(head_dim, dtype, device_index):
    return bool(_C.device_count()) and _C.attention_sm90_available(head_dim, dtype, device_index)


def _resolve_backend(backend, head_dim, dtype, device_index, *, custom_mask=False, decode=False):
    """"fa2" or "fa3" for backend="auto" | "fa2" | "fa3": auto takes the Hopper kernels on an sm90 device
    whose build has them, for prefill (more than 16 packed rows) without a custom mask; a forced "fa3"
    that cannot run raises ValueError."""
    if backend not in ("auto", "fa2", "fa3"):
        raise ValueError(f"backend: expected \"auto\", \"fa2\" or \"fa3\", got {backend!r}")
    if backend == "auto" and os.environ.get("KVINFER_BACKEND") == "fa2":  # process-wide override of auto
        return "fa2"
    if backend == "fa2":
        return "fa2"
    dtype = {"half": "float16", "bf16": "bfloat16", "fp16": "float16"}.get(str(dtype).split(".")[-1],
                                                                          str(dtype).split(".")[-1])
    ok = dtype in ("float16", "bfloat16") and head_dim in (64, 128, 256) and \
        _sm90_available(int(head_dim), dtype, device_index)
    if backend == "auto":
        return "fa3" if ok and not custom_mask and not decode else "fa2"
    if custom_mask:
        raise ValueError("backend: \"fa3\" takes no custom mask; use \"fa2\" or \"auto\" with custom_mask")
    if not ok:
        raise ValueError(f"backend: \"fa3\" needs an sm90 (Hopper) GPU and a build with its sm_90a kernels for "
                         f"head_dim {head_dim} / {dtype} (kvinfer info lists them)")
    return "fa3"


@functools.lru_cache(maxsize=256)
def _launch_choice(backend, head_dim, dtype, device_index, custom_mask, decode, env_backend):
    """(backend, target CTAs, lean decode tile's target CTAs or 0) of a call. Cached: the device
    queries behind them cost microseconds per call, and plan() runs every step. env_backend
    (KVINFER_BACKEND) is part of the key, so changing the override takes effect."""
    be = _resolve_backend(backend, head_dim, dtype, device_index, custom_mask=custom_mask, decode=decode)
    target = _sm_count(device_index) if be == "fa3" else _target_ctas(device_index, head_dim, dtype, decode)
    lean = _target_ctas(device_index, head_dim, dtype, True, lean=True) if be == "fa2" else 0
    return be, target, lean


def _check_pos_encoding(pos_encoding_mode):
    if pos_encoding_mode not in (None, "NONE"):
        raise ValueError(f"pos_encoding_mode: {pos_encoding_mode!r} is not supported by this build; apply RoPE to q/k "
                         "before calling (expected \"NONE\")")


def _options(sm_scale, logits_soft_cap, window_left):
    """(sm_scale, soft cap, window) as the C++ options take them (0: 1 / sqrt(head_dim); 0: no cap; -1: no
    window), after checking them: the kernels' softmax assumes a positive scale, and a negative cap or window
    would otherwise be read as "none"."""
    sm = 0.0 if sm_scale is None else float(sm_scale)
    if sm_scale is not None and not (math.isfinite(sm) and sm > 0):
        raise ValueError(f"sm_scale: expected a positive finite number (None: 1 / sqrt(head_dim)), got {sm_scale!r}")
    cap = 0.0 if not logits_soft_cap else float(logits_soft_cap)
    if not (math.isfinite(cap) and cap >= 0):
        raise ValueError(f"logits_soft_cap: expected a finite number >= 0 (0 or None: no cap), got {logits_soft_cap!r}")
    wl = -1 if window_left is None else int(window_left)
    if wl < -1:
        raise ValueError(f"window_left: expected -1 (no window) or a number of keys >= 0, got {window_left!r}")
    return sm, cap, wl


def _device_index(x):
    dev = getattr(x, "device", None)
    idx = getattr(dev, "index", None)
    if isinstance(idx, int):
        return idx
    if isinstance(getattr(dev, "id", None), int):  # cupy
        return dev.id
    return 0


def single_prefill_with_kv_cache(q, k, v, custom_mask=None, packed_custom_mask=None, causal=False, kv_layout="NHD",
                                 pos_encoding_mode="NONE", sm_scale=None, logits_soft_cap=None, window_left=-1,
                                 rope_scale=None, rope_theta=None, return_lse=False, *, out=None, lse=None,
                                 stream=None, backend="auto"):
    """Attention of q [qo_len, H_qo, D] over k/v. Returns out, or (out, lse) with return_lse.

    backend: "auto" (the Hopper kernels on sm90 for prefill without a custom mask, else FA2-class),
    "fa2" or "fa3" (forced; raises ValueError when it cannot run this call).

    custom_mask: bool [qo_len, kv_len] (True = attend), or packed_custom_mask: its little-endian bits
    (uint8, see kvinfer.pack_custom_mask). Causal masks are bottom-right aligned (the queries are the
    last qo_len positions).
    """
    _check_pos_encoding(pos_encoding_mode)
    sm, cap, wl = _options(sm_scale, logits_soft_cap, window_left)
    c = Call(q, stream)
    shape = tuple(q.shape)
    if len(shape) != 3:
        raise ValueError(f"q: expected [qo_len, num_qo_heads, head_dim], got shape {list(shape)}")
    kshape = tuple(k.shape)
    if len(kshape) != 3:
        raise ValueError(f"k: expected [kv_len, num_kv_heads, head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] "
                         f"(HND), got shape {list(kshape)}")
    kv_len, hkv = (kshape[0], kshape[1]) if kv_layout == "NHD" else (kshape[1], kshape[0])
    if custom_mask is not None and packed_custom_mask is None:
        packed_custom_mask = pack_custom_mask(custom_mask, c, expect=(shape[0], kv_len))
    decode_tile = shape[0] * (shape[1] // max(hkv, 1)) <= 16
    dev = _device_index(q)
    be, target, _ = _launch_choice(backend, shape[2], q.dtype, dev, packed_custom_mask is not None, decode_tile,
                                os.environ.get("KVINFER_BACKEND"))
    tile, splits, chunk, tmp_rows, grid, head_section, kv_rows = _C.plan_single(
        shape[0], kv_len, shape[1], max(hkv, 1), shape[2], target, _MIN_CHUNK_TOKENS, be, bool(causal))
    own_out = out is None
    if own_out:
        out = c.empty(shape)
    own_lse = return_lse and lse is None
    if own_lse:
        lse = c.empty(shape[:2], "float32")
    tmp_o = tmp_lse = None
    if splits > 1:
        tmp_o = c.empty((tmp_rows,) + shape[1:])
        tmp_lse = c.empty((tmp_rows, shape[1]), "float32")
    _C.single_attention(c.arg(q, "q"), c.arg(k, "k"), c.arg(v, "v"), c.dest(out, "out", own_out),
                        c.dest(lse, "lse", own_lse) if lse is not None else None, c.arg(packed_custom_mask, "mask"),
                        kv_layout, bool(causal), wl, sm, cap, tile, splits, chunk,
                        c.dest(tmp_o, "tmp_o", True) if tmp_o is not None else None,
                        c.dest(tmp_lse, "tmp_lse", True) if tmp_lse is not None else None, c.stream, be, grid,
                        head_section, kv_rows)
    c.finish()
    return (out, lse) if return_lse else out


def single_decode_with_kv_cache(q, k, v, kv_layout="NHD", pos_encoding_mode="NONE", sm_scale=None,
                                logits_soft_cap=None, window_left=-1, rope_scale=None, rope_theta=None,
                                return_lse=False, *, out=None, lse=None, stream=None):
    """Decode attention of one query token q [H_qo, D] over k/v. Returns out [H_qo, D] (and lse [H_qo])."""
    shape = tuple(q.shape)
    if len(shape) != 2:
        raise ValueError(f"q: expected [num_qo_heads, head_dim], got shape {list(shape)}")
    q3 = q.reshape((1,) + shape)
    out3 = None if out is None else out.reshape((1,) + tuple(out.shape))
    lse2 = None if lse is None else lse.reshape((1,) + tuple(lse.shape))
    r = single_prefill_with_kv_cache(q3, k, v, kv_layout=kv_layout, pos_encoding_mode=pos_encoding_mode,
                                     sm_scale=sm_scale, logits_soft_cap=logits_soft_cap, window_left=window_left,
                                     return_lse=return_lse, out=out3, lse=lse2, stream=stream)
    # The caller's own out=/lse= objects come back as given (the kernel wrote them through the views).
    if return_lse:
        o, s = r
        return (o.reshape(shape) if out is None else out), (s.reshape(shape[:1]) if lse is None else lse)
    return r.reshape(shape) if out is None else out
