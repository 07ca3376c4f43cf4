"""Helpers shared by the attention GPU tests (tests/gpu/test_attention_*.py).

Data is drawn on the host from a generator seeded by the test case (crc32 of its parameters, so every
run sees the same values), uploaded and cast on the device; the float64 reference reads the device
values back, so it sees exactly what the kernels see. Outputs passed as out=/lse= are filled with NaN
first, and K/V memory that no request owns (spare pages, slots past a request's last token, other
layers, padding) holds NaN, so a kernel that writes too little or reads too much shows up as NaN.
"""
import importlib.util
import os
import zlib

import numpy as np
import pytest

import kvinfer
from kvinfer import reference

torch = pytest.importorskip("torch")

DEVICE = "cuda"
NAN = float("nan")
WORKSPACE_BYTES = 128 << 20

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
Q_DATA_TYPE = {"fp16": "float16", "bf16": "bfloat16"}
OUT_TOL = {"fp16": (2e-3, 1e-2), "bf16": (1.5e-2, 3e-2)}  # (atol, rtol) on outputs
LSE_ATOL = {"fp16": 2e-3, "bf16": 2e-2}


def _cpu_util():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cpu", "_util.py")
    spec = importlib.util.spec_from_file_location("_kvinfer_tests_cpu_util", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


raises = _cpu_util().raises  # pytest.raises whose message must contain every given word


# ---- build / device ----------------------------------------------------------------------------

def require(head_dim, dtype):
    """Skip unless this build compiled attention kernels for head_dim and dtype ("fp16"/"bf16")."""
    info = kvinfer.info()
    if head_dim not in info["head_dims"]:
        pytest.skip(f"head_dim {head_dim} not compiled (build has {info['head_dims']})")
    if dtype not in info["dtypes"]:
        pytest.skip(f"dtype {dtype} not compiled (build has {info['dtypes']})")


def compiled(head_dim=128, dtype="fp16"):
    """(head_dim, dtype): the preferred pair when compiled, else the first ones this build has."""
    info = kvinfer.info()
    if not info["head_dims"] or not info["dtypes"]:
        pytest.skip("no attention kernels in this build")
    d = head_dim if head_dim in info["head_dims"] else info["head_dims"][0]
    dt = dtype if dtype in info["dtypes"] else info["dtypes"][0]
    return d, dt


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def workspace(nbytes=WORKSPACE_BYTES):
    return torch.empty(nbytes, dtype=torch.uint8, device=DEVICE)


# ---- data ----------------------------------------------------------------------------------------

def rng_for(*case):
    return np.random.default_rng(zlib.crc32(repr(case).encode()))


def to_device(a, dtype):
    """Host float32 array -> device tensor of dtype ("fp16"/"bf16"), cast on the device."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(DEVICE).to(DTYPES[dtype])


def randn(rng, shape, dtype, scale=1.0):
    return to_device(rng.standard_normal(shape, dtype=np.float32) * np.float32(scale), dtype)


def host(x):
    """float64 numpy copy of a tensor (NaN kept)."""
    return x.detach().float().cpu().numpy().astype(np.float64)


def poisoned(shape, dtype):
    """A NaN-filled output tensor; dtype is a torch dtype or "fp16"/"bf16"."""
    return torch.full(tuple(shape), NAN, dtype=DTYPES.get(dtype, dtype), device=DEVICE)


def strided_copy(x, dim=-1, extra=8):
    """The same values as a non-contiguous view: x padded along `dim` by `extra` NaN columns (keeps
    every stride a multiple of 8 elements when x's are)."""
    shape = list(x.shape)
    shape[dim] += extra
    buf = torch.full(shape, NAN, dtype=x.dtype, device=x.device)
    view = buf.narrow(dim, 0, x.shape[dim])
    view.copy_(x)
    return view


def indptr_of(lens):
    return np.concatenate([[0], np.cumsum(np.asarray(lens, np.int64))]).astype(np.int32)


def random_mask(rng, qo_len, kv_len, p=0.6):
    """Bool [qo_len, kv_len] (True = attend) with, when there are >= 2 rows, one row fully masked."""
    m = rng.random((qo_len, kv_len)) < p
    if qo_len >= 2:
        m[int(rng.integers(qo_len))] = False
    return m


# ---- K/V caches ----------------------------------------------------------------------------------

def _pages_of(n, page_size):
    return (int(n) + page_size - 1) // page_size


class PagedKV:
    """A paged K/V cache whose requests' pages lie at random among `spare` unused pages.

    k_pages/v_pages: float32 host copies [num_pages, page_size, H_kv, D] of the device values (NaN
    where no request has a token). `cache`: what run() takes, in `layout`, built as `kind`:
    "combined" [pages, 2, ...], "tuple" (k, v) with V a slice of a wider allocation, or "layer_view"
    (k, v) views of layer 1 of a [pages, 3 layers, 2, ...] cache (other layers NaN).
    """

    def __init__(self, kv_lens, page_size, num_kv_heads, head_dim, dtype, layout, rng, kind="combined",
                 spare=7, num_pages=None):
        self.kv_lens = [int(n) for n in kv_lens]
        self.page_size, self.layout, self.dtype = page_size, layout, dtype
        self.num_kv_heads, self.head_dim = num_kv_heads, head_dim
        pages = [_pages_of(n, page_size) for n in self.kv_lens]
        used = sum(pages)
        self.num_pages = int(num_pages) if num_pages is not None else used + spare
        assert self.num_pages >= used
        shape = (self.num_pages, page_size, num_kv_heads, head_dim)
        k = rng.standard_normal(shape, dtype=np.float32)
        v = rng.standard_normal(shape, dtype=np.float32)
        self.k_dev = to_device(k, dtype)
        self.v_dev = to_device(v, dtype)
        self.set_table(rng)
        self.cache = self._build(kind)

    def set_table(self, rng, kv_lens=None):
        """New page table (random pages) for kv_lens; re-poisons every slot no request owns."""
        if kv_lens is not None:
            self.kv_lens = [int(n) for n in kv_lens]
        ps = self.page_size
        pages = [_pages_of(n, ps) for n in self.kv_lens]
        assert sum(pages) <= self.num_pages
        self.indptr = indptr_of(pages)
        self.indices = rng.permutation(self.num_pages)[: sum(pages)].astype(np.int32)
        self.last_page_len = np.array([n - (p - 1) * ps if p else 0 for n, p in zip(self.kv_lens, pages)],
                                      np.int32)
        live = np.zeros((self.num_pages, ps), bool)
        for b, n in enumerate(self.kv_lens):
            for j, page in enumerate(self.indices[self.indptr[b]:self.indptr[b + 1]]):
                live[page, : min(ps, n - j * ps)] = True
        dead = torch.from_numpy(~live).to(DEVICE)
        # Fresh values for live slots come from the original draw; dead ones become NaN.
        if not hasattr(self, "_k0"):
            self._k0, self._v0 = self.k_dev.clone(), self.v_dev.clone()
        self.k_dev.copy_(self._k0)
        self.v_dev.copy_(self._v0)
        self.k_dev[dead] = NAN
        self.v_dev[dead] = NAN
        self.k_pages = self.k_dev.float().cpu().numpy()
        self.v_pages = self.v_dev.float().cpu().numpy()
        if hasattr(self, "_sync_views"):
            self._sync_views()

    def _layout_view(self, x):
        return x if self.layout == "NHD" else x.transpose(1, 2)

    def _build(self, kind):
        k = self._layout_view(self.k_dev)
        inner = tuple(k.shape[1:])
        if kind == "combined":
            store = torch.empty((self.num_pages, 2) + inner, dtype=k.dtype, device=DEVICE)
            targets = (store[:, 0], store[:, 1])
            cache = store
        elif kind == "tuple":
            kc = torch.empty((self.num_pages,) + inner, dtype=k.dtype, device=DEVICE)
            wide = torch.full((self.num_pages,) + inner[:-1] + (2 * self.head_dim,), NAN, dtype=k.dtype,
                              device=DEVICE)
            vc = wide[..., self.head_dim:]
            targets = (kc, vc)
            cache = (kc, vc)
        elif kind == "layer_view":
            big = torch.full((self.num_pages, 3, 2) + inner, NAN, dtype=k.dtype, device=DEVICE)
            targets = (big[:, 1, 0], big[:, 1, 1])
            cache = targets
            self._big = big
        else:
            raise AssertionError(kind)

        def sync_views():
            targets[0].copy_(self._layout_view(self.k_dev))
            targets[1].copy_(self._layout_view(self.v_dev))

        self._sync_views = sync_views
        sync_views()
        return cache

    def kv(self, b):
        """float32 host (k, v) [kv_len, H_kv, D] of request b."""
        pages = self.indices[self.indptr[b]:self.indptr[b + 1]]
        n = self.kv_lens[b]
        shape = (-1, self.num_kv_heads, self.head_dim)
        return self.k_pages[pages].reshape(shape)[:n], self.v_pages[pages].reshape(shape)[:n]

    def indices_on_device(self):
        return torch.from_numpy(self.indices).to(DEVICE)


class RaggedKV:
    """Ragged K/V: requests' tokens back to back ([kv_total + pad, H_kv, D] NHD, [H_kv, kv_total + pad, D]
    HND), the `pad` tokens past kv_indptr[-1] NaN."""

    def __init__(self, kv_lens, num_kv_heads, head_dim, dtype, layout, rng, pad=5):
        self.kv_lens = [int(n) for n in kv_lens]
        self.indptr = indptr_of(self.kv_lens)
        total = int(self.indptr[-1])
        k = rng.standard_normal((total + pad, num_kv_heads, head_dim), dtype=np.float32)
        v = rng.standard_normal((total + pad, num_kv_heads, head_dim), dtype=np.float32)
        k[total:] = np.nan
        v[total:] = np.nan
        kd, vd = to_device(k, dtype), to_device(v, dtype)
        self.k_host, self.v_host = kd.float().cpu().numpy(), vd.float().cpu().numpy()
        if layout == "HND":
            kd, vd = kd.transpose(0, 1).contiguous(), vd.transpose(0, 1).contiguous()
        self.k, self.v = kd, vd

    def kv(self, b):
        lo, hi = self.indptr[b], self.indptr[b + 1]
        return self.k_host[lo:hi], self.v_host[lo:hi]


# ---- reference and checks --------------------------------------------------------------------------

def batch_reference(q, qo_indptr, kv_of, masks=None, **kw):
    """Reference of a batch: request b's queries q[qo_indptr[b]:qo_indptr[b+1]] over kv_of(b).

    q: device tensor [N, H_qo, D] (rows past qo_indptr[-1] are ignored); masks: per-request bool
    arrays or None. Returns float64 (o [qo_indptr[-1], H_qo, D], lse [qo_indptr[-1], H_qo])."""
    qh = q.detach().float().cpu().numpy()
    n = int(qo_indptr[-1])
    o = np.zeros((n,) + qh.shape[1:])
    lse = np.full((n, qh.shape[1]), -np.inf)
    for b in range(len(qo_indptr) - 1):
        lo, hi = int(qo_indptr[b]), int(qo_indptr[b + 1])
        if hi == lo:
            continue
        k, v = kv_of(b)
        mask = None if masks is None else masks[b]
        o[lo:hi], lse[lo:hi] = reference.attention(qh[lo:hi], k, v, custom_mask=mask, **kw)
    return o, lse


def check(out, lse, ref_o, ref_lse, dtype, what=""):
    """out [..., D] / lse [...] against the float64 reference.

    Every output element is finite; rows whose reference LSE is -inf (nothing to attend) are exact
    zeros with LSE exactly -inf; the rest match within the dtype's tolerances."""
    what = f" ({what})" if what else ""
    o = host(out)
    assert o.shape == ref_o.shape, f"out shape {o.shape} != {ref_o.shape}{what}"
    bad = ~np.isfinite(o)
    assert not bad.any(), f"{int(bad.sum())} non-finite output elements, first at {np.argwhere(bad)[:4].tolist()}{what}"
    dead = np.isneginf(ref_lse)
    if dead.any():
        assert (o[dead] == 0).all(), f"rows with nothing to attend are not zero{what}"
    atol, rtol = OUT_TOL[dtype]
    np.testing.assert_allclose(o, ref_o, atol=atol, rtol=rtol, err_msg=f"out{what}")
    if lse is not None:
        assert lse.dtype == torch.float32
        s = host(lse)
        assert s.shape == ref_lse.shape, f"lse shape {s.shape} != {ref_lse.shape}{what}"
        assert not np.isnan(s).any() and not np.isposinf(s).any(), f"lse has NaN/+inf{what}"
        np.testing.assert_array_equal(np.isneginf(s), dead, err_msg=f"lse -inf pattern{what}")
        np.testing.assert_allclose(s[~dead], ref_lse[~dead], atol=LSE_ATOL[dtype], rtol=0, err_msg=f"lse{what}")


def capture_graph(fn):
    """Warm fn up once on a side stream (as torch recommends), then capture one call of it into a
    torch.cuda.CUDAGraph, which is returned (replay() re-runs the captured work)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph
