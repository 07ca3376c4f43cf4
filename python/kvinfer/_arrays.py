"""Array adapters: framework detection, allocation in the caller's framework, launch streams, DLPack export.

kvinfer never allocates device memory itself: outputs are made by the caller's framework (so its
caching allocator is used and no cudaMalloc happens per call) and returned as that framework's arrays.
Kernels run on the caller's current stream (torch, cupy) unless `stream=` names another; every input
is exported with that stream, so its producer orders its pending work before ours (DLPack protocol).
JAX has no current stream and its arrays are immutable: inputs are made ready, kernels run on the
legacy default stream, which is synchronised before returning.
"""
import numpy as np

_LEGACY_DEFAULT = 1  # DLPack's code for CUDA's legacy default stream (0 is not allowed there)


def framework_of(x):
    """'torch', 'cupy', 'jax' or 'numpy' (any other __dlpack__ object counts as 'dlpack')."""
    mod = type(x).__module__.split(".")[0]
    if mod in ("torch", "cupy", "numpy"):
        return mod
    if mod in ("jax", "jaxlib"):
        return "jax"
    if hasattr(x, "__dlpack__"):
        return "dlpack"
    raise TypeError(f"expected an array (an object with __dlpack__), got {type(x).__name__}")


def on_host(x):
    """True for host memory (numpy, CPU torch tensors)."""
    fw = framework_of(x)
    return fw == "numpy" or (fw == "torch" and not x.is_cuda)


def _stream_handle(stream):
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise TypeError(f"stream: expected an int handle, a torch.cuda.Stream or a cupy Stream, got {type(stream).__name__}")


_raw_stream = None


def _torch_current_stream(t):
    """Handle of torch's current stream on t's device. torch.cuda.current_stream() builds a Stream
    object (~6 us); the raw query torch's own compiler uses takes well under a microsecond."""
    global _raw_stream
    if _raw_stream is None:
        import torch
        fast = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        _raw_stream = fast or (lambda index: torch.cuda.current_stream(index).cuda_stream)
    return _raw_stream(t.get_device())


class Call:
    """One kernel call: the framework of its first array argument and the stream it launches on."""

    def __init__(self, ref, stream=None, what="v"):
        self.fw = framework_of(ref)
        self.ref = ref
        self._torch_fast = False  # torch arrays on their current stream: export without the protocol's sync
        if stream is not None:
            self.stream = _stream_handle(stream)
        elif self.fw == "torch" and ref.is_cuda:
            self.stream = _torch_current_stream(ref)
            self._torch_fast = True
        elif self.fw == "cupy":
            import cupy
            self.stream = cupy.cuda.get_current_stream().ptr
        else:
            self.stream = 0

    # -- allocation in the caller's framework ------------------------------------------------
    def empty(self, shape, dtype=None):
        """An uninitialised array like self.ref (same framework and device); dtype None = ref's, else a name."""
        shape = tuple(int(s) for s in shape)
        ref = self.ref
        if self.fw == "torch":
            import torch
            dt = ref.dtype if dtype is None else getattr(torch, dtype)
            return torch.empty(shape, dtype=dt, device=ref.device)
        if self.fw == "cupy":
            import cupy
            with ref.device:
                return cupy.empty(shape, dtype=ref.dtype if dtype is None else dtype)
        if self.fw == "jax":
            import jax.numpy as jnp
            dev = next(iter(ref.devices()))
            return jnp.empty(shape, dtype=ref.dtype if dtype is None else dtype, device=dev)
        if self.fw == "numpy":
            return np.empty(shape, dtype=ref.dtype if dtype is None else dtype)
        raise TypeError(f"cannot allocate outputs for {type(ref).__name__}; pass out= arrays")

    # -- export to the native core ----------------------------------------------------------
    def arg(self, x, name, writable=False):
        """DLPack export of x for this call's stream (None passes through)."""
        if x is None:
            return None
        fw = framework_of(x)
        if fw == "numpy":
            return x
        if fw == "jax":
            if writable:
                raise TypeError(f"{name}: JAX arrays are immutable; kvinfer cannot write into one "
                                "(leave out=/lse_out= unset, or use merge_state instead of the in-place form)")
            x.block_until_ready()
            return x.__dlpack__()
        if fw == "torch" and (self._torch_fast or not x.is_cuda):
            # Same stream as the producer (or host memory): nothing to order, and to_dlpack costs
            # ~0.2 us against ~2 us for __dlpack__.
            from torch.utils.dlpack import to_dlpack
            return to_dlpack(x)
        return x.__dlpack__(stream=self.stream or _LEGACY_DEFAULT)

    def dest(self, x, name, allocated):
        """Export of an output: one this call allocated (a fresh buffer, JAX included) or the caller's."""
        if allocated and self.fw == "jax":
            x.block_until_ready()
            return x.__dlpack__()
        return self.arg(x, name, writable=True)

    def upload(self, host, dst=None, name="array"):
        """Async copy of a host numpy array to the device (into `dst`, or a new array like self.ref)."""
        from . import _C
        if dst is None:
            dst = self.empty(host.shape, host.dtype.name)
        _C.copy_async(self.dest(dst, name, True), host, self.stream)
        return dst

    def finish(self):
        """JAX does not know kvinfer's stream: wait for it before handing results back."""
        if self.fw == "jax":
            from . import _C
            _C.stream_synchronize(self.stream)
