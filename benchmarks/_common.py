"""Helpers shared by the attention benchmarks: event timing with a spin kernel ahead of each sample,
device-name lookups, memory release, note printing and the no-GPU skip."""
import json
import statistics
import time
import warnings

import torch

WARMUP = 3
BATCH = 10  # calls between two events
_cycles_per_us = 0.0


def calibrate_sleep():
    """GPU clock cycles per microsecond of torch.cuda._sleep (0 when it is not available)."""
    global _cycles_per_us
    try:
        torch.cuda._sleep(1000)
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.cuda._sleep(2_000_000)
        e.record()
        torch.cuda.synchronize()
        _cycles_per_us = 2e6 / (s.elapsed_time(e) * 1e3)
    except Exception:  # private API: time without it
        _cycles_per_us = 0.0


def host_us(fn, reps, warmup=5):
    """Median host time of one fn() call in microseconds (e.g. plan(), which must not wait for the GPU);
    the device is synchronised before and after, not between calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    return statistics.median(samples)


def time_us(fn, reps, sets=((),)):
    """Median per-call device time: each sample times BATCH back-to-back calls with CUDA events
    (consecutive calls rotate argument sets so small problems are not served from L2). A spin kernel
    queued before each sample keeps the GPU busy while the host enqueues the BATCH calls, so calls
    shorter than their host launch time are timed on the device, not at the host's pace."""
    for i in range(WARMUP):
        fn(*sets[i % len(sets)])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(BATCH):
        fn(*sets[k % len(sets)])
    host_us = (time.perf_counter() - t0) * 1e6
    torch.cuda.synchronize()
    cycles = int(_cycles_per_us * min(2 * host_us + 50, 50_000))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        if cycles:
            torch.cuda._sleep(cycles)
        starts[i].record()
        for k in range(BATCH):
            fn(*sets[(i * BATCH + k) % len(sets)])
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends)) * 1e3 / BATCH


def copy_gbps(reps):
    """Device-to-device copy bandwidth of 1 GiB (read + write bytes), GB/s: the bandwidth ceiling."""
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    us = time_us(lambda: dst.copy_(src), reps)
    return 2 * src.numel() / us / 1e3


def lookup(table, name):
    """The value of the first (key, value) of `table` whose key is in the device name, else None."""
    for key, value in table:
        if key in name:
            return value
    return None


def free_memory():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def short(e, n=240):
    msg = " ".join(str(e).split())
    return (msg[:n] + "...") if len(msg) > n else msg


def sdpa_peer(backend, call, timed):
    """(us, None) or (None, reason) for a torch SDPA backend: one checked call() first (torch explains a
    refusal in warnings), then timed() under the same backend."""
    from torch.nn.attention import sdpa_kernel
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with sdpa_kernel(backend):
                call()
        torch.cuda.synchronize()
    except Exception as e:
        why = [short(w.message, 160) for w in caught if "not used because" in str(w.message) or "cuDNN" in
               str(w.message) or "Flash" in str(w.message)]
        return None, short(f"{type(e).__name__}: {e}" + ("; " + "; ".join(why[:2]) if why else ""), 300)
    try:
        with sdpa_kernel(backend):
            return timed(), None
    except Exception as e:
        return None, short(f"{type(e).__name__}: {e}")


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def print_notes(notes):
    """Notes as (config label, text) pairs; configs with the same text share one line."""
    grouped = {}
    for label, text in notes:
        grouped.setdefault(text, []).append(label)
    if grouped:
        print("\nNotes:\n" + "\n".join(f"- {text} [{'; '.join(labels)}]" for text, labels in grouped.items()))


def skip_without_gpu(json_path, what):
    """True (after saying so, and writing an empty result) when there is no CUDA device."""
    import kvinfer
    if torch.cuda.is_available() and kvinfer.cuda_available():
        return False
    msg = f"no CUDA device (torch.cuda.is_available() is False or kvinfer sees no GPU): {what} benchmark skipped"
    print(msg)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"skipped": msg, "rows": []}, f, indent=2)
    return True
