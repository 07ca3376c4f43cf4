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

// A merged row's LSE: NaN when a state was poisoned, -inf when every state was empty.
__device__ __forceinline__ void store_lse(const MergeParams& p, int64_t q, int64_t h, float m, float sum, bool poison) {
  p.s_out[q * p.s_out_stride[0] + h * p.s_out_stride[1]] = poison ? NAN : m == -INFINITY ? -INFINITY : m + log2f(sum);
}

// The pair form (merge_state): two inputs, so the weights are known once both LSEs are in; no
// running state. A kernel of its own keeps it at a few registers with all four loads of a thread
// issued back to back (the general kernel's online fold cost it 10-15% of bandwidth). Held to 48
// registers (5 CTAs per SM, no spill): fp16 80-83% / bf16 77-80% of copy bandwidth against 76-79% /
// 74-77% at its natural 56 (H200, 2026-11-21; 40 registers spill and read 70%).
#ifndef KVINFER_PAIR_MIN_BLOCKS  // CTAs per SM the pair form's registers must allow (ci/merge_exp.cu varies it)
#define KVINFER_PAIR_MIN_BLOCKS 5
#endif
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads, KVINFER_PAIR_MIN_BLOCKS) merge_pair_kernel(const __grid_constant__ MergeParams p) {
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
    const float inv_sum = sum > 0.f ? __frcp_rn(sum) : 0.f, ka = wa * inv_sum, kb = wb * inv_sum;
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
  if (p.s_out && threadIdx.x == 0) store_lse(p, q, h, m, sum, poison);
}

// Running merge state of one row's kVec columns: online rescaling (as in softmax), so each state's
// LSE and values are loaded independently of the others; no pass over the LSEs first.
template <typename T, int kVec>
struct RowState {
  float m = -INFINITY, sum = 0.f, acc[kVec] = {};
  bool poison = false;  // a NaN LSE (a state computed from bad input, e.g. a corrupt page id) poisons the row

  // Fold k states: one rescale of the running state per group, to the group's max. -inf states get
  // weight 0 and their values (possibly garbage, even NaN) are never used; while every state so far
  // is -inf, acc and sum are 0 and need no rescaling.
  __device__ __forceinline__ void fold(const float* sg, const Vec<T, kVec>* xg, int k) {
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
  }
  // Fold another running state (same columns, disjoint states).
  __device__ __forceinline__ void combine(float m2, float sum2, const float* acc2, bool poison2) {
    const float m_new = fmaxf(m, m2);
    const float a = m_new == -INFINITY ? 1.f : exp2f(m - m_new), b = m_new == -INFINITY ? 0.f : exp2f(m2 - m_new);
    sum = sum * a + sum2 * b;
#pragma unroll
    for (int j = 0; j < kVec; ++j) acc[j] = acc[j] * a + acc2[j] * b;
    m = m_new, poison |= poison2;
  }
  __device__ __forceinline__ void store(const MergeParams& p, T* out, int64_t d, int64_t q, int64_t h, bool lse) const {
    const float inv_sum = sum > 0.f ? __frcp_rn(sum) : 0.f;
    Vec<T, kVec> y;
#pragma unroll
    for (int j = 0; j < kVec; ++j) y.v[j] = cuda::from_float<T>(poison ? NAN : acc[j] * inv_sum);
    if constexpr (kVec > 1) y.store(out + d);
    else out[d * p.v_out_stride[2]] = y.v[0];
    if (lse && p.s_out) store_lse(p, q, h, m, sum, poison);
  }
};

