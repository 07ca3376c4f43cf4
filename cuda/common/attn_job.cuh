// A CTA job of the attention kernels (sm80 and sm90): one work item of the plan (batch) or of the
// implicit single-request list, with its request's metadata resolved.
#pragma once
#include "launch.h"

namespace kvinfer::detail::attn {

struct Job {
  int request, qo_tile, kv_begin, kv_end, partial, splits, chunk, merge;
  int qo_begin, qo_len, kv_len, kv_base;  // kv_base: first page (paged) or token (ragged)
};

// Programmatic dependent launch (AttnParams::pdl). A CTA lets the stream's next kernel launch (its
// CTAs take slots as this grid's free up), and waits for the previous kernel to complete before it
// reads anything that kernel may have written: everything but the kernel arguments and the plan's work
// list (uploaded before the previous kernel ran). No-ops in a normal launch and before sm90.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Job b of num_items x hkv (work item, kv head) jobs taken in sections of hs kv heads (hs <= 0 or >= hkv:
// one section): every work item of a section before the next, heads fastest within it. hs = hkv runs
// the heads of an item side by side, hs = 1 a head's items. The Hopper kernel's order (job_of); the
// FA2-class kernel takes the same order for hs a power of two dividing hkv (its own shift form). The
// host's job_head_section (cpp/src/job_schedule.cpp) simulates this order: keep them in step.
__device__ __forceinline__ void section_job(int hs, int hkv, int num_items, unsigned b, int& item, int& kvh) {
  hs = hs > 0 && hs < hkv ? hs : hkv;
  const unsigned per_sec = unsigned(hs) * unsigned(num_items), sec = b / per_sec;
  const int heads = min(hs, hkv - int(sec) * hs);  // heads of this section (the last may have fewer)
  const unsigned rem = b - sec * per_sec;
  item = int(rem / unsigned(heads)), kvh = int(sec) * hs + int(rem % unsigned(heads));
}

// Work item w of a plan: three 16-byte loads (the request's metadata is in the item).
__device__ __forceinline__ void load_item(const AttnParams& p, int w, Job& j) {
  const int4* src = reinterpret_cast<const int4*>(p.work + w);
  const int4 a = __ldg(src), b = __ldg(src + 1), c = __ldg(src + 2);
  j.request = a.x, j.qo_tile = a.y, j.kv_begin = a.z, j.kv_end = a.w;
  j.partial = b.x, j.splits = b.y, j.chunk = b.z, j.merge = b.w;
  j.qo_begin = c.x, j.qo_len = c.y, j.kv_len = c.z, j.kv_base = c.w;
}

// Packed row n -> query token n / group (AttnParams::group_mul); the head within the group is n - token * group.
__device__ __forceinline__ int div_group(const AttnParams& p, int n) {
  return int((__umulhi(unsigned(n), p.group_mul) + unsigned(n)) >> p.group_shr);
}

// Keys query qi may see, as one range [lo, hi] (the job's KV bounds, causal, window; none past the
// request's queries), taken relative to key `first`: the mask then compares constant key offsets.
__device__ __forceinline__ void key_range(const AttnParams& p, int qi, int qo_len, int offset, int kv_lo, int kv_hi,
                                          int first, int& lo, int& hi) {
  lo = kv_lo, hi = kv_hi - 1;
  if (p.causal) hi = min(hi, qi + offset);
  if (p.window_left >= 0) lo = max(lo, qi + offset - p.window_left);
  if (qi >= qo_len) hi = lo - 1;
  lo -= first, hi -= first;
}

__device__ __forceinline__ void load_job(const AttnParams& p, int w, Job& j) {
  if (p.work) {
    load_item(p, w, j);
  } else {
    const int chunk = w / p.implicit_qo_tiles;
    j.request = 0, j.qo_tile = w - chunk * p.implicit_qo_tiles;
    // Causal: the last query tiles see the most keys; start them first so they do not form the tail.
    if (p.causal) j.qo_tile = p.implicit_qo_tiles - 1 - j.qo_tile;
    j.qo_begin = 0, j.qo_len = p.single_qo_len, j.kv_len = p.single_kv_len, j.kv_base = 0;
    j.kv_begin = chunk * p.implicit_chunk;
    j.kv_end = min(j.kv_len, j.kv_begin + p.implicit_chunk);
    j.splits = p.implicit_splits, j.chunk = chunk, j.merge = -1;
    j.partial = p.implicit_splits > 1 ? chunk : -1;
  }
}

}  // namespace kvinfer::detail::attn
