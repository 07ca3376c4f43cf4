"""Where a decode plan() spends its host time: the wrapper's plan() against its pieces (C++ planner,
upload, stream lookup, backend resolution), 256 requests of KV 2048 and 32768 (more work items: split
requests), page 16, bf16, 32/8 heads, D 128. Medians of 2000 calls, microseconds. Run on the GPU
machine (the upload needs a device). --cprofile: also the Python profile of 2000 wrapper plan() calls
(functions by own time), to find the wrapper's share."""
import os
import sys

import numpy as np
import torch

import kvinfer
from kvinfer import _C
from kvinfer._arrays import Call
from kvinfer.attention import _launch_choice, _target_ctas

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from _common import host_us  # noqa: E402

B, PS, HQ, HKV, D = 256, 16, 32, 8, 128


def median_us(fn):
    return host_us(fn, 2000, warmup=100)


def profile(KV):
    ppr = KV // PS
    indptr = (np.arange(B + 1) * ppr).astype(np.int32)
    last = np.full(B, PS, np.int32)
    idx = torch.randperm(B * ppr, device="cuda").to(torch.int32)
    ws = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(ws)
    rows = {}
    rows["wrapper plan()"] = median_us(lambda: w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16))
    plan = w.plan_info
    tgt = _target_ctas(0, D, "bfloat16", True)
    c = Call(ws)
    rows["C++ plan_attention"] = median_us(lambda: _C.plan_attention(
        None, indptr, last, None, HQ, HKV, D, PS, False, 16, tgt, 256, True, 2, 0, 0, 0, 0, 256 << 20, "fa2", 0))
    rows["_C.plan_attention + upload_plan"] = median_us(lambda: _C.upload_plan(_C.plan_attention(
        None, indptr, last, None, HQ, HKV, D, PS, False, 16, tgt, 256, True, 2, 0, 0, 0, 0, 256 << 20, "fa2", 0),
        c.dest(w._int_ws, "ws", True), c.stream))
    rows["Call() (torch current stream)"] = median_us(lambda: Call(ws))
    iws = w._int_ws
    rows["upload_plan (incl. DLPack export)"] = median_us(lambda: _C.upload_plan(plan, c.dest(iws, "ws", True), c.stream))
    rows["DLPack export"] = median_us(lambda: c.dest(iws, "ws", True))
    rows["_launch_choice (cached backend, target CTAs)"] = median_us(
        lambda: _launch_choice("auto", D, torch.bfloat16, 0, False, True, None))
    print(f"plan() host time, {B} decode requests x KV {KV}, page {PS}, {torch.cuda.get_device_name()}: "
          f"{plan.num_work} work items, {plan.int_workspace_bytes} workspace bytes")
    print("| piece | median µs |\n|---|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |")


def cprofile(KV=32768):
    import cProfile
    import pstats
    ppr = KV // PS
    indptr = (np.arange(B + 1) * ppr).astype(np.int32)
    last = np.full(B, PS, np.int32)
    idx = torch.randperm(B * ppr, device="cuda").to(torch.int32)
    w = kvinfer.BatchDecodeWithPagedKVCacheWrapper(torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    call = lambda: w.plan(indptr, idx, last, HQ, HKV, D, PS, q_data_type=torch.bfloat16)  # noqa: E731
    for _ in range(100):
        call()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(2000):
        call()
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    for kv in (2048, 32768):
        profile(kv)
    if "--cprofile" in sys.argv:
        cprofile()
