"""Shared setup of the decode experiments (ci/split_exp.py, ci/decode_fa3_exp.py, ci/decode_layout_exp.py):
one batch decode shape over a paged cache of page size PS (shuffled page ids), 32 query / 8 KV heads, D 128,
bf16, and cuDNN SDPA's time on the same shape over dense K/V, timed in the same process."""
import numpy as np
import torch
import torch.nn.functional as F

import _common

PS, HQ, HKV, D = 16, 32, 8, 128
REPS = 30


def shapes_from_argv(argv, default):
    """Decode shapes from command-line words "BxL" (batch x KV length), or `default` when there are none."""
    return [tuple(map(int, a.split("x"))) for a in argv] or default


def decode_case(batch, kv_len):
    """(kv_indptr, page ids on the device, last_page_len, q [batch, HQ, D], cuDNN µs): the page table of
    `batch` requests of kv_len tokens, pages 0 .. batch * pages-per-request in a random order."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    ppr = (kv_len + PS - 1) // PS
    idx = torch.randperm(batch * ppr, device="cuda").to(torch.int32)
    indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
    last = np.full(batch, kv_len - (ppr - 1) * PS, dtype=np.int32)
    q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(batch, HKV, kv_len, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    qd = q.view(batch, HQ, 1, D)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        cudnn = _common.time_us(lambda: F.scaled_dot_product_attention(qd, k, v, enable_gqa=True), REPS)
    return indptr, idx, last, q, cudnn


def paged_cache(batch, kv_len, layout="NHD"):
    """A random combined cache [pages, 2, PS, HKV, D] (NHD) or [pages, 2, HKV, PS, D] (HND) for decode_case."""
    pages = batch * ((kv_len + PS - 1) // PS)
    shape = (pages, 2, PS, HKV, D) if layout == "NHD" else (pages, 2, HKV, PS, D)
    return torch.randn(shape, dtype=torch.bfloat16, device="cuda")
