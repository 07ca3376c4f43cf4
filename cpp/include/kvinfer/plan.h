// Decode planning: how the KV of a batch of requests is split into chunks (KV sequence parallelism
// inside one GPU) so that a grid of (chunk, kv_head) CTAs fills the GPU evenly, and how the partial
// results are merged back. Host code: runs from host index arrays, never touches the device.
#pragma once
#include <cstdint>
#include <vector>

#include "kvinfer/errors.h"
#include "kvinfer/tensor.h"

namespace kvinfer {

struct DecodePlanOptions {
  int num_kv_heads = 1;
  int num_qo_heads = 1;
  int head_dim = 128;
  int page_size = 16;
  // CTAs the GPU runs at once (SMs x resident CTAs per SM): the planner aims the grid at this.
  int target_ctas = 132 * 2;
  // Smallest chunk worth a CTA, in tokens (a multiple of the kernel's KV tile): below it the merge
  // costs more than the parallelism gains.
  int min_chunk_tokens = 256;
};

// One unit of work for every kv head: KV tokens [kv_begin, kv_end) of request `request`.
// partial < 0: the chunk is the whole request and writes the final output row directly; else it
// writes partial state `partial` (rows [partial, partial + 1) of the [num_partials, H_qo, D]
// fp32 scratch), merged afterwards over merge_indptr.
struct DecodePlan {
  int64_t chunk_tokens = 0;               // split length (tokens); every chunk but a request's last is this long
  std::vector<int32_t> work_request, work_kv_begin, work_kv_end, work_partial;
  std::vector<int32_t> merge_indptr;      // [batch + 1]: partial states of request b (empty if not split)
  int64_t num_partials = 0;
  int64_t int_workspace_bytes = 0;        // the arrays above, as laid out in the int workspace
  int64_t float_workspace_bytes = 0;      // partial outputs (fp32) and their LSEs
  int64_t num_work() const { return static_cast<int64_t>(work_request.size()); }
};

// kv_indptr [batch+1] (page-table offsets) and kv_last_page_len [batch] define each request's KV
// length: (pages - 1) * page_size + last_page_len, 0 for a request with no pages. Throws
// Error(kValueError) for non-monotone kv_indptr or last_page_len outside [1, page_size] (0 allowed
// only for a request with no pages).
KVINFER_API DecodePlan plan_decode(const int32_t* kv_indptr, const int32_t* kv_last_page_len, int64_t batch,
                                   const DecodePlanOptions& opt);
// The same from host array views (validated: int32, 1-D, contiguous, host memory, lengths).
KVINFER_API DecodePlan plan_decode(const TensorView& kv_indptr, const TensorView& kv_last_page_len,
                                   const DecodePlanOptions& opt);

}  // namespace kvinfer
