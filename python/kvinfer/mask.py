"""Custom attention masks: bool masks packed into little-endian bits (bit i of the flattened row-major
[qo_len, kv_len] mask is bit i % 8 of byte i // 8), the form the kernels read."""
import numpy as np

from ._arrays import framework_of


def pack_custom_mask(mask, c=None, expect=None):
    """Pack a bool mask (any shape, flattened row-major; True = attend) into uint8 bits, in the mask's
    framework (numpy masks go to the device of call `c` when given). `expect` (qo_len, kv_len)
    checks the shape of a single request's mask."""
    shape = tuple(mask.shape)
    if expect is not None and shape != tuple(expect):
        raise ValueError(f"custom_mask: expected shape [qo_len, kv_len] = {list(expect)}, got {list(shape)}")
    fw = framework_of(mask)
    n = int(np.prod(shape)) if shape else 1
    pad = (-n) % 8
    weights = [1 << i for i in range(8)]
    if fw == "torch":
        import torch
        flat = mask.reshape(-1).to(torch.uint8)
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])
        w = torch.tensor(weights, dtype=torch.uint8, device=flat.device)
        return (flat.view(-1, 8) * w).sum(dim=1, dtype=torch.uint8)
    if fw == "cupy":
        import cupy
        return cupy.packbits(mask.reshape(-1).astype(cupy.bool_), bitorder="little")
    if fw == "jax":
        import jax.numpy as jnp
        return jnp.packbits(mask.reshape(-1).astype(jnp.bool_), bitorder="little")
    packed = np.packbits(np.asarray(mask).reshape(-1).astype(bool), bitorder="little")
    return c.upload(packed, name="packed_custom_mask") if c is not None and c.fw != "numpy" else packed
