"""append_paged_kv_cache on the GPU: every appended row lands in its page slot, nothing else changes."""
import numpy as np
import pytest

import kvinfer

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")
torch = pytest.importorskip("torch")

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "e4m3": getattr(torch, "float8_e4m3fn", None)}


def random_cache(shape, dtype, gen):
    x = torch.randn(shape, generator=gen, device="cuda")
    return x.to(dtype)


def page_table(kv_lens, page_size, num_pages, rng):
    """Random distinct pages per request; returns kv_indptr, kv_indices (numpy int32)."""
    pages_per = [(n + page_size - 1) // page_size for n in kv_lens]
    ids = rng.permutation(num_pages)[: sum(pages_per)].astype(np.int32)
    return np.concatenate([[0], np.cumsum(pages_per)]).astype(np.int32), ids


def expected(cache_k, cache_v, ak, av, bidx, pos, indptr, indices, page_size, layout):
    """Host copy of the caches with the appended rows written (ground truth)."""
    ek, ev = cache_k.clone(), cache_v.clone()
    for i, (b, p) in enumerate(zip(bidx, pos)):
        page = indices[indptr[b] + p // page_size]
        slot = p % page_size
        for dst, src in ((ek, ak), (ev, av)):
            if layout == "NHD":
                dst[page, slot] = src[i]
            else:
                dst[page, :, slot] = src[i]
    return ek, ev


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page_size", [1, 5, 16])
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "e4m3"])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("cache_kind", ["combined", "pair", "layer_view"])
def test_append(layout, page_size, dtype, head_dim, cache_kind):
    dt = DTYPES[dtype]
    if dt is None:
        pytest.skip("torch has no float8_e4m3fn")
    rng = np.random.default_rng(hash((layout, page_size, dtype, head_dim, cache_kind)) % 2**32)
    gen = torch.Generator(device="cuda").manual_seed(int(rng.integers(1 << 30)))
    heads, batch = 3, 4
    kv_lens = rng.integers(1, 40, batch)
    num_pages = int(sum((n + page_size - 1) // page_size for n in kv_lens)) + 7
    indptr, indices = page_table(kv_lens, page_size, num_pages, rng)
    # Append the last few tokens of each request (1, 7 or all of them).
    bidx, pos = [], []
    for b, n in enumerate(kv_lens):
        k = int(min(n, rng.choice([1, 7, n])))
        bidx += [b] * k
        pos += list(range(n - k, n))
    nnz = len(bidx)
    inner = (page_size, heads, head_dim) if layout == "NHD" else (heads, page_size, head_dim)
    if cache_kind == "layer_view":  # [pages, layers, 2, ...] cache, per-layer view without a copy
        full = random_cache((num_pages, 3, 2) + inner, dt, gen)
        cache = full[:, 1]
        k_cache, v_cache = cache[:, 0], cache[:, 1]
    elif cache_kind == "combined":
        cache = random_cache((num_pages, 2) + inner, dt, gen)
        k_cache, v_cache = cache[:, 0], cache[:, 1]
    else:  # separate K and V with different strides: V is a slice of a wider allocation
        k_cache = random_cache((num_pages,) + inner, dt, gen)
        v_cache = random_cache((num_pages + 3,) + inner, dt, gen)[2:-1]
        cache = (k_cache, v_cache)
    ak = random_cache((nnz, heads, head_dim), dt, gen)
    av = random_cache((nnz, heads, 2 * head_dim), dt, gen)[:, :, head_dim:]  # strided source
    ek, ev = expected(k_cache, v_cache, ak, av, bidx, pos, indptr, indices, page_size, layout)
    before_full = full.clone() if cache_kind == "layer_view" else None

    d = lambda a: torch.from_numpy(np.asarray(a, np.int32)).cuda()  # noqa: E731
    kvinfer.append_paged_kv_cache(ak, av, d(bidx), d(pos), cache, d(indices), d(indptr),
                                  d(np.ones(batch)), kv_layout=layout)
    torch.cuda.synchronize()
    as_bytes = lambda t: t.contiguous().view(torch.uint8)  # noqa: E731  (bit-exact, NaN-safe)
    assert torch.equal(as_bytes(k_cache), as_bytes(ek))
    assert torch.equal(as_bytes(v_cache), as_bytes(ev))
    if before_full is not None:  # other layers untouched
        for layer in (0, 2):
            assert torch.equal(as_bytes(full[:, layer]), as_bytes(before_full[:, layer]))


def test_out_of_table_entries_are_skipped():
    heads, dim, page_size = 2, 64, 4
    cache = torch.randn(6, 2, page_size, heads, dim, device="cuda", dtype=torch.float16)
    before = cache.clone()
    indptr = torch.tensor([0, 2], dtype=torch.int32, device="cuda")
    indices = torch.tensor([4, 1], dtype=torch.int32, device="cuda")
    # position 8 is past the request's 2 pages; batch index 1 does not exist; -1 is invalid.
    bidx = torch.tensor([0, 1, 0, 0], dtype=torch.int32, device="cuda")
    pos = torch.tensor([8, 0, -1, 5], dtype=torch.int32, device="cuda")
    ak = torch.randn(4, heads, dim, device="cuda", dtype=torch.float16)
    kvinfer.append_paged_kv_cache(ak, ak, bidx, pos, cache, indices, indptr)
    torch.cuda.synchronize()
    before[1, :, 1] = ak[3]  # only the valid entry: page indices[5 // 4] = 1, slot 1
    assert torch.equal(cache, before)


def test_cupy_cache():
    cp = pytest.importorskip("cupy")
    heads, dim, page_size = 4, 128, 16
    cache = cp.random.standard_normal((3, 2, page_size, heads, dim)).astype(cp.float16)
    ak = cp.random.standard_normal((5, heads, dim)).astype(cp.float16)
    av = cp.random.standard_normal((5, heads, dim)).astype(cp.float16)
    i32 = lambda a: cp.asarray(a, dtype=cp.int32)  # noqa: E731
    kvinfer.append_paged_kv_cache(ak, av, i32([0] * 5), i32(range(20, 25)), cache, i32([2, 0]), i32([0, 2]))
    cp.cuda.get_current_stream().synchronize()
    assert cp.array_equal(cache[0, 0, 4:9], ak) and cp.array_equal(cache[0, 1, 4:9], av)
