// Attention-state merge kernels (see cpp/include/kvinfer/merge.h for the math and conventions).
//
// Memory-bound: each (seq, head) row reads num_states value rows and writes one. A block holds
// kRowsPerBlock rows; the threads of a row stride over its head dim in 16-byte vectors when the
// host found every value array aligned (p.vec > 1), else one element at a time with full strides.
// Weights are computed in fp32 with online rescaling (see the kernel).
#pragma once
#include <cmath>

#include "common/mma.cuh"
#include "common/types.cuh"
#include "common/vec.cuh"
#include "launch.h"

namespace kvinfer::detail {

namespace merge_impl {

using cuda::Vec;
using cuda::cp_async_16;
using cuda::cp_async_4;
using cuda::cp_async_commit;
using cuda::cp_async_wait;

constexpr int kThreads = 256;

// The pair form (merge_state): two inputs, so the weights are known once both LSEs are in; no
// running state. A kernel of its own keeps it at a few registers with all four loads of a thread
// issued back to back (the general kernel's online fold cost it 10-15% of bandwidth).
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) merge_pair_kernel(const __grid_constant__ MergeParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.seq * p.heads) return;
  const int64_t q = row / p.heads, h = row - q * p.heads;
  if (p.mask && !p.mask[q * p.mask_stride]) return;
  T* out = static_cast<T*>(p.v_out) + q * p.v_out_stride[0] + h * p.v_out_stride[1];
  const T* a = static_cast<const T*>(p.v_in[0]) + q * p.v_in_stride[0][0] + h * p.v_in_stride[0][2];
  const T* b = static_cast<const T*>(p.v_in[1]) + q * p.v_in_stride[1][0] + h * p.v_in_stride[1][2];
  const float* lse_a = p.s_in[0] + q * p.s_in_stride[0][0] + h * p.s_in_stride[0][2];
  const float* lse_b = p.s_in[1] + q * p.s_in_stride[1][0] + h * p.s_in_stride[1][2];
  float m = -INFINITY, sum = 0.f;
  bool poison = false;
  for (int64_t d = int64_t(threadIdx.x) * kVec; d < p.head_dim; d += int64_t(blockDim.x) * kVec) {
    // LSEs and values loaded together (the LSEs again per chunk, from L1): loading the LSEs first and
    // computing the weights before the value loads made ptxas wait for them, two round trips.
    const float sa = *lse_a, sb = *lse_b;
    Vec<T, kVec> xa, xb, y;
    if constexpr (kVec > 1) {
      xa.load(a + d), xb.load(b + d);
    } else {
      xa.v[0] = a[d * p.v_in_stride[0][3]], xb.v[0] = b[d * p.v_in_stride[1][3]];
    }
    // -inf states get weight 0 and their values (possibly garbage, even NaN) never reach the sum; a
    // NaN LSE (a state computed from bad input) poisons the row.
    poison = sa != sa || sb != sb;
    m = fmaxf(sa, sb);
    const float wa = sa == -INFINITY ? 0.f : exp2f(sa - m), wb = sb == -INFINITY ? 0.f : exp2f(sb - m);
    sum = wa + wb;
    const float inv_sum = sum > 0.f ? 1.f / sum : 0.f, ka = wa * inv_sum, kb = wb * inv_sum;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float va = wa > 0.f ? ka * cuda::to_float(xa.v[j]) : 0.f;
      const float vb = wb > 0.f ? kb * cuda::to_float(xb.v[j]) : 0.f;
      y.v[j] = cuda::from_float<T>(poison ? NAN : va + vb);
    }
    if constexpr (kVec > 1) y.store(out + d);
    else out[d * p.v_out_stride[2]] = y.v[0];
  }
  // threadIdx.x == 0 always ran the loop once.
  if (p.s_out && threadIdx.x == 0)
    p.s_out[q * p.s_out_stride[0] + h * p.s_out_stride[1]] = poison ? NAN : m == -INFINITY ? -INFINITY : m + log2f(sum);
}

