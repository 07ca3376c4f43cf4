// Parameters and launcher declarations shared by the host core and the kernel instances.
// Plain C++: host code includes this, never the kernel headers under cuda/.
#pragma once
#include <cstdint>

#include <cuda.h>  // CUtensorMap (the type only: maps are encoded in cpp/src/tma.cpp)
#include <cuda_runtime_api.h>

#include "kvinfer/tensor.h"

namespace kvinfer::detail {

// Merge of num_states attention states per (seq, head) row.
// kPair form (merge_state, merge_state_in_place): state i comes from source i, num_states == 2.
// Multi form (merge_states): every state comes from source 0, state i at i * v_stride[0][1];
// ragged when state_indptr is set (below).
struct MergeParams {
  int64_t seq = 0, heads = 0, head_dim = 0, num_states = 0;
  bool pair = false;
  int vec = 1;                      // elements per vector access: 16 bytes' worth, or 1 when unaligned
  void* v_out = nullptr;            // may alias v_in[0] (in-place)
  float* s_out = nullptr;           // optional
  int64_t v_out_stride[3] = {};     // seq, head, d
  int64_t s_out_stride[2] = {};     // seq, head
  const void* v_in[2] = {};
  const float* s_in[2] = {};
  int64_t v_in_stride[2][4] = {};   // seq, state, head, d
  int64_t s_in_stride[2][3] = {};   // seq, state, head
  const uint8_t* mask = nullptr;    // optional, [seq]: rows with mask 0 are left untouched
  int64_t mask_stride = 0;
  // Ragged multi form: row q merges states state_indptr[q] .. state_indptr[q+1]-1 of source 0
  // (a [num_partials, H, D] array; v_in_stride[0][1] == v_in_stride[0][0]). Rows whose range falls
  // outside [0, num_partials] are written as NaN: device-resident indices cannot be checked on the host.
  const int32_t* state_indptr = nullptr;
  int64_t num_partials = 0;
  bool skip_empty = false;          // ragged: rows with no states are left untouched (split-KV merge)
  int64_t states_hint = 0;          // ragged: states per row on average, where num_partials is only a capacity
};

template <DType kV>
cudaError_t launch_merge(const MergeParams& p, cudaStream_t stream);

// Append of nnz tokens' K/V rows into a paged cache (cpp/include/kvinfer/page.h).
struct AppendKVParams {
  int64_t nnz = 0, heads = 0, head_dim = 0;
  int64_t batch = 0, num_pages = 0, page_size = 0;
  int vec = 1;                          // elements per vector access (16 bytes' worth) or 1
  const void* src[2] = {};              // append_k, append_v
  int64_t src_stride[2][3] = {};        // token, head, d
  void* cache[2] = {};                  // k_cache, v_cache
  int64_t cache_stride[2][4] = {};      // page, slot, head, d (layout already resolved)
  const int32_t* batch_indices = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* kv_indices = nullptr;  // [kv_indptr[batch]]
  const int32_t* kv_indptr = nullptr;   // [batch + 1]
};

// Instantiated per element size (bytes): the append only moves bits.
template <int kElemBytes>
cudaError_t launch_append_kv(const AppendKVParams& p, cudaStream_t stream);

// ---- attention (FA2-class kernels, cuda/sm80) --------------------------------------------------

// One CTA's job: packed query rows [qo_tile * rows, +rows) of request `request` (packed row
// r = query token (r / group), query head kv_head * group + r % group) against KV tokens
// [kv_begin, kv_end). partial < 0: writes the output rows directly; else the rows go to the
// partial buffer at row partial + query_token * splits (token-major: partial = the request's first
// partial row + chunk), merged afterwards. merge >= 0 (FA2 decode tile): the split group's counter
// slot, merge * num_kv_heads + kv head; the last of the group's CTAs merges its rows (in-kernel merge).
// The request's metadata rides along (qo_begin .. kv_base), so a CTA's first K/V address is two
// dependent loads away (item, page id), not three. Three 16-byte loads.
struct alignas(16) AttnWorkItem {
  int32_t request, qo_tile, kv_begin, kv_end, partial, splits, chunk, merge;
  int32_t qo_begin, qo_len, kv_len, kv_base;  // kv_base: first page (paged) or token (ragged)
};
static_assert(sizeof(AttnWorkItem) == 48, "three 16-byte loads");

struct AttnParams {
  int num_qo_heads = 0, num_kv_heads = 0, group = 1, head_dim = 0;
  // Division of a packed row by group as (umulhi(n, group_mul) + n) >> group_shr, exact for n < 2^31
  // (set_group): the kernels split packed rows into (token, head) without an integer division.
  uint32_t group_mul = 1, group_shr = 0;
  const void* q = nullptr;                 // [tokens, H_qo, D]
  int64_t q_stride_n = 0, q_stride_h = 0;
  const void* k = nullptr;                 // paged: [pages, ...]; else [tokens, ...] (layout resolved to strides)
  const void* v = nullptr;
  int64_t k_stride_page = 0, k_stride_tok = 0, k_stride_h = 0;
  int64_t v_stride_page = 0, v_stride_tok = 0, v_stride_h = 0;
  int page_size = 0;                       // 0: contiguous / ragged KV (token offsets)
  const int32_t* kv_indices = nullptr;     // paged: page ids
  int64_t num_pages = 0;                   // paged: ids outside [0, num_pages) give NaN rows, never reads
  void* o = nullptr;                       // [tokens, H_qo, D]
  int64_t o_stride_n = 0, o_stride_h = 0;
  float* lse = nullptr;                    // optional [tokens, H_qo]
  int64_t lse_stride_n = 0, lse_stride_h = 0;
  // Per-request metadata on the device (batch mode); all null for a single request.
  const int32_t* req_qo_indptr = nullptr;  // [batch + 1] query token offsets
  const int32_t* req_kv_begin = nullptr;   // [batch] first page (paged) or first token (ragged)
  const int32_t* req_kv_len = nullptr;     // [batch] KV tokens
  const int64_t* req_mask_offset = nullptr;  // [batch] bit offset of the request's [qo, kv] mask
  int single_qo_len = 0, single_kv_len = 0;
  // Work: a list from the plan (batch), or implicit (single): w = chunk * qo_tiles + tile.
  // A plan's work array holds at least grid_x items (padding past num_work), so a CTA may load its
  // first item before it knows the count.
  const AttnWorkItem* work = nullptr;
  const int32_t* num_work = nullptr;       // device count of work items (plan)
  // FA2 decode tile, plans: split-group arrival counters (zero at rest; the merging CTA resets its
  // own). null: partials are left for the merge kernel.
  int32_t* merge_counters = nullptr;
  int implicit_qo_tiles = 0, implicit_splits = 1, implicit_chunk = 0;
  void* partial_o = nullptr;               // [num_partials, H_qo, D] in the output dtype
  float* partial_lse = nullptr;            // [num_partials, H_qo]
  const uint8_t* mask_bits = nullptr;      // packed little-endian bits, row-major [qo, kv] per request
  bool causal = false;
  int window_left = -1;
  float sm_scale = 1.f;
  float soft_cap = 0.f;                    // <= 0: off
  int grid_x = 1;                          // CTAs along the work axis (the kernel strides over work)
  // Programmatic dependent launch wanted: the FA2-class launcher uses it where the kernel's code was
  // compiled for sm90 (it then runs on sm90+ and waits on griddepcontrol); others ignore it.
  bool pdl = false;
  // Job order (section_job in cuda/common/attn_job.cuh): jobs walk the kv heads in sections of
  // head_section heads, all work items of a section before the next, heads fastest, so the CTAs running
  // at once share the K/V of few heads in L2. Hopper path: 0 is all heads in one section; a plan's value
  // is in its workspace header (num_work[2]), this field serves single requests. FA2-class kernel: 0 is
  // its default order (attention_kernel), else a power of two dividing num_kv_heads or all heads (the
  // run checks it); plans and single requests alike pass it here.
  int head_section = 0;
  // Hopper path, plans: two claim counters in the workspace header (words 3 and 4, zero between
  // launches): after its first job a CTA claims the next job of the list (the CTA that frees up first
  // takes it), and the last CTA out resets both. null (single request): CTA i takes i, i + grid, ...
  int32_t* sched = nullptr;
  // Hopper path, paged KV: element offsets of each kv_indices entry's page in K and V (-1: id out of
  // range), written by a pre-kernel every run, and a per-request flag set when a page id was bad.
  int64_t* page_off_k = nullptr;
  int64_t* page_off_v = nullptr;           // == page_off_k when K and V have the same page stride
  int32_t* req_bad = nullptr;              // [batch capacity]
  const int32_t* num_requests = nullptr;   // device batch size (plan header)
  int batch_capacity = 0;                  // pre-kernel grid (requests >= *num_requests exit)
  // Hopper path: KV tokens per tile, which selects the instance (sm90_kv_rows; the plan's choice).
  int kv_rows = 0;
  // Hopper path, contiguous/ragged KV: TMA descriptors of K and V as [tokens, heads, D] boxes of
  // kv_rows x 1 x 64 (128-byte swizzle); full tiles load through them, boundary tiles and
  // paged KV through cp.async. use_tma false: every tile by cp.async.
  bool use_tma = false;
  CUtensorMap tma_k, tma_v;
  // Hopper path: Q by TMA (group divides the 128-row tile, 16-byte strides), one box per 64 columns
  // of a tile of packed rows; false: Q by cp.async.
  bool q_tma = false;
  CUtensorMap tma_q;
  // Hopper path: O stored by TMA (same view as Q, boxes of 64 packed rows: a consumer warpgroup's
  // half of a tile) for tiles whose rows all belong to the request; false: 16-byte stores.
  bool o_tma = false;
  CUtensorMap tma_o;
};

// group and its division constants: shr = ceil(log2 group), mul = floor(2^32 (2^shr - group) / group) + 1.
inline void set_group(AttnParams& p, int group) {
  p.group = group;
  uint32_t shr = 0;
  while ((int64_t(1) << shr) < group) ++shr;
  p.group_shr = shr;
  p.group_mul = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shr) - uint64_t(group))) / uint64_t(group) + 1);
}

