"""Batch decode over a paged KV cache: achieved bandwidth next to torch SDPA (cuDNN, flash) and the copy floor.

Decode reads every K/V byte once and does little arithmetic, so the figure of merit is KV bytes / time
(TB/s) as a share of what a device-to-device copy reaches on the same GPU (bench_merge's copy_gbps).
Shapes: page size 16, 32 query / 8 KV heads, head dim 128, bf16, every request the same KV length,
page ids a random permutation (a real paged gather). Peers, in the same process: torch SDPA with the
cuDNN and the flash backend on dense contiguous K/V [batch, H_kv, kv_len, D] (enable_gqa=True; where a
backend rejects GQA, K/V expanded to 32 heads before timing, and its TB/s still counts the 8-head bytes).

    python benchmarks/bench_decode.py [--reps 10] [--quick] [--json PATH]
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
from _common import (BATCH, WARMUP, calibrate_sleep, copy_gbps, fmt, free_memory, host_us, lookup, print_notes,
                     sdpa_peer, short, skip_without_gpu, time_us)

PAGE_SIZE, HQ, HKV, HEAD_DIM = 16, 32, 8, 128
DTYPE = torch.bfloat16
BATCHES = (1, 16, 64, 128, 256)
KV_LENS = (2048, 8192, 32768)
QUICK = [(1, 32768), (16, 8192), (64, 2048)]
KV_LIMIT_BYTES = 40e9  # configs whose KV cache is larger are skipped
WORKSPACE_BYTES = 256 << 20
PLAN_REPS = 50
ATOL = 2e-2  # max abs error vs a float32 reference on two requests; above it the row is marked wrong
# Spec HBM bandwidth (TB/s), matched against torch.cuda.get_device_name() in order; else unknown.
SPEC_HBM_TBPS = [("H200", 4.8), ("H100 NVL", 3.9), ("H100 PCIe", 2.0), ("H100", 3.35)]



def num_sets(nbytes):
    """Input sets to rotate so that one set is evicted from L2 before it is read again."""
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 50 * 2**20
    return 1 if nbytes >= 4 * l2 else min(64, 1 + math.ceil(4 * l2 / nbytes))


def reference_decode(q, cache, pages, kv_len):
    """float32 decode attention of one request: q [HQ, D], its pages of the NHD cache."""
    k = cache[pages, 0].reshape(-1, HKV, HEAD_DIM)[:kv_len].float().repeat_interleave(HQ // HKV, dim=1)
    v = cache[pages, 1].reshape(-1, HKV, HEAD_DIM)[:kv_len].float().repeat_interleave(HQ // HKV, dim=1)
    p = torch.softmax(torch.einsum("hd,lhd->hl", q.float(), k) / math.sqrt(HEAD_DIM), dim=-1)
    return torch.einsum("hl,lhd->hd", p, v)


def bench_kvinfer(batch, kv_len, nsets, reps, row):
    """Time run() on a shuffled paged cache; fills row (time, plan latency, plan shape, max error)."""
    ppr = (kv_len + PAGE_SIZE - 1) // PAGE_SIZE
    per_set = batch * ppr
    cache = torch.empty(nsets * per_set, 2, PAGE_SIZE, HKV, HEAD_DIM, dtype=DTYPE, device="cuda").normal_()
    perm = torch.randperm(nsets * per_set, device="cuda").to(torch.int32)
    indptr = (np.arange(batch + 1) * ppr).astype(np.int32)
    last = np.full(batch, kv_len - (ppr - 1) * PAGE_SIZE, dtype=np.int32)
    ws = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda")  # shared: the runs are stream-ordered
    sets = []
    for s in range(nsets):
        w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
        idx = perm[s * per_set:(s + 1) * per_set].clone()
        w.plan(indptr, idx, last, HQ, HKV, HEAD_DIM, PAGE_SIZE, q_data_type=DTYPE)
        sets.append((w, torch.randn(batch, HQ, HEAD_DIM, dtype=DTYPE, device="cuda"), idx))

    w, q, idx = sets[0]
    out = w.run(q, cache)
    err = 0.0
    for b in sorted({0, batch - 1}):
        ref = reference_decode(q[b], cache, idx[b * ppr:(b + 1) * ppr].long(), kv_len)
        err = max(err, (out[b].float() - ref).abs().max().item())
    row["max_abs_err"] = err
    del out

    row["kvinfer_us"] = time_us(lambda w, q, idx: w.run(q, cache), reps, sets)
    # The same without programmatic dependent launch (enable_pdl=False): back-to-back calls then do not
    # overlap one kernel's start with the previous one's tail.
    for s in sets:
        s[0]._pdl = False
    row["kvinfer_nopdl_us"] = time_us(lambda w, q, idx: w.run(q, cache), reps, sets)

    row["plan_us"] = host_us(lambda: w.plan(indptr, idx, last, HQ, HKV, HEAD_DIM, PAGE_SIZE, q_data_type=DTYPE),
                             PLAN_REPS)
    p = w.plan_info
    row.update(num_work=int(p.num_work), num_partials=int(p.num_partials), chunk_tokens=int(p.chunk_tokens),
               tile_rows=int(p.tile_rows), tile="lean" if p.lean_decode else "wide")
    if err > ATOL:
        row["status"] = f"wrong: max abs error {err:.3g} vs float32 reference (tolerance {ATOL})"


def sdpa_call(q, k, v, gqa):
    if gqa:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def try_peer(backend, sets, gqa, reps):
    """(us, None) or (None, reason)."""
    return sdpa_peer(backend, lambda: sdpa_call(*sets[0], gqa),
                     lambda: time_us(lambda q, k, v: sdpa_call(q, k, v, gqa), reps, sets))


def dense_sets(batch, kv_len, heads, nsets):
    return [(torch.randn(batch, HQ, 1, HEAD_DIM, dtype=DTYPE, device="cuda"),
             torch.empty(batch, heads, kv_len, HEAD_DIM, dtype=DTYPE, device="cuda").normal_(),
             torch.empty(batch, heads, kv_len, HEAD_DIM, dtype=DTYPE, device="cuda").normal_())
            for _ in range(nsets)]


def bench_peers(batch, kv_len, nsets, reps, row):
    """cuDNN and flash SDPA on dense K/V: with 8 KV heads (enable_gqa), else expanded to 32 heads."""
    try:
        from torch.nn.attention import SDPBackend
    except ImportError as e:
        for name in ("cudnn", "flash"):
            row[f"{name}_note"] = f"n/a: torch.nn.attention unavailable ({e})"
        return
    pending = {}
    for name, backend in (("cudnn", getattr(SDPBackend, "CUDNN_ATTENTION", None)),
                          ("flash", SDPBackend.FLASH_ATTENTION)):
        row[f"{name}_expanded"] = False
        if backend is None:
            row[f"{name}_note"] = "n/a: this torch has no SDPBackend.CUDNN_ATTENTION"
        else:
            pending[name] = backend
    gqa_refusal = {}
    for gqa, heads in ((True, HKV), (False, HQ)):
        if not pending:
            break
        need = nsets * row["kv_bytes"] * heads // HKV
        free = torch.cuda.mem_get_info()[0]
        if need > 0.85 * free:
            for name in pending:
                why = f"dense K/V with {heads} heads needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
                row[f"{name}_note"] = f"n/a: GQA refused ({gqa_refusal[name]}); {why}" if name in gqa_refusal \
                    else f"n/a: {why}"
            break
        sets = None
        try:
            sets = dense_sets(batch, kv_len, heads, nsets)
            for name in list(pending):
                us, why = try_peer(pending[name], sets, gqa, reps)
                if us is not None:
                    row[f"{name}_us"] = us
                    if not gqa:
                        row[f"{name}_expanded"] = True
                        row[f"{name}_note"] = (f"K/V expanded to {HQ} heads ({HQ // HKV}x the bytes read), "
                                               f"GQA refused ({gqa_refusal[name]})")
                    del pending[name]
                elif gqa:
                    gqa_refusal[name] = why
                else:
                    row[f"{name}_note"] = f"n/a: GQA refused ({gqa_refusal[name]}); expanded K/V refused ({why})"
        except torch.cuda.OutOfMemoryError as e:
            for name in pending:
                row[f"{name}_note"] = f"n/a: out of memory for dense K/V with {heads} heads ({short(e, 120)})"
            pending = {}
        finally:
            del sets
            free_memory()


def bench_config(batch, kv_len, reps, copy_bw, spec_bw):
    kv_bytes = batch * kv_len * HKV * HEAD_DIM * 2 * DTYPE.itemsize
    row = {"batch": batch, "kv_len": kv_len, "kv_bytes": kv_bytes, "status": "ok",
           "floor_copy_us": kv_bytes / copy_bw / 1e6, "floor_spec_us": kv_bytes / spec_bw / 1e6 if spec_bw else None}
    if kv_bytes > KV_LIMIT_BYTES:
        row["status"] = f"skipped: KV cache {kv_bytes / 1e9:.1f} GB > {KV_LIMIT_BYTES / 1e9:.0f} GB"
        return row
    nsets = num_sets(kv_bytes)
    row["input_sets"] = nsets
    free = torch.cuda.mem_get_info()[0]
    if nsets * kv_bytes > 0.85 * free:
        row["status"] = f"skipped: KV cache {kv_bytes / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        return row
    try:
        bench_kvinfer(batch, kv_len, nsets, reps, row)
    except NotImplementedError as e:
        row["status"] = f"not built: {short(e)}"
    except Exception as e:
        row["status"] = f"error: {type(e).__name__}: {short(e)}"
    free_memory()
    bench_peers(batch, kv_len, nsets, reps, row)
    us = row.get("kvinfer_us")
    if us:
        row["kvinfer_tbps"] = kv_bytes / us / 1e6
        row["pct_copy_bw"] = 100 * row["kvinfer_tbps"] / copy_bw
    for name in ("cudnn", "flash"):
        peer = row.get(f"{name}_us")
        if peer:
            row[f"{name}_tbps"] = kv_bytes / peer / 1e6  # the logical (8-head) bytes, expanded or not
            if us:
                row[f"ratio_{name}"] = peer / us
            if row.get("kvinfer_nopdl_us"):
                row[f"ratio_{name}_nopdl"] = peer / row["kvinfer_nopdl_us"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed batches per case (median taken)")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK} (batch, KV length)")
    parser.add_argument("--shapes", metavar="BxL,...", help="only these (batch x KV length), e.g. 16x2048,1x32768")
    parser.add_argument("--json", metavar="PATH", help="also write results here")
    args = parser.parse_args()
    if args.shapes:
        try:
            shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
        except ValueError:
            parser.error(f"--shapes: expected BATCHxKVLEN[,...], got {args.shapes!r}")

    if skip_without_gpu(args.json, "decode"):
        return 0

    calibrate_sleep()
    gpu = torch.cuda.get_device_name()
    copy_bw = copy_gbps(args.reps) / 1e3
    spec_bw = lookup(SPEC_HBM_TBPS, gpu)
    configs = shapes if args.shapes else QUICK if args.quick else [(b, n) for b in BATCHES for n in KV_LENS]
    t_start = time.perf_counter()
    rows = [bench_config(b, n, args.reps, copy_bw, spec_bw) for b, n in configs]
    wall = time.perf_counter() - t_start

    print(f"GPU: {gpu}   copy bandwidth (1 GiB dst.copy_(src), read + write): {copy_bw:.2f} TB/s   "
          f"spec HBM bandwidth: {fmt(spec_bw, '.2f')} TB/s\n")
    print(f"Batch decode, paged cache (page {PAGE_SIZE}, NHD, page ids randomly permuted), {HQ} query / {HKV} KV "
          f"heads, head dim {HEAD_DIM}, bf16, all requests the same KV length. KV bytes = batch x KV len x {HKV} "
          f"heads x {HEAD_DIM} x 2 (K, V) x 2 B; TB/s = KV bytes / time (q and output, under 0.1%, not counted). "
          f"Time: median of {args.reps} samples of {BATCH} back-to-back calls (CUDA events, {WARMUP} warmup calls; "
          "small caches rotate several copies so reads come from HBM, not L2). Floors: KV bytes / copy bandwidth "
          "and KV bytes / spec HBM bandwidth. plan(): host latency of the wrapper's plan() (median of "
          f"{PLAN_REPS}). kvinfer runs with programmatic dependent launch (the default, enable_pdl=True: "
          "a call's kernel starts during the previous call's tail); 'no PDL' is the same with enable_pdl=False. "
          "Peers: torch SDPA on dense contiguous K/V [batch, {HKV}, KV len, {HEAD_DIM}] "
          "(enable_gqa=True); ratio = peer time / kvinfer time (> 1: kvinfer faster).\n")
    print("| batch | KV len | KV GB | kvinfer µs | kvinfer TB/s | % of copy BW | floor µs (copy BW) | floor µs (spec BW) "
          "| plan() µs | work / partials / chunk / tile | cuDNN µs | cuDNN TB/s | flash µs | flash TB/s "
          "| kvinfer/cuDNN | kvinfer/flash | no-PDL µs | no-PDL kvinfer/cuDNN |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for r in rows:
        label = f"batch {r['batch']} x {r['kv_len']}"
        if r["status"] != "ok":
            notes.append((label, f"kvinfer {r['status']}"))
        plan = (f"{r['num_work']} / {r['num_partials']} / {r['chunk_tokens']} / {r.get('tile', r['tile_rows'])}"
                if "num_work" in r else "n/a")
        peers = []
        for name in ("cudnn", "flash"):
            mark = "*" if r.get(f"{name}_expanded") else ""
            peers += [fmt(r.get(f"{name}_us"), ".1f") + mark, fmt(r.get(f"{name}_tbps"), ".2f") + mark]
            if r.get(f"{name}_note"):
                notes.append((label, f"{'cuDNN' if name == 'cudnn' else 'flash'} {r[name + '_note']}"))
        kv = fmt(r.get("kvinfer_us"), ".1f") if r["status"] == "ok" else r["status"].split(":")[0]
        print(f"| {r['batch']} | {r['kv_len']} | {r['kv_bytes'] / 1e9:.3f} | {kv} | {fmt(r.get('kvinfer_tbps'), '.2f')} "
              f"| {fmt(r.get('pct_copy_bw'), '.1f')} | {r['floor_copy_us']:.1f} | {fmt(r['floor_spec_us'], '.1f')} "
              f"| {fmt(r.get('plan_us'), '.1f')} | {plan} | {' | '.join(peers)} "
              f"| {fmt(r.get('ratio_cudnn'), '.2f')} | {fmt(r.get('ratio_flash'), '.2f')} "
              f"| {fmt(r.get('kvinfer_nopdl_us'), '.1f')} | {fmt(r.get('ratio_cudnn_nopdl'), '.2f')} |")
    ok = [r for r in rows if r.get("pct_copy_bw") is not None]
    if ok:
        lo, hi = min(ok, key=lambda r: r["pct_copy_bw"]), max(ok, key=lambda r: r["pct_copy_bw"])
        print(f"\nkvinfer reaches {lo['pct_copy_bw']:.1f}% (batch {lo['batch']} x {lo['kv_len']}) to "
              f"{hi['pct_copy_bw']:.1f}% (batch {hi['batch']} x {hi['kv_len']}) of copy bandwidth.")
    errs = [r["max_abs_err"] for r in rows if "max_abs_err" in r]
    if errs:
        print(f"Max abs error vs a float32 reference (first and last request of each config): {max(errs):.2e}.")
    if any(r.get("cudnn_expanded") or r.get("flash_expanded") for r in rows):
        print(f"\n\\* the peer read K/V expanded to {HQ} heads ({HQ // HKV}x the bytes, GQA refused); its TB/s "
              f"counts the same {HKV}-head bytes as kvinfer's, so TB/s and ratio compare times.")
    print_notes(notes)
    print(f"\nwall time {wall:.0f} s")

    if args.json:
        result = {
            "gpu": gpu, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "kvinfer": kvinfer.__version__, "reps": args.reps, "warmup": WARMUP,
            "batch": BATCH, "copy_tbps": copy_bw, "spec_hbm_tbps": spec_bw, "page_size": PAGE_SIZE,
            "num_qo_heads": HQ, "num_kv_heads": HKV, "head_dim": HEAD_DIM, "dtype": "bf16", "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if any(r["status"].startswith(("error", "wrong")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
