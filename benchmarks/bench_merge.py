"""Memory bandwidth of kvinfer's merge kernels, next to a device-to-device copy.

The merges are purely bandwidth-bound, so the figure of merit is GB/s as a
share of what dst.copy_(src) reaches on the same GPU. A torch-ops merge is
timed as a peer.

    python benchmarks/bench_merge.py [--reps 100] [--json results.json]
"""
import argparse
import datetime
import json
import time

import torch

import kvinfer
from _common import BATCH, WARMUP, calibrate_sleep, copy_gbps, skip_without_gpu, time_us

SHAPES = [(8192, 32, 128), (16384, 32, 128), (65536, 8, 128), (4096, 64, 256), (32768, 16, 64)]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
NUM_STATES = 4
L2_BYTES = 50 * 2**20  # H100


def host_us_per_call(n=2000):
    """Host time of one kvinfer.merge_state call on a tiny problem (Python + DLPack + launch)."""
    v = torch.randn(1, 8, 128, device="cuda", dtype=torch.float16)
    s = torch.randn(1, 8, device="cuda")
    out, lse = torch.empty_like(v), torch.empty_like(s)
    for _ in range(100):
        kv_merge_state(v, s, v, s, out, lse)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        kv_merge_state(v, s, v, s, out, lse)
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6


def kv_merge_state(v_a, s_a, v_b, s_b, out, lse_out):
    kvinfer.merge_state(v_a, s_a, v_b, s_b, out=out, lse_out=lse_out)


def kv_merge_states(v, s, out, lse_out):
    kvinfer.merge_states(v, s, out=out, lse_out=lse_out)


# Peers written with plain torch ops (no -inf handling: the inputs have none).
def torch_merge_state(v_a, s_a, v_b, s_b, out, lse_out):
    m = torch.maximum(s_a, s_b)
    w_a, w_b = torch.exp2(s_a - m), torch.exp2(s_b - m)
    total = w_a + w_b
    torch.add(m, torch.log2(total), out=lse_out)
    out.copy_(v_a * (w_a / total).unsqueeze(-1) + v_b * (w_b / total).unsqueeze(-1))


def torch_merge_states(v, s, out, lse_out):
    m = s.amax(dim=1, keepdim=True)
    w = torch.exp2(s - m)
    total = w.sum(dim=1)
    torch.add(m.squeeze(1), torch.log2(total), out=lse_out)
    out.copy_((v * w.unsqueeze(-1)).sum(dim=1) / total.unsqueeze(-1))


def make_sets(num_states, seq, h, d, dtype):
    """Input/output tensor sets for one case and the bytes one call moves.

    num_states 0 means merge_state's two separate inputs."""
    n = num_states or 2
    moved = (n + 1) * seq * h * (d * dtype.itemsize + 4)  # n states read, one written
    count = 4 if moved < 4 * L2_BYTES else 1
    sets = []
    for _ in range(count):
        if num_states:
            ins = (torch.randn(seq, n, h, d, device="cuda", dtype=dtype),
                   torch.randn(seq, n, h, device="cuda") * 4)
        else:
            ins = (torch.randn(seq, h, d, device="cuda", dtype=dtype), torch.randn(seq, h, device="cuda") * 4,
                   torch.randn(seq, h, d, device="cuda", dtype=dtype), torch.randn(seq, h, device="cuda") * 4)
        outs = (torch.empty(seq, h, d, device="cuda", dtype=dtype), torch.empty(seq, h, device="cuda"))
        sets.append(ins + outs)
    return sets, moved


CASES = [  # (op name, num_states, function)
    ("kvinfer.merge_state", 0, kv_merge_state),
    (f"kvinfer.merge_states({NUM_STATES})", NUM_STATES, kv_merge_states),
    ("torch merge_state", 0, torch_merge_state),
    (f"torch merge_states({NUM_STATES})", NUM_STATES, torch_merge_states),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="timed batches per case (median taken)")
    parser.add_argument("--json", metavar="PATH", help="also write results here")
    args = parser.parse_args()
    if skip_without_gpu(args.json, "merge"):
        return 0
    calibrate_sleep()

    copy_bw = copy_gbps(args.reps)
    host_us = host_us_per_call()
    rows = []
    for dtype_name, dtype in DTYPES.items():
        for shape in SHAPES:
            for op, num_states, fn in CASES:
                sets, moved = make_sets(num_states, *shape, dtype)
                us = time_us(fn, args.reps, sets)
                del sets
                rows.append({
                    "op": op, "dtype": dtype_name, "shape": list(shape),
                    "out_elements": shape[0] * shape[1] * shape[2], "bytes": moved,
                    "time_us": us, "gbps": moved / us / 1e3, "pct_copy_bw": 100 * moved / us / 1e3 / copy_bw,
                })

    print(f"GPU: {torch.cuda.get_device_name()}   copy bandwidth: {copy_bw:.0f} GB/s   "
          f"host time per kvinfer.merge_state call: {host_us:.1f} us\n")
    print("| op | dtype | shape (seq, H, D) | out elements | time us (median) | GB/s | % of copy BW |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['op']} | {r['dtype']} | {tuple(r['shape'])} | {r['out_elements']} | "
              f"{r['time_us']:.1f} | {r['gbps']:.0f} | {r['pct_copy_bw']:.1f} |")

    if args.json:
        result = {
            "gpu": torch.cuda.get_device_name(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "reps": args.reps, "warmup": WARMUP,
            "copy": {"bytes": 2 * 2**30, "gbps": copy_bw}, "host_us_per_call": host_us, "batch": BATCH,
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
