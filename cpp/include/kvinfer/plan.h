// Batch attention planning: how the (request, kv head, query tile) work of a batch is cut into CTA
// jobs, when long KV ranges are split across CTAs (KV sequence parallelism inside one GPU), how the
// partial results are merged back, and the exact workspace layout run() reads. Host code: runs from
// host index arrays and never touches the device (upload_plan does one async copy).
#pragma once
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "kvinfer/errors.h"
#include "kvinfer/tensor.h"

namespace kvinfer {

// Kernel family a plan is made for: the FA2-class kernels (sm80+, cuda/sm80) or the Hopper
// warp-specialised kernels (sm_90a, cuda/sm90; 128-row query tiles, persistent grid).
enum class AttnBackend : int { kFA2 = 0, kFA3 = 1 };

struct PlanOptions {
  AttnBackend backend = AttnBackend::kFA2;
  int num_qo_heads = 1;
  int num_kv_heads = 1;
  int head_dim = 128;
  int page_size = 16;            // 0: ragged KV (kv_indptr holds token offsets)
  bool causal = false;
  // Query tile (packed rows = query tokens x group size): 16 selects the decode tile (16 rows), 64
  // the prefill tile (128 rows, 64 at head dim 256: attn_tile_rows in cpp/src/launch.h); 0 picks
  // the decode tile when every request has at most 16 packed rows. AttnPlan::tile_rows is the result.
  // Ignored by the FA3 backend (always 128 rows).
  int tile_rows = 0;
  // CTAs the GPU runs at once (SMs x resident CTAs per SM of the tile's kernel,
  // attention_ctas_per_sm): the split heuristic and its wave estimate aim at this.
  int target_ctas = 132 * 2;
  // Smallest KV chunk worth a CTA of its own, in tokens: below it the merge costs more than it gains.
  int min_chunk_tokens = 256;
  bool allow_split = true;
  // > 0: every split chunk is this many KV tokens (no cost model): the same request splits the same
  // way in any batch (batch-invariant results). Requests up to this long are not split.
  int64_t fixed_chunk_tokens = 0;
  // FA2 decode tile: target_ctas of the lean decode tile (2 KV warps, twice the CTAs per SM); > 0
  // lets the planner pick it where its grid needs no split (AttnPlan::lean_decode). 0: wide tile only.
  int lean_target_ctas = 0;
  // FA2 decode tile choice: 0 the planner's, 1 always the wide tile, 2 always the lean tile, split as
  // its grid of lean_target_ctas needs (tests and experiments; not in graph mode).
  int decode_tile_choice = 0;
  int out_elem_bytes = 2;        // element size of the output dtype (partial outputs use it)
  // Fixed layout for CUDA graphs: capacities > 0 fix every offset in the workspaces and the grid,
  // so a captured run() stays valid after a new plan() (within the capacities).
  int64_t capacity_batch = 0, capacity_rows = 0;
  int64_t capacity_pages = 0;    // FA3 + paged + graph mode: kv_indices capacity (page-offset buffer)
  int fixed_grid = 0;
  int64_t int_workspace_bytes = 0;    // sizes of the buffers the caller owns (checked; 0 = report only)
  int64_t float_workspace_bytes = 0;
};

// One CTA job; mirrors detail::AttnWorkItem (cpp/src/launch.h): the request's KV chunk
// [kv_begin, kv_end) (chunk index `chunk`), its partial rows (partial < 0: unsplit), the in-kernel
// merge slot (merge < 0: none), and the request's qo_begin, qo_len, kv_len, kv_base.
struct alignas(16) PlanWorkItem {
  int32_t request, qo_tile, kv_begin, kv_end, partial, splits, chunk, merge;
  int32_t qo_begin, qo_len, kv_len, kv_base;
};

struct AttnPlan {
  int64_t batch = 0, total_qo = 0;      // requests and query tokens of this plan
  int tile_rows = 16;
  int kv_rows = 64;                     // KV tokens per tile (FA3: the instance run() launches, sm90_kv_rows)
  bool lean_decode = false;             // the lean decode tile (PlanOptions::lean_target_ctas)
  int64_t chunk_tokens = 0;             // split length; every chunk but a request's last is this long
  int grid_x = 0;                       // CTAs along the work axis
  int head_section = 0;                 // kv heads per job section (job order; FA3: header word 2; 0: default)
  int64_t tail_items = 0;               // FA3: the last work items form a tail section (header word 5)
  int64_t tail_row_begin = 0, tail_row_end = 0;  // FA3 tail: the query rows whose partials are merged
  std::vector<PlanWorkItem> work;       // longest KV ranges first
  std::vector<int32_t> qo_indptr;       // [batch + 1]
  std::vector<int32_t> kv_begin;        // [batch]: first page (paged) or token (ragged)
  std::vector<int32_t> kv_len;          // [batch]
  std::vector<int64_t> mask_offset;     // [batch]: bit offset of each request's [qo, kv] mask
  int64_t mask_bits = 0;                // bits a custom mask of this batch has (all requests)
  std::vector<int32_t> merge_indptr;    // [rows + 1]: partial rows of each query token (empty: unsplit)
  int64_t num_partials = 0;
  int64_t max_kv_index = -1;            // validate=True: largest page id / token index referenced
  // Workspace layout (byte offsets into the int workspace; all 256-byte aligned). Header words at 0:
  // number of work items, batch, head_section, then two FA3 job-claim counters (zero; the kernel
  // leaves them zero), then tail_items.
  int64_t off_qo_indptr = 0, off_kv_begin = 0, off_kv_len = 0, off_mask_offset = 0, off_merge_indptr = 0,
          off_work = 0;
  // FA3 + paged: per-request bad-page flags and the page-offset buffer (K then V, int64 per
  // kv_indices entry), filled on the device by each run; not part of the uploaded image.
  int64_t off_req_bad = 0, off_page_off = 0, page_off_capacity = 0;
  int64_t merge_rows = 0;               // rows the merge covers (capacity_rows in graph mode)
  // FA2 decode tile: the last CTA of each split group merges it (no merge kernel). Counters
  // [merge_groups x num_kv_heads] int32 at off_merge_ctr, zero in the image and at rest.
  bool merge_in_kernel = false;
  int64_t merge_groups = 0, off_merge_ctr = 0;
  int64_t int_workspace_bytes = 0;      // exact need of this plan
  int64_t float_workspace_bytes = 0;
  int64_t partial_capacity = 0;         // partial rows the float workspace holds (fixes its layout)
  int64_t off_partial_lse = 0;          // byte offset of the partial LSEs in the float workspace
  PlanOptions options;
  // The int workspace contents, uploaded by upload_plan: bytes [0, off_page_off) and [off_work, end)
  // (the page-offset region between them is written by the device).
  std::vector<uint8_t> image;
  int64_t num_work() const { return static_cast<int64_t>(work.size()); }
};

// qo_indptr [batch+1] (nullptr: one query token per request, i.e. decode), kv_indptr [batch+1]
// (page offsets when page_size > 0, else token offsets), kv_last_page_len [batch] (paged only),
// kv_indices (host copy, optional: checked >= 0 and its maximum recorded when given).
// Throws Error(kValueError) naming the argument for inconsistent input or too small a workspace.
KVINFER_API AttnPlan plan_attention(const int32_t* qo_indptr, const int32_t* kv_indptr,
                                    const int32_t* kv_last_page_len, int64_t batch, const PlanOptions& opt,
                                    const int32_t* kv_indices = nullptr, int64_t num_kv_indices = 0);
// The same from host array views (validated: int32, 1-D, contiguous, host memory, lengths).
KVINFER_API AttnPlan plan_attention(const TensorView* qo_indptr, const TensorView& kv_indptr,
                                    const TensorView* kv_last_page_len, const PlanOptions& opt,
                                    const TensorView* kv_indices = nullptr);

// One async copy of plan.image into the int workspace (a device uint8 array) on `stream`.
KVINFER_API void upload_plan(const AttnPlan& plan, const TensorView& int_workspace, cudaStream_t stream);

}  // namespace kvinfer
