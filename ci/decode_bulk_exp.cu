// Streaming probe for a Hopper decode loader (no attention math): each CTA streams the K and V rows of
// one (request, kv head, chunk) of a paged NHD cache [pages, 2, 16, 8, 128] (bf16, shuffled page ids)
// through shared-memory stages of 64-token tiles, reads every row back from shared memory (as the
// decode tile's fragment loads would) and reports the KV bandwidth. Two loaders:
//   bulk:    one 256-byte cp.async.bulk per row (thread i: row i % 64 of K or V), completion on the
//            stage's mbarrier (128 arrivals with their byte counts), rows 272 bytes apart (padding
//            keeps 8-row fragment reads off shared bank conflicts without a swizzle);
//   cpasync: the decode kernel's loader (16-byte cp.async, thread i: chunk i % 16 of 8 consecutive rows);
//   cpasync_hnd: the same over an HND cache;
//   page:    an HND cache [pages, 2, 8, 16, 128] instead, where a page's 16 rows of one head are one
//            contiguous 4 KB: one cp.async.bulk per page and K / V (8 per tile), rows 256 bytes apart;
//   tma4k / tma2k: the NHD cache through a 5-D TMA tensor map, one box per page and K / V of the
//            head's 16 rows (4 KB, no swizzle) or two 64-column boxes (2 KB each, 128-byte swizzle);
//   dense:   a dense [batch, 8, 2, L, 128] layout (what torch SDPA reads): one 16 KB copy per tile and K / V;
//   allheads: the NHD cache read a whole page at a time for all 8 heads (the 32 KB of K and of V are each
//            contiguous): one CTA per (request, chunk), one page per stage, two 32 KB bulk copies (the
//            loader of a decode CTA that serves every KV head of a request); its stage is the page as
//            stored, [16 tokens][8 heads][128], where one head's rows sit 2 KB apart: 8-way bank
//            conflicts for ldmatrix. Two conflict-free forms of the same stream:
//   allheads_tma:  four 16 KB TMA boxes per page (K / V x two 64-column halves) through a tensor map
//            whose dims run (column, token, head), so a box lands as [head][token][64] with 128-byte swizzle;
//   allheads_rows: 32 bulk copies of 2 KB per page (one token's 8 heads of K or V) into rows padded to
//            2 KB + 16 bytes;
//   allheads_ldsm: allheads' loader, its stage read back as a decode tile's K / V fragments would be
//            (ldmatrix.x4, rows = tokens 2 KB apart: the 8-way bank conflicts included).
// Each shape is timed two ways: single launches between events (launch overhead included), and
// back-to-back launches (reps / 4 in a row between two events: what a benchmark loop sees).
// Usage: decode_bulk_exp batch kv_len splits stages(2..6) mode(kModes below) ctas_per_sm [reps=200]
// (ctas_per_sm: shared memory is padded so that at most that many CTAs share an SM).
// nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a -O3 ci/decode_bulk_exp.cu -o decode_bulk_exp
#include <cuda.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <utility>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {
constexpr int kD = 128, kH = 8, kPage = 16, kTile = 64, kRowBytes = kD * 2, kPad = kRowBytes + 16;
constexpr int kStageBytes = 2 * kTile * kPad;

struct Params {
  const __nv_bfloat16* cache;
  const int* idx;
  int pages_per_req, kv_len, chunk, splits;
  int64_t dense_off;  // dense mode: this set's first element
  CUtensorMap tmap;   // tma modes
  unsigned* out;
};

__device__ __forceinline__ uint32_t saddr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void wait_parity(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nW: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra W;\n}\n" ::"r"(bar), "r"(parity)
      : "memory");
}

constexpr int kPadRow = kH * kRowBytes + 16;  // allheads_rows: a token's 8 heads, padded
template <int kMode>
__host__ __device__ constexpr int stage_bytes() {
  return kMode == 9 ? 2 * kPage * kPadRow : kMode >= 7 ? 2 * kPage * kH * kRowBytes : kStageBytes;
}

template <int S, int kMode>  // 0 cpasync, 1 bulk rows, 2 bulk pages (HND), 3 dense, 4 cpasync HND, 5 tma4k, 6 tma2k,
                             // 7 allheads, 8 allheads_tma, 9 allheads_rows, 10 allheads_ldsm
