"""Bad input gets a clear exception naming the argument and what was expected (checks live in C++).

Structural checks (dtype, ndim, shape, strides) come before the device check, so they run on host
arrays here; the device check itself is the last case.
"""
import numpy as np
import pytest

import kvinfer
from _util import raises

rng = np.random.default_rng(0)


def state(seq=5, heads=3, dim=16, dtype=np.float16):
    return rng.standard_normal((seq, heads, dim)).astype(dtype), rng.standard_normal((seq, heads)).astype(np.float32)


def test_host_arrays_are_rejected_by_device_check():
    (va, sa), (vb, sb) = state(), state()
    with raises(ValueError, "v_a", "CUDA device", "cpu"):
        kvinfer.merge_state(va, sa, vb, sb)


def test_value_dtype():
    (va, sa), (vb, sb) = state(dtype=np.int32), state(dtype=np.int32)
    with raises(TypeError, "v_a", "float16, bfloat16 or float32", "int32"):
        kvinfer.merge_state(va, sa, vb, sb)


def test_lse_dtype():
    (va, sa), (vb, sb) = state(), state()
    with raises(TypeError, "s_b", "float32", "float64"):
        kvinfer.merge_state(va, sa, vb, sb.astype(np.float64))


def test_dtype_mismatch_between_states():
    (va, sa), (vb, sb) = state(), state(dtype=np.float32)
    with raises(TypeError, "v_b", "float16"):
        kvinfer.merge_state(va, sa, vb, sb)


def test_unsupported_dtype_is_named():
    (va, sa), (vb, sb) = state(), state()
    with raises(TypeError, "v_a", "unsupported dtype"):
        kvinfer.merge_state(va.astype(np.complex64), sa, vb, sb)


def test_ndim():
    (va, sa), (vb, sb) = state(), state()
    with raises(ValueError, "v_a", "3 dimensions", "[seq, num_heads, head_dim]"):
        kvinfer.merge_state(va[0], sa, vb, sb)
    with raises(ValueError, "v", "4 dimensions"):
        kvinfer.merge_states(va, sa)


@pytest.mark.parametrize("which", ["s_a", "v_b", "s_b"])
def test_shape_mismatch(which):
    (va, sa), (vb, sb) = state(), state()
    args = dict(v_a=va, s_a=sa, v_b=vb, s_b=sb)
    args[which] = args[which][:4]
    with raises(ValueError, which, "seq (5)", "[4,"):
        kvinfer.merge_state(**args)


def test_head_dim_mismatch():
    (va, sa), (vb, sb) = state(dim=16), state(dim=8)
    with raises(ValueError, "v_b", "head_dim (16)"):
        kvinfer.merge_state(va, sa, vb, sb)


def test_out_checks():
    (va, sa), (vb, sb) = state(), state()
    with raises(TypeError, "out", "float16"):
        kvinfer.merge_state(va, sa, vb, sb, out=np.empty(va.shape, np.float32))
    with raises(ValueError, "lse_out", "num_heads (3)"):
        kvinfer.merge_state(va, sa, vb, sb, lse_out=np.empty((5, 4), np.float32))


def test_overlapping_output_strides():
    (va, sa), (vb, sb) = state(), state()
    out = np.broadcast_to(np.empty((1, 3, 16), np.float16), va.shape)  # stride 0 along seq
    with raises(ValueError, "out", "overlap"):
        kvinfer.merge_state(va, sa, vb, sb, out=out)


def test_mask_checks():
    (va, sa), (vb, sb) = state(), state()
    with raises(TypeError, "mask", "bool or uint8"):
        kvinfer.merge_state_in_place(va, sa, vb, sb, mask=np.ones(5, np.float32))
    with raises(ValueError, "mask", "seq (5)"):
        kvinfer.merge_state_in_place(va, sa, vb, sb, mask=np.ones(6, bool))