// The general form (merge_states, dense or ragged): n states folded with online rescaling.
template <typename T, int kVec, bool kStaged>
__global__ void __launch_bounds__(kThreads, 1) merge_kernel(const __grid_constant__ MergeParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.seq * p.heads) return;
  const int64_t q = row / p.heads, h = row - q * p.heads;
  if (p.mask && !p.mask[q * p.mask_stride]) return;
  T* out = static_cast<T*>(p.v_out) + q * p.v_out_stride[0] + h * p.v_out_stride[1];
  int n = int(p.num_states);
  int64_t origin = q;  // index along the inputs' seq axis where this row's states start
  if (p.state_indptr) {
    const int64_t lo = p.state_indptr[q], hi = p.state_indptr[q + 1];
    if (lo < 0 || hi < lo || hi > p.num_partials) {  // corrupt indices: make it visible, never read out of range
      for (int64_t d = threadIdx.x; d < p.head_dim; d += blockDim.x) out[d * p.v_out_stride[2]] = cuda::from_float<T>(NAN);
      if (p.s_out && threadIdx.x == 0) p.s_out[q * p.s_out_stride[0] + h * p.s_out_stride[1]] = NAN;
      return;
    }
    if (hi == lo && p.skip_empty) return;  // written directly by the attention kernel
    origin = lo, n = int(hi - lo);
  }
  // State i of this row: values at byte v0 + i * v_step, LSE at s0 + i * s_step.
  const char* v0 = static_cast<const char*>(p.v_in[0]) +
                   (origin * p.v_in_stride[0][0] + h * p.v_in_stride[0][2]) * int64_t(sizeof(T));
  const char* s0 = reinterpret_cast<const char*>(p.s_in[0] + origin * p.s_in_stride[0][0] + h * p.s_in_stride[0][2]);
  const int64_t v_step = p.v_in_stride[0][1] * int64_t(sizeof(T)), s_step = p.s_in_stride[0][1] * int64_t(sizeof(float));
  const int64_t d_step = p.v_in_stride[0][3];  // the unvectorised path (unaligned inputs)

  float m = -INFINITY, sum = 0.f;
  bool poison = false;  // a NaN LSE (a state computed from bad input, e.g. a corrupt page id) poisons the row
  for (int64_t d = int64_t(threadIdx.x) * kVec; d < p.head_dim; d += int64_t(blockDim.x) * kVec) {
    // Online rescaling (as in softmax): each state's LSE and values are loaded independently of
    // the others, so all loads of a thread are in flight at once; no pass over the LSEs first.
    float acc[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[j] = 0.f;
    m = -INFINITY, sum = 0.f;
    // Fold k states into (m, sum, acc): one rescale of the running state per group, to the group's max.
    // -inf states get weight 0 and their values (possibly garbage, even NaN) are never used; while
    // every state so far is -inf, acc and sum are 0 and need no rescaling.
    auto fold = [&](const float* sg, const Vec<T, kVec>* xg, int k) {
      float m_new = m;
      for (int e = 0; e < k; ++e) poison |= sg[e] != sg[e], m_new = fmaxf(m_new, sg[e]);
      const float scale = m_new == -INFINITY ? 1.f : exp2f(m - m_new);
      sum *= scale;
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc[j] *= scale;
      for (int e = 0; e < k; ++e) {
        const float w = sg[e] == -INFINITY ? 0.f : exp2f(sg[e] - m_new);
        sum += w;
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[j] = w > 0.f ? fmaf(w, cuda::to_float(xg[e].v[j]), acc[j]) : acc[j];
      }
      m = m_new;
    };
    // Groups of kGroup states. ptxas schedules a group's value loads after its LSE loads have
    // returned (to save registers), which serialises two memory round trips; the staged form copies
    // LSEs and values with cp.async into this thread's own shared slots, one wait for all. Measured
    // (H200, 2026-11-21): staged is faster for merge_states with 8-16 threads per row (84-89% of copy
    // bandwidth against 72%), slower with 32 threads per row (so launch() caps the staged form at 16).
    constexpr int kGroup = 4;
    constexpr int kSlots = kStaged ? kThreads : 1;
    __shared__ Vec<T, kVec> stage[kGroup][kSlots];
    __shared__ float stage_lse[kGroup][kSlots];
    const int slot = threadIdx.y * blockDim.x + threadIdx.x;
    auto src_of = [&](int i) { return reinterpret_cast<const T*>(v0 + i * v_step) + d; };
    auto lse_of = [&](int i) { return *reinterpret_cast<const float*>(s0 + i * s_step); };
    auto load = [&](int i, Vec<T, kVec>& x) {
      if constexpr (kVec > 1) x.load(src_of(i));
      else x.v[0] = reinterpret_cast<const T*>(v0 + i * v_step)[d * d_step];
    };
    int i = 0;
    for (; i + kGroup <= n; i += kGroup) {
      float sg[kGroup];
      Vec<T, kVec> xg[kGroup];
      if constexpr (kStaged) {
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          cp_async_16(&stage[k][slot], src_of(i + k), true);
          cp_async_4(&stage_lse[k][slot], s0 + (i + k) * s_step);
        }
        cp_async_commit();
        cp_async_wait<0>();  // this thread's own copies: no barrier needed
#pragma unroll
        for (int k = 0; k < kGroup; ++k) xg[k] = stage[k][slot], sg[k] = stage_lse[k][slot];
      } else {
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          sg[k] = lse_of(i + k);
          load(i + k, xg[k]);
        }
      }
      // The staged form folds a group at once (one rescale); the plain form state by state.
      if constexpr (kStaged) {
        fold(sg, xg, kGroup);
      } else {
#pragma unroll
        for (int k = 0; k < kGroup; ++k) fold(&sg[k], &xg[k], 1);
      }
    }
    for (; i < n; ++i) {  // the tail (merge_states with n % 4 != 0)
      const float s_i = lse_of(i);
      Vec<T, kVec> x;
      load(i, x);
      fold(&s_i, &x, 1);
    }
    const float inv_sum = sum > 0.f ? 1.f / sum : 0.f;
    Vec<T, kVec> y;