__global__ void __launch_bounds__(128) stream_kernel(const __grid_constant__ Params p) {
  constexpr bool kBulk = kMode > 0 && kMode != 4;
  constexpr bool kAll = kMode >= 7;
  constexpr int kSB = stage_bytes<kMode>(), kTileT = kAll ? kPage : kTile;  // bytes, tokens per stage
  extern __shared__ __align__(128) unsigned char sm[];
  const uint32_t bars = saddr(sm + S * kSB);
  const int tid = threadIdx.x;
  const int kvh = kAll ? 0 : blockIdx.x % kH, rest = kAll ? blockIdx.x : blockIdx.x / kH;
  const int split = rest % p.splits, req = rest / p.splits;
  const int begin = split * p.chunk, end = min(p.kv_len, begin + p.chunk);
  const int ntiles = end > begin ? (end - begin + kTileT - 1) / kTileT : 0;
  if (kBulk) {
    if (tid == 0)
      for (int s = 0; s < S; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 128;\n" ::"r"(bars + 8 * s));
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    __syncthreads();
  }
  const int kv = tid / kTile, row = tid % kTile;  // this thread's row of each tile (K or V)
  const int* ids = p.idx + int64_t(req) * p.pages_per_req;
  auto src_of = [&](int pos) {
    const int id = __ldg(ids + pos / kPage);
    return p.cache + ((int64_t(id) * 2 + kv) * kPage + pos % kPage) * (kH * kD) + int64_t(kvh) * kD;
  };
  auto issue = [&](int t) {
    const int s = t % S, pos = begin + t * kTile + row;
    const uint32_t dst = saddr(sm + s * kSB + (kv * kTile + row) * kPad);
    if (kMode == 8) {  // thread i < 4: box (half i % 2, K / V i / 2) of the page, 16 KB
      const uint32_t bar = bars + 8 * s;
      const int p0 = begin + t * kPage, half = tid & 1, pkv = (tid >> 1) & 1;
      const bool ok = tid < 4 && p0 < end;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(ok ? kPage * kH * 128 : 0) : "memory");
      if (ok) {
        const int id = __ldg(ids + p0 / kPage);
        const uint32_t pdst = saddr(sm + s * kSB + (pkv * 2 + half) * (kPage * kH * 128));
        asm volatile(
            "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(pdst),
            "l"(&p.tmap), "r"(half * 64), "r"(0), "r"(0), "r"(pkv), "r"(id), "r"(bar)
            : "memory");
      }
    } else if (kMode == 9) {  // thread i < 32: token i % 16 of the page, K / V i / 16, 2 KB
      const uint32_t bar = bars + 8 * s;
      const int p0 = begin + t * kPage, tok = tid % kPage, pkv = tid / kPage;
      const bool ok = tid < 2 * kPage && p0 + tok < end;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(ok ? kH * kRowBytes : 0) : "memory");
      if (ok) {
        const int id = __ldg(ids + p0 / kPage);
        const __nv_bfloat16* src = p.cache + ((int64_t(id) * 2 + pkv) * kPage + tok) * (kH * kD);
        const uint32_t pdst = saddr(sm + s * kSB + (pkv * kPage + tok) * kPadRow);
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(pdst),
                     "l"(src), "r"(kH * kRowBytes), "r"(bar)
                     : "memory");
      }
    } else if (kMode == 7 || kMode == 10) {  // thread 0: the page's K (32 KB), thread 1: its V
      const uint32_t bar = bars + 8 * s;
      const int p0 = begin + t * kPage, rows = tid < 2 ? max(0, min(kPage, end - p0)) : 0;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(rows * kH * kRowBytes) : "memory");
      if (rows > 0) {
        const int id = __ldg(ids + p0 / kPage);
        const __nv_bfloat16* src = p.cache + (int64_t(id) * 2 + tid) * (kPage * kH * kD);
        const uint32_t pdst = saddr(sm + s * kSB + tid * kPage * kH * kRowBytes);
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(pdst),
                     "l"(src), "r"(rows * kH * kRowBytes), "r"(bar)
                     : "memory");
      }
    } else if (kMode == 5 || kMode == 6) {  // thread i: page i % 4 of the tile, K / V (i / 4 % 2), half i / 8 (tma2k)
      const uint32_t bar = bars + 8 * s;
      const int nthr = kMode == 5 ? 8 : 16;
      const int pi = tid % 4, pkv = (tid / 4) % 2, half = tid / 8;
      const int ppos = begin + t * kTile + pi * kPage;
      const bool ok = tid < nthr && ppos < end;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(ok ? kPage * kRowBytes / (kMode == 5 ? 1 : 2) : 0) : "memory");
      if (ok) {
        const int id = __ldg(ids + ppos / kPage);
        const uint32_t pdst = saddr(sm + s * kSB + (pkv * kTile + pi * kPage) * kRowBytes + half * (kPage * 128));
        asm volatile(
            "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(pdst),
            "l"(&p.tmap), "r"(half * 64), "r"(kvh), "r"(0), "r"(pkv), "r"(id), "r"(bar)
            : "memory");
      }
    } else if (kMode == 3) {  // thread 0: K, thread 1: V
      const uint32_t bar = bars + 8 * s;
      const int p0 = begin + t * kTile, rows = tid < 2 ? max(0, min(kTile, end - p0)) : 0;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(rows * kRowBytes) : "memory");
      if (rows > 0) {
        const __nv_bfloat16* src = p.cache + p.dense_off + ((int64_t(req) * kH + kvh) * 2 + tid) * int64_t(p.kv_len) * kD + int64_t(p0) * kD;
        const uint32_t pdst = saddr(sm + s * kSB + tid * kTile * kRowBytes);
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(pdst),
                     "l"(src), "r"(rows * kRowBytes), "r"(bar)
                     : "memory");
      }
    } else if (kMode == 2) {  // thread i < 8: page i % 4 of the tile, K (i < 4) or V
      const uint32_t bar = bars + 8 * s;
      const int pi = tid % 4, pkv = tid / 4;
      const int ppos = begin + t * kTile + pi * kPage;
      const int rows = tid < 8 ? max(0, min(kPage, end - ppos)) : 0;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(rows * kRowBytes) : "memory");
      if (rows > 0) {
        const int id = __ldg(ids + ppos / kPage);
        const __nv_bfloat16* src = p.cache + ((int64_t(id) * 2 + pkv) * kH + kvh) * (kPage * kD);
        const uint32_t pdst = saddr(sm + s * kSB + (pkv * kTile + pi * kPage) * kRowBytes);
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(pdst),
                     "l"(src), "r"(rows * kRowBytes), "r"(bar)
                     : "memory");
      }
    } else if (kBulk) {
      const uint32_t bar = bars + 8 * s;
      const bool ok = pos < end;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(ok ? kRowBytes : 0) : "memory");
      if (ok)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                     "l"(src_of(pos)), "r"(kRowBytes), "r"(bar)
                     : "memory");
    } else {  // the decode kernel's loader: thread i copies chunk i % 16 of 8 consecutive rows of K and of V
      const int c = tid % 16, r0 = (tid / 16) * 8;
#pragma unroll
      for (int kv2 = 0; kv2 < 2; ++kv2)
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const int q = begin + t * kTile + r0 + i;
          if (q < end) {
            const int id = __ldg(ids + q / kPage);
            const int64_t e = kMode == 4 ? ((int64_t(id) * 2 + kv2) * kH + kvh) * (kPage * kD) + (q % kPage) * kD
                                         : ((int64_t(id) * 2 + kv2) * kPage + q % kPage) * (kH * kD) + int64_t(kvh) * kD;
            const uint32_t d = saddr(sm + s * kSB + (kv2 * kTile + r0 + i) * kPad + 16 * c);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(p.cache + e + 8 * c) : "memory");
          }
        }
      asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
  };
  for (int t = 0; t < S - 1; ++t)
    if (t < ntiles || !kBulk) {
      if (t < ntiles) issue(t);
      else asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
  unsigned acc = 0;
  for (int t = 0; t < ntiles; ++t) {
    const int s = t % S;
    if (kBulk) {
      wait_parity(bars + 8 * s, (t / S) & 1);
    } else {
      asm volatile("cp.async.wait_group %0;\n" ::"n"(S - 2) : "memory");
      __syncthreads();
    }
    // Stage s + 1 back to the loader: every thread is past its reads of tile t - 1 (same stage as t + S - 1).
    if (kBulk) __syncthreads();
    if (t + S - 1 < ntiles) issue(t + S - 1);
    else if (!kBulk) asm volatile("cp.async.commit_group;\n" ::: "memory");
    // Read the tile back: thread i reads 16-byte chunk i % 16 of rows i / 16 + 8 j (both K and V).
    const unsigned char* st = sm + s * kSB;
    if constexpr (kMode == 10) {  // warp w: heads 2w, 2w + 1; per head and K / V 8 ldmatrix.x4 (16 tokens x 256 B)
      const int lane = tid & 31, w = tid >> 5;
      const int tok = (lane & 7) + 8 * ((lane >> 4) & 1), half = (lane >> 3) & 1;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh)
#pragma unroll
        for (int kv2 = 0; kv2 < 2; ++kv2)
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const uint32_t a = saddr(st + kv2 * (kPage * kH * kRowBytes) + tok * (kH * kRowBytes) + (2 * w + hh) * kRowBytes +
                                     (2 * i + half) * 16);
            uint32_t r0, r1, r2, r3;
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                         : "r"(a));
            acc ^= r0 ^ r1 ^ r2 ^ r3;
          }
    } else if constexpr (kAll) {  // 64 KB: 32 chunks of 16 bytes per thread
#pragma unroll 8
      for (int j = 0; j < kSB / (16 * 128); ++j) {
        const uint4 x = *reinterpret_cast<const uint4*>(st + (j * 128 + tid) * 16);
        acc ^= x.x ^ x.y ^ x.z ^ x.w;
      }
    } else {
#pragma unroll
      for (int j = 0; j < 2 * kTile / 8; ++j) {
        const uint4 x = *reinterpret_cast<const uint4*>(st + (tid / 16 + 8 * j) * kPad + (tid % 16) * 16);
        acc ^= x.x ^ x.y ^ x.z ^ x.w;
      }
    }
  }
  if (acc == 0x9e3779b9u) p.out[blockIdx.x] = acc;  // keeps the reads; practically never stores
}

