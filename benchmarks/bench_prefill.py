"""Batch prefill (ragged K/V) throughput on the FlashAttention benchmark grid, next to torch SDPA (flash, cuDNN).

kvinfer runs the default backend ("auto": the Hopper fa3 kernels on sm90) and, where that is fa3, also
the FA2-class kernels (backend="fa2") on the same shapes.
Grid (FlashAttention's): batch x seqlen = 16384 tokens, seqlen 512..16384, heads = 4096 / head dim
(no GQA), head dim 64/128/256, bf16, causal off and on. kvinfer runs BatchPrefillWithRaggedKVCacheWrapper
over the batch (plan() outside the timing) on [tokens, H, D]; the peers run torch SDPA with the flash and
the cuDNN backend on contiguous [batch, H, seqlen, D] tensors, in the same process.
Also batch prefill over a paged cache (page 16) against the ragged wrapper on the same shapes (--no-paged skips it).

    python benchmarks/bench_prefill.py [--reps 10] [--quick] [--no-paged] [--json PATH]
"""
import argparse
import datetime
import json
import math
import sys
import time

import numpy as np
import torch

import kvinfer
from _common import (BATCH, WARMUP, calibrate_sleep, fmt, free_memory, lookup, print_notes, sdpa_peer, short,
                     skip_without_gpu, time_us)

TOKENS = 16384
SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
HEAD_DIMS = (64, 128, 256)
HIDDEN = 4096  # heads = HIDDEN // head dim
QUICK = [(512, 128, False), (4096, 128, True), (2048, 64, False)]  # (seqlen, head dim, causal)
PAGED = {"batch": 8, "seqlen": 4096, "heads": 32, "head_dim": 128, "page_size": 16}
DTYPE = torch.bfloat16
WORKSPACE_BYTES = 256 << 20
CHECK_ROWS = 64  # query rows checked against a float32 reference (the last of the last request)
ATOL = 2e-2
# Dense bf16 tensor-core peak (TFLOP/s, no sparsity), matched against the device name in order; else unknown.
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0)]


def flops(batch, seqlen, heads, head_dim, causal):
    f = 4 * batch * seqlen * seqlen * heads * head_dim
    return f / 2 if causal else f


def check_rows(out, q, k, v, begin, seqlen, causal):
    """Max abs error of the last CHECK_ROWS query rows of the request at token offset `begin` against
    a float32 reference (q/k/v/out [tokens, H, D], no GQA)."""
    rows = min(CHECK_ROWS, seqlen)
    qs = q[begin + seqlen - rows:begin + seqlen].float()  # [rows, H, D]
    ks = k[begin:begin + seqlen].float()
    vs = v[begin:begin + seqlen].float()
    s = torch.einsum("rhd,lhd->hrl", qs, ks) / math.sqrt(q.shape[-1])
    if causal:
        pos = torch.arange(seqlen - rows, seqlen, device=q.device)
        s = s.masked_fill(torch.arange(seqlen, device=q.device)[None, :] > pos[:, None], float("-inf"))
    ref = torch.einsum("hrl,lhd->rhd", torch.softmax(s, dim=-1), vs)
    return (out[begin + seqlen - rows:begin + seqlen].float() - ref).abs().max().item()


def kvinfer_status(fn, row, key):
    """Run fn (fills row[key]) and turn kvinfer's failures into a status instead of a crash."""
    try:
        fn()
    except NotImplementedError as e:
        row[f"{key}_status"] = f"not built: {short(e)}"
    except Exception as e:
        row[f"{key}_status"] = f"error: {type(e).__name__}: {short(e)}"
    free_memory()


def bench_ragged(batch, seqlen, heads, head_dim, causal, reps, row, backend="auto", key="kvinfer"):
    total = batch * seqlen
    q, k, v = (torch.randn(total, heads, head_dim, dtype=DTYPE, device="cuda") for _ in range(3))
    indptr = (np.arange(batch + 1) * seqlen).astype(np.int32)
    w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"),
                                                     backend=backend)
    w.plan(indptr, indptr, heads, heads, head_dim, causal=causal, q_data_type=DTYPE)
    row[f"{key}_backend"] = w.plan_info.backend
    out = torch.empty_like(q)
    w.run(q, k, v, out=out)
    err = check_rows(out, q, k, v, (batch - 1) * seqlen, seqlen, causal)
    row[f"{key}_max_abs_err"] = err
    if err > ATOL:
        row[f"{key}_status"] = f"wrong: max abs error {err:.3g} vs float32 reference (tolerance {ATOL})"
    row[f"{key}_us"] = time_us(lambda: w.run(q, k, v, out=out), reps)


