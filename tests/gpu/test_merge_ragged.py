"""merge_states(..., indptr=) (split-KV partials, ragged count per row) against the float64 reference."""
import numpy as np
import pytest

import kvinfer
from kvinfer import reference

pytestmark = pytest.mark.skipif(not kvinfer.cuda_available(), reason="no CUDA GPU")
torch = pytest.importorskip("torch")

TOL = {torch.float16: 4e-3, torch.bfloat16: 2e-2, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("d", [64, 128, 7])
# [43] and [41, 0, 45]: few rows with many states each (a small batch's split-KV), the wide merge form.
@pytest.mark.parametrize("counts", [[3, 1, 0, 5, 2], [1], [0, 0], [16] * 9 + [2, 7], [43], [41, 0, 45]])
def test_ragged_merge(dtype, d, counts):
    h = 4
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    p = int(indptr[-1])
    v = torch.randn(p, h, d, device="cuda", dtype=dtype)
    s = torch.randn(p, h, device="cuda") * 4
    if p > 2:  # an empty partial with garbage values must not leak
        s[1, 0] = -float("inf")
        v[1, 0] = float("nan")
    out = torch.full((len(counts), h, d), float("nan"), device="cuda", dtype=dtype)
    lse = torch.full((len(counts), h), float("nan"), device="cuda")
    res = kvinfer.merge_states(v, s, indptr=torch.from_numpy(indptr).cuda(), out=out, lse_out=lse)
    assert res[0] is out and res[1] is lse
    torch.cuda.synchronize()
    vn, sn = v.float().cpu().numpy(), s.cpu().numpy()
    for q, (lo, hi) in enumerate(zip(indptr[:-1], indptr[1:])):
        o_ref, s_ref = reference.merge_states(vn[lo:hi][None], sn[lo:hi][None])
        o = out[q].float().cpu().numpy()
        assert np.isfinite(o).all()
        scale = max(np.abs(o_ref).max(), 1e-6)
        assert np.abs(o - o_ref[0]).max() / scale < TOL[dtype]
        l = lse[q].cpu().numpy()
        assert (np.isneginf(l) == np.isneginf(s_ref[0])).all()
        fin = np.isfinite(s_ref[0])
        np.testing.assert_allclose(l[fin], s_ref[0][fin], atol=1e-4)


@pytest.mark.parametrize("wide", [False, True])
def test_corrupt_indptr_rows_are_nan_not_out_of_bounds(wide):
    n = 40 if wide else 4  # 40: 13 states per row on average, the wide form
    v = torch.randn(n, 2, 64, device="cuda")
    s = torch.randn(n, 2, device="cuda")
    indptr = torch.tensor([0, n // 2, n + 5, n], dtype=torch.int32, device="cuda")  # row 1 points past the partials
    o, l = kvinfer.merge_states(v, s, indptr=indptr)
    torch.cuda.synchronize()
    assert torch.isnan(o[1]).all() and torch.isnan(l[1]).all()
    assert torch.isfinite(o[0]).all()


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("first", [True, False])
def test_nan_lse_poisons_the_row(first, wide):
    """A partial whose LSE is NaN (computed from bad input, e.g. a corrupt page id) makes its row NaN,
    never a plausible-looking value (0 with -inf would read as "attended to nothing")."""
    h, d = 2, 64
    n0, n = (20, 40) if wide else (3, 5)  # wide: 20 states per row, the wide merge form
    indptr = torch.tensor([0, n0, n], dtype=torch.int32, device="cuda")
    v = torch.randn(n, h, d, device="cuda", dtype=torch.float16)
    s = torch.randn(n, h, device="cuda")
    bad = 0 if first else n0 - 1
    s[bad, 1] = float("nan")
    v[bad, 1] = float("nan")
    o, lse = kvinfer.merge_states(v, s, indptr=indptr)
    torch.cuda.synchronize()
    assert torch.isnan(o[0, 1]).all() and torch.isnan(lse[0, 1])
    assert torch.isfinite(o[0, 0].float()).all() and torch.isfinite(o[1].float()).all()
    assert torch.isfinite(lse[0, 0]) and torch.isfinite(lse[1]).all()