float g_b2b = 0;  // back-to-back time of the last run()

template <int S, int kMode>
float run(const Params& p, int grid, int smem, int reps) {
  auto k = stream_kernel<S, kMode>;
  cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  for (int i = 0; i < 20; ++i) k<<<grid, 128, smem>>>(p);
  cudaEventRecord(a);
  for (int i = 0; i < reps; ++i) k<<<grid, 128, smem>>>(p);
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms_all;
  cudaEventElapsedTime(&ms_all, a, b);
  g_b2b = ms_all * 1e3f / reps;
  std::vector<float> ts;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    k<<<grid, 128, smem>>>(p);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms;
    cudaEventElapsedTime(&ms, a, b);
    ts.push_back(ms);
  }
  std::sort(ts.begin(), ts.end());
  return ts[reps / 2] * 1e3f;
}
// Mode names (argv[5]) in kMode order, and run<S, kMode> for stages 2..6 by [S - 2][kMode].
constexpr const char* kModes[] = {"cpasync", "bulk",     "page",         "dense",         "cpasync_hnd",  "tma4k",
                                  "tma2k",   "allheads", "allheads_tma", "allheads_rows", "allheads_ldsm"};
constexpr int kNumModes = sizeof(kModes) / sizeof(kModes[0]);
using RunFn = float (*)(const Params&, int, int, int);
template <int S, int... M>
constexpr std::array<RunFn, sizeof...(M)> runs_for(std::integer_sequence<int, M...>) {
  return {run<S, M>...};
}
const std::array<RunFn, kNumModes> kRuns[] = {
    runs_for<2>(std::make_integer_sequence<int, kNumModes>{}), runs_for<3>(std::make_integer_sequence<int, kNumModes>{}),
    runs_for<4>(std::make_integer_sequence<int, kNumModes>{}), runs_for<5>(std::make_integer_sequence<int, kNumModes>{}),
    runs_for<6>(std::make_integer_sequence<int, kNumModes>{})};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: %s batch kv_len splits stages mode ctas_per_sm [reps]\n", argv[0]);
    return 2;
  }
  const int B = atoi(argv[1]), L = atoi(argv[2]), splits = atoi(argv[3]), S = atoi(argv[4]);
  int mode = -1;
  for (int m = 0; m < kNumModes; ++m)
    if (strcmp(argv[5], kModes[m]) == 0) mode = m;
  if (mode < 0 || S < 2 || S > 6) {
    fprintf(stderr, "mode: one of cpasync bulk page dense cpasync_hnd tma4k tma2k allheads allheads_tma allheads_rows "
                    "allheads_ldsm; stages: 2..6\n");
    return 2;
  }
  const int per_sm = atoi(argv[6]), reps = argc > 7 ? atoi(argv[7]) : 200;
  const int ppr = (L + kPage - 1) / kPage;
  // Enough cache copies that one call's pages are not in L2 from the previous call: 4 rotating sets.
  const int sets = 4, pages = B * ppr * sets;
  __nv_bfloat16* cache;
  int *idx, *all_idx;
  unsigned* out;
  cudaMalloc(&cache, size_t(pages) * 2 * kPage * kH * kD * 2);
  cudaMemset(cache, 0, size_t(pages) * 2 * kPage * kH * kD * 2);
  std::vector<int> h(pages);
  for (int i = 0; i < pages; ++i) h[i] = i;
  std::shuffle(h.begin(), h.end(), std::mt19937(1));
  cudaMalloc(&all_idx, pages * 4);
  cudaMemcpy(all_idx, h.data(), pages * 4, cudaMemcpyHostToDevice);
  idx = all_idx;
  cudaMalloc(&out, 1 << 20);
  const int gran = mode >= 7 ? kPage : kTile;  // chunks of whole pages / tiles
  const int chunk = ((L + splits - 1) / splits + gran - 1) / gran * gran;
  Params p{cache, idx, ppr, L, chunk, splits, 0, {}, out};
  if (mode == 5 || mode == 6 || mode == 8) {  // [page, kv, slot, head, D] as 5-D (innermost first)
    using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q;
    cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    // allheads_tma: dims (column, token, head, kv, page): a box lands as [head][token][64 columns].
    const bool ah = mode == 8;
    const cuuint64_t dims[5] = {kD, ah ? cuuint64_t(kPage) : kH, ah ? cuuint64_t(kH) : kPage, 2, cuuint64_t(pages)};
    const cuuint64_t strides[4] = {ah ? cuuint64_t(kH) * kD * 2 : kD * 2, ah ? kD * 2 : cuuint64_t(kH) * kD * 2,
                                   cuuint64_t(kPage) * kH * kD * 2, cuuint64_t(2) * kPage * kH * kD * 2};
    const cuuint32_t box[5] = {mode == 5 ? 128u : 64u, ah ? cuuint32_t(kPage) : 1u, ah ? cuuint32_t(kH) : kPage, 1, 1},
                     es[5] = {1, 1, 1, 1, 1};
    const CUresult r = reinterpret_cast<Encode>(fn)(&p.tmap, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 5, cache, dims, strides, box, es,
                                                    CU_TENSOR_MAP_INTERLEAVE_NONE,
                                                    mode == 5 ? CU_TENSOR_MAP_SWIZZLE_NONE : CU_TENSOR_MAP_SWIZZLE_128B,
                                                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) { fprintf(stderr, "tensor map: %d\n", int(r)); return 1; }
  }
  const int grid = mode >= 7 ? B * splits : B * splits * kH;
  int smem = S * (mode == 9 ? 2 * kPage * kPadRow : mode >= 7 ? 2 * kPage * kH * kRowBytes : kStageBytes) + 8 * S;
  const int cap = 227 * 1024 / per_sm - 1024;  // 1 KB per CTA reserved by the system
  smem = std::max(smem, std::min(cap, 227 * 1024));
  // Rotate over the sets: each launch reads a set the previous launches did not just read.
  float us = 0;
  std::vector<float> per, per_b2b;
  for (int s = 0; s < sets; ++s) {
    p.idx = all_idx + s * B * ppr;
    p.dense_off = int64_t(s) * B * L * kH * kD * 2;
    us = kRuns[S - 2][mode](p, grid, smem, reps / sets);
    per.push_back(us), per_b2b.push_back(g_b2b);
  }
  std::sort(per.begin(), per.end());
  std::sort(per_b2b.begin(), per_b2b.end());
  us = per[per.size() / 2];
  const float b2b = per_b2b[per_b2b.size() / 2];
  const double bytes = double(B) * L * kH * kD * 2 * 2;
  printf("%-8s B=%d L=%d splits=%d (chunk %d, %d CTAs) stages=%d smem=%d KB: single %.1f us, back-to-back %.1f us (%.2f TB/s) (%s)\n",
         argv[5], B, L, splits, chunk, grid, S, smem / 1024, us, b2b, bytes / b2b / 1e6,
         cudaGetErrorString(cudaGetLastError()));
  return 0;
}