// Row q (head h) of merge_states: where its states start along the inputs' seq axis and how many,
// from state_indptr in the ragged form. False: nothing (more) to do for this row (rows with corrupt
// indices are written as NaN here: device-resident indices cannot be checked on the host).
template <typename T>
__device__ __forceinline__ bool row_states(const MergeParams& p, T* out, int64_t q, int64_t h, int64_t& origin, int& n) {
  origin = q, n = int(p.num_states);
  if (!p.state_indptr) return true;
  const int64_t lo = p.state_indptr[q], hi = p.state_indptr[q + 1];
  if (lo < 0 || hi < lo || hi > p.num_partials) {  // corrupt indices: make it visible, never read out of range
    for (int64_t d = threadIdx.x; d < p.head_dim; d += blockDim.x) out[d * p.v_out_stride[2]] = cuda::from_float<T>(NAN);
    if (p.s_out && threadIdx.x == 0) p.s_out[q * p.s_out_stride[0] + h * p.s_out_stride[1]] = NAN;
    return false;
  }
  if (hi == lo && p.skip_empty) return false;  // written directly by the attention kernel
  origin = lo, n = int(hi - lo);
  return true;
}

// The general form (merge_states, dense or ragged): blockDim (threads per row, rows per block); a
// row's threads stride over its head dim, each folding all states of its columns.
template <typename T, int kVec, bool kStaged>
__global__ void __launch_bounds__(kThreads, 1) merge_kernel(const __grid_constant__ MergeParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.seq * p.heads) return;
  const int64_t q = row / p.heads, h = row - q * p.heads;
  if (p.mask && !p.mask[q * p.mask_stride]) return;
  T* out = static_cast<T*>(p.v_out) + q * p.v_out_stride[0] + h * p.v_out_stride[1];
  int64_t origin;
  int n;
  if (!row_states(p, out, q, h, origin, n)) return;
  // State i of this row: values at byte v0 + i * v_step, LSE at s0 + i * s_step.
  const char* v0 = static_cast<const char*>(p.v_in[0]) +
                   (origin * p.v_in_stride[0][0] + h * p.v_in_stride[0][2]) * int64_t(sizeof(T));
  const char* s0 = reinterpret_cast<const char*>(p.s_in[0] + origin * p.s_in_stride[0][0] + h * p.s_in_stride[0][2]);
  const int64_t v_step = p.v_in_stride[0][1] * int64_t(sizeof(T)), s_step = p.s_in_stride[0][1] * int64_t(sizeof(float));
  const int64_t d_step = p.v_in_stride[0][3];  // the unvectorised path (unaligned inputs)

  for (int64_t d = int64_t(threadIdx.x) * kVec; d < p.head_dim; d += int64_t(blockDim.x) * kVec) {
    RowState<T, kVec> st;
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
        st.fold(sg, xg, kGroup);  // a group at once (one rescale)
      } else {
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          sg[k] = lse_of(i + k);
          load(i + k, xg[k]);
        }
#pragma unroll
        for (int k = 0; k < kGroup; ++k) st.fold(&sg[k], &xg[k], 1);  // state by state
      }
    }
    for (; i < n; ++i) {  // the tail (n % 4 != 0)
      const float s_i = lse_of(i);
      Vec<T, kVec> x;
      load(i, x);
      st.fold(&s_i, &x, 1);
    }
    // Every thread of the row computes the same (m, sum); the first chunk's thread writes the LSE once.
    st.store(p, out, d, q, h, d == 0);
  }
}