#pragma unroll
    for (int j = 0; j < kVec; ++j) y.v[j] = cuda::from_float<T>(poison ? NAN : acc[j] * inv_sum);
    if constexpr (kVec > 1) y.store(out + d);
    else out[d * p.v_out_stride[2]] = y.v[0];
  }
  // Every thread of the row computed the same (m, sum); threadIdx.x == 0 always ran the loop once.
  if (p.s_out && threadIdx.x == 0)
    p.s_out[q * p.s_out_stride[0] + h * p.s_out_stride[1]] = poison ? NAN : m == -INFINITY ? -INFINITY : m + log2f(sum);
}

template <typename T, int kVec, bool kPair>
cudaError_t launch(const MergeParams& p, cudaStream_t stream) {
  // Threads per row: enough vectors to cover the head dim once, a power of two, at most a block;
  // the staged form (vector merge_states) takes at most 16 and loops over wider rows.
  constexpr bool kStaged = !kPair && kVec > 1;
  const int64_t chunks = (p.head_dim + kVec - 1) / kVec;
  int tx = 1;
  while (tx < chunks && tx < (kStaged ? 16 : kThreads)) tx *= 2;
  const int ty = kThreads / tx;
  const int64_t rows = p.seq * p.heads;
  const int64_t blocks = (rows + ty - 1) / ty;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  if constexpr (kPair) merge_pair_kernel<T, kVec><<<dim3(unsigned(blocks)), dim3(tx, ty), 0, stream>>>(p);
  else merge_kernel<T, kVec, kStaged><<<dim3(unsigned(blocks)), dim3(tx, ty), 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace merge_impl

template <DType kV>
cudaError_t launch_merge(const MergeParams& p, cudaStream_t stream) {
  using T = cuda::cuda_t<kV>;
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = p.vec == kVec;
  if (p.pair) return vec ? merge_impl::launch<T, kVec, true>(p, stream) : merge_impl::launch<T, 1, true>(p, stream);
  return vec ? merge_impl::launch<T, kVec, false>(p, stream) : merge_impl::launch<T, 1, false>(p, stream);
}

}  // namespace kvinfer::detail
