"""Patch the FA2-class kernel / planner of this tree for one experiment variant (device experiments
only; run.sh restores the files after each variant). Usage: python patch.py VARIANT[+VARIANT...]"""
import re
import sys

KERNEL = "cuda/sm80/attention_kernel.cuh"
PLANNER = "cpp/src/planner.cpp"


def sub(path, old, new, count=1):
    s = open(path).read()
    if s.count(old) < 1:
        sys.exit(f"patch failed in {path}: {old[:60]!r}")
    s = s.replace(old, new, count)
    open(path, "w").write(s)


def d64kv128():
    sub(KERNEL, "static constexpr int kKV = kLean ? 32 : 64;",
        "static constexpr int kKV = kLean ? 32 : (!kDecode && D == 64) ? 128 : 64;")


def trace():
    # Per-CTA events of the first job into p.lse (the caller passes an lse buffer and ignores its values):
    # words [16 * cta ...]: smid, globaltimer at entry / end (lo, hi), then clock64 deltas from entry to:
    # job fields loaded, Q copies issued, K/V prologue issued, first tile landed, KV loop done, end; item.
    clk = 'asm volatile("mov.u64 %0, %%clock64;" : "=l"(tc[{i}]) {extra}: "memory");'
    sub(KERNEL, "  const int tid = threadIdx.x, lane = tid & 31;",
        """  unsigned long long tc[7] = {}, tg0, tg4;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tg0));
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(tc[0]));
  bool traced = false;
  const int tid = threadIdx.x, lane = tid & 31;""")
    sub(KERNEL, "    const int packed_rows = job.qo_len * group;",
        "    const int packed_rows = job.qo_len * group;\n    if (!traced) " + clk.format(i=1, extra=': "r"(packed_rows), "r"(job.kv_len) '))
    sub(KERNEL, "    cp_async_commit();\n\n    // Page ids of the loader",
        "    cp_async_commit();\n    if (!traced) " + clk.format(i=2, extra=": ") + "\n\n    // Page ids of the loader")
    sub(KERNEL, "    if (kPrefetch && kStages - 1 < num_tiles) fetch_ids(kStages - 1);",
        "    if (kPrefetch && kStages - 1 < num_tiles) fetch_ids(kStages - 1);\n    if (!traced) " + clk.format(i=3, extra=": "))
    sub(KERNEL, "      cp_async_wait<kStages - 2>();\n      __syncthreads();",
        "      cp_async_wait<kStages - 2>();\n      __syncthreads();\n      if (!traced && t == 0) " + clk.format(i=4, extra=": "))
    sub(KERNEL, "    cp_async_wait<0>();\n\n    // ---- epilogue",
        "    cp_async_wait<0>();\n    if (!traced) " + clk.format(i=5, extra=": ") + "\n\n    // ---- epilogue")
    # No LSE rows: the buffer holds the trace.
    s = open(KERNEL).read()
    s = s.replace("if (lse_dst) *lse_dst", "if (false) *lse_dst").replace("if (lse_dst && tq == 0) *lse_dst", "if (false) *lse_dst")
    i = s.rindex("}  // namespace kvinfer::detail::attn")
    j = s.rindex("  }\n}\n", 0, i)
    s = s[:j] + """    if (!traced) {
      traced = true;
      __syncthreads();
      asm volatile("mov.u64 %0, %%clock64;" : "=l"(tc[6]) :: "memory");
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tg4) :: "memory");
      if (tid == 0 && p.lse) {
        unsigned smid;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
        unsigned* tw = reinterpret_cast<unsigned*>(p.lse) + 16 * size_t(blockIdx.x);
        tw[0] = smid, tw[1] = unsigned(tg0), tw[2] = unsigned(tg0 >> 32), tw[3] = unsigned(tg4), tw[4] = unsigned(tg4 >> 32);
        for (int e = 1; e < 7; ++e) tw[4 + e] = unsigned(tc[e] - tc[0]);
        tw[15] = unsigned(w);
      }
    }
""" + s[j:]
    open(KERNEL, "w").write(s)


def unroll1():
    # Q loader and output copy as runtime loops (compact code: fetched once per job).
    sub(KERNEL, "#pragma unroll\n    for (int i = 0; i < kRows / kQStep; ++i) {", "#pragma unroll 1\n    for (int i = 0; i < kRows / kQStep; ++i) {")
    sub(KERNEL, "#pragma unroll\n      for (int i = 0; i < kWarpRows * C::kChunks / 32; ++i) {",
        "#pragma unroll 1\n      for (int i = 0; i < kWarpRows * C::kChunks / 32; ++i) {")


def gsort():
    # Causal FA2 prefill plans: work items in one global heaviest-first order (KV tiles each item sees).
    sub(PLANNER, "  p.merge_groups = next_group;",
        """  if (opt.causal && !decode_tile && !fa3) {
    auto cost = [&](const PlanWorkItem& it) {
      const int64_t qo_len = it.qo_len, last = std::min<int64_t>(qo_len, (int64_t(it.qo_tile) + 1) * p.tile_rows / group);
      const int64_t hi = std::min<int64_t>(it.kv_end, last + it.kv_len - qo_len);
      return hi - it.kv_begin;
    };
    std::stable_sort(p.work.begin(), p.work.end(), [&](const PlanWorkItem& a, const PlanWorkItem& b) { return cost(a) > cost(b); });
  }
  p.merge_groups = next_group;""")


for v in sys.argv[1].split("+"):
    if v != "base":
        globals()[v]()
print("patched:", sys.argv[1])