def bench_sdpa(backend, batch, seqlen, heads, head_dim, causal, reps):
    """(us, None) or (None, reason)."""
    q, k, v = (torch.randn(batch, heads, seqlen, head_dim, dtype=DTYPE, device="cuda") for _ in range(3))

    def call():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return sdpa_peer(backend, call, lambda: time_us(call, reps))


def bench_config(seqlen, head_dim, causal, reps, peak):
    batch, heads = TOKENS // seqlen, HIDDEN // head_dim
    f = flops(batch, seqlen, heads, head_dim, causal)
    row = {"batch": batch, "seqlen": seqlen, "heads": heads, "head_dim": head_dim, "causal": causal, "flops": f,
           "kvinfer_status": "ok", "fa2_status": "ok", "floor_us": f / peak / 1e6 if peak else None}
    kvinfer_status(lambda: bench_ragged(batch, seqlen, heads, head_dim, causal, reps, row), row, "kvinfer")
    # The FA2-class kernels on the same shapes (what "auto" runs where the Hopper kernels cannot).
    if row.get("kvinfer_backend") == "fa3":
        kvinfer_status(lambda: bench_ragged(batch, seqlen, heads, head_dim, causal, reps, row, "fa2", "fa2"), row,
                       "fa2")
    try:
        from torch.nn.attention import SDPBackend
        backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None)}
    except ImportError as e:
        backends = {"flash": None, "cudnn": None}
        row["flash_note"] = row["cudnn_note"] = f"n/a: torch.nn.attention unavailable ({e})"
    for name, backend in backends.items():
        if backend is None:
            row.setdefault(f"{name}_note", "n/a: this torch has no such SDPA backend")
            continue
        try:
            us, why = bench_sdpa(backend, batch, seqlen, heads, head_dim, causal, reps)
        except torch.cuda.OutOfMemoryError as e:
            us, why = None, f"out of memory ({short(e, 120)})"
        free_memory()
        if us is None:
            row[f"{name}_note"] = f"n/a: {why}"
        else:
            row[f"{name}_us"] = us
    for name in ("kvinfer", "fa2", "flash", "cudnn"):
        if row.get(f"{name}_us"):
            row[f"{name}_tflops"] = f / row[f"{name}_us"] / 1e6
    for name in ("flash", "cudnn"):
        if row.get("kvinfer_tflops") and row.get(f"{name}_tflops"):
            row[f"ratio_{name}"] = row["kvinfer_tflops"] / row[f"{name}_tflops"]
    if row.get("fa2_tflops") and row.get("flash_tflops"):
        row["ratio_fa2_flash"] = row["fa2_tflops"] / row["flash_tflops"]
    if row.get("kvinfer_tflops") and peak:
        row["pct_peak"] = 100 * row["kvinfer_tflops"] / peak
    return row


def paged_cache(k, v, batch, n, ps):
    """The ragged K/V of `batch` requests of n tokens ([batch * n, H, D]) as a paged cache of ps-token pages
    with shuffled page ids: (cache [pages, 2, ps, H, D], kv_indices int32, kv_indptr, kv_last_page_len)."""
    ppr, h, d = (n + ps - 1) // ps, k.shape[1], k.shape[2]
    perm = torch.randperm(batch * ppr, device=k.device)
    cache = torch.empty(batch * ppr, 2, ps, h, d, dtype=k.dtype, device=k.device)
    for slot, x in ((0, k), (1, v)):  # page perm[r * ppr + j] holds tokens j*ps .. j*ps+ps-1 of request r
        padded = torch.zeros(batch, ppr * ps, h, d, dtype=k.dtype, device=k.device)
        padded[:, :n] = x.view(batch, n, h, d)
        cache[perm, slot] = padded.view(batch * ppr, ps, h, d)
        del padded
    return (cache, perm.to(torch.int32), (np.arange(batch + 1) * ppr).astype(np.int32),
            np.full(batch, n - (ppr - 1) * ps, dtype=np.int32))


