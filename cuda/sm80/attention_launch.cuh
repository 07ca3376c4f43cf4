// Launcher of the FA2-class attention kernel: a flat grid of grid_x x kv heads CTAs (the kernel maps it),
// dynamic shared memory.
#pragma once
#include "common/types.cuh"
#include "sm80/attention_kernel.cuh"

namespace kvinfer::detail {

// Whether the code of `kernel` that runs on the current device was compiled for sm90 or later, so
// that it waits on griddepcontrol (attn::pdl_wait) before reading the previous kernel's output. A
// programmatic launch of code without the wait (an sm80 build JIT-compiled from PTX) would race.
// Cached per device (every instance has its own cache).
template <typename Kernel>
bool pdl_capable(Kernel kernel) {
  static int state[64] = {};  // 0: unknown, 1: no, 2: yes
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  if (state[dev] == 0) {
    cudaFuncAttributes a{};
    state[dev] = cudaFuncGetAttributes(&a, kernel) == cudaSuccess && a.ptxVersion >= 90 ? 2 : 1;
  }
  return state[dev] == 2;
}

// Largest dynamic shared memory a block may opt in to on the current device (cached per device).
inline int max_smem_optin() {
  static int bytes[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 0;
  if (bytes[dev] == 0 && cudaDeviceGetAttribute(&bytes[dev], cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    return 0;
  return bytes[dev];
}

// Whether a wide decode tile must give way to the lean one: its shared memory exceeds the device's
// (head dim 256: 136 KB against sm86 / sm89's 99 KB). The lean tile runs the same plans: its 32-token
// KV tiles divide the wide tile's 64-token split chunks, and both merge split groups the same way.
// (Only tiles over 99 KB ask, so only they instantiate the lean kernel a second time.)
template <int kHeadDim, AttnTile kTile>
constexpr bool kMayNeedLean = kTile == AttnTile::kDecode && attn::Config<kHeadDim, kTile>::kSmemBytes > 99 * 1024;
template <int kHeadDim, AttnTile kTile>
bool decode_needs_lean() {
  return attn::Config<kHeadDim, kTile>::kSmemBytes > max_smem_optin();
}

template <int kHeadDim, DType kDT, AttnTile kTile>
cudaError_t launch_attention(const AttnParams& p, cudaStream_t stream) {
  using T = cuda::cuda_t<kDT>;
  using C = attn::Config<kHeadDim, kTile>;
  if constexpr (kMayNeedLean<kHeadDim, kTile>)
    if (decode_needs_lean<kHeadDim, kTile>()) return launch_attention<kHeadDim, kDT, AttnTile::kDecodeLean>(p, stream);
  // The prefill tile has a build without paging and custom masks (attention_kernel's kGeneral); decode
  // tiles (paged in practice) only the general one.
  auto kernel = attn::attention_kernel<kHeadDim, T, kTile, true>;
  if constexpr (kTile == AttnTile::kPrefill)
    if (p.page_size <= 0 && !p.mask_bits) kernel = attn::attention_kernel<kHeadDim, T, kTile, false>;
  // Opt in to more than 48 KB of shared memory (every call: cheap, and per device).
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  if (err != cudaSuccess) return err;
  if (p.grid_x <= 0 || p.num_kv_heads <= 0) return cudaSuccess;
  const int64_t ctas = int64_t(p.grid_x) * p.num_kv_heads;
  if (ctas > 0x7fffffff) return cudaErrorInvalidConfiguration;
  if (!p.pdl || !pdl_capable(kernel)) {
    kernel<<<unsigned(ctas), C::kThreads, C::kSmemBytes, stream>>>(p);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(ctas)), cfg.blockDim = dim3(C::kThreads), cfg.dynamicSmemBytes = C::kSmemBytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr, cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, p);
}

template <int kHeadDim, DType kDT, AttnTile kTile>
int attention_ctas_per_sm() {
  using T = cuda::cuda_t<kDT>;
  using C = attn::Config<kHeadDim, kTile>;
  if constexpr (kMayNeedLean<kHeadDim, kTile>)
    if (decode_needs_lean<kHeadDim, kTile>()) return attention_ctas_per_sm<kHeadDim, kDT, AttnTile::kDecodeLean>();
  auto kernel = attn::attention_kernel<kHeadDim, T, kTile, true>;  // the plain build needs no more registers
  int n = 0;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, C::kThreads, C::kSmemBytes) != cudaSuccess)
    return 0;
  return n;
}

}  // namespace kvinfer::detail
