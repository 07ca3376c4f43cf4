"""Host latency of the batch planner (kvinfer.plan.plan_batch, what a decode plan() runs before its upload).

    python benchmarks/bench_plan.py [--json PATH]
Medians over many calls from Python (page size 16, 32 query / 8 KV heads, head dim 128).
"""
import argparse
import datetime
import json
import platform
import statistics
import time

import numpy as np

from kvinfer.plan import plan_batch, plan_decode


def page_table(lens, page_size):
    pages = (lens + page_size - 1) // page_size
    indptr = np.concatenate([[0], np.cumsum(pages)]).astype(np.int32)
    return indptr, np.where(pages > 0, lens - (pages - 1) * page_size, 0).astype(np.int32)


def median_us(fn, reps=2000, inner=10):
    for _ in range(200):
        fn()
    samples = []
    for _ in range(reps // inner):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 16, 64, 256, 1024):
        lens = rng.integers(2048, 32769, batch)
        indptr, last = page_table(lens, 16)
        us = median_us(lambda: plan_batch(None, indptr, last, 32, 8, 128, 16, tile_rows=16, target_ctas=264))
        p = plan_decode(indptr, last, 32, 8, 128, 16, target_ctas=264)
        rows.append({"batch": batch, "us": us, "work_items": int(len(p["work_request"])),
                     "chunk_tokens": int(p["chunk_tokens"])})
    print(f"CPU: {platform.processor() or platform.machine()}  (decode plan, page 16, 32/8 heads, D 128, "
          "KV lengths 2048..32768)\n")
    print("| batch | plan() us (median) | work items | chunk tokens |\n|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['us']:.1f} | {r['work_items']} | {r['chunk_tokens']} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