def test_merge_states_shapes():
    v = rng.standard_normal((5, 4, 3, 16)).astype(np.float32)
    s = rng.standard_normal((5, 4, 3)).astype(np.float32)
    with raises(ValueError, "s", "num_states (4)"):
        kvinfer.merge_states(v, s[:, :3])
    with raises(ValueError, "v", "CUDA device"):
        kvinfer.merge_states(v, s)


def test_non_array_argument():
    (va, sa), (vb, sb) = state(), state()
    with pytest.raises(TypeError):
        kvinfer.merge_state(va, sa, vb.tolist(), sb)


def test_torch_cpu_arrays_go_through_the_same_checks():
    torch = pytest.importorskip("torch")
    va, sa = (torch.from_numpy(x) for x in state())
    vb, sb = (torch.from_numpy(x) for x in state())
    with raises(TypeError, "s_a", "float32", "bfloat16"):
        kvinfer.merge_state(va, sa.bfloat16(), vb, sb)
    with raises(ValueError, "v_b", "num_heads (3)"):
        kvinfer.merge_state(va, sa, vb[:, :2], sb)
    with raises(ValueError, "v_a", "CUDA device", "cpu"):
        kvinfer.merge_state(va, sa, vb, sb)


def test_ragged_merge_indptr_checks():
    v = rng.standard_normal((6, 3, 16)).astype(np.float32)
    s = rng.standard_normal((6, 3)).astype(np.float32)
    with raises(TypeError, "indptr", "int32", "int64"):
        kvinfer.merge_states(v, s, indptr=np.array([0, 2, 6], np.int64))
    with raises(ValueError, "lse_out", "seq (2)"):
        kvinfer.merge_states(v, s, indptr=np.array([0, 2, 6], np.int32), lse_out=np.empty((3, 3), np.float32))
    with raises(ValueError, "v", "CUDA device"):
        kvinfer.merge_states(v, s, indptr=np.array([0, 2, 6], np.int32))


@pytest.mark.parametrize("kwargs,name", [
    (dict(sm_scale=-0.5), "sm_scale"),
    (dict(sm_scale=0.0), "sm_scale"),
    (dict(sm_scale=float("nan")), "sm_scale"),
    (dict(logits_soft_cap=-30.0), "logits_soft_cap"),
    (dict(logits_soft_cap=float("inf")), "logits_soft_cap"),
    (dict(window_left=-2), "window_left"),
])
def test_attention_options(kwargs, name):
    """A negative or non-finite scale or cap and a window below -1 are rejected by name (the C++ options
    read 0 / negative values as "default" / "none", which would silently change the call's meaning)."""
    q, k, v = (rng.standard_normal(s).astype(np.float16) for s in ((4, 2, 64), (9, 2, 64), (9, 2, 64)))
    with raises(ValueError, name):
        kvinfer.single_prefill_with_kv_cache(q, k, v, **kwargs)
    with raises(ValueError, name):
        kvinfer.single_decode_with_kv_cache(q[0], k, v, **kwargs)


def test_fa2_head_section_checked():
    """The FA2-class kernel takes job sections of a power of two heads dividing the kv head count (or all
    heads): another value would skip and repeat jobs, so the C++ entry point rejects it by name."""
    from kvinfer import _C
    q, k, v = (rng.standard_normal(s).astype(np.float16) for s in ((300, 6, 64), (300, 6, 64), (300, 6, 64)))
    out = np.empty_like(q)
    args = (q, k, v, out, None, None, "NHD", True, -1, 0.125, 0.0, 128, 1, 300, None, None, 0, "fa2", 1)
    for hs in (3, 4, 5):  # 6 kv heads: 1, 2 and >= 6 are valid
        with raises(ValueError, "head_section", "power of two"):
            _C.single_attention(*args, hs, 0)
    for hs in (0, 1, 2, 6, 8):  # valid: the call goes on to the device check
        with raises(ValueError, "CUDA device"):
            _C.single_attention(*args, hs, 0)
