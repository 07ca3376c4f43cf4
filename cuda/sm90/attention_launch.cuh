// Launcher of the Hopper attention kernel: the paged-KV page-offset pre-kernel (when paged), then the
// persistent warp-specialised kernel with grid_x CTAs.
#pragma once
#include "common/types.cuh"
#include "sm90/attention_kernel.cuh"
#include "sm90/page_offsets.cuh"

namespace kvinfer::detail {

template <int kHeadDim, int kKV, DType kDT>
cudaError_t launch_attention_sm90(const AttnParams& p, cudaStream_t stream) {
  using T = cuda::cuda_t<kDT>;
  using C = attn90::Config<kHeadDim, kKV>;
  auto kernel = attn90::attention_sm90_kernel<kHeadDim, kKV, T>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (err != cudaSuccess) return err;
  if (p.page_size > 0 && p.batch_capacity > 0) {
    attn90::page_offsets_kernel<kHeadDim, kKV><<<p.batch_capacity, 128, 0, stream>>>(p);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  if (p.grid_x <= 0 || p.num_kv_heads <= 0) return cudaSuccess;
  kernel<<<p.grid_x, C::kThreads, C::kSmemBytes, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvinfer::detail