// The wide form, for few rows with many states each (split-KV of a small batch, e.g. one request's
// 40+ partials): one row per block, blockDim (threads per row, state lanes). Lane z folds states
// z, z + lanes, ...; the lanes' states are combined through shared memory. The general form would
// give such a merge one or two blocks, each thread walking every state (8.7 us for 32 rows x 43
// states on an H200, 2026-11-21).
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) merge_wide_kernel(const __grid_constant__ MergeParams p) {
  const int64_t row = blockIdx.x;
  const int64_t q = row / p.heads, h = row - q * p.heads;
  if (p.mask && !p.mask[q * p.mask_stride]) return;  // uniform over the block
  T* out = static_cast<T*>(p.v_out) + q * p.v_out_stride[0] + h * p.v_out_stride[1];
  int64_t origin;
  int n;
  if (!row_states(p, out, q, h, origin, n)) return;  // uniform over the block
  const T* v0 = static_cast<const T*>(p.v_in[0]) + origin * p.v_in_stride[0][0] + h * p.v_in_stride[0][2];
  const float* s0 = p.s_in[0] + origin * p.s_in_stride[0][0] + h * p.s_in_stride[0][2];
  const int64_t d = int64_t(threadIdx.x) * kVec;  // launch() gives a row enough threads for its head dim
  const int lanes = blockDim.y, z = threadIdx.y;
  RowState<T, kVec> st;
  if (d < p.head_dim) {
    auto load = [&](int i, float& sg, Vec<T, kVec>& x) {
      sg = s0[i * p.s_in_stride[0][1]];
      const T* src = v0 + i * p.v_in_stride[0][1];
      if constexpr (kVec > 1) x.load(src + d);
      else x.v[0] = src[d * p.v_in_stride[0][3]];
    };
    // Up to four states per round trip (lane z: z, z + lanes, ...); missing ones weigh 0.
    for (int i = z; i < n; i += 4 * lanes) {
      float sg[4];
      Vec<T, kVec> xg[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (i + k * lanes < n) load(i + k * lanes, sg[k], xg[k]);
        else sg[k] = -INFINITY, xg[k] = Vec<T, kVec>{};
      }
      st.fold(sg, xg, 4);
    }
  }
  // Tree combine of the lanes' states through shared memory: lanes is a power of two.
  __shared__ float s_acc[kThreads / 2][kVec];
  __shared__ float s_m[kThreads / 2], s_sum[kThreads / 2];
  __shared__ bool s_poison[kThreads / 2];
  for (int half = lanes / 2; half > 0; half /= 2) {
    const int slot = (z - half) * blockDim.x + threadIdx.x;
    if (z >= half && z < 2 * half) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) s_acc[slot][j] = st.acc[j];
      s_m[slot] = st.m, s_sum[slot] = st.sum, s_poison[slot] = st.poison;
    }
    __syncthreads();
    const int from = z * blockDim.x + threadIdx.x;
    if (z < half) st.combine(s_m[from], s_sum[from], s_acc[from], s_poison[from]);
    __syncthreads();
  }
  if (z > 0 || d >= p.head_dim) return;
  st.store(p, out, d, q, h, threadIdx.x == 0);
}

template <typename T, int kVec, bool kPair>
cudaError_t launch(const MergeParams& p, cudaStream_t stream) {
  // Threads per row: enough vectors to cover the head dim once, a power of two, at most a block;
  // the staged form (vector merge_states) takes at most 16 and loops over wider rows.
  constexpr bool kStaged = !kPair && kVec > 1;
  const int64_t chunks = (p.head_dim + kVec - 1) / kVec;
  const int64_t rows = p.seq * p.heads;
  int tx = 1;
  while (tx < chunks && tx < kThreads) tx *= 2;
  // The wide form: at most 64 threads per row (then they cover its head dim: tx stopped at chunks),
  // at least 8 states per row on average, and too few rows to give the general form 64 blocks (a
  // quarter of an H100's slots).
  const int64_t states = !p.state_indptr ? p.num_states : p.states_hint > 0 ? p.states_hint
                                                                          : p.seq > 0 ? p.num_partials / p.seq : 0;
  if (!kPair && tx <= 64 && states >= 8 && rows * tx < 64 * kThreads) {
    if (rows > 0x7fffffff) return cudaErrorInvalidConfiguration;
    if (rows > 0) merge_wide_kernel<T, kVec><<<dim3(unsigned(rows)), dim3(tx, kThreads / tx), 0, stream>>>(p);
    return cudaGetLastError();
  }
  if (kStaged) tx = tx < 16 ? tx : 16;
  const int ty = kThreads / tx;
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
