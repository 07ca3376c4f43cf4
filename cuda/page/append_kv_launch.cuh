// Append new tokens' K/V rows into a paged KV cache (cpp/include/kvinfer/page.h). A pure copy:
// one block row per (token, head), 16-byte vectors along D when the host found everything aligned.
#pragma once
#include <cstdint>

#include "common/vec.cuh"
#include "launch.h"

namespace kvinfer::detail {

namespace append_impl {

constexpr int kThreads = 256;

template <int kBytes> struct Bits;
template <> struct Bits<1> { using type = uint8_t; };
template <> struct Bits<2> { using type = uint16_t; };

template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) append_kv_kernel(const __grid_constant__ AppendKVParams p) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.nnz * p.heads) return;
  const int64_t t = row / p.heads, h = row - t * p.heads;
  const int32_t b = p.batch_indices[t], pos = p.positions[t];
  if (b < 0 || b >= p.batch || pos < 0) return;
  const int64_t slot_in_table = int64_t(p.kv_indptr[b]) + pos / p.page_size;
  if (slot_in_table >= p.kv_indptr[b + 1]) return;  // position past the request's pages
  const int32_t page = p.kv_indices[slot_in_table];
  if (page < 0 || page >= p.num_pages) return;
  const int64_t slot = pos % p.page_size;
#pragma unroll
  for (int kv = 0; kv < 2; ++kv) {
    const T* src = static_cast<const T*>(p.src[kv]) + t * p.src_stride[kv][0] + h * p.src_stride[kv][1];
    T* dst = static_cast<T*>(p.cache[kv]) + page * p.cache_stride[kv][0] + slot * p.cache_stride[kv][1] +
             h * p.cache_stride[kv][2];
    for (int64_t d = int64_t(threadIdx.x) * kVec; d < p.head_dim; d += int64_t(blockDim.x) * kVec) {
      if constexpr (kVec > 1) {
        cuda::Vec<T, kVec> x;
        x.load(src + d);
        x.store(dst + d);
      } else {
        dst[d * p.cache_stride[kv][3]] = src[d * p.src_stride[kv][2]];
      }
    }
  }
}

template <typename T, int kVec>
cudaError_t launch(const AppendKVParams& p, cudaStream_t stream) {
  const int64_t chunks = (p.head_dim + kVec - 1) / kVec;
  int tx = 1;
  while (tx < chunks && tx < kThreads) tx *= 2;
  const int ty = kThreads / tx;
  const int64_t blocks = (p.nnz * p.heads + ty - 1) / ty;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  append_kv_kernel<T, kVec><<<dim3(unsigned(blocks)), dim3(tx, ty), 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace append_impl

template <int kElemBytes>
cudaError_t launch_append_kv(const AppendKVParams& p, cudaStream_t stream) {
  using T = typename append_impl::Bits<kElemBytes>::type;
  constexpr int kVec = 16 / kElemBytes;
  return p.vec == kVec ? append_impl::launch<T, kVec>(p, stream) : append_impl::launch<T, 1>(p, stream);
}

}  // namespace kvinfer::detail
