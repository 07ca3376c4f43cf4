"""FA2-class prefill against torch's flash backend on a few FlashAttention-grid shapes (bf16, ragged,
16k tokens, 4096 / D heads), one line per shape: kvinfer backend="fa2" TFLOP/s, flash TFLOP/s, ratio,
max abs error of the checked rows. FA2_EXP_PAGE=N: kvinfer reads a paged cache of N-token pages (shuffled
page ids; the general build of the kernel) instead of ragged K/V.
Usage: python ci/fa2_prefill_exp.py D:seqlen:c|n ..."""
import os
import sys

import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import bench_prefill as bp  # noqa: E402
from _common import calibrate_sleep  # noqa: E402



def bench_paged(batch, n, heads, d, causal, ps, row):
    """kvinfer on a paged cache of the same K/V (row keys as bench_ragged's with key "k")."""
    import kvinfer
    import numpy as np
    q, k, v = (torch.randn(batch * n, heads, d, dtype=bp.DTYPE, device="cuda") for _ in range(3))
    cache, indices, kv_indptr, last = bp.paged_cache(k, v, batch, n, ps)
    w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(torch.empty(bp.WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"),
                                                    backend=backend)
    w.plan((np.arange(batch + 1) * n).astype(np.int32), kv_indptr, indices, last, heads, heads, d, ps, causal=causal,
           q_data_type=bp.DTYPE)
    out = torch.empty_like(q)
    w.run(q, cache, out=out)
    row["k_max_abs_err"] = bp.check_rows(out, q, k, v, (batch - 1) * n, n, causal)
    row["k_us"] = bp.time_us(lambda: w.run(q, cache, out=out), 10)


calibrate_sleep()
backend = os.environ.get("FA2_EXP_BACKEND", "fa2")
for spec in sys.argv[1:] or ["128:4096:n", "128:4096:c", "256:4096:n", "256:4096:c", "64:4096:n", "64:4096:c"]:
    d, n, c = spec.split(":")
    d, n, causal = int(d), int(n), c == "c"
    batch, heads = bp.TOKENS // n, bp.HIDDEN // d
    f = bp.flops(batch, n, heads, d, causal)
    row = {}
    try:
        if os.environ.get("FA2_EXP_PAGE"):
            bench_paged(batch, n, heads, d, causal, int(os.environ["FA2_EXP_PAGE"]), row)
        else:
            bp.bench_ragged(batch, n, heads, d, causal, 10, row, backend, "k")
    except Exception as e:  # noqa: BLE001
        print(f"{spec}: kvinfer failed: {type(e).__name__}: {e}")
        continue
    us, why = bp.bench_sdpa(SDPBackend.FLASH_ATTENTION, batch, n, heads, d, causal, 10)
    k_t = f / row["k_us"] / 1e6
    fl_t = f / us / 1e6 if us else float("nan")
    print(f"{spec:12s} kvinfer {k_t:6.1f} flash {fl_t:6.1f} ratio {k_t / fl_t:5.3f} err {row['k_max_abs_err']:.2e}"
          f" {row.get('k_status', '')}", flush=True)
    bp.free_memory()