// Tile shapes of the compiled kernels (shared by planner and instances).
// kDecode: 16 packed rows, for few rows per request (decode: group size x 1 token).
// kPrefill: 128 rows: 4 warps of 32 rows; at head dim 256, where O takes the registers, 64 rows: 4
// warps of 16, two CTAs per SM (the kernel's kSplitKV). Measured on H200, 2026-11-21: 32 rows per warp
// won at D=64 (282 against 255 TFLOP/s non-causal, seqlen 8192) and D=128.
// kDecodeLean: the decode tile's rows with 2 KV warps over 32-token KV tiles (twice the CTAs per SM),
// chosen by the planner for batches that fill the GPU unsplit (AttnPlan::lean_decode).
enum class AttnTile : int { kDecode = 0, kPrefill = 1, kDecodeLean = 2 };
constexpr int attn_tile_rows(AttnTile t, int head_dim) {
  return t != AttnTile::kPrefill ? 16 : head_dim == 256 ? 64 : 128;
}
// KV tokens per tile. The prefill tile takes 128 at head dim 64 (FA2's own shape there): half the
// barriers, loader setup and row reductions per key; 1.10x over 64-token tiles at seqlen 4096 (H200,
// 2026-11-21, ci/ab_fa2.sh). At D 128 / 256 the S registers of a 128-token tile do not fit.
constexpr int attn_tile_kv(AttnTile t, int head_dim) {
  return t == AttnTile::kDecodeLean ? 32 : t == AttnTile::kPrefill && head_dim == 64 ? 128 : 64;
}

