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
    sub(KERNEL, "    cp_async_wait<0>();\n",
        "    cp_async_wait<0>();\n    if (!traced) " + clk.format(i=5, extra=": ") + "\n")
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


def dtrace():
    # Per-CTA timeline of a decode launch (split plans), written by thread 0 into p.o as uint32 words
    # [16 * cta ...]: smid, merged flag, globaltimer at entry and end (lo, hi each), then clock64 deltas
    # from entry to: after the PDL wait, first K/V tile landed, KV loop done, epilogue done (partials
    # written), end (after the split merge, if any); the CTA's first work item, 1; then after the poison
    # barrier, after the KV warps' states are in shared memory, after the split-group arrival. The split merge's output
    # stores are dropped, so p.o holds only the trace (results are wrong).
    ck = 'asm volatile("mov.u64 %0, %%clock64;" : "=l"(tc[{i}]) :: "memory");'
    sub(KERNEL, "  const int tid = threadIdx.x, lane = tid & 31;",
        "  unsigned long long tc[9] = {}, tg0, tg5;\n"
        '  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tg0) :: "memory");\n  ' + ck.format(i=0) +
        "\n  bool traced = false, merged = false;\n  const int tid = threadIdx.x, lane = tid & 31;")
    sub(KERNEL, "  pdl_wait();\n", "  pdl_wait();\n  " + ck.format(i=1) + "\n")
    sub(KERNEL, "      cp_async_wait<kStages - 2>();\n      __syncthreads();\n",
        "      cp_async_wait<kStages - 2>();\n      __syncthreads();\n      if (!traced && t == 0) " + ck.format(i=2) + "\n")
    sub(KERNEL, "    cp_async_wait<0>();\n", "    cp_async_wait<0>();\n    if (!traced) " + ck.format(i=3) + "\n")
    sub(KERNEL, "      if (job.merge >= 0 && p.merge_counters && split_group_last(p, job, kvh))\n",
        "      if (!traced) " + ck.format(i=4) + "\n      const bool lastc = job.merge >= 0 && p.merge_counters && split_group_last(p, job, kvh);\n"
        "      if (!traced) " + ck.format(i=8) + "\n      if (lastc && (merged = true))\n")
    sub(KERNEL, "    const float poison = (page_size > 0 && __syncthreads_or(bad_page)) ? NAN : 0.f;\n",
        "    const float poison = (page_size > 0 && __syncthreads_or(bad_page)) ? NAN : 0.f;\n    if (!traced) " + ck.format(i=6) + "\n")
    sub(KERNEL, "      __syncthreads();\n      // kTPR threads per row",
        "      __syncthreads();\n      if (!traced) " + ck.format(i=7) + "\n      // kTPR threads per row")
    s = open(KERNEL).read()
    i = s.rindex("}  // namespace kvinfer::detail::attn")
    j = s.rindex("  }\n}\n", 0, i)
    s = s[:j] + "    traced = true;\n" + s[j:j + 4] + """  asm volatile("mov.u64 %0, %%clock64;" : "=l"(tc[5]) :: "memory");
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(tg5) :: "memory");
  if (tid == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    uint32_t* tw = reinterpret_cast<uint32_t*>(p.o) + 16 * blockIdx.x;
    tw[0] = smid, tw[1] = merged;
    tw[2] = uint32_t(tg0), tw[3] = uint32_t(tg0 >> 32), tw[4] = uint32_t(tg5), tw[5] = uint32_t(tg5 >> 32);
    for (int e = 1; e < 6; ++e) tw[5 + e] = uint32_t(tc[e] - tc[0]);
    tw[11] = unsigned(work0), tw[12] = 1;
    for (int e = 6; e < 9; ++e) tw[7 + e] = uint32_t(tc[e] - tc[0]);
  }
""" + s[j + 4:]
    open(KERNEL, "w").write(s)
    sub("cuda/sm80/split_merge.cuh", "    if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {\n      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);",
        "    if (false) {\n      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);")
    sub("cuda/sm80/split_merge.cuh", "      for (int e = 0; e < 4; ++e) *reinterpret_cast<uint32_t*>(dst + 2 * e) = w[e];\n    }\n    if (p.lse && ch == 0)",
        "      for (int e = 0; e < 4; ++e) if (false) *reinterpret_cast<uint32_t*>(dst + 2 * e) = w[e];\n    }\n    if (false && p.lse && ch == 0)")

for v in sys.argv[1].split("+"):
    if v != "base":
        globals()[v]()
print("patched:", sys.argv[1])
