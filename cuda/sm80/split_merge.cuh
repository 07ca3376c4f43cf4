// In-kernel merge of split-KV partials (FA2 decode tile, plans): every CTA of a split group (one
// request's query tile and KV head, cut into `splits` KV chunks) writes its partial rows, then
// arrives on the group's counter; the last to arrive merges the group's rows into the output. This
// replaces the merge kernel and its launch gap (2.6-3.4 us + ~1 us on H200 at 16 x 2048 decode).
// The partial rows are those the merge kernel would read (cpp/src/planner.cpp: merge_indptr).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/attn_job.cuh"
#include "common/mma.cuh"
#include "launch.h"

namespace kvinfer::detail::attn {

using namespace kvinfer::cuda;

// Arrival: true in every thread of the CTA that arrived last (the counter is back to zero then).
// The caller's partial stores precede the call in every thread. One thread arrives for the CTA (the
// barrier orders the CTA's stores before it; CUTLASS's grid barrier publishes a CTA's writes the same
// way), with one acquire-release atomic: it publishes this CTA's partial rows and, in the last CTA,
// orders the merge's reads after every arrival. (__threadfence() around a plain atomic is a
// sequentially consistent fence, MEMBAR.SC: a round trip of its own on each side.)
__device__ __forceinline__ bool split_group_last(const AttnParams& p, const Job& job, int kvh) {
  __syncthreads();
  int last = 0;
  if (threadIdx.x == 0) {
    int* ctr = p.merge_counters + int64_t(job.merge) * p.num_kv_heads + kvh;
    int old;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(ctr) : "memory");
    last = old == job.splits - 1;
    // Zero at rest: the next launch (or graph replay) starts from it (kernel completion orders it).
    if (last) asm volatile("st.relaxed.gpu.global.s32 [%0], 0;" ::"l"(ctr) : "memory");
  }
  return __syncthreads_or(last);
}

// Merges the partial rows of packed rows [row0, row0 + rows) (rows <= kRows) of `job` into o / lse.
// The states are staged through shared memory (`smem`, `smem_bytes`: the free K/V stages) in blocks
// by cp.async.cg (L2: other SMs wrote them during this launch), so a block costs one round trip
// however many states it holds. Threads take (row, 16-byte chunk) pairs; with fewer pairs than
// threads, `sub` threads (a power of two) share a pair, each folding every sub-th state, and combine
// by shuffles.
template <int D, typename T, int kNT, int kRows>
__device__ __forceinline__ void merge_split_group(const AttnParams& p, const Job& job, int kvh, int row0, int rows,
                                                  unsigned char* smem, int smem_bytes) {
  constexpr int kChunks = D / 8;
  constexpr int kMaxPairs = (kRows * kChunks + kNT - 1) / kNT;  // pairs per thread at sub == 1
  const int pairs = rows * kChunks;
  int sub = 1;
  while (sub < 8 && pairs * sub * 2 <= kNT) sub *= 2;
  const int stride = kNT / sub;  // pairs per round of the CTA
  const int group = p.group, H = p.num_qo_heads, splits = job.splits;
  const int tid = threadIdx.x, s = tid % sub;
  const int64_t first = int64_t(job.partial) - job.chunk;  // the request's first partial row
  // Partial row of state c of row r: first + (query token of r) * splits + c.
  auto prow = [&](int r) { return first + int64_t((row0 + r) / group) * splits; };
  auto head_of = [&](int r) { return kvh * group + (row0 + r) % group; };
  // Block of states per pass: LSEs [rows][blk] fp32, then values [rows][blk][D].
  const int blk = min(splits, smem_bytes / (rows * (D * int(sizeof(T)) + 4)));
  float* sL = reinterpret_cast<float*>(smem);
  T* sV = reinterpret_cast<T*>(smem + ((rows * blk * 4 + 15) & ~15));

  float m[kMaxPairs], l[kMaxPairs], acc[kMaxPairs][8];
#pragma unroll
  for (int k = 0; k < kMaxPairs; ++k) {
    m[k] = -INFINITY, l[k] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[k][e] = 0.f;
  }
  for (int c0 = 0; c0 < splits; c0 += blk) {
    const int n = min(blk, splits - c0);
    __syncthreads();  // the previous block's reads of shared memory are done
    for (int i = tid; i < rows * n * kChunks; i += kNT) {
      const int r = i / (n * kChunks), rem = i - r * (n * kChunks), c = rem / kChunks, ch = rem - c * kChunks;
      const T* src = static_cast<const T*>(p.partial_o) + ((prow(r) + c0 + c) * H + head_of(r)) * D + ch * 8;
      cp_async_16(sV + (r * n + c) * D + ch * 8, src, true);
    }
    cp_async_commit();
    for (int i = tid; i < rows * n; i += kNT) {
      const int r = i / n, c = i - r * n;
      sL[r * n + c] = __ldcg(p.partial_lse + (prow(r) + c0 + c) * H + head_of(r));
    }
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxPairs; ++k) {
      const int pi = k * stride + tid / sub;
      if (pi >= pairs) continue;
      const int r = pi / kChunks, ch = pi - r * kChunks;
      float mx = m[k];
      for (int c = s; c < n; c += sub) mx = fmaxf(mx, sL[r * n + c]);
      const float mu = mx == -INFINITY ? 0.f : mx;
      const float corr = fast_exp2(m[k] - mu);
      l[k] *= corr;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[k][e] *= corr;
      for (int c = s; c < n; c += sub) {
        const float w = fast_exp2(sL[r * n + c] - mu);
        l[k] += w;
        const uint4 x = *reinterpret_cast<const uint4*>(sV + (r * n + c) * D + ch * 8);
        const uint32_t xw[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = unpack2<T>(xw[e]);
          acc[k][2 * e] = fmaf(w, f.x, acc[k][2 * e]), acc[k][2 * e + 1] = fmaf(w, f.y, acc[k][2 * e + 1]);
        }
      }
      m[k] = mx;
    }
  }