template <int kHeadDim, DType kDT, AttnTile kTile>
cudaError_t launch_attention(const AttnParams& p, cudaStream_t stream);
// Hopper path (cuda/sm90, sm_90a only): warp-specialised wgmma kernel, 128 packed rows per CTA tile,
// persistent over (work item, kv head) pairs; grid_x CTAs (1 per SM).
constexpr int kSm90TileRows = 128;
// KV tokens per tile. Head dim 64 has a second, wide instance (192 tokens): each step then carries more
// matrix work per softmax, barrier and pipeline handoff: 1.08-1.11x at KV 3072-16384, but a request's
// last, partial tile costs a whole step (0.88x at 1024). Head dim 256 has one too (80 tokens, FA3's
// tile; no O buffer then): 1.02-1.03x at KV >= 4096 non-causal and 16384 causal, 0.95x at 1024. The
// planner picks per batch (sm90_pick_kv_rows).
constexpr int sm90_kv_rows(int head_dim, bool wide) {
  return head_dim == 256 ? (wide ? 80 : 64) : head_dim == 64 && wide ? 192 : 128;
}
// Paged KV by TMA (a box per page) where pages tile the KV tile: a multiple of 8 tokens that divides
// kv_rows or is a multiple of it; other page sizes gather rows with cp.async.
constexpr bool sm90_paged_tma(int page_size, int kv_rows) {
  return page_size > 0 && page_size % 8 == 0 && (kv_rows % page_size == 0 || page_size % kv_rows == 0);
}
template <int kHeadDim, int kKV, DType kDT>
cudaError_t launch_attention_sm90(const AttnParams& p, cudaStream_t stream);
// Resident CTAs per SM of that instance on the current device (the planner sizes grids by it).
template <int kHeadDim, DType kDT, AttnTile kTile>
int attention_ctas_per_sm();

}  // namespace kvinfer::detail
