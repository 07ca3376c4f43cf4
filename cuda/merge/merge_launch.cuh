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

// The pair form is held to 40 registers (6 CTAs per SM, a few bytes of spill): 74-83% of copy
// bandwidth against 72-76% at its natural 48 (H200, 2026-11-21); still short of the 83-88% it read
// before this session's rewrite of the kernel, cause not found yet.
template <typename T, int kVec, bool kPair, bool kStaged>
__global__ void __launch_bounds__(kThreads, kPair ? 6 : 1) merge_kernel(const __grid_constant__ MergeParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.seq * p.heads) return;
  const int64_t q = row / p.heads, h = row - q * p.heads;
  if (p.mask && !p.mask[q * p.mask_stride]) return;
  T* out = static_cast<T*>(p.v_out) + q * p.v_out_stride[0] + h * p.v_out_stride[1];
  int n = kPair ? 2 : int(p.num_states);
  int64_t origin = q;  // index along the inputs' seq axis where this row's states start
  if (!kPair && p.state_indptr) {
    const int64_t lo = p.state_indptr[q], hi = p.state_indptr[q + 1];
    if (lo < 0 || hi < lo || hi > p.num_partials) {  // corrupt indices: make it visible, never read out of range
      for (int64_t d = threadIdx.x; d < p.head_dim; d += blockDim.x) out[d * p.v_out_stride[2]] = cuda::from_float<T>(NAN);
      if (p.s_out && threadIdx.x == 0) p.s_out[q * p.s_out_stride[0] + h * p.s_out_stride[1]] = NAN;
      return;
    }
    if (hi == lo && p.skip_empty) return;  // written directly by the attention kernel
    origin = lo, n = int(hi - lo);
  }
  // State i of this row: values at byte v0 + i * v_step, LSE at s0 + i * s_step (the pair form's two
  // inputs are separate arrays: there the step is the distance between their rows, in bytes).
  const char* v0 = static_cast<const char*>(p.v_in[0]) +
                   (origin * p.v_in_stride[0][0] + h * p.v_in_stride[0][2]) * int64_t(sizeof(T));
  const char* s0 = reinterpret_cast<const char*>(p.s_in[0] + origin * p.s_in_stride[0][0] + h * p.s_in_stride[0][2]);
  int64_t v_step = p.v_in_stride[0][1] * int64_t(sizeof(T)), s_step = p.s_in_stride[0][1] * int64_t(sizeof(float));
  if constexpr (kPair) {
    v_step = static_cast<const char*>(p.v_in[1]) + (q * p.v_in_stride[1][0] + h * p.v_in_stride[1][2]) * int64_t(sizeof(T)) - v0;
    s_step = reinterpret_cast<const char*>(p.s_in[1] + q * p.s_in_stride[1][0] + h * p.s_in_stride[1][2]) - s0;
  }
  // The unvectorised path (unaligned inputs) walks d with each input's own stride.
  const int64_t d_step0 = p.v_in_stride[0][3], d_step1 = p.v_in_stride[kPair ? 1 : 0][3];

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
    // bandwidth against 72%), slower for the pair form and with 32 threads per row (so launch() caps
    // the staged form at 16).
    constexpr int kGroup = kPair ? 2 : 4;
    constexpr int kSlots = kStaged ? kThreads : 1;
    __shared__ Vec<T, kVec> stage[kGroup][kSlots];
    __shared__ float stage_lse[kGroup][kSlots];
    const int slot = threadIdx.y * blockDim.x + threadIdx.x;
    auto src_of = [&](int i) { return reinterpret_cast<const T*>(v0 + i * v_step) + d; };
    auto lse_of = [&](int i) { return *reinterpret_cast<const float*>(s0 + i * s_step); };
    auto load = [&](int i, Vec<T, kVec>& x) {
      if constexpr (kVec > 1) x.load(src_of(i));
      else x.v[0] = reinterpret_cast<const T*>(v0 + i * v_step)[d * (i == 0 ? d_step0 : d_step1)];
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
  merge_kernel<T, kVec, kPair, kStaged><<<dim3(unsigned(blocks)), dim3(tx, ty), 0, stream>>>(p);
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
