// FA2-class attention kernel (sm80+; also the fallback on sm90): mma.sync m16n8k16 with ldmatrix from
// swizzled shared memory, a multi-stage cp.async pipeline for K/V, online softmax in registers.
//
// One kernel serves every path (single/batch, prefill/decode, paged/ragged/contiguous KV): a CTA
// takes work items (AttnParams in cpp/src/launch.h) and, for each, a tile of kRows "packed rows"
// (query token x query head of one KV head's group, so GQA of any group size fills the MMA's M
// dimension) against a range of KV tokens. Warps split the rows (prefill tile) or the KV tile (decode tile).
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common/attn_job.cuh"
#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/types.cuh"
#include "launch.h"
#include "sm80/split_merge.cuh"

namespace kvinfer::detail::attn {

using namespace kvinfer::cuda;

template <int D, AttnTile kTile>
struct Config {
  // Warps along the query rows x warps along the KV tile. The decode tile (16 rows) gives each of its
  // 4 warps a quarter of every KV tile (own softmax state, merged through shared memory at the end):
  // one warp per CTA ran latency-bound at about a third of cuDNN's bandwidth (H200, 2026-11-21).
  // The lean decode tile (2 KV warps, 32-token KV tiles, twice the CTAs per SM) has finer jobs: batches
  // that fill the GPU without a split run 0.98x cuDNN with it against 0.89-0.95x with the wide one
  // (64 / 128 / 256 x 2048, H200, 2026-11-21); few long requests need the wide tile's deeper streams.
  static constexpr bool kLean = kTile == AttnTile::kDecodeLean;
  static constexpr bool kDecode = kTile == AttnTile::kDecode || kLean;
  static constexpr int kWarpsQ = kDecode ? 1 : 4;
  static constexpr int kWarpsKV = kLean ? 2 : kDecode ? 4 : 1;
  static constexpr int kWarps = kWarpsQ * kWarpsKV;
  static constexpr int kThreads = kWarps * 32;
  // 16-row MMA tiles per warp (attn_tile_rows): two in the D=64/128 prefill tile, where each K/V
  // fragment read from shared memory then feeds two MMAs; one at D 256, where O takes the registers.
  static constexpr int kRows = attn_tile_rows(kTile, D);
  static constexpr int kMT = kRows / (kWarpsQ * 16);
  // KV tile (attn_tile_kv) and pipeline depth: decode is memory-bound and keeps kStages - 1 tiles in
  // flight. Prefill takes 64-token tiles at D 128 / 256 (128 at D 64): against 32, 1.07x / 1.03-1.05x
  // (fewer barriers and Q fragment reloads per MMA; H200, 2026-11-21). A software-pipelined variant
  // (two 32-token S tiles live, the next S = Q K^T issued with this step's softmax, K and V in
  // separate cp.async groups) ran 0.90x of this: at 255 registers ptxas re-serialises the softmax
  // behind the MMAs and spills more.
  static constexpr int kKV = attn_tile_kv(kTile, D);
  static constexpr int kKVW = kKV / kWarpsKV;  // KV rows per warp
  // kSplitKV (prefill at D 256): one K and one V buffer, loaded in separate phases (V_t during S_t,
  // K_t+1 during P V_t; FA2's schedule) so that two 64-row CTAs fit an SM and one's prologue and
  // epilogue overlap the other's MMAs. A 128-row CTA over two K/V stages (192 KB) ran alone on its
  // SM: 0.91-0.97x torch flash, most of the loss fixed per CTA (H200, 2026-11-21, ci/ncu_prefill.sh).
  static constexpr bool kSplitKV = !kDecode && D == 256;
  static constexpr int kStages = kDecode ? (D == 64 ? 4 : 2) : kSplitKV ? 1 : 2;
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static constexpr int kSmemQ = kRows * D * 2;
  static constexpr int kSmemKVStage = kKV * D * 2;
  // Decode tiles keep each K / V stage as D / 64 column blocks of [kKV][64] (128-byte rows, BlockedFrag)
  // instead of [kKV][D] rows (SwizzledFrag, the prefill tile's): the row offsets no longer depend on D and
  // the sm90 D 128 wide tile's 16-byte spill goes (speed unchanged, H200, 2026-11-22); it is also the layout
  // TMA boxes with 128-byte swizzle write. The prefill tile ran 0.98x with it (D 128), so it keeps rows.
  static constexpr bool kBlockedKV = kDecode;
  static constexpr int kSmemBytes = kSmemQ + 2 * kStages * kSmemKVStage;
  // Decode is latency-bound per CTA: registers are held to 3 CTAs per SM (lean: 6) at D <= 128.
  static constexpr int kMinBlocks = kDecode && D <= 128 ? (kLean ? 6 : 3) : kSplitKV ? 2 : 1;
  // Cross-warp merge (decode tile): per warp O (16 x D floats), m and l, over the K/V stages.
  // Row stride (floats) of the merge buffer: D + 8 puts consecutive rows 8 banks apart. With D, the 8
  // rows a warp stores or loads at once sat on the same banks (8-way conflicts: 0.43 us to store the
  // states at D 128, H200, ci/exp_fa2/dtrace.py).
  static constexpr int kMergeStride = D + 8;
  static constexpr int kSmemMerge = kWarpsKV * 16 * (kMergeStride + 2) * 4;
  static_assert(kWarpsKV == 1 || kSmemMerge <= 2 * kStages * kSmemKVStage, "merge buffer fits in the K/V stages");
  static_assert(kKVW % 16 == 0 && D % 16 == 0 && D >= 64, "tile shape");
  // The sm80 build runs on A100s: at most 163 KB of shared memory per block there (the D 256 decode
  // tile's 136 KB exceeds the 99 KB of sm86 / sm89 parts; the launch then reports the CUDA error).
  static_assert(kSmemBytes <= 163 * 1024, "shared memory of an sm80 block");
  static_assert(kThreads % kChunks == 0, "loader shape: each thread copies one chunk of its rows");
};

// kGeneral: every KV form and option. false (prefill tile only, picked by the launcher): contiguous or
// ragged KV without a custom mask, so the page-id loader and the mask-bit path compile away; at 255
// registers that is what lets ptxas keep the KV loop's state: 1.01-1.03x against 0.94-0.96x torch flash
// at D 128, 0.92-1.01x against 0.84-0.93x at D 256 (H200, 2026-11-21, ci/exp_fa2 `plain`).
template <int D, typename T, AttnTile kTile, bool kGeneral>
__global__ void __launch_bounds__(Config<D, kTile>::kThreads, Config<D, kTile>::kMinBlocks)
    attention_kernel(const __grid_constant__ AttnParams p) {
  using C = Config<D, kTile>;
  constexpr int kRows = C::kRows, kKV = C::kKV, kStages = C::kStages, kNT = C::kThreads, kMT = C::kMT;
  constexpr int kKVW = C::kKVW;
  constexpr int kNS = kKVW / 8;  // n-tiles of S per MMA tile
  constexpr int kNO = D / 8;     // n-tiles of O per MMA tile
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = reinterpret_cast<T*>(smem_raw + C::kSmemQ);
  T* sV = sK + kStages * kKV * D;

  const int page_size = kGeneral ? p.page_size : 0;  // 0: contiguous / ragged KV
  const uint8_t* const mask_bits = kGeneral ? p.mask_bits : nullptr;
  const int tid = threadIdx.x, lane = tid & 31;
  const int wq = (tid >> 5) % C::kWarpsQ, wk = (tid >> 5) / C::kWarpsQ;  // this warp's row and KV slots
  // A flat grid of grid_x x num_kv_heads CTAs: CTA b takes work item work0 of kv head kvh, then work0 +
  // grid_x, ..., in sections of hs heads (section_job's order): all heads side by side (hs >= the head
  // count), or a power of two that divides it, one division either way (the general section_job cost
  // the D 256 tile 2-3% at 255 registers, H200, 2026-11-22). Batch prefill plans give hs (head_section:
  // the planner sorts items heaviest first and takes the fewest heads per section that keep the grid's
  // tail short). Else, decode and causal prefill at D 256: the KV head fastest, so the heads of one work
  // item run side by side (a paged NHD cache's pages, all heads of a token adjacent, are read from DRAM
  // in one short window; causal items, heaviest first, start in that order). Other prefill: the work
  // item fastest (hs 1), so a request's query tiles run side by side and share its K/V in L2:
  // non-causal 1.03-1.09x at seqlen 16384 (H200, 2026-11-21, ci/ab_fa2.sh).
  const unsigned grid_x = gridDim.x / unsigned(p.num_kv_heads);
  const bool head_fastest = C::kDecode || (p.causal && D == 256);
  const int hs = p.head_section > 0 ? p.head_section : head_fastest ? p.num_kv_heads : 1;
  int work0, kvh;
  if (hs >= p.num_kv_heads) {
    work0 = int(blockIdx.x / unsigned(p.num_kv_heads));
    kvh = int(blockIdx.x) - work0 * p.num_kv_heads;
  } else {
    const int shift = 31 - __clz(hs);  // hs = 1 << shift
    const unsigned span = grid_x << shift, sec = blockIdx.x / span, rem = blockIdx.x - sec * span;
    work0 = int(rem >> shift);
    kvh = int((sec << shift) | (rem & unsigned(hs - 1)));
  }
  const int work_step = int(grid_x);
  const int group = p.group;
  const float log2e = 1.4426950408889634f;
  const bool cap = p.soft_cap > 0.f;
  // Logits in the log2 domain: s * sm_scale * log2(e), or cap * tanh(s * sm_scale / cap) * log2(e).
  const float pre = cap ? p.sm_scale / p.soft_cap : p.sm_scale * log2e;
  const float post = cap ? p.soft_cap * log2e : 1.f;
  // Without a cap the scale is applied in the exponent (fused); with it, logits are transformed first.
  const float scale = cap ? 1.f : pre;

  // K/V loader shape: each thread copies chunk lc0 of kLoadRows consecutive rows lrow0 + i, so its
  // rows of a paged cache lie in at most two pages when pages hold at least kLoadRows tokens.
  constexpr int kLoadRows = kKV * C::kChunks / kNT;
  static_assert(kKV * C::kChunks % kNT == 0 && kNT % C::kChunks == 0, "loader rows");
  const int lrow0 = (tid / C::kChunks) * kLoadRows;
  const int lc0 = tid % C::kChunks;
  // Swizzled chunk of row lrow0 + i is lcx ^ (i & 7): lrow0 is a multiple of kLoadRows (blocked stages:
  // chunk (lcx % 8) ^ (i & 7) of the row in column block lc0 / 8).
  const int lcx = lc0 ^ (lrow0 & 7);
  constexpr uint32_t kKVRowBytes = C::kBlockedKV ? 128u : uint32_t(D) * 2u;  // K / V row stride in a stage
  // Byte offset of this thread's first K / V row (and, blocked, its column block) within a stage.
  const uint32_t lrow_off = C::kBlockedKV ? uint32_t(lrow0 * 128 + (lc0 >> 3) * kKV * 128) : uint32_t(lrow0 * D) * 2u;

  // The first job loads alongside the count (a plan's work array holds grid_x items), before the wait
  // for the previous kernel (programmatic launch: they are the plan's, written before that kernel ran).
  Job job;
  load_job(p, work0, job);
  const int num_work = p.work ? *p.num_work : p.implicit_qo_tiles * p.implicit_splits;
  pdl_wait();
  for (int w = work0; w < num_work; w += work_step) {
    if (w != work0) load_job(p, w, job);
    const int packed_rows = job.qo_len * group;
    const int row0 = job.qo_tile * kRows;
    if (row0 >= packed_rows) continue;
    const int offset = job.kv_len - job.qo_len;  // bottom-right alignment of queries
    // Query tokens of this tile: first and last.
    const int qa = row0 / group, qb = (min(row0 + kRows, packed_rows) - 1) / group;
    int kv_lo = job.kv_begin, kv_hi = min(job.kv_end, job.kv_len);
    if (p.causal) kv_hi = min(kv_hi, qb + offset + 1);
    if (p.window_left >= 0) kv_lo = max(kv_lo, qa + offset - p.window_left);
    const int first_tile = kv_lo > job.kv_begin ? (kv_lo - job.kv_begin) / kKV : 0;
    const int tile_start = job.kv_begin + first_tile * kKV;
    const int num_tiles = kv_hi > tile_start ? (kv_hi - tile_start + kKV - 1) / kKV : 0;

    __syncthreads();  // the previous job's last reads of sQ/sK/sV are done
    // ---- Q tile -> shared (zero rows past the end): thread copies chunk lc0 of rows tid / kChunks + i * kQStep
    constexpr int kQStep = kNT / C::kChunks;
    static_assert(kRows % kQStep == 0, "Q loader rows");
#pragma unroll
    for (int i = 0; i < kRows / kQStep; ++i) {
      const int r = tid / C::kChunks + i * kQStep;
      const int pr = row0 + r;
      const bool ok = pr < packed_rows;
      const int qi = div_group(p, pr);
      const int tok = ok ? job.qo_begin + qi : 0;
      const int head = kvh * group + (ok ? pr - qi * group : 0);
      const T* src = static_cast<const T*>(p.q) + int64_t(tok) * p.q_stride_n + int64_t(head) * p.q_stride_h + lc0 * 8;
      cp_async_16(sQ + swz<D>(r, lc0), ok ? src : static_cast<const T*>(p.q), ok);
    }
    cp_async_commit();

    // Page ids of the loader's rows of the next tile to load, fetched one iteration ahead so the
    // dependent index load never stalls the copy issue (paged KV only).
    // (The prefill tile loads them at use: four warps hide the latency, and registers are short there.)
    // Pages of at least kLoadRows tokens (the common case): ids[0] and ids[1] are the two pages a
    // thread's rows can touch, slots[0] the first row's slot; smaller pages: an id per row.
    constexpr bool kPrefetch = C::kDecode;
    const bool two_pages = page_size >= kLoadRows;
    int ids[kLoadRows], slots[kLoadRows];
    bool bad_page = false;  // a device page id outside [0, num_pages): the job's rows become NaN
    auto fetch_ids = [&](int t) {
      if (page_size <= 0) return;
      const int pos0 = tile_start + t * kKV + lrow0;
      int pg = pos0 / (kGeneral ? page_size : 1), sl = pos0 - pg * page_size;  // one division per tile (plain build: never run)
      // The id of page `page`, whose first row this thread uses sits at `pos`. Branch-free: rows past
      // the end read the request's first id (it has one: kv_hi > 0 here); never read out of range.
      auto id_at = [&](int page, int pos) {
        const bool in = pos < kv_hi;
        const int id = __ldg(p.kv_indices + job.kv_base + (in ? page : 0));
        const bool ok = unsigned(id) < unsigned(p.num_pages);
        bad_page |= in && !ok;
        return ok ? id : 0;
      };
      if (two_pages) {
        ids[0] = id_at(pg, pos0);
        ids[1] = id_at(pg + 1, pos0 + page_size - sl);
        slots[0] = sl;
        return;
      }
#pragma unroll
      for (int i = 0; i < kLoadRows; ++i) {
        if (i > 0 && ++sl == page_size) sl = 0, ++pg;
        ids[i] = id_at(pg, pos0 + i);
        slots[i] = sl;
      }
    };
    // Per-job loader constants: the thread's head/chunk base pointers.
    const T* k_head = static_cast<const T*>(p.k) + int64_t(kvh) * p.k_stride_h + lc0 * 8;
    const T* v_head = static_cast<const T*>(p.v) + int64_t(kvh) * p.v_stride_h + lc0 * 8;
    const int64_t kst = p.k_stride_tok, vst = p.v_stride_tok;
    // Decode tiles read each K / V byte once (prefill tiles re-read K / V across query tiles through L2), so
    // their lines go first when L2 needs room (readers of shared pages running at the same time still hit):
    // bench_decode 16 x 2048 38.7-38.9 -> 37.7-37.8 us, 1 x 32768 42.0-42.3 -> 41.3-41.6, lean 64 x 2048
    // 126.3-126.9 -> 124.9-125.7 (H200, 2026-11-22, ci/ab_fa2.sh, three rounds).
    const uint64_t kv_policy = C::kDecode ? l2_evict_first() : 0;
    // K and / or V rows of tile t (the split-phase tile loads them apart; the others together).
    auto load_kv = [&](int t, bool do_k = true, bool do_v = true) {
      const uint32_t stage_off = uint32_t((t % kStages) * kKV * D) * 2u;
      const uint32_t dk = smem_addr(sK) + stage_off + lrow_off;
      const uint32_t dv = smem_addr(sV) + stage_off + lrow_off;
      const int pos0 = tile_start + t * kKV + lrow0;
      if (!kPrefetch) fetch_ids(t);
      auto copy = [&](int i, const T* sk, const T* sv) {
        const bool ok = pos0 + i < kv_hi;
        const uint32_t soff = C::kBlockedKV ? uint32_t(i * 128 + (((lcx & 7) ^ (i & 7)) << 4))
                                            : uint32_t(i * D + ((lcx ^ (i & 7)) << 3)) * 2u;
        if constexpr (C::kDecode) {
          if (do_k) cp_async_16(dk + soff, ok ? sk : k_head, ok, kv_policy);
          if (do_v) cp_async_16(dv + soff, ok ? sv : v_head, ok, kv_policy);
        } else {
          if (do_k) cp_async_16(dk + soff, ok ? sk : k_head, ok);
          if (do_v) cp_async_16(dv + soff, ok ? sv : v_head, ok);
        }
      };
      if (page_size > 0 && !two_pages) {  // small pages: an id per row
#pragma unroll
        for (int i = 0; i < kLoadRows; ++i)
          copy(i, k_head + int64_t(ids[i]) * p.k_stride_page + int64_t(slots[i]) * kst,
               v_head + int64_t(ids[i]) * p.v_stride_page + int64_t(slots[i]) * vst);
        return;
      }
      // Row i reads (i < cross ? a : b) + i * stride: ragged KV and the first page from a, the
      // second page from b (based so that the same step applies).
      const T *ka, *kb, *va, *vb;
      int cross = kLoadRows;
      if (page_size <= 0) {
        const int64_t tok0 = int64_t(job.kv_base) + pos0;  // ragged: the row's token index
        ka = kb = k_head + tok0 * kst, va = vb = v_head + tok0 * vst;
      } else {
        const int sl = slots[0];
        cross = page_size - sl;
        ka = k_head + int64_t(ids[0]) * p.k_stride_page + sl * kst;
        kb = k_head + int64_t(ids[1]) * p.k_stride_page - cross * kst;
        va = v_head + int64_t(ids[0]) * p.v_stride_page + sl * vst;
        vb = v_head + int64_t(ids[1]) * p.v_stride_page - cross * vst;
      }
#pragma unroll
      for (int i = 0; i < kLoadRows; ++i) copy(i, (i < cross ? ka : kb) + i * kst, (i < cross ? va : vb) + i * vst);
    };
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < num_tiles) {
        if (kPrefetch) fetch_ids(s);
        load_kv(s);
      }
      cp_async_commit();
    }
    if (kPrefetch && kStages - 1 < num_tiles) fetch_ids(kStages - 1);
    if constexpr (C::kSplitKV) {
      if (num_tiles > 0) load_kv(0, true, false);
      cp_async_commit();
    }

