"""Paged KV-cache utilities.

A paged cache is one array `[num_pages, 2, page_size, H, D]` (NHD) / `[num_pages, 2, H, page_size, D]`
(HND), or a `(k_cache, v_cache)` pair of `[num_pages, page_size, H, D]` / `[num_pages, H, page_size, D]`
views with any page/token/head strides (e.g. a per-layer slice of a bigger cache, no copy).
Request b owns pages `kv_indices[kv_indptr[b]:kv_indptr[b+1]]`; index arrays are int32.
"""
from . import _C
from ._arrays import Call


def split_paged_kv_cache(paged_kv_cache):
    """(k_cache, v_cache) views of a combined cache, or the pair itself."""
    if isinstance(paged_kv_cache, (tuple, list)):
        if len(paged_kv_cache) != 2:
            raise ValueError(f"paged_kv_cache: expected a (k_cache, v_cache) pair, got {len(paged_kv_cache)} arrays")
        return tuple(paged_kv_cache)
    shape = tuple(paged_kv_cache.shape)
    if len(shape) != 5 or shape[1] != 2:
        raise ValueError("paged_kv_cache: expected [num_pages, 2, page_size, num_kv_heads, head_dim] (NHD) or "
                         f"[num_pages, 2, num_kv_heads, page_size, head_dim] (HND), got shape {list(shape)}")
    return paged_kv_cache[:, 0], paged_kv_cache[:, 1]


def append_paged_kv_cache(append_key, append_value, batch_indices, positions, paged_kv_cache, kv_indices,
                          kv_indptr, kv_last_page_len=None, kv_layout="NHD", *, stream=None):
    """Write new tokens' K/V (`[nnz, H_kv, D]`, the cache's dtype) into their pages.

    Token i belongs to request `batch_indices[i]` at position `positions[i]` (int32 device arrays):
    it goes to page `kv_indices[kv_indptr[b] + positions[i] // page_size]`, slot
    `positions[i] % page_size`. Entries pointing outside the page table are skipped, never written
    out of bounds. `kv_last_page_len` is accepted for API compatibility and only shape-checked.
    """
    k_cache, v_cache = split_paged_kv_cache(paged_kv_cache)
    c = Call(append_key, stream)
    _C.append_paged_kv_cache(c.arg(append_key, "append_key"), c.arg(append_value, "append_value"),
                             c.arg(batch_indices, "batch_indices"), c.arg(positions, "positions"),
                             c.arg(k_cache, "k_cache", writable=True), c.arg(v_cache, "v_cache", writable=True),
                             kv_layout, c.arg(kv_indices, "kv_indices"), c.arg(kv_indptr, "kv_indptr"),
                             c.arg(kv_last_page_len, "kv_last_page_len"), c.stream)
