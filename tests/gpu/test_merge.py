"""CUDA merge kernels against the float64 reference.

Data is fresh per case (seeded from the case's parameters), built on the host
in float32 and then cast on the device, so the reference sees exactly the
values the kernel sees.
"""
import os
import zlib

# JAX grabs most of the GPU at first use unless told not to; torch and cupy
# share the process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np
import pytest

import kvinfer
from kvinfer import reference

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")

DTYPES = ["float16", "bfloat16", "float32"]
TOL = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 4e-3}
LSE_ATOL = 1e-4
host = reference._to_f64


def rng_for(*case):
    return np.random.default_rng(zlib.crc32(repr(case).encode()))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def device(a, fw, dtype):
    """Host array -> GPU array of framework fw, cast to dtype on the device."""
    if fw == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(a).to("cuda").to(getattr(torch, dtype))
    if fw == "cupy":
        cupy = pytest.importorskip("cupy")
        if dtype == "bfloat16":
            pytest.skip("cupy has no bfloat16")
        return cupy.asarray(a).astype(dtype)
    jax = pytest.importorskip("jax")
    try:
        gpu = jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("jax has no GPU backend")
    return jax.device_put(a, gpu).astype(getattr(jax.numpy, dtype))


def poisoned(shape, fw, dtype):
    return device(np.full(shape, np.nan, np.float32), fw, dtype)


def permute(x, axes):
    return x.permute(*axes) if hasattr(x, "permute") else x.transpose(axes)


def assert_framework(x, fw):
    if fw == "torch":
        import torch
        assert isinstance(x, torch.Tensor)
    elif fw == "cupy":
        import cupy
        assert isinstance(x, cupy.ndarray)
    else:
        import jax
        assert isinstance(x, jax.Array)


def dtype_name(x):
    return str(x.dtype).split(".")[-1]


def check_v(got, want, dtype):
    """Max-abs error relative to max |ref|; no NaN anywhere."""
    got = host(got)
    assert got.shape == want.shape
    assert not np.isnan(got).any()
    err = np.abs(got - want).max()
    assert err <= TOL[dtype] * np.abs(want).max(), f"max abs err {err}"


def check_lse(got, want):
    got = host(got)
    assert got.shape == want.shape
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    live = ~np.isneginf(want)
    np.testing.assert_allclose(got[live], want[live], rtol=0, atol=LSE_ATOL)


def check_result(result, want, dtype, fw):
    v, s = result
    assert_framework(v, fw)
    assert_framework(s, fw)
    assert dtype_name(v) == dtype and dtype_name(s) == "float32"
    check_v(v, want[0], dtype)
    check_lse(s, want[1])


def state(rng, fw, dtype, seq, h, d, dead=0.0):
    """One (v, s) state. A fraction `dead` of its (seq, head) entries get
    s = -inf and NaN values, which must never leak into results."""
    v, s = randn(rng, seq, h, d), randn(rng, seq, h, scale=4)
    gone = rng.random((seq, h)) < dead
    s[gone] = -np.inf
    v[gone] = np.nan
    return device(v, fw, dtype), device(s, fw, "float32")


def pair(rng, fw, dtype, seq, h, d, dead=0.0):
    """Inputs of merge_state."""
    return [*state(rng, fw, dtype, seq, h, d, dead), *state(rng, fw, dtype, seq, h, d, dead)]


def stacked(rng, fw, dtype, seq, n, h, d, dead=0.0):
    """Inputs of merge_states; row 0 has every state dead when dead > 0."""
    v, s = randn(rng, seq, n, h, d), randn(rng, seq, n, h, scale=4)
    gone = rng.random((seq, n, h)) < dead
    gone[0] |= dead > 0
    s[gone] = -np.inf
    v[gone] = np.nan
    return device(v, fw, dtype), device(s, fw, "float32")


# --- merge_state ----------------------------------------------------------

@pytest.mark.parametrize("seq", [1, 7, 127, 577])
@pytest.mark.parametrize("d", [1, 7, 64, 80, 128, 200, 256, 512])
@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_state_shapes(dtype, d, seq):
    rng = rng_for("shapes", dtype, d, seq)
    h = int(rng.integers(1, 9))
    args = pair(rng, "torch", dtype, seq, h, d)
    check_result(kvinfer.merge_state(*args), reference.merge_state(*args), dtype, "torch")


