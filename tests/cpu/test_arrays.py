"""Array adapters: framework detection, allocation in the caller's framework, streams, export."""
import numpy as np
import pytest

from kvinfer import _arrays


def test_framework_of_numpy_and_rejects_non_arrays():
    assert _arrays.framework_of(np.zeros(3)) == "numpy"
    with pytest.raises(TypeError, match="__dlpack__"):
        _arrays.framework_of([1, 2, 3])


def test_numpy_allocation_and_export():
    ref = np.ones((2, 3), np.float16)
    c = _arrays.Call(ref)
    assert c.fw == "numpy" and c.stream == 0
    out = c.empty((4, 5))
    assert isinstance(out, np.ndarray) and out.shape == (4, 5) and out.dtype == np.float16
    lse = c.empty((4,), "float32")
    assert lse.dtype == np.float32
    assert c.arg(ref, "x") is ref and c.arg(None, "x") is None


def test_torch_cpu_allocation_and_export():
    torch = pytest.importorskip("torch")
    ref = torch.ones((2, 3), dtype=torch.bfloat16)
    c = _arrays.Call(ref)
    assert c.fw == "torch" and c.stream == 0
    out = c.empty((4, 5))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16 and tuple(out.shape) == (4, 5)
    assert c.empty((3,), "float32").dtype == torch.float32
    cap = c.arg(ref, "x")
    assert type(cap).__name__ == "PyCapsule"


def test_stream_argument_forms():
    class TorchLike:
        cuda_stream = 1234

    class CupyLike:
        ptr = 5678

    ref = np.ones(1)
    assert _arrays.Call(ref, stream=42).stream == 42
    assert _arrays.Call(ref, stream=TorchLike()).stream == 1234
    assert _arrays.Call(ref, stream=CupyLike()).stream == 5678
    with pytest.raises(TypeError, match="stream"):
        _arrays.Call(ref, stream="default")


def test_jax_outputs_are_refused_for_writing():
    class FakeJax:  # the refusal happens before any JAX call
        __module__ = "jax._src.array"

    FakeJax.__module__ = "jax._src.array"
    c = _arrays.Call(np.ones(1))
    with pytest.raises(TypeError, match="immutable"):
        c.arg(FakeJax(), "out", writable=True)
