// Tensor-core and async-copy primitives for sm80+ (mma.sync m16n8k16, ldmatrix, cp.async), and the
// swizzled shared-memory addressing the attention tiles use.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace kvinfer::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy to a shared address; src_bytes 0 zero-fills the destination (rows
// past the end).
__device__ __forceinline__ void cp_async_16(uint32_t saddr, const void* gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  cp_async_16(smem_addr(smem), gmem, valid);
}
// The same with an L2 cache policy (l2_evict_first).
__device__ __forceinline__ void cp_async_16(uint32_t saddr, const void* gmem, bool valid, uint64_t policy) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(saddr), "l"(gmem),
               "r"(src_bytes), "l"(policy));
}
// L2 policy for data read once (the decode tiles' K / V streams): its lines are evicted first, so the
// rest of what L2 holds (partial rows, page ids, other kernels' data) stays.
__device__ __forceinline__ uint64_t l2_evict_first() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
// 4-byte global -> shared copy (through L1: cp.async.cg takes 16 bytes only).
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending)); }

// ldmatrix from a shared-memory address (state space .shared), so constant offsets fold into the
// instruction's immediate.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t saddr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(saddr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t saddr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(saddr));
}

// Per-thread byte offsets for ldmatrix from a swizzled [rows][D] tile (see swz): the thread's row
// within a 16-row block is `row`, its chunk is 2 * k + hi for the k-th 16-column step. Since blocks
// start at multiples of 8 rows, (2k + hi) ^ (row & 7) == 8 * (k / 4) + ((2 * (k % 4)) ^ hi ^ (row & 7)),
// so four offsets per thread (k % 4) plus compile-time constants address every step.
template <int D>
struct SwizzledFrag {
  uint32_t off[4];
  __device__ __forceinline__ SwizzledFrag(int row, int hi) {
#pragma unroll
    for (int i = 0; i < 4; ++i) off[i] = uint32_t(row * D + (((2 * i) ^ hi ^ (row & 7)) << 3)) * 2u;
  }
  // Byte offset of the fragment at 16-row block `blk` (compile-time) and step k (compile-time).
  __device__ __forceinline__ uint32_t at(int blk, int k) const {
    return off[k & 3] + uint32_t(blk * 16 * D + (k >> 2) * 64) * 2u;
  }
};

// The same offsets for a tile stored as D / 64 column blocks of [kRows][64] (128-byte rows, chunk c of
// row r at c ^ (r % 8)), the decode tile's K / V stages: row offsets independent of D.
template <int kRows>
struct BlockedFrag {
  uint32_t off[4];
  __device__ __forceinline__ BlockedFrag(int row, int hi) {
#pragma unroll
    for (int i = 0; i < 4; ++i) off[i] = uint32_t(row * 128 + (((2 * i) ^ hi ^ (row & 7)) << 4));
  }
  __device__ __forceinline__ uint32_t at(int blk, int k) const {
    return off[k & 3] + uint32_t(blk * 16 * 128 + (k >> 2) * kRows * 128);
  }
};

// D (16x8 f32) += A (16x16, row) * B (16x8, col).
template <typename T>
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<half>(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> one register of two 16-bit values (low half = x).
template <typename T> __device__ __forceinline__ uint32_t pack2(float x, float y);
template <> __device__ __forceinline__ uint32_t pack2<half>(float x, float y) {
  __half2 h = __floats2half2_rn(x, y);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float x, float y) {
  __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  return *reinterpret_cast<uint32_t*>(&h);
}

// One register of two 16-bit values -> two floats (x = low half).
template <typename T> __device__ __forceinline__ float2 unpack2(uint32_t w);
template <> __device__ __forceinline__ float2 unpack2<half>(uint32_t w) {
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
}
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t w) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w));
}

// Shared-memory tiles are [rows][D] of 16-bit elements, stored in 16-byte chunks whose index is XORed
// with (row % 8): the 8 rows one ldmatrix phase reads then hit 8 different bank groups (D >= 64).
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// tanh(x) = 1 - 2 / (e^2x + 1) from ex2 and rcp (absolute error ~1e-7, exact +-1 at saturation):
// a few instructions where tanhf inlines a long polynomial into every logit of the soft-cap path.
__device__ __forceinline__ float fast_rcp(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ float fast_tanh(float x) { return fmaf(-2.f, fast_rcp(fast_exp2(x * 2.8853900817779268f) + 1.f), 1.f); }

}  // namespace kvinfer::cuda
