// In-kernel merge of split-KV partials (FA2 decode tile, plans): every CTA of a split group (one
// request's query tile and KV head, cut into `splits` KV chunks) writes its partial rows, then
// arrives on the group's counter; the last to arrive merges the group's rows into the output. This
// replaces the merge kernel and its launch gap (2.6-3.4 us + ~1 us on H200 at 16 x 2048 decode).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/attn_job.cuh"
#include "common/mma.cuh"
#include "launch.h"

namespace kvinfer::detail::attn {

using namespace kvinfer::cuda;

// Arrival: true in every thread of the CTA that arrived last (the counter is back to zero then).
// The caller's partial stores precede the call in every thread.
template <int kNT>
__device__ __forceinline__ bool split_group_last(const AttnParams& p, const Job& job, int kvh) {
  __threadfence();  // this thread's partial rows are visible GPU-wide before the CTA arrives
  __syncthreads();
  int last = 0;
  if (threadIdx.x == 0) {
    int* ctr = p.merge_counters + int64_t(job.merge) * p.num_kv_heads + kvh;
    last = atomicAdd(ctr, 1) == job.splits - 1;
    if (last) {
      atomicExch(ctr, 0);  // zero at rest: the next launch (or graph replay) starts from it
      __threadfence();     // acquire side: the group's partial rows are read after the arrivals
    }
  }
  return __syncthreads_or(last);
}

// Merges the partial rows of packed rows [row0, row0 + rows) of `job` into o / lse. Threads take
// (row, 16-byte chunk) pairs; when there are fewer pairs than threads, sub (a power of two) threads
// share a pair, each folding every sub-th state, then combine by shuffles. Partials are read
// through L2 (ld.global.cg): other SMs wrote them during this launch.
template <int D, typename T, int kNT>
__device__ __forceinline__ void merge_split_group(const AttnParams& p, const Job& job, int kvh, int row0, int rows) {
  constexpr int kChunks = D / 8;
  const int pairs = rows * kChunks;
  int sub = 1;
  while (sub < 8 && pairs * sub * 2 <= kNT) sub *= 2;
  const int per_round = kNT / sub;  // pairs per round
  const int group = p.group, H = p.num_qo_heads, splits = job.splits;
  const int tid = threadIdx.x, s = tid % sub;
  const int64_t first = int64_t(job.partial) - job.chunk;  // the request's first partial row
  for (int round = 0; round * per_round < pairs; ++round) {  // uniform trip count: shuffles below
    const int pi = round * per_round + tid / sub;
    const bool valid = pi < pairs;
    const int r = valid ? pi / kChunks : 0, chunk = pi % kChunks;
    const int pr = row0 + r, qi = pr / group, head = kvh * group + pr % group;
    const int64_t prow0 = first + int64_t(qi) * splits;  // state c is partial row prow0 + c
    const float* lse_src = p.partial_lse + prow0 * H + head;
    const T* o_src = static_cast<const T*>(p.partial_o) + (prow0 * H + head) * D + chunk * 8;
    float m = -INFINITY, l = 0.f, acc[8] = {};
    constexpr int kU = 4;  // states in flight per thread
    for (int c0 = s; c0 < splits; c0 += kU * sub) {
      float ls[kU];
      uint4 x[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int c = c0 + u * sub;
        const bool ok = valid && c < splits;
        ls[u] = ok ? __ldcg(lse_src + int64_t(c) * H) : -INFINITY;
        x[u] = ok ? __ldcg(reinterpret_cast<const uint4*>(o_src + int64_t(c) * H * D)) : make_uint4(0, 0, 0, 0);
      }
      float mx = m;
#pragma unroll
      for (int u = 0; u < kU; ++u) mx = fmaxf(mx, ls[u]);
      const float mu = mx == -INFINITY ? 0.f : mx;
      const float corr = fast_exp2(m - mu);
      l *= corr;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] *= corr;
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const float w = fast_exp2(ls[u] - mu);
        l += w;
        const uint32_t xw[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = unpack2<T>(xw[e]);
          acc[2 * e] = fmaf(w, f.x, acc[2 * e]), acc[2 * e + 1] = fmaf(w, f.y, acc[2 * e + 1]);
        }
      }
      m = mx;
    }
    // Combine the sub threads of a pair (adjacent lanes).
    for (int off = 1; off < sub; off <<= 1) {
      const float m2 = __shfl_xor_sync(0xffffffff, m, off), l2 = __shfl_xor_sync(0xffffffff, l, off);
      const float mx = fmaxf(m, m2), mu = mx == -INFINITY ? 0.f : mx;
      const float ca = fast_exp2(m - mu), cb = fast_exp2(m2 - mu);
      l = l * ca + l2 * cb;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] = acc[e] * ca + __shfl_xor_sync(0xffffffff, acc[e], off) * cb;
      m = mx;
    }
    if (!valid || s != 0) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    T* dst = static_cast<T*>(p.o) + int64_t(job.qo_begin + qi) * p.o_stride_n + int64_t(head) * p.o_stride_h + chunk * 8;
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) w[e] = pack2<T>(acc[2 * e] * inv, acc[2 * e + 1] * inv);
    if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) *reinterpret_cast<uint32_t*>(dst + 2 * e) = w[e];
    }
    if (p.lse && chunk == 0)
      p.lse[int64_t(job.qo_begin + qi) * p.lse_stride_n + int64_t(head) * p.lse_stride_h] =
          l > 0.f ? m + __log2f(l) : (l == 0.f ? -INFINITY : l);
  }
}

}  // namespace kvinfer::detail::attn