@pytest.mark.parametrize("shape", [(7, 3, 128), (127, 8, 80)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw", ["torch", "cupy", "jax"])
def test_merge_state_frameworks(fw, dtype, shape):
    args = pair(rng_for("fw", fw, dtype, shape), fw, dtype, *shape)
    check_result(kvinfer.merge_state(*args), reference.merge_state(*args), dtype, fw)


def layout(rng, fw, dtype, seq, h, d, kind):
    """A (v, s) state in a non-default memory layout."""
    if kind == "contiguous":
        return state(rng, fw, dtype, seq, h, d)
    if kind == "padded":  # rows of a wider buffer; every other LSE entry
        v = device(randn(rng, seq, h, d + 24), fw, dtype)[:, :, :d]
        s = device(randn(rng, seq, 2 * h, scale=4), fw, "float32")[:, ::2]
    elif kind == "unaligned":  # base pointer one element past a 16-byte boundary
        v = device(randn(rng, seq, h, d + 3), fw, dtype)[:, :, 1:d + 1]
        s = device(randn(rng, seq, h + 1, scale=4), fw, "float32")[:, 1:]
    else:  # head_major: the head axis has the larger stride
        v = permute(device(randn(rng, h, seq, d), fw, dtype), (1, 0, 2))
        s = device(randn(rng, h, seq, scale=4), fw, "float32").T
    return v, s


@pytest.mark.parametrize("kinds", [("padded", "padded"), ("unaligned", "unaligned"),
                                   ("head_major", "head_major"), ("head_major", "unaligned"),
                                   ("contiguous", "padded")])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw", ["torch", "cupy"])
def test_merge_state_strided_inputs(fw, dtype, kinds):
    rng = rng_for("strided", fw, dtype, kinds)
    seq, h, d = 67, 5, 128
    args = [*layout(rng, fw, dtype, seq, h, d, kinds[0]), *layout(rng, fw, dtype, seq, h, d, kinds[1])]
    check_result(kvinfer.merge_state(*args), reference.merge_state(*args), dtype, fw)


@pytest.mark.parametrize("shape", [(127, 4, 128), (577, 3, 7), (33, 8, 512)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_state_neg_inf(dtype, shape):
    args = pair(rng_for("neginf", dtype, shape), "torch", dtype, *shape, dead=0.3)
    both_dead = np.isneginf(host(args[1])) & np.isneginf(host(args[3]))
    assert both_dead.any()
    v, s = kvinfer.merge_state(*args)
    check_result((v, s), reference.merge_state(*args), dtype, "torch")
    assert np.all(host(v)[both_dead] == 0)
    assert np.all(np.isneginf(host(s)[both_dead]))


@pytest.mark.parametrize("d", [64, 7])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw", ["torch", "cupy"])
@pytest.mark.parametrize("op", ["merge_state", "merge_states"])
@pytest.mark.parametrize("out_view", [False, True])
def test_out_arguments(out_view, op, fw, dtype, d):
    """Outputs start as NaN: every element must be written, nothing beside them."""
    rng = rng_for("out", op, fw, dtype, d, out_view)
    seq, h = 97, 6
    if op == "merge_state":
        args = pair(rng, fw, dtype, seq, h, d)
        want = reference.merge_state(*args)
    else:
        args = stacked(rng, fw, dtype, seq, 3, h, d)
        want = reference.merge_states(*args)
    if out_view:
        big_v, big_s = poisoned((seq, h, d + 5), fw, dtype), poisoned((seq, 2 * h), fw, "float32")
        out, lse_out = big_v[:, :, :d], big_s[:, ::2]
    else:
        out, lse_out = poisoned((seq, h, d), fw, dtype), poisoned((seq, h), fw, "float32")
    result = getattr(kvinfer, op)(*args, out=out, lse_out=lse_out)
    assert result[0] is out and result[1] is lse_out
    check_result(result, want, dtype, fw)
    if out_view:
        assert np.isnan(host(big_v)[:, :, d:]).all()
        assert np.isnan(host(big_s)[:, 1::2]).all()


# --- merge_states ---------------------------------------------------------

@pytest.mark.parametrize("shape", [(127, 4, 128), (7, 8, 80), (40, 2, 256)])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 43])
@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_states(dtype, n, shape):
    seq, h, d = shape
    args = stacked(rng_for("states", dtype, n, shape), "torch", dtype, seq, n, h, d, dead=0.25)
    v, s = kvinfer.merge_states(*args)
    check_result((v, s), reference.merge_states(*args), dtype, "torch")
    assert np.all(host(v)[0] == 0) and np.all(np.isneginf(host(s)[0]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw", ["torch", "cupy", "jax"])
def test_merge_states_frameworks(fw, dtype):
    args = stacked(rng_for("states_fw", fw, dtype), fw, dtype, 33, 4, 3, 128, dead=0.1)
    check_result(kvinfer.merge_states(*args), reference.merge_states(*args), dtype, fw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw", ["torch", "cupy"])
def test_merge_states_strided_inputs(fw, dtype):
    rng = rng_for("states_strided", fw, dtype)
    seq, n, h, d = 45, 5, 3, 96
    # State-major storage, padded rows, and every other LSE entry.
    v = permute(device(randn(rng, n, seq, h, d + 8), fw, dtype), (1, 0, 2, 3))[..., :d]
    s = permute(device(randn(rng, seq, h, 2 * n, scale=4), fw, "float32"), (0, 2, 1))[:, ::2]
    check_result(kvinfer.merge_states(v, s), reference.merge_states(v, s), dtype, fw)


# --- merge_state_in_place -------------------------------------------------

@pytest.mark.parametrize("view", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw", ["torch", "cupy"])
def test_merge_state_in_place(fw, dtype, masked, view):
    rng = rng_for("inplace", fw, dtype, masked, view)
    seq, h, d = 131, 4, 128
    if view:  # v and s live inside wider buffers whose other parts must stay put
        big_v = device(randn(rng, seq, h, d + 16), fw, dtype)
        big_s = device(randn(rng, seq, 2 * h, scale=4), fw, "float32")
        v, s = big_v[:, :, :d], big_s[:, ::2]
        big_before = host(big_v), host(big_s)
    else:
        v, s = state(rng, fw, dtype, seq, h, d, dead=0.2)
    v_o, s_o = state(rng, fw, dtype, seq, h, d, dead=0.2)
    mask = device(rng.random(seq) < 0.5, fw, "bool") if masked else None
    rows = host(mask) != 0 if masked else np.ones(seq, bool)
    before = host(v), host(s)
    want = reference.merge_state_in_place(v, s, v_o, s_o, mask)

    assert kvinfer.merge_state_in_place(v, s, v_o, s_o, mask) is None
    check_v(host(v)[rows], want[0][rows], dtype)
    check_lse(host(s)[rows], want[1][rows])
    # Rows the mask leaves out stay bit-exact, NaN from dead entries included.
    np.testing.assert_array_equal(host(v)[~rows], before[0][~rows])
    np.testing.assert_array_equal(host(s)[~rows], before[1][~rows])
    if view:
        np.testing.assert_array_equal(host(big_v)[:, :, d:], big_before[0][:, :, d:])
        np.testing.assert_array_equal(host(big_s)[:, 1::2], big_before[1][:, 1::2])


def test_merge_state_in_place_rejects_jax():
    args = pair(rng_for("inplace_jax"), "jax", "float32", 9, 2, 64)
    with pytest.raises((TypeError, ValueError)):
        kvinfer.merge_state_in_place(*args)


# --- streams --------------------------------------------------------------

def stream_case(op):
    """Host-side ground truth plus device inputs for one op."""
    rng = rng_for("stream", op)
    if op == "merge_states":
        args = stacked(rng, "torch", "float32", 257, 3, 4, 128)
        return args, reference.merge_states(*args)
    args = pair(rng, "torch", "float32", 257, 4, 128)
    return args, getattr(reference, op)(*args)


def run(op, args, **kw):
    result = getattr(kvinfer, op)(*args, **kw)
    return args[:2] if op == "merge_state_in_place" else result


OPS = ["merge_state", "merge_states", "merge_state_in_place"]


def delayed_copies(torch, args):
    """Copies of args written on the current stream only after a ~30 ms spin,
    so a kernel launched on any other stream would read them unwritten."""
    torch.cuda._sleep(50_000_000)
    return [a.clone() for a in args]


@pytest.mark.parametrize("op", OPS)
def test_follows_current_torch_stream(op):
    torch = pytest.importorskip("torch")
    args, want = stream_case(op)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        copies = delayed_copies(torch, args)
        result = run(op, copies)
    torch.cuda.synchronize()
    check_result(result, want, "float32", "torch")


@pytest.mark.parametrize("op", OPS)
def test_explicit_stream_handle(op):
    torch = pytest.importorskip("torch")
    args, want = stream_case(op)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        copies = delayed_copies(torch, args)
    # Current stream is the default one again; only stream= points at side.
    result = run(op, copies, stream=side.cuda_stream)
    torch.cuda.synchronize()
    check_result(result, want, "float32", "torch")