    float o[kMT][kNO][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int n = 0; n < kNO; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
    float m[kMT][2], l[kMT][2];
    // This thread's rows: g and g + 8 of each of its warp's MMA tiles, and their query tokens.
    const int g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;

    // ldmatrix offsets: Q (A operand: rows lane % 16, chunk half lane / 16), K (B operand: rows
    // lane % 8 + 8 * (lane / 16), chunk half (lane / 8) % 2), V (B operand, transposed: rows
    // lane % 8 + 8 * ((lane / 8) % 2), chunk half lane / 16).
    const SwizzledFrag<D> fq(lane & 15, lane >> 4);
    using KVFrag = std::conditional_t<C::kBlockedKV, BlockedFrag<kKV>, SwizzledFrag<D>>;
    const KVFrag fk((lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
    const KVFrag fv((lane & 7) + (((lane >> 3) & 1) << 3), lane >> 4);

    for (int t = 0; t < num_tiles; ++t) {
      if constexpr (C::kSplitKV) {
        cp_async_wait<0>();
        __syncthreads();  // K_t is in; every warp is done with V_t-1
        load_kv(t, false, true);
      } else {
        cp_async_wait<kStages - 2>();
        __syncthreads();
        if (t + kStages - 1 < num_tiles) {
          load_kv(t + kStages - 1);
          if (kPrefetch && t + kStages < num_tiles) fetch_ids(t + kStages);
        }
      }
      cp_async_commit();
      // Shared addresses of this warp's Q rows and of its KV rows in this tile's stage.
      const uint32_t q_base = smem_addr(sQ) + uint32_t(wq * kMT * 16 * D) * 2u;
      const uint32_t kv_off = uint32_t((t % kStages) * kKV * D) * 2u + uint32_t(wk * kKVW) * kKVRowBytes;
      const uint32_t k_base = smem_addr(sK) + kv_off, v_base = smem_addr(sV) + kv_off;
      const int base = tile_start + t * kKV + wk * kKVW;

      // ---- S = Q K^T (16 x kKV per MMA tile); each K fragment feeds kMT MMAs. At D 64 / 256 all of a
      // k-step's fragments load before its MMAs: ptxas then spills less (D 64: 4 against 44 bytes) and
      // issues the loads earlier (D 256: 1.007x); at D 128 that ran 0.99x (H200, 2026-11-21, ci/ab_fa2.sh).
      float s[kMT][kNS][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int n = 0; n < kNS; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
      constexpr bool kFragsFirst = !C::kDecode && D != 128;  // decode tiles keep the order they were tuned with
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[kMT][4], b[kNS / 2][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) ldmatrix_x4(a[mt], q_base + fq.at(mt, kk));
        if constexpr (kFragsFirst)
#pragma unroll
          for (int j = 0; j < kNS / 2; ++j) ldmatrix_x4(b[j], k_base + fk.at(j, kk));
#pragma unroll
        for (int j = 0; j < kNS / 2; ++j) {
          if constexpr (!kFragsFirst) ldmatrix_x4(b[j], k_base + fk.at(j, kk));
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma_16816<T>(s[mt][2 * j], a[mt], b[j][0], b[j][1]);
            mma_16816<T>(s[mt][2 * j + 1], a[mt], b[j][2], b[j][3]);
          }
        }
      }

      if constexpr (C::kSplitKV) {
        cp_async_wait<0>();
        __syncthreads();  // V_t is in; every warp is done with K_t
        if (t + 1 < num_tiles) load_kv(t + 1, true, false);
        cp_async_commit();
      }

      // ---- logits transform and mask
      const bool need_mask = base + kKVW > kv_hi || base < kv_lo || mask_bits ||
                             (p.causal && base + kKVW - 1 > qa + offset) ||
                             (p.window_left >= 0 && base < qb + offset - p.window_left);
      if (cap || need_mask) {  // interior tiles without a cap skip this (scale is fused into exp2)
        // The cap and the range mask are separate passes of straight-line code (a branch per element
        // cost the sm90 kernel's masked tiles 2.5x an interior tile's softmax).
        if (cap) {
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int n = 0; n < kNS; ++n)
#pragma unroll
              for (int i = 0; i < 4; ++i) s[mt][n][i] = fast_tanh(s[mt][n][i] * pre) * post;
        }
        if (need_mask) {
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              // Relative to the thread's first key base + 2 tq: element (n, e) is key 8 n + e.
              const int qi = div_group(p, row0 + (wq * kMT + mt) * 16 + g + 8 * h);
              int lo, hi;
              key_range(p, qi, job.qo_len, offset, kv_lo, kv_hi, base + 2 * tq, lo, hi);
#pragma unroll
              for (int n = 0; n < kNS; ++n)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                  const float x = s[mt][n][2 * h + e];
                  s[mt][n][2 * h + e] = (8 * n + e >= lo && 8 * n + e <= hi) ? x : -INFINITY;
                }
            }
        }
        // Custom mask (rare): a row's bits of this thread's keys gathered in a loop (compact code: the
        // prologue and loop stay in the instruction cache), then applied to the allowed keys.
        if (need_mask && mask_bits) {
          const int64_t req_bit0 = p.req_mask_offset ? p.req_mask_offset[job.request] : 0;
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int qi = div_group(p, row0 + (wq * kMT + mt) * 16 + g + 8 * h);
              if (qi >= job.qo_len) continue;  // all keys masked above
              const int k0 = base + 2 * tq;
              const int64_t bit0 = req_bit0 + int64_t(qi) * job.kv_len + k0;
              uint32_t keep = 0;
#pragma unroll 1
              for (int j = 0; j < 2 * kNS; ++j) {
                const int off = 8 * (j >> 1) + (j & 1);
                if (k0 + off < kv_hi) {  // inside the request's mask row
                  const int64_t bit = bit0 + off;
                  keep |= uint32_t((mask_bits[bit >> 3] >> (bit & 7)) & 1) << j;
                }
              }
#pragma unroll
              for (int n = 0; n < kNS; ++n)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                  if (!((keep >> (2 * n + e)) & 1)) s[mt][n][2 * h + e] = -INFINITY;
            }
        }
      }

      // ---- online softmax (rows g and g + 8; a row's 4 threads are lanes 4g .. 4g + 3)
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Speculative max (common/online_softmax.cuh, kSpecSumLimit): P against the running max as it
          // is; only where a lane's row sum fails the bound does the warp take the row's max and redo it.
          // Not in the D 64 prefill tile: S and P of its 128-token tiles together spill (4 -> 108 bytes)
          // and it ran as fast as the exact path (0.99-1.01x, also with the first tile exact), where D 128
          // gained 3-5% (H100 / H200, 2026-11-22, ci/ab_fa2.sh).
          constexpr bool kSpecMax = C::kDecode || D != 64;
          // A job's first tile (m = -inf) takes the exact step at once; later rows still at -inf (masked so
          // far) get inf or NaN sums and are redone.
          const bool spec = kSpecMax && t > 0;
          float pv[kNS][2], sum = 0.f;
          // P = exp2(s scale - mu) of the row (one FFMA per element) and this thread's sum of it.
          auto exp_row = [&](float mu) {
            float acc = 0.f;
#pragma unroll
            for (int n = 0; n < kNS; ++n) {
              pv[n][0] = fast_exp2(fmaf(s[mt][n][2 * h], scale, -mu));
              pv[n][1] = fast_exp2(fmaf(s[mt][n][2 * h + 1], scale, -mu));
              acc += pv[n][0] + pv[n][1];
            }
            return acc;
          };
          if (spec) sum = exp_row(m[mt][h] * scale);
          if (!spec || __any_sync(0xffffffff, !(sum < kSpecSumLimit))) {
            float mx = m[mt][h];
#pragma unroll
            for (int n = 0; n < kNS; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * h], s[mt][n][2 * h + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
            // exp2((x - max) * scale) as one FFMA per element; m stays in logit units (lazy: lazy_max_step).
            const MaxStep ms = lazy_max_step(m[mt][h], mx, scale);
            const float corr = ms.corr;
            m[mt][h] = ms.m;
            sum = exp_row(ms.mu);
            l[mt][h] *= corr;
            if (__any_sync(0xffffffff, corr != 1.f)) {
#pragma unroll
              for (int n = 0; n < kNO; ++n) o[mt][n][2 * h] *= corr, o[mt][n][2 * h + 1] *= corr;
            }
          }
          l[mt][h] += sum;
#pragma unroll
          for (int n = 0; n < kNS; ++n) s[mt][n][2 * h] = pv[n][0], s[mt][n][2 * h + 1] = pv[n][1];
        }

      // ---- O += P V; each V fragment feeds kMT MMAs. V fragments go through a ring of kVD + 1, each
      // loaded kVD fragments ahead of its MMAs (prefill D 64 / 256; at D 128 that ran 0.98x: it loads at use).
      constexpr int kVF = kKVW / 16 * (kNO / 2), kVD = kFragsFirst ? 2 : 0;
      uint32_t vb[kVD + 1][4];
      auto load_v = [&](int i) { ldmatrix_x4_trans(vb[i % (kVD + 1)], v_base + fv.at(i / (kNO / 2), i % (kNO / 2))); };