#pragma unroll
  for (int k = 0; k < kMaxPairs; ++k) {
    if (k * stride >= pairs) break;  // uniform: no thread has a pair in round k
    // Combine the sub threads of a pair (adjacent lanes; all lanes take part).
    for (int off = 1; off < sub; off <<= 1) {
      const float m2 = __shfl_xor_sync(0xffffffff, m[k], off), l2 = __shfl_xor_sync(0xffffffff, l[k], off);
      const float mx = fmaxf(m[k], m2), mu = mx == -INFINITY ? 0.f : mx;
      const float ca = fast_exp2(m[k] - mu), cb = fast_exp2(m2 - mu);
      l[k] = l[k] * ca + l2 * cb;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[k][e] = acc[k][e] * ca + __shfl_xor_sync(0xffffffff, acc[k][e], off) * cb;
      m[k] = mx;
    }
    const int pi = k * stride + tid / sub;
    if (pi >= pairs || s != 0) continue;
    const int r = pi / kChunks, ch = pi - r * kChunks, qi = (row0 + r) / group, head = head_of(r);
    const float inv = l[k] > 0.f ? 1.f / l[k] : 0.f;
    T* dst = static_cast<T*>(p.o) + int64_t(job.qo_begin + qi) * p.o_stride_n + int64_t(head) * p.o_stride_h + ch * 8;
    uint32_t w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) w[e] = pack2<T>(acc[k][2 * e] * inv, acc[k][2 * e + 1] * inv);
    if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) *reinterpret_cast<uint32_t*>(dst + 2 * e) = w[e];
    }
    if (p.lse && ch == 0)  // NaN states (corrupt page ids) keep l NaN: the row's LSE is NaN too
      p.lse[int64_t(job.qo_begin + qi) * p.lse_stride_n + int64_t(head) * p.lse_stride_h] =
          l[k] > 0.f ? m[k] + __log2f(l[k]) : (l[k] == 0.f ? -INFINITY : l[k]);
  }
}

}  // namespace kvinfer::detail::attn
