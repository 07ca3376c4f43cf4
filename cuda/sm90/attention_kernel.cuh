// Hopper (sm_90a) attention kernel: warp-specialised, wgmma on shared-memory tiles, mbarrier pipeline.
//
// A CTA has three warpgroups. Warpgroup 0 is the producer: it fills 128-byte-swizzled shared tiles
// and signals full barriers as the data lands. Full K/V tiles come by TMA (contiguous/ragged KV: one
// box per 64 columns; paged KV: one box per page and 64 columns, the page id as a coordinate, issued
// by all four producer warps), and
// so does Q where the GQA group divides the tile (one box of packed rows per 64 columns); boundary
// tiles, other page sizes and other group sizes are gathered row by row with cp.async by all 128
// threads (any strides; paged rows from per-page 64-bit offsets a pre-kernel writes). Warpgroups 1
// and 2 are consumers, 64 packed query rows each: S = Q K^T by wgmma (both operands from shared
// memory), masking and online softmax in registers, O += P V by wgmma with P from registers and V
// read transposed from shared memory; S_t is issued together with P_{t-1} V_{t-1} (across jobs too:
// the next job's S_0 goes with a job's last P V), issues alternate between the two consumers
// (pingpong), and each releases a stage through its empty barrier. O is staged in the warpgroup's
// half of an O buffer (D 64 / 128; at D 256 the two take turns with one 64-row buffer) and leaves by
// TMA store (16-byte stores for tiles that run past their request or for split partials); with D 256's
// 80-token KV tile it leaves from registers in 16-byte chunks. The grid is persistent over the (work item,
// kv head) job list, walked in kv-head sections and then the planner's tail section of short KV
// pieces, if any (job_of): CTA i starts with job i, then claims the
// next job through a counter (plans) or takes i + grid, ... (single requests). The producer resolves
// each job and hands it to the consumers in a shared-memory slot next to the job's Q.
//
// The matrix instructions and descriptors are CuTe's sm90 GMMA atoms (cute/arch); the tile layouts
// are the canonical 128-byte-swizzle layouts those descriptors describe (K-major for Q and K,
// MN-major for V), written directly by the producer (TMA boxes or cp.async).
//
// KVINFER_EXP_* macros (never defined in the library build) are measurement switches for
// ci/sm90_exp.sh: NO_LOADS, NO_SOFTMAX, NO_PINGPONG, NO_FENCE remove one part of the kernel (results
// are wrong) to show what limits it; TRACE records CTA 0's pipeline events (clock64) for the
// harness to print. (Dropped shape experiments, a third stage and a 176-token KV tile at D = 128,
// are recorded in BENCHMARKS.md.)
#pragma once
#include <cmath>
#include <cstdint>
#include <utility>

#include <cute/arch/copy_sm90_desc.hpp>
#include <cute/arch/copy_sm90_tma.hpp>

#include "common/attn_job.cuh"
#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/types.cuh"
#include "launch.h"
#include "sm90/config.cuh"
#include "sm90/jobs.cuh"
#include "sm90/primitives.cuh"

