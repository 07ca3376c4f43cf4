// Hopper attention building blocks: the 128-byte-swizzle tile layout and its wgmma descriptors,
// mbarrier / named-barrier / proxy-fence wrappers, register reallocation, the wgmma atoms, and the
// KVINFER_EXP_TRACE records (cuda/sm90/attention_kernel.cuh uses them).
#pragma once
#include <cstdint>
#include <utility>

#include <cute/arch/mma_sm90_desc.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <cute/arch/mma_sm90_gmma_ext.hpp>  // N = 80 (D 256's wide KV tile)

namespace kvinfer::detail::attn90 {

namespace gmma = cute::SM90::GMMA;

// ---- shared tiles: [rows][D] 16-bit elements as D / 64 column blocks of [rows][64] (128-byte
// rows), 16-byte chunk c of row r at chunk c ^ (r % 8): the 128-byte-swizzle canonical layout.
template <int kRows>
__device__ __forceinline__ uint32_t sw128(int r, int chunk) {
  return uint32_t((chunk >> 3) * kRows * 128 + r * 128 + (((chunk & 7) ^ (r & 7)) << 4));
}

// wgmma descriptor of a 128-byte-swizzled tile at a shared address (1024-byte aligned block base,
// plus in-row offsets for K steps). 8-row groups are 1024 bytes apart (SBO); LBO is the distance of
// 64-element column blocks, used by the MN-major (V) operand only.
__device__ __forceinline__ uint64_t make_desc(uint32_t saddr, uint32_t lbo_bytes) {
  cute::GmmaDescriptor d;
  d.bitfield.start_address_ = uint16_t(saddr >> 4);
  d.bitfield.leading_byte_offset_ = uint16_t(lbo_bytes >> 4);
  d.bitfield.stride_byte_offset_ = uint16_t(1024 >> 4);
  d.bitfield.base_offset_ = 0;
  d.bitfield.layout_type_ = uint8_t(gmma::LayoutType::B128);
  return d.desc_;
}

// ---- mbarriers
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Predicated inside the instruction: a C++ branch around it would be a divergent path, where the
// compiler's warpgroup bookkeeping then serialises every wgmma (C7520).
__device__ __forceinline__ void mbar_arrive_if(uint32_t bar, bool pred) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %1, 0;\n"
      "@p mbarrier.arrive.shared::cta.b64 _, [%0];\n"
      "}\n" ::"r"(bar),
      "r"(int(pred))
      : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// Arrives when all of this thread's earlier cp.async copies have landed (counted in the init count).
__device__ __forceinline__ void mbar_arrive_cp_async(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// Shared data written through the generic proxy (cp.async) is read next by wgmma (async proxy).
__device__ __forceinline__ void fence_proxy_async() {
#ifndef KVINFER_EXP_NO_FENCE
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

#ifdef KVINFER_EXP_TRACE
// Measurement records for ci/sm90_exp.cu, stored with a predicated store (no branch: C7520).
__device__ __forceinline__ void store_if(unsigned long long* dst, unsigned long long v, bool pred) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n@p st.global.u64 [%0], %1;\n}\n" ::"l"(dst), "l"(v),
               "r"(int(pred)) : "memory");
}
// Event timeline of CTA 0: [side][i] = clock64 << 8 | event code; side 0 is the producer's thread 0,
// side 1 consumer warpgroup 0's thread 0.
__device__ unsigned long long g_trace[2][4096];
__device__ __forceinline__ void trace(int side, int& n, int code, bool who) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%clock64;\n" : "=l"(t));
  store_if(&g_trace[side][n < 4096 ? n : 0], (t << 8) | unsigned(code), who && blockIdx.x == 0 && n < 4096);
  ++n;
}
#define KV_TRACE(side, code, who) trace(side, trace_n, code, who)
// Each CTA's first and last consumer event (globaltimer, ns; comparable across SMs): load balance.
__device__ unsigned long long g_span[1024][2];
__device__ __forceinline__ void trace_span(int which, bool who) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  store_if(&g_span[blockIdx.x < 1024 ? blockIdx.x : 0][which], t, who && blockIdx.x < 1024);
}
#define KV_SPAN(which, who) trace_span(which, who)
#else
#define KV_SPAN(which, who)
#define KV_TRACE(side, code, who)
#endif

template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs)); }
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs)); }

// ---- wgmma atoms (m64nNk16, fp32 accumulators): SS for S = Q K^T, RS for O += P V.
template <typename T, int N> struct Atoms;
#define KVINFER_SM90_ATOMS(T, TN, N)                                                          \
  template <> struct Atoms<T, N> {                                                           \
    using SS = gmma::MMA_64x##N##x16_F32##TN##TN##_SS<gmma::Major::K, gmma::Major::K>;       \
    using RS = gmma::MMA_64x##N##x16_F32##TN##TN##_RS<gmma::Major::K, gmma::Major::MN>;      \
  };
KVINFER_SM90_ATOMS(half, F16, 64)
KVINFER_SM90_ATOMS(half, F16, 80)
KVINFER_SM90_ATOMS(half, F16, 128)
KVINFER_SM90_ATOMS(half, F16, 192)
KVINFER_SM90_ATOMS(half, F16, 256)
KVINFER_SM90_ATOMS(__nv_bfloat16, BF16, 64)
KVINFER_SM90_ATOMS(__nv_bfloat16, BF16, 80)
KVINFER_SM90_ATOMS(__nv_bfloat16, BF16, 128)
KVINFER_SM90_ATOMS(__nv_bfloat16, BF16, 192)
KVINFER_SM90_ATOMS(__nv_bfloat16, BF16, 256)
#undef KVINFER_SM90_ATOMS

template <typename Op, int kRegs, size_t... I>
__device__ __forceinline__ void gmma_ss_impl(uint64_t da, uint64_t db, float (&d)[kRegs], bool acc,
                                             std::index_sequence<I...>) {
  Op::fma(da, db, d[I]..., acc ? gmma::ScaleOut::One : gmma::ScaleOut::Zero);
}
template <typename T, int N>
__device__ __forceinline__ void gmma_ss(uint64_t da, uint64_t db, float (&d)[N / 2], bool acc) {
  gmma_ss_impl<typename Atoms<T, N>::SS>(da, db, d, acc, std::make_index_sequence<N / 2>{});
}
template <typename Op, int kRegs, size_t... I>
__device__ __forceinline__ void gmma_rs_impl(const uint32_t (&a)[4], uint64_t db, float (&d)[kRegs],
                                             std::index_sequence<I...>) {
  Op::fma(a[0], a[1], a[2], a[3], db, d[I]..., gmma::ScaleOut::One);
}
template <typename T, int N>
__device__ __forceinline__ void gmma_rs(const uint32_t (&a)[4], uint64_t db, float (&d)[N / 2]) {
  gmma_rs_impl<typename Atoms<T, N>::RS>(a, db, d, std::make_index_sequence<N / 2>{});
}
template <int kRegs>
__device__ __forceinline__ void fence_regs(float (&r)[kRegs]) {
#pragma unroll
  for (int i = 0; i < kRegs; ++i) cute::warpgroup_fence_operand(r[i]);
}

}  // namespace kvinfer::detail::attn90