def bench_paged(causal, reps):
    """Paged (page 16, shuffled page ids) against ragged prefill on the same requests and K/V values."""
    b, n, h, d, ps = (PAGED[x] for x in ("batch", "seqlen", "heads", "head_dim", "page_size"))
    f = flops(b, n, h, d, causal)
    row = {"batch": b, "seqlen": n, "heads": h, "head_dim": d, "page_size": ps, "causal": causal, "flops": f,
           "ragged_status": "ok", "paged_status": "ok"}
    q, k, v = (torch.randn(b * n, h, d, dtype=DTYPE, device="cuda") for _ in range(3))
    cache, indices, kv_indptr, last = paged_cache(k, v, b, n, ps)
    qo_indptr = (np.arange(b + 1) * n).astype(np.int32)
    outs = {}

    def ragged():
        w = kvinfer.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(WORKSPACE_BYTES, dtype=torch.uint8,
                                                                     device="cuda"))
        w.plan(qo_indptr, qo_indptr, h, h, d, causal=causal, q_data_type=DTYPE)
        out = outs["ragged"] = torch.empty_like(q)
        w.run(q, k, v, out=out)
        row["ragged_us"] = time_us(lambda: w.run(q, k, v, out=out), reps)

    def paged():
        w = kvinfer.BatchPrefillWithPagedKVCacheWrapper(torch.empty(WORKSPACE_BYTES, dtype=torch.uint8,
                                                                    device="cuda"))
        w.plan(qo_indptr, kv_indptr, indices, last, h, h, d, ps, causal=causal, q_data_type=DTYPE)
        out = outs["paged"] = torch.empty_like(q)
        w.run(q, cache, out=out)
        row["paged_us"] = time_us(lambda: w.run(q, cache, out=out), reps)

    kvinfer_status(ragged, row, "ragged")
    kvinfer_status(paged, row, "paged")
    for key, out in outs.items():
        if row[f"{key}_status"] != "ok":
            continue
        err = check_rows(out, q, k, v, (b - 1) * n, n, causal)
        row[f"{key}_max_abs_err"] = err
        if err > ATOL:
            row[f"{key}_status"] = f"wrong: max abs error {err:.3g} vs float32 reference (tolerance {ATOL})"
    if row["ragged_status"] == "ok" and row["paged_status"] == "ok":
        row["paged_vs_ragged_max_abs_diff"] = (outs["paged"].float() - outs["ragged"].float()).abs().max().item()
    del q, k, v, cache, outs
    free_memory()
    for key in ("ragged", "paged"):
        if row.get(f"{key}_us"):
            row[f"{key}_tflops"] = f / row[f"{key}_us"] / 1e6
    if row.get("ragged_us") and row.get("paged_us"):
        row["ratio_paged_ragged"] = row["ragged_us"] / row["paged_us"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed batches per case (median taken)")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK} (seqlen, head dim, causal)")
    parser.add_argument("--no-paged", dest="paged", action="store_false",
                        help="skip the paged vs ragged batch prefill comparison")
    parser.add_argument("--json", metavar="PATH", help="also write results here")
    args = parser.parse_args()

    if skip_without_gpu(args.json, "prefill"):
        return 0

    calibrate_sleep()
    gpu = torch.cuda.get_device_name()
    peak = lookup(PEAK_BF16_TFLOPS, gpu)
    configs = QUICK if args.quick else [(n, d, c) for c in (False, True) for d in HEAD_DIMS for n in SEQLENS]
    t_start = time.perf_counter()
    rows = [bench_config(n, d, c, args.reps, peak) for n, d, c in configs]
    paged_rows = [bench_paged(c, args.reps) for c in (False, True)] if args.paged else []
    wall = time.perf_counter() - t_start

    print(f"GPU: {gpu}   dense bf16 peak: {fmt(peak, '.0f')} TFLOP/s"
          f"{'' if peak else ' (unknown for this GPU: no compute floor)'}\n")
    print(f"Batch prefill, ragged K/V, batch x seqlen = {TOKENS} tokens, heads = {HIDDEN} / head dim (no GQA), bf16. "
          "TFLOP/s = 4 x batch x seqlen^2 x heads x head dim / time (half that when causal). Time: median of "
          f"{args.reps} samples of {BATCH} back-to-back run() calls (CUDA events, {WARMUP} warmup calls; plan() "
          "not timed). Floor: FLOPs / dense bf16 peak. Peers: torch SDPA, flash and cuDNN backends, on "
          "contiguous [batch, H, seqlen, D]; ratio = kvinfer TFLOP/s / peer TFLOP/s (> 1: kvinfer faster).\n")
    print("kvinfer = the default backend (\"auto\": the Hopper fa3 kernels on sm90); fa2 = the FA2-class kernels "
          "forced on the same shapes.\n")
    print("| causal | head dim | heads | batch | seqlen | kvinfer µs | floor µs | kvinfer TFLOP/s | % of peak "
          "| fa2 TFLOP/s | flash TFLOP/s | cuDNN TFLOP/s | kvinfer/flash | kvinfer/cuDNN | fa2/flash |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for r in rows:
        label = f"{'causal' if r['causal'] else 'non-causal'} D {r['head_dim']} seqlen {r['seqlen']}"
        if r["kvinfer_status"] != "ok":
            notes.append((label, f"kvinfer {r['kvinfer_status']}"))
        if r.get("fa2_status", "ok") != "ok":
            notes.append((label, f"fa2 {r['fa2_status']}"))
        for name in ("flash", "cudnn"):
            if r.get(f"{name}_note"):
                notes.append((label, f"{'cuDNN' if name == 'cudnn' else 'flash'} {r[name + '_note']}"))
        kv = fmt(r.get("kvinfer_us"), ".1f") if r["kvinfer_status"] == "ok" else r["kvinfer_status"].split(":")[0]
        print(f"| {r['causal']} | {r['head_dim']} | {r['heads']} | {r['batch']} | {r['seqlen']} | {kv} "
              f"| {fmt(r['floor_us'], '.1f')} | {fmt(r.get('kvinfer_tflops'), '.0f')} | {fmt(r.get('pct_peak'), '.1f')} "
              f"| {fmt(r.get('fa2_tflops'), '.0f')} | {fmt(r.get('flash_tflops'), '.0f')} "
              f"| {fmt(r.get('cudnn_tflops'), '.0f')} | {fmt(r.get('ratio_flash'), '.2f')} "
              f"| {fmt(r.get('ratio_cudnn'), '.2f')} | {fmt(r.get('ratio_fa2_flash'), '.2f')} |")
    errs = [r["kvinfer_max_abs_err"] for r in rows if "kvinfer_max_abs_err" in r]
    if errs:
        print(f"\nMax abs error vs a float32 reference (last {CHECK_ROWS} query rows of the last request): "
              f"{max(errs):.2e}.")

    if paged_rows:
        p = PAGED
        print(f"\nPaged vs ragged batch prefill: {p['batch']} requests x {p['seqlen']} tokens, {p['heads']} heads, "
              f"head dim {p['head_dim']}, bf16, page size {p['page_size']} (page ids randomly permuted). "
              "ratio = paged TFLOP/s / ragged TFLOP/s.\n")
        print("| causal | ragged µs | ragged TFLOP/s | paged µs | paged TFLOP/s | paged/ragged |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in paged_rows:
            for key in ("ragged", "paged"):
                if r[f"{key}_status"] != "ok":
                    notes.append((f"paged, causal {r['causal']}", f"{key} {r[key + '_status']}"))
            cells = []
            for key in ("ragged", "paged"):
                st = r[f"{key}_status"]
                cells += [fmt(r.get(f"{key}_us"), ".1f") if st == "ok" else st.split(":")[0],
                          fmt(r.get(f"{key}_tflops"), ".0f")]
            print(f"| {r['causal']} | {' | '.join(cells)} | {fmt(r.get('ratio_paged_ragged'), '.2f')} |")
    print_notes(notes)
    print(f"\nwall time {wall:.0f} s")

    if args.json:
        result = {
            "gpu": gpu, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "kvinfer": kvinfer.__version__, "reps": args.reps, "warmup": WARMUP,
            "batch": BATCH, "peak_bf16_tflops": peak, "tokens": TOKENS, "dtype": "bf16", "rows": rows,
            "paged_rows": paged_rows,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    bad = [r.get(f"{k}_status", "ok") for r in rows + paged_rows for k in ("kvinfer", "fa2", "ragged", "paged")]
    return 1 if any(s.startswith(("error", "wrong")) for s in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