namespace kvinfer::detail::attn90 {

using namespace kvinfer::cuda;
using attn::div_group;
using attn::key_range;
using attn::load_job;


template <int D, int KV, typename T>
__global__ void __launch_bounds__(Config<D, KV>::kThreads, 1) attention_sm90_kernel(const __grid_constant__ AttnParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(CUTE_ARCH_MMA_SM90A_ENABLED)
  using C = Config<D, KV>;
  constexpr int kM = C::kM, kN = C::kN, kStages = C::kStages;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t base = (smem_addr(smem_raw) + 1023u) & ~1023u;
  unsigned char* gsmem = smem_raw + (base - smem_addr(smem_raw));  // generic pointer of `base`
  const uint32_t sQ = base, sK = base + C::kOffK, sV = base + C::kOffV, sO = base + C::kOffO;
  const uint32_t bar = base + C::kOffBar;
  // Barriers: K full, K empty, V full, V empty per stage, then Q full / empty per Q buffer. Job jc
  // uses Q buffer jc % kQBuffers, in that buffer's round jc / kQBuffers.
  auto k_full = [&](int s) { return bar + 8 * s; };
  auto k_empty = [&](int s) { return bar + 8 * (kStages + s); };
  auto v_full = [&](int s) { return bar + 8 * (2 * kStages + s); };
  auto v_empty = [&](int s) { return bar + 8 * (3 * kStages + s); };
  auto q_full = [&](int jc) { return bar + 8 * (4 * kStages + jc % C::kQBuffers); };
  auto q_empty = [&](int jc) { return bar + 8 * (4 * kStages + C::kQBuffers + jc % C::kQBuffers); };
  auto q_round = [&](int jc) { return uint32_t(jc / C::kQBuffers) & 1u; };
  auto q_tile = [&](int jc) { return sQ + uint32_t(jc % C::kQBuffers) * C::kTileQ; };
  constexpr uint32_t kConsumerWarps = 4 * C::kConsumers;

  const int tid = threadIdx.x;
  // Slot of job jc (next to its Q buffer). q_full counts 129 arrivals: the 128 producer threads'
  // (Q by cp.async or TMA) and thread 0's after it wrote the slot (arrive has release semantics).
  auto slot = [&](int jc) { return reinterpret_cast<JobSlot*>(gsmem + C::kOffSlot + 64 * (jc % C::kQBuffers)); };
  if (tid == 0) {
    for (int b = 0; b < C::kQBuffers; ++b) mbar_init(q_full(b), 129), mbar_init(q_empty(b), kConsumerWarps);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(k_full(s), 128), mbar_init(v_full(s), 128);
      mbar_init(k_empty(s), kConsumerWarps), mbar_init(v_empty(s), kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // Values that steer control flow around wgmma are broadcast from lane 0 (__shfl_sync), so the
  // compiler sees them warp-uniform; otherwise it serialises the wgmma instructions (C7520).
  const int group = p.group;
  const int role = __shfl_sync(0xffffffff, tid / 128, 0);  // 0: producer, 1..: consumer warpgroups

  if (role == 0) {
    // ================= producer warpgroup: job list, TMA and cp.async loads =================
    setmaxnreg_dec<C::kProducerRegs>();
    constexpr int kRowStep = 128 / C::kChunks;  // rows covered per pass of the 128 threads
    const int lr0 = tid / C::kChunks, lc0 = tid % C::kChunks;
    const bool paged = p.page_size > 0;
    // Paged TMA: box b = (page b / (D / 64), columns b % (D / 64)) of a full tile is issued by lane
    // b / 4 of producer warp b % 4, with its page id. (One warp issuing all of a tile's boxes took
    // about 1,400 cycles per operand, each box's coordinates passing through uniform registers one
    // lane at a time; the consumers waited on it: 0.73x of the contiguous speed, 0.94x spread.)
    static_assert((kN / 8) * (D / 64) <= 128, "one paged box per producer thread");
    const int box = tid / 32 + 4 * (tid % 32);
    const int box_rows = paged ? min(p.page_size, kN) : kN;
    const bool box_issuer = paged && box < (kN / box_rows) * (D / 64);
    const int num_items = p.work ? *p.num_work : p.implicit_qo_tiles * p.implicit_splits;
    const int num_jobs = num_items * p.num_kv_heads;
    // Plans keep the head section in the workspace header (a CUDA graph replays the current plan's).
    const int head_section = p.work ? p.num_work[2] : p.head_section;
    const int tail_items = p.work ? p.num_work[5] : 0;
#ifdef KVINFER_EXP_TRACE
    int trace_n = 0;
#endif
    // Job order: CTA i starts with job i. After that, with a plan's claim counter (p.sched), the CTA
    // that asks first takes the next job of the list (longest first: the tail stays short); thread 0
    // claims and hands the index to the other producer threads through shared memory (two words,
    // alternating, so one barrier per claim suffices). Without it: jobs i + grid, i + 2 grid, ...
    int claims = 0;
    auto next_job = [&](int w) {
      if (p.sched == nullptr) return w + int(gridDim.x);
      volatile int* word = reinterpret_cast<volatile int*>(gsmem + C::kOffNext + 4 * (claims & 1));
      ++claims;
      if (tid == 0) *word = int(gridDim.x) + atomicAdd(p.sched, 1);
      named_barrier_sync(5, 128);
      return *word;
    };
    // The first job with rows at list index w or after it in this CTA's order (the planner never
    // emits a tile without rows); have is false past the end of the list.
    struct Resolved {
      int w, kvh;
      Job job;
      JobRange r;
      bool have;
    };
    auto resolve = [&](int w) {
      Resolved x{w, 0, Job{}, JobRange{}, false};
      for (; x.w < num_jobs; x.w = next_job(x.w)) {
        int item;
        job_of(p, head_section, tail_items, x.w, num_items, item, x.kvh);
        load_job(p, item, x.job);
        x.r = job_range<kN>(p, x.job);
        if (x.r.row0 < x.r.packed_rows) {
          x.have = true;
          break;
        }
      }
      return x;
    };
    int it = 0;
    Resolved cur = resolve(blockIdx.x);
    for (int jc = 0;; ++jc) {
      const Job& job = cur.job;
      JobRange& r = cur.r;
      const int kvh = cur.kvh;
      const bool have = cur.have;
      KV_TRACE(0, 20, tid == 0);
      // The slot and the Q tile, once the consumers are done with the buffer's previous job. Q by TMA:
      // one box per 64 columns holds the tile's 128 packed rows (rows past the request's end hold
      // other tokens or zeros; their results are never stored). By cp.async: rows past the end are
      // zero-filled. After the last job, a slot that says so.
      mbar_wait(q_empty(jc), q_round(jc) ^ 1);
      KV_TRACE(0, 21, tid == 0);
      if (tid == 0) {
        if (!have) r.num_tiles = -1;
        *slot(jc) = JobSlot{r, job.qo_len, job.qo_begin, kvh, job.partial, job.splits, job.request};
        mbar_arrive(q_full(jc));
      }
      if (!have) {
        mbar_arrive(q_full(jc));
        break;
      }
      if (p.q_tma) {
        if (tid == 0) {
          uint64_t* mbar = reinterpret_cast<uint64_t*>(gsmem + (q_full(jc) - base));
          mbar_arrive_expect_tx(q_full(jc), C::kTileQ);
          constexpr uint64_t kFirst = uint64_t(cute::TMA::CacheHintSm90::EVICT_FIRST);
#pragma unroll
          for (int c = 0; c < D / 64; ++c)
            cute::SM90_TMA_LOAD_4D::copy(&p.tma_q, mbar, kFirst, gsmem + (q_tile(jc) - base) + c * kM * 128, c * 64, 0,
                                         kvh, job.qo_begin + r.row0 / group);
        } else {
          mbar_arrive(q_full(jc));
        }
      } else {
#pragma unroll 4
        for (int i = 0; i < kM / kRowStep; ++i) {
          const int rr = lr0 + i * kRowStep, pr = r.row0 + rr;
          const bool ok = pr < r.packed_rows;
          const int tok = ok ? job.qo_begin + pr / group : 0;
          const int head = kvh * group + (ok ? pr % group : 0);
          const T* src = static_cast<const T*>(p.q) + int64_t(tok) * p.q_stride_n + int64_t(head) * p.q_stride_h + lc0 * 8;
          cp_async_16(q_tile(jc) + sw128<kM>(rr, lc0), src, ok);
        }
        mbar_arrive_cp_async(q_full(jc));
      }
      KV_TRACE(0, 22, tid == 0);

      const T* k_head = static_cast<const T*>(p.k) + int64_t(kvh) * p.k_stride_h + lc0 * 8;
      const T* v_head = static_cast<const T*>(p.v) + int64_t(kvh) * p.v_stride_h + lc0 * 8;
      // Operand kv (0: K, 1: V) of tile t of this job (stage and phase from its pipeline index it + t):
      // each row's element offset (past the end or a bad page: zero-filled, never read), then its
      // copy. Paged: page and slot step along with the rows. Full tiles of a contiguous/ragged KV: one
      // thread issues the TMA boxes (64 columns each), the others only arrive. Boundary tiles go
      // through cp.async, which zero-fills rows past the end (a box would read the next request's
      // tokens, and 0 x NaN there would poison O). box_id: the page id of this thread's box (paged TMA).
      auto tile_tma = [&](int t) { return p.use_tma && r.tile_start + (t + 1) * kN <= r.kv_hi; };
      auto load_operand = [&](int kv, int t, int box_id) {
        const int st = (it + t) % kStages;
        const uint32_t ph = (((it + t) / kStages) & 1) ^ 1;
        const int tbase = r.tile_start + t * kN;
        const uint32_t dk = sK + st * C::kTileKV, dv = sV + st * C::kTileKV;
        const bool tma = tile_tma(t);  // paged: use_tma only for page sizes that tile kN
        mbar_wait(kv ? v_empty(st) : k_empty(st), ph);
        KV_TRACE(0, 23 + kv, tid == 0);
        if (tma) {
          const uint32_t full = kv ? v_full(st) : k_full(st);
          const void* map = kv ? &p.tma_v : &p.tma_k;
          uint64_t* mbar = reinterpret_cast<uint64_t*>(gsmem + (full - base));
          unsigned char* dst = gsmem + ((kv ? sV : sK) - base) + st * C::kTileKV;
          constexpr uint64_t kHint = uint64_t(cute::TMA::CacheHintSm90::EVICT_LAST);
          if (!paged) {
            if (tid == 0) {
              mbar_arrive_expect_tx(full, C::kTileKV);
#pragma unroll
              for (int c = 0; c < D / 64; ++c)
                cute::SM90_TMA_LOAD_3D::copy(map, mbar, kHint, dst + c * kN * 128, c * 64, kvh, job.kv_base + tbase);
            } else {
              mbar_arrive(full);
            }
          } else {
            // One box per (page, 64 columns). Thread 0 announces the tile's bytes with its arrival; a
            // box may complete before that (the transaction count goes negative meanwhile), but the
            // phase cannot: it waits for all 128 arrivals. Page ids outside the cache are
            // out-of-bounds boxes: zero-filled, never read (the pre-kernel flagged the request).
            const int cb = box % (D / 64);
            if (box_issuer)
              cute::SM90_TMA_LOAD_4D::copy(map, mbar, kHint, dst + cb * kN * 128 + (box / (D / 64)) * box_rows * 128,
                                           cb * 64, kvh, tbase % p.page_size, box_id);
            if (tid == 0) {
              mbar_arrive_expect_tx(full, C::kTileKV);
            } else {
              mbar_arrive(full);
            }
          }
          return;
        }
        const T* head = kv ? v_head : k_head;
        const uint32_t dst = kv ? dv : dk;
        const int64_t stride_tok = kv ? p.v_stride_tok : p.k_stride_tok;
        const int64_t* page_off = kv ? p.page_off_v : p.page_off_k;
        const int pos0 = tbase + lr0;
        int pg = 0, sl = 0;
        if (paged) pg = pos0 / p.page_size, sl = pos0 - pg * p.page_size;
#pragma unroll 4
        for (int i = 0; i < kN / kRowStep; ++i) {
          const int pos = pos0 + i * kRowStep;
          int64_t off;
          if (paged) {
            if (i > 0) {
              sl += kRowStep;
              while (sl >= p.page_size) sl -= p.page_size, ++pg;
            }
            const int64_t po = pos < r.kv_hi ? page_off[job.kv_base + pg] : -1;
            off = po < 0 ? -1 : po + int64_t(sl) * stride_tok;
          } else {
            off = pos < r.kv_hi ? (int64_t(job.kv_base) + pos) * stride_tok : -1;
          }
#ifndef KVINFER_EXP_NO_LOADS
          cp_async_16(dst + sw128<kN>(lr0 + i * kRowStep, lc0), off >= 0 ? head + off : head, off >= 0);
#else
          if (off == -12345) cp_async_16(dst, head, true);
#endif
        }
        mbar_arrive_cp_async(kv ? v_full(st) : k_full(st));
      };
      // K runs one tile ahead of V: K_t, V_{t-1}, K_{t+1}, ... The consumers free a K stage after its
      // S (step t) and a V stage after its P V (step t + 1), so K_{t+1} no longer waits behind the
      // later V stage. Paged: a tile's page id is loaded before its K stage waits (latency hidden).
      int box_prev = 0;
      for (int t = 0; t < r.num_tiles; ++t) {
        int box_id = 0;
        if (tile_tma(t) && box_issuer)
          box_id = __ldg(p.kv_indices + job.kv_base + (r.tile_start + t * kN) / p.page_size + box / (D / 64));
        load_operand(0, t, box_id);
        if (t > 0) load_operand(1, t - 1, box_prev);
        box_prev = box_id;
      }
      // The next job is resolved (claim, work item) before this job's last V load, while that load
      // waits for its stage: the next Q and K_0 can then go out as soon as their buffers are free, not
      // after the claim's and the item's round trips (trace: last V -> next job 2,600-3,100 -> 700-1,000
      // cycles). Short D 128 jobs gain most: seqlen 512 non-causal 463-472 -> 494-525 TFLOP/s, causal
      // 512 / 1024 328-332 / 437-459 -> 345-356 / 477-486 (bench_prefill, three runs each side, H200,
      // 2026-11-22); long jobs and D 64 / 256 within noise. After the tile loop, so that the next job's
      // registers are not live in it: inside it they spilled (56 producer registers), paged KV 0.94x.
      const Resolved next = resolve(next_job(cur.w));
      if (r.num_tiles > 0) load_operand(1, r.num_tiles - 1, box_prev);
      it += r.num_tiles;
      cur = next;
    }
    // The last CTA out resets the claim counters for the next launch (graph replays included): every
    // CTA counts itself out after its last claim, so no claim follows the reset.
    if (p.sched != nullptr && tid == 0) {
      __threadfence();
      if (atomicAdd(p.sched + 1, 1) == int(gridDim.x) - 1) atomicExch(p.sched, 0), atomicExch(p.sched + 1, 0);
    }
  } else {
    // ================= consumer warpgroups =================
    setmaxnreg_inc<C::kConsumerRegs>();
    const int wg = role - 1, wt = tid % 128, warp = wt / 32, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    const float log2e = 1.4426950408889634f;
    const bool cap = p.soft_cap > 0.f;
    const float pre = cap ? p.sm_scale / p.soft_cap : p.sm_scale * log2e;
    const float post = cap ? p.soft_cap * log2e : 1.f;
    const float scale = cap ? 1.f : pre;
    // Descriptors: this warpgroup's 64 Q rows; K and V stages. K steps of 16 elements advance 32 bytes
    // within a 128-byte row, and 64-element column blocks are separate [rows][64] blocks.
    const uint64_t dq_base = make_desc(sQ + wg * 64 * 128, 16);
    const uint64_t dk0 = make_desc(sK, 16);
    const uint64_t dv0 = make_desc(sV, kN * 128);
#ifdef KVINFER_EXP_TRACE
    int trace_n = 0;
    const bool tr = wt == 0 && wg == 0;
#endif
    // Pingpong turns: named barrier 1 + wg is this warpgroup's turn to issue matrix work; it is
    // passed to the other warpgroup right after issuing. Warpgroup 0 starts.
#ifndef KVINFER_EXP_NO_PINGPONG
    auto turn_wait = [&]() { named_barrier_sync(1 + wg, 256); };
    auto turn_pass = [&]() { named_barrier_arrive(1 + (wg ^ 1), 256); };
    if (wg == 1) named_barrier_arrive(1, 256);
#else
    auto turn_wait = [&]() {};
    auto turn_pass = [&]() {};
#endif
    // Softmax turns (Config::kSoftmaxTurns): named barrier 8 + wg is this warpgroup's turn to run a softmax.
    auto sm_wait = [&]() {
      if constexpr (C::kSoftmaxTurns) named_barrier_sync(8 + wg, 256);
    };
    auto sm_pass = [&]() {
      if constexpr (C::kSoftmaxTurns) named_barrier_arrive(8 + (wg ^ 1), 256);
    };
    if (C::kSoftmaxTurns && wg == 1) named_barrier_arrive(8, 256);
    KV_SPAN(0, wt == 0 && wg == 0);
    auto read_slot = [&](int jc) {
      mbar_wait(q_full(jc), q_round(jc));
      JobSlot j = *slot(jc);
      j.r.num_tiles = __shfl_sync(0xffffffff, j.r.num_tiles, 0);
      return j;
    };
    auto release = [&](uint32_t b) {
      __syncwarp();
      mbar_arrive_if(b, lane == 0);
    };
    auto dq_of = [&](int jc) { return dq_base + (uint32_t(jc % C::kQBuffers) * C::kTileQ >> 4); };
    // S_t = Q K_t^T issued (not waited) on stage st.
    auto issue_s = [&](float (&sacc)[kN / 2], int st, uint64_t dq0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint32_t qoff = uint32_t((kk >> 2) * kM * 128 + (kk & 3) * 32);
        const uint32_t koff = uint32_t(st * C::kTileKV + (kk >> 2) * kN * 128 + (kk & 3) * 32);
        gmma_ss<T, kN>(dq0 + (qoff >> 4), dk0 + (koff >> 4), sacc, kk > 0);
      }
    };
    // The consumer works in steps over its jobs' tiles (step_s, step_sp, step_p below). A step issues
    // S_t = Q K_t^T of the next tile together with O += P V of the tile before it, so the tensor cores
    // work on both while this warpgroup waits; the softmax of S_t runs while P V drains. Across a job
    // boundary the next job's S_0 (its Q is in the other Q buffer) goes out with this job's last P V,
    // and this job's epilogue follows the next job's first softmax: a job's start and end cost no matrix-idle issue
    // slot of their own (they used to: short causal jobs lost 10-15% to it). With one Q buffer (D 256)
    // the next job's Q loads during this job's last P V (issued alone) and epilogue.
    // Pingpong (across the two warpgroups): issues alternate through named barriers, so one warpgroup's
    // softmax overlaps the other's matrix work; both warpgroups take the same steps.
    // State of the job whose S tiles are issued (cj, from its slot): masking bounds, softmax maxima and
    // sums, its query rows and Q descriptor. O (and mo, lo at a boundary) belongs to job jc, which is
    // the same job except between a boundary step's issue and its epilogue.
    JobSlot cj = read_slot(0);
    int jc = 0;
    int qrow[2];
    float m[2], l[2];
    uint64_t dq0 = 0;
    auto start_job = [&](int jn) {
      const int rbase = cj.r.row0 + wg * 64 + warp * 16 + g;
#pragma unroll
      for (int h = 0; h < 2; ++h) qrow[h] = div_group(p, rbase + 8 * h), m[h] = -INFINITY, l[h] = 0.f;
      dq0 = dq_of(jn);
      if (!p.q_tma) fence_proxy_async();
    };
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;

    // O += P V_t issued on stage st (P: 16-bit A fragments, 16 KV rows per step).
    auto issue_pv = [&](const uint32_t (&pf)[kN / 16][4], int st) {
#pragma unroll
      for (int kc = 0; kc < kN / 16; ++kc)
        gmma_rs<T, D>(pf[kc], dv0 + (uint32_t(st * C::kTileKV + kc * 16 * 128) >> 4), o);
    };
    // One row's exact online-softmax step on tile S (half h of the thread's rows): the row max, the lazy
    // step of the running max, P = exp2(S * scale - mu) into pr and the row sum into l (l0: l before
    // this tile).
    auto exact_row = [&](const float (&sacc)[kN / 2], float (&pr)[kN / 2], int h, float l0, float (&corr)[2]) {
      float mx = m[h];  // a row's 4 threads are lanes 4g .. 4g + 3
#pragma unroll
      for (int j = 0; j < kN / 8; ++j) mx = fmaxf(mx, fmaxf(sacc[4 * j + 2 * h], sacc[4 * j + 2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
      const MaxStep ms = lazy_max_step(m[h], mx, scale);  // lazy rescaling (common/online_softmax.cuh)
      const float mu = ms.mu;
      corr[h] = ms.corr;
      m[h] = ms.m;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kN / 8; ++j) {
        pr[4 * j + 2 * h] = fast_exp2(fmaf(sacc[4 * j + 2 * h], scale, -mu));
        pr[4 * j + 2 * h + 1] = fast_exp2(fmaf(sacc[4 * j + 2 * h + 1], scale, -mu));
        sum += pr[4 * j + 2 * h] + pr[4 * j + 2 * h + 1];
      }
      l[h] = l0 * corr[h] + sum;
    };
    // Speculative maxima (common/online_softmax.cuh, kSpecSumLimit): the softmax computes P against the
    // running max as it is, without the tile's row max (64 FMNMX and 4 shuffles per thread at a 128-token
    // tile), and keeps S; spec_check, after the P V wait (a branch inside the softmax would move ptxas's
    // wait for P V, see below), redoes exactly the row halves whose sums failed the bound.
    float spec_l[2];
    bool spec_bad[2];
    // Logits transform, mask (boundary tiles), online softmax of tile S of job cj (S transformed in
    // place; P, in fp32, into pr); returns the per-row rescale factors of O through corr.
    auto softmax = [&](float (&sacc)[kN / 2], float (&pr)[kN / 2], int tbase, float (&corr)[2], bool first) {
#ifdef KVINFER_EXP_NO_SOFTMAX
      corr[0] = corr[1] = 1.f;
      spec_bad[0] = spec_bad[1] = false;
      if (tbase >= 0) {
#pragma unroll
        for (int i = 0; i < kN / 2; ++i) pr[i] = sacc[i];
        return;
      }
#endif
      const JobRange& r = cj.r;
      const bool need_mask = tbase + kN > r.kv_hi || tbase < r.kv_lo || (p.causal && tbase + kN - 1 > r.qa + r.offset) ||
                             (p.window_left >= 0 && tbase < r.qb + r.offset - p.window_left);
      // The cap and the mask are separate passes, each one branch around straight-line code (a branch
      // per element left a masked tile's softmax at 2.5x the cost of an interior one).
      if (cap) {
#pragma unroll
        for (int i = 0; i < kN / 2; ++i) sacc[i] = fast_tanh(sacc[i] * pre) * post;
      }
      if (need_mask) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // Relative to the thread's first key tbase + 2 tq: element (j, e) is key 8 j + e.
          int lo, hi;
          key_range(p, qrow[h], cj.qo_len, r.offset, r.kv_lo, r.kv_hi, tbase + 2 * tq, lo, hi);
#pragma unroll
          for (int j = 0; j < kN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float x = sacc[4 * j + 2 * h + e];
              sacc[4 * j + 2 * h + e] = (8 * j + e >= lo && 8 * j + e <= hi) ? x : -INFINITY;
            }
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        if (first || !C::kSpecMax) {  // a job's first tile (m = -inf): the exact step at once (overlaps P V)
          exact_row(sacc, pr, h, l[h], corr);  // next_tile skips the check for these tiles
        } else {
          const float mu = m[h] * scale;  // m = -inf (rows masked so far): every P inf or NaN, redone
          float sum = 0.f;
#pragma unroll
          for (int j = 0; j < kN / 8; ++j) {
            pr[4 * j + 2 * h] = fast_exp2(fmaf(sacc[4 * j + 2 * h], scale, -mu));
            pr[4 * j + 2 * h + 1] = fast_exp2(fmaf(sacc[4 * j + 2 * h + 1], scale, -mu));
            sum += pr[4 * j + 2 * h] + pr[4 * j + 2 * h + 1];
          }
          spec_l[h] = l[h];
          spec_bad[h] = !(sum < kSpecSumLimit);
          l[h] += sum;
          corr[h] = 1.f;
        }
      }
      // ptxas hoists the step's wgmma wait for P V above the softmax (the softmax then waits for this
      // warpgroup's P V). At D 256 a branch on the row sums (never taken: sums of exponentials are not
      // negative) closes the softmax's basic block and keeps the wait after it: 1.02x at 1024 (H200,
      // 2026-11-21, ci/ab_sm90.sh). At D 64 / 128 the same ran 0.93x / 0.98x, so ptxas keeps its order.
      if constexpr (D == 256)
        if (__any_sync(0xffffffff, l[0] < 0.f || l[1] < 0.f)) __nanosleep(1);
    };
    // The speculative softmax's check (after this warpgroup's P V wait): row halves that failed it in
    // any lane of the warp are redone exactly (warp-uniform branch: the max's shuffles need the warp).
    auto spec_check = [&](const float (&sacc)[kN / 2], float (&pr)[kN / 2], float (&corr)[2]) {
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (__any_sync(0xffffffff, spec_bad[h])) exact_row(sacc, pr, h, spec_l[h], corr);
    };
    // O *= corr per row (skipped for a warp whose rows' maxima did not move).
    auto rescale_o = [&](const float (&corr)[2]) {
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (__any_sync(0xffffffff, corr[h] != 1.f)) {
#pragma unroll
          for (int j = 0; j < D / 8; ++j) o[4 * j + 2 * h] *= corr[h], o[4 * j + 2 * h + 1] *= corr[h];
        }
    };
    auto to_frags = [&](const float (&sacc)[kN / 2], uint32_t (&pf)[kN / 16][4]) {
#pragma unroll
      for (int kc = 0; kc < kN / 16; ++kc) {
        pf[kc][0] = pack2<T>(sacc[8 * kc + 0], sacc[8 * kc + 1]);
        pf[kc][1] = pack2<T>(sacc[8 * kc + 2], sacc[8 * kc + 3]);
        pf[kc][2] = pack2<T>(sacc[8 * kc + 4], sacc[8 * kc + 5]);
        pf[kc][3] = pack2<T>(sacc[8 * kc + 6], sacc[8 * kc + 7]);
      }
    };

    // Shared O buffer (D 256, 64-token KV tile): warpgroup 0 has it first; each hands it to the other
    // once its rows have left (o_pass), and waits for it back before its next epilogue (o_take).
    auto o_take = [&]() {
      if constexpr (!C::kOBuffer && !C::kORegs) named_barrier_sync(6 + wg, 256);
    };
    auto o_pass = [&]() {
      if constexpr (!C::kOBuffer && !C::kORegs) named_barrier_arrive(6 + (wg ^ 1), 256);
    };
    if (wg == 1) o_pass();

    // ---- epilogue of job jc (js: its slot). O, normalised and in the output dtype, leaves in whole
    // 16-byte chunks along rows (direct 4-byte stores from the accumulator layout cost a tile's time):
    // through this warpgroup's 64 rows of the O buffer, or (kORegs) from registers after a transpose.
    // LSE from registers (mo, lo: the job's final maxima and sums).
    auto epilogue = [&](const JobSlot& js, const float (&mo)[2], const float (&lo)[2]) {
      const JobRange& r = js.r;
      const int kvh = js.kvh;
      const int rbase = r.row0 + wg * 64 + warp * 16 + g;  // packed row of h = 0 (h = 1: + 8)
      const float poison = (p.req_bad && p.page_size > 0 && p.req_bad[js.request]) ? NAN : 0.f;
      // Output (or partial) row of query qi, head `head`.
      auto out_row = [&](int64_t qi, int head) {
        return js.partial < 0 ? static_cast<T*>(p.o) + (js.qo_begin + qi) * p.o_stride_n + int64_t(head) * p.o_stride_h
                              : static_cast<T*>(p.partial_o) + ((js.partial + qi * js.splits) * p.num_qo_heads + head) * D;
      };
      // Row h's sum over its 4 threads, and its LSE (output or partial row) from the thread with tq 0.
      auto row_sum = [&](int h) {
        float sum = lo[h];
        sum += __shfl_xor_sync(0xffffffff, sum, 1);
        return sum + __shfl_xor_sync(0xffffffff, sum, 2);
      };
      auto store_lse = [&](int h, float sum) {
        const int pr = rbase + 8 * h;
        if ((p.lse == nullptr && js.partial < 0) || pr >= r.packed_rows || tq != 0) return;
        const int qi = div_group(p, pr), head = kvh * group + pr - qi * group;
        float* lse_dst = js.partial < 0 ? p.lse + int64_t(js.qo_begin + qi) * p.lse_stride_n + int64_t(head) * p.lse_stride_h
                                        : p.partial_lse + (int64_t(js.partial) + int64_t(qi) * js.splits) * p.num_qo_heads + head;
        *lse_dst = (sum > 0.f ? mo[h] * scale + __log2f(sum) : -INFINITY) + poison;
      };
      if constexpr (C::kORegs) {
        // From registers (no O buffer): thread tq holds columns 8 j + 2 tq, + 1 of its two rows. For each group
        // of 4 chunks (k), two shuffle rounds (partners tq ^ 1, then tq ^ 2) transpose the 4 x 4 words of
        // the row's threads, so thread tq ends with all of chunk 4 k + tq; 16-byte stores.
        const bool odd = tq & 1, hi = tq & 2;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float sum = row_sum(h), inv = sum > 0.f ? fast_rcp(sum) : 0.f;
          store_lse(h, sum);
          const int pr = rbase + 8 * h;
          T* dst = nullptr;
          if (pr < r.packed_rows) {
            const int qi = div_group(p, pr);
            dst = out_row(qi, kvh * group + pr - qi * group);
          }
#pragma unroll
          for (int k = 0; k < D / 32; ++k) {
            uint32_t x[4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
              x[i] = pack2<T>(o[4 * (4 * k + i) + 2 * h] * inv + poison, o[4 * (4 * k + i) + 2 * h + 1] * inv + poison);
            // Round 1: keep chunks j with j & 1 == tq & 1; v<s><kk>: chunk (tq & 1) + 2 kk of thread (tq & 2) | s.
            const uint32_t own0 = odd ? x[1] : x[0], own1 = odd ? x[3] : x[2];
            const uint32_t r0 = __shfl_xor_sync(0xffffffff, odd ? x[0] : x[1], 1);
            const uint32_t r1 = __shfl_xor_sync(0xffffffff, odd ? x[2] : x[3], 1);
            const uint32_t v00 = odd ? r0 : own0, v10 = odd ? own0 : r0, v01 = odd ? r1 : own1, v11 = odd ? own1 : r1;
            // Round 2: keep kk == hi (chunk tq); words of thread (tq & 2) | s stay, the partner's arrive.
            const uint32_t q0 = __shfl_xor_sync(0xffffffff, hi ? v00 : v01, 2);
            const uint32_t q1 = __shfl_xor_sync(0xffffffff, hi ? v10 : v11, 2);
            const uint32_t k0 = hi ? v01 : v00, k1 = hi ? v11 : v10;
            if (dst)
              *reinterpret_cast<uint4*>(dst + (4 * k + tq) * 8) =
                  make_uint4(hi ? q0 : k0, hi ? q1 : k1, hi ? k0 : q0, hi ? k1 : q1);
          }
        }
      } else {
        constexpr int kOR = C::kORows;
        const uint32_t so = sO + (C::kOBuffer ? wg * 64 * 128 : 0);  // this warpgroup's first row of each 64-column block
        if constexpr (C::kOBuffer) {
          // The previous job's O has left the buffer: its TMA store has read it (wt 0 issued it), and
          // every thread has read its chunks.
          if (wt == 0) cute::tma_store_wait<0>();
          named_barrier_sync(3 + wg, 128);
        } else {
          o_take();
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float sum = row_sum(h), inv = sum > 0.f ? fast_rcp(sum) : 0.f;
          const int rr = warp * 16 + g + 8 * h;  // row within this warpgroup's 64
#pragma unroll
          for (int j = 0; j < D / 8; ++j)
            *reinterpret_cast<uint32_t*>(gsmem + (so - base) + sw128<kOR>(rr, j) + 4 * tq) =
                pack2<T>(o[4 * j + 2 * h] * inv + poison, o[4 * j + 2 * h + 1] * inv + poison);
          store_lse(h, sum);
        }
        KV_TRACE(1, 17, tr);
        if (p.o_tma && js.partial < 0 && r.row0 + kM <= r.packed_rows) {
          // Every row of the tile belongs to the request: one TMA store per 64 columns of this
          // warpgroup's 64 rows; a shared O buffer goes to the other warpgroup once the store has read it.
          fence_proxy_async();  // this thread's shared writes, before the async proxy reads them
          named_barrier_sync(3 + wg, 128);
          KV_TRACE(1, 18, tr);
          if (wt == 0) {
#pragma unroll
            for (int c = 0; c < D / 64; ++c)
              cute::SM90_TMA_STORE_4D::copy(&p.tma_o, gsmem + (so - base) + c * kOR * 128, c * 64, 0, kvh,
                                            js.qo_begin + div_group(p, r.row0 + wg * 64));
            cute::tma_store_arrive();
            if constexpr (!C::kOBuffer) cute::tma_store_wait<0>();
          }
          if constexpr (!C::kOBuffer) {
            __syncwarp();  // lane 0 of warp 0 saw the store read the buffer
            o_pass();
          }
        } else {
          named_barrier_sync(3 + wg, 128);
          // Chunks into registers, then 16-byte global stores.
          constexpr int kCpr = D / 8, kRowStep = 128 / kCpr, kPasses = 64 / kRowStep;  // 16-byte chunks per row
          const int c = wt % kCpr, rr0 = wt / kCpr;
          uint4 chunk[kPasses];
#pragma unroll
          for (int i = 0; i < kPasses; ++i)
            chunk[i] = *reinterpret_cast<const uint4*>(gsmem + (so - base) + sw128<kOR>(rr0 + i * kRowStep, c));
          // Row pr = (query qi, head g of the group); one division, then steps of kRowStep rows (the
          // epilogue's instruction count is on the critical path when both warpgroups end a job).
          const int pr0 = r.row0 + wg * 64 + rr0;
          const unsigned ug = unsigned(group), dq = kRowStep / ug, dg = kRowStep % ug;
          unsigned qi = unsigned(div_group(p, pr0));
          unsigned gi = unsigned(pr0) - qi * ug;
#pragma unroll
          for (int i = 0; i < kPasses; ++i, qi += dq, gi += dg) {
            if (gi >= ug) gi -= ug, ++qi;
            if (pr0 + i * kRowStep >= r.packed_rows) break;
            *reinterpret_cast<uint4*>(out_row(qi, kvh * group + int(gi)) + c * 8) = chunk[i];
          }
          o_pass();
        }
      }
      KV_TRACE(1, 16, tr);
    };

    // Steps. Each waits for its operands, issues in this warpgroup's pingpong turn, and hands a stage
    // back as soon as its reader is done. its counts the tiles whose S was issued (K and V of a tile
    // share stage its % kStages); pf holds P of the previous tile until its P V is issued.
    int its = 0;
    uint32_t pf[kN / 16][4];
    float corr[2];
    bool pf_tma = false;  // the previous tile came by TMA (async proxy: no fence before wgmma reads it)
    auto s_done = [&](float (&s)[kN / 2], float (&pr)[kN / 2], int st, int tbase, bool first) {
      fence_regs(s);
      release(k_empty(st));
      sm_wait();
      softmax(s, pr, tbase, corr, first);
      sm_pass();
      KV_TRACE(1, 11, tr);
    };
    auto wait_k = [&](int st, int tbase) {
      mbar_wait(k_full(st), (its / kStages) & 1);
      if (!(p.use_tma && tbase + kN <= cj.r.kv_hi)) fence_proxy_async();  // cp.async tile: generic proxy
      KV_TRACE(1, 7, tr);
    };
    auto issue_prev_pv = [&](int sp) {
      mbar_wait(v_full(sp), ((its - 1) / kStages) & 1);
      if (!pf_tma) fence_proxy_async();
      rescale_o(corr);  // to the previous tile's max, while S runs
      fence_regs(o);
      cute::warpgroup_arrive();
      issue_pv(pf, sp);
      cute::warpgroup_commit_batch();
    };
    auto next_tile = [&](const float (&s)[kN / 2], float (&pr)[kN / 2], int tbase, bool first) {
      if (!first && C::kSpecMax) spec_check(s, pr, corr);
      to_frags(pr, pf);  // O's rescale by corr waits for the next issue (it overlaps the next S there)
      pf_tma = p.use_tma && tbase + kN <= cj.r.kv_hi;
      ++its;
    };
    // S of the tile at tbase of job cj, alone (a job's first tile when nothing precedes it).
    auto step_s = [&](int tbase) {
      const int st = its % kStages;
      float s[kN / 2], pr[kN / 2];
      wait_k(st, tbase);
      turn_wait();
      cute::warpgroup_arrive();
      issue_s(s, st, dq0);
      cute::warpgroup_commit_batch();
      turn_pass();
      cute::warpgroup_wait<0>();
      KV_TRACE(1, 10, tr);
      s_done(s, pr, st, tbase, true);
      next_tile(s, pr, tbase, true);
    };
    // S of the tile at tbase of job cj with O += P V of the previous tile: the tensor cores work on both
    // while this warpgroup waits; the softmax of S runs while P V drains. first: a job's first tile.
    auto step_sp = [&](int tbase, bool first) {
      const int st = its % kStages, sp = (its - 1) % kStages;
      float s[kN / 2], pr[kN / 2];
      wait_k(st, tbase);
      turn_wait();
      KV_TRACE(1, 8, tr);
      cute::warpgroup_arrive();
      issue_s(s, st, dq0);
      cute::warpgroup_commit_batch();
      issue_prev_pv(sp);
      turn_pass();
      KV_TRACE(1, 9, tr);
      cute::warpgroup_wait<1>();  // S done
      KV_TRACE(1, 10, tr);
      s_done(s, pr, st, tbase, first);
      cute::warpgroup_wait<0>();  // O += P V done
      KV_TRACE(1, 12, tr);
      fence_regs(o);
      release(v_empty(sp));
      next_tile(s, pr, tbase, first);
    };
    // O += P V of the previous tile, alone (a job's last tile when no S can go with it).
    auto step_p = [&]() {
      const int sp = (its - 1) % kStages;
      turn_wait();
      issue_prev_pv(sp);
      turn_pass();
      cute::warpgroup_wait<0>();
      KV_TRACE(1, 15, tr);
      fence_regs(o);
      release(v_empty(sp));
    };

    bool primed = false;  // cj's first tile went out in the previous job's last step (S_0 and its softmax)
    while (cj.r.num_tiles >= 0) {
      if (!primed) start_job(jc);
      KV_TRACE(1, 1, tr);
      const int n = cj.r.num_tiles;
      if (n > 0 && !primed) step_s(cj.r.tile_start);
      for (int t = 1; t < n; ++t) step_sp(cj.r.tile_start + t * kN, false);
      const float mo[2] = {m[0], m[1]}, lo[2] = {l[0], l[1]};  // this job's final maxima and sums
      const JobSlot js = cj;
      JobSlot nj{};
      primed = false;
      release(q_empty(jc));  // this job's S are done (O is staged elsewhere): the next Q may load
      if constexpr (C::kOBuffer) {
        nj = read_slot(jc + 1);
        if (n > 0 && nj.r.num_tiles > 0) {  // the next job's S_0 goes with this job's last P V
          cj = nj;
          start_job(jc + 1);
          primed = true;
          step_sp(cj.r.tile_start, true);
        }
      }
      if (n > 0 && !primed) step_p();
      epilogue(js, mo, lo);
#pragma unroll
      for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
      if constexpr (!C::kOBuffer) nj = read_slot(jc + 1);  // its Q loaded during the last P V and the epilogue
      ++jc;
      if (!primed) cj = nj;
    }
    if (wt == 0) cute::tma_store_wait<0>();  // the last store has read shared memory
    KV_SPAN(1, wt == 0 && wg == 0);
  }
#endif
}

}  // namespace kvinfer::detail::attn90
