// Attention entry points (FA2-class kernels): single request and batch (paged or ragged KV) runs.
//
// Conventions: q [tokens, H_qo, D]; K/V NHD [tokens, H_kv, D] or HND [H_kv, tokens, D] (single,
// ragged) or paged views [num_pages, page_size, H_kv, D] / [num_pages, H_kv, page_size, D] with any
// page/token/head strides (multiples of 8 elements, 16-byte aligned data) and unit stride along D.
// H_qo is any multiple of H_kv. Queries are the last qo_len tokens of their sequence (causal masks
// are bottom-right aligned). LSE is base 2 (log2 of the sum of exp of the logits), fp32. A row that
// attends to nothing (empty KV, everything masked) gives 0 and -inf.
#pragma once
#include <cuda_runtime_api.h>

#include "kvinfer/page.h"
#include "kvinfer/plan.h"
#include "kvinfer/tensor.h"

namespace kvinfer {

struct AttentionOptions {
  KVLayout layout = KVLayout::kNHD;
  bool causal = false;
  int window_left = -1;          // >= 0: keys older than query position - window_left are masked
  float sm_scale = 0.f;          // <= 0: 1 / sqrt(head_dim)
  float logits_soft_cap = 0.f;   // > 0: logits = cap * tanh(logits / cap)
  // Programmatic dependent launch (sm90+ devices; ignored elsewhere): the FA2-class kernel may start
  // while the stream's previous kernel finishes. It reads nothing that kernel writes before
  // griddepcontrol.wait (only its plan's work list), so results are the same either way.
  bool enable_pdl = false;
};

// How a single request is cut: query tile and KV splits (merged through tmp buffers).
struct SinglePlan {
  AttnBackend backend = AttnBackend::kFA2;
  int tile_rows = 16;            // 16: decode tile; else the prefill tile's rows for this head dim (FA3: 128)
  int kv_rows = 0;               // FA3: KV tokens per tile (the instance; 0: the head dim's default)
  int grid_x = 0;                // FA3: persistent CTAs (min(jobs, target_ctas))
  int head_section = 0;          // kv heads per job section (job order, section_job; 0: the kernel default)
  int splits = 1;
  int64_t chunk_tokens = 0;
  int64_t tmp_rows = 0;          // partial rows (qo_len * splits when split, else 0)
};
KVINFER_API SinglePlan plan_single(int64_t qo_len, int64_t kv_len, int num_qo_heads, int num_kv_heads,
                                   int head_dim, int target_ctas, int min_chunk_tokens = 256,
                                   AttnBackend backend = AttnBackend::kFA2, bool causal = false);

// Whether the Hopper (FA3) kernels can run (head_dim, dtype) on `device`: compiled into this build
// (sm_90a instances) and the device is compute capability 9.0.
KVINFER_API bool attention_sm90_available(int head_dim, DType dtype, int device);

// Resident CTAs per SM of the decode (decode_tile; lean: the lean decode tile) or prefill tile kernel
// for (head_dim, dtype) on `device`: SMs x this is how many CTAs a grid should aim at. 0 when the
// instance is not compiled.
KVINFER_API int attention_ctas_per_sm(int head_dim, DType dtype, bool decode_tile, int device, bool lean = false);

// Single request. mask_bits: optional packed little-endian bits of a row-major [qo_len, kv_len]
// bool mask (uint8). tmp_o [tmp_rows, H_qo, D] (q dtype) and tmp_lse [tmp_rows, H_qo] (fp32) are
// required when sp.splits > 1.
KVINFER_API void single_attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& o,
                                  const TensorView* lse, const TensorView* mask_bits, const AttentionOptions& opt,
                                  const SinglePlan& sp, const TensorView* tmp_o, const TensorView* tmp_lse,
                                  cudaStream_t stream);

// Batch run of a plan (plan_attention + upload_plan into int_workspace on the same stream before).
// Paged when plan.options.page_size > 0 (k_cache/v_cache 4-D views, kv_indices device int32), else
// ragged (k/v [kv_tokens, H_kv, D] NHD or [H_kv, kv_tokens, D] HND, kv_indices unused).
KVINFER_API void batch_attention(const AttnPlan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
                                 const TensorView* kv_indices, const TensorView& o, const TensorView* lse,
                                 const TensorView* mask_bits, const TensorView& int_workspace,
                                 const TensorView& float_workspace, const AttentionOptions& opt, cudaStream_t stream);

}  // namespace kvinfer