#pragma unroll
      for (int i = 0; i < kVD; ++i) load_v(i);
#pragma unroll
      for (int kc = 0; kc < kKVW / 16; ++kc) {
        uint32_t a[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          a[mt][0] = pack2<T>(s[mt][2 * kc][0], s[mt][2 * kc][1]);
          a[mt][1] = pack2<T>(s[mt][2 * kc][2], s[mt][2 * kc][3]);
          a[mt][2] = pack2<T>(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
          a[mt][3] = pack2<T>(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < kNO / 2; ++dn) {
          const int i = kc * (kNO / 2) + dn;
          if (i + kVD < kVF) load_v(i + kVD);
          const uint32_t* b = vb[i % (kVD + 1)];
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma_16816<T>(o[mt][2 * dn], a[mt], b[0], b[1]);
            mma_16816<T>(o[mt][2 * dn + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
    cp_async_wait<0>();
    // Programmatic launch: the next kernel may launch once every CTA is in its last epilogue (its CTAs
    // then take the slots this grid frees; triggered at the start, they took slots early and 64 x 2048
    // decode ran 0.92x).
    if (w + work_step >= num_work) pdl_launch_dependents();

    // ---- epilogue: normalise, write rows (direct or partial), LSE; NaN rows for corrupt page ids
    // (device-resident indices cannot be checked on the host without a sync; this makes them visible).
    // Only paged KV reads page ids: ragged and contiguous jobs skip the barrier (fewer live registers).
    const float poison = (page_size > 0 && __syncthreads_or(bad_page)) ? NAN : 0.f;
    auto row_dst = [&](int pr, T*& dst, float*& lse_dst) {
      const int qi = div_group(p, pr);
      const int head = kvh * group + pr - qi * group;
      if (job.partial < 0) {
        dst = static_cast<T*>(p.o) + int64_t(job.qo_begin + qi) * p.o_stride_n + int64_t(head) * p.o_stride_h;
        lse_dst = p.lse ? p.lse + int64_t(job.qo_begin + qi) * p.lse_stride_n + int64_t(head) * p.lse_stride_h
                        : nullptr;
      } else {
        const int64_t prow = int64_t(job.partial) + int64_t(qi) * job.splits;
        dst = static_cast<T*>(p.partial_o) + (prow * p.num_qo_heads + head) * D;
        lse_dst = p.partial_lse + prow * p.num_qo_heads + head;
      }
    };
    if constexpr (C::kWarpsKV == 1) {
      // Normalised rows go through this warp's own rows of sQ (no other warp reads them; the next job's
      // Q load waits at the job's first barrier), then out in 16-byte chunks, whole rows per warp store:
      // 4-byte stores straight from the fragments took ~3 us per job (H200, 2026-11-21). Lane i
      // resolves the destination of the warp's row i once; the copy reads it by shuffle.
      constexpr int kWarpRows = kMT * 16;
      float lse_row = 0.f;  // lane i: row i's LSE (log2 units)
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float sum = l[mt][h];
          sum += __shfl_xor_sync(0xffffffff, sum, 1);
          sum += __shfl_xor_sync(0xffffffff, sum, 2);
          const int r = (wq * kMT + mt) * 16 + g + 8 * h;
          const float inv = sum > 0.f ? fast_rcp(sum) : 0.f;
#pragma unroll
          for (int n = 0; n < kNO; ++n)
            *reinterpret_cast<uint32_t*>(sQ + swz<D>(r, n) + 2 * tq) =
                pack2<T>(o[mt][n][2 * h] * inv + poison, o[mt][n][2 * h + 1] * inv + poison);
          const float lse_v = (sum > 0.f ? m[mt][h] * scale + __log2f(sum) : -INFINITY) + poison;
          const float from = __shfl_sync(0xffffffff, lse_v, 4 * (lane & 7));  // row g's quad leader
          if ((lane >> 3) == 2 * mt + h) lse_row = from;
        }
      T* my_dst = nullptr;
      if (lane < kWarpRows && row0 + wq * kWarpRows + lane < packed_rows) {
        float* lse_dst;
        row_dst(row0 + wq * kWarpRows + lane, my_dst, lse_dst);
        if (lse_dst) *lse_dst = lse_row;
      }
      __syncwarp();
      static_assert(kWarpRows * C::kChunks % 32 == 0 && 32 % C::kChunks == 0, "epilogue chunks");
      const int c = lane % C::kChunks;
#pragma unroll
      for (int i = 0; i < kWarpRows * C::kChunks / 32; ++i) {
        const int rw = i * (32 / C::kChunks) + lane / C::kChunks;  // row within the warp's rows
        T* dst = reinterpret_cast<T*>(__shfl_sync(0xffffffff, reinterpret_cast<uintptr_t>(my_dst), rw));
        if (!dst) continue;
        const uint4 x = *reinterpret_cast<const uint4*>(sQ + swz<D>(wq * kWarpRows + rw, c));
        if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {  // partials always; outputs by stride
          *reinterpret_cast<uint4*>(dst + c * 8) = x;
        } else {
          uint32_t* d32 = reinterpret_cast<uint32_t*>(dst + c * 8);
          d32[0] = x.x, d32[1] = x.y, d32[2] = x.z, d32[3] = x.w;
        }
      }
    } else {
      // Merge the KV warps' states through shared memory (the K/V stages are free now).
      __syncthreads();
      constexpr int kOS = C::kMergeStride;
      float* sO = reinterpret_cast<float*>(sK);         // [kWarpsKV][16][kOS]
      float* sM = sO + C::kWarpsKV * 16 * kOS;          // [kWarpsKV][16]
      float* sL = sM + C::kWarpsKV * 16;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = l[0][h];
        sum += __shfl_xor_sync(0xffffffff, sum, 1);
        sum += __shfl_xor_sync(0xffffffff, sum, 2);
        const int r = g + 8 * h;
        float* orow = sO + (wk * 16 + r) * kOS;
#pragma unroll
        for (int n = 0; n < kNO; ++n)
          *reinterpret_cast<float2*>(orow + n * 8 + 2 * tq) = make_float2(o[0][n][2 * h], o[0][n][2 * h + 1]);
        if (tq == 0) sM[wk * 16 + r] = m[0][h] * scale, sL[wk * 16 + r] = sum;  // log2 units
      }
      __syncthreads();
      // kTPR threads per row, each owning kVecs 8-column vectors (columns j * 8 + 8 * kTPR * i): the
      // row's weights are computed once and the output goes out in 16-byte stores.
      constexpr int kTPR = kNT / 16, kVecs = D / (8 * kTPR);
      static_assert(kNT % 16 == 0 && D % (8 * kTPR) == 0, "epilogue shape");
      const int r = tid / kTPR, j = tid % kTPR;
      const int pr = row0 + r;
      if (pr < packed_rows) {
        float mx = -INFINITY;
#pragma unroll
        for (int k = 0; k < C::kWarpsKV; ++k) mx = fmaxf(mx, sM[k * 16 + r]);
        const float mu = mx == -INFINITY ? 0.f : mx;
        float wgt[C::kWarpsKV], sum = 0.f;
#pragma unroll
        for (int k = 0; k < C::kWarpsKV; ++k) wgt[k] = fast_exp2(sM[k * 16 + r] - mu), sum += sL[k * 16 + r] * wgt[k];
        const float inv = sum > 0.f ? __frcp_rn(sum) : 0.f;
#pragma unroll
        for (int k = 0; k < C::kWarpsKV; ++k) wgt[k] *= inv;
        T* dst;
        float* lse_dst;
        row_dst(pr, dst, lse_dst);
        const bool vec = (reinterpret_cast<uintptr_t>(dst) & 15) == 0;  // partials always; outputs by stride
#pragma unroll
        for (int i = 0; i < kVecs; ++i) {
          const int col = j * 8 + i * 8 * kTPR;
          float acc[8] = {};
#pragma unroll
          for (int k = 0; k < C::kWarpsKV; ++k) {
            const float4 x0 = *reinterpret_cast<const float4*>(sO + (k * 16 + r) * kOS + col);
            const float4 x1 = *reinterpret_cast<const float4*>(sO + (k * 16 + r) * kOS + col + 4);
            acc[0] += x0.x * wgt[k], acc[1] += x0.y * wgt[k], acc[2] += x0.z * wgt[k], acc[3] += x0.w * wgt[k];
            acc[4] += x1.x * wgt[k], acc[5] += x1.y * wgt[k], acc[6] += x1.z * wgt[k], acc[7] += x1.w * wgt[k];
          }
          uint32_t w[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) w[e] = pack2<T>(acc[2 * e] + poison, acc[2 * e + 1] + poison);
          if (vec) {
            *reinterpret_cast<uint4*>(dst + col) = make_uint4(w[0], w[1], w[2], w[3]);
          } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) *reinterpret_cast<uint32_t*>(dst + col + 2 * e) = w[e];
          }
        }
        if (lse_dst && j == 0) *lse_dst = (sum > 0.f ? mu + __log2f(sum) : -INFINITY) + poison;
      }
      // A split group's last CTA merges the group's partial rows (plans; else the merge kernel does).
      if (job.merge >= 0 && p.merge_counters && split_group_last(p, job, kvh))
        merge_split_group<D, T, kNT, kRows>(p, job, kvh, row0, min(kRows, packed_rows - row0),
                                            reinterpret_cast<unsigned char*>(sK), 2 * kStages * C::kSmemKVStage);
    }
  }
}

}  // namespace kvinfer::detail::attn
